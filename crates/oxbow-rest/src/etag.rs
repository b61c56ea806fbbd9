//! Express's response ETags and conditional GETs: what `res.send` adds to every body LoopBack
//! sends, and the `304 Not Modified` it answers when the client already has that body.
//!
//! The tag is Express's default (`etag` npm, weak): `W/"<length in hex>-<SHA-1 of the body,
//! base64, first 27 characters>"`. Freshness follows the `fresh` npm module: only GET and HEAD,
//! only 2xx results, `Cache-Control: no-cache` in the request always wants the body.

use std::time::SystemTime;

use actix_web::http::header::{
    CACHE_CONTROL, CONTENT_TYPE, ETAG, HeaderValue, HttpDate, IF_MODIFIED_SINCE, IF_NONE_MATCH,
};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse};
use sha1::Digest;
use std::fmt::Write as _;

/// config.json `etag`, Express's app setting of that name (loopback-boot sets every config.json
/// key on the app).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EtagMode {
    /// `"weak"`, `true` or unset: Express's default.
    #[default]
    Weak,
    /// `"strong"`: the same tag without `W/`.
    Strong,
    /// `false`: no ETags, no 304s.
    Off,
}

impl EtagMode {
    /// Reads the config.json value; anything else Express would reject is left at the default.
    pub fn from_config(v: Option<&serde_json::Value>) -> Self {
        match v {
            Some(serde_json::Value::Bool(false)) => Self::Off,
            Some(serde_json::Value::String(s)) if s == "strong" => Self::Strong,
            _ => Self::Weak,
        }
    }

    /// The tag of a body, or `None` when turned off.
    pub fn tag(self, body: &[u8]) -> Option<String> {
        let weak = match self {
            Self::Off => return None,
            Self::Weak => "W/",
            Self::Strong => "",
        };
        let digest: [u8; 20] = sha1::Sha1::digest(body).into();
        let mut tag = String::with_capacity(weak.len() + 16 + 1 + 28 + 2);
        tag.push_str(weak);
        tag.push('"');
        write!(tag, "{:x}-", body.len()).ok();
        base64_into(&digest, &mut tag);
        tag.truncate(tag.len() - 1); // 27 of the 28 characters: drops the one `=`
        tag.push('"');
        Some(tag)
    }
}

/// Express's `res.send` of a finished body: tagged, or a bare `304` (tag kept, no content
/// headers) when the client already has it. For HEAD, actix-http sends the headers of the
/// body (Content-Length included) and no bytes.
pub fn send(
    req: &HttpRequest,
    mode: EtagMode,
    status: StatusCode,
    content_type: &'static str,
    body: Vec<u8>,
) -> HttpResponse {
    let mut resp = HttpResponse::build(status);
    if let Some(tag) = mode.tag(&body) {
        if is_fresh(req, status.as_u16(), &tag) {
            return resp
                .status(StatusCode::NOT_MODIFIED)
                .insert_header((ETAG, tag))
                .finish();
        }
        resp.insert_header((ETAG, tag));
    }
    resp.insert_header((CONTENT_TYPE, HeaderValue::from_static(content_type)))
        .body(body)
}

/// Standard base64 with padding (27 of its 28 characters make the tag).
#[cfg(test)]
fn base64(bytes: &[u8]) -> String {
    let mut out = String::new();
    base64_into(bytes, &mut out);
    out
}

fn base64_into(bytes: &[u8], out: &mut String) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
}

/// Whether the client's cached copy, tagged as it says, is still this response (`fresh` npm
/// semantics; REST responses carry no `Last-Modified`, so `If-Modified-Since` alone never
/// matches them).
pub fn is_fresh(req: &HttpRequest, status: u16, etag: &str) -> bool {
    if !matches!(*req.method(), Method::GET | Method::HEAD) || !(200..300).contains(&status) {
        return false;
    }
    fresh(req, etag, None)
}

/// The `fresh` module proper: the request's `If-None-Match` / `If-Modified-Since` against the
/// response's tag and last modification (whole seconds, as `Last-Modified` carries it).
pub fn fresh(req: &HttpRequest, etag: &str, last_modified: Option<SystemTime>) -> bool {
    let headers = req.headers();
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let none_match = header(IF_NONE_MATCH);
    let modified_since = header(IF_MODIFIED_SINCE);
    if none_match.is_none() && modified_since.is_none() {
        return false;
    }
    if header(CACHE_CONTROL).is_some_and(wants_no_cache) {
        return false;
    }
    if none_match.is_some_and(|list| list != "*" && !names_tag(list, etag)) {
        return false;
    }
    match (modified_since, last_modified) {
        (None, _) => true,
        (Some(since), Some(modified)) => unchanged_since(modified, since) == Some(true),
        (Some(_), None) => false,
    }
}

/// A list of entity tags (`If-None-Match`, `If-Match`) names `tag`, weak or strong alike.
pub(crate) fn names_tag(list: &str, tag: &str) -> bool {
    list.split([' ', ','])
        .filter(|t| !t.is_empty())
        .any(|t| t == tag || tag.strip_prefix("W/") == Some(t) || t.strip_prefix("W/") == Some(tag))
}

/// Whether a resource modified at `modified` is unchanged as of the HTTP date `date`, in whole
/// seconds as `Last-Modified` carries it; `None` when `date` is not an HTTP date.
pub(crate) fn unchanged_since(modified: SystemTime, date: &str) -> Option<bool> {
    let secs = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    };
    let since = date.parse::<HttpDate>().ok()?;
    Some(secs(modified) <= secs(SystemTime::from(since)))
}

/// `Cache-Control` holds the `no-cache` directive.
fn wants_no_cache(cc: &str) -> bool {
    cc.split(',').any(|d| d.trim() == "no-cache")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_match_express() {
        // From WIRE.md's captures of the real LoopBack 3.
        assert_eq!(
            EtagMode::Weak.tag(b"{\"exists\":true}").unwrap(),
            "W/\"f-lWSD52foMX4qLT82tweJE091S9Q\""
        );
        assert_eq!(
            EtagMode::Weak.tag(b"").unwrap(),
            "W/\"0-2jmj7l5rSw0yVb/vlWAYkK/YBwk\""
        );
        assert_eq!(
            EtagMode::Strong.tag(b"{\"exists\":true}").unwrap(),
            "\"f-lWSD52foMX4qLT82tweJE091S9Q\""
        );
        assert_eq!(EtagMode::Off.tag(b"x"), None);
    }

    #[test]
    fn base64_pads_like_node() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foob"), "Zm9vYg==");
    }

    #[test]
    fn freshness_follows_the_fresh_module() {
        use actix_web::test::TestRequest;
        let tag = "W/\"f-lWSD52foMX4qLT82tweJE091S9Q\"";
        let get = |h: &[(&str, &str)]| {
            let mut r = TestRequest::get();
            for (k, v) in h {
                r = r.insert_header((*k, *v));
            }
            r.to_http_request()
        };
        assert!(is_fresh(&get(&[("if-none-match", tag)]), 200, tag));
        assert!(is_fresh(
            &get(&[("if-none-match", "\"f-lWSD52foMX4qLT82tweJE091S9Q\"")]),
            200,
            tag
        ));
        assert!(is_fresh(
            &get(&[("if-none-match", &format!("\"a\", {tag}"))]),
            200,
            tag
        ));
        assert!(is_fresh(&get(&[("if-none-match", "*")]), 200, tag));
        assert!(!is_fresh(
            &get(&[("if-none-match", "W/\"0-nope\"")]),
            200,
            tag
        ));
        assert!(!is_fresh(&get(&[]), 200, tag));
        assert!(!is_fresh(&get(&[("if-none-match", tag)]), 404, tag));
        assert!(!is_fresh(
            &get(&[("if-none-match", tag), ("cache-control", "no-cache")]),
            200,
            tag
        ));
        assert!(!is_fresh(
            &get(&[("if-modified-since", "Sat, 28 Nov 2026 00:00:00 GMT")]),
            200,
            tag
        ));
        // Static files carry Last-Modified: a date condition compares whole seconds.
        use std::time::Duration;
        let modified = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_000_000_500);
        let at = HttpDate::from(modified).to_string();
        let later = HttpDate::from(modified + Duration::from_secs(1)).to_string();
        let earlier = HttpDate::from(modified - Duration::from_secs(1)).to_string();
        assert!(fresh(
            &get(&[("if-modified-since", &at)]),
            tag,
            Some(modified)
        ));
        assert!(fresh(
            &get(&[("if-modified-since", &later)]),
            tag,
            Some(modified)
        ));
        assert!(!fresh(
            &get(&[("if-modified-since", &earlier)]),
            tag,
            Some(modified)
        ));
        assert!(!fresh(
            &get(&[("if-modified-since", "yesterday")]),
            tag,
            Some(modified)
        ));
        assert!(!fresh(
            &get(&[("if-modified-since", &at), ("if-none-match", "W/\"0-x\"")]),
            tag,
            Some(modified)
        ));
        let post = TestRequest::post()
            .insert_header(("if-none-match", tag))
            .to_http_request();
        assert!(!is_fresh(&post, 200, tag));
    }
}
