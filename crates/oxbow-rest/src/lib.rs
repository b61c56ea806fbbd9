//! oxbow-rest: the REST API LoopBack 3 generates for every public PersistedModel, on actix-web.
//!
//! One handler serves the whole REST root: it finds the model by its URL segment in the
//! registry, matches the rest of the path against the model's endpoint table ([`endpoint`]),
//! and runs the endpoint through one call path ([`invoke`]: authorization, `beforeRemote`, the
//! method, `afterRemote`), reading the arguments as strong-remoting does (`filter`/`where` as
//! JSON or bracket syntax, body as JSON or urlencoded form) and writing LoopBack's JSON.
//!
//! **Architecture invariant:** no handler is generated per model or per route; routes are data
//! (the endpoint table) so that OpenAPI and ACLs read the same table dispatch matches.

pub mod compress;
pub mod endpoint;
pub mod error;
pub mod etag;
pub mod files;
pub mod generation;
pub mod negotiate;
pub mod pipeline;
pub mod plans;
pub mod qs;
pub mod relations;
pub mod remote;
pub mod routes;
pub mod stream;
pub mod users;

use std::borrow::Cow;
use std::sync::Arc;

use actix_web::http::header::{self, CONTENT_TYPE, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use serde::Serialize;
use serde_json::{Map, Value};

use oxbow_core::{Caller, Model, ModelDefinition, Record, RecordView, Registry, Row};

use endpoint::Action;
pub use error::ErrorCode;
pub use error::RestError;
use generation::Generation;
use negotiate::{ErrorFormat, Format};
use routes::Op;

/// What the REST handler needs: the generation being served, and what stays for the life
/// of the listener (the REST root, the shutdown signal).
#[derive(Debug)]
pub struct RestApi {
    /// The registry, endpoint table, pipeline and plugin code, swapped whole.
    pub current: Arc<generation::Current>,
    /// `restApiRoot` without a trailing slash (`/api`); the router is mounted there.
    pub root: String,
    /// Turns `true` when the server shuts down: open streams send their last event and end.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
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
        .map_err(|e| ErrorCode::Internal.with(&[&e]))
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
    caller: &Caller,
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
                caller,
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
    let live = api.map(|a| a.current.load());
    let opts = live.as_ref().map_or(&default, |g| &g.pipeline.errors);
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
        &ErrorCode::CannotGet.with(&[&req.method(), &url]),
    )
}

/// What nobody answered: the entries after `loopback#rest` (static files, `urlNotFound`, …).
pub async fn url_not_found(req: HttpRequest, api: web::Data<RestApi>) -> HttpResponse {
    let live = api.current.load();
    pipeline::fallback(&req, &live.pipeline).await
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
    let live = api.current.load();
    let plan = plans::parsed(&req, live.id);
    let query = &plan.query;
    match dispatch(&req, &plan, payload, &api, &live).await {
        Ok(Outcome::Reply(reply)) => respond(&req, query, reply, live.etag),
        Ok(Outcome::Response(resp)) => resp,
        Err(e) => error_response(&req, query, &e),
    }
}

fn decode(seg: &str) -> String {
    percent_encoding::percent_decode_str(seg)
        .decode_utf8_lossy()
        .into_owned()
}

/// The path relative to the REST root with the query, as strong-remoting quotes it in 404s.
fn with_query(req: &HttpRequest, path: &str) -> String {
    match req.query_string() {
        "" => path.to_owned(),
        q => format!("{path}?{q}"),
    }
}

async fn dispatch(
    req: &HttpRequest,
    plan: &plans::Parsed,
    payload: web::Payload,
    api: &RestApi,
    live: &Generation,
) -> Result<Outcome, RestError> {
    // `loopback#token` runs before the REST handler: an expired token fails on any path.
    let caller = caller_of(req, plan, live).await?;
    // body-parser runs before routing: an oversized or malformed body fails on any path.
    let mut payload = payload;
    let body = match read_body(req, &mut payload, live).await {
        Ok(body) => body,
        // The rest of an oversized body is never read: the connection closes after the 413.
        Err(e) if e.status == 413 => {
            let resp = error_response(req, &plan.query, &e);
            return Ok(Outcome::Response(error::closing_unread(resp, payload)));
        }
        Err(e) => return Err(e),
    };
    let path = req.path();
    let rel = path.strip_prefix(api.root.as_str()).unwrap_or(path);
    let mut segs = rel.split('/').filter(|s| !s.is_empty());
    let no_method = || {
        let shown = with_query(req, if rel.is_empty() { "/" } else { rel });
        ErrorCode::NoMethod.with(&[&req.method(), &shown])
    };
    // Express matches paths case-insensitively and without decoding literal segments.
    let Some(model_seg) = segs.next() else {
        return Err(no_method());
    };
    // Every public model is a shared class, a `base: "Model"` one too (its remote methods,
    // and strong-remoting's "no method" 404 for the rest).
    let Some(index) = live.registry.index_by_path(model_seg) else {
        return Err(no_method());
    };
    let model = &live.registry.models()[index];
    let mut rest: Vec<&str> = segs.collect();
    // `currentUserLiteral` (`/Users/me`): the caller's own id, or 401 without a token.
    let own_id;
    if let Some(literal) = live.auth.token_options.current_user_literal.as_deref() {
        if rest.contains(&literal) {
            match caller.token().and_then(|t| t.user_key()) {
                Some(id) => {
                    own_id = id;
                    for s in rest.iter_mut().filter(|s| **s == literal) {
                        *s = own_id.as_str();
                    }
                }
                None => return Err(ErrorCode::AuthorizationRequired.err()),
            }
        }
    }
    let matched = live
        .endpoints
        .at(index)
        .and_then(|t| t.find(req.method().as_str(), &rest));
    let Some(matched) = matched else {
        let sub = rel
            .trim_start_matches('/')
            .split_once('/')
            .map_or_else(|| "/".to_owned(), |(_, s)| format!("/{s}"));
        let shown = with_query(req, &sub);
        return Err(ErrorCode::NoSharedMethod.with(&[&model.name(), &req.method(), &shown]));
    };
    let call = Call {
        live,
        model,
        matched: &matched,
        caller: &caller,
        req,
        plan,
    };
    invoke(api, &call, body).await
}

/// The caller of a request (LoopBack's `options`): made once, before routing, and passed to
/// every step of [`invoke`]. With auth enabled its access token is looked for as
/// `loopback#token` looks (query, then headers) and resolved: an unknown id is anonymous,
/// an expired one a 401 `INVALID_TOKEN`.
async fn caller_of(
    req: &HttpRequest,
    plan: &plans::Parsed,
    live: &Generation,
) -> Result<Caller, RestError> {
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut token = None;
    let auth = &live.auth;
    if auth.enabled {
        let query = &plan.query;
        let id = auth.token_options.id_for_request(
            |k| query.get(k),
            |h| req.headers().get(h).and_then(|v| v.to_str().ok()),
        );
        let state = match (id, query.get("ticket").and_then(Value::as_str)) {
            (Some(id), _) => Some(auth.resolve(&id).await?),
            // A change stream opened with a ticket (`POST …/change-stream/ticket`): the
            // token it stands for, the ticket used up.
            (None, Some(ticket)) if req.path().ends_with("/change-stream") => {
                Some(auth.redeem_ticket(ticket).await?)
            }
            (None, _) => None,
        };
        match state {
            None | Some(oxbow_auth::TokenState::None) => {}
            Some(oxbow_auth::TokenState::Valid(t)) => token = Some(t),
            Some(oxbow_auth::TokenState::Invalid) => return Err(ErrorCode::InvalidToken.err()),
        }
    }
    Ok(Caller::new(oxbow_core::CallerInfo { request_id, token }))
}

/// The one call path of every REST method: authorization, `beforeRemote` hooks, the
/// method, `afterRemote` hooks, in that order, for CRUD, relation, remote and change-stream
/// endpoints alike.
/// One call of an endpoint: what every step of [`invoke`] reads.
pub(crate) struct Call<'a> {
    pub live: &'a Generation,
    pub model: &'a Arc<Model>,
    pub matched: &'a endpoint::Matched<'a, 'a>,
    pub caller: &'a Caller,
    pub req: &'a HttpRequest,
    pub plan: &'a plans::Parsed,
}

impl Call<'_> {
    fn endpoint(&self) -> &endpoint::Endpoint {
        self.matched.endpoint
    }
}

async fn invoke(api: &RestApi, call: &Call<'_>, body: Body) -> Result<Outcome, RestError> {
    let ep = call.endpoint();
    if let Err(e) = authorize(call, &body).await {
        // A denied change stream is an ordinary error, with the headers LoopBack's stream
        // route had already set (and strong-remoting's warning for `_format=event-stream`).
        if let Action::Crud(Op::ChangeStream | Op::RecordChangeStream) = &ep.action {
            let mut resp = error_response(call.req, &call.plan.query, &e);
            let h = resp.headers_mut();
            h.insert(
                actix_web::http::header::CONTENT_ENCODING,
                actix_web::http::header::HeaderValue::from_static("x-no-compression"),
            );
            if call.plan.query.get("_format").and_then(Value::as_str) == Some("event-stream") {
                h.insert(
                    actix_web::http::header::HeaderName::from_static("x-warning"),
                    actix_web::http::header::HeaderValue::from_static(
                        "Response _format \"event-stream\" is not supportedused \"json\" instead\"",
                    ),
                );
            }
            return Ok(Outcome::Response(resp));
        }
        return Err(e);
    }
    let out = match &ep.action {
        Action::Remote(m) => return call_remote(call, m, body).await,
        Action::Crud(op @ (Op::ChangeStream | Op::RecordChangeStream)) => {
            let body = before_remote(call, body).await?;
            let (req, query) = (call.req, &call.plan.query);
            let from_body = match &body {
                Body::Json(Value::Object(b)) => b.get("options").cloned(),
                _ => None,
            };
            let opts = match query_or_header(req, query, "options")? {
                Some(v) => Some(v.into_owned()),
                None => object_arg(from_body.as_ref())?.map(Cow::into_owned),
            };
            let target = (*op == Op::RecordChangeStream).then(|| path_id(call.matched));
            let guard = stream::Guard::of(
                &call.live.auth,
                &call.live.registry,
                call.model,
                call.caller,
            )
            .await?;
            let resp = stream::open(
                call.model.clone(),
                call.caller.clone(),
                guard,
                target,
                req,
                query,
                opts.as_ref(),
                call.live.streams.clone(),
                api.shutdown.clone(),
            )
            .await?;
            Outcome::Response(resp)
        }
        Action::Crud(op) => {
            let body = before_remote(call, body).await?;
            Outcome::Reply(run(call, *op, body).await?)
        }
        Action::Scope { filter, op } => {
            let body = before_remote(call, body).await?;
            run_scope(call, filter, *op, body).await?
        }
        Action::Relation { relation, op } => {
            let body = before_remote(call, body).await?;
            let route = relations::RelRoute::of(relation, *op, call.matched);
            relations::run(call, route, body).await?
        }
        Action::Nested {
            relation,
            inner,
            op,
        } => {
            let body = before_remote(call, body).await?;
            let route = relations::RelRoute::of(inner, *op, call.matched);
            relations::run_nested(call, relation, route, body).await?
        }
    };
    after_remote(call, out).await
}

/// A scope method, as juggler's scope runs it: the request's filter with the scope's merged
/// in (`mergeQuery`: both `where`s, the request's order else the scope's, the scope's
/// limit, skip and fields), a create with the scope's equalities set, a delete and a count
/// within the scope's `where`.
async fn run_scope(
    call: &Call<'_>,
    scope: &Map<String, Value>,
    op: endpoint::ScopeOp,
    body: Body,
) -> Result<Outcome, RestError> {
    use endpoint::ScopeOp;
    let (model, req, caller) = (&**call.model, call.req, call.caller);
    let query = &call.plan.query;
    let def = model.definition();
    let scope_where = scope
        .get("where")
        .filter(|w| w.as_object().is_some_and(|o| !o.is_empty()));
    let both = |a: Option<&Value>, b: Option<&Value>| -> Option<Value> {
        let a = a.filter(|w| w.as_object().is_some_and(|o| !o.is_empty()));
        match (a, b) {
            (Some(a), Some(b)) => Some(serde_json::json!({"and": [a, b]})),
            (Some(w), None) | (None, Some(w)) => Some(w.clone()),
            (None, None) => None,
        }
    };
    Ok(match op {
        ScopeOp::List => {
            let mut f = query_or_header(req, query, "filter")?
                .and_then(|v| v.as_object().cloned())
                .unwrap_or_default();
            if let Some(w) = both(f.get("where"), scope_where) {
                f.insert("where".into(), w);
            }
            if !f.get("order").is_some_and(oxbow_core::js::truthy) {
                if let Some(o) = scope.get("order") {
                    f.insert("order".into(), o.clone());
                }
            }
            for k in ["limit", "skip", "offset", "fields"] {
                if let Some(v) = scope.get(k) {
                    f.insert(k.into(), v.clone());
                }
            }
            match (f.get("include").cloned(), scope.get("include")) {
                (None, Some(i)) => {
                    f.insert("include".into(), i.clone());
                }
                // juggler nests the request's include under the scope's (`nestedInclude`).
                (Some(mine), Some(Value::String(s))) => {
                    let mut nested = Map::new();
                    nested.insert(s.clone(), mine);
                    f.insert("include".into(), Value::Object(nested));
                }
                _ => {}
            }
            let filter = model.parse_filter(&Value::Object(f))?;
            let rows = model.find(&filter, caller).await?;
            Outcome::Reply(match &filter.include {
                Some(inc) => texts_reply(
                    &oxbow_core::relation::render(
                        &call.live.registry,
                        model,
                        &rows,
                        filter.fields.as_deref(),
                        Some(inc),
                        caller,
                    )
                    .await?,
                ),
                None => rows_reply(def, &rows, filter.fields.as_deref())?,
            })
        }
        ScopeOp::Create => {
            // The scope's `where` equalities become the new record's values.
            let fixed: Vec<(String, Value)> = scope_where
                .and_then(Value::as_object)
                .map(|w| {
                    w.iter()
                        .filter(|(k, v)| {
                            !matches!(k.as_str(), "and" | "or" | "nor")
                                && !v.as_object().is_some_and(|o| {
                                    o.keys().any(|op| oxbow_core::filter::is_operator(op))
                                })
                        })
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                })
                .unwrap_or_default();
            let set = |mut r: Record| {
                for (k, v) in &fixed {
                    r.insert(k.clone(), v.clone());
                }
                r
            };
            Outcome::Reply(match data_arg(body, true)? {
                DataArg::One(r) => written_reply(def, &*model.create(set(r), caller).await?)?,
                DataArg::Many(items) => {
                    let items = items.into_iter().map(set).collect();
                    rows_reply(def, &model.create_many(items, caller).await?, None)?
                }
            })
        }
        ScopeOp::DeleteAll => {
            let w = match scope_where {
                Some(w) => model.parse_where(w)?,
                None => None,
            };
            model.delete_all(w.as_ref(), caller).await?;
            relations::no_content()
        }
        ScopeOp::Count => {
            let w = query_or_header(req, query, "where")?;
            let w = match both(scope_where, w.as_deref()) {
                Some(w) => model.parse_where(&w)?,
                None => None,
            };
            Outcome::Reply(reply(
                &serde_json::json!({ "count": model.count(w.as_ref(), caller).await? }),
            )?)
        }
    })
}

/// Whether the caller may call the endpoint (`remotes.authorization` of `enableAuth`):
/// checked before any hook or the method, against the id the call is about (the path's
/// `id`, else the body's, else the query's, as LoopBack takes it). A denial is 401 without
/// a token, else the model's (or app's) `aclErrorStatus`.
async fn authorize(call: &Call<'_>, body: &Body) -> Result<(), RestError> {
    let auth = &call.live.auth;
    if !auth.enabled {
        return Ok(());
    }
    let ep = call.endpoint();
    let model_id = match call.matched.param("id") {
        Some(raw) => Some(Value::String(decode(raw))),
        None => match body {
            Body::Json(Value::Object(b)) => b.get("id").cloned(),
            Body::Form(b) => b.get("id").cloned(),
            _ => None,
        }
        .or_else(|| call.plan.query.get("id").cloned()),
    };
    let check = oxbow_auth::Check {
        registry: &call.live.registry,
        model: call.model,
        rules: &ep.acl,
        access_scopes: None,
        model_id,
        caller: call.caller,
    };
    if auth.acls.allows(&check).await? {
        return Ok(());
    }
    let status = match call.caller.token() {
        None => 401,
        Some(_) => call
            .model
            .definition()
            .auth
            .acl_error_status
            .or(auth.acl_error_status)
            .unwrap_or(401),
    };
    Err(match status {
        403 => ErrorCode::AccessDenied.err(),
        404 => {
            let shown = check
                .model_id
                .as_ref()
                .map_or_else(|| "undefined".to_owned(), oxbow_core::js::to_js_string);
            ErrorCode::AclNotFound.with(&[&call.model.name(), &shown])
        }
        _ => ErrorCode::AuthorizationRequired.err(),
    })
}

/// The arguments remote hooks see for a built-in method: `id` (and a relation's `fk`),
/// `data`, `filter`, `where`; built only when some hook may look at them.
fn builtin_args(call: &Call<'_>, body: &Body) -> Map<String, Value> {
    let (live, matched, query) = (call.live, call.matched, &call.plan.query);
    let mut args = Map::new();
    if !live.remotes.has_hooks() {
        return args;
    }
    for (name, raw) in matched.route.params(&matched.values) {
        args.insert(name.into(), routes::sloppy_any(&decode(raw)));
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
async fn before_remote(call: &Call<'_>, body: Body) -> Result<Body, RestError> {
    let (live, caller, req) = (call.live, call.caller, call.req);
    let (model, method) = (call.model.name(), call.endpoint().name.as_str());
    if live.remotes.before.is_empty() {
        return Ok(body);
    }
    let args = builtin_args(call, &body);
    let before = args.get("data").cloned();
    let mut ctx = remote::RemoteContext {
        req,
        caller,
        model,
        method,
        args,
        result: None,
    };
    live.remotes.run_before(&mut ctx).await?;
    let after = ctx.args.remove("data");
    Ok(if after != before {
        after.map_or(Body::None, Body::Json)
    } else {
        body
    })
}

/// Runs the `afterRemote` hooks that match: on a JSON result they may replace it; on a
/// stream they see no result and may still refuse it.
async fn after_remote(call: &Call<'_>, out: Outcome) -> Result<Outcome, RestError> {
    let (live, caller, req) = (call.live, call.caller, call.req);
    let (model, method) = (call.model.name(), call.endpoint().name.as_str());
    if !live.remotes.has_after(model, method) {
        return Ok(out);
    }
    let Outcome::Reply(reply) = out else {
        let mut ctx = remote::RemoteContext {
            req,
            caller,
            model,
            method,
            args: Map::new(),
            result: None,
        };
        live.remotes.run_after(&mut ctx).await?;
        return Ok(out);
    };
    let result: Value = serde_json::from_slice(&reply.json).unwrap_or(Value::Null);
    let mut ctx = remote::RemoteContext {
        req,
        caller,
        model,
        method,
        args: Map::new(),
        result: Some(result),
    };
    live.remotes.run_after(&mut ctx).await?;
    let json = serde_json::to_vec(&ctx.result.unwrap_or(Value::Null))
        .map_err(|e| ErrorCode::Internal.with(&[&e]))?;
    Ok(Outcome::Reply(Reply {
        status: reply.status,
        json,
    }))
}

/// A remote method declared in model JSON: arguments sourced and coerced as strong-remoting
/// does, the Rust implementation a plugin registered, the result shaped by `returns`.
async fn call_remote(
    call: &Call<'_>,
    m: &remote::RemoteMethod,
    body: Body,
) -> Result<Outcome, RestError> {
    let (live, caller, model, matched) = (call.live, call.caller, call.model, call.matched);
    let (req, plan) = (call.req, call.plan);
    let Some(handler) = live
        .remotes
        .methods
        .get(&(model.name().to_owned(), m.name.clone()))
        .cloned()
    else {
        return Err(ErrorCode::NotImplemented.with(&[&model.name(), &m.name]));
    };
    let params: Map<String, Value> = matched
        .route
        .params(&matched.values)
        .map(|(k, v)| (k.to_owned(), routes::sloppy_any(&decode(v))))
        .collect();
    let instance = if m.is_static {
        None
    } else {
        let id = params.get("id").cloned().unwrap_or(Value::Null);
        match model.find_by_id(&id, caller).await? {
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
                    // body-parser leaves `{}` when there is no body.
                    Body::None => Some(Value::Object(Map::new())),
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
            return Err(ErrorCode::RequiredArgument.with(&[&a.arg]));
        }
        if let Some(v) = value {
            args.insert(a.arg.clone(), v);
        }
    }
    if !live.remotes.before.is_empty() {
        let mut ctx = remote::RemoteContext {
            req,
            caller,
            model: model.name(),
            method: &m.name,
            args,
            result: None,
        };
        live.remotes.run_before(&mut ctx).await?;
        args = ctx.args;
    }
    let result = handler(remote::RemoteCall {
        req: req.clone(),
        caller: caller.clone(),
        model: model.clone(),
        args,
        instance,
    })
    .await?;
    // No `returns`: strong-remoting has no result to send, and answers 204 (unless the
    // method declares another status), still typed as JSON.
    if m.returns.is_empty() && matches!(m.status, 200 | 204) {
        let resp = HttpResponse::NoContent()
            .insert_header((CONTENT_TYPE, JSON))
            .finish();
        return after_remote(call, Outcome::Response(resp)).await;
    }
    let shaped = m.shape(result);
    let json = serde_json::to_vec(&shaped).map_err(|e| ErrorCode::Internal.with(&[&e]))?;
    let out = Outcome::Reply(Reply {
        status: StatusCode::from_u16(m.status).unwrap_or(StatusCode::OK),
        json,
    });
    after_remote(call, out).await
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
    live: &Generation,
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
        live.json_limit
    } else {
        live.form_limit
    };
    let too_large = || ErrorCode::PayloadTooLarge.err();
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
        let chunk: Bytes = chunk.map_err(|e| ErrorCode::BodyUnreadable.with(&[&e]))?;
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
        Err(e) => Err(ErrorCode::BadJson.with(&[&e.line(), &e.column(), &e])),
    }
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
                    _ => Err(ErrorCode::ObjectNotParsable.err()),
                }
            } else {
                Err(ErrorCode::NotAnObject.err())
            }
        }
        Some(v @ Value::Object(_)) => Ok(Some(Cow::Borrowed(v))),
        Some(_) => Err(ErrorCode::NotAnObject.err()),
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

/// The `where` argument of count and destroyAll (query, else header), parsed for `model`.
fn where_arg(
    req: &HttpRequest,
    model: &Model,
    query: &Map<String, Value>,
) -> Result<Option<oxbow_core::Where>, RestError> {
    match query_or_header(req, query, "where")? {
        Some(w) => Ok(model.parse_where(&w)?),
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
    let not_object = || ErrorCode::NotAnObject.err();
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
                        return Err(ErrorCode::ArrayItemNotObject.err());
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

fn path_id(matched: &endpoint::Matched<'_, '_>) -> Value {
    routes::sloppy_any(&decode(matched.param("id").unwrap_or("")))
}

/// The `:id` of a CRUD route: strong-remoting reads `null` as no value and refuses it.
fn required_id(matched: &endpoint::Matched<'_, '_>) -> Result<Value, RestError> {
    match path_id(matched) {
        Value::Null => Err(ErrorCode::RequiredArgument.with(&[&"id"])),
        id => Ok(id),
    }
}

fn not_found_by_id(model: &Model, id: &Value) -> RestError {
    let shown = match id {
        Value::String(s) => s.clone(),
        other => oxbow_core::js::to_js_string(other),
    };
    ErrorCode::UnknownId.with(&[&model.name(), &shown])
}

async fn run(call: &Call<'_>, op: Op, body: Body) -> Result<Reply, RestError> {
    let (registry, model, route) = (&*call.live.registry, &**call.model, call.matched);
    let (req, plan, caller) = (call.req, call.plan, call.caller);
    let query = &plan.query;
    let def = model.definition();
    let one = |data: DataArg| match data {
        DataArg::One(r) => Ok(r),
        DataArg::Many(_) => Err(ErrorCode::NotAnObject.err()),
    };
    Ok(match op {
        Op::Find => {
            let filter = filter_arg(req, model, plan)?;
            let rows = model.find(&filter, caller).await?;
            match &filter.include {
                Some(inc) => {
                    let objs = oxbow_core::relation::render(
                        registry,
                        model,
                        &rows,
                        filter.fields.as_deref(),
                        Some(inc),
                        caller,
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
            match model.find_one(&filter, caller).await? {
                Some(r) => one_reply(registry, model, r, &filter, caller).await?,
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
            match model.find_by_id(&id, caller).await? {
                Some(r) => one_reply(registry, model, r, &filter, caller).await?,
                None => return Err(not_found_by_id(model, &id)),
            }
        }
        Op::Exists => {
            let exists = model.exists(&required_id(route)?, caller).await?;
            // LoopBack's after hook: only GET answers `{"exists": false}`; HEAD (on either
            // route) is a 404 without a body.
            if !exists && req.method() != Method::GET {
                return Err(ErrorCode::NotFound.err());
            }
            reply(&serde_json::json!({ "exists": exists }))?
        }
        Op::Count => {
            let w = where_arg(req, model, query)?;
            let count = model.count(w.as_ref(), caller).await?;
            reply(&serde_json::json!({ "count": count }))?
        }
        Op::Create => match data_arg(body, true)? {
            DataArg::One(data) => {
                let r = model.create(data, caller).await?;
                written_reply(def, &r)?
            }
            DataArg::Many(items) => {
                let rows = model.create_many(items, caller).await?;
                rows_reply(def, &rows, None)?
            }
        },
        Op::PatchOrCreate => {
            let r = model
                .patch_or_create(one(data_arg(body, false)?)?, caller)
                .await?;
            written_reply(def, &r)?
        }
        Op::ReplaceOrCreate => {
            let r = model
                .replace_or_create(one(data_arg(body, false)?)?, caller)
                .await?;
            written_reply(def, &r)?
        }
        Op::UpsertWithWhere => {
            let w = query_or_header(req, query, "where")?;
            let r = model
                .upsert_with_where(w.as_deref(), one(data_arg(body, false)?)?, caller)
                .await?;
            written_reply(def, &r)?
        }
        Op::UpdateAll => {
            let w = query_or_header(req, query, "where")?;
            let count = model
                .update_all(w.as_deref(), one(data_arg(body, false)?)?, caller)
                .await?;
            reply(&serde_json::json!({ "count": count }))?
        }
        Op::ReplaceById => {
            let r = model
                .replace_by_id(&required_id(route)?, one(data_arg(body, false)?)?, caller)
                .await?;
            written_reply(def, &r)?
        }
        Op::PatchAttributes => {
            let r = model
                .patch_by_id(&required_id(route)?, one(data_arg(body, false)?)?, caller)
                .await?;
            written_reply(def, &r)?
        }
        Op::DestroyAll => {
            let w = where_arg(req, model, query)?;
            let count = model.delete_all(w.as_ref(), caller).await?;
            reply(&serde_json::json!({ "count": count }))?
        }
        // Answered by `invoke` (a streaming response).
        Op::ChangeStream | Op::RecordChangeStream => {
            return Err(ErrorCode::Internal.with(&[&"change stream routed as a value"]));
        }
        Op::DeleteById => {
            let count = model.delete_by_id(&required_id(route)?, caller).await?;
            reply(&serde_json::json!({ "count": count }))?
        }
        // A ticket stands for a token: an anonymous caller has none to give.
        Op::ChangeStreamTicket => {
            let Some(token) = caller.token() else {
                return Err(ErrorCode::AuthorizationRequired.err());
            };
            let ticket = call.live.auth.issue_ticket(token).await?;
            reply(&serde_json::json!({ "ticket": ticket, "ttl": oxbow_auth::TICKET_TTL }))?
        }
    })
}
