//! Durability under crashes: `oxbow serve` is killed with SIGKILL while clients write; after a
//! restart every write that was answered 2xx is there, whole, and the server takes writes again.
//!
//! `cargo test` runs 3 cycles per connector; `bench/crash.sh` runs 20 or more
//! (`OXBOW_CRASH_CYCLES`). PostgreSQL runs when `OXBOW_TEST_POSTGRES` points at a server.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common;
use common::{drop_schema, postgres_url, request, serve};

const WRITERS: usize = 8;

fn crash_schema() -> String {
    format!("oxbow_crash_{}", std::process::id())
}

fn app(connector: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("oxbow-crash-{connector}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for d in ["server", "models", "data"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    let ds = match connector {
        "memory" => r#"{"db":{"connector":"memory","file":"data/db.json"}}"#.to_owned(),
        "sqlite" => r#"{"db":{"connector":"sqlite","file":"data/db.sqlite"}}"#.to_owned(),
        "postgresql" => serde_json::json!({"db": {
            "connector": "postgresql",
            "url": postgres_url("the PostgreSQL crash test").expect("checked by the caller"),
            "schema": crash_schema(),
        }})
        .to_string(),
        other => panic!("unknown connector {other}"),
    };
    std::fs::write(dir.join("server/datasources.json"), ds).unwrap();
    std::fs::write(
        dir.join("server/model-config.json"),
        r#"{"_meta":{"sources":["../models"]},"Note":{"dataSource":"db"}}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("models/note.json"),
        r#"{"name":"Note","properties":{"text":{"type":"string","required":true},"n":{"type":"number"},"body":{"type":"string"}}}"#,
    )
    .unwrap();
    dir
}

/// Runs `cycles` kill-and-restart cycles; returns the number of acknowledged writes checked.
fn crash_cycles(connector: &str, cycles: usize) -> usize {
    let dir = app(connector);
    let acknowledged: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    for cycle in 0..cycles {
        let (mut child, port) = serve(&dir);
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let stop = stop.clone();
                let acked = acknowledged.clone();
                std::thread::spawn(move || {
                    let mut seq = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        seq += 1;
                        let text = format!("c{cycle}-w{w}-{seq}");
                        let body =
                            format!(r#"{{"text":"{text}","n":{seq},"body":"{text}|{seq}"}}"#);
                        match request(port, "POST", "/api/Notes", &body) {
                            Some((status, _)) if (200..300).contains(&status) => {
                                acked.lock().unwrap().push((text, seq));
                            }
                            Some((status, body)) => panic!("write answered {status}: {body}"),
                            None => break, // the server is gone
                        }
                    }
                })
            })
            .collect();
        // Kill while the writers are in full flow, at a different moment each cycle.
        std::thread::sleep(Duration::from_millis(150 + (cycle as u64 * 37) % 200));
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.join().expect("a writer panicked");
        }
        verify(&dir, connector, &acknowledged.lock().unwrap(), cycle);
    }
    let n = acknowledged.lock().unwrap().len();
    let _ = std::fs::remove_dir_all(&dir);
    n
}

/// Restarts the server and checks every acknowledged write is stored whole.
fn verify(dir: &Path, connector: &str, acked: &[(String, u64)], cycle: usize) {
    let (mut child, port) = serve(dir);
    let (status, body) = request(port, "GET", "/api/Notes", "").expect("list after restart");
    assert_eq!(status, 200, "{body}");
    let rows: Vec<Value> = serde_json::from_str(&body).expect("a JSON list");
    let mut seen = HashSet::new();
    for r in &rows {
        let text = r["text"].as_str().expect("text");
        let n = r["n"].as_u64().expect("n");
        assert_eq!(
            r["body"].as_str(),
            Some(format!("{text}|{n}").as_str()),
            "{connector}, cycle {cycle}: a half-written row {r}"
        );
        assert!(
            seen.insert(text.to_owned()),
            "{connector}: {text} stored twice"
        );
    }
    let lost: Vec<&String> = acked
        .iter()
        .map(|(t, _)| t)
        .filter(|t| !seen.contains(*t))
        .collect();
    assert!(
        lost.is_empty(),
        "{connector}, cycle {cycle}: {} acknowledged writes lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    // And it still takes writes.
    let (status, body) = request(
        port,
        "POST",
        "/api/Notes",
        &format!(r#"{{"text":"probe-{cycle}","n":0,"body":"probe-{cycle}|0"}}"#),
    )
    .expect("a write after restart");
    assert_eq!(status, 200, "{body}");
    child.kill().unwrap();
    child.wait().unwrap();
}

fn cycles() -> usize {
    std::env::var("OXBOW_CRASH_CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(3)
}

#[test]
fn memory_file_keeps_acknowledged_writes_through_sigkill() {
    let started = Instant::now();
    let n = crash_cycles("memory", cycles());
    eprintln!(
        "memory+file: {} cycles, {n} acknowledged writes all present ({:.1} s)",
        cycles(),
        started.elapsed().as_secs_f64()
    );
    assert!(n > 0, "no write was acknowledged");
}

#[test]
fn postgres_keeps_acknowledged_writes_through_sigkill() {
    let Some(url) = postgres_url("the PostgreSQL crash test") else {
        return;
    };
    drop_schema(&url, &crash_schema());
    let started = Instant::now();
    let n = crash_cycles("postgresql", cycles());
    drop_schema(&url, &crash_schema());
    eprintln!(
        "postgresql: {} cycles, {n} acknowledged writes all present ({:.1} s)",
        cycles(),
        started.elapsed().as_secs_f64()
    );
    assert!(n > 0, "no write was acknowledged");
}

#[test]
fn sqlite_keeps_acknowledged_writes_through_sigkill() {
    let started = Instant::now();
    let n = crash_cycles("sqlite", cycles());
    eprintln!(
        "sqlite: {} cycles, {n} acknowledged writes all present ({:.1} s)",
        cycles(),
        started.elapsed().as_secs_f64()
    );
    assert!(n > 0, "no write was acknowledged");
}
