//! Hostile clients against a real `oxbow serve` over TCP (issue 21): a big array create on a
//! memory datasource with a `file` (one file write, other requests keep being answered).

mod common;

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
