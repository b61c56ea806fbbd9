//! The `oxbow` binary: `check` exit codes and messages, `serve` on the shop app over a socket.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Starts `oxbow serve DIR` on a free port; returns the child and its port.
fn serve(dir: &str) -> (std::process::Child, u16) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_oxbow"))
        .args(["serve", dir, "--port", "0", "--host", "127.0.0.1"])
        .current_dir(repo())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let port: u16 = first.rsplit(':').next().unwrap().parse().unwrap();
    (child, port)
}

/// One raw HTTP/1.1 exchange on a fresh connection.
fn exchange(port: u16, raw: String) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
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
    let (mut child, port) = serve("examples/shop");
    let request = |raw: String| exchange(port, raw);
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

/// With a memory `file`, every acknowledged write survives a SIGKILL and is reloaded at boot.
#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = std::env::temp_dir().join(format!("oxbow-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("server")).unwrap();
    std::fs::create_dir_all(dir.join("models")).unwrap();
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(
        dir.join("server/datasources.json"),
        r#"{"db":{"connector":"memory","file":"data/db.json"}}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("server/model-config.json"),
        r#"{"_meta":{"sources":["../models"]},"Note":{"dataSource":"db"}}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("models/note.json"),
        r#"{"name":"Note","properties":{"text":{"type":"string","required":true}}}"#,
    )
    .unwrap();
    let start = || serve(dir.to_str().unwrap());
    let send = exchange;
    let (mut child, port) = start();
    for i in 0..40 {
        let body = format!(r#"{{"text":"note {i}"}}"#);
        let resp = send(
            port,
            format!(
                "POST /api/Notes HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        );
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    }
    child.kill().unwrap(); // SIGKILL: no chance to flush anything
    child.wait().unwrap();
    let (mut child, port) = start();
    let resp = send(
        port,
        "GET /api/Notes/count HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into(),
    );
    assert!(resp.ends_with(r#"{"count":40}"#), "{resp}");
    let body = r#"{"text":"after"}"#;
    let resp = send(
        port,
        format!(
            "POST /api/Notes HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    assert!(
        resp.ends_with(r#"{"text":"after","id":41}"#),
        "ids continue after a restart: {resp}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    // LoopBack's file format: records as JSON strings, `ids` holds the next id.
    let db: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("data/db.json")).unwrap()).unwrap();
    assert_eq!(db["ids"]["Note"], 42);
    assert_eq!(db["models"]["Note"]["41"], r#"{"text":"after","id":41}"#);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn routes_prints_the_endpoint_table_in_matching_order() {
    let out = oxbow(&["routes", "."]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "VERB    PATH                             METHOD                                ACCESS\n\
PUT     /api/MyModels/:id                MyModel.replaceById                   WRITE\n\
PUT     /api/MyModels                    MyModel.replaceOrCreate               WRITE\n\
POST    /api/MyModels/change-stream      MyModel.createChangeStream            READ\n\
POST    /api/MyModels/replaceOrCreate    MyModel.replaceOrCreate               WRITE\n\
POST    /api/MyModels/update             MyModel.updateAll                     WRITE\n\
POST    /api/MyModels/upsertWithWhere    MyModel.upsertWithWhere               WRITE\n\
POST    /api/MyModels/:id/change-stream  MyModel.prototype.createChangeStream  READ\n\
POST    /api/MyModels/:id/replace        MyModel.replaceById                   WRITE\n\
POST    /api/MyModels                    MyModel.create                        WRITE\n\
PATCH   /api/MyModels/:id                MyModel.prototype.patchAttributes     WRITE\n\
PATCH   /api/MyModels                    MyModel.patchOrCreate                 WRITE\n\
HEAD    /api/MyModels/:id                MyModel.exists                        READ\n\
GET     /api/MyModels/change-stream      MyModel.createChangeStream            READ\n\
GET     /api/MyModels/count              MyModel.count                         READ\n\
GET     /api/MyModels/findOne            MyModel.findOne                       READ\n\
GET     /api/MyModels/:id/change-stream  MyModel.prototype.createChangeStream  READ\n\
GET     /api/MyModels/:id/exists         MyModel.exists                        READ\n\
GET     /api/MyModels/:id                MyModel.findById                      READ\n\
GET     /api/MyModels                    MyModel.find                          READ\n\
DELETE  /api/MyModels/:id                MyModel.deleteById                    WRITE\n\
"
    );
}
