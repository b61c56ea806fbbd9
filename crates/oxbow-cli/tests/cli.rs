//! The `oxbow` binary: `check` exit codes and messages, `serve` on the shop app over a socket.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn oxbow(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_oxbow"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run oxbow")
}

#[test]
fn check_reports_every_problem_and_fails() {
    let out = oxbow(&["check", "crates/oxbow-config/tests/cases/many-mistakes"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.last(), Some(&"14 problem(s) found"), "{err}");
    assert!(
        err.contains("models/car.json: /hidden: expected an array, found \"vin\""),
        "{err}"
    );
    assert!(
        err.contains("server/config.json: /restApiRoot: expected mount path of the REST API"),
        "{err}"
    );
}

#[test]
fn check_accepts_the_example_apps() {
    for app in [
        "examples/shop",
        ".",
        "tests/conformance/apps/inventory",
        "tests/conformance/apps/registry",
        "tests/conformance/apps/tight",
    ] {
        let out = oxbow(&["check", app]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{app}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(": ok ("),
            "{app}"
        );
    }
    // The reference rig's apps, unchanged, when the shared folder is beside the checkout.
    let rig = repo().join("../shared/loopback3/rig/apps/shop");
    if rig.is_dir() {
        let out = oxbow(&["check", rig.to_str().unwrap()]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        eprintln!("skipping the rig's shop app: {} not found", rig.display());
    }
}

#[test]
fn serve_answers_like_loopback() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_oxbow"))
        .args([
            "serve",
            "examples/shop",
            "--port",
            "0",
            "--host",
            "127.0.0.1",
        ])
        .current_dir(repo())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let port: u16 = first.rsplit(':').next().unwrap().parse().unwrap();
    let request = |raw: String| {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(raw.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    let body = r#"{"name":"Ann","email":"ann@x.io","secret":"s3","since":"2020-01-02"}"#;
    let resp = request(format!(
        "POST /api/Customers HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
    assert!(resp.ends_with(r#"{"name":"Ann","email":"ann@x.io","vip":false,"tier":"basic","since":"2020-01-02T00:00:00.000Z","id":1}"#), "{resp}");
    let resp = request("GET /api/catalog?filter[where][price][gt]=5 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into());
    assert!(resp.ends_with("[]"), "{resp}");
    let resp = request("GET /api/Goods HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into());
    assert!(resp.ends_with(r#"{"error":{"statusCode":404,"name":"Error","message":"There is no method to handle GET /Goods"}}"#), "{resp}");
    let _ = child.kill();
    let _ = child.wait();
}
