//! The middleware.json pipeline at request time: one actix middleware that runs the compiled
//! plan's entries in order, as Express would run them.
//!
//! The plan splits at `loopback#rest`. Entries before it run here, in [`Pipeline`], for every
//! request: they may answer (favicon, CORS preflight, rate limit, a custom middleware) or leave
//! [`Effects`] on the response (headers, compression, request id, access log). Then the actix
//! router runs (plugin routes, the REST root). Entries after `loopback#rest` run only for
//! requests nobody answered ([`fallback`]): static files, `urlNotFound`, custom ones.
//!
//! Everything is decided at boot: header names and values are built once, so the default
//! pipeline (cors and helmet) costs a few header inserts per request.

use std::collections::HashMap;
use std::future::{Future, Ready};
use std::net::IpAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_web::body::BoxBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::header::{
    self, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, VARY,
};
use actix_web::http::{Method, StatusCode};
use actix_web::{Error, HttpMessage, HttpRequest, HttpResponse};
use futures_util::future::{Either, LocalBoxFuture};
use serde_json::Value;

use oxbow_config::middleware::{
    CompressionOptions, CorsOptions, CorsOrigin, Entry, FaviconOptions, HeaderRule, Kind,
    MiddlewarePlan, RateLimitOptions, RequestIdOptions,
};

/// strong-error-handler's options, as compiled from middleware.json.
pub use oxbow_config::middleware::ErrorHandlerOptions as ErrorOptions;

use crate::{RestError, compress, etag, files};

/// A middleware a Rust plugin provides for a middleware.json name (`./middleware/audit`).
pub trait Middleware: Send + Sync + 'static {
    /// Runs for each request the entry applies to. `Ok(Some(response))` answers the request
    /// (nothing after this entry runs); `Ok(None)` passes it on; an error becomes LoopBack's
    /// error body.
    fn handle<'a>(
        &'a self,
        req: &'a HttpRequest,
    ) -> LocalBoxFuture<'a, Result<Option<HttpResponse>, RestError>>;

    /// Sees (and may change) the response of every request `handle` passed on.
    fn respond(&self, _req: &HttpRequest, _res: &mut HttpResponse) {}
}

/// Builds a plugin middleware from its entry's `params`.
pub type MiddlewareFactory =
    Arc<dyn Fn(&Value) -> anyhow::Result<Arc<dyn Middleware>> + Send + Sync>;

/// One entry ready to run.
struct Stage {
    entry: Entry,
    run: Run,
    /// Headers this entry always sets (helmet's, cors's credentials and exposed headers),
    /// built once; a request only records that the entry ran.
    statics: Vec<(HeaderName, HeaderValue)>,
}

enum Run {
    Compression(CompressionOptions),
    Cors(Box<Cors>),
    /// helmet: its headers are the stage's statics; `true` when X-XSS-Protection must be
    /// `0` for old Internet Explorer.
    Headers(bool),
    Favicon(Favicon),
    Static(Vec<files::StaticRoot>),
    Status(Status),
    UrlNotFound,
    RequestId(RequestIdOptions, HeaderName),
    AccessLog(u64),
    RateLimit(Arc<RateLimiter>),
    Timeout(Duration),
    Custom(Arc<dyn Middleware>),
    Nothing,
}

/// The compiled pipeline, shared by every worker.
pub struct Compiled {
    before: Vec<Stage>,
    after: Vec<Stage>,
    /// strong-error-handler's options (the first error-handling entry's, or its defaults).
    pub errors: ErrorOptions,
    /// Whether any entry before the router needs the slow (async) path.
    needs_async: bool,
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiled")
            .field(
                "before",
                &self
                    .before
                    .iter()
                    .map(|s| &s.entry.name)
                    .collect::<Vec<_>>(),
            )
            .field(
                "after",
                &self.after.iter().map(|s| &s.entry.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Names oxbow itself provides (for the unknown-name error).
pub const BUILTIN_NAMES: &[&str] = &[
    "compression",
    "cors",
    "helmet",
    "helmet#xssFilter",
    "helmet#frameguard",
    "helmet#hsts",
    "helmet#hidePoweredBy",
    "helmet#ieNoOpen",
    "helmet#noSniff",
    "helmet#noCache",
    "helmet#dnsPrefetchControl",
    "helmet#referrerPolicy",
    "helmet#permittedCrossDomainPolicies",
    "loopback#favicon",
    "serve-favicon",
    "loopback#rest",
    "loopback#static",
    "serve-static",
    "loopback#status",
    "loopback#token",
    "loopback#urlNotFound",
    "strong-error-handler",
    "oxbow#requestId",
    "oxbow#accessLog",
    "oxbow#rateLimit",
    "oxbow#timeout",
];

impl Compiled {
    /// Compiles the plan; plugin middleware are looked up by name here, so an unknown name
    /// fails boot with the list of names that exist.
    pub fn new(
        plan: &MiddlewarePlan,
        custom: &HashMap<String, MiddlewareFactory>,
    ) -> anyhow::Result<Self> {
        let mut before = Vec::new();
        let mut after = Vec::new();
        let mut errors = None;
        let mut seen_rest = !plan.declared;
        for entry in &plan.entries {
            let mut statics = Vec::new();
            let run = match &entry.kind {
                Kind::Rest => {
                    seen_rest = true;
                    continue;
                }
                Kind::ErrorHandler(o) => {
                    errors.get_or_insert_with(|| o.clone());
                    continue;
                }
                Kind::Token(_) => Run::Nothing,
                Kind::Compression(o) => Run::Compression(*o),
                Kind::Cors(o) => {
                    let cors = Cors::new(o)?;
                    statics = cors.statics();
                    Run::Cors(Box::new(cors))
                }
                Kind::Helmet(rules) => {
                    let (mut set, xss) = helmet(rules)?;
                    // The usual value is static; Internet Explorer before 9 gets a `0` that
                    // wins over it (request-dependent headers are applied first).
                    let old_ie = xss.is_some();
                    if let Some(v) = xss {
                        set.push((HeaderName::from_static("x-xss-protection"), v));
                    }
                    statics = set;
                    Run::Headers(old_ie)
                }
                Kind::Favicon(o) => Run::Favicon(Favicon::new(o)?),
                Kind::Static { root } => Run::Static(vec![files::StaticRoot {
                    mount: String::new(),
                    dir: root.clone(),
                }]),
                Kind::Status => Run::Status(Status::new()),
                Kind::UrlNotFound => Run::UrlNotFound,
                Kind::RequestId(o) => Run::RequestId(
                    o.clone(),
                    HeaderName::try_from(o.header.as_str())
                        .map_err(|e| anyhow::anyhow!("{}: {e}", o.header))?,
                ),
                Kind::AccessLog(o) => Run::AccessLog(o.slower_than_ms),
                Kind::RateLimit(o) => Run::RateLimit(Arc::new(RateLimiter::new(o.clone()))),
                Kind::Timeout(o) => Run::Timeout(Duration::from_millis(o.ms)),
                Kind::Custom { params } => match custom.get(&entry.name) {
                    Some(factory) => Run::Custom(factory(params).map_err(|e| {
                        anyhow::anyhow!(
                            "{}: {}: middleware `{}` could not be built: {e}",
                            entry.file.display(),
                            entry.pointer,
                            entry.name
                        )
                    })?),
                    None if entry.optional => {
                        tracing::warn!(
                            "{}: {}: no middleware is registered as `{}`; skipped (optional)",
                            entry.file.display(),
                            entry.pointer,
                            entry.name
                        );
                        continue;
                    }
                    None => {
                        let mut known: Vec<&str> = BUILTIN_NAMES.to_vec();
                        let mut plugins: Vec<&str> = custom.keys().map(String::as_str).collect();
                        plugins.sort_unstable();
                        known.extend(plugins);
                        anyhow::bail!(
                            "{}: {}: no middleware is registered as `{}`; a boot plugin must register it (BootContext::middleware). Known names: {}",
                            entry.file.display(),
                            entry.pointer,
                            entry.name,
                            known.join(", ")
                        );
                    }
                },
            };
            let stage = Stage {
                entry: entry.clone(),
                run,
                statics,
            };
            if seen_rest {
                after.push(stage);
            } else {
                before.push(stage);
            }
        }
        let needs_async = before
            .iter()
            .any(|s| matches!(s.run, Run::Custom(_) | Run::Timeout(_) | Run::AccessLog(_)));
        Ok(Self {
            before,
            after,
            errors: errors.unwrap_or_default(),
            needs_async,
        })
    }
}

// ------------------------------------------------------------------------------- effects

/// What the entries that ran leave on the response.
#[derive(Default)]
struct Effects {
    /// Which stages (by index, the first 64) ran: their static headers apply.
    ran: u64,
    /// Headers that depend on the request (an echoed origin, a request id, …), and the static
    /// headers of stages past the 64th.
    headers: Vec<(HeaderName, HeaderValue)>,
    /// `Vary` tokens to add: [`VARY_ORIGIN`], [`VARY_REQUEST_HEADERS`].
    vary: u8,
    compression: Option<CompressionOptions>,
    access_log: Option<(u64, Instant)>,
    request_id: Option<String>,
    custom: Vec<Arc<dyn Middleware>>,
    timeout: Option<Duration>,
}

const VARY_ORIGIN: u8 = 1;
const VARY_REQUEST_HEADERS: u8 = 2;

impl Effects {
    /// Records that stage `i` of `stages` ran, so its static headers apply.
    fn ran(&mut self, i: usize, stage: &Stage) {
        if stage.statics.is_empty() {
            return;
        }
        if i < 64 {
            self.ran |= 1 << i;
        } else {
            self.headers.extend(stage.statics.iter().cloned());
        }
    }

    /// Puts the effects on a response. Headers the handler set win over the entries' (as in
    /// Express, where entries set theirs first and the handler overwrites), except
    /// `Cache-Control` (serve-static leaves one that is already set); among the entries, a
    /// later one wins.
    fn apply(self, stages: &[Stage], req: &HttpRequest, mut res: HttpResponse) -> HttpResponse {
        for m in self.custom.iter().rev() {
            m.respond(req, &mut res);
        }
        let heads = res.headers_mut();
        // serve-static leaves a Cache-Control that an entry (helmet#noCache) already set.
        let mut replace_cache_control = heads.contains_key(CACHE_CONTROL);
        let put = |heads: &mut HeaderMap, name: &HeaderName, value: &HeaderValue, cc: &mut bool| {
            if *name == CACHE_CONTROL && *cc {
                *cc = false;
                heads.insert(name.clone(), value.clone());
            } else if !heads.contains_key(name) {
                heads.insert(name.clone(), value.clone());
            }
        };
        for (name, value) in self.headers.iter().rev() {
            put(heads, name, value, &mut replace_cache_control);
        }
        let mut ran = self.ran;
        while ran != 0 {
            let i = 63 - ran.leading_zeros() as usize;
            ran &= !(1 << i);
            for (name, value) in stages[i].statics.iter().rev() {
                put(heads, name, value, &mut replace_cache_control);
            }
        }
        if self.vary != 0 {
            let ours = match self.vary {
                VARY_ORIGIN => "Origin",
                VARY_REQUEST_HEADERS => "Access-Control-Request-Headers",
                _ => "Origin, Access-Control-Request-Headers",
            };
            add_vary(heads, ours, true);
        }
        if let Some(opts) = &self.compression {
            res = compress::maybe_compress(req, res, opts);
        }
        if let Some((slower_than, started)) = self.access_log {
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            if ms >= slower_than as f64 {
                tracing::info!(
                    target: "oxbow::access",
                    method = %req.method(),
                    path = %redacted(req.uri().path_and_query().map_or("/", |p| p.as_str())),
                    status = res.status().as_u16(),
                    ms = format_args!("{ms:.3}"),
                    remote = %req.peer_addr().map(|a| a.ip().to_string()).unwrap_or_default(),
                    request_id = self.request_id.as_deref().unwrap_or(""),
                    "request"
                );
            }
        }
        res
    }
}

/// The request target as the access log shows it: the values of `access_token` and
/// `ticket` query parameters (credentials, since EventSource cannot send headers) replaced
/// by `[redacted]`.
pub(crate) fn redacted(target: &str) -> std::borrow::Cow<'_, str> {
    let Some((path, query)) = target.split_once('?') else {
        return target.into();
    };
    let secret = |pair: &str| {
        let name = pair.split('=').next().unwrap_or("");
        let name = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
        matches!(name.as_ref(), "access_token" | "ticket") && pair.contains('=')
    };
    if !query.split('&').any(secret) {
        return target.into();
    }
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if secret(pair) => format!("{name}=[redacted]"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{path}?{}", query.join("&")).into()
}

/// The `vary` module: adds `ours` (`, `-separated tokens) to the response's `Vary`, each token
/// once (case-insensitive), before the tokens already there (entries that ran before the
/// handler) or after them (compression, which runs after); `*` is left alone.
pub(crate) fn add_vary(heads: &mut HeaderMap, ours: &'static str, before: bool) {
    if !heads.contains_key(VARY) {
        heads.insert(VARY, HeaderValue::from_static(ours));
        return;
    }
    let theirs: Vec<String> = heads
        .get_all(VARY)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .collect();
    if theirs.iter().any(|t| t == "*") {
        return;
    }
    let ours = ours.split(", ");
    let theirs = theirs.iter().map(String::as_str);
    let ordered: Vec<&str> = if before {
        ours.chain(theirs).collect()
    } else {
        theirs.chain(ours).collect()
    };
    let mut all: Vec<&str> = Vec::with_capacity(ordered.len());
    for t in ordered {
        if !all.iter().any(|a| a.eq_ignore_ascii_case(t)) {
            all.push(t);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&all.join(", ")) {
        heads.insert(VARY, v);
    }
}

/// What an entry decided.
enum Flow {
    Next,
    Answer(HttpResponse),
}

/// Runs one entry's request side. Returns `None` for entries that need the async path.
fn run_sync(
    i: usize,
    stage: &Stage,
    req: &HttpRequest,
    rel: &str,
    fx: &mut Effects,
) -> Option<Flow> {
    Some(match &stage.run {
        Run::Nothing => Flow::Next,
        Run::Headers(old_ie_check) => {
            fx.ran(i, stage);
            if *old_ie_check && old_ie(req) {
                fx.headers.push((
                    HeaderName::from_static("x-xss-protection"),
                    HeaderValue::from_static("0"),
                ));
            }
            Flow::Next
        }
        Run::Cors(c) => c.run(i, stage, req, fx),
        Run::Compression(o) => {
            fx.compression = Some(*o);
            Flow::Next
        }
        Run::Favicon(f) => f.run(req, rel),
        Run::Static(roots) => match files::serve_at(roots, req, rel) {
            Some(r) => Flow::Answer(r),
            None => Flow::Next,
        },
        // loopback#status answers every request that reaches it (any verb, any sub-path).
        Run::Status(s) => Flow::Answer(s.response(req)),
        Run::UrlNotFound => Flow::Answer(crate::not_found_response(req)),
        Run::RequestId(o, name) => {
            let incoming = o
                .trust_incoming
                .then(|| req.headers().get(name))
                .flatten()
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty() && v.len() <= 200)
                .map(str::to_owned);
            let id = incoming.unwrap_or_else(new_request_id);
            if let Ok(v) = HeaderValue::from_str(&id) {
                fx.headers.push((name.clone(), v));
            }
            req.extensions_mut().insert(RequestId(id.clone()));
            fx.request_id = Some(id);
            Flow::Next
        }
        Run::RateLimit(l) => l.run(req, fx),
        Run::AccessLog(_) | Run::Timeout(_) | Run::Custom(_) => return None,
    })
}

/// The request id `oxbow#requestId` gave this request (in the request's extensions).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

fn new_request_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let seed = *SEED.get_or_init(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64;
        t ^ (u64::from(std::process::id()) << 32)
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // splitmix64: distinct for each n, not guessable from the last one at a glance.
    let mut z = seed.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    format!("{z:016x}{:08x}", (seed as u32).wrapping_add(n as u32))
}

fn old_ie(req: &HttpRequest) -> bool {
    let Some(ua) = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let lower = ua.to_ascii_lowercase();
    let Some(at) = lower.find("msie") else {
        return false;
    };
    let digits: String = lower[at + 4..]
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .take(2)
        .collect();
    digits.parse::<u32>().is_ok_and(|v| v < 9)
}

type HelmetHeaders = (Vec<(HeaderName, HeaderValue)>, Option<HeaderValue>);

fn helmet(rules: &[HeaderRule]) -> anyhow::Result<HelmetHeaders> {
    let mut set = Vec::new();
    let mut xss = None;
    for r in rules {
        match r {
            HeaderRule::Set(name, value) => set.push((
                HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())?,
                HeaderValue::from_str(value)?,
            )),
            // oxbow never sends X-Powered-By, so there is nothing to remove.
            HeaderRule::Remove(_) => {}
            HeaderRule::XssFilter { value, old_ie_zero } => {
                let v = HeaderValue::from_str(value)?;
                if *old_ie_zero {
                    xss = Some(v);
                } else {
                    set.push((HeaderName::from_static("x-xss-protection"), v));
                }
            }
        }
    }
    Ok((set, xss))
}

// ------------------------------------------------------------------------------- cors

struct Cors {
    opts: CorsOptions,
    methods: HeaderValue,
    allowed: Option<HeaderValue>,
    exposed: Option<HeaderValue>,
    max_age: Option<HeaderValue>,
    fixed: Option<HeaderValue>,
}

impl Cors {
    fn new(o: &CorsOptions) -> anyhow::Result<Self> {
        let hv = |s: &Option<String>| -> anyhow::Result<Option<HeaderValue>> {
            s.as_deref()
                .map(HeaderValue::from_str)
                .transpose()
                .map_err(Into::into)
        };
        Ok(Self {
            methods: HeaderValue::from_str(&o.methods)?,
            allowed: hv(&o.allowed_headers)?,
            exposed: hv(&o.exposed_headers)?,
            max_age: hv(&o.max_age)?,
            fixed: match &o.origin {
                CorsOrigin::Fixed(s) => Some(HeaderValue::from_str(s)?),
                _ => None,
            },
            opts: o.clone(),
        })
    }

    /// What cors sets on every request it handles whatever the request says: a fixed or `*`
    /// origin, credentials, exposed headers.
    fn statics(&self) -> Vec<(HeaderName, HeaderValue)> {
        let mut out = Vec::new();
        match &self.opts.origin {
            CorsOrigin::Disabled => return out,
            CorsOrigin::Any => out.push((
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            )),
            CorsOrigin::Fixed(_) => {
                if let Some(v) = &self.fixed {
                    out.push((header::ACCESS_CONTROL_ALLOW_ORIGIN, v.clone()));
                }
            }
            CorsOrigin::Reflect | CorsOrigin::List(_) => {}
        }
        if self.opts.credentials {
            out.push((
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            ));
        }
        if let Some(v) = &self.exposed {
            out.push((header::ACCESS_CONTROL_EXPOSE_HEADERS, v.clone()));
        }
        out
    }

    /// npm cors 2.8: origin, credentials, exposed headers; on OPTIONS also methods, allowed
    /// headers and max age, then a 204 unless `preflightContinue`.
    fn run(&self, i: usize, stage: &Stage, req: &HttpRequest, fx: &mut Effects) -> Flow {
        let origin = req.headers().get(header::ORIGIN);
        match &self.opts.origin {
            CorsOrigin::Disabled => return Flow::Next,
            CorsOrigin::Any => {}
            CorsOrigin::Fixed(_) => fx.vary |= VARY_ORIGIN,
            CorsOrigin::Reflect => {
                if let Some(o) = origin.filter(|o| !o.is_empty()) {
                    fx.headers
                        .push((header::ACCESS_CONTROL_ALLOW_ORIGIN, o.clone()));
                }
                fx.vary |= VARY_ORIGIN;
            }
            CorsOrigin::List(list) => {
                if let Some(o) = origin.filter(|o| {
                    o.to_str()
                        .is_ok_and(|o| list.iter().any(|allowed| allowed == o))
                }) {
                    fx.headers
                        .push((header::ACCESS_CONTROL_ALLOW_ORIGIN, o.clone()));
                }
                fx.vary |= VARY_ORIGIN;
            }
        }
        fx.ran(i, stage);
        if req.method() != Method::OPTIONS {
            return Flow::Next;
        }
        fx.headers
            .push((header::ACCESS_CONTROL_ALLOW_METHODS, self.methods.clone()));
        match &self.allowed {
            Some(v) => fx
                .headers
                .push((header::ACCESS_CONTROL_ALLOW_HEADERS, v.clone())),
            None => {
                fx.vary |= VARY_REQUEST_HEADERS;
                if let Some(v) = req
                    .headers()
                    .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
                    .filter(|v| !v.is_empty())
                {
                    fx.headers
                        .push((header::ACCESS_CONTROL_ALLOW_HEADERS, v.clone()));
                }
            }
        }
        if let Some(v) = &self.max_age {
            fx.headers.push((header::ACCESS_CONTROL_MAX_AGE, v.clone()));
        }
        if self.opts.preflight_continue {
            return Flow::Next;
        }
        let status = StatusCode::from_u16(self.opts.options_success_status)
            .unwrap_or(StatusCode::NO_CONTENT);
        let mut r = HttpResponse::build(status);
        r.insert_header((CONTENT_LENGTH, HeaderValue::from_static("0")));
        Flow::Answer(r.finish())
    }
}

// ------------------------------------------------------------------------------- favicon

/// oxbow's own icon, served by `loopback#favicon` without params.
const DEFAULT_ICON: &[u8] = include_bytes!("../assets/favicon.ico");

struct Favicon {
    body: bytes::Bytes,
    etag: String,
    cache_control: HeaderValue,
}

impl Favicon {
    fn new(o: &FaviconOptions) -> anyhow::Result<Self> {
        let body = match &o.path {
            Some(p) => {
                std::fs::read(p).map_err(|e| anyhow::anyhow!("favicon {}: {e}", p.display()))?
            }
            None => DEFAULT_ICON.to_vec(),
        };
        let etag = etag::EtagMode::Strong.tag(&body).unwrap_or_default();
        Ok(Self {
            body: body.into(),
            etag,
            cache_control: HeaderValue::from_str(&format!("public, max-age={}", o.max_age_secs))?,
        })
    }

    /// serve-favicon 2.5: only `/favicon.ico`; other verbs get 405 (OPTIONS 200) with `Allow`.
    fn run(&self, req: &HttpRequest, rel: &str) -> Flow {
        if rel != "/favicon.ico" {
            return Flow::Next;
        }
        let m = req.method();
        if m != Method::GET && m != Method::HEAD {
            let status = if m == Method::OPTIONS {
                StatusCode::OK
            } else {
                StatusCode::METHOD_NOT_ALLOWED
            };
            return Flow::Answer(
                HttpResponse::build(status)
                    .insert_header((header::ALLOW, "GET, HEAD, OPTIONS"))
                    .insert_header((CONTENT_LENGTH, HeaderValue::from_static("0")))
                    .finish(),
            );
        }
        let mut r = HttpResponse::Ok();
        r.insert_header((CACHE_CONTROL, self.cache_control.clone()));
        r.insert_header((header::ETAG, self.etag.as_str()));
        if etag::fresh(req, &self.etag, None) {
            r.status(StatusCode::NOT_MODIFIED);
            return Flow::Answer(r.finish());
        }
        r.insert_header((CONTENT_TYPE, HeaderValue::from_static("image/x-icon")));
        Flow::Answer(r.body(self.body.clone()))
    }
}

// ------------------------------------------------------------------------------- status

struct Status {
    started: String,
    since: Instant,
}

impl Status {
    fn new() -> Self {
        Self {
            started: crate::now_iso(),
            since: Instant::now(),
        }
    }

    fn response(&self, req: &HttpRequest) -> HttpResponse {
        let uptime = self.since.elapsed().as_millis() as f64 / 1000.0;
        let body = serde_json::json!({ "started": self.started, "uptime": uptime });
        etag::send(
            req,
            etag::EtagMode::Weak,
            StatusCode::OK,
            "application/json; charset=utf-8",
            body.to_string().into_bytes(),
        )
    }
}

// ------------------------------------------------------------------------------- rate limit

/// A fixed-window counter per client address (and per request path with `perPath`).
pub struct RateLimiter {
    opts: RateLimitOptions,
    epoch: Instant,
    /// (client, path key) → (window number, requests in it).
    counts: Mutex<HashMap<(IpAddr, u64), (u64, u32)>>,
    hasher: std::collections::hash_map::RandomState,
}

impl RateLimiter {
    fn new(opts: RateLimitOptions) -> Self {
        Self {
            opts,
            epoch: Instant::now(),
            counts: Mutex::new(HashMap::new()),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    fn client(&self, req: &HttpRequest) -> IpAddr {
        if self.opts.trust_proxy {
            if let Some(ip) = req
                .headers()
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .and_then(|v| v.trim().parse().ok())
            {
                return ip;
            }
        }
        req.peer_addr()
            .map(|a| a.ip())
            .unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    fn run(&self, req: &HttpRequest, fx: &mut Effects) -> Flow {
        let window = self.opts.window_ms;
        let now_ms = self.epoch.elapsed().as_millis() as u64;
        let slot = now_ms / window;
        // `perPath`: each path has its own budget (the query string does not count).
        let path_key = if self.opts.per_path {
            use std::hash::{BuildHasher, Hasher};
            let mut h = self.hasher.build_hasher();
            h.write(req.path().as_bytes());
            h.finish()
        } else {
            0
        };
        let key = (self.client(req), path_key);
        let used = {
            let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
            if counts.len() > 100_000 {
                counts.retain(|_, (s, _)| *s == slot);
            }
            let e = counts.entry(key).or_insert((slot, 0));
            if e.0 != slot {
                *e = (slot, 0);
            }
            e.1 = e.1.saturating_add(1);
            e.1
        };
        let reset_secs = ((slot + 1) * window - now_ms).div_ceil(1000);
        let max = self.opts.max;
        if self.opts.headers {
            let num = |n: u64| HeaderValue::from(n);
            fx.headers.push((
                HeaderName::from_static("ratelimit-limit"),
                num(u64::from(max)),
            ));
            fx.headers.push((
                HeaderName::from_static("ratelimit-remaining"),
                num(u64::from(max.saturating_sub(used))),
            ));
            fx.headers
                .push((HeaderName::from_static("ratelimit-reset"), num(reset_secs)));
        }
        if used <= max {
            return Flow::Next;
        }
        let mut resp = crate::error_response(
            req,
            &crate::qs::parse(req.query_string()),
            &crate::error::ErrorCode::TooManyRequests.err(),
        );
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(reset_secs));
        Flow::Answer(resp)
    }
}

// ------------------------------------------------------------------------------- the actix side

/// The actix middleware running the [`Compiled`] pipeline of the generation being served.
#[derive(Clone)]
pub struct Pipeline(pub Arc<crate::generation::Current>);

impl<S> Transform<S, ServiceRequest> for Pipeline
where
    S: Service<ServiceRequest, Response = ServiceResponse<BoxBody>, Error = Error> + 'static,
{
    type Response = ServiceResponse<BoxBody>;
    type Error = Error;
    type Transform = PipelineService<S>;
    type InitError = ();
    type Future = std::future::Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        std::future::ready(Ok(PipelineService {
            service: Rc::new(service),
            current: self.0.clone(),
        }))
    }
}

pub struct PipelineService<S> {
    service: Rc<S>,
    current: Arc<crate::generation::Current>,
}

impl<S> Service<ServiceRequest> for PipelineService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<BoxBody>, Error = Error> + 'static,
{
    type Response = ServiceResponse<BoxBody>;
    type Error = Error;
    type Future = Either<
        Ready<Result<ServiceResponse<BoxBody>, Error>>,
        Either<Finish<S::Future>, LocalBoxFuture<'static, Result<Self::Response, Self::Error>>>,
    >;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let plan = self.current.load();
        if plan.pipeline.needs_async {
            let service = self.service.clone();
            return Either::Right(Either::Right(Box::pin(call_async(plan, service, req))));
        }
        // The usual pipeline (cors, helmet, compression, favicon): no allocation of its own.
        let mut fx = Effects::default();
        let mut answer = None;
        {
            let http = req.request();
            let (method, path) = (http.method().as_str(), http.path());
            for (i, stage) in plan.pipeline.before.iter().enumerate() {
                let Some(rel) = stage.entry.applies(method, path) else {
                    continue;
                };
                if let Some(Flow::Answer(resp)) = run_sync(i, stage, http, rel, &mut fx) {
                    answer = Some(resp);
                    break;
                }
            }
        }
        if let Some(resp) = answer {
            let resp = fx.apply(&plan.pipeline.before, req.request(), resp);
            return Either::Left(std::future::ready(Ok(req.into_response(resp))));
        }
        Either::Right(Either::Left(Finish {
            inner: self.service.call(req),
            fx: Some(fx),
            plan,
        }))
    }
}

pin_project_lite::pin_project! {
    /// The router's future, then the effects on its response.
    pub struct Finish<F> {
        #[pin]
        inner: F,
        fx: Option<Effects>,
        plan: crate::generation::Pinned,
    }
}

impl<F> Future for Finish<F>
where
    F: Future<Output = Result<ServiceResponse<BoxBody>, Error>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        let fx = this.fx.take().unwrap_or_default();
        Poll::Ready(finish(result, fx, &this.plan.pipeline.before))
    }
}

/// Pipelines with plugin middleware, timeouts or an access log.
async fn call_async<S>(
    live: crate::generation::Pinned,
    service: Rc<S>,
    req: ServiceRequest,
) -> Result<ServiceResponse<BoxBody>, Error>
where
    S: Service<ServiceRequest, Response = ServiceResponse<BoxBody>, Error = Error> + 'static,
{
    let plan = &*live.pipeline;
    let mut fx = Effects::default();
    let method = req.method().as_str().to_owned();
    let path = req.path().to_owned();
    for (i, stage) in plan.before.iter().enumerate() {
        let Some(rel) = stage.entry.applies(&method, &path) else {
            continue;
        };
        let flow = match run_sync(i, stage, req.request(), rel, &mut fx) {
            Some(f) => f,
            None => match &stage.run {
                Run::AccessLog(ms) => {
                    fx.access_log = Some((*ms, Instant::now()));
                    Flow::Next
                }
                Run::Timeout(d) => {
                    fx.timeout = Some(fx.timeout.map_or(*d, |t| t.min(*d)));
                    Flow::Next
                }
                Run::Custom(m) => match m.handle(req.request()).await {
                    Ok(Some(resp)) => Flow::Answer(resp),
                    Ok(None) => {
                        fx.custom.push(m.clone());
                        Flow::Next
                    }
                    Err(e) => Flow::Answer(crate::error_response(
                        req.request(),
                        &crate::qs::parse(req.query_string()),
                        &e,
                    )),
                },
                _ => Flow::Next,
            },
        };
        if let Flow::Answer(resp) = flow {
            let resp = fx.apply(&plan.before, req.request(), resp);
            return Ok(req.into_response(resp));
        }
    }
    let result = match fx.timeout {
        None => service.call(req).await,
        // The router needs the only handle on the request, so a timed-out request is
        // answered through actix's error path (JSON, without the other entries' headers).
        Some(d) => match tokio::time::timeout(d, service.call(req)).await {
            Ok(r) => r,
            Err(_) => return Err(TimedOut.into()),
        },
    };
    finish(result, fx, &plan.before)
}

/// `oxbow#timeout` fired: LoopBack's masked 503 body.
#[derive(Debug)]
struct TimedOut;

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request timed out")
    }
}

impl actix_web::ResponseError for TimedOut {
    fn status_code(&self) -> StatusCode {
        StatusCode::SERVICE_UNAVAILABLE
    }

    fn error_response(&self) -> HttpResponse {
        tracing::warn!(target: "oxbow::errors", "request timed out");
        HttpResponse::ServiceUnavailable()
            .insert_header((
                CONTENT_TYPE,
                HeaderValue::from_static("application/json; charset=utf-8"),
            ))
            .insert_header((
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ))
            .body(r#"{"error":{"statusCode":503,"message":"Service Unavailable"}}"#)
    }
}

fn finish(
    result: Result<ServiceResponse<BoxBody>, Error>,
    fx: Effects,
    stages: &[Stage],
) -> Result<ServiceResponse<BoxBody>, Error> {
    let res = result?;
    let (req, resp) = res.into_parts();
    let resp = fx.apply(stages, &req, resp);
    Ok(ServiceResponse::new(req, resp))
}

/// Entries after `loopback#rest`, for requests nobody answered; Express's final 404 when
/// none of them answers either.
pub async fn fallback(req: &HttpRequest, plan: &Compiled) -> HttpResponse {
    let mut fx = Effects::default();
    let method = req.method().as_str();
    let path = req.path();
    for (i, stage) in plan.after.iter().enumerate() {
        let Some(rel) = stage.entry.applies(method, path) else {
            continue;
        };
        let flow = match run_sync(i, stage, req, rel, &mut fx) {
            Some(f) => f,
            None => match &stage.run {
                Run::Custom(m) => match m.handle(req).await {
                    Ok(Some(resp)) => Flow::Answer(resp),
                    Ok(None) => {
                        fx.custom.push(m.clone());
                        Flow::Next
                    }
                    Err(e) => Flow::Answer(crate::error_response(
                        req,
                        &crate::qs::parse(req.query_string()),
                        &e,
                    )),
                },
                Run::AccessLog(ms) => {
                    fx.access_log = Some((*ms, Instant::now()));
                    Flow::Next
                }
                _ => Flow::Next,
            },
        };
        if let Flow::Answer(resp) = flow {
            return fx.apply(&plan.after, req, resp);
        }
    }
    fx.apply(&plan.after, req, final_handler(req))
}

/// Express's `finalhandler` 404 page, for apps without `loopback#urlNotFound`.
fn final_handler(req: &HttpRequest) -> HttpResponse {
    let text = format!("Cannot {} {}", req.method(), html_escape(req.path()));
    let body = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Error</title>\n</head>\n<body>\n<pre>{text}</pre>\n</body>\n</html>\n"
    );
    let mut r = HttpResponse::NotFound();
    r.insert_header((
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'"),
    ));
    r.insert_header((
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    ));
    r.insert_header((
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    ));
    if req.method() == Method::HEAD {
        return r.finish();
    }
    r.body(body)
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn the_access_log_hides_tokens_and_tickets() {
        assert_eq!(redacted("/api/Notes"), "/api/Notes");
        assert_eq!(redacted("/api/Notes?filter=x"), "/api/Notes?filter=x");
        assert_eq!(
            redacted("/api/Notes/change-stream?access_token=abc&x=1&ticket=t&%61ccess_token=z"),
            "/api/Notes/change-stream?access_token=[redacted]&x=1&ticket=[redacted]&%61ccess_token=[redacted]"
        );
        assert_eq!(redacted("/a?access_token"), "/a?access_token");
    }
}
