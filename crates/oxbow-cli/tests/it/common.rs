//! What the process-level tests share: starting `oxbow serve`, one-shot HTTP requests and the
//! PostgreSQL schema a test works in.

// Each test module uses its own part of this module.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Starts `oxbow serve DIR` on a free port; the child and its port.
pub fn serve(dir: &Path) -> (Child, u16) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_oxbow"))
        .args([
            "serve",
            dir.to_str().unwrap(),
            "--port",
            "0",
            "--host",
            "127.0.0.1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn oxbow");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().expect("a listening line").expect("stdout");
    let port: u16 = first.rsplit(':').next().unwrap().parse().unwrap();
    (child, port)
}

/// One request on a fresh connection: status and body, or `None` when the server went away.
pub fn request(port: u16, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let raw = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(raw.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.get(9..12)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

/// The PostgreSQL URL, or `None` (saying that `what` is skipped) when `OXBOW_TEST_POSTGRES` is
/// unset.
pub fn postgres_url(what: &str) -> Option<String> {
    let url = std::env::var("OXBOW_TEST_POSTGRES")
        .ok()
        .filter(|u| !u.is_empty());
    if url.is_none() {
        if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
            panic!(
                "{what} cannot run: OXBOW_TEST_POSTGRES is not set (CI=true, so this is a failure, not a skip)"
            );
        }
        eprintln!("skipping {what}: OXBOW_TEST_POSTGRES is not set");
    }
    url
}

/// Runs one SQL statement on `url`; its rows' first column as text.
pub fn sql(url: &str, statement: &str) -> Vec<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .expect("connect to OXBOW_TEST_POSTGRES");
        tokio::spawn(conn);
        let rows = client
            .simple_query(statement)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
        rows.into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                _ => None,
            })
            .collect()
    })
}

/// Drops a test's schema (before and after it runs).
pub fn drop_schema(url: &str, schema: &str) {
    sql(url, &format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
}

/// Ends every server connection whose `application_name` is `name`; how many.
pub fn terminate(url: &str, name: &str) -> usize {
    sql(
        url,
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{name}'"
        ),
    )
    .len()
}
