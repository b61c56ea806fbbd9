//! Content negotiation as LoopBack does it: strong-remoting picks the success format from
//! `_format` or `Accept` (JSON, JSONP, XML, else 406), strong-error-handler picks the error
//! format (JSON, an HTML page, or an XML document).

use actix_web::HttpRequest;
use actix_web::http::header::ACCEPT;
use serde_json::{Map, Value};

/// One entry of an `Accept` header.
struct Accept {
    ty: String,
    sub: String,
    q: f32,
}

fn parse_accept(header: &str) -> Vec<Accept> {
    header
        .split(',')
        .filter_map(|part| {
            let mut it = part.split(';');
            let media = it.next()?.trim().to_ascii_lowercase();
            let (ty, sub) = media.split_once('/')?;
            let mut q = 1.0;
            for p in it {
                if let Some(v) = p.trim().strip_prefix("q=") {
                    q = v.trim().parse().unwrap_or(0.0);
                }
            }
            Some(Accept {
                ty: ty.trim().to_owned(),
                sub: sub.trim().to_owned(),
                q,
            })
        })
        .collect()
}

/// The `accepts` module's `types(available)`: the available type the client prefers most
/// (quality, then specificity, then the client's order, then ours); the first available one
/// when there is no `Accept` header; `None` when nothing is acceptable.
fn best<'a>(req: &HttpRequest, available: &[&'a str]) -> Option<&'a str> {
    let Some(header) = req.headers().get(ACCEPT).and_then(|v| v.to_str().ok()) else {
        return available.first().copied();
    };
    let accepts = parse_accept(header);
    if accepts.is_empty() {
        return available.first().copied();
    }
    let mut scored: Vec<(f32, u8, usize, usize, &str)> = Vec::new();
    for (ai, avail) in available.iter().enumerate() {
        let full = match *avail {
            "json" => "application/json",
            "xml" => "application/xml",
            "html" => "text/html",
            other => other,
        };
        let Some((pt, ps)) = full.split_once('/') else {
            continue;
        };
        let mut best: Option<(f32, u8, usize)> = None;
        for (i, a) in accepts.iter().enumerate() {
            let mut s = 0u8;
            if a.ty == pt {
                s |= 4;
            } else if a.ty != "*" {
                continue;
            }
            if a.sub == ps {
                s |= 2;
            } else if a.sub != "*" {
                continue;
            }
            if best
                .is_none_or(|(bq, bs, bi)| (s, a.q) > (bs, bq) || (s == bs && a.q == bq && i < bi))
            {
                best = Some((a.q, s, i));
            }
        }
        if let Some((q, s, i)) = best {
            if q > 0.0 {
                scored.push((q, s, i, ai, avail));
            }
        }
    }
    scored.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then(b.1.cmp(&a.1))
            .then(a.2.cmp(&b.2))
            .then(a.3.cmp(&b.3))
    });
    scored.first().map(|x| x.4)
}

/// Express's `req.accepts(type)`: true without an `Accept` header or when it admits `ty`.
pub fn accepts(req: &HttpRequest, ty: &'static str) -> bool {
    best(req, &[ty]).is_some()
}

/// How a successful result is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    Json,
    /// JSONP when a `callback` query parameter is present, JSON otherwise.
    Js,
    Xml(&'static str),
    NotAcceptable,
}

/// strong-remoting's response format (`remoting.rest.xml` is false in every app we serve).
pub fn success_format(req: &HttpRequest, query: &Map<String, Value>) -> Format {
    let chosen: Option<String> = match query.get("_format") {
        Some(Value::String(f)) => Some(f.to_ascii_lowercase()),
        Some(_) => Some("invalid".to_owned()),
        None => best(
            req,
            &[
                "application/json",
                "application/javascript",
                "text/javascript",
                "json",
                "*/*",
            ],
        )
        .map(str::to_owned),
    };
    match chosen.as_deref() {
        Some("*/*" | "application/json" | "json") => Format::Json,
        Some("application/javascript" | "text/javascript") => Format::Js,
        Some("application/xml") => Format::Xml("application/xml"),
        Some("text/xml" | "xml") => Format::Xml("text/xml"),
        _ => Format::NotAcceptable,
    }
}

/// strong-error-handler's error format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorFormat {
    Json,
    Html,
    Xml,
}

pub fn error_format(req: &HttpRequest, query: &Map<String, Value>) -> ErrorFormat {
    let from = |t: &str| match t {
        "text/html" | "html" => Some(ErrorFormat::Html),
        "text/xml" | "xml" | "application/xml" => Some(ErrorFormat::Xml),
        "application/json" | "json" => Some(ErrorFormat::Json),
        _ => None,
    };
    if let Some(Value::String(f)) = query.get("_format") {
        if let Some(fmt) = from(f.as_str()) {
            return fmt;
        }
    }
    best(
        req,
        &[
            "application/json",
            "json",
            "text/html",
            "html",
            "text/xml",
            "xml",
        ],
    )
    .and_then(from)
    .unwrap_or(ErrorFormat::Json)
}

fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn escape_xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// strong-error-handler's HTML page for an error body's inner object.
pub fn error_html(error: &Map<String, Value>) -> String {
    let name = error
        .get("name")
        .map(text)
        .unwrap_or_else(|| "Error".into());
    let status = error.get("statusCode").map(text).unwrap_or_default();
    let message = error.get("message").map(text).unwrap_or_default();
    let mut extra = String::new();
    for (k, v) in error {
        if matches!(k.as_str(), "statusCode" | "name" | "message") {
            continue;
        }
        extra.push_str(&format!(
            "\n            <div><b>{}</b>: {}</div>\n          ",
            escape_html(k),
            escape_html(&text(v))
        ));
    }
    format!(
        "<html>\n  <head>\n    <meta charset='utf-8'>\n    <title>{}</title>\n    <style>{}</style>\n  </head>\n  <body>\n    <div id=\"wrapper\">\n      <h1>{}</h1>\n      <h2><em>{}</em> {}</h2>\n      {}\n    </div>\n  </body>\n</html>\n",
        escape_html(&name),
        include_str!("error-page.css"),
        escape_html(&name),
        escape_html(&status),
        escape_html(&message),
        extra
    )
}

/// strong-error-handler's XML document for an error body's inner object.
pub fn error_xml(error: &Map<String, Value>) -> String {
    let mut out = String::from("<?xml version='1.0'?>\n<error>\n");
    for (k, v) in error {
        out.push_str(&format!("    <{k}>{}</{k}>\n", escape_xml(&text(v))));
    }
    if !error.contains_key("details")
        && error
            .get("statusCode")
            .and_then(Value::as_u64)
            .is_some_and(|s| s < 500)
    {
        out.push_str("    <details>undefined</details>\n");
    }
    out.push_str("</error>");
    out
}

/// strong-remoting's XML rendering of a result (xml2js style, root `response`).
pub fn result_xml(v: &Value) -> String {
    fn node(out: &mut String, name: &str, v: &Value, depth: usize) {
        let pad = "  ".repeat(depth);
        match v {
            Value::Object(m) => {
                out.push_str(&format!("{pad}<{name}>\n"));
                for (k, v) in m {
                    node(out, k, v, depth + 1);
                }
                out.push_str(&format!("{pad}</{name}>\n"));
            }
            Value::Array(items) => {
                for item in items {
                    node(out, name, item, depth);
                }
            }
            Value::Null => out.push_str(&format!("{pad}<{name}/>\n")),
            other => out.push_str(&format!(
                "{pad}<{name}>{}</{name}>\n",
                escape_xml(&text(other))
            )),
        }
    }
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    node(&mut out, "response", v, 0);
    out.truncate(out.trim_end().len());
    out
}

/// Express's `res.jsonp` callback sanitising.
pub fn jsonp_callback(query: &Map<String, Value>) -> Option<String> {
    let Value::String(cb) = query.get("callback")? else {
        return None;
    };
    let clean: String = cb
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '_' | '$' | '.' | '[' | ']'))
        .collect();
    (!clean.is_empty()).then_some(clean)
}
