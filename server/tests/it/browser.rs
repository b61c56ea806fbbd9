//! The default app's live page in a real headless Chromium (Debian's `chromium`, driven by
//! playwright-core from `tests/browser/`): a record created through the API appears on the
//! page, and a record created while the page was disconnected appears when it reconnects.
//! Skipped, with a message, where Chromium, Node or playwright-core is not installed, and a
//! failure then under `CI=true`; `.ci/run` installs them.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common;

use common::repo;

fn missing() -> Option<String> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        return Some(format!(
            "no Chromium at {chromium} (apt-get install chromium, or set CHROMIUM)"
        ));
    }
    if Command::new("node").arg("--version").output().is_err() {
        return Some("no `node` on PATH".into());
    }
    if !repo()
        .join("tests/browser/node_modules/playwright-core")
        .is_dir()
    {
        return Some("playwright-core is not installed (cd tests/browser && npm ci)".into());
    }
    None
}

#[test]
fn live_page_shows_changes_and_resumes_after_a_disconnect() {
    if let Some(why) = missing() {
        if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
            panic!(
                "the browser test cannot run: {why} (CI=true, so this is a failure, not a skip)"
            );
        }
        eprintln!("skipping the browser test: {why}");
        return;
    }
    let server = common::start(None);
    let base = server.base();
    let shot = repo().join("target/browser-live-list.png");
    let mut driver = Command::new("node")
        .arg(repo().join("tests/browser/live-list.mjs"))
        .arg(&base)
        .arg(&shot)
        .current_dir(repo().join("tests/browser"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run node");
    let started = Instant::now();
    let status = loop {
        if let Some(s) = driver.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > Duration::from_secs(90) {
            let _ = driver.kill();
            panic!("the browser test did not finish in 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = driver.wait_with_output().unwrap();
    drop(server);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(status.success(), "browser test failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("\"from-the-api\"") && stdout.contains("\"while-away\""),
        "{stdout}"
    );
    eprintln!("{}", stdout.trim());
}
