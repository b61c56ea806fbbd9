//! Several `oxbow serve` processes on one PostgreSQL database: a write through either reaches
//! change-stream subscribers on both, in one order with the same ids, without duplicates;
//! `Last-Event-ID` resumes on either; a process that was killed and restarted loses nothing.
//!
//! Runs when `OXBOW_TEST_POSTGRES` points at a server (`.ci/run` sets it).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, mpsc};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common;
use common::{postgres_url, serve};

fn request(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    common::request(port, method, path, body).expect("the server answers")
}

/// One server-sent event: its `id:`, `event:` and `data:` (and when it arrived, which
/// equality ignores).
#[derive(Debug, Clone)]
struct Event {
    id: Option<u64>,
    kind: String,
    data: String,
    at: Instant,
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        (self.id, &self.kind, &self.data) == (other.id, &other.kind, &other.data)
    }
}

/// Opens a change stream (optionally resuming after `last`); its events arrive on the channel.
fn subscribe(port: u16, last: Option<u64>) -> mpsc::Receiver<Event> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let resume = last.map_or(String::new(), |l| format!("Last-Event-ID: {l}\r\n"));
    write!(
        s,
        "GET /api/Notes/change-stream?_format=event-stream HTTP/1.1\r\nHost: x\r\n{resume}\r\n"
    )
    .unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut r = BufReader::new(s);
        let mut line = String::new();
        // Headers.
        loop {
            line.clear();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
        }
        // Chunked body; events split on blank lines.
        let mut text = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let Ok(size) = usize::from_str_radix(line.trim(), 16) else {
                return;
            };
            let mut chunk = vec![0; size + 2];
            if r.read_exact(&mut chunk).is_err() || size == 0 {
                return;
            }
            text.push_str(std::str::from_utf8(&chunk[..size]).unwrap());
            while let Some(end) = text.find("\n\n") {
                let block: String = text.drain(..end + 2).collect();
                let mut ev = Event {
                    id: None,
                    kind: String::new(),
                    data: String::new(),
                    at: Instant::now(),
                };
                for l in block.lines() {
                    if let Some(v) = l.strip_prefix("id: ") {
                        ev.id = v.parse().ok();
                    } else if let Some(v) = l.strip_prefix("event: ") {
                        ev.kind = v.to_owned();
                    } else if let Some(v) = l.strip_prefix("data: ") {
                        ev.data = v.to_owned();
                    }
                }
                if !ev.kind.is_empty() && tx.send(ev).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

/// The next `n` events of a stream (panics after 20 s).
fn take(rx: &mpsc::Receiver<Event>, n: usize, what: &str) -> Vec<Event> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(e) => out.push(e),
            Err(_) => panic!("{what}: {} of {n} events after 20 s: {out:?}", out.len()),
        }
    }
    out
}

/// Nothing more arrives within `quiet`.
fn assert_quiet(rx: &mpsc::Receiver<Event>, quiet: Duration, what: &str) {
    if let Ok(e) = rx.recv_timeout(quiet) {
        panic!("{what}: an extra event {e:?}");
    }
}

/// Each test's own schema (the tests of this file run in parallel).
fn schema(tag: &str) -> String {
    format!("oxbow_{tag}_{}", std::process::id())
}

fn drop_schema(url: &str, tag: &str) {
    common::drop_schema(url, &schema(tag));
}

fn app(url: &str, tag: &str) -> PathBuf {
    app_with(url, tag, serde_json::json!({}))
}

/// The app with more datasource settings (`cacheRows`).
fn app_with(url: &str, tag: &str, extra: Value) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("oxbow-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for d in ["server", "models"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    let mut db = serde_json::json!({"connector": "postgresql", "url": url, "schema": schema(tag)});
    if let (Some(db), Some(extra)) = (db.as_object_mut(), extra.as_object()) {
        db.extend(extra.clone());
    }
    let ds = serde_json::json!({ "db": db });
    std::fs::write(dir.join("server/datasources.json"), ds.to_string()).unwrap();
    std::fs::write(
        dir.join("server/model-config.json"),
        r#"{"_meta":{"sources":["../models"]},"Note":{"dataSource":"db"}}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("models/note.json"),
        r#"{"name":"Note","properties":{"text":{"type":"string","required":true},"n":{"type":"number"}}}"#,
    )
    .unwrap();
    dir
}

const WRITERS: usize = 4;
const PER_WRITER: usize = 25;

#[test]
fn writes_through_any_instance_reach_every_instance_in_one_order() {
    let Some(url) = postgres_url("the several-instances test") else {
        return;
    };
    drop_schema(&url, "instances");
    let dir = app(&url, "instances");
    let (mut a, port_a) = serve(&dir);
    let (mut b, port_b) = serve(&dir);
    let on_a = subscribe(port_a, None);
    let on_b = subscribe(port_b, None);
    // Both subscriptions are open before the first write.
    std::thread::sleep(Duration::from_millis(200));

    // Each writer creates a note through one instance and patches it through the other.
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (first, second) = if w % 2 == 0 {
                (port_a, port_b)
            } else {
                (port_b, port_a)
            };
            std::thread::spawn(move || {
                for i in 0..PER_WRITER {
                    let (status, body) = request(
                        first,
                        "POST",
                        "/api/Notes",
                        &format!(r#"{{"text":"w{w}-{i}","n":0}}"#),
                    );
                    assert_eq!(status, 200, "{body}");
                    let id = serde_json::from_str::<Value>(&body).unwrap()["id"].clone();
                    let (status, body) =
                        request(second, "PATCH", &format!("/api/Notes/{id}"), r#"{"n":1}"#);
                    assert_eq!(status, 200, "{body}");
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("a writer failed");
    }
    let n = WRITERS * PER_WRITER * 2;
    let got_a = take(&on_a, n, "stream on A");
    let got_b = take(&on_b, n, "stream on B");
    assert_quiet(&on_a, Duration::from_millis(300), "stream on A");
    assert_quiet(&on_b, Duration::from_millis(300), "stream on B");

    // Same events, same ids 1..n, same order, on both.
    assert_eq!(got_a, got_b, "the instances disagree");
    let ids: Vec<u64> = got_a.iter().map(|e| e.id.unwrap()).collect();
    assert_eq!(ids, (1..=n as u64).collect::<Vec<_>>());
    // Every note's create precedes its update; no change twice.
    let mut seen = std::collections::HashMap::new();
    for e in &got_a {
        let v: Value = serde_json::from_str(&e.data).unwrap();
        let text = v["data"]["text"].as_str().unwrap().to_owned();
        let kind = v["type"].as_str().unwrap().to_owned();
        let before = seen.insert(text.clone(), kind.clone());
        match kind.as_str() {
            "create" => assert_eq!(before, None, "{text} created twice"),
            "update" => assert_eq!(before.as_deref(), Some("create"), "{text}: {e:?}"),
            other => panic!("unexpected change type {other}"),
        }
    }
    assert_eq!(seen.len(), WRITERS * PER_WRITER);

    // Resuming on B with an id A handed out replays exactly what followed it.
    let half = n as u64 / 2;
    let resumed = subscribe(port_b, Some(half));
    let replay = take(&resumed, n - half as usize, "resumed on B");
    assert_eq!(replay, got_a[half as usize..]);
    assert_quiet(&resumed, Duration::from_millis(300), "resumed on B");

    // B dies; writes go on through A; a new B resumes where its client left off.
    b.kill().unwrap();
    b.wait().unwrap();
    for i in 0..10 {
        let (status, body) = request(
            port_a,
            "POST",
            "/api/Notes",
            &format!(r#"{{"text":"late-{i}","n":2}}"#),
        );
        assert_eq!(status, 200, "{body}");
    }
    let late_on_a = take(&on_a, 10, "late writes on A");
    let (mut b, port_b) = serve(&dir);
    let after_restart = subscribe(port_b, Some(n as u64));
    assert_eq!(take(&after_restart, 10, "B after restart"), late_on_a);
    assert_eq!(late_on_a.last().unwrap().id, Some(n as u64 + 10));

    // An id the log never handed out: the client must refetch.
    let future = subscribe(port_b, Some(n as u64 + 1000));
    let reset = take(&future, 1, "resume from the future");
    assert_eq!(reset[0].kind, "reset", "{reset:?}");

    a.kill().unwrap();
    b.kill().unwrap();
    let _ = a.wait();
    let _ = b.wait();
    drop_schema(&url, "instances");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A keep-alive HTTP/1.1 connection for the delivery benchmark.
struct Conn(BufReader<TcpStream>);

impl Conn {
    fn open(port: u16) -> Self {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Self(BufReader::new(s))
    }

    fn post(&mut self, path: &str, body: &str) -> u16 {
        write!(
            self.0.get_mut(),
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut line = String::new();
        self.0.read_line(&mut line).unwrap();
        let status = line[9..12].parse().unwrap();
        let mut length = 0;
        loop {
            line.clear();
            self.0.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        self.0.read_exact(&mut body).unwrap();
        status
    }
}

/// Cross-instance delivery: writes at a fixed rate through instance A, a subscriber on
/// instance B; how long from sending each write to B's event. A benchmark, not a check:
/// `bench/delivery.sh` runs it on a release build (`DELIVERY_RATE`, `DELIVERY_SECONDS`).
#[test]
#[ignore = "timing; run by bench/delivery.sh"]
fn cross_instance_delivery_latency() {
    let Some(url) = postgres_url("the delivery benchmark") else {
        return;
    };
    let rate: u64 = std::env::var("DELIVERY_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let seconds: u64 = std::env::var("DELIVERY_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let total = (rate * seconds) as usize;
    drop_schema(&url, "delivery");
    let dir = app(&url, "delivery");
    let (mut a, port_a) = serve(&dir);
    let (mut b, port_b) = serve(&dir);
    let on_b = subscribe(port_b, None);
    std::thread::sleep(Duration::from_millis(300));

    let sent: Arc<Vec<OnceLock<Instant>>> = Arc::new((0..total).map(|_| OnceLock::new()).collect());
    let answered: Arc<Vec<OnceLock<Instant>>> =
        Arc::new((0..total).map(|_| OnceLock::new()).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now() + Duration::from_millis(100);
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let writers: Vec<_> = (0..32)
        .map(|_| {
            let (sent, answered, next) = (sent.clone(), answered.clone(), next.clone());
            std::thread::spawn(move || {
                let mut conn = Conn::open(port_a);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let due = start + period * i as u32;
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let _ = sent[i].set(Instant::now());
                    let status = conn.post("/api/Notes", &format!(r#"{{"text":"d","n":{i}}}"#));
                    assert_eq!(status, 200);
                    let _ = answered[i].set(Instant::now());
                }
            })
        })
        .collect();
    let events = take(&on_b, total, "events on B");
    let elapsed = start.elapsed();
    for w in writers {
        w.join().expect("a writer failed");
    }
    let mut latencies: Vec<Duration> = events
        .iter()
        .map(|e| {
            let v: Value = serde_json::from_str(&e.data).unwrap();
            let i = v["data"]["n"].as_u64().unwrap() as usize;
            e.at.duration_since(*sent[i].get().unwrap())
        })
        .collect();
    let mut writes: Vec<Duration> = (0..total)
        .map(|i| {
            answered[i]
                .get()
                .unwrap()
                .duration_since(*sent[i].get().unwrap())
        })
        .collect();
    let ms = |v: &mut Vec<Duration>| {
        v.sort();
        let pct = |p: f64| v[((v.len() as f64 * p) as usize).min(v.len() - 1)].as_secs_f64() * 1e3;
        format!(
            "p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            pct(0.5),
            pct(0.9),
            pct(0.99),
            pct(1.0)
        )
    };
    println!(
        "cross-instance delivery: {total} writes at {rate}/s requested, {:.0}/s achieved\n  \
         write on A -> event on B: {}\n  write on A answered:      {}",
        total as f64 / elapsed.as_secs_f64(),
        ms(&mut latencies),
        ms(&mut writes),
    );
    a.kill().unwrap();
    b.kill().unwrap();
    let _ = a.wait();
    let _ = b.wait();
    drop_schema(&url, "delivery");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Polls `GET path` on `port` until its body satisfies `ok`; how long that took.
fn until(port: u16, path: &str, ok: impl Fn(u16, &str) -> bool, what: &str) -> Duration {
    let start = Instant::now();
    loop {
        let (status, body) = request(port, "GET", path, "");
        if ok(status, &body) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{what}: still {status} {body} after 5 s"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// With `cacheRows`, rows read by id are cached per process; a write through this process is
/// seen at once, a write through another one as soon as its change arrives through the log.
#[test]
fn row_caches_follow_writes_through_every_instance() {
    let Some(url) = postgres_url("the row cache test") else {
        return;
    };
    drop_schema(&url, "cache");
    let dir = app_with(&url, "cache", serde_json::json!({"cacheRows": 100}));
    let (mut a, port_a) = serve(&dir);
    let (mut b, port_b) = serve(&dir);
    let (status, body) = request(port_a, "POST", "/api/Notes", r#"{"text":"v1","n":1}"#);
    assert_eq!(status, 200, "{body}");
    // Cached on both.
    for port in [port_a, port_b] {
        until(
            port,
            "/api/Notes/1",
            |s, b| s == 200 && b.contains("\"v1\""),
            "first read",
        );
        let (_, body) = request(port, "GET", "/api/Notes/1", "");
        assert!(body.contains("\"v1\""), "{body}");
    }
    // Through A: A answers the new row at once.
    let (status, _) = request(port_a, "PATCH", "/api/Notes/1", r#"{"text":"v2"}"#);
    assert_eq!(status, 200);
    let (_, body) = request(port_a, "GET", "/api/Notes/1", "");
    assert!(body.contains("\"v2\""), "A after its own write: {body}");
    // B hears of it through the log.
    let lag = until(
        port_b,
        "/api/Notes/1",
        |_, b| b.contains("\"v2\""),
        "B after A's write",
    );
    eprintln!("B saw A's update after {lag:?}");
    // updateAll and delete through B reach A's cache.
    let (status, _) = request(
        port_b,
        "POST",
        "/api/Notes/update?where=%7B%22n%22%3A1%7D",
        r#"{"text":"v3"}"#,
    );
    assert_eq!(status, 200);
    until(
        port_a,
        "/api/Notes/1",
        |_, b| b.contains("\"v3\""),
        "A after B's updateAll",
    );
    let (status, _) = request(port_b, "DELETE", "/api/Notes/1", "");
    assert_eq!(status, 200);
    until(
        port_a,
        "/api/Notes/1",
        |s, _| s == 404,
        "A after B's delete",
    );
    a.kill().unwrap();
    b.kill().unwrap();
    let _ = a.wait();
    let _ = b.wait();
    drop_schema(&url, "cache");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Notifications are only a signal: with every listening connection cut (as when the database
/// restarts or a proxy drops idle connections), changes keep arriving, in order, once, while
/// the listeners reconnect; and a change whose writer died before numbering it is numbered by
/// the instances' periodic step.
#[test]
fn changes_arrive_while_listeners_reconnect() {
    let Some(url) = postgres_url("the listener failover test") else {
        return;
    };
    drop_schema(&url, "failover");
    let dir = app(&url, "failover");
    let (mut a, port_a) = serve(&dir);
    let (mut b, port_b) = serve(&dir);
    let on_b = subscribe(port_b, None);
    std::thread::sleep(Duration::from_millis(200));
    let write = |i: usize| {
        let (status, body) = request(
            port_a,
            "POST",
            "/api/Notes",
            &format!(r#"{{"text":"f{i}","n":{i}}}"#),
        );
        assert_eq!(status, 200, "{body}");
    };
    (0..5).for_each(write);
    let before = take(&on_b, 5, "before the cut");
    // Cut both instances' listening connections, then write at once.
    let listeners = format!("oxbow-listen:{}", schema("failover"));
    let cut = common::terminate(&url, &listeners);
    assert_eq!(cut, 2, "one listening connection per instance");
    (5..10).for_each(write);
    let after = take(&on_b, 5, "after the cut");
    assert_quiet(&on_b, Duration::from_millis(1500), "after the cut");
    let ids: Vec<Option<u64>> = before.iter().chain(&after).map(|e| e.id).collect();
    assert_eq!(ids, (1..=10).map(Some).collect::<Vec<_>>());
    // A change committed by a writer that died before numbering it (appended here by hand,
    // as the writer's transaction would have): the instances' periodic step numbers it.
    common::sql(
        &url,
        &format!(
            "INSERT INTO {}._oxbow_changes (model, kind, target, data, is_record) \
             VALUES ('Note', 'create', '99', '{{\"text\":\"orphan\",\"n\":0,\"id\":99}}', true)",
            schema("failover")
        ),
    );
    let orphan = take(&on_b, 1, "the orphaned change");
    assert_eq!(orphan[0].id, Some(11));
    assert_eq!(
        orphan[0].data,
        r#"{"target":99,"data":{"text":"orphan","n":0,"id":99},"type":"create"}"#
    );
    a.kill().unwrap();
    b.kill().unwrap();
    let _ = a.wait();
    let _ = b.wait();
    drop_schema(&url, "failover");
    let _ = std::fs::remove_dir_all(&dir);
}
