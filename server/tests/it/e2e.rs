//! The default app end to end: the real `oxbow-default-app` binary on real sockets, its stdout
//! read line by line (the seed line must come first), `PORT` from the environment.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

const SEED_LINE: &str = r#"{"target":1,"data":{"foo":"bar","id":1},"type":"create"}"#;

struct Server {
    child: Child,
    port: u16,
    lines: Receiver<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn line(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(20))
            .expect("a line on stdout")
    }
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Starts the default app; returns once it printed its listening line.
fn start(args: &[&str], port_env: Option<u16>) -> (Server, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_oxbow-default-app"));
    cmd.args(args)
        .current_dir(repo_root())
        .env_remove("HOST")
        .env_remove("PORT")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(p) = port_env {
        cmd.env("PORT", p.to_string());
    }
    let mut child = cmd.spawn().expect("spawn the default app");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut server = Server {
        child,
        port: 0,
        lines: rx,
    };
    let first = server.line();
    let listening = server.line();
    let port = listening
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("listening line: {listening}"));
    server.port = port;
    (server, first)
}

/// One HTTP/1.1 request over a fresh connection; returns (status, lower-cased head, body).
fn http(port: u16, method: &str, path: &str, body: Option<&str>) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let body = body.unwrap_or("");
    let ctype = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/json\r\n"
    };
    write!(s, "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{ctype}Content-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_ascii_lowercase(), rest.to_owned())
}

/// A GET with extra header lines (each ending in CRLF); returns the raw response, case kept.
fn get_raw(port: u16, path: &str, headers: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    raw
}

#[test]
fn seed_line_is_printed_first_and_the_api_answers() {
    let (server, first) = start(&["serve", "--port", "0", "--host", "127.0.0.1"], None);
    assert_eq!(first, SEED_LINE);
    let port = server.port;

    let (status, head, body) = http(port, "GET", "/", None);
    assert_eq!(status, 200);
    assert!(
        head.contains("content-type: application/json; charset=utf-8"),
        "{head}"
    );
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["started", "uptime"]);
    assert!(v["started"].as_str().unwrap().ends_with('Z'));
    assert!(v["uptime"].as_f64().unwrap() >= 0.0);

    assert_eq!(
        http(port, "GET", "/api/MyModels", None).2,
        r#"[{"foo":"bar","id":1}]"#
    );
    let (status, _, body) = http(port, "POST", "/api/MyModels", Some(r#"{"foo":"baz"}"#));
    assert_eq!((status, body.as_str()), (200, r#"{"foo":"baz","id":2}"#));
    // The realtime plugin prints the change as it happens.
    assert_eq!(
        server.line(),
        r#"{"target":2,"data":{"foo":"baz","id":2},"type":"create"}"#
    );
    let (status, _, _) = http(port, "PATCH", "/api/MyModels/2", Some(r#"{"foo":"qux"}"#));
    assert_eq!(status, 200);
    assert_eq!(
        server.line(),
        r#"{"target":2,"data":{"foo":"qux","id":2},"type":"update"}"#
    );
    let (status, _, body) = http(port, "DELETE", "/api/MyModels/2", None);
    assert_eq!((status, body.as_str()), (200, r#"{"count":1}"#));
    assert_eq!(
        server.line(),
        r#"{"target":2,"where":{"id":2},"type":"remove"}"#
    );

    // A rejected write publishes nothing: the next line is the next successful write.
    let (status, _, _) = http(
        port,
        "POST",
        "/api/MyModels",
        Some(r#"{"id":7,"foo":"no"}"#),
    );
    assert_eq!(status, 422);
    let (status, _, _) = http(port, "POST", "/api/MyModels", Some(r#"{"foo":"yes"}"#));
    assert_eq!(status, 200);
    assert_eq!(
        server.line(),
        r#"{"target":3,"data":{"foo":"yes","id":3},"type":"create"}"#
    );

    let (status, head, body) = http(port, "HEAD", "/api/MyModels/1", None);
    assert_eq!((status, body.as_str()), (200, ""));
    assert!(head.contains("content-length: 15"), "{head}");

    // Express's weak ETag on every body `res.send` writes (tag computed with Node's crypto),
    // and a bare 304 — tag kept, no content headers, no body — when the client has it.
    let tag = r#"W/"14-Q+FZIQReVSXKYjfuS8vxdlRXxkE""#;
    let (status, head, _) = http(port, "GET", "/api/MyModels/1", None);
    assert_eq!(status, 200);
    assert!(
        head.contains(&format!("etag: {}", tag.to_ascii_lowercase())),
        "{head}"
    );
    let raw = get_raw(
        port,
        "/api/MyModels/1",
        &format!("If-None-Match: {tag}\r\n"),
    );
    assert!(raw.starts_with("HTTP/1.1 304 Not Modified\r\n"), "{raw}");
    assert!(raw.contains(&format!("etag: {tag}\r\n")), "{raw}");
    assert!(raw.ends_with("\r\n\r\n"), "{raw}");
    assert!(
        !raw.contains("\ncontent-type:") && !raw.contains("\ncontent-length:"),
        "{raw}"
    );
    let raw = get_raw(
        port,
        "/api/MyModels/1",
        &format!("If-None-Match: {tag}\r\nCache-Control: no-cache\r\n"),
    );
    assert!(raw.starts_with("HTTP/1.1 200 OK\r\n"), "{raw}");
    let (status, _, body) = http(port, "GET", "/nope", None);
    assert_eq!(
        (status, body.as_str()),
        (
            404,
            r#"{"error":{"statusCode":404,"name":"Error","message":"Cannot GET /nope"}}"#
        )
    );
    // client/ is served after the REST routes (middleware.json `files`: `loopback#static`),
    // never outside its root.
    let (status, head, body) = http(port, "GET", "/index.html", None);
    assert_eq!(status, 200);
    assert!(
        head.contains("content-type: text/html; charset=utf-8"),
        "{head}"
    );
    assert!(body.contains("new EventSource(url)"), "{body}");
    // serve-static's validators: a weak size-mtime tag, Last-Modified, and 304s for either.
    assert!(head.contains("cache-control: public, max-age=0"), "{head}");
    let raw = get_raw(port, "/index.html", "");
    let header = |name: &str| {
        raw.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(": ")?;
                k.eq_ignore_ascii_case(name)
                    .then(|| v.trim_end().to_owned())
            })
            .unwrap_or_else(|| panic!("no {name} in {raw}"))
    };
    let (file_tag, modified) = (header("etag"), header("last-modified"));
    let len = std::fs::metadata(repo_root().join("client/index.html"))
        .unwrap()
        .len();
    assert!(file_tag.starts_with(&format!("W/\"{len:x}-")), "{file_tag}");
    for condition in [
        format!("If-None-Match: {file_tag}\r\n"),
        format!("If-Modified-Since: {modified}\r\n"),
    ] {
        let raw = get_raw(port, "/index.html", &condition);
        assert!(
            raw.starts_with("HTTP/1.1 304 Not Modified\r\n"),
            "{condition}: {raw}"
        );
        assert!(raw.ends_with("\r\n\r\n"), "{raw}");
    }
    // Byte ranges as serve-static answers them (compared with the rig's LoopBack 3).
    let raw = get_raw(port, "/index.html", "Range: bytes=0-9\r\n");
    assert!(raw.starts_with("HTTP/1.1 206 Partial Content\r\n"), "{raw}");
    assert!(
        raw.contains(&format!("content-range: bytes 0-9/{len}\r\n")),
        "{raw}"
    );
    assert!(raw.ends_with("\r\n\r\n<!doctype "), "{raw}");
    let raw = get_raw(port, "/index.html", "If-Match: W/\"nope\"\r\n");
    assert!(
        raw.starts_with("HTTP/1.1 412 Precondition Failed\r\n"),
        "{raw}"
    );
    assert!(raw.ends_with(r#"{"error":{"statusCode":412,"name":"PreconditionFailedError","message":"Precondition Failed"}}"#), "{raw}");
    for escape in [
        "/%2e%2e/Cargo.toml",
        "/..%2fCargo.toml",
        "/index.html/..%2f..%2fCargo.toml",
    ] {
        let (status, _, _) = http(port, "GET", escape, None);
        assert_eq!(status, 404, "{escape}");
    }
    let big = format!(r#"{{"foo":"{}"}}"#, "x".repeat(110 * 1024));
    let (status, _, body) = http(port, "POST", "/api/MyModels", Some(&big));
    assert_eq!(status, 413);
    assert_eq!(
        body,
        r#"{"error":{"statusCode":413,"name":"PayloadTooLargeError","message":"request entity too large"}}"#
    );
}

#[test]
fn port_comes_from_the_environment() {
    let free = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (server, first) = start(&[], Some(free));
    assert_eq!(first, SEED_LINE);
    assert_eq!(server.port, free);
    assert_eq!(
        http(free, "GET", "/api/MyModels/count", None).2,
        r#"{"count":1}"#
    );
}
