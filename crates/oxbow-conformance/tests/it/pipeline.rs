//! middleware.json kinds LoopBack never had, and middleware from plugins: a real app booted
//! with its pipeline, requests through actix's test server.

use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Service, ServiceResponse};
use actix_web::{App, HttpRequest, HttpResponse, test, web};
use futures_util::future::LocalBoxFuture;
use serde_json::{Value, json};

use oxbow::{BootContext, BootFuture, BootPlugin, Middleware, RestError};

/// Answers 403 when the request carries `X-Deny`, and tags every response it passed on.
struct Audit {
    tag: String,
}

impl Middleware for Audit {
    fn handle<'a>(
        &'a self,
        req: &'a HttpRequest,
    ) -> LocalBoxFuture<'a, Result<Option<HttpResponse>, RestError>> {
        Box::pin(async move {
            if req.headers().contains_key("x-deny") {
                return Err(RestError::new(403, "audit says no"));
            }
            Ok(None)
        })
    }

    fn respond(&self, _req: &HttpRequest, res: &mut HttpResponse) {
        res.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static("x-audit"),
            actix_web::http::header::HeaderValue::from_str(&self.tag).unwrap(),
        );
    }
}

/// Answers `GET /teapot` (it sits after the REST API, in `final`).
struct Teapot;

impl Middleware for Teapot {
    fn handle<'a>(
        &'a self,
        req: &'a HttpRequest,
    ) -> LocalBoxFuture<'a, Result<Option<HttpResponse>, RestError>> {
        Box::pin(async move {
            Ok((req.path() == "/teapot")
                .then(|| HttpResponse::build(418.try_into().unwrap()).body("short and stout")))
        })
    }
}

struct Registers;

impl BootPlugin for Registers {
    fn name(&self) -> &str {
        "registers"
    }

    fn boot<'a>(&'a self, app: &'a mut BootContext) -> BootFuture<'a> {
        Box::pin(async move {
            app.middleware("./middleware/audit", |params: &Value| {
                let tag = params["tag"].as_str().unwrap_or("none").to_owned();
                Ok(Arc::new(Audit { tag }) as Arc<dyn Middleware>)
            });
            app.middleware("./middleware/teapot", |_: &Value| {
                Ok(Arc::new(Teapot) as Arc<dyn Middleware>)
            });
            app.configure(|cfg| {
                cfg.route(
                    "/slow",
                    web::get().to(|| async {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        HttpResponse::Ok().body("late")
                    }),
                );
            });
            Ok(())
        })
    }
}

/// The shop app with `edit` applied to its middleware.json.
fn shop_with(tag: &str, edit: impl FnOnce(&mut Value)) -> std::path::PathBuf {
    let dir = oxbow_conformance::scratch_copy("examples/shop", tag).expect("scratch copy");
    let path = dir.join("server/middleware.json");
    let mut mw: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut mw);
    std::fs::write(&path, serde_json::to_string_pretty(&mw).unwrap()).unwrap();
    dir
}

async fn boot(
    dir: &std::path::Path,
) -> anyhow::Result<
    impl Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>,
> {
    let plan = oxbow_config::load(dir).map_err(|p| anyhow::anyhow!("{p}"))?;
    let plugins: Vec<Box<dyn BootPlugin>> = vec![Box::new(Registers)];
    let booted = oxbow::boot(plan, &plugins).await?;
    Ok(test::init_service(
        App::new()
            .wrap(booted.pipeline())
            .configure(booted.configure()),
    )
    .await)
}

fn header(resp: &ServiceResponse, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

#[actix_web::test]
async fn plugin_middleware_runs_where_middleware_json_puts_it() {
    let dir = shop_with("mw-custom", |mw| {
        mw["routes:before"] = json!({"./middleware/audit": {"params": {"tag": "t1"}}});
        mw["final"] = json!({
            "./middleware/teapot": {},
            "loopback#urlNotFound": {}
        });
    });
    let app = boot(&dir).await.expect("boot");
    let resp = test::call_service(
        &app,
        test::TestRequest::get().uri("/api/Customers").to_request(),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-audit").as_deref(), Some("t1"));
    // An error from a middleware is LoopBack's error body, with the headers of the entries
    // that ran before it.
    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/api/Customers")
            .insert_header(("X-Deny", "1"))
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), 403);
    assert_eq!(
        header(&resp, "x-frame-options").as_deref(),
        Some("SAMEORIGIN")
    );
    assert_eq!(header(&resp, "x-audit"), None);
    let body = test::read_body(resp).await;
    assert_eq!(
        body,
        r#"{"error":{"statusCode":403,"name":"Error","message":"audit says no"}}"#
    );
    // After the REST API: only what nobody answered reaches it.
    let resp = test::call_service(&app, test::TestRequest::get().uri("/teapot").to_request()).await;
    assert_eq!(resp.status(), 418);
    assert_eq!(test::read_body(resp).await, "short and stout");
    let resp = test::call_service(&app, test::TestRequest::get().uri("/nope").to_request()).await;
    assert_eq!(resp.status(), 404);
    assert_eq!(
        test::read_body(resp).await,
        r#"{"error":{"statusCode":404,"name":"Error","message":"Cannot GET /nope"}}"#
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[actix_web::test]
async fn an_unknown_middleware_name_fails_boot_listing_the_known_ones() {
    let dir = shop_with("mw-unknown", |mw| {
        mw["parse"] = json!({"./middleware/missing": {}});
    });
    let err = match boot(&dir).await {
        Ok(_) => panic!("boot must fail"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("/parse/.~1middleware~1missing"), "{err}");
    assert!(
        err.contains("no middleware is registered as `./middleware/missing`"),
        "{err}"
    );
    assert!(err.contains("Known names: compression, cors,"), "{err}");
    assert!(
        err.contains("./middleware/audit, ./middleware/teapot"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[actix_web::test]
async fn request_ids_rate_limits_and_timeouts() {
    let dir = shop_with("mw-extras", |mw| {
        let initial = mw["initial"].as_object_mut().unwrap();
        initial.insert("oxbow#requestId".into(), json!({}));
        initial.insert("oxbow#accessLog".into(), json!({}));
        initial.insert(
            "oxbow#rateLimit".into(),
            json!({"params": {"max": 3, "windowMs": 60000}, "paths": ["/api"]}),
        );
        initial.insert("oxbow#timeout".into(), json!({"params": {"ms": 50}}));
    });
    let app = boot(&dir).await.expect("boot");
    // Request ids: a fresh one, or the caller's.
    let resp = test::call_service(&app, test::TestRequest::get().uri("/nope").to_request()).await;
    let id = header(&resp, "x-request-id").expect("an id");
    assert_eq!(id.len(), 24, "{id}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/nope")
            .insert_header(("X-Request-Id", "from-the-proxy"))
            .to_request(),
    )
    .await;
    assert_eq!(
        header(&resp, "x-request-id").as_deref(),
        Some("from-the-proxy")
    );
    // Rate limit under /api only: three pass, the fourth is a 429.
    for left in ["2", "1", "0"] {
        let resp = test::call_service(
            &app,
            test::TestRequest::get()
                .uri("/api/Customers/count")
                .to_request(),
        )
        .await;
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "ratelimit-limit").as_deref(), Some("3"));
        assert_eq!(header(&resp, "ratelimit-remaining").as_deref(), Some(left));
    }
    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/api/Customers/count")
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), 429);
    let retry: u64 = header(&resp, "retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(
        test::read_body(resp).await,
        r#"{"error":{"statusCode":429,"name":"Error","message":"Too many requests, please try again later."}}"#
    );
    // Outside /api nothing is counted.
    let resp = test::call_service(&app, test::TestRequest::get().uri("/nope").to_request()).await;
    assert_eq!(resp.status(), 404);
    assert_eq!(header(&resp, "ratelimit-limit"), None);
    // Timeout: a handler slower than 50 ms gets a 503.
    let resp = match app
        .call(test::TestRequest::get().uri("/slow").to_request())
        .await
    {
        Ok(_) => panic!("the slow route must time out"),
        Err(e) => e.error_response(),
    };
    assert_eq!(resp.status(), 503);
    let body = actix_web::body::to_bytes(resp.into_body()).await.unwrap();
    assert_eq!(
        body,
        r#"{"error":{"statusCode":503,"message":"Service Unavailable"}}"#
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[actix_web::test]
async fn methods_and_per_path_budgets() {
    let dir = shop_with("mw-methods", |mw| {
        let initial = mw["initial"].as_object_mut().unwrap();
        // Only writes are limited, each path on its own budget of one.
        initial.insert(
            "oxbow#rateLimit".into(),
            json!({"params": {"max": 1, "perPath": true, "headers": false}, "methods": ["post", "PATCH"]}),
        );
        // Request ids only for GET under /api.
        initial.insert(
            "oxbow#requestId".into(),
            json!({"methods": ["GET"], "paths": "${restApiRoot}"}),
        );
    });
    let app = boot(&dir).await.expect("boot");
    let post = |path: &str, body: &str| {
        test::TestRequest::post()
            .uri(path)
            .insert_header(("Content-Type", "application/json"))
            .set_payload(body.to_owned())
            .to_request()
    };
    let resp = test::call_service(
        &app,
        post("/api/Customers", r#"{"name":"A","email":"a@x.io"}"#),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "ratelimit-limit"), None, "headers: false");
    let resp = test::call_service(
        &app,
        post("/api/Customers", r#"{"name":"B","email":"b@x.io"}"#),
    )
    .await;
    assert_eq!(resp.status(), 429);
    // Another path has its own budget; GETs are not counted.
    let resp = test::call_service(
        &app,
        post(
            "/api/Customers/1/replace",
            r#"{"name":"C","email":"c@x.io"}"#,
        ),
    )
    .await;
    assert_eq!(resp.status(), 200);
    for _ in 0..3 {
        let resp = test::call_service(
            &app,
            test::TestRequest::get()
                .uri("/api/Customers/1")
                .to_request(),
        )
        .await;
        assert_eq!(resp.status(), 200);
        assert!(header(&resp, "x-request-id").is_some());
    }
    let resp = test::call_service(&app, test::TestRequest::get().uri("/nope").to_request()).await;
    assert_eq!(
        header(&resp, "x-request-id"),
        None,
        "outside the entry's path"
    );
    let resp = test::call_service(
        &app,
        test::TestRequest::delete()
            .uri("/api/Customers/1")
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-request-id"), None, "not a GET");
    let _ = std::fs::remove_dir_all(&dir);
}

#[actix_web::test]
async fn an_optional_middleware_nobody_registered_is_skipped() {
    let dir = shop_with("mw-optional", |mw| {
        mw["parse"] = json!({"morgan": {"optional": true, "params": "dev"}});
    });
    let app = boot(&dir)
        .await
        .expect("an optional entry does not stop boot");
    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/api/Customers/count")
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let _ = std::fs::remove_dir_all(&dir);
}

#[actix_web::test]
async fn strong_error_handler_debug_and_root_property() {
    let dir = shop_with("mw-debug", |mw| {
        mw["final:after"] = json!({"strong-error-handler": {"params": {"debug": true, "log": false, "rootProperty": "failure"}}});
    });
    let app = boot(&dir).await.expect("boot");
    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/api/Customers/99")
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), 404);
    assert_eq!(
        test::read_body(resp).await,
        r#"{"failure":{"statusCode":404,"name":"Error","message":"Unknown \"Customer\" id \"99\".","code":"MODEL_NOT_FOUND","stack":"Error: Unknown \"Customer\" id \"99\"."}}"#
    );
    let _ = std::fs::remove_dir_all(&dir);
}
