//! npm `compression` 1.8 as a response filter: the same decisions in the same order
//! (compressible type, `no-transform`, `Vary: Accept-Encoding`, threshold, existing encoding,
//! HEAD, Accept-Encoding negotiation preferring br then gzip), then gzip, deflate or brotli.
//!
//! Bodies in memory are compressed in one go; streamed bodies are compressed chunk by chunk
//! with a flush after each, so a stream is never held back waiting for more data.

use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::http::Method;
use actix_web::http::header::{
    ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue,
};
use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;

use oxbow_config::middleware::CompressionOptions;

/// The codings compression 1.8 offers, and the ones it prefers on equal quality.
const SUPPORTED: [&str; 4] = ["br", "gzip", "deflate", "identity"];
const PREFERRED: [&str; 2] = ["br", "gzip"];

/// Compresses `res` when npm `compression` would.
pub fn maybe_compress(
    req: &HttpRequest,
    mut res: HttpResponse,
    opts: &CompressionOptions,
) -> HttpResponse {
    let heads = res.headers();
    let compressible_type = heads
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(compressible);
    if !compressible_type {
        return res;
    }
    let no_transform = heads
        .get(CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|cc| {
            cc.split(',')
                .any(|d| d.trim().eq_ignore_ascii_case("no-transform"))
        });
    if no_transform {
        return res;
    }
    crate::pipeline::add_vary(res.headers_mut(), "Accept-Encoding", false);
    let below = match res.body().size() {
        BodySize::Sized(n) => (n as usize) < opts.threshold,
        BodySize::None => 0 < opts.threshold,
        BodySize::Stream => false,
    };
    let declared_small = res
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n < opts.threshold);
    if below || declared_small {
        return res;
    }
    let encoded = res
        .headers()
        .get(CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes() != b"identity");
    if encoded || req.method() == Method::HEAD {
        return res;
    }
    let accept = match req.headers().get(ACCEPT_ENCODING) {
        None => return res, // compression's `enforceEncoding` default: identity
        Some(v) => v.to_str().unwrap_or(""),
    };
    let Some(coding) = negotiate(accept) else {
        return res;
    };
    if coding == "identity" {
        return res;
    }
    let mut encoder = Encoder::new(coding, opts);
    res.headers_mut()
        .insert(CONTENT_ENCODING, HeaderValue::from_static(coding));
    res.headers_mut().remove(CONTENT_LENGTH);
    res.map_body(move |_, body| match body.try_into_bytes() {
        Ok(bytes) => {
            let mut out = encoder.write(&bytes);
            out.extend_from_slice(&encoder.finish());
            BoxBody::new(Bytes::from(out))
        }
        Err(body) => BoxBody::new(Compressed {
            inner: body,
            encoder: Some(encoder),
        }),
    })
}

/// mime-db's `compressible` flag for the types a LoopBack app serves, else compressible's
/// fallback (`text/*`, `+json`, `+text`, `+xml`).
pub fn compressible(ctype: &str) -> bool {
    let mime = ctype
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "application/json"
        | "application/javascript"
        | "application/x-javascript"
        | "application/xml"
        | "application/xhtml+xml"
        | "application/wasm"
        | "application/rtf"
        | "application/x-font-ttf"
        | "application/vnd.ms-fontobject"
        | "application/graphql"
        | "font/ttf"
        | "font/otf"
        | "image/bmp"
        | "image/x-icon"
        | "image/vnd.microsoft.icon"
        | "image/svg+xml" => true,
        _ => {
            mime.starts_with("text/")
                || mime.ends_with("+json")
                || mime.ends_with("+text")
                || mime.ends_with("+xml")
        }
    }
}

/// One Accept-Encoding entry.
struct Spec<'a> {
    coding: &'a str,
    q: f64,
    index: usize,
}

/// negotiator 0.6's `encoding(available, preferred)`: the best coding we offer, if any.
pub fn negotiate(accept: &str) -> Option<&'static str> {
    let mut specs: Vec<Spec<'_>> = Vec::new();
    let mut has_identity = false;
    let mut min_q: f64 = 1.0;
    for (i, part) in accept.split(',').enumerate() {
        let part = part.trim();
        let mut pieces = part.split(';');
        let coding = pieces.next().unwrap_or("").trim();
        if coding.is_empty() || coding.contains(char::is_whitespace) {
            continue;
        }
        let mut q = 1.0;
        for p in pieces {
            let mut kv = p.trim().splitn(2, '=');
            if kv.next().map(str::trim) == Some("q") {
                // JavaScript's parseFloat: a bad number is NaN, which is never > 0.
                q = kv
                    .next()
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .unwrap_or(f64::NAN);
                break;
            }
        }
        has_identity |= coding.eq_ignore_ascii_case("identity") || coding == "*";
        if q.is_finite() {
            min_q = min_q.min(q);
        }
        specs.push(Spec {
            coding,
            q,
            index: i,
        });
    }
    if !has_identity {
        specs.push(Spec {
            coding: "identity",
            q: min_q,
            index: specs.len(),
        });
    }
    // For each offered coding, its best matching entry: (specificity, q, order).
    struct Priority {
        coding: &'static str,
        s: u8,
        q: f64,
        o: isize,
        i: usize,
    }
    let mut priorities: Vec<Priority> = Vec::new();
    for (i, coding) in SUPPORTED.iter().enumerate() {
        let mut best = Priority {
            coding,
            s: 0,
            q: 0.0,
            o: -1,
            i,
        };
        for spec in &specs {
            let s = if spec.coding.eq_ignore_ascii_case(coding) {
                1
            } else if spec.coding == "*" {
                0
            } else {
                continue;
            };
            let better = (best.s as i32 - s as i32) < 0
                || (best.s == s && best.q < spec.q)
                || (best.s == s && best.q == spec.q && best.o < spec.index as isize);
            if better {
                best = Priority {
                    coding,
                    s,
                    q: spec.q,
                    o: spec.index as isize,
                    i,
                };
            }
        }
        if best.q > 0.0 {
            priorities.push(best);
        }
    }
    let pref = |c: &str| PREFERRED.iter().position(|p| *p == c);
    priorities.sort_by(|a, b| {
        use std::cmp::Ordering;
        if a.q != b.q {
            return b.q.partial_cmp(&a.q).unwrap_or(Ordering::Equal);
        }
        match (pref(a.coding), pref(b.coding)) {
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => b.s.cmp(&a.s).then(a.o.cmp(&b.o)).then(a.i.cmp(&b.i)),
        }
    });
    priorities.first().map(|p| p.coding)
}

enum Encoder {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Deflate(flate2::write::ZlibEncoder<Vec<u8>>),
    Br(Box<brotli::CompressorWriter<Vec<u8>>>),
}

impl Encoder {
    fn new(coding: &str, opts: &CompressionOptions) -> Self {
        let level = if opts.level < 0 { 6 } else { opts.level as u32 };
        let level = flate2::Compression::new(level);
        match coding {
            "gzip" => Encoder::Gzip(flate2::write::GzEncoder::new(Vec::new(), level)),
            "deflate" => Encoder::Deflate(flate2::write::ZlibEncoder::new(Vec::new(), level)),
            _ => Encoder::Br(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                4096,
                opts.brotli_quality,
                22,
            ))),
        }
    }

    /// Feeds a chunk; returns what the encoder produced so far (nothing is held back).
    fn write(&mut self, chunk: &[u8]) -> Vec<u8> {
        // Writes into a Vec cannot fail.
        match self {
            Encoder::Gzip(e) => {
                let _ = e.write_all(chunk);
                let _ = e.flush();
                std::mem::take(e.get_mut())
            }
            Encoder::Deflate(e) => {
                let _ = e.write_all(chunk);
                let _ = e.flush();
                std::mem::take(e.get_mut())
            }
            Encoder::Br(e) => {
                let _ = e.write_all(chunk);
                let _ = e.flush();
                std::mem::take(e.get_mut())
            }
        }
    }

    fn finish(self) -> Vec<u8> {
        match self {
            Encoder::Gzip(e) => e.finish().unwrap_or_default(),
            Encoder::Deflate(e) => e.finish().unwrap_or_default(),
            Encoder::Br(e) => e.into_inner(),
        }
    }
}

/// A streamed body, compressed chunk by chunk.
struct Compressed {
    inner: BoxBody,
    encoder: Option<Encoder>,
}

impl MessageBody for Compressed {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        BodySize::Stream
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        loop {
            if self.encoder.is_none() {
                return Poll::Ready(None);
            }
            match Pin::new(&mut self.inner).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(chunk))) => {
                    let out = self
                        .encoder
                        .as_mut()
                        .map(|e| e.write(&chunk))
                        .unwrap_or_default();
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Bytes::from(out))));
                    }
                }
                Poll::Ready(None) => {
                    let out = self.encoder.take().map(Encoder::finish).unwrap_or_default();
                    return Poll::Ready(Some(Ok(Bytes::from(out))));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_matches_compression_1_8() {
        assert_eq!(negotiate("gzip, deflate, br"), Some("br"));
        assert_eq!(negotiate("gzip"), Some("gzip"));
        assert_eq!(negotiate("deflate"), Some("deflate"));
        assert_eq!(negotiate("deflate, gzip"), Some("gzip"));
        assert_eq!(negotiate("gzip;q=0.5, deflate"), Some("deflate"));
        assert_eq!(negotiate("identity"), Some("identity"));
        assert_eq!(negotiate(""), Some("identity"));
        assert_eq!(negotiate("*"), Some("br"));
        assert_eq!(negotiate("gzip;q=0, identity;q=0"), None);
        assert_eq!(negotiate("zstd"), Some("identity"));
    }

    #[test]
    fn compressible_types() {
        assert!(compressible("application/json; charset=utf-8"));
        assert!(compressible("text/event-stream"));
        assert!(compressible("application/vnd.api+json"));
        assert!(!compressible("image/png"));
        assert!(!compressible("application/octet-stream"));
    }
}
