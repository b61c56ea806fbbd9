//! Hostile clients against a real `oxbow serve` over TCP (issue 21): a big array create on a
//! memory datasource with a `file` (one file write, other requests keep being answered),
//! a change-stream subscriber cut off for overflow and an oversized chunked body (both
//! connections closed by the server, not left open).

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{request, serve};

/// The shop app in a scratch folder, its datasource on `data/db.json`; `config` merged into
/// config.json.
fn shop(tag: &str, config: serde_json::Value) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/shop");
    let dir = std::env::temp_dir().join(format!("oxbow-hostile-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for sub in ["server", "models"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        for entry in std::fs::read_dir(root.join(sub)).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.join(sub).join(entry.file_name())).unwrap();
        }
    }
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(
        dir.join("server/datasources.json"),
        r#"{"db":{"name":"db","connector":"memory","file":"data/db.json"}}"#,
    )
    .unwrap();
    let path = dir.join("server/config.json");
    let mut c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for (k, v) in config.as_object().unwrap() {
        c[k] = v.clone();
    }
    std::fs::write(&path, c.to_string()).unwrap();
    dir
}

fn orders(n: usize, from: usize) -> String {
    let rows: Vec<String> = (from..from + n)
        .map(|i| format!(r#"{{"code":"c{i}","total":{i}}}"#))
        .collect();
    format!("[{}]", rows.join(","))
}

fn stored_orders(dir: &Path) -> usize {
    let db: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("data/db.json")).unwrap()).unwrap();
    db["models"]["Order"].as_object().map_or(0, |o| o.len())
}

/// Point 4: a 3 000-row array create on memory+file is one file write: it is answered fast, it
/// is on disk when answered, and reads answered meanwhile never wait for the file.
#[test]
fn memory_file_array_creates_write_once_and_reads_never_wait() {
    let dir = shop("file", serde_json::json!({}));
    let (mut child, port) = serve(&dir);
    // Reads all along, each timed.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut worst = Duration::ZERO;
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let (status, _) = request(port, "GET", "/api/Customers/count", "").unwrap();
                assert_eq!(status, 200);
                worst = worst.max(t.elapsed());
                n += 1;
            }
            (worst, n)
        })
    };
    let limit = if cfg!(debug_assertions) {
        Duration::from_millis(600)
    } else {
        Duration::from_millis(200)
    };
    for round in 0..3 {
        let body = orders(3000, round * 3000 + 1);
        assert!(body.len() > 70_000, "{} bytes", body.len());
        let t = Instant::now();
        let (status, answer) = request(port, "POST", "/api/Orders", &body).unwrap();
        let took = t.elapsed();
        assert_eq!(status, 200, "{}", &answer[..answer.len().min(300)]);
        assert!(took < limit, "round {round}: 3 000 rows took {took:?}");
        // Acknowledged means on disk.
        assert_eq!(stored_orders(&dir), (round + 1) * 3000);
    }
    // Single creates, many at once, all durable when answered.
    let writers: Vec<_> = (0..8)
        .map(|w| {
            std::thread::spawn(move || {
                for i in 0..20 {
                    let body = format!(r#"{{"code":"w{w}-{i}","total":1}}"#);
                    assert_eq!(request(port, "POST", "/api/Orders", &body).unwrap().0, 200);
                }
            })
        })
        .collect();
    writers.into_iter().for_each(|w| w.join().unwrap());
    assert_eq!(stored_orders(&dir), 9000 + 160);
    stop.store(true, Ordering::Relaxed);
    let (worst, n) = reader.join().unwrap();
    assert!(n > 0);
    assert!(worst < limit, "a read waited {worst:?}");
    // A restart reads it all back, and ids go on.
    child.kill().unwrap();
    child.wait().unwrap();
    let (mut child, port) = serve(&dir);
    assert_eq!(
        request(port, "GET", "/api/Orders/count", ""),
        Some((200, r#"{"count":9160}"#.to_owned()))
    );
    let (status, answer) =
        request(port, "POST", "/api/Orders", r#"{"code":"z","total":1}"#).unwrap();
    assert_eq!(status, 200);
    assert!(answer.ends_with(r#""id":9161}"#), "{answer}");
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Reads `s` until the server closes it or `within` passes; the bytes and whether it closed.
fn read_until_closed(s: &mut TcpStream, within: Duration) -> (String, bool) {
    let end = Instant::now() + within;
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (String::from_utf8_lossy(&out).into_owned(), false);
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&out).into_owned(), true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (String::from_utf8_lossy(&out).into_owned(), true);
            }
            Err(_) => return (String::from_utf8_lossy(&out).into_owned(), false),
        }
    }
}

/// Point 5a: a subscriber cut off for overflow gets its `event: close`, then the server closes
/// the connection (it does not idle in keep-alive).
#[test]
fn an_overflowed_change_stream_is_closed_by_the_server() {
    let dir = shop(
        "overflow",
        serde_json::json!({"changeStreams": {"queueSize": 2}}),
    );
    let (mut child, port) = serve(&dir);
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(
        b"GET /api/Customers/change-stream?_format=event-stream HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .unwrap();
    let mut first = [0u8; 12];
    s.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    let rows: Vec<String> = (0..200)
        .map(|i| format!(r#"{{"name":"n{i}","email":"e"}}"#))
        .collect();
    let (status, _) = request(
        port,
        "POST",
        "/api/Customers",
        &format!("[{}]", rows.join(",")),
    )
    .unwrap();
    assert_eq!(status, 200);
    let t = Instant::now();
    let (got, closed) = read_until_closed(&mut s, Duration::from_secs(3));
    assert!(
        got.contains("event: close\ndata: {\"lastEventId\":"),
        "no close event: {got:?}"
    );
    assert!(got.contains(r#""reason":"overflow"}"#), "{got:?}");
    assert!(
        closed,
        "the connection is still open {:?} later",
        t.elapsed()
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Point 5b: a chunked body over the size limit gets its 413 and the connection is closed,
/// though the client never ends its body.
#[test]
fn an_oversized_chunked_body_gets_413_and_a_closed_connection() {
    let dir = shop("chunked", serde_json::json!({}));
    let (mut child, port) = serve(&dir);
    for connection in ["Connection: close\r\n", ""] {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(
            format!(
                "POST /api/Customers HTTP/1.1\r\nHost: x\r\n{connection}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
        let chunk = vec![b' '; 8192];
        for _ in 0..16 {
            let mut c = format!("{:x}\r\n", chunk.len()).into_bytes();
            c.extend_from_slice(&chunk);
            c.extend_from_slice(b"\r\n");
            if s.write_all(&c).is_err() {
                break; // the server already closed
            }
        }
        // No final chunk: the body never ends.
        let (got, closed) = read_until_closed(&mut s, Duration::from_secs(3));
        assert!(
            got.starts_with("HTTP/1.1 413 Payload Too Large\r\n"),
            "{got:?}"
        );
        assert!(
            got.ends_with(r#"{"error":{"statusCode":413,"name":"PayloadTooLargeError","message":"request entity too large"}}"#),
            "{got:?}"
        );
        assert!(closed, "{connection:?}: the connection is still open");
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
