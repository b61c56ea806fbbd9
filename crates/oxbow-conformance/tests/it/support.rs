//! What several test modules share: an app booted in process, and request paths encoded as a
//! client would send them.

use actix_web::dev::{Service, ServiceResponse};
use actix_web::{App, test};

/// The app in `dir` booted without plugins, as `oxbow serve` serves it (pipeline included).
pub async fn app(
    dir: &std::path::Path,
) -> impl Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error> {
    let plan = oxbow_config::load(dir).unwrap_or_else(|p| panic!("{p}"));
    let booted = oxbow::boot(plan, &[]).await.expect("boot");
    test::init_service(
        App::new()
            .wrap(booted.pipeline())
            .configure(booted.configure()),
    )
    .await
}

/// Percent-encodes what a URI may not carry raw (quotes, spaces, non-ASCII, …).
pub fn encode_path(path: &str) -> String {
    let mut out = String::new();
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"/?=&%[]{}:,.-_~!$'()*+;@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
