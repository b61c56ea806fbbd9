//! Static files: middleware.json's `loopback#static` / `serve-static` entries (LoopBack serves
//! `client/` this way in the `files` phase), answered after the REST routes and before
//! `urlNotFound`.

use std::path::{Component, Path, PathBuf};
use std::time::SystemTime;

use actix_web::http::header::{
    CACHE_CONTROL, CONTENT_TYPE, ETAG, HeaderValue, HttpDate, LAST_MODIFIED,
};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse};

/// One static root: requests under `mount` are served from `dir`.
#[derive(Debug, Clone)]
pub struct StaticRoot {
    pub mount: String,
    pub dir: PathBuf,
}

fn content_type(path: &Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("html" | "htm") => "text/html; charset=UTF-8",
        Some("js" | "mjs") => "application/javascript; charset=UTF-8",
        Some("css") => "text/css; charset=UTF-8",
        Some("json") => "application/json; charset=UTF-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("ico") => "image/x-icon",
        Some("txt") => "text/plain; charset=UTF-8",
        Some("wasm") => "application/wasm",
        _ => "application/octet-stream",
    }
}

/// The file a request names under one of the roots, if any (never outside a root).
fn resolve(roots: &[StaticRoot], req: &HttpRequest) -> Option<PathBuf> {
    let path = percent_encoding::percent_decode_str(req.path())
        .decode_utf8()
        .ok()?;
    for root in roots {
        let Some(rest) = path.strip_prefix(root.mount.trim_end_matches('/')) else {
            continue;
        };
        if !(rest.is_empty() || rest.starts_with('/')) {
            continue;
        }
        let rel = Path::new(rest.trim_start_matches('/'));
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            continue;
        }
        let mut file = root.dir.join(rel);
        if file.is_dir() {
            file = file.join("index.html");
        }
        if file.is_file() {
            return Some(file);
        }
    }
    None
}

/// Serves a static file for GET/HEAD, or `None` to fall through.
pub fn serve(roots: &[StaticRoot], req: &HttpRequest) -> Option<HttpResponse> {
    if roots.is_empty() || !(req.method() == Method::GET || req.method() == Method::HEAD) {
        return None;
    }
    let file = resolve(roots, req)?;
    let bytes = std::fs::read(&file).ok()?;
    // serve-static's validators: a weak tag of size and mtime (ms), the mtime as
    // Last-Modified, and a 304 when the client's copy is current.
    let modified = std::fs::metadata(&file)
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mtime_ms = modified
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let tag = format!("W/\"{:x}-{mtime_ms:x}\"", bytes.len());
    let mut resp = HttpResponse::Ok();
    resp.insert_header((CACHE_CONTROL, HeaderValue::from_static("public, max-age=0")))
        .insert_header((LAST_MODIFIED, HttpDate::from(modified)))
        .insert_header((ETAG, tag.clone()));
    if crate::etag::fresh(req, &tag, Some(modified)) {
        return Some(resp.status(StatusCode::NOT_MODIFIED).finish());
    }
    Some(
        resp.insert_header((CONTENT_TYPE, HeaderValue::from_static(content_type(&file))))
            .body(bytes),
    )
}

/// The static roots declared in middleware.json (`loopback#static`, `serve-static`), enabled
/// ones only, in file order. `$!../client`-style roots are relative to `server_dir`.
pub fn roots_from_middleware(
    middleware: &serde_json::Map<String, serde_json::Value>,
    server_dir: &Path,
) -> Vec<StaticRoot> {
    use serde_json::Value;
    let mut out = Vec::new();
    for phase in middleware.values() {
        let Some(entries) = phase.as_object() else {
            continue;
        };
        for (name, entry) in entries {
            if name != "loopback#static" && name != "serve-static" {
                continue;
            }
            let configs: Vec<&Value> = match entry {
                Value::Array(a) => a.iter().collect(),
                other => vec![other],
            };
            for cfg in configs {
                if cfg.get("enabled") == Some(&Value::Bool(false)) {
                    continue;
                }
                let root = match cfg.get("params") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Array(a)) => match a.first() {
                        Some(Value::String(s)) => s.clone(),
                        _ => continue,
                    },
                    _ => continue,
                };
                let dir = match root.strip_prefix("$!") {
                    Some(rel) => server_dir.join(rel),
                    None => PathBuf::from(root),
                };
                let mounts: Vec<String> = match cfg.get("paths") {
                    Some(Value::String(p)) => vec![p.clone()],
                    Some(Value::Array(a)) => a
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect(),
                    _ => vec!["/".to_owned()],
                };
                for mount in mounts {
                    out.push(StaticRoot {
                        mount,
                        dir: dir.clone(),
                    });
                }
            }
        }
    }
    out
}
