//! Change events checked per event against each subscriber's rights, over real HTTP: 1 000
//! members each subscribed to `Note` (readable by its owner only) get exactly their own
//! notes' create and delete events and nothing else; a logout ends the stream with
//! `event: close` `{"reason":"unauthorized"}`; a stream ticket is good once.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{request, serve};

const MEMBERS: usize = 1000;

/// A scratch copy of tests/apps/owned-streams.
fn owned_streams_app(tag: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/apps/owned-streams");
    let dir = std::env::temp_dir().join(format!("oxbow-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&src, &dir);
    dir
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), to).unwrap();
        }
    }
}

/// Signs up member `i` (its id is `i`) and logs it in: its access token.
fn sign_up(port: u16, i: usize) -> String {
    let creds = format!(r#"{{"email":"m{i}@example.com","password":"secret{i}"}}"#);
    let (status, body) = request(port, "POST", "/api/Members", &creds).unwrap();
    assert_eq!(status, 200, "{body}");
    let member: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(member["id"], i);
    assert!(member.get("password").is_none());
    let (status, body) = request(port, "POST", "/api/Members/login", &creds).unwrap();
    assert_eq!(status, 200, "{body}");
    let login: Value = serde_json::from_str(&body).unwrap();
    login["id"].as_str().unwrap().to_owned()
}

/// An open event stream: the socket and what was read from it so far.
struct Sse {
    sock: TcpStream,
    seen: String,
}

impl Sse {
    fn open(port: u16, path: &str, headers: &str) -> Self {
        let mut sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            sock,
            "GET {path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n{headers}\r\n"
        )
        .unwrap();
        let mut s = Self {
            sock,
            seen: String::new(),
        };
        s.read_until(|t| t.contains(":ok\n\n") || t.starts_with("HTTP/1.1 4"), 10);
        s
    }

    /// Reads until `done` holds of what was seen, or `secs` pass; whether it held.
    fn read_until(&mut self, done: impl Fn(&str) -> bool, secs: u64) -> bool {
        let end = Instant::now() + Duration::from_secs(secs);
        let mut buf = [0u8; 16384];
        while !done(&self.seen) {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            self.sock.set_read_timeout(Some(left)).unwrap();
            match self.sock.read(&mut buf) {
                Ok(0) => return done(&self.seen),
                Ok(n) => self.seen.push_str(&String::from_utf8_lossy(&buf[..n])),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return false;
                }
                Err(e) => panic!("reading a stream: {e}"),
            }
        }
        true
    }

    /// The `data:` of every `event: data` seen, parsed.
    fn events(&self) -> Vec<Value> {
        self.seen
            .split("\n\n")
            .filter(|block| block.lines().any(|l| l == "event: data"))
            .filter_map(|block| block.lines().find_map(|l| l.strip_prefix("data: ")))
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }
}

fn with_token(port: u16, method: &str, path: &str, token: &str, body: &str) -> (u16, String) {
    let sep = if path.contains('?') { '&' } else { '?' };
    request(
        port,
        method,
        &format!("{path}{sep}access_token={token}"),
        body,
    )
    .expect("the server answers")
}

#[test]
fn a_thousand_members_each_get_only_their_own_notes_events() {
    let dir = owned_streams_app("event-rights");
    let (mut child, port) = serve(&dir);
    // `token[i]` is member i's (index 0 unused).
    let token: Vec<String> = std::iter::once(String::new())
        .chain((1..=MEMBERS).map(|i| sign_up(port, i)))
        .collect();
    let mut streams: Vec<Sse> = (1..=MEMBERS)
        .map(|i| {
            Sse::open(
                port,
                &format!("/api/Notes/change-stream?access_token={}", token[i]),
                "",
            )
        })
        .collect();
    assert!(
        streams[0].seen.starts_with("HTTP/1.1 200"),
        "{}",
        streams[0].seen
    );
    // Anonymous callers are refused at connect, as LoopBack refuses them.
    let anon = Sse::open(port, "/api/Notes/change-stream", "");
    assert!(anon.seen.starts_with("HTTP/1.1 401"), "{}", anon.seen);

    // A note nobody subscribed owns, then one per member, each deleted by its owner.
    let (status, _) = with_token(
        port,
        "POST",
        "/api/Notes",
        &token[1],
        r#"{"title":"orphan","memberId":999999}"#,
    );
    assert_eq!(status, 200);
    let mut ids = Vec::new();
    for (i, t) in token.iter().enumerate().skip(1) {
        let (status, body) = with_token(
            port,
            "POST",
            "/api/Notes",
            t,
            &format!(r#"{{"title":"note {i}","memberId":{i}}}"#),
        );
        assert_eq!(status, 200, "{body}");
        let note: Value = serde_json::from_str(&body).unwrap();
        ids.push(note["id"].clone());
    }
    for (i, id) in (1..=MEMBERS).zip(&ids) {
        let (status, body) = with_token(port, "DELETE", &format!("/api/Notes/{id}"), &token[i], "");
        assert_eq!((status, body.as_str()), (200, r#"{"count":1}"#));
    }
    // A member may not delete another's note: no event for that either.
    let (status, _) = with_token(
        port,
        "DELETE",
        &format!("/api/Notes/{}", ids[1]),
        &token[1],
        "",
    );
    assert_eq!(status, 401);

    for (n, (s, id)) in streams.iter_mut().zip(&ids).enumerate() {
        let i = n + 1;
        let got_both = s.read_until(|t| t.matches("event: data").count() >= 2, 10);
        assert!(got_both, "member {i} saw: {}", s.seen);
        let events = s.events();
        assert_eq!(
            events,
            [
                json!({"target": id, "data": {"title": format!("note {i}"), "memberId": i, "id": id}, "type": "create"}),
                json!({"target": id, "where": {"id": id}, "type": "remove"}),
            ],
            "member {i}"
        );
    }
    // Nothing else comes: one more note for member 1 is the next thing member 1 sees, and
    // member 2 sees nothing.
    let (status, body) = with_token(
        port,
        "POST",
        "/api/Notes",
        &token[1],
        r#"{"title":"last","memberId":1}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert!(streams[0].read_until(|t| t.matches("event: data").count() >= 3, 10));
    assert_eq!(streams[0].events()[2]["data"]["title"], "last");
    assert!(!streams[1].read_until(|t| t.matches("event: data").count() >= 3, 1));

    // Logging out ends the member's stream at once.
    let (status, _) = with_token(port, "POST", "/api/Members/logout", &token[1], "");
    assert_eq!(status, 204);
    assert!(
        streams[0].read_until(|t| t.contains("event: close\n"), 10),
        "{}",
        streams[0].seen
    );
    let close = streams[0]
        .seen
        .rsplit("event: close\ndata: ")
        .next()
        .unwrap();
    let close: Value = serde_json::from_str(close.split("\n\n").next().unwrap()).unwrap();
    assert_eq!(close["reason"], "unauthorized");
    assert!(!streams[1].seen.contains("event: close"));

    // A ticket: asked for with the token in a header, good once, for a stream.
    let ticket = {
        let mut sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            sock,
            "POST /api/Notes/change-stream/ticket HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            token[2]
        )
        .unwrap();
        let mut out = String::new();
        sock.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        let body: Value = serde_json::from_str(out.split_once("\r\n\r\n").unwrap().1).unwrap();
        assert_eq!(body["ttl"], 30);
        body["ticket"].as_str().unwrap().to_owned()
    };
    // Not an access token.
    let (status, _) = request(
        port,
        "GET",
        &format!("/api/Notes/1?access_token={ticket}"),
        "",
    )
    .unwrap();
    assert_eq!(status, 401);
    let mut by_ticket = Sse::open(
        port,
        &format!("/api/Notes/change-stream?ticket={ticket}"),
        "",
    );
    assert!(
        by_ticket.seen.starts_with("HTTP/1.1 200"),
        "{}",
        by_ticket.seen
    );
    let again = Sse::open(
        port,
        &format!("/api/Notes/change-stream?ticket={ticket}"),
        "",
    );
    assert!(again.seen.starts_with("HTTP/1.1 401"), "{}", again.seen);
    let (status, _) = with_token(
        port,
        "POST",
        "/api/Notes",
        &token[2],
        r#"{"title":"two","memberId":2}"#,
    );
    assert_eq!(status, 200);
    assert!(by_ticket.read_until(|t| t.contains("event: data"), 10));
    assert_eq!(by_ticket.events()[0]["data"]["title"], "two");

    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
