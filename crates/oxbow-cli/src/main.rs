//! The plain `oxbow` binary: serves or checks any LoopBack 3 app directory (no Rust plugins).

fn main() -> std::process::ExitCode {
    oxbow_cli::run(Vec::new(), None)
}
