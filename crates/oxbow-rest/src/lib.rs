//! oxbow-rest: the REST API LoopBack 3 generates for every public PersistedModel, on actix-web.
//!
//! One handler serves the whole REST root: it finds the model by its URL segment in the
//! registry, matches the rest of the path against LoopBack's route table ([`routes`]), reads
//! the arguments as strong-remoting does (`filter`/`where` as JSON or bracket syntax, body as
//! JSON or urlencoded form), calls the model layer and writes LoopBack's JSON.
//!
//! **Architecture invariant:** no handler is generated per model or per route; routes are data
//! (the table in `routes.rs`) so that OpenAPI and ACLs can read the same table later.

pub mod compress;
pub mod error;
pub mod etag;
pub mod files;
pub mod negotiate;
pub mod pipeline;
pub mod plans;
pub mod qs;
pub mod relations;
pub mod remote;
pub mod routes;
pub mod stream;

use std::borrow::Cow;
use std::sync::Arc;

use actix_web::http::header::{self, CONTENT_TYPE, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use serde::Serialize;
use serde_json::{Map, Value};

use oxbow_core::{Model, ModelDefinition, Record, RecordView, Registry, Row};

pub use error::RestError;
use negotiate::{ErrorFormat, Format};
use routes::{Op, Route};

/// What the REST handler needs: the registry and the body limits.
#[derive(Debug)]
pub struct RestApi {
    pub registry: Arc<Registry>,
    /// `restApiRoot` without a trailing slash (`/api`).
    pub root: String,
    pub json_limit: usize,
    pub form_limit: usize,
    /// Change-stream behaviour (`changeStreams` in config.json).
    pub streams: stream::StreamOptions,
    /// Turns `true` when the server shuts down: open streams send their last event and end.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// middleware.json compiled; its entries after `loopback#rest` answer what nobody else
    /// did ([`url_not_found`]), and it holds strong-error-handler's options.
    pub pipeline: Arc<pipeline::Compiled>,
    /// Express's `etag` setting (config.json `etag`).
    pub etag: etag::EtagMode,
    /// Remote methods declared in model JSON (`methods`), by model name.
    pub remote_methods: std::collections::HashMap<String, Vec<remote::RemoteMethod>>,
    /// Their Rust implementations and the remote hooks, from boot plugins.
    pub remotes: Arc<remote::Remotes>,
}

const JSON: &str = "application/json; charset=utf-8";

/// A successful result, before content negotiation.
struct Reply {
    status: StatusCode,
    json: Vec<u8>,
}

fn reply<T: Serialize>(body: &T) -> Result<Reply, RestError> {
    serde_json::to_vec(body)
        .map(|json| Reply {
            status: StatusCode::OK,
            json,
        })
        .map_err(|e| RestError::new(500, e.to_string()))
}

/// One row as REST shows it: the row's cached JSON, or the selected fields.
fn row_reply(
    def: &ModelDefinition,
    row: &Row,
    fields: Option<&[String]>,
) -> Result<Reply, RestError> {
    match fields {
        None => Ok(Reply {
            status: StatusCode::OK,
            json: row.rest_json(def).as_bytes().to_vec(),
        }),
        Some(_) => reply(&RecordView {
            def,
            record: row,
            fields,
        }),
    }
}

/// One row with the filter's fields and include.
async fn one_reply(
    registry: &Registry,
    model: &Model,
    row: Arc<Row>,
    filter: &oxbow_core::Filter,
) -> Result<Reply, RestError> {
    let def = model.definition();
    match &filter.include {
        None => row_reply(def, &row, filter.fields.as_deref()),
        Some(inc) => {
            let mut objs = oxbow_core::relation::render(
                registry,
                model,
                std::slice::from_ref(&row),
                filter.fields.as_deref(),
                Some(inc),
            )
            .await?;
            Ok(Reply {
                status: StatusCode::OK,
                json: objs.pop().unwrap_or_default().into_bytes(),
            })
        }
    }
}

/// JSON texts as one JSON array.
fn texts_reply<S: AsRef<str>>(texts: &[S]) -> Reply {
    Reply {
        status: StatusCode::OK,
        json: oxbow_core::relation::json_array(texts).into_bytes(),
    }
}

/// A row just written: rendered without filling its cache.
fn written_reply(def: &ModelDefinition, row: &Row) -> Result<Reply, RestError> {
    Ok(Reply {
        status: StatusCode::OK,
        json: row.render_json(def).into_owned().into_bytes(),
    })
}

/// A list of rows: the rows' cached JSON joined, or the selected fields of each.
fn rows_reply(
    def: &ModelDefinition,
    rows: &[Arc<Row>],
    fields: Option<&[String]>,
) -> Result<Reply, RestError> {
    if fields.is_some() {
        let views: Vec<RecordView<'_, Row>> = rows
            .iter()
            .map(|r| RecordView {
                def,
                record: &**r,
                fields,
            })
            .collect();
        return reply(&views);
    }
    let parts: Vec<&str> = rows.iter().map(|r| r.rest_json(def)).collect();
    Ok(texts_reply(&parts))
}

/// Writes a result in the format the client negotiated (strong-remoting's `done`).
fn respond(
    req: &HttpRequest,
    query: &Map<String, Value>,
    reply: Reply,
    etags: etag::EtagMode,
) -> HttpResponse {
    let (ctype, body): (&str, Vec<u8>) = match negotiate::success_format(req, query) {
        Format::Json => (JSON, reply.json),
        Format::Js => match negotiate::jsonp_callback(query) {
            Some(cb) => {
                let json = String::from_utf8_lossy(&reply.json)
                    .replace('\u{2028}', "\\u2028")
                    .replace('\u{2029}', "\\u2029");
                (
                    "text/javascript; charset=utf-8",
                    format!("/**/ typeof {cb} === 'function' && {cb}({json});").into_bytes(),
                )
            }
            None => (JSON, reply.json),
        },
        Format::Xml(ct) => {
            let v: Value = serde_json::from_slice(&reply.json).unwrap_or(Value::Null);
            let ctype = if ct == "application/xml" {
                "application/xml; charset=utf-8"
            } else {
                "text/xml; charset=utf-8"
            };
            (ctype, negotiate::result_xml(&v).into_bytes())
        }
        Format::NotAcceptable => {
            return etag::send(
                req,
                etags,
                StatusCode::NOT_ACCEPTABLE,
                "text/plain; charset=utf-8",
                b"Not Acceptable".to_vec(),
            );
        }
    };
    etag::send(req, etags, reply.status, ctype, body)
}

/// Writes an error in the format strong-error-handler negotiates (JSON, HTML or XML), with
/// the app's strong-error-handler options (debug, log, rootProperty, defaultType).
pub fn error_response(
    req: &HttpRequest,
    query: &Map<String, Value>,
    err: &RestError,
) -> HttpResponse {
    let api = req.app_data::<web::Data<RestApi>>();
    let default = pipeline::ErrorOptions::default();
    let opts = api.map_or(&default, |a| &a.pipeline.errors);
    if opts.log {
        let url = req.uri().path_and_query().map_or("/", |p| p.as_str());
        tracing::warn!(
            target: "oxbow::errors",
            "Request {} {url} failed: {}: {}",
            req.method(),
            err.name,
            err.message
        );
    } else if err.status >= 500 {
        tracing::error!(status = err.status, message = %err.message, "request failed");
    }
    let head = req.method() == Method::HEAD;
    let fmt = if opts.negotiate_content_type {
        negotiate::error_format(req, query)
    } else {
        match opts.default_type.as_str() {
            "html" => ErrorFormat::Html,
            "xml" => ErrorFormat::Xml,
            _ => ErrorFormat::Json,
        }
    };
    let inner = err.fields(opts.debug);
    let (ctype, text) = match fmt {
        ErrorFormat::Json => {
            let body = match &opts.root_property {
                Some(root) => {
                    let mut m = Map::new();
                    m.insert(root.clone(), Value::Object(inner));
                    Value::Object(m)
                }
                None => Value::Object(inner),
            };
            ("application/json; charset=utf-8", body.to_string())
        }
        ErrorFormat::Html => ("text/html; charset=utf-8", negotiate::error_html(&inner)),
        ErrorFormat::Xml => ("text/xml; charset=utf-8", negotiate::error_xml(&inner)),
    };
    let status = StatusCode::from_u16(err.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = HttpResponse::build(status);
    r.insert_header((CONTENT_TYPE, HeaderValue::from_static(ctype)));
    r.insert_header((
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    ));
    if head { r.finish() } else { r.body(text) }
}

/// `loopback#urlNotFound`: `Cannot GET /nope`.
pub fn not_found_response(req: &HttpRequest) -> HttpResponse {
    let url = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let query = qs::parse(req.query_string());
    error_response(
        req,
        &query,
        &RestError::new(404, format!("Cannot {} {url}", req.method())),
    )
}

/// What nobody answered: the entries after `loopback#rest` (static files, `urlNotFound`, …).
pub async fn url_not_found(req: HttpRequest, api: web::Data<RestApi>) -> HttpResponse {
    pipeline::fallback(&req, &api.pipeline).await
}

/// Now as an ISO date with milliseconds (`2026-11-28T06:00:00.000Z`), as JavaScript prints it.
pub fn now_iso() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64;
    oxbow_core::js::to_date(&Value::from(ms))
        .map(|d| oxbow_core::js::format_date(&d))
        .unwrap_or_default()
}

/// The handler of everything under the REST root.
pub async fn handle(
    req: HttpRequest,
    payload: web::Payload,
    api: web::Data<RestApi>,
) -> HttpResponse {
    let plan = plans::parsed(&req);
    let query = &plan.query;
    match dispatch(&req, &plan, payload, &api).await {
        Ok(Outcome::Reply(reply)) => respond(&req, query, reply, api.etag),
        Ok(Outcome::Response(resp)) => resp,
        Err(e) => error_response(&req, query, &e),
    }
}

fn decode(seg: &str) -> String {
    percent_encoding::percent_decode_str(seg)
        .decode_utf8_lossy()
        .into_owned()
}

async fn dispatch(
    req: &HttpRequest,
    plan: &plans::Parsed,
    payload: web::Payload,
    api: &RestApi,
) -> Result<Outcome, RestError> {
    let query = &plan.query;
    // body-parser runs before routing: an oversized or malformed body fails on any path.
    let mut payload = payload;
    let body = match read_body(req, &mut payload, api).await {
        Ok(body) => body,
        // The rest of an oversized body is never read: the connection closes after the 413.
        Err(e) if e.status == 413 => {
            let resp = error_response(req, query, &e);
            return Ok(Outcome::Response(error::closing_unread(resp, payload)));
        }
        Err(e) => return Err(e),
    };
    let path = req.path();
    let rel = path.strip_prefix(api.root.as_str()).unwrap_or(path);
    let raw_query = req.query_string();
    let with_query = |p: &str| {
        if raw_query.is_empty() {
            p.to_owned()
        } else {
            format!("{p}?{raw_query}")
        }
    };
    let mut segs = rel.split('/').filter(|s| !s.is_empty());
    let no_method = || {
        RestError::new(
            404,
            format!(
                "There is no method to handle {} {}",
                req.method(),
                with_query(if rel.is_empty() { "/" } else { rel })
            ),
        )
    };
    // Express matches paths case-insensitively and without decoding literal segments.
    let Some(model_seg) = segs.next() else {
        return Err(no_method());
    };
    let Some(model) = api
        .registry
        .by_path(model_seg)
        .filter(|m| m.definition().is_persisted())
    else {
        return Err(no_method());
    };
    let rest: Vec<&str> = segs.collect();
    let verb = req.method().as_str();
    let declared: &[remote::RemoteMethod] = if api.remote_methods.is_empty() {
        &[]
    } else {
        api.remote_methods
            .get(model.name())
            .map_or(&[], Vec::as_slice)
    };
    // Literal custom routes sort before `/:id` (strong-remoting's order).
    if let Some((m, params)) = declared
        .iter()
        .filter(|m| m.literal())
        .find_map(|m| m.matches(verb, &rest).map(|p| (m, p)))
    {
        return call_remote(api, model, m, params, req, plan, body).await;
    }
    let route = routes::match_route(req.method(), &rest);
    if route.is_none() {
        if let Some(rel_route) = relations::match_route(&api.registry, model, req.method(), &rest) {
            let method = rel_route.method_name();
            let args = route_args(
                rel_route.fk.as_deref().map(routes::sloppy_any),
                &body,
                query,
            );
            let body = before_remote(api, req, model.name(), &method, args, body).await?;
            let out = relations::run(&api.registry, model, rel_route, req, plan, body).await?;
            return after_remote(api, req, model.name(), &method, out).await;
        }
        if let Some((m, params)) = declared
            .iter()
            .find_map(|m| m.matches(verb, &rest).map(|p| (m, p)))
        {
            return call_remote(api, model, m, params, req, plan, body).await;
        }
    }
    let Some(route) = route else {
        let sub = rel
            .trim_start_matches('/')
            .split_once('/')
            .map_or_else(|| "/".to_owned(), |(_, s)| format!("/{s}"));
        return Err(RestError::new(
            404,
            format!(
                "Shared class \"{}\" has no method handling {} {}",
                model.name(),
                req.method(),
                with_query(&sub)
            ),
        ));
    };
    if matches!(route.op, Op::ChangeStream | Op::RecordChangeStream) {
        if !streams_enabled(model.definition()) {
            let sub = rel
                .trim_start_matches('/')
                .split_once('/')
                .map_or_else(|| "/".to_owned(), |(_, s)| format!("/{s}"));
            let message = format!(
                "Shared class \"{}\" has no method handling {} {}",
                model.name(),
                req.method(),
                with_query(&sub)
            );
            return Err(RestError::new(404, message));
        }
        let from_body = match &body {
            Body::Json(Value::Object(b)) => b.get("options").cloned(),
            _ => None,
        };
        let opts = match query_or_header(req, query, "options")? {
            Some(v) => Some(v.into_owned()),
            None => object_arg(from_body.as_ref())?.map(Cow::into_owned),
        };
        let target = (route.op == Op::RecordChangeStream).then(|| path_id(&route));
        let resp = stream::open(
            model.clone(),
            target,
            req,
            query,
            opts.as_ref(),
            api.streams.clone(),
            api.shutdown.clone(),
        )
        .await?;
        return Ok(Outcome::Response(resp));
    }
    let method = route.op.method_name();
    let body = if api.remotes.has_hooks() {
        let args = route_args(route.id.as_deref().map(routes::sloppy_any), &body, query);
        before_remote(api, req, model.name(), method, args, body).await?
    } else {
        body
    };
    let out = run(&api.registry, model, &route, req, plan, body)
        .await
        .map(Outcome::Reply)?;
    after_remote(api, req, model.name(), method, out).await
}

/// The arguments remote hooks see for a built-in method: `id`, `data`, `filter`, `where`.
fn route_args(id: Option<Value>, body: &Body, query: &Map<String, Value>) -> Map<String, Value> {
    let mut args = Map::new();
    if let Some(id) = id {
        args.insert("id".into(), id);
    }
    match body {
        Body::Json(v) => {
            args.insert("data".into(), v.clone());
        }
        Body::Form(m) => {
            args.insert("data".into(), Value::Object(m.clone()));
        }
        Body::None => {}
    }
    for k in ["filter", "where"] {
        if let Some(v) = query.get(k) {
            args.insert(k.into(), v.clone());
        }
    }
    args
}

/// Runs the `beforeRemote` hooks that match; a changed `data` becomes the body.
async fn before_remote(
    api: &RestApi,
    req: &HttpRequest,
    model: &str,
    method: &str,
    args: Map<String, Value>,
    body: Body,
) -> Result<Body, RestError> {
    if api.remotes.before.is_empty() {
        return Ok(body);
    }
    let before = args.get("data").cloned();
    let mut ctx = remote::RemoteContext {
        req,
        model,
        method,
        args,
        result: None,
    };
    api.remotes.run_before(&mut ctx).await?;
    let after = ctx.args.remove("data");
    Ok(if after != before {
        after.map_or(Body::None, Body::Json)
    } else {
        body
    })
}

/// Runs the `afterRemote` hooks that match on a JSON result; they may replace it.
async fn after_remote(
    api: &RestApi,
    req: &HttpRequest,
    model: &str,
    method: &str,
    out: Outcome,
) -> Result<Outcome, RestError> {
    let Outcome::Reply(reply) = out else {
        return Ok(out);
    };
    if !api.remotes.has_after(model, method) {
        return Ok(Outcome::Reply(reply));
    }
    let result: Value = serde_json::from_slice(&reply.json).unwrap_or(Value::Null);
    let mut ctx = remote::RemoteContext {
        req,
        model,
        method,
        args: Map::new(),
        result: Some(result),
    };
    api.remotes.run_after(&mut ctx).await?;
    let json = serde_json::to_vec(&ctx.result.unwrap_or(Value::Null))
        .map_err(|e| RestError::new(500, e.to_string()))?;
    Ok(Outcome::Reply(Reply {
        status: reply.status,
        json,
    }))
}

/// A remote method declared in model JSON: arguments sourced and coerced as strong-remoting
/// does, the Rust implementation a plugin registered, the result shaped by `returns`.
async fn call_remote(
    api: &RestApi,
    model: &Arc<Model>,
    m: &remote::RemoteMethod,
    params: Map<String, Value>,
    req: &HttpRequest,
    plan: &plans::Parsed,
    body: Body,
) -> Result<Outcome, RestError> {
    let Some(handler) = api
        .remotes
        .methods
        .get(&(model.name().to_owned(), m.name.clone()))
        .cloned()
    else {
        return Err(RestError::new(
            501,
            format!(
                "{}.{} is declared in the model's methods but no boot plugin implements it",
                model.name(),
                m.name
            ),
        ));
    };
    let instance = if m.is_static {
        None
    } else {
        let id = params.get("id").cloned().unwrap_or(Value::Null);
        match model.find_by_id(&id).await? {
            Some(r) => Some(r),
            None => {
                return Err(oxbow_core::Error::no_instance(&id).into());
            }
        }
    };
    let query = &plan.query;
    let body_map = match &body {
        Body::Json(Value::Object(m)) => Some(m.clone()),
        Body::Form(m) => Some(m.clone()),
        _ => None,
    };
    let from_json = matches!(body, Body::Json(_));
    let mut args = Map::new();
    for a in &m.accepts {
        let (raw, json) = match a.source.as_deref() {
            Some("body") => (
                match &body {
                    Body::Json(v) => Some(v.clone()),
                    Body::Form(m) => Some(Value::Object(m.clone())),
                    Body::None => None,
                },
                true,
            ),
            Some("path") => (params.get(&a.arg).cloned(), true),
            Some("query") => (query.get(&a.arg).cloned(), false),
            Some("header") => (
                req.headers()
                    .get(a.arg.as_str())
                    .and_then(|v| v.to_str().ok())
                    .map(|v| Value::String(v.to_owned())),
                false,
            ),
            Some("form") => (
                body_map.as_ref().and_then(|b| b.get(&a.arg)).cloned(),
                from_json,
            ),
            _ => {
                if let Some(v) = params.get(&a.arg) {
                    (Some(v.clone()), true)
                } else if let Some(v) = body_map.as_ref().and_then(|b| b.get(&a.arg)) {
                    (Some(v.clone()), from_json)
                } else if let Some(v) = query.get(&a.arg) {
                    (Some(v.clone()), false)
                } else {
                    (
                        req.headers()
                            .get(a.arg.as_str())
                            .and_then(|v| v.to_str().ok())
                            .map(|v| Value::String(v.to_owned())),
                        false,
                    )
                }
            }
        };
        let value = remote::coerce_arg(a, raw, json)?;
        let blank = match &value {
            None | Some(Value::Null) => true,
            Some(Value::String(s)) => s.is_empty(),
            _ => false,
        };
        if a.required && blank {
            return Err(RestError::new(
                400,
                format!("{} is a required argument", a.arg),
            ));
        }
        if let Some(v) = value {
            args.insert(a.arg.clone(), v);
        }
    }
    if !api.remotes.before.is_empty() {
        let mut ctx = remote::RemoteContext {
            req,
            model: model.name(),
            method: &m.name,
            args,
            result: None,
        };
        api.remotes.run_before(&mut ctx).await?;
        args = ctx.args;
    }
    let result = handler(remote::RemoteCall {
        req: req.clone(),
        model: model.clone(),
        args,
        instance,
    })
    .await?;
    let shaped = m.shape(result);
    let json = serde_json::to_vec(&shaped).map_err(|e| RestError::new(500, e.to_string()))?;
    let out = Outcome::Reply(Reply {
        status: StatusCode::from_u16(m.status).unwrap_or(StatusCode::OK),
        json,
    });
    after_remote(api, req, model.name(), &m.name, out).await
}

/// A model's change stream routes exist unless its JSON says `"changeStream": false` (or
/// `{"enabled": false}`).
fn streams_enabled(def: &ModelDefinition) -> bool {
    match def.settings.get("changeStream") {
        Some(Value::Bool(b)) => *b,
        Some(Value::Object(o)) => o.get("enabled").and_then(Value::as_bool).unwrap_or(true),
        _ => true,
    }
}

/// What a route produced: a value to negotiate, or a finished (streaming) response.
enum Outcome {
    Reply(Reply),
    Response(HttpResponse),
}

/// The request body as strong-remoting sees it.
enum Body {
    None,
    Json(Value),
    Form(Map<String, Value>),
}

async fn read_body(
    req: &HttpRequest,
    payload: &mut web::Payload,
    api: &RestApi,
) -> Result<Body, RestError> {
    let ctype = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let mime = ctype.split(';').next().unwrap_or("").trim().to_owned();
    // body-parser's defaults: exactly `application/json` and the urlencoded form type.
    let is_json = mime == "application/json";
    let is_form = mime == "application/x-www-form-urlencoded";
    if !is_json && !is_form {
        return Ok(Body::None);
    }
    let limit = if is_json {
        api.json_limit
    } else {
        api.form_limit
    };
    let too_large = || RestError::named(413, "PayloadTooLargeError", "request entity too large");
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        if len > limit {
            return Err(too_large());
        }
    }
    let mut buf = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk: Bytes = chunk.map_err(|e| RestError::new(400, e.to_string()))?;
        if buf.len() + chunk.len() > limit {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    if is_form {
        let text = String::from_utf8_lossy(&buf);
        return Ok(Body::Form(qs::parse(&text)));
    }
    if buf.is_empty() {
        return Ok(Body::Json(Value::Object(Map::new())));
    }
    match serde_json::from_slice::<Value>(&buf) {
        Ok(v) => Ok(Body::Json(v)),
        Err(e) => Err(RestError::named(
            400,
            "SyntaxError",
            json_syntax_message(&e),
        )),
    }
}

fn json_syntax_message(e: &serde_json::Error) -> String {
    format!(
        "Unexpected token in JSON at line {} column {}: {e}",
        e.line(),
        e.column()
    )
}

/// strong-remoting's coercion of an `object` argument given in the query or a header:
/// JSON text, bracket syntax, or nothing.
fn object_arg(v: Option<&Value>) -> Result<Option<Cow<'_, Value>>, RestError> {
    match v {
        None => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) if s == "null" => Ok(None),
        Some(Value::String(s)) => {
            let t = s.as_str();
            if t.starts_with('{') && t.ends_with('}') {
                match serde_json::from_str::<Value>(t) {
                    Ok(v @ Value::Object(_)) => Ok(Some(Cow::Owned(v))),
                    _ => Err(RestError::new(
                        400,
                        "Cannot parse JSON-encoded object value.",
                    )),
                }
            } else {
                Err(RestError::new(400, "Value is not an object."))
            }
        }
        Some(v @ Value::Object(_)) => Ok(Some(Cow::Borrowed(v))),
        Some(_) => Err(RestError::new(400, "Value is not an object.")),
    }
}

/// An argument without an http source: query first, then a header of the same name.
fn query_or_header<'a>(
    req: &HttpRequest,
    query: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<Cow<'a, Value>>, RestError> {
    if let Some(v) = query.get(name) {
        return object_arg(Some(v));
    }
    match req.headers().get(name).and_then(|v| v.to_str().ok()) {
        Some(h) => {
            Ok(object_arg(Some(&Value::String(h.to_owned())))?.map(|v| Cow::Owned(v.into_owned())))
        }
        None => Ok(None),
    }
}

/// The `filter` argument of find: parsed once per distinct query string (see `plans`) when it
/// comes from the query string, parsed every time when it comes from a header.
fn filter_arg(
    req: &HttpRequest,
    model: &Model,
    plan: &plans::Parsed,
) -> Result<std::rc::Rc<oxbow_core::Filter>, RestError> {
    if plan.query.contains_key("filter") {
        return plan.filter(|| {
            let raw = object_arg(plan.query.get("filter"))?;
            Ok::<_, RestError>(model.parse_filter(raw.as_deref().unwrap_or(&Value::Null))?)
        });
    }
    let raw = query_or_header(req, &plan.query, "filter")?;
    Ok(std::rc::Rc::new(
        model.parse_filter(raw.as_deref().unwrap_or(&Value::Null))?,
    ))
}

/// The `data` argument: an object (or, for `create`, an array of objects).
fn data_arg(body: Body, allow_array: bool) -> Result<DataArg, RestError> {
    let not_object = || RestError::new(400, "Value is not an object.");
    match body {
        Body::None => Ok(DataArg::One(Record::new())),
        Body::Form(map) => Ok(DataArg::One(map)),
        Body::Json(Value::Null) => Ok(DataArg::One(Record::new())),
        Body::Json(Value::Object(map)) => Ok(DataArg::One(map)),
        Body::Json(Value::Array(items)) if allow_array => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::Object(m) => out.push(m),
                    _ => {
                        return Err(RestError::new(
                            400,
                            "Some of array items are not an object.",
                        ));
                    }
                }
            }
            Ok(DataArg::Many(out))
        }
        Body::Json(_) => Err(not_object()),
    }
}

enum DataArg {
    One(Record),
    Many(Vec<Record>),
}

fn path_id(route: &Route) -> Value {
    routes::sloppy_any(&decode(route.id.as_deref().unwrap_or("")))
}

/// The `:id` of a CRUD route: strong-remoting reads `null` as no value and refuses it.
fn required_id(route: &Route) -> Result<Value, RestError> {
    match path_id(route) {
        Value::Null => Err(RestError::new(400, "id is a required argument")),
        id => Ok(id),
    }
}

fn not_found_by_id(model: &Model, id: &Value) -> RestError {
    let shown = match id {
        Value::String(s) => s.clone(),
        other => oxbow_core::js::to_js_string(other),
    };
    RestError {
        status: 404,
        name: "Error",
        message: format!("Unknown \"{}\" id \"{shown}\".", model.name()),
        code: Some(Cow::Borrowed("MODEL_NOT_FOUND")),
        details: None,
    }
}

async fn run(
    registry: &Registry,
    model: &Model,
    route: &Route,
    req: &HttpRequest,
    plan: &plans::Parsed,
    body: Body,
) -> Result<Reply, RestError> {
    let query = &plan.query;
    let def = model.definition();
    let one = |data: DataArg| match data {
        DataArg::One(r) => Ok(r),
        DataArg::Many(_) => Err(RestError::new(400, "Value is not an object.")),
    };
    Ok(match route.op {
        Op::Find => {
            let filter = filter_arg(req, model, plan)?;
            let rows = model.find(&filter).await?;
            match &filter.include {
                Some(inc) => {
                    let objs = oxbow_core::relation::render(
                        registry,
                        model,
                        &rows,
                        filter.fields.as_deref(),
                        Some(inc),
                    )
                    .await?;
                    texts_reply(&objs)
                }
                None => rows_reply(def, &rows, filter.fields.as_deref())?,
            }
        }
        Op::FindOne => {
            let filter = model.parse_filter(
                query_or_header(req, query, "filter")?
                    .as_deref()
                    .unwrap_or(&Value::Null),
            )?;
            match model.find_one(&filter).await? {
                Some(r) => one_reply(registry, model, r, &filter).await?,
                None => return Err(not_found_by_id(model, &Value::String("undefined".into()))),
            }
        }
        Op::FindById => {
            let id = required_id(route)?;
            let filter = model.parse_filter(
                query_or_header(req, query, "filter")?
                    .as_deref()
                    .unwrap_or(&Value::Null),
            )?;
            match model.find_by_id(&id).await? {
                Some(r) => one_reply(registry, model, r, &filter).await?,
                None => return Err(not_found_by_id(model, &id)),
            }
        }
        Op::Exists => {
            let exists = model.exists(&required_id(route)?).await?;
            reply(&serde_json::json!({ "exists": exists }))?
        }
        Op::ExistsHead => {
            if model.exists(&required_id(route)?).await? {
                reply(&serde_json::json!({ "exists": true }))?
            } else {
                return Err(RestError::new(404, "Not Found"));
            }
        }
        Op::Count => {
            let w = query_or_header(req, query, "where")?;
            let w = match &w {
                Some(w) => model.parse_where(w)?,
                None => None,
            };
            let count = model.count(w.as_ref()).await?;
            reply(&serde_json::json!({ "count": count }))?
        }
        Op::Create => match data_arg(body, true)? {
            DataArg::One(data) => {
                let r = model.create(data).await?;
                written_reply(def, &r)?
            }
            DataArg::Many(items) => {
                let rows = model.create_many(items).await?;
                rows_reply(def, &rows, None)?
            }
        },
        Op::PatchOrCreate => {
            let r = model.patch_or_create(one(data_arg(body, false)?)?).await?;
            written_reply(def, &r)?
        }
        Op::ReplaceOrCreate => {
            let r = model
                .replace_or_create(one(data_arg(body, false)?)?)
                .await?;
            written_reply(def, &r)?
        }
        Op::UpsertWithWhere => {
            let w = query_or_header(req, query, "where")?;
            let r = model
                .upsert_with_where(w.as_deref(), one(data_arg(body, false)?)?)
                .await?;
            written_reply(def, &r)?
        }
        Op::UpdateAll => {
            let w = query_or_header(req, query, "where")?;
            let count = model
                .update_all(w.as_deref(), one(data_arg(body, false)?)?)
                .await?;
            reply(&serde_json::json!({ "count": count }))?
        }
        Op::ReplaceById => {
            let r = model
                .replace_by_id(&required_id(route)?, one(data_arg(body, false)?)?)
                .await?;
            written_reply(def, &r)?
        }
        Op::PatchAttributes => {
            let r = model
                .patch_by_id(&required_id(route)?, one(data_arg(body, false)?)?)
                .await?;
            written_reply(def, &r)?
        }
        // Answered by `dispatch` (a streaming response).
        Op::ChangeStream | Op::RecordChangeStream => {
            return Err(RestError::new(500, "change stream routed as a value"));
        }
        Op::DeleteById => {
            let count = model.delete_by_id(&required_id(route)?).await?;
            reply(&serde_json::json!({ "count": count }))?
        }
    })
}
