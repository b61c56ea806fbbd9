//! oxbow-rest: the REST API LoopBack 3 generates for every public PersistedModel, on actix-web.
//!
//! One handler serves the whole REST root: it finds the model by its URL segment in the
//! registry, matches the rest of the path against LoopBack's route table ([`routes`]), reads
//! the arguments as strong-remoting does (`filter`/`where` as JSON or bracket syntax, body as
//! JSON or urlencoded form), calls the model layer and writes LoopBack's JSON.
//!
//! **Architecture invariant:** no handler is generated per model or per route; routes are data
//! (the table in `routes.rs`) so that OpenAPI and ACLs can read the same table later.

pub mod error;
pub mod qs;
pub mod routes;

use std::sync::Arc;

use actix_web::http::header::{self, CONTENT_TYPE, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use serde::Serialize;
use serde_json::{Map, Value};

use oxbow_core::{Model, Record, Registry};

pub use error::RestError;
use routes::{Op, Route};

/// What the REST handler needs: the registry and the body limits.
#[derive(Debug)]
pub struct RestApi {
    pub registry: Arc<Registry>,
    /// `restApiRoot` without a trailing slash (`/api`).
    pub root: String,
    pub json_limit: usize,
    pub form_limit: usize,
}

const JSON: &str = "application/json; charset=utf-8";

fn json_response<T: Serialize>(status: StatusCode, body: &T, head: bool) -> HttpResponse {
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            let mut r = HttpResponse::build(status);
            r.insert_header((CONTENT_TYPE, HeaderValue::from_static(JSON)));
            if head {
                r.insert_header((header::CONTENT_LENGTH, bytes.len()));
                r.finish()
            } else {
                r.body(bytes)
            }
        }
        Err(e) => RestError::new(500, e.to_string()).response(head),
    }
}

/// `loopback#urlNotFound`: `Cannot GET /nope`.
pub async fn url_not_found(req: HttpRequest) -> HttpResponse {
    let url = req.uri().path_and_query().map_or("/", |p| p.as_str());
    RestError::new(404, format!("Cannot {} {url}", req.method())).response(req.method() == Method::HEAD)
}

/// The handler of everything under the REST root.
pub async fn handle(req: HttpRequest, payload: web::Payload, api: web::Data<RestApi>) -> HttpResponse {
    let head = req.method() == Method::HEAD;
    match dispatch(&req, payload, &api).await {
        Ok(resp) => resp,
        Err(e) => e.response(head),
    }
}

fn decode(seg: &str) -> String {
    percent_encoding::percent_decode_str(seg).decode_utf8_lossy().into_owned()
}

async fn dispatch(req: &HttpRequest, payload: web::Payload, api: &RestApi) -> Result<HttpResponse, RestError> {
    let path = req.path();
    let rel = path.strip_prefix(api.root.as_str()).unwrap_or(path);
    let query = req.query_string();
    let with_query = |p: &str| if query.is_empty() { p.to_owned() } else { format!("{p}?{query}") };
    let mut segs = rel.split('/').filter(|s| !s.is_empty());
    let Some(model_seg) = segs.next() else {
        return Err(RestError::new(404, format!("There is no method to handle {} {}", req.method(), with_query(if rel.is_empty() { "/" } else { rel }))));
    };
    let model_seg = decode(model_seg);
    let Some(model) = api.registry.by_path(&model_seg).filter(|m| m.definition().is_persisted()) else {
        return Err(RestError::new(404, format!("There is no method to handle {} {}", req.method(), with_query(rel))));
    };
    let rest: Vec<String> = segs.map(decode).collect();
    let Some(route) = routes::match_route(req.method(), &rest) else {
        let sub = rel.splitn(3, '/').nth(2).map_or_else(|| "/".to_owned(), |s| format!("/{s}"));
        return Err(RestError::new(
            404,
            format!("Shared class \"{}\" has no method handling {} {}", model.name(), req.method(), with_query(&sub)),
        ));
    };
    check_accept(req)?;
    let head = req.method() == Method::HEAD;
    let query = qs::parse(req.query_string());
    let body = if route.op.takes_body() { read_body(req, payload, api).await? } else { Body::None };
    run(model, &route, req, &query, body, head).await
}

/// strong-remoting answers 406 when the client accepts none of the JSON types.
fn check_accept(req: &HttpRequest) -> Result<(), RestError> {
    let Some(accept) = req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()) else { return Ok(()) };
    if accept.trim().is_empty() {
        return Ok(());
    }
    const OK: &[&str] = &["application/json", "application/javascript", "text/javascript", "*/*", "application/*", "text/*"];
    let acceptable = accept.split(',').any(|part| {
        let mut it = part.split(';');
        let ty = it.next().unwrap_or("").trim().to_ascii_lowercase();
        let q_zero = it.any(|p| {
            let p = p.trim();
            p.strip_prefix("q=").is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q <= 0.0))
        });
        !q_zero && (OK.contains(&ty.as_str()) || ty.ends_with("+json"))
    });
    if acceptable {
        return Ok(());
    }
    Err(RestError::new(406, "Not Acceptable"))
}

/// The request body as strong-remoting sees it.
enum Body {
    None,
    Json(Value),
    Form(Map<String, Value>),
}

async fn read_body(req: &HttpRequest, mut payload: web::Payload, api: &RestApi) -> Result<Body, RestError> {
    let ctype = req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    let mime = ctype.split(';').next().unwrap_or("").trim().to_owned();
    let is_json = mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"));
    let is_form = mime == "application/x-www-form-urlencoded";
    if !is_json && !is_form {
        return Ok(Body::None);
    }
    let limit = if is_json { api.json_limit } else { api.form_limit };
    let too_large = || RestError::named(413, "PayloadTooLargeError", "request entity too large");
    if let Some(len) = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok()) {
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
    if buf.iter().all(u8::is_ascii_whitespace) {
        return Ok(Body::Json(Value::Object(Map::new())));
    }
    match serde_json::from_slice::<Value>(&buf) {
        Ok(v) => Ok(Body::Json(v)),
        Err(e) => Err(RestError::named(400, "SyntaxError", json_syntax_message(&e))),
    }
}

fn json_syntax_message(e: &serde_json::Error) -> String {
    format!("Unexpected token in JSON at line {} column {}: {e}", e.line(), e.column())
}

/// strong-remoting's coercion of an `object` argument given in the query or a header:
/// JSON text, bracket syntax, or nothing.
fn object_arg(v: Option<&Value>) -> Result<Option<Value>, RestError> {
    match v {
        None => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) if s == "null" => Ok(None),
        Some(Value::String(s)) => {
            let t = s.trim();
            if t.starts_with('{') && t.ends_with('}') {
                match serde_json::from_str::<Value>(t) {
                    Ok(v @ Value::Object(_)) => Ok(Some(v)),
                    _ => Err(RestError::new(400, "Cannot parse JSON-encoded object value.")),
                }
            } else {
                Err(RestError::new(400, "Value is not an object."))
            }
        }
        Some(v @ Value::Object(_)) => Ok(Some(v.clone())),
        Some(_) => Err(RestError::new(400, "Value is not an object.")),
    }
}

/// An argument without an http source: query first, then a header of the same name.
fn query_or_header(req: &HttpRequest, query: &Map<String, Value>, name: &str) -> Result<Option<Value>, RestError> {
    if let Some(v) = query.get(name) {
        return object_arg(Some(v));
    }
    match req.headers().get(name).and_then(|v| v.to_str().ok()) {
        Some(h) => object_arg(Some(&Value::String(h.to_owned()))),
        None => Ok(None),
    }
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
                    Value::Null => out.push(Record::new()),
                    _ => return Err(not_object()),
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
    routes::sloppy_any(route.id.as_deref().unwrap_or(""))
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
        code: Some("MODEL_NOT_FOUND"),
        details: None,
    }
}

async fn run(
    model: &Model,
    route: &Route,
    req: &HttpRequest,
    query: &Map<String, Value>,
    body: Body,
    head: bool,
) -> Result<HttpResponse, RestError> {
    let ok = StatusCode::OK;
    let def = model.definition();
    let one = |data: DataArg| match data {
        DataArg::One(r) => Ok(r),
        DataArg::Many(_) => Err(RestError::new(400, "Value is not an object.")),
    };
    Ok(match route.op {
        Op::Find => {
            let filter = model.parse_filter(&query_or_header(req, query, "filter")?.unwrap_or(Value::Null))?;
            let rows = model.find(&filter).await?;
            let fields = filter.fields.as_deref();
            let views: Vec<_> = rows.iter().map(|r| oxbow_core::RecordView { def, record: r, fields }).collect();
            json_response(ok, &views, head)
        }
        Op::FindOne => {
            let filter = model.parse_filter(&query_or_header(req, query, "filter")?.unwrap_or(Value::Null))?;
            match model.find_one(&filter).await? {
                Some(r) => json_response(ok, &oxbow_core::RecordView { def, record: &r, fields: filter.fields.as_deref() }, head),
                None => return Err(not_found_by_id(model, &Value::String("undefined".into()))),
            }
        }
        Op::FindById => {
            let id = path_id(route);
            let filter = model.parse_filter(&query_or_header(req, query, "filter")?.unwrap_or(Value::Null))?;
            match model.find_by_id(&id).await? {
                Some(r) => json_response(ok, &oxbow_core::RecordView { def, record: &r, fields: filter.fields.as_deref() }, head),
                None => return Err(not_found_by_id(model, &id)),
            }
        }
        Op::Exists => {
            let exists = model.exists(&path_id(route)).await?;
            json_response(ok, &serde_json::json!({ "exists": exists }), head)
        }
        Op::ExistsHead => {
            if model.exists(&path_id(route)).await? {
                json_response(ok, &serde_json::json!({ "exists": true }), true)
            } else {
                HttpResponse::NotFound().insert_header((CONTENT_TYPE, HeaderValue::from_static(JSON))).finish()
            }
        }
        Op::Count => {
            let w = query_or_header(req, query, "where")?;
            let w = match &w {
                Some(w) => model.parse_where(w)?,
                None => None,
            };
            let count = model.count(w.as_ref()).await?;
            json_response(ok, &serde_json::json!({ "count": count }), head)
        }
        Op::Create => match data_arg(body, true)? {
            DataArg::One(data) => {
                let r = model.create(data).await?;
                json_response(ok, &model.view(&r), head)
            }
            DataArg::Many(items) => {
                let rows = model.create_many(items).await?;
                let views: Vec<_> = rows.iter().map(|r| model.view(r)).collect();
                json_response(ok, &views, head)
            }
        },
        Op::PatchOrCreate => {
            let r = model.patch_or_create(one(data_arg(body, false)?)?).await?;
            json_response(ok, &model.view(&r), head)
        }
        Op::ReplaceOrCreate => {
            let r = model.replace_or_create(one(data_arg(body, false)?)?).await?;
            json_response(ok, &model.view(&r), head)
        }
        Op::UpsertWithWhere => {
            let w = query_or_header(req, query, "where")?;
            let w = match &w {
                Some(w) => model.parse_where(w)?,
                None => None,
            };
            let r = model.upsert_with_where(w.as_ref(), one(data_arg(body, false)?)?).await?;
            json_response(ok, &model.view(&r), head)
        }
        Op::UpdateAll => {
            let w = query_or_header(req, query, "where")?;
            let count = model.update_all(w.as_ref(), one(data_arg(body, false)?)?).await?;
            json_response(ok, &serde_json::json!({ "count": count }), head)
        }
        Op::ReplaceById => {
            let r = model.replace_by_id(&path_id(route), one(data_arg(body, false)?)?).await?;
            json_response(ok, &model.view(&r), head)
        }
        Op::PatchAttributes => {
            let r = model.patch_by_id(&path_id(route), one(data_arg(body, false)?)?).await?;
            json_response(ok, &model.view(&r), head)
        }
        Op::DeleteById => {
            let count = model.delete_by_id(&path_id(route)).await?;
            json_response(ok, &serde_json::json!({ "count": count }), head)
        }
    })
}
