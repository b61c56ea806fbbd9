//! The default app's binary: `cargo run --release` serves this repository's app (`models/` +
//! `server/`) with its boot plugins; it also takes the `oxbow` subcommands.

use std::path::{Path, PathBuf};

fn main() -> std::process::ExitCode {
    // The app is the repository root: the current directory when run by `cargo run`, or the
    // folder this crate was built from.
    let here = Path::new(".");
    let dir = if here.join("server").join("model-config.json").is_file() {
        PathBuf::from(".")
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    };
    oxbow_cli::run(oxbow_default_app::plugins(), Some(dir))
}
