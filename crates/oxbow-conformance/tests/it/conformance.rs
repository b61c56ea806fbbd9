//! Replays every LoopBack 3 transcript against oxbow in process and compares status, content
//! type and body byte for byte (masked JSON pointers aside), except where
//! `tests/conformance/deviations.json` documents a deliberate difference.

use std::collections::BTreeSet;
use std::path::Path;

use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::Method;
use actix_web::{App, test};

use oxbow_conformance::{
    Captured, Deviations, Pending, capture_values, has_placeholder, load_json, load_transcript,
    masked, scratch_copy, substitute,
};

async fn boot(
    dir: &Path,
    seed: bool,
) -> impl Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error> {
    let plan = oxbow_config::load(dir).unwrap_or_else(|p| panic!("{}: {p}", dir.display()));
    let plugins = if seed {
        oxbow_default_app::plugins()
    } else {
        Vec::new()
    };
    let booted = oxbow::boot(plan, &plugins).await.expect("boot");
    test::init_service(
        App::new()
            .wrap(booted.pipeline())
            .configure(booted.configure()),
    )
    .await
}

/// The storage a replay runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    /// The app as recorded (LoopBack's memory connector).
    Memory,
    /// Every memory datasource turned into a SQLite one.
    Sqlite,
    /// Every memory datasource on PostgreSQL (`OXBOW_TEST_POSTGRES`), in a schema of its own.
    Postgres,
}

/// Rewrites the app's memory datasources to PostgreSQL, each in schema `<prefix>__<name>`;
/// returns the schemas of those that were not persistent (a restart starts them empty).
pub(crate) fn to_postgres(dir: &Path, url: &str, prefix: &str) -> Vec<String> {
    let mut volatile = Vec::new();
    rewrite_memory_datasources(dir, |name, ds, persistent| {
        let schema = format!("{prefix}__{name}");
        if !persistent {
            volatile.push(schema.clone());
        }
        ds.insert("connector".into(), "postgresql".into());
        ds.insert("url".into(), url.into());
        ds.insert("schema".into(), schema.into());
    });
    volatile
}

/// Drops every schema of a replay (`<prefix>__<datasource>`).
pub(crate) async fn drop_schemas(url: &str, prefix: &str) {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to OXBOW_TEST_POSTGRES");
    actix_rt::spawn(async move {
        let _ = conn.await;
    });
    let rows = client
        .query(
            "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)",
            &[&format!("{prefix}__")],
        )
        .await
        .expect("list schemas");
    for r in rows {
        let name: String = r.get(0);
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
            .await
            .expect("drop schema");
    }
}

/// Drops a test schema and everything in it.
pub(crate) async fn drop_schema(url: &str, schema: &str) {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to OXBOW_TEST_POSTGRES");
    actix_rt::spawn(async move {
        let _ = conn.await;
    });
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .await
        .expect("drop schema");
}

/// The PostgreSQL URL tests use, or `None` (with a note) when `OXBOW_TEST_POSTGRES` is unset.
pub(crate) fn postgres_url(test: &str) -> Option<String> {
    match std::env::var("OXBOW_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            oxbow_conformance::skip_or_fail(
                test,
                "OXBOW_TEST_POSTGRES is not set (e.g. postgresql://postgres@127.0.0.1:5432/test)",
            );
            None
        }
    }
}

/// Calls `f(name, settings, persistent)` for each memory datasource of the app, with its
/// `file` setting removed (`persistent` says whether it had one), and writes the file back.
pub(crate) fn rewrite_memory_datasources(
    dir: &Path,
    mut f: impl FnMut(&str, &mut serde_json::Map<String, serde_json::Value>, bool),
) {
    let path = dir.join("server/datasources.json");
    let text = std::fs::read_to_string(&path).expect("datasources.json");
    let mut v: serde_json::Value = serde_json::from_str(&text).expect("datasources.json");
    for (name, ds) in v.as_object_mut().expect("an object") {
        let Some(ds) = ds.as_object_mut() else {
            continue;
        };
        if ds
            .get("connector")
            .and_then(|c| c.as_str())
            .unwrap_or("memory")
            != "memory"
        {
            continue;
        }
        let persistent = ds.remove("file").is_some();
        f(name, ds, persistent);
    }
    std::fs::write(&path, serde_json::to_string_pretty(&v).expect("json")).expect("write");
}

/// Rewrites the app's memory datasources to SQLite files; returns the files of those that
/// were not persistent (a restart starts them empty, as the memory connector does).
pub(crate) fn to_sqlite(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut volatile = Vec::new();
    rewrite_memory_datasources(dir, |name, ds, persistent| {
        let file = format!("{name}.sqlite");
        if !persistent {
            volatile.push(dir.join(&file));
        }
        ds.insert("connector".into(), "sqlite".into());
        ds.insert("file".into(), file.into());
    });
    volatile
}

fn remove_database(file: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = file.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

async fn replay(name: &str, backend: Backend) {
    let transcript = load_transcript(name).expect("transcript");
    let deviations: Deviations = load_json("deviations.json");
    let pending: Pending = load_json("pending.json");
    let devs = deviations.get(name).cloned().unwrap_or_default();
    let pend = pending.get(name).cloned().unwrap_or_default();
    let tag = match backend {
        Backend::Memory => name.to_owned(),
        Backend::Sqlite => format!("{name}-sqlite"),
        Backend::Postgres => format!("{name}-postgres"),
    };
    let pg = match backend {
        Backend::Postgres => match postgres_url(name) {
            Some(url) => Some((
                url,
                format!("oxbow_{}_{}", std::process::id(), name.replace('-', "_")),
            )),
            None => return,
        },
        _ => None,
    };
    let dir = scratch_copy(&transcript.app, &tag).expect("scratch copy");
    let volatile = match backend {
        Backend::Memory | Backend::Postgres => Vec::new(),
        Backend::Sqlite => to_sqlite(&dir),
    };
    let pg_schemas = match &pg {
        Some((url, prefix)) => {
            let all = to_postgres(&dir, url, prefix);
            drop_schemas(url, prefix).await;
            all
        }
        None => Vec::new(),
    };
    let has_streams = transcript.steps.iter().any(|s| s.stream.is_some());
    if has_streams {
        oxbow_conformance::loopback_exact_streams(&dir).expect("stream config");
    }
    let mut streams: std::collections::HashMap<String, actix_web::body::BoxBody> =
        Default::default();
    let seed = transcript.app == ".";
    let mut app = boot(&dir, seed).await;
    let mut failures = Vec::new();
    let mut used = BTreeSet::new();
    let mut pending_hits = 0;
    let mut checked = 0;
    // Values captured from oxbow's answers (`capture`), put into later requests and into the
    // recorded answers where LoopBack's own values were written as placeholders.
    let mut vars = Captured::new();
    for step in &transcript.steps {
        if std::env::var_os("OXBOW_REPLAY_TRACE").is_some() {
            eprintln!("step: {}", step.title);
        }
        if step.restart {
            drop(app);
            volatile.iter().for_each(|f| remove_database(f));
            if let Some((url, _)) = &pg {
                for schema in &pg_schemas {
                    drop_schema(url, schema).await;
                }
            }
            app = boot(&dir, seed).await;
            continue;
        }
        let Some(expected) = &step.response else {
            continue;
        };
        if let Some(name) = &step.collect {
            checked += 1;
            if let Some(ms) = step.settle_ms.filter(|ms| *ms > 0.0) {
                actix_rt::time::sleep(std::time::Duration::from_secs_f64(ms / 1000.0)).await;
            }
            let got = match streams.remove(name) {
                Some(body) => drain(body).await,
                None => String::from("<stream never opened>"),
            };
            let recorded = match devs.get(&step.title) {
                Some(d) => {
                    used.insert(step.title.clone());
                    d.body.clone().unwrap_or_default()
                }
                None => expected.body.clone(),
            };
            let recorded = substitute(&recorded, &vars);
            let (got, want) = (
                oxbow_conformance::normalize_stream_id(&got),
                oxbow_conformance::normalize_stream_id(&recorded),
            );
            if got != want {
                failures.push(format!("  collect {name} — {}\n    stream body\n      oxbow:    {got:?}\n      LoopBack: {want:?}", step.title));
            }
            continue;
        }
        let method = Method::from_bytes(step.method.as_bytes()).expect("method");
        let mut req = test::TestRequest::default()
            .method(method)
            .uri(&substitute(&step.path, &vars));
        for (k, v) in &step.headers {
            req = req.insert_header((k.as_str(), substitute(v, &vars)));
        }
        if let Some(b) = &step.body {
            req = req.set_payload(substitute(b, &vars));
        }
        let resp = test::call_service(&app, req.to_request()).await;
        if let Some(name) = &step.stream {
            checked += 1;
            let status = resp.status().as_u16();
            let ctype = header(&resp, "content-type").unwrap_or_default();
            let want_ct = expected
                .headers
                .get("content-type")
                .cloned()
                .unwrap_or_default();
            if status != expected.status || ctype != want_ct {
                failures.push(format!("  {} {} — {}\n    stream opened with {status} `{ctype}`, LoopBack {} `{want_ct}`", step.method, step.path, step.title, expected.status));
            }
            streams.insert(name.clone(), resp.into_body());
            continue;
        }
        let status = resp.status().as_u16();
        let ctype = header(&resp, "content-type").unwrap_or_default();
        let etag = header(&resp, "etag");
        let coding = header(&resp, "content-encoding");
        let resp_headers = resp.headers().clone();
        let raw = decode(coding.as_deref(), &test::read_body(resp).await);
        let body = String::from_utf8_lossy(&raw).into_owned();

        // Captures come from oxbow's answer; the recorded answer then reads with oxbow's values
        // where LoopBack's were (its tokens were written as `{{name}}`).
        let mut capture_problems = Vec::new();
        let (found, missing) = capture_values(&body, &step.capture);
        capture_problems.extend(missing);
        for (name, value) in found {
            if let Some(shape) = step.capture_shape.get(&name) {
                let re = regex::Regex::new(shape)
                    .unwrap_or_else(|e| panic!("{name}: captureShape {shape:?}: {e}"));
                if !re.is_match(&value) {
                    capture_problems.push(format!(
                        "capture `{name}` = {value:?} does not match its captureShape {shape}"
                    ));
                }
            }
            vars.insert(name, value);
        }
        let placeholders = has_placeholder(&expected.body);
        let want_body_text = substitute(&expected.body, &vars);
        let mut want_headers: std::collections::BTreeMap<String, String> = expected
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), substitute(v, &vars)))
            .collect();
        if placeholders {
            // LoopBack's length was that of its own token; the body with oxbow's has its own.
            if let Some(len) = want_headers.get_mut("content-length") {
                *len = want_body_text.len().to_string();
            }
        }
        let header_problems = compare_headers(&resp_headers, &want_headers, step);

        let (want_status, want_body, exact) = match devs.get(&step.title) {
            Some(d) => {
                used.insert(step.title.clone());
                (d.status, d.body.clone(), d.body.is_some())
            }
            None => (
                expected.status,
                Some(want_body_text.clone()),
                step.compare.as_deref() != Some("status"),
            ),
        };
        let want_body = want_body.map(|b| substitute(&b, &vars));
        let mut problems = capture_problems;
        if !devs.contains_key(&step.title) {
            problems.extend(header_problems);
        }
        if status != want_status {
            problems.push(format!("status {status}, LoopBack {want_status}"));
        }
        if let Some(want_ct) = want_headers.get("content-type") {
            if !devs.contains_key(&step.title)
                && ctype != *want_ct
                && !(step.method == "HEAD" && ctype.is_empty())
            {
                problems.push(format!("content-type `{ctype}`, LoopBack `{want_ct}`"));
            }
        }
        // Express tags every body `res.send` writes (not errors): same body, same tag, and
        // none where LoopBack sent none. Masked bodies (dates, ids) carry their own tags.
        if exact && step.mask.is_empty() && !devs.contains_key(&step.title) {
            let want_etag = want_headers.get("etag");
            // A HEAD's body is not compared, so neither is its tag, only its presence; nor is
            // the tag of a body LoopBack computed over its own captured values.
            let differs = if step.method == "HEAD"
                || placeholders
                || step.ignore_headers.iter().any(|h| h == "etag")
            {
                etag.is_some() != want_etag.is_some()
            } else {
                etag.as_ref() != want_etag
            };
            if differs {
                problems.push(format!("etag {etag:?}, LoopBack {want_etag:?}"));
            }
        }
        if let (Some(want64), true) = (&expected.body_base64, exact && step.method != "HEAD") {
            let got64 = oxbow_conformance::base64(&raw);
            if got64 != *want64 {
                problems.push(format!("binary body differs ({} bytes)", raw.len()));
            }
        } else if exact && step.method != "HEAD" {
            let want = want_body.unwrap_or_default();
            if step.mask.is_empty() {
                if body != want {
                    problems.push(format!(
                        "body\n      oxbow:    {body}\n      LoopBack: {want}"
                    ));
                }
            } else {
                match (masked(&body, &step.mask), masked(&want, &step.mask)) {
                    (Ok(a), Ok(b)) if a == b => {}
                    (a, b) => problems.push(format!(
                        "masked body\n      oxbow:    {a:?}\n      LoopBack: {b:?}"
                    )),
                }
            }
        }
        checked += 1;
        if !problems.is_empty() {
            if let Some((_, reason)) = pend
                .iter()
                .find(|(prefix, _)| step.title.starts_with(prefix.as_str()))
            {
                pending_hits += 1;
                eprintln!("pending [{name}] {}: {reason}", step.title);
                continue;
            }
            failures.push(format!(
                "  {} {} — {}\n    {}",
                step.method,
                step.path,
                step.title,
                problems.join("\n    ")
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    if let Some((url, prefix)) = &pg {
        drop(app);
        drop_schemas(url, prefix).await;
    }
    let stale: Vec<&String> = devs.keys().filter(|k| !used.contains(*k)).collect();
    assert!(
        stale.is_empty(),
        "deviations.json names steps that do not exist in {name}: {stale:?}"
    );
    eprintln!(
        "{name} ({backend:?}): {checked} steps checked, {} deviations, {pending_hits} pending",
        used.len()
    );
    assert!(
        failures.is_empty(),
        "{name}: {} of {checked} steps differ from LoopBack 3:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A response body as the client reads it (compressed bodies decoded).
fn decode(coding: Option<&str>, bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    let ok = match coding {
        Some("gzip") => flate2::read::GzDecoder::new(bytes).read_to_end(&mut out),
        Some("deflate") => flate2::read::ZlibDecoder::new(bytes).read_to_end(&mut out),
        Some("br") => brotli::Decompressor::new(bytes, 4096).read_to_end(&mut out),
        _ => return bytes.to_vec(),
    };
    ok.unwrap_or_else(|e| panic!("a {coding:?} body that does not decode: {e}"));
    out
}

/// Headers LoopBack's middleware sets (cors, helmet, Vary, caching), compared by value.
/// Framing headers, dates, ETags (compared above, with their own rules) and `X-Powered-By`
/// (oxbow never claims to be Express; docs/COMPATIBILITY.md) are left out.
fn compare_headers(
    resp: &actix_web::http::header::HeaderMap,
    want: &std::collections::BTreeMap<String, String>,
    step: &oxbow_conformance::Step,
) -> Vec<String> {
    const SKIP: &[&str] = &[
        "date",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "content-type",
        "etag",
        "x-powered-by",
        "last-modified",
    ];
    let mut out = Vec::new();
    for (name, value) in want {
        if SKIP.contains(&name.as_str()) {
            continue;
        }
        let got = map_header(resp, name);
        if step.ignore_headers.iter().any(|h| h == name) {
            if got.is_none() {
                out.push(format!("header {name}: missing, LoopBack sends one"));
            }
            continue;
        }
        if got.as_deref() != Some(value.as_str()) {
            out.push(format!("header {name}: {got:?}, LoopBack {value:?}"));
        }
    }
    // And nothing LoopBack did not send among the headers middleware sets.
    for (name, _) in resp.iter() {
        let n = name.as_str();
        if SKIP.contains(&n) || want.contains_key(n) {
            continue;
        }
        out.push(format!("header {n}: oxbow sends it, LoopBack does not"));
    }
    // Content-Length where LoopBack sent one, for bodies compared byte for byte.
    if let (Some(want_len), Some(got_len)) = (
        want.get("content-length"),
        map_header(resp, "content-length"),
    ) {
        if *want_len != got_len && step.method != "HEAD" && step.mask.is_empty() {
            out.push(format!(
                "header content-length: {got_len:?}, LoopBack {want_len:?}"
            ));
        }
    }
    out
}

/// A header of a header map as text.
fn map_header(map: &actix_web::http::header::HeaderMap, name: &str) -> Option<String> {
    map.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Everything a stream body yields until it has been quiet for 100 ms.
/// A response header as text.
fn header<B>(resp: &actix_web::dev::ServiceResponse<B>, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn drain(mut body: actix_web::body::BoxBody) -> String {
    use actix_web::body::MessageBody;
    let mut out = Vec::new();
    loop {
        let next = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_next(cx));
        match actix_rt::time::timeout(std::time::Duration::from_millis(100), next).await {
            Ok(Some(Ok(chunk))) => out.extend_from_slice(&chunk),
            _ => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

macro_rules! transcripts {
    ($($test:ident => $name:literal),* $(,)?) => {
        /// The transcripts replayed below.
        const REPLAYED: &[&str] = &[$($name),*];

        $(
            #[actix_web::test]
            async fn $test() {
                replay($name, Backend::Memory).await;
            }
        )*
        /// The same transcripts with every memory datasource on SQLite.
        mod sqlite {
            use super::*;
            $(
                #[actix_web::test]
                async fn $test() {
                    replay($name, Backend::Sqlite).await;
                }
            )*
        }
        /// And on PostgreSQL, when `OXBOW_TEST_POSTGRES` points at one.
        mod postgres {
            use super::*;
            $(
                #[actix_web::test]
                async fn $test() {
                    replay($name, Backend::Postgres).await;
                }
            )*
        }
    };
}

transcripts! {
    seed => "seed",
    shop_crud => "shop-crud",
    shop_errors => "shop-errors",
    shop_filters => "shop-filters",
    shop_http => "shop-http",
    shop_relations => "shop-relations",
    relations => "relations",
    embeds => "embeds",
    pipeline => "pipeline",
    pipeline_off => "pipeline-off",
    filters_more => "filters-more",
    filters_fuzzed => "filters-fuzzed",
    relations_fuzzed => "relations-fuzzed",
    ids_fuzzed => "ids-fuzzed",
    ids_and_persistence => "ids-and-persistence",
    seed_change_stream => "seed-change-stream",
    shop_change_stream => "shop-change-stream",
    limits => "limits",
    shared_methods => "shared-methods",
    put_patches => "put-patches",
    hostile_writes => "hostile-writes",
    hidden_queries => "hidden-queries",
    scopes => "scopes",
    auth_users => "auth-users",
    auth_acls => "auth-acls",
}

/// Every transcript in the folder is replayed: a new file nobody added to the list above
/// fails here instead of passing unnoticed.
#[::core::prelude::v1::test]
fn every_transcript_is_replayed() {
    let dir = oxbow_conformance::repo_root().join("tests/conformance/transcripts");
    let mut missing: Vec<String> = std::fs::read_dir(&dir)
        .expect("tests/conformance/transcripts")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            Some(name.strip_suffix(".json")?.to_owned())
        })
        .filter(|name| !REPLAYED.contains(&name.as_str()))
        .collect();
    missing.sort();
    assert!(
        missing.is_empty(),
        "transcripts not replayed (add them to `transcripts!` in conformance.rs): {missing:?}"
    );
}

/// docs/COMPATIBILITY.md names every deliberate deviation.
#[::core::prelude::v1::test]
fn compatibility_doc_lists_every_deviation() {
    let doc = std::fs::read_to_string(oxbow_conformance::repo_root().join("docs/COMPATIBILITY.md"))
        .expect("docs/COMPATIBILITY.md");
    let deviations: Deviations = load_json("deviations.json");
    let missing: Vec<String> = deviations
        .iter()
        .flat_map(|(t, steps)| steps.keys().map(move |title| (t, title)))
        .filter(|(t, title)| !doc.contains(&format!("`{t}` — {}", title.replace('|', "\\|"))))
        .map(|(t, title)| format!("{t}: {title}"))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/COMPATIBILITY.md lacks (run scripts/compat-table.py): {missing:?}"
    );
}
