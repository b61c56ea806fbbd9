//! `GET/POST /{Model}/change-stream` and `/{Model}/{id}/change-stream`: a model's change feed
//! as server-sent events with LoopBack 3's framing (`:ok`, then `event: data` + `data:
//! <change>` per change), or as the JSON lines LoopBack uses when the client does not accept
//! event streams.
//!
//! Beyond LoopBack, on by default (EventSource clients need no change): every event carries an
//! `id:`; a client reconnecting with `Last-Event-ID` (or `?lastEventId=`) gets the retained
//! events after it, then live ones, with no gap and no duplicate, or `event: reset` when they
//! are gone; a `retry:` hint; heartbeat comments on idle streams; a subscriber that falls behind
//! its bounded queue, and every stream at shutdown, gets a final `event: close` with the last
//! id it received. A subscription lives exactly as long as the response body.
//!
//! With auth enabled, each event is also checked against the subscriber's rights to read
//! its record ([`oxbow_auth::EventRights`]): a subscriber allowed only its own records is
//! keyed by its user id and sent only their events; a stream whose token is deleted or
//! expires ends with `event: close` `{"reason":"unauthorized"}`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix_web::http::header::{CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE, HeaderValue};
use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;
use futures_util::stream;
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use oxbow_core::{ChangeData, ChangeEvent, ChangeStream, Filter, Model, RecvError, Resume};

use crate::RestError;

/// Change-stream behaviour from config.json `changeStreams`.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// `id:` lines (and so resume). Off gives LoopBack's exact bytes.
    pub ids: bool,
    /// The `retry:` hint in milliseconds (0: none).
    pub retry_ms: u64,
    /// Heartbeat comment interval on idle streams.
    pub heartbeat: Option<Duration>,
}

impl Default for StreamOptions {
    fn default() -> Self {
        Self {
            ids: true,
            retry_ms: 2000,
            heartbeat: Some(Duration::from_secs(15)),
        }
    }
}

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

/// What a subscriber receives: its `options` filter and, for per-record streams, the id.
struct Selection {
    filter: Option<Filter>,
    target: Option<Value>,
}

impl Selection {
    /// LoopBack matches `where` against the event's `data`; events without data (deletes) are
    /// matched against `{<id>: target}`, so a `where` on the id also sees deletes.
    fn passes(&self, model: &Model, event: &ChangeEvent) -> bool {
        if let Some(t) = &self.target {
            if event.target.as_ref() != Some(t) {
                return false;
            }
        }
        let Some(w) = self.filter.as_ref().and_then(|f| f.where_.as_ref()) else {
            return true;
        };
        match &event.data {
            Some(ChangeData::Record(_, row)) => w.matches(&**row),
            Some(ChangeData::Value(Value::Object(map))) => w.matches(map),
            Some(ChangeData::Value(_)) => false,
            None => {
                let Some(t) = &event.target else { return false };
                let mut only_id = Map::new();
                only_id.insert(model.definition().id_name().to_owned(), t.clone());
                w.matches(&only_id)
            }
        }
    }

    /// The change as JSON, `data` reduced to `fields` when the subscriber asked for them.
    fn render(&self, event: &ChangeEvent) -> String {
        let Some(f) = self.filter.as_ref().filter(|f| f.fields.is_some()) else {
            return event.to_json().to_owned();
        };
        let mut payload = event.payload();
        if let Some(Value::Object(data)) = payload.get("data") {
            let projected = f.project(data).unwrap_or_default();
            payload["data"] = Value::Object(projected);
        }
        payload.to_string()
    }
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

/// The id a reconnecting client last received: the `Last-Event-ID` header (what browsers
/// send) or `?lastEventId=`. `Some(None)`: present but not one of ours.
fn last_event_id(req: &HttpRequest, query: &Map<String, Value>) -> Option<Option<u64>> {
    let raw = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| {
            query
                .get("lastEventId")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })?;
    Some(raw.trim().parse().ok())
}

/// What a stream checks its events and its token against.
pub struct Guard {
    pub auth: Arc<oxbow_auth::Auth>,
    pub registry: Arc<oxbow_core::Registry>,
    rights: oxbow_auth::EventRights,
    /// Ends the stream when the subscriber's token is deleted.
    revoked: Option<oxbow_auth::Revoked>,
    /// When the subscriber's token expires.
    expires: Option<tokio::time::Instant>,
}

impl Guard {
    /// The guard of `caller`'s stream on `model` (`None` when auth is off: nothing to check).
    pub async fn of(
        auth: &Arc<oxbow_auth::Auth>,
        registry: &Arc<oxbow_core::Registry>,
        model: &Arc<Model>,
        caller: &oxbow_core::Caller,
    ) -> Result<Option<Self>, RestError> {
        if !auth.enabled {
            return Ok(None);
        }
        let rights = oxbow_auth::EventRights::of(auth, registry, model, caller).await?;
        let token = caller.token();
        let expires = token.filter(|t| t.ttl >= 0.0).map(|t| {
            let end_ms = t.created_ms as f64 + t.ttl * 1000.0;
            let left = (end_ms - chrono::Utc::now().timestamp_millis() as f64).max(0.0);
            tokio::time::Instant::now() + Duration::from_millis(left.min(1e12) as u64)
        });
        Ok(Some(Self {
            revoked: token.and_then(|t| auth.watch(t)),
            auth: auth.clone(),
            registry: registry.clone(),
            rights,
            expires,
        }))
    }
}

/// Everything one open stream needs while it runs.
struct Run {
    model: Arc<Model>,
    /// The subscriber: what a per-event rights check asks about.
    caller: oxbow_core::Caller,
    guard: Option<Guard>,
    changes: ChangeStream,
    selection: Selection,
    framing: Framing,
    opts: StreamOptions,
    shutdown: watch::Receiver<bool>,
    /// The shutdown sender is gone (an in-process app dropped): no shutdown will come.
    shutdown_gone: bool,
    id: String,
    /// Chunks to send before reading the feed.
    queued: std::collections::VecDeque<Bytes>,
    /// The id of the last event this subscriber was sent.
    last_sent: u64,
    done: bool,
}

impl Run {
    fn close_event(&self, reason: &str) -> Bytes {
        let data = json!({ "lastEventId": self.last_sent, "reason": reason });
        let retry = if self.opts.retry_ms > 0 {
            format!("retry: {}\n", self.opts.retry_ms)
        } else {
            String::new()
        };
        match self.framing {
            Framing::Sse => Bytes::from(format!("{retry}event: close\ndata: {data}\n\n")),
            Framing::Lines => Bytes::from(format!("[\"{}\",\"end\"]\n", self.id)),
        }
    }

    fn event_chunk(&self, event: &ChangeEvent) -> Bytes {
        let json = self.selection.render(event);
        Bytes::from(match self.framing {
            Framing::Sse if self.opts.ids => {
                format!("id: {}\nevent: data\ndata: {json}\n\n", event.seq)
            }
            Framing::Sse => format!("event: data\ndata: {json}\n\n"),
            Framing::Lines => format!("[\"{}\",\"data\",{json}]\n", self.id),
        })
    }

    /// The next chunk of the body, or `None` when the stream ends.
    async fn next(&mut self) -> Option<Bytes> {
        if let Some(chunk) = self.queued.pop_front() {
            return Some(chunk);
        }
        if self.done {
            return None;
        }
        loop {
            if *self.shutdown.borrow() {
                self.done = true;
                return Some(self.close_event("shutdown"));
            }
            let heartbeat = self.opts.heartbeat.filter(|_| self.framing == Framing::Sse);
            let recv = self.changes.recv();
            let gone = self.shutdown_gone;
            let shutdown = self.shutdown.changed();
            let (revoked, expires) = match &mut self.guard {
                Some(g) => (g.revoked.as_mut(), g.expires),
                None => (None, None),
            };
            let got = tokio::select! {
                r = recv => Some(r),
                r = shutdown, if !gone => {
                    if r.is_err() {
                        self.shutdown_gone = true;
                    }
                    None
                }
                _ = revoked_or_never(revoked) => {
                    self.done = true;
                    return Some(self.close_event("unauthorized"));
                }
                _ = sleep_until_or_never(expires) => {
                    self.done = true;
                    return Some(self.close_event("unauthorized"));
                }
                _ = sleep_or_never(heartbeat) => return Some(Bytes::from_static(b":heartbeat\n\n")),
            };
            match got {
                None => continue,
                Some(Ok(event)) => {
                    if !self.selection.passes(&self.model, &event) {
                        continue;
                    }
                    if let Some(g) = &self.guard {
                        let allowed = g
                            .rights
                            .permits(&g.auth, &g.registry, &self.model, &self.caller, &event)
                            .await;
                        // A check that fails (a resolver's error) withholds the event.
                        if !allowed.unwrap_or(false) {
                            continue;
                        }
                    }
                    if self.opts.ids {
                        self.last_sent = event.seq;
                    }
                    return Some(self.event_chunk(&event));
                }
                // Cut off a subscriber that fell behind its bounded queue, telling it where it
                // was: with `Last-Event-ID` it resumes from retention and loses nothing.
                Some(Err(RecvError::Lagged(_))) => {
                    self.done = true;
                    return Some(self.close_event("overflow"));
                }
                Some(Err(RecvError::Closed)) => return None,
            }
        }
    }
}

async fn revoked_or_never(r: Option<&mut oxbow_auth::Revoked>) {
    match r {
        Some(r) => r.wait().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_or_never(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn sleep_or_never(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// Opens a change stream for `model` (one record when `target` is set). `options` comes from
/// the query or the POST body.
#[allow(clippy::too_many_arguments)]
pub async fn open(
    model: Arc<Model>,
    caller: oxbow_core::Caller,
    guard: Option<Guard>,
    target: Option<Value>,
    req: &HttpRequest,
    query: &Map<String, Value>,
    raw_options: Option<&Value>,
    opts: StreamOptions,
    shutdown: watch::Receiver<bool>,
) -> Result<HttpResponse, RestError> {
    let framing = framing(req, query);
    let filter = match raw_options {
        Some(v) => Some(model.parse_filter(v)?),
        None => None,
    };
    let target = target.map(|t| model.coerce_id(&t));
    let resume = if opts.ids {
        last_event_id(req, query)
    } else {
        None
    };
    // A subscriber that may see only its own records' events is sent only those.
    let key = guard.as_ref().and_then(|g| g.rights.key());
    let (changes, reset, last_sent) = match resume {
        None => (
            model.changes().subscribe_now_for(key).await?,
            false,
            model.changes().last_seq(),
        ),
        Some(None) => (
            model.changes().subscribe_now_for(key).await?,
            true,
            model.changes().last_seq(),
        ),
        Some(Some(last)) => {
            let (s, how) = model.changes().subscribe_after_for(last, key).await?;
            (s, how == Resume::Reset, last)
        }
    };
    let id = stream_id();
    let mut queued = std::collections::VecDeque::new();
    match framing {
        Framing::Sse => {
            queued.push_back(Bytes::from_static(b":ok\n\n"));
            if opts.retry_ms > 0 && opts.ids {
                queued.push_back(Bytes::from(format!("retry: {}\n\n", opts.retry_ms)));
            }
            if reset {
                let last = model.changes().last_seq();
                let data = json!({ "lastEventId": last, "reason": "events after the given id are no longer retained; refetch" });
                queued.push_back(Bytes::from(format!(
                    "id: {last}\nevent: reset\ndata: {data}\n\n"
                )));
            }
        }
        Framing::Lines => {
            queued.push_back(Bytes::from(format!(
                "[\"{id}\",\"new\",{{\"opts\":{{\"writable\":false,\"readable\":true}}}}]\n"
            )));
        }
    }
    let run = Run {
        model,
        caller,
        guard,
        changes,
        selection: Selection { filter, target },
        framing,
        opts,
        shutdown,
        shutdown_gone: false,
        id,
        queued,
        last_sent,
        done: false,
    };
    let body = stream::unfold(run, |mut run| async move {
        let chunk = run.next().await?;
        Some((Ok::<_, std::convert::Infallible>(chunk), run))
    });
    let mut resp = HttpResponse::Ok();
    // A stream ends only for good (overflow, shutdown, a closed feed): the connection closes
    // after its last event instead of idling in keep-alive.
    resp.force_close();
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
