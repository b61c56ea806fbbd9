//! `GET/POST /api/MyModels/change-stream` over real sockets: LoopBack 3's headers and bytes for
//! every write route (WIRE.md A.6), `options` filtering, the JSON-lines variant, and cleanup.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common;

use common::{App, repo};

/// A copy of the default app with `changeStreams` (and MyModel settings) changed.
fn app_with(change_streams: &str, model_extra: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("oxbow-cs-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("server")).unwrap();
    std::fs::create_dir_all(dir.join("models")).unwrap();
    for f in ["datasources.json", "model-config.json", "middleware.json"] {
        std::fs::copy(repo().join("server").join(f), dir.join("server").join(f)).unwrap();
    }
    let config = std::fs::read_to_string(repo().join("server/config.json")).unwrap();
    let config = config.replacen(
        '{',
        &format!("{{\n  \"changeStreams\": {change_streams},"),
        1,
    );
    std::fs::write(dir.join("server/config.json"), config).unwrap();
    let model = std::fs::read_to_string(repo().join("models/my-model.json")).unwrap();
    let model = if model_extra.is_empty() {
        model
    } else {
        model.replacen('{', &format!("{{\n  {model_extra},"), 1)
    };
    std::fs::write(dir.join("models/my-model.json"), model).unwrap();
    dir
}

fn start() -> App {
    common::start(None)
}

fn start_in(dir: &std::path::Path) -> App {
    common::start(Some(dir))
}

fn call(port: u16, method: &str, path: &str, body: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

/// An open stream: the response head, and the de-chunked body read so far.
struct Stream {
    sock: TcpStream,
    head: String,
    raw: Vec<u8>,
}

impl Stream {
    fn open(port: u16, request: &str) -> Self {
        let mut sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        sock.write_all(request.as_bytes()).unwrap();
        let mut st = Self {
            sock,
            head: String::new(),
            raw: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !String::from_utf8_lossy(&st.raw).contains("\r\n\r\n") && Instant::now() < deadline {
            st.read_some();
        }
        let text = String::from_utf8_lossy(&st.raw).into_owned();
        let (head, rest) = text.split_once("\r\n\r\n").expect("a response head");
        st.head = head.to_owned();
        st.raw = rest.as_bytes().to_vec();
        st
    }

    fn read_some(&mut self) {
        let mut buf = [0u8; 4096];
        if let Ok(n) = self.sock.read(&mut buf) {
            self.raw.extend_from_slice(&buf[..n]);
        }
    }

    /// The body so far with chunk framing removed.
    fn body(&self) -> String {
        if !self
            .head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            return String::from_utf8_lossy(&self.raw).into_owned();
        }
        let mut out = Vec::new();
        let mut rest = &self.raw[..];
        while let Some(pos) = rest.windows(2).position(|w| w == b"\r\n") {
            let Ok(len) =
                usize::from_str_radix(std::str::from_utf8(&rest[..pos]).unwrap_or("").trim(), 16)
            else {
                break;
            };
            let start = pos + 2;
            if rest.len() < start + len + 2 {
                break;
            }
            out.extend_from_slice(&rest[start..start + len]);
            rest = &rest[start + len + 2..];
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Reads until the body holds `want`, or 5 s passed; returns the body.
    fn wait_for(&mut self, want: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.body().contains(want) && Instant::now() < deadline {
            self.read_some();
        }
        self.body()
    }
}

const SSE: &str =
    "GET /api/MyModels/change-stream?_format=event-stream HTTP/1.1\r\nHost: x\r\n\r\n";

#[test]
fn event_stream_bytes_match_loopback() {
    // With ids off (and no retry/heartbeat), the bytes are LoopBack's exactly.
    let server = start_in(&app_with(
        r#"{"ids": false, "retryMs": 0, "heartbeatSeconds": 0}"#,
        "",
    ));
    let mut s = Stream::open(server.port, SSE);
    let head = s.head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200 ok"), "{head}");
    for h in [
        "content-type: text/event-stream\r\n",
        "cache-control: no-cache, no-transform",
        "content-encoding: x-no-compression",
        "transfer-encoding: chunked",
    ] {
        assert!(head.contains(h), "missing `{h}` in\n{head}");
    }
    assert_eq!(s.wait_for(":ok\n\n"), ":ok\n\n");

    let port = server.port;
    assert_eq!(
        call(port, "POST", "/api/MyModels", r#"{"foo":"baz"}"#),
        r#"{"foo":"baz","id":2}"#
    );
    call(port, "PATCH", "/api/MyModels/2", r#"{"foo":"qux"}"#);
    call(
        port,
        "POST",
        "/api/MyModels/update?where=%7B%22foo%22%3A%22qux%22%7D",
        r#"{"foo":"all"}"#,
    );
    call(port, "PUT", "/api/MyModels/2", r#"{"foo":"rep"}"#);
    call(port, "DELETE", "/api/MyModels/2", "");
    call(
        port,
        "POST",
        "/api/MyModels",
        r#"{"id":9,"foo":"rejected"}"#,
    ); // 422: no event
    let expected = concat!(
        ":ok\n\n",
        "event: data\ndata: {\"target\":2,\"data\":{\"foo\":\"baz\",\"id\":2},\"type\":\"create\"}\n\n",
        "event: data\ndata: {\"target\":2,\"data\":{\"foo\":\"qux\",\"id\":2},\"type\":\"update\"}\n\n",
        "event: data\ndata: {\"where\":{\"foo\":\"qux\"},\"data\":{\"foo\":\"all\"},\"type\":\"create\"}\n\n",
        "event: data\ndata: {\"target\":2,\"data\":{\"foo\":\"rep\",\"id\":2},\"type\":\"update\"}\n\n",
        "event: data\ndata: {\"target\":2,\"where\":{\"id\":2},\"type\":\"remove\"}\n\n",
    );
    assert_eq!(s.wait_for("\"remove\"}\n\n"), expected);
    call(port, "POST", "/api/MyModels", r#"{"foo":"last"}"#);
    assert!(s.wait_for("last").ends_with("event: data\ndata: {\"target\":3,\"data\":{\"foo\":\"last\",\"id\":3},\"type\":\"create\"}\n\n"));
}

#[test]
fn options_filter_events_and_other_framings() {
    let server = start_in(&app_with(r#"{"ids": false, "retryMs": 0}"#, ""));
    let port = server.port;
    // Without `_format`, no Accept header means SSE too; options from the query.
    let mut filtered = Stream::open(
        port,
        "GET /api/MyModels/change-stream?options=%7B%22where%22%3A%7B%22foo%22%3A%22keep%22%7D%7D HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    // POST with the options in the JSON body.
    let body = r#"{"options":{"where":{"foo":"keep"}}}"#;
    let mut posted = Stream::open(
        port,
        &format!(
            "POST /api/MyModels/change-stream?_format=event-stream HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    // Accept: application/json: LoopBack's JSON lines for its Node client.
    let mut lines = Stream::open(
        port,
        "GET /api/MyModels/change-stream HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n\r\n",
    );
    assert!(
        lines
            .head
            .to_ascii_lowercase()
            .contains("content-type: application/json; boundary=nl"),
        "{}",
        lines.head
    );
    for s in [&mut filtered, &mut posted] {
        assert_eq!(s.wait_for(":ok\n\n"), ":ok\n\n");
    }
    call(
        port,
        "POST",
        "/api/MyModels",
        r#"[{"foo":"keep"},{"foo":"drop"}]"#,
    );
    call(port, "DELETE", "/api/MyModels/3", "");
    call(port, "PATCH", "/api/MyModels/2", r#"{"foo":"keep"}"#);
    let want = concat!(
        ":ok\n\n",
        "event: data\ndata: {\"target\":2,\"data\":{\"foo\":\"keep\",\"id\":2},\"type\":\"create\"}\n\n",
        "event: data\ndata: {\"target\":2,\"data\":{\"foo\":\"keep\",\"id\":2},\"type\":\"update\"}\n\n",
    );
    assert_eq!(filtered.wait_for("\"update\"}\n\n"), want);
    assert_eq!(posted.wait_for("\"update\"}\n\n"), want);
    let got = lines.wait_for("\"update\"}]\n");
    let ls: Vec<&str> = got.lines().collect();
    assert_eq!(ls.len(), 5, "{got}");
    let id = &ls[0][2..28];
    assert_eq!(
        ls[0],
        format!("[\"{id}\",\"new\",{{\"opts\":{{\"writable\":false,\"readable\":true}}}}]")
    );
    assert_eq!(
        ls[3],
        format!("[\"{id}\",\"data\",{{\"target\":3,\"where\":{{\"id\":3}},\"type\":\"remove\"}}]")
    );
    // A malformed `options` is LoopBack's 400.
    assert_eq!(
        call(
            port,
            "GET",
            "/api/MyModels/change-stream?_format=event-stream&options=notjson",
            ""
        ),
        r#"{"error":{"statusCode":400,"name":"Error","message":"Value is not an object."}}"#
    );
}

#[test]
fn streams_keep_working_after_many_disconnects() {
    let server = start();
    let port = server.port;
    for _ in 0..50 {
        let mut s = Stream::open(port, SSE);
        s.wait_for(":ok\n\n");
        drop(s);
    }
    // After the churn a new stream still gets every change (the subscription count itself is
    // checked in `oxbow-core`'s change feed tests).
    let mut s = Stream::open(port, SSE);
    s.wait_for(":ok\n\n");
    call(port, "POST", "/api/MyModels", r#"{"foo":"after"}"#);
    assert!(s.wait_for("after").contains("\"foo\":\"after\""));
}

/// The `id:` of every event in a body.
fn ids(body: &str) -> Vec<u64> {
    body.lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .map(|i| i.parse().unwrap())
        .collect()
}

#[test]
fn events_carry_ids_and_a_reconnect_resumes_without_gap_or_duplicate() {
    let server = start();
    let port = server.port;
    let mut s = Stream::open(port, SSE);
    assert!(
        s.head
            .to_ascii_lowercase()
            .contains("x-accel-buffering: no"),
        "{}",
        s.head
    );
    assert_eq!(s.wait_for("retry: 2000\n\n"), ":ok\n\nretry: 2000\n\n");
    call(port, "POST", "/api/MyModels", r#"{"foo":"a"}"#);
    call(port, "POST", "/api/MyModels", r#"{"foo":"b"}"#);
    let body = s.wait_for("\"b\"");
    // The seed line's create was event 1.
    assert!(body.ends_with("id: 3\nevent: data\ndata: {\"target\":3,\"data\":{\"foo\":\"b\",\"id\":3},\"type\":\"create\"}\n\n"), "{body}");
    drop(s);
    // Missed while disconnected:
    call(port, "POST", "/api/MyModels", r#"{"foo":"c"}"#);
    call(port, "DELETE", "/api/MyModels/2", "");
    let mut again = Stream::open(
        port,
        &SSE.replace("\r\n\r\n", "\r\nLast-Event-ID: 3\r\n\r\n"),
    );
    again.wait_for("\"remove\"");
    call(port, "POST", "/api/MyModels", r#"{"foo":"d"}"#);
    let body = again.wait_for("\"d\"");
    assert_eq!(ids(&body), [4, 5, 6], "{body}");
    // The same through the query parameter.
    let mut q = Stream::open(
        port,
        "GET /api/MyModels/change-stream?lastEventId=5 HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_eq!(ids(&q.wait_for("\"d\"")), [6]);
}

#[test]
fn an_id_past_retention_gets_a_reset() {
    let server = start_in(&app_with(r#"{"retention": {"count": 2}}"#, ""));
    let port = server.port;
    for f in ["a", "b", "c", "d"] {
        call(
            port,
            "POST",
            "/api/MyModels",
            &format!(r#"{{"foo":"{f}"}}"#),
        );
    }
    // Events 1..5 were published; 4 and 5 are retained. Resuming after 1 lost 2 and 3.
    let mut s = Stream::open(
        port,
        "GET /api/MyModels/change-stream?lastEventId=1 HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    let body = s.wait_for("event: reset");
    assert!(
        body.contains("id: 5\nevent: reset\ndata: {\"lastEventId\":5,\"reason\":"),
        "{body}"
    );
    // An id this run never handed out (a restart) resets too; a current one replays nothing.
    let mut s = Stream::open(
        port,
        "GET /api/MyModels/change-stream?lastEventId=99 HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert!(s.wait_for("event: reset").contains("event: reset"));
    let mut s = Stream::open(
        port,
        "GET /api/MyModels/change-stream?lastEventId=4 HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_eq!(ids(&s.wait_for("\"d\"")), [5]);
}

#[test]
fn idle_streams_get_heartbeats() {
    let server = start_in(&app_with(r#"{"heartbeatSeconds": 0.2}"#, ""));
    let mut s = Stream::open(server.port, SSE);
    let started = Instant::now();
    assert!(s.wait_for(":heartbeat\n\n").contains(":heartbeat\n\n"));
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn per_record_streams_see_only_their_record_deletes_included() {
    let server = start();
    let port = server.port;
    call(port, "POST", "/api/MyModels", r#"{"foo":"two"}"#);
    let mut s = Stream::open(
        port,
        "GET /api/MyModels/2/change-stream?_format=event-stream HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    s.wait_for("retry");
    call(port, "PATCH", "/api/MyModels/1", r#"{"foo":"other"}"#);
    call(port, "PATCH", "/api/MyModels/2", r#"{"foo":"mine"}"#);
    call(port, "DELETE", "/api/MyModels/2", "");
    let body = s.wait_for("remove");
    assert!(!body.contains("other"), "{body}");
    assert!(
        body.contains("{\"target\":2,\"data\":{\"foo\":\"mine\",\"id\":2},\"type\":\"update\"}"),
        "{body}"
    );
    assert!(
        body.contains("{\"target\":2,\"where\":{\"id\":2},\"type\":\"remove\"}"),
        "{body}"
    );
    // A `where` on the id selects deletes too (LoopBack never delivers deletes to a `where`).
    let mut w = Stream::open(
        port,
        "GET /api/MyModels/change-stream?options=%7B%22where%22%3A%7B%22id%22%3A1%7D%7D HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    w.wait_for("retry");
    call(port, "DELETE", "/api/MyModels/1", "");
    assert!(
        w.wait_for("remove")
            .contains("{\"target\":1,\"where\":{\"id\":1},\"type\":\"remove\"}")
    );
}

#[test]
fn a_model_can_turn_its_streams_off() {
    let server = start_in(&app_with("{}", r#""changeStream": false"#));
    // No route: as with `sharedMethods` `{"createChangeStream": false}` in LoopBack, GET
    // reaches findById and POST nothing.
    let body = call(server.port, "GET", "/api/MyModels/change-stream", "");
    assert_eq!(
        body,
        r#"{"error":{"statusCode":404,"name":"Error","message":"Unknown \"MyModel\" id \"change-stream\".","code":"MODEL_NOT_FOUND"}}"#
    );
    let body = call(server.port, "POST", "/api/MyModels/change-stream", "");
    assert_eq!(
        body,
        r#"{"error":{"statusCode":404,"name":"Error","message":"Shared class \"MyModel\" has no method handling POST /change-stream"}}"#
    );
}

#[test]
fn a_slow_reader_is_cut_off_with_its_last_id_and_can_resume() {
    let server = start_in(&app_with(
        r#"{"queueSize": 4, "retention": {"count": 10000}}"#,
        "",
    ));
    let port = server.port;
    let mut s = Stream::open(port, SSE);
    s.wait_for("retry");
    // The reader stops reading; big events fill the socket buffers, then its queue.
    let big = format!(r#"{{"foo":"{}"}}"#, "x".repeat(60_000));
    for _ in 0..200 {
        call(port, "POST", "/api/MyModels", &big);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while !s.body().contains("event: close") && Instant::now() < deadline {
        s.read_some();
    }
    let body = s.body();
    let close = body.rsplit("event: close\ndata: ").next().unwrap();
    assert!(
        close.starts_with("{\"lastEventId\":"),
        "no close event: {}",
        &body[body.len().saturating_sub(300)..]
    );
    let last: u64 = close["{\"lastEventId\":".len()..]
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        ids(&body).last(),
        Some(&last),
        "the close event names the last id sent"
    );
    assert!(close.contains("\"reason\":\"overflow\""));
    // Resuming from there loses nothing: the rest up to event 201 arrive.
    let mut again = Stream::open(
        port,
        &SSE.replace("\r\n\r\n", &format!("\r\nLast-Event-ID: {last}\r\n\r\n")),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while ids(&again.body()).last() != Some(&201) && Instant::now() < deadline {
        again.read_some();
    }
    let got = ids(&again.body());
    assert_eq!(got, ((last + 1)..=201).collect::<Vec<_>>());
}

#[test]
fn shutdown_ends_streams_with_their_last_id_and_exits_promptly() {
    let mut server = start();
    let port = server.port;
    let mut s = Stream::open(port, SSE);
    s.wait_for("retry");
    call(port, "POST", "/api/MyModels", r#"{"foo":"z"}"#);
    s.wait_for("\"z\"");
    let started = Instant::now();
    let pid = server.child.id();
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let body = s.wait_for("event: close");
    assert!(
        body.ends_with(
            "retry: 2000\nevent: close\ndata: {\"lastEventId\":2,\"reason\":\"shutdown\"}\n\n"
        ),
        "{body}"
    );
    let status = loop {
        if let Some(st) = server.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "the server did not exit promptly"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}

#[test]
fn with_compression_on_events_stay_live_and_uncompressed() {
    let dir = app_with("{}", "");
    let mw = std::fs::read_to_string(dir.join("server/middleware.json")).unwrap();
    let on = mw.replace(
        "\"compression\": {\n      \"enabled\": false\n    }",
        "\"compression\": {}",
    );
    assert_ne!(on, mw, "the compression entry was switched on");
    std::fs::write(dir.join("server/middleware.json"), on).unwrap();
    let server = start_in(&dir);
    let port = server.port;
    // Ordinary JSON responses of 1 kB and more are compressed (compression's threshold)…
    let get_list = || {
        let mut sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
        sock.write_all(b"GET /api/MyModels HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n").unwrap();
        let mut raw = Vec::new();
        sock.read_to_end(&mut raw).unwrap();
        String::from_utf8_lossy(&raw).to_ascii_lowercase()
    };
    let head = get_list();
    assert!(!head.contains("content-encoding"), "{head}");
    assert!(head.contains("vary: origin, accept-encoding"), "{head}");
    for i in 0..20 {
        call(
            port,
            "POST",
            "/api/MyModels",
            &format!(r#"{{"foo":"{i:0>60}"}}"#),
        );
    }
    let head = get_list();
    assert!(head.contains("content-encoding: gzip"), "{head}");
    // …streams are not, and every event arrives at once.
    for encoding in ["gzip", "br"] {
        let mut s = Stream::open(
            port,
            &format!(
                "GET /api/MyModels/change-stream HTTP/1.1\r\nHost: x\r\nAccept-Encoding: {encoding}\r\n\r\n"
            ),
        );
        assert!(
            s.head
                .to_ascii_lowercase()
                .contains("content-encoding: x-no-compression"),
            "{}",
            s.head
        );
        s.wait_for("retry");
        for i in 0..5 {
            let foo = format!("{encoding}-{i}");
            let sent = Instant::now();
            call(
                port,
                "POST",
                "/api/MyModels",
                &format!(r#"{{"foo":"{foo}"}}"#),
            );
            let body = s.wait_for(&format!("\"{foo}\""));
            let delay = sent.elapsed();
            assert!(body.contains(&format!("\"{foo}\"")), "{body}");
            assert!(
                delay < Duration::from_millis(50),
                "event {foo} took {delay:?}"
            );
        }
    }
}
