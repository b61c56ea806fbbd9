//! `GET/POST /{Model}/change-stream`: a model's change feed as server-sent events, with
//! LoopBack 3's bytes (`:ok`, then `event: data` + `data: <change>` per change), or as the
//! newline-delimited JSON framing LoopBack uses when the client does not accept event streams.
//!
//! A subscription lives exactly as long as the response body: when the client goes away, actix
//! drops the body stream and with it the subscription.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::http::header::{CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE, HeaderValue};
use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;
use futures_util::stream;
use serde_json::{Map, Value};

use oxbow_core::{ChangeData, ChangeEvent, ChangeStream, Filter, Model, RecvError};

use crate::RestError;

/// How the stream is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// `text/event-stream`.
    Sse,
    /// LoopBack's mux-demux lines for its Node client: `["<id>","data",<change>]`.
    Lines,
}

/// strong-remoting's choice: `_format=event-stream`, or a client that accepts
/// `text/event-stream` (no `Accept`, `*/*`, `text/event-stream`, …).
fn framing(req: &HttpRequest, query: &Map<String, Value>) -> Framing {
    if query.get("_format").and_then(Value::as_str) == Some("event-stream") {
        return Framing::Sse;
    }
    if crate::negotiate::accepts(req, "text/event-stream") {
        Framing::Sse
    } else {
        Framing::Lines
    }
}

/// The `options` argument: `where` and `fields` filter and shape the events.
fn options(model: &Model, raw: Option<&Value>) -> Result<Option<Filter>, RestError> {
    match raw {
        None => Ok(None),
        Some(v) => Ok(Some(model.parse_filter(v)?)),
    }
}

/// Whether an event passes the subscriber's `where` (LoopBack matches the event's `data`, so
/// events without data never pass a `where`).
fn passes(filter: &Filter, event: &ChangeEvent) -> bool {
    let Some(w) = &filter.where_ else { return true };
    match &event.data {
        Some(ChangeData::Record(_, row)) => w.matches(&**row),
        Some(ChangeData::Value(Value::Object(map))) => w.matches(map),
        _ => false,
    }
}

/// The change as JSON, with `data` reduced to `fields` when the subscriber asked for them.
fn render(filter: Option<&Filter>, event: &ChangeEvent) -> String {
    let Some(f) = filter.filter(|f| f.fields.is_some()) else {
        return event.to_json().to_owned();
    };
    let mut payload = event.payload();
    if let Some(Value::Object(data)) = payload.get("data") {
        let projected = f.project(data).unwrap_or_default();
        payload["data"] = Value::Object(projected);
    }
    payload.to_string()
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A 26-hex-digit stream id, as mux-demux makes them (unique per process, not secret).
fn stream_id() -> String {
    let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{:010x}{:016x}",
        (t as u64) & 0xff_ffff_ffff,
        n.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    )
}

/// Opens a change stream for `model`. `options` comes from the query or the POST body.
pub fn open(
    model: Arc<Model>,
    req: &HttpRequest,
    query: &Map<String, Value>,
    raw_options: Option<&Value>,
) -> Result<HttpResponse, RestError> {
    let framing = framing(req, query);
    let filter = options(&model, raw_options)?;
    let changes = model.subscribe();
    let id = stream_id();
    let first = match framing {
        Framing::Sse => Bytes::from_static(b":ok\n\n"),
        Framing::Lines => Bytes::from(format!(
            "[\"{id}\",\"new\",{{\"opts\":{{\"writable\":false,\"readable\":true}}}}]\n"
        )),
    };
    struct State {
        changes: ChangeStream,
        filter: Option<Filter>,
        framing: Framing,
        id: String,
        first: Option<Bytes>,
    }
    let state = State {
        changes,
        filter,
        framing,
        id,
        first: Some(first),
    };
    let body = stream::unfold(state, |mut st| async move {
        if let Some(first) = st.first.take() {
            return Some((Ok::<_, std::convert::Infallible>(first), st));
        }
        loop {
            match st.changes.recv().await {
                Ok(event) => {
                    if st.filter.as_ref().is_some_and(|f| !passes(f, &event)) {
                        continue;
                    }
                    let json = render(st.filter.as_ref(), &event);
                    let chunk = match st.framing {
                        Framing::Sse => format!("event: data\ndata: {json}\n\n"),
                        Framing::Lines => format!("[\"{}\",\"data\",{json}]\n", st.id),
                    };
                    return Some((Ok(Bytes::from(chunk)), st));
                }
                // A subscriber that fell behind is closed rather than silently skipping events.
                Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => return None,
            }
        }
    });
    let mut resp = HttpResponse::Ok();
    match framing {
        Framing::Sse => {
            // `x-no-compression` is LoopBack's way to keep the compression middleware off the
            // stream; actix's compressor also leaves a response with a Content-Encoding alone.
            resp.insert_header((
                CONTENT_ENCODING,
                HeaderValue::from_static("x-no-compression"),
            ));
            resp.insert_header((CONTENT_TYPE, HeaderValue::from_static("text/event-stream")));
            resp.insert_header((
                CACHE_CONTROL,
                HeaderValue::from_static("no-cache, no-transform"),
            ));
            resp.insert_header(("X-Accel-Buffering", HeaderValue::from_static("no")));
        }
        Framing::Lines => {
            resp.insert_header((
                CONTENT_TYPE,
                HeaderValue::from_static("application/json; boundary=NL"),
            ));
        }
    }
    Ok(resp.streaming(body))
}
