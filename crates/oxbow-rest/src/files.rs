//! Static files: middleware.json's `loopback#static` / `serve-static` entries (LoopBack serves
//! `client/` this way in the `files` phase), answered after the REST routes and before
//! `urlNotFound`.

use crate::error::ErrorCode;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::time::SystemTime;

use actix_web::http::header::{
    ACCEPT_RANGES, CACHE_CONTROL, CONTENT_RANGE, CONTENT_TYPE, ETAG, HeaderValue, HttpDate,
    IF_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE, LAST_MODIFIED, RANGE,
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
fn resolve(roots: &[StaticRoot], raw_path: &str) -> Option<PathBuf> {
    let path = percent_encoding::percent_decode_str(raw_path)
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

/// Serves a static file for GET/HEAD, or `None` to fall through. `path` is relative to the
/// entry's mount point (Express strips it).
pub fn serve_at(roots: &[StaticRoot], req: &HttpRequest, path: &str) -> Option<HttpResponse> {
    if roots.is_empty() || !(req.method() == Method::GET || req.method() == Method::HEAD) {
        return None;
    }
    let file = resolve(roots, path)?;
    // One open: the validators describe exactly the bytes sent.
    let mut handle = std::fs::File::open(&file).ok()?;
    let mut bytes = Vec::new();
    handle.read_to_end(&mut bytes).ok()?;
    // serve-static's validators: a weak tag of size and mtime (ms), the mtime as
    // Last-Modified, and a 304 when the client's copy is current.
    let modified = handle
        .metadata()
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mtime_ms = modified
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let tag = format!("W/\"{:x}-{mtime_ms:x}\"", bytes.len());
    let mut resp = HttpResponse::Ok();
    resp.insert_header((ACCEPT_RANGES, HeaderValue::from_static("bytes")))
        .insert_header((CACHE_CONTROL, HeaderValue::from_static("public, max-age=0")))
        .insert_header((LAST_MODIFIED, HttpDate::from(modified)))
        .insert_header((ETAG, tag.clone()));
    if precondition_failed(req, &tag, modified) {
        return Some(error(req, ErrorCode::PreconditionFailed));
    }
    if crate::etag::fresh(req, &tag, Some(modified)) {
        return Some(resp.status(StatusCode::NOT_MODIFIED).finish());
    }
    resp.insert_header((CONTENT_TYPE, HeaderValue::from_static(content_type(&file))));
    let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    let range = header(RANGE)
        .filter(|r| r.trim_start_matches(' ').starts_with("bytes="))
        .filter(|_| range_fresh(header(IF_RANGE), &tag, modified));
    match range.map(|r| byte_range(r, bytes.len() as u64)) {
        None | Some(Range::Ignored) => Some(resp.body(bytes)),
        Some(Range::One(start, end)) => {
            let len = bytes.len();
            let part = bytes[start as usize..=end as usize].to_vec();
            Some(
                resp.status(StatusCode::PARTIAL_CONTENT)
                    .insert_header((CONTENT_RANGE, format!("bytes {start}-{end}/{len}")))
                    .body(part),
            )
        }
        Some(Range::Unsatisfiable) => {
            let mut out = error(req, ErrorCode::RangeNotSatisfiable);
            if let Ok(v) = HeaderValue::try_from(format!("bytes */{}", bytes.len())) {
                out.headers_mut().insert(CONTENT_RANGE, v);
            }
            out.headers_mut()
                .insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            Some(out)
        }
    }
}

/// The error body strong-error-handler writes for send's errors.
fn error(req: &HttpRequest, code: ErrorCode) -> HttpResponse {
    let query = crate::qs::parse(req.query_string());
    crate::error_response(req, &query, &code.err())
}

/// `If-Match` names another version, or `If-Unmodified-Since` predates the file (send's
/// `isPreconditionFailure`).
fn precondition_failed(req: &HttpRequest, tag: &str, modified: SystemTime) -> bool {
    let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    if let Some(list) = header(IF_MATCH) {
        return list != "*" && !crate::etag::names_tag(list, tag);
    }
    header(IF_UNMODIFIED_SINCE).and_then(|date| crate::etag::unchanged_since(modified, date))
        == Some(false)
}

/// `If-Range` as send does it: a tag must be the file's, a date must not predate it.
fn range_fresh(if_range: Option<&str>, tag: &str, modified: SystemTime) -> bool {
    match if_range {
        None => true,
        Some(cond) if cond.contains('"') => cond.contains(tag),
        Some(date) => crate::etag::unchanged_since(modified, date) == Some(true),
    }
}

/// What a `Range: bytes=…` header asks of a file of `size` bytes (the range-parser module with
/// `combine`: overlapping and adjacent ranges merge; several that stay apart get the whole file).
#[derive(Debug, PartialEq, Eq)]
enum Range {
    /// One range, both ends inclusive.
    One(u64, u64),
    /// Several ranges: the whole file.
    Ignored,
    /// No range within the file: 416.
    Unsatisfiable,
}

fn byte_range(header: &str, size: u64) -> Range {
    let spec = header.split_once('=').map_or("", |(_, s)| s);
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for part in spec.split(',') {
        let mut ends = part.split('-');
        let (start, end) = (js_int(ends.next()), js_int(ends.next()));
        let (start, end) = match (start, end) {
            (None, Some(suffix)) => (size as i128 - suffix, size as i128 - 1),
            (Some(start), None) => (start, size as i128 - 1),
            (Some(start), Some(end)) => (start, end.min(size as i128 - 1)),
            (None, None) => continue,
        };
        if start < 0 || start > end {
            continue;
        }
        ranges.push((start as u64, end as u64));
    }
    if ranges.is_empty() {
        return Range::Unsatisfiable;
    }
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (start, end) in ranges {
        match merged.last_mut() {
            Some(last) if start <= last.1 + 1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    match merged[..] {
        [(start, end)] => Range::One(start, end),
        _ => Range::Ignored,
    }
}

/// JavaScript's `parseInt(s, 10)`: leading whitespace and sign, then digits up to the first
/// other character; `None` for NaN.
fn js_int(s: Option<&str>) -> Option<i128> {
    let s = s?.trim_start();
    let (neg, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let n: String = digits
        .chars()
        .take_while(char::is_ascii_digit)
        .take(30)
        .collect();
    let v: i128 = n.parse().ok()?;
    Some(if neg { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_range_parser() {
        // Figures from the rig's LoopBack 3 (serve-static) on a 3792-byte file.
        let size = 3792;
        assert_eq!(byte_range("bytes=0-9", size), Range::One(0, 9));
        assert_eq!(byte_range("bytes=3790-5000", size), Range::One(3790, 3791));
        assert_eq!(byte_range("bytes=-5", size), Range::One(3787, 3791));
        assert_eq!(byte_range("bytes=100-", size), Range::One(100, 3791));
        assert_eq!(byte_range("bytes=0-1,2-3", size), Range::One(0, 3));
        assert_eq!(byte_range("bytes=0-1,5-6", size), Range::Ignored);
        assert_eq!(byte_range("bytes=5000-6000", size), Range::Unsatisfiable);
        assert_eq!(byte_range("bytes=x", size), Range::Unsatisfiable);
        assert_eq!(byte_range("bytes=5-2", size), Range::Unsatisfiable);
        assert_eq!(byte_range("bytes= 1-2x", size), Range::One(1, 2));
        assert_eq!(byte_range("bytes=-0", size), Range::Unsatisfiable);
        assert_eq!(
            byte_range("bytes=0-99999999999999999999999999999999999", size),
            Range::One(0, 3791)
        );
    }
}
