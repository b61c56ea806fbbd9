//! Shared by the default app's end-to-end tests: the real binary started on a free port.
// Each test module uses only part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A running default app; killed when dropped.
pub struct App {
    pub child: Child,
    pub port: u16,
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl App {
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// Starts the default app serving `dir` (the repository root when `None`) and returns once it
/// printed its listening line; the rest of its stdout is drained in the background.
pub fn start(dir: Option<&Path>) -> App {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_oxbow-default-app"));
    cmd.arg("serve");
    if let Some(d) = dir {
        cmd.arg(d);
    }
    let mut child = cmd
        .args(["--port", "0", "--host", "127.0.0.1"])
        .current_dir(repo())
        .env_remove("PORT")
        .env_remove("HOST")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the default app");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let _seed = lines.next().and_then(Result::ok).expect("the seed line");
    let listening = lines
        .next()
        .and_then(Result::ok)
        .expect("the listening line");
    let port = listening
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a port");
    std::thread::spawn(move || for _ in lines {});
    App { child, port }
}
