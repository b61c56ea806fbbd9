//! middleware.json compiled into a fixed plan: LoopBack's phase order, one typed entry per
//! registered middleware, every option checked at load time (so `oxbow check` reports them).
//!
//! What each kind does at request time lives in `oxbow-rest`'s pipeline; this module only
//! decides *what* runs, in which order, where and with which options.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::problem::{Problem, Problems, escape};

/// LoopBack's built-in phases, in order; each also has `:before` and `:after` sub-phases.
pub const BUILTIN_PHASES: [&str; 7] = [
    "initial", "session", "auth", "parse", "routes", "files", "final",
];

/// The compiled pipeline: every enabled entry in the order it runs.
#[derive(Debug, Clone, Default)]
pub struct MiddlewarePlan {
    pub entries: Vec<Entry>,
    /// False when the app has no middleware.json: oxbow then serves the REST API at
    /// `restApiRoot` and nothing else (LoopBack would serve nothing at all).
    pub declared: bool,
}

impl MiddlewarePlan {
    /// The options of the first `loopback#token` entry, if middleware.json has one.
    pub fn token_params(&self) -> Option<&serde_json::Map<String, Value>> {
        self.entries.iter().find_map(|e| match &e.kind {
            Kind::Token(p) => Some(p),
            _ => None,
        })
    }

    /// The mount path of the REST API (`loopback#rest`'s first path), if it is served.
    pub fn rest_root(&self, rest_api_root: &str) -> Option<String> {
        if !self.declared {
            return Some(rest_api_root.trim_end_matches('/').to_owned());
        }
        self.entries
            .iter()
            .find(|e| matches!(e.kind, Kind::Rest))
            .map(|e| e.paths.first().cloned().unwrap_or_default())
    }
}

/// One registered middleware.
#[derive(Debug, Clone)]
pub struct Entry {
    /// `initial:before`, `routes`, a custom phase, …
    pub phase: String,
    /// The key as written: `helmet#hsts`, `./middleware/audit`, …
    pub name: String,
    /// Mount prefixes without a trailing slash (`/api`); empty means every path.
    pub paths: Vec<String>,
    /// Upper-case verbs the entry runs for; `None` means all.
    pub methods: Option<Vec<String>>,
    pub kind: Kind,
    /// `optional: true`: a plugin middleware nobody registered is skipped with a warning
    /// instead of failing boot (LoopBack skips a module it cannot resolve).
    pub optional: bool,
    /// Where the entry is declared, for messages.
    pub file: PathBuf,
    pub pointer: String,
}

impl Entry {
    /// Whether the entry runs for this request; gives the path relative to the mount point
    /// (Express strips the mount path from `req.url`).
    pub fn applies<'p>(&self, method: &str, path: &'p str) -> Option<&'p str> {
        if let Some(methods) = &self.methods {
            if !methods.iter().any(|m| m.eq_ignore_ascii_case(method)) {
                return None;
            }
        }
        if self.paths.is_empty() {
            return Some(path);
        }
        self.paths.iter().find_map(|p| strip_mount(path, p))
    }
}

/// Express's mount match: case-insensitive prefix ending at a segment boundary.
pub fn strip_mount<'p>(path: &'p str, mount: &str) -> Option<&'p str> {
    if mount.is_empty() {
        return Some(path);
    }
    let head = path.get(..mount.len())?;
    if !head.eq_ignore_ascii_case(mount) {
        return None;
    }
    let rest = &path[mount.len()..];
    if rest.is_empty() {
        Some("/")
    } else if rest.starts_with('/') {
        Some(rest)
    } else {
        None
    }
}

/// What an entry is.
#[derive(Debug, Clone)]
pub enum Kind {
    /// npm `compression`.
    Compression(CompressionOptions),
    /// npm `cors`.
    Cors(CorsOptions),
    /// One helmet middleware (or `helmet` itself): headers set or removed on every response.
    Helmet(Vec<HeaderRule>),
    /// `loopback#favicon` / `serve-favicon`.
    Favicon(FaviconOptions),
    /// `loopback#rest`: the generated REST API.
    Rest,
    /// `loopback#static` / `serve-static`: files under `root`.
    Static { root: PathBuf },
    /// `loopback#status`: `{"started": …, "uptime": …}`.
    Status,
    /// `loopback#urlNotFound`: requests nobody answered become 404 errors.
    UrlNotFound,
    /// `strong-error-handler` (and `errorhandler`-style error entries in `final:after`).
    ErrorHandler(ErrorHandlerOptions),
    /// `loopback#token`: where access tokens are looked for (`params`, `headers`,
    /// `currentUserLiteral`, …); the REST root reads them with these options.
    Token(serde_json::Map<String, Value>),
    /// `oxbow#requestId`: an `X-Request-Id` on every request and response.
    RequestId(RequestIdOptions),
    /// `oxbow#accessLog`: one structured line per request, through `tracing`.
    AccessLog(AccessLogOptions),
    /// `oxbow#rateLimit`: a fixed-window request budget per client address (and path).
    RateLimit(RateLimitOptions),
    /// `oxbow#timeout`: a 503 when the rest of the pipeline takes longer.
    Timeout(TimeoutOptions),
    /// Middleware a Rust plugin registered under this entry's name.
    Custom { params: Value },
}

impl Kind {
    /// Short name for messages and docs.
    pub fn label(&self) -> &'static str {
        match self {
            Kind::Compression(_) => "compression",
            Kind::Cors(_) => "cors",
            Kind::Helmet(_) => "helmet",
            Kind::Favicon(_) => "favicon",
            Kind::Rest => "rest",
            Kind::Static { .. } => "static",
            Kind::Status => "status",
            Kind::UrlNotFound => "urlNotFound",
            Kind::ErrorHandler(_) => "error handler",
            Kind::Token(_) => "token",
            Kind::RequestId(_) => "request id",
            Kind::AccessLog(_) => "access log",
            Kind::RateLimit(_) => "rate limit",
            Kind::Timeout(_) => "timeout",
            Kind::Custom { .. } => "custom",
        }
    }
}

/// npm `compression` options oxbow honours.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompressionOptions {
    /// Bodies shorter than this are sent as they are (default 1 kB).
    pub threshold: usize,
    /// zlib level for gzip and deflate, -1 (default, 6) to 9.
    pub level: i32,
    /// Brotli quality (compression 1.8 defaults to 4).
    pub brotli_quality: u32,
}

/// npm `cors` options.
#[derive(Debug, Clone, PartialEq)]
pub struct CorsOptions {
    pub origin: CorsOrigin,
    /// `Access-Control-Allow-Methods` on preflight.
    pub methods: String,
    /// `Access-Control-Allow-Headers`; `None` reflects the request's
    /// `Access-Control-Request-Headers` (and adds `Vary: Access-Control-Request-Headers`).
    pub allowed_headers: Option<String>,
    pub exposed_headers: Option<String>,
    pub credentials: bool,
    pub max_age: Option<String>,
    /// Pass preflight requests on instead of answering them.
    pub preflight_continue: bool,
    pub options_success_status: u16,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CorsOrigin {
    /// `origin: false`: the middleware does nothing.
    Disabled,
    /// `"*"` (the default): `Access-Control-Allow-Origin: *`.
    Any,
    /// `origin: true`: the request's `Origin` is echoed.
    Reflect,
    /// A fixed origin, always sent.
    Fixed(String),
    /// Only these origins are echoed.
    List(Vec<String>),
}

/// A helmet effect on every response.
#[derive(Debug, Clone, PartialEq)]
pub enum HeaderRule {
    Set(&'static str, String),
    Remove(&'static str),
    /// `X-XSS-Protection`, `0` for Internet Explorer before 9 unless `setOnOldIE`.
    XssFilter {
        value: String,
        old_ie_zero: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct FaviconOptions {
    /// The icon file; `None` serves oxbow's own icon.
    pub path: Option<PathBuf>,
    /// `Cache-Control: public, max-age=` in seconds (default one year).
    pub max_age_secs: u64,
}

/// strong-error-handler options.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorHandlerOptions {
    /// Every property of the error, and a `stack`, in the body.
    pub debug: bool,
    /// Each error printed on stderr (strong-error-handler's default).
    pub log: bool,
    /// The key wrapping the error (`error`); `None` sends the error object bare.
    pub root_property: Option<String>,
    /// Extra error properties kept in production mode.
    pub safe_fields: Vec<String>,
    /// Format when negotiation finds none: `json`, `html` or `xml`.
    pub default_type: String,
    /// false: always `default_type`.
    pub negotiate_content_type: bool,
}

impl Default for ErrorHandlerOptions {
    fn default() -> Self {
        Self {
            debug: false,
            log: true,
            root_property: Some("error".into()),
            safe_fields: Vec::new(),
            default_type: "json".into(),
            negotiate_content_type: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RequestIdOptions {
    /// The header read from the request (when trusted) and set on the response.
    pub header: String,
    /// Keep an incoming id (from a proxy) instead of making a new one.
    pub trust_incoming: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AccessLogOptions {
    /// Requests faster than this many milliseconds are not logged (0: log all).
    pub slower_than_ms: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitOptions {
    /// Requests allowed per window per client.
    pub max: u32,
    pub window_ms: u64,
    /// Count per client address and request path instead of per address only.
    pub per_path: bool,
    /// Send `RateLimit-Limit` / `RateLimit-Remaining` / `RateLimit-Reset` headers.
    pub headers: bool,
    /// Honour `X-Forwarded-For` (behind a proxy you trust).
    pub trust_proxy: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TimeoutOptions {
    pub ms: u64,
}

/// Reads middleware.json (already merged with its overlays and with `${VAR}` substituted).
pub fn compile(
    file: &Path,
    value: &Value,
    declared: bool,
    server_dir: &Path,
    problems: &mut Problems,
    warnings: &mut Vec<String>,
) -> MiddlewarePlan {
    let mut plan = MiddlewarePlan {
        entries: Vec::new(),
        declared,
    };
    let Some(map) = value.as_object() else {
        return plan;
    };
    let phases = phase_order(map);
    for (base, sub) in phases
        .iter()
        .flat_map(|b| [(b, ":before"), (b, ""), (b, ":after")])
    {
        let phase = format!("{base}{sub}");
        let Some(entries) = map.get(&phase).and_then(Value::as_object) else {
            continue;
        };
        for (name, spec) in entries {
            let ptr = format!("/{}/{}", escape(&phase), escape(name));
            let instances: Vec<(String, &Value)> = match spec {
                Value::Array(items) => items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (format!("{ptr}/{i}"), v))
                    .collect(),
                other => vec![(ptr.clone(), other)],
            };
            for (pointer, spec) in instances {
                let Some(spec) = spec.as_object() else {
                    continue; // the schema check reported it
                };
                if let Some(entry) = compile_entry(
                    file, &phase, name, &pointer, spec, server_dir, problems, warnings,
                ) {
                    plan.entries.push(entry);
                }
            }
        }
    }
    plan
}

/// LoopBack's phase list: the built-in phases with the file's own phase names zipped in
/// (loopback-phase's merge: a new name goes right after the name before it in the file, or
/// first when nothing before it is known).
fn phase_order(map: &Map<String, Value>) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for key in map.keys() {
        if key == "$schema" {
            continue;
        }
        let base = key
            .strip_suffix(":before")
            .or_else(|| key.strip_suffix(":after"))
            .unwrap_or(key);
        if !names.iter().any(|n| n == base) {
            names.push(base.to_owned());
        }
    }
    let mut list: Vec<String> = BUILTIN_PHASES.iter().map(|s| s.to_string()).collect();
    let Some(first) = names.first() else {
        return list;
    };
    let mut cursor = match list.iter().position(|n| n == first) {
        Some(i) => i,
        None => {
            list.insert(0, first.clone());
            0
        }
    };
    for pair in names.windows(2) {
        let (prev, name) = (&pair[0], &pair[1]);
        match list.iter().skip(cursor).position(|n| n == name) {
            Some(off) => cursor += off,
            None if list.contains(name) => {} // an ordering conflict: keep the known place
            None => {
                let at = list.iter().position(|n| n == prev).map_or(0, |i| i + 1);
                list.insert(at, name.clone());
            }
        }
    }
    list
}

/// `params` as factory arguments: an array is spread, anything else is the only argument.
fn args(spec: &Map<String, Value>) -> Vec<Value> {
    match spec.get("params") {
        None => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(v) => vec![v.clone()],
    }
}

struct Ctx<'a> {
    file: &'a Path,
    pointer: &'a str,
    problems: &'a mut Problems,
}

impl Ctx<'_> {
    fn bad(&mut self, at: &str, expected: &str) {
        let pointer = format!("{}{at}", self.pointer);
        self.problems
            .push(Problem::new(self.file, &pointer, expected));
    }
}

#[allow(clippy::too_many_arguments)]
fn compile_entry(
    file: &Path,
    phase: &str,
    name: &str,
    pointer: &str,
    spec: &Map<String, Value>,
    server_dir: &Path,
    problems: &mut Problems,
    warnings: &mut Vec<String>,
) -> Option<Entry> {
    let mut cx = Ctx {
        file,
        pointer,
        problems,
    };
    match spec.get("enabled") {
        Some(Value::Bool(false)) => return None,
        Some(Value::Bool(true)) | None => {}
        Some(Value::String(s)) if s == "false" => return None,
        Some(_) => {}
    }
    let paths = match spec.get("paths") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(p)) => vec![p.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|p| p.as_str().map(str::to_owned))
            .collect(),
        Some(_) => Vec::new(),
    };
    let mut mounts = Vec::new();
    for (i, p) in paths.iter().enumerate() {
        if !p.starts_with('/') || p.contains(['*', ':', '(', '?', '+']) {
            let at = if matches!(spec.get("paths"), Some(Value::Array(_))) {
                format!("/paths/{i}")
            } else {
                "/paths".to_owned()
            };
            cx.bad(
                &at,
                &format!("expected a path prefix starting with `/` (oxbow mounts plain prefixes, not Express patterns), found `{p}`"),
            );
            continue;
        }
        let m = p.trim_end_matches('/');
        mounts.push(m.to_owned());
    }
    // Every path is `/` → no prefix check at all.
    if mounts.iter().any(String::is_empty) {
        mounts.clear();
    }
    let methods = match spec.get("methods").or_else(|| spec.get("verbs")) {
        Some(Value::Array(a)) => {
            let list: Vec<String> = a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_ascii_uppercase)
                .collect();
            (!list.iter().any(|m| m == "ALL")).then_some(list)
        }
        Some(Value::String(s)) => {
            warnings.push(format!(
                "{}: {pointer}/methods: a string is ignored, as LoopBack 3 ignores it; write an array such as [\"{s}\"]",
                file.display()
            ));
            None
        }
        _ => None,
    };
    let args = args(spec);
    let arg0 = args.first().cloned().unwrap_or(Value::Null);
    let kind = match name {
        "compression" => Kind::Compression(compression_options(&mut cx, &arg0)),
        "cors" => Kind::Cors(cors_options(&mut cx, &arg0)),
        "loopback#favicon" | "serve-favicon" => {
            Kind::Favicon(favicon_options(&mut cx, &args, server_dir, name))
        }
        "loopback#rest" => Kind::Rest,
        "loopback#static" | "serve-static" => match args.first() {
            Some(Value::String(root)) => Kind::Static {
                root: resolve_param_path(root, server_dir),
            },
            _ => {
                cx.bad(
                    "/params",
                    "expected the folder to serve, such as \"$!../client\"",
                );
                return None;
            }
        },
        "loopback#status" => Kind::Status,
        "loopback#urlNotFound" => Kind::UrlNotFound,
        "loopback#token" => Kind::Token(arg0.as_object().cloned().unwrap_or_default()),
        "strong-error-handler" | "loopback#errorHandler" => {
            Kind::ErrorHandler(error_handler_options(&mut cx, &arg0))
        }
        "oxbow#requestId" => Kind::RequestId(request_id_options(&mut cx, &arg0)),
        "oxbow#accessLog" => Kind::AccessLog(AccessLogOptions {
            slower_than_ms: uint(&mut cx, &arg0, "slowerThanMs", 0),
        }),
        "oxbow#rateLimit" => Kind::RateLimit(rate_limit_options(&mut cx, &arg0)),
        "oxbow#timeout" => {
            let ms = match &arg0 {
                Value::Number(_) => uint_value(&mut cx, &arg0, "/params", 5000),
                _ => uint(&mut cx, &arg0, "ms", 5000),
            };
            if ms == 0 {
                cx.bad("/params", "expected a timeout of at least 1 ms");
            }
            Kind::Timeout(TimeoutOptions { ms })
        }
        "helmet" => Kind::Helmet(helmet_all(&mut cx, &arg0)),
        _ => {
            if let Some(part) = name.strip_prefix("helmet#") {
                match helmet_part(&mut cx, part, &arg0, "/params") {
                    Some(rules) => Kind::Helmet(rules),
                    None => {
                        cx.bad(
                            "",
                            &format!(
                                "expected a helmet middleware oxbow provides ({}), found `{name}`",
                                HELMET_PARTS.join(", ")
                            ),
                        );
                        return None;
                    }
                }
            } else if let Some(part) = name.strip_prefix("loopback#") {
                cx.bad("", &format!("expected a loopback middleware (favicon, rest, static, status, token, urlNotFound, errorHandler), found `loopback#{part}`"));
                return None;
            } else if let Some(part) = name.strip_prefix("oxbow#") {
                cx.bad("", &format!("expected an oxbow middleware (requestId, accessLog, rateLimit, timeout), found `oxbow#{part}`"));
                return None;
            } else {
                Kind::Custom {
                    params: spec.get("params").cloned().unwrap_or(Value::Null),
                }
            }
        }
    };
    if matches!(kind, Kind::Rest) && mounts.len() > 1 {
        warnings.push(format!(
            "{}: {pointer}/paths: the REST API is mounted at its first path only",
            file.display()
        ));
    }
    Some(Entry {
        phase: phase.to_owned(),
        name: name.to_owned(),
        paths: mounts,
        methods,
        kind,
        optional: is_optional(spec),
        file: file.to_owned(),
        pointer: pointer.to_owned(),
    })
}

/// Whether an entry may be skipped when nothing provides it (`optional: true`).
fn is_optional(entry_spec: &Map<String, Value>) -> bool {
    matches!(entry_spec.get("optional"), Some(Value::Bool(true)))
}

fn obj<'v>(cx: &mut Ctx<'_>, v: &'v Value, what: &str) -> Option<&'v Map<String, Value>> {
    match v {
        Value::Null => None,
        Value::Object(m) => Some(m),
        _ => {
            cx.bad("/params", &format!("expected {what} options as an object"));
            None
        }
    }
}

fn uint_value(cx: &mut Ctx<'_>, v: &Value, at: &str, default: u64) -> u64 {
    match v {
        Value::Null => default,
        Value::Number(n) if n.as_f64().is_some_and(|f| f >= 0.0) => {
            n.as_f64().unwrap_or(0.0) as u64
        }
        _ => {
            cx.bad(at, "expected a non-negative number");
            default
        }
    }
}

fn uint(cx: &mut Ctx<'_>, opts: &Value, key: &str, default: u64) -> u64 {
    let v = opts.get(key).cloned().unwrap_or(Value::Null);
    uint_value(cx, &v, &format!("/params/{key}"), default)
}

fn flag(cx: &mut Ctx<'_>, opts: &Value, key: &str, default: bool) -> bool {
    match opts.get(key) {
        None | Some(Value::Null) => default,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            cx.bad(&format!("/params/{key}"), "expected true or false");
            default
        }
    }
}

/// A string, or an array of strings joined with `,` (how cors reads its lists).
fn list_text(cx: &mut Ctx<'_>, opts: &Value, key: &str) -> Option<String> {
    match opts.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => Some(
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(","),
        ),
        Some(_) => {
            cx.bad(
                &format!("/params/{key}"),
                "expected a string or an array of strings",
            );
            None
        }
    }
}

fn compression_options(cx: &mut Ctx<'_>, arg: &Value) -> CompressionOptions {
    let mut out = CompressionOptions {
        threshold: 1024,
        level: -1,
        brotli_quality: 4,
    };
    if obj(cx, arg, "compression").is_none() {
        return out;
    }
    match arg.get("threshold") {
        None | Some(Value::Null) => {}
        Some(v) => match crate::parse_size(v) {
            Some(n) => out.threshold = n,
            None => cx.bad("/params/threshold", "expected a size such as 1kb, 512 or 0"),
        },
    }
    match arg.get("level") {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) if n.as_i64().is_some_and(|l| (-1..=9).contains(&l)) => {
            out.level = n.as_i64().unwrap_or(-1) as i32;
        }
        Some(_) => cx.bad("/params/level", "expected a zlib level from -1 to 9"),
    }
    if let Some(q) = arg.pointer("/brotli/params/1") {
        // zlib.constants.BROTLI_PARAM_QUALITY is 1.
        match q.as_u64().filter(|q| *q <= 11) {
            Some(q) => out.brotli_quality = q as u32,
            None => cx.bad(
                "/params/brotli/params/1",
                "expected a brotli quality from 0 to 11",
            ),
        }
    }
    if arg.get("filter").is_some() {
        cx.bad(
            "/params/filter",
            "a filter function cannot be given in JSON; remove it",
        );
    }
    out
}

fn cors_options(cx: &mut Ctx<'_>, arg: &Value) -> CorsOptions {
    let mut out = CorsOptions {
        origin: CorsOrigin::Any,
        methods: "GET,HEAD,PUT,PATCH,POST,DELETE".into(),
        allowed_headers: None,
        exposed_headers: None,
        credentials: false,
        max_age: None,
        preflight_continue: false,
        options_success_status: 204,
    };
    if obj(cx, arg, "cors").is_none() {
        return out;
    }
    out.origin = match arg.get("origin") {
        None => CorsOrigin::Any,
        // cors treats every falsy origin as "do nothing".
        Some(Value::Null) | Some(Value::Bool(false)) => CorsOrigin::Disabled,
        Some(Value::String(s)) if s.is_empty() => CorsOrigin::Disabled,
        Some(Value::Bool(true)) => CorsOrigin::Reflect,
        Some(Value::String(s)) if s == "*" => CorsOrigin::Any,
        Some(Value::String(s)) => CorsOrigin::Fixed(s.clone()),
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => CorsOrigin::List(
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
        ),
        Some(_) => {
            cx.bad(
                "/params/origin",
                "expected true, false, \"*\", an origin or an array of origins",
            );
            CorsOrigin::Any
        }
    };
    if let Some(m) = list_text(cx, arg, "methods") {
        out.methods = m;
    }
    out.allowed_headers =
        list_text(cx, arg, "allowedHeaders").or_else(|| list_text(cx, arg, "headers"));
    // An empty list reflects, as cors's `!allowedHeaders` does for "".
    if out.allowed_headers.as_deref() == Some("") {
        out.allowed_headers = None;
    }
    out.exposed_headers = list_text(cx, arg, "exposedHeaders").filter(|s| !s.is_empty());
    out.credentials = matches!(arg.get("credentials"), Some(Value::Bool(true)));
    out.max_age = match arg.get("maxAge") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => None,
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            cx.bad("/params/maxAge", "expected a number of seconds");
            None
        }
    };
    out.preflight_continue = flag(cx, arg, "preflightContinue", false);
    let status = uint(cx, arg, "optionsSuccessStatus", 204);
    out.options_success_status = match u16::try_from(status) {
        Ok(s) if (200..600).contains(&s) => s,
        _ => {
            cx.bad(
                "/params/optionsSuccessStatus",
                "expected an HTTP status from 200 to 599",
            );
            204
        }
    };
    out
}

const HELMET_PARTS: &[&str] = &[
    "xssFilter",
    "frameguard",
    "hsts",
    "hidePoweredBy",
    "ieNoOpen",
    "noSniff",
    "noCache",
    "dnsPrefetchControl",
    "referrerPolicy",
    "permittedCrossDomainPolicies",
];

/// Bare `helmet`: its default set, each part switchable by `{"<part>": false | {...}}`.
fn helmet_all(cx: &mut Ctx<'_>, arg: &Value) -> Vec<HeaderRule> {
    const DEFAULTS: &[&str] = &[
        "dnsPrefetchControl",
        "frameguard",
        "hidePoweredBy",
        "hsts",
        "ieNoOpen",
        "noSniff",
        "xssFilter",
    ];
    let opts = obj(cx, arg, "helmet").cloned().unwrap_or_default();
    let mut rules = Vec::new();
    // helmet 3's own order.
    for part in [
        "dnsPrefetchControl",
        "frameguard",
        "hidePoweredBy",
        "hsts",
        "ieNoOpen",
        "noSniff",
        "permittedCrossDomainPolicies",
        "referrerPolicy",
        "xssFilter",
        "noCache",
    ] {
        let at = format!("/params/{part}");
        let v = match opts.get(part) {
            Some(Value::Bool(false)) => continue,
            Some(Value::Bool(true)) => Value::Object(Map::new()),
            Some(Value::Null) | None if DEFAULTS.contains(&part) => Value::Object(Map::new()),
            Some(Value::Null) | None => continue,
            Some(v) => v.clone(),
        };
        if let Some(r) = helmet_part(cx, part, &v, &at) {
            rules.extend(r);
        }
    }
    for key in opts.keys() {
        if !HELMET_PARTS.contains(&key.as_str()) {
            cx.bad(
                &format!("/params/{}", escape(key)),
                &format!(
                    "expected a helmet middleware oxbow provides ({})",
                    HELMET_PARTS.join(", ")
                ),
            );
        }
    }
    rules
}

/// One helmet 3 middleware's effect, from its options (`at` points at them for messages).
fn helmet_part(cx: &mut Ctx<'_>, part: &str, arg: &Value, at: &str) -> Option<Vec<HeaderRule>> {
    let s = |k: &str| arg.get(k).and_then(Value::as_str).map(str::to_owned);
    let rules = match part {
        "xssFilter" => {
            let block = match arg.get("mode") {
                None => true,
                Some(Value::String(m)) if m == "block" => true,
                Some(Value::Null) => false,
                Some(_) => {
                    cx.bad(&format!("{at}/mode"), "expected \"block\" or null");
                    true
                }
            };
            let mut value = String::from("1");
            if block {
                value.push_str("; mode=block");
            }
            if let Some(uri) = s("reportUri").filter(|u| !u.is_empty()) {
                value.push_str("; report=");
                value.push_str(&uri);
            }
            let old_ie_zero = !matches!(arg.get("setOnOldIE"), Some(Value::Bool(true)));
            vec![HeaderRule::XssFilter { value, old_ie_zero }]
        }
        "frameguard" => {
            // helmet 3.23 reads `options.action`; a bare string (`["deny"]`) has none, so it
            // falls back to SAMEORIGIN, as LoopBack's scaffold shows.
            let action = match arg.get("action") {
                None | Some(Value::Null) => "SAMEORIGIN".to_owned(),
                Some(Value::String(a)) => match a.to_ascii_uppercase().as_str() {
                    "DENY" => "DENY".to_owned(),
                    "SAMEORIGIN" | "SAME-ORIGIN" => "SAMEORIGIN".to_owned(),
                    "ALLOW-FROM" | "ALLOWFROM" => match s("domain").filter(|d| !d.is_empty()) {
                        Some(d) => format!("ALLOW-FROM {d}"),
                        None => {
                            cx.bad(
                                &format!("{at}/domain"),
                                "expected the domain ALLOW-FROM allows",
                            );
                            "SAMEORIGIN".to_owned()
                        }
                    },
                    _ => {
                        cx.bad(
                            &format!("{at}/action"),
                            "expected \"DENY\", \"SAMEORIGIN\" or \"ALLOW-FROM\"",
                        );
                        "SAMEORIGIN".to_owned()
                    }
                },
                Some(_) => {
                    cx.bad(
                        &format!("{at}/action"),
                        "expected \"DENY\", \"SAMEORIGIN\" or \"ALLOW-FROM\"",
                    );
                    "SAMEORIGIN".to_owned()
                }
            };
            vec![HeaderRule::Set("X-Frame-Options", action)]
        }
        "hsts" => {
            let max_age = match arg.get("maxAge") {
                None | Some(Value::Null) => 180.0 * 24.0 * 3600.0,
                Some(Value::Number(n)) if n.as_f64().is_some_and(|f| f >= 0.0) => {
                    n.as_f64().unwrap_or(0.0)
                }
                Some(_) => {
                    cx.bad(
                        &format!("{at}/maxAge"),
                        "expected a non-negative number of seconds",
                    );
                    0.0
                }
            };
            if arg.get("maxage").is_some() {
                cx.bad(
                    &format!("{at}/maxage"),
                    "maxage is not an option; did you mean maxAge?",
                );
            }
            let mut value = format!("max-age={}", max_age.round() as u64);
            let sub = arg.get("includeSubDomains") != Some(&Value::Bool(false))
                && arg.get("includeSubdomains") != Some(&Value::Bool(false));
            if sub {
                value.push_str("; includeSubDomains");
            }
            if matches!(arg.get("preload"), Some(Value::Bool(true))) {
                value.push_str("; preload");
            }
            vec![HeaderRule::Set("Strict-Transport-Security", value)]
        }
        "hidePoweredBy" => match s("setTo").filter(|v| !v.is_empty()) {
            Some(v) => vec![HeaderRule::Set("X-Powered-By", v)],
            None => vec![HeaderRule::Remove("X-Powered-By")],
        },
        "ieNoOpen" => vec![HeaderRule::Set("X-Download-Options", "noopen".into())],
        "noSniff" => vec![HeaderRule::Set("X-Content-Type-Options", "nosniff".into())],
        "noCache" => vec![
            HeaderRule::Set("Surrogate-Control", "no-store".into()),
            HeaderRule::Set(
                "Cache-Control",
                "no-store, no-cache, must-revalidate, proxy-revalidate".into(),
            ),
            HeaderRule::Set("Pragma", "no-cache".into()),
            HeaderRule::Set("Expires", "0".into()),
        ],
        "dnsPrefetchControl" => {
            let on = matches!(arg.get("allow"), Some(Value::Bool(true)));
            vec![HeaderRule::Set(
                "X-DNS-Prefetch-Control",
                if on { "on" } else { "off" }.into(),
            )]
        }
        "referrerPolicy" => {
            const ALLOWED: &[&str] = &[
                "no-referrer",
                "no-referrer-when-downgrade",
                "same-origin",
                "origin",
                "strict-origin",
                "origin-when-cross-origin",
                "strict-origin-when-cross-origin",
                "unsafe-url",
                "",
            ];
            let policies: Vec<Value> = match arg.get("policy") {
                None => vec![Value::from("no-referrer")],
                Some(Value::Array(a)) => a.clone(),
                Some(v) => vec![v.clone()],
            };
            let mut names = Vec::new();
            for p in &policies {
                match p.as_str() {
                    Some(p) if ALLOWED.contains(&p) && !names.contains(&p) => names.push(p),
                    _ => cx.bad(
                        &format!("{at}/policy"),
                        "expected referrer policies such as \"no-referrer\" or \"same-origin\", each once",
                    ),
                }
            }
            vec![HeaderRule::Set("Referrer-Policy", names.join(","))]
        }
        "permittedCrossDomainPolicies" => {
            let p = s("permittedPolicies").unwrap_or_else(|| "none".into());
            if !["none", "master-only", "by-content-type", "all"].contains(&p.as_str()) {
                cx.bad(
                    &format!("{at}/permittedPolicies"),
                    "expected none, master-only, by-content-type or all",
                );
            }
            vec![HeaderRule::Set("X-Permitted-Cross-Domain-Policies", p)]
        }
        _ => return None,
    };
    Some(rules)
}

fn favicon_options(
    cx: &mut Ctx<'_>,
    args: &[Value],
    server_dir: &Path,
    name: &str,
) -> FaviconOptions {
    let path = match args.first() {
        None | Some(Value::Null) => None,
        Some(Value::String(p)) => {
            let p = resolve_param_path(p, server_dir);
            if !p.is_file() {
                cx.bad(
                    "/params",
                    &format!("expected the icon file `{}` to exist", p.display()),
                );
            }
            Some(p)
        }
        Some(_) => {
            cx.bad("/params", "expected the path of the icon file");
            None
        }
    };
    if path.is_none() && name == "serve-favicon" {
        cx.bad(
            "/params",
            "expected the path of the icon file (serve-favicon needs one)",
        );
    }
    const YEAR: u64 = 365 * 24 * 3600;
    let max_age_ms = match args.get(1).and_then(|o| o.get("maxAge")) {
        None | Some(Value::Null) => YEAR * 1000,
        Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0).clamp(0.0, (YEAR * 1000) as f64) as u64,
        Some(Value::String(s)) => match parse_ms(s) {
            Some(ms) => ms.min(YEAR * 1000),
            None => {
                cx.bad(
                    "/params/1/maxAge",
                    "expected milliseconds or a duration such as \"1d\"",
                );
                YEAR * 1000
            }
        },
        Some(_) => {
            cx.bad(
                "/params/1/maxAge",
                "expected milliseconds or a duration such as \"1d\"",
            );
            YEAR * 1000
        }
    };
    FaviconOptions {
        path,
        max_age_secs: max_age_ms / 1000,
    }
}

/// The `ms` module's durations: `500`, `10s`, `5m`, `2h`, `1d`, `1y`.
fn parse_ms(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult = match unit.trim() {
        "" | "ms" | "msec" | "msecs" | "millisecond" | "milliseconds" => 1.0,
        "s" | "sec" | "secs" | "second" | "seconds" => 1000.0,
        "m" | "min" | "mins" | "minute" | "minutes" => 60_000.0,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3_600_000.0,
        "d" | "day" | "days" => 86_400_000.0,
        "w" | "week" | "weeks" => 604_800_000.0,
        "y" | "yr" | "yrs" | "year" | "years" => 31_557_600_000.0,
        _ => return None,
    };
    Some((n * mult) as u64)
}

/// `$!./x` and `$!../x` are relative to the folder of middleware.json; other paths are
/// relative to the app root, where LoopBack runs.
pub fn resolve_param_path(p: &str, server_dir: &Path) -> PathBuf {
    if let Some(rel) = p.strip_prefix("$!") {
        return server_dir.join(rel);
    }
    let path = Path::new(p);
    if path.is_absolute() {
        path.to_owned()
    } else {
        server_dir.parent().unwrap_or(server_dir).join(path)
    }
}

fn error_handler_options(cx: &mut Ctx<'_>, arg: &Value) -> ErrorHandlerOptions {
    let mut out = ErrorHandlerOptions::default();
    if obj(cx, arg, "strong-error-handler").is_none() {
        return out;
    }
    out.debug = flag(cx, arg, "debug", false);
    out.log = flag(cx, arg, "log", true);
    out.negotiate_content_type = flag(cx, arg, "negotiateContentType", true);
    match arg.get("rootProperty") {
        None | Some(Value::Null) | Some(Value::Bool(true)) => {}
        Some(Value::Bool(false)) => out.root_property = None,
        Some(Value::String(s)) if !s.is_empty() => out.root_property = Some(s.clone()),
        Some(_) => cx.bad("/params/rootProperty", "expected a property name or false"),
    }
    match arg.get("safeFields") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => {
            out.safe_fields = a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect();
        }
        Some(_) => cx.bad("/params/safeFields", "expected an array of property names"),
    }
    match arg.get("defaultType") {
        None | Some(Value::Null) => {}
        Some(Value::String(t)) => match t.to_ascii_lowercase().as_str() {
            "json" | "application/json" => out.default_type = "json".into(),
            "html" | "text/html" => out.default_type = "html".into(),
            "xml" | "text/xml" => out.default_type = "xml".into(),
            _ => cx.bad("/params/defaultType", "expected json, html or xml"),
        },
        Some(_) => cx.bad("/params/defaultType", "expected json, html or xml"),
    }
    out
}

fn request_id_options(cx: &mut Ctx<'_>, arg: &Value) -> RequestIdOptions {
    let _ = obj(cx, arg, "oxbow#requestId");
    let header = match arg.get("header") {
        None | Some(Value::Null) => "X-Request-Id".to_owned(),
        Some(Value::String(h))
            if !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            h.clone()
        }
        Some(_) => {
            cx.bad("/params/header", "expected a header name");
            "X-Request-Id".to_owned()
        }
    };
    RequestIdOptions {
        header,
        trust_incoming: flag(cx, arg, "trustIncoming", true),
    }
}

fn rate_limit_options(cx: &mut Ctx<'_>, arg: &Value) -> RateLimitOptions {
    let _ = obj(cx, arg, "oxbow#rateLimit");
    let max = uint(cx, arg, "max", 100);
    let window_ms = uint(cx, arg, "windowMs", 60_000);
    if max == 0 || max > u64::from(u32::MAX) {
        cx.bad("/params/max", "expected at least 1 request per window");
    }
    if window_ms == 0 {
        cx.bad("/params/windowMs", "expected a window of at least 1 ms");
    }
    RateLimitOptions {
        max: max.clamp(1, u64::from(u32::MAX)) as u32,
        window_ms: window_ms.max(1),
        per_path: flag(cx, arg, "perPath", false),
        headers: flag(cx, arg, "headers", true),
        trust_proxy: flag(cx, arg, "trustProxy", false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(v: Value) -> Vec<String> {
        phase_order(v.as_object().unwrap())
    }

    #[test]
    fn custom_phases_are_zipped_into_the_builtin_list() {
        let v = serde_json::json!({"initial": {}, "custom": {}, "routes:before": {}});
        assert_eq!(
            order(v),
            [
                "initial", "custom", "session", "auth", "parse", "routes", "files", "final"
            ]
        );
        let v = serde_json::json!({"first": {}, "initial": {}});
        assert_eq!(order(v)[..2], ["first", "initial"]);
    }

    #[test]
    fn mounts_match_whole_segments() {
        assert_eq!(strip_mount("/api/Cars", "/api"), Some("/Cars"));
        assert_eq!(strip_mount("/API", "/api"), Some("/"));
        assert_eq!(strip_mount("/apix", "/api"), None);
        assert_eq!(strip_mount("/x", ""), Some("/x"));
    }
}
