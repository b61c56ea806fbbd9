//! Remote methods declared in model JSON and implemented in Rust, and remote hooks
//! (beforeRemote / afterRemote with wildcard patterns) around built-in and custom methods.

use std::sync::{Arc, Mutex};

use actix_web::{App, test};
use serde_json::{Value, json};

use oxbow::{BootContext, BootFuture, BootPlugin};
use oxbow_rest::RestError;

struct Remotes {
    log: Arc<Mutex<Vec<String>>>,
}

impl BootPlugin for Remotes {
    fn name(&self) -> &str {
        "remotes"
    }

    fn boot<'a>(&'a self, app: &'a mut BootContext) -> BootFuture<'a> {
        Box::pin(async move {
            app.remote_method("Customer", "greet", |call| async move {
                let msg = call.args["msg"].as_str().unwrap_or_default().to_owned();
                Ok(Value::String(format!("Hello, {msg}!")))
            });
            app.remote_method("Customer", "prototype.summary", |call| async move {
                let row = call.instance.expect("an instance method gets its instance");
                let name = row.value_of("name").unwrap_or(Value::Null);
                Ok(json!({"who": name, "orders": 0}))
            });
            app.remote_method("Customer", "double", |call| async move {
                let n = call.args.get("n").and_then(Value::as_f64).unwrap_or(0.0);
                Ok(json!(n * 2.0))
            });
            let log = self.log.clone();
            app.before_remote(
                "Customer",
                "create",
                Arc::new(move |ctx| {
                    let log = log.clone();
                    Box::pin(async move {
                        if ctx.req.headers().contains_key("x-block") {
                            return Err(RestError::new(403, "blocked by a remote hook"));
                        }
                        if let Some(Value::Object(d)) = ctx.args.get_mut("data") {
                            d.insert("tier".into(), json!("gold"));
                        }
                        log.lock().unwrap().push(format!("before {}", ctx.method));
                        Ok(())
                    })
                }),
            );
            let log = self.log.clone();
            app.before_remote(
                "*",
                "prototype.*",
                Arc::new(move |ctx| {
                    let log = log.clone();
                    Box::pin(async move {
                        log.lock()
                            .unwrap()
                            .push(format!("before {}.{}", ctx.model, ctx.method));
                        Ok(())
                    })
                }),
            );
            app.after_remote(
                "*",
                "findById",
                Arc::new(|ctx| {
                    Box::pin(async move {
                        if let Some(Value::Object(r)) = ctx.result.as_mut() {
                            r.insert("seen".into(), json!(true));
                        }
                        Ok(())
                    })
                }),
            );
            Ok(())
        })
    }
}

#[actix_web::test]
async fn remote_methods_and_hooks() {
    let dir = oxbow_conformance::scratch_copy("examples/shop", "remote").unwrap();
    let path = dir.join("models/customer.json");
    let mut model: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    model["methods"] = json!({
        "greet": {
            "accepts": [{"arg": "msg", "type": "string", "required": true, "http": {"source": "query"}}],
            "returns": {"arg": "greeting", "type": "string"},
            "http": {"verb": "get", "path": "/greet"}
        },
        "prototype.summary": {
            "returns": {"arg": "summary", "type": "object", "root": true},
            "http": {"verb": "get", "path": "/summary"}
        },
        "double": {
            "accepts": [{"arg": "n", "type": "number"}],
            "returns": {"arg": "result", "type": "number"}
        },
        "unwritten": {"http": {"verb": "get"}}
    });
    std::fs::write(&path, serde_json::to_string_pretty(&model).unwrap()).unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let plugins: Vec<Box<dyn BootPlugin>> = vec![Box::new(Remotes { log: log.clone() })];
    let booted = oxbow::boot(oxbow_config::load(&dir).unwrap(), &plugins)
        .await
        .unwrap();
    let app = test::init_service(
        App::new()
            .wrap(booted.pipeline())
            .configure(booted.configure()),
    )
    .await;
    let call = |method: &str, uri: &str, headers: &[(&str, &str)], body: Option<&str>| {
        let mut r = test::TestRequest::default()
            .method(method.parse().unwrap())
            .uri(uri);
        for (k, v) in headers {
            r = r.insert_header((*k, *v));
        }
        if let Some(b) = body {
            r = r
                .insert_header(("Content-Type", "application/json"))
                .set_payload(b.to_owned());
        }
        r.to_request()
    };
    let body = |resp| async { String::from_utf8(test::read_body(resp).await.to_vec()).unwrap() };

    // A literal custom route wins over `/:id`; query args are coerced; `returns` shapes.
    let resp =
        test::call_service(&app, call("GET", "/api/Customers/greet?msg=Ann", &[], None)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(body(resp).await, r#"{"greeting":"Hello, Ann!"}"#);
    let resp = test::call_service(&app, call("GET", "/api/Customers/greet", &[], None)).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(
        body(resp).await,
        r#"{"error":{"statusCode":400,"name":"Error","message":"msg is a required argument"}}"#
    );
    // Default verb (all) and path (/double); the argument from the JSON body.
    let resp = test::call_service(
        &app,
        call("POST", "/api/Customers/double", &[], Some(r#"{"n":21}"#)),
    )
    .await;
    assert_eq!(body(resp).await, r#"{"result":42}"#);
    let resp = test::call_service(&app, call("POST", "/api/Customers/double?n=x", &[], None)).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(
        body(resp).await,
        r#"{"error":{"statusCode":400,"name":"Error","message":"Value is not a number."}}"#
    );
    // An `all` route sorts after every verb's routes, as strong-remoting sorts them: GET
    // reaches `GET /:id` first (checked against LoopBack 3).
    let resp = test::call_service(&app, call("GET", "/api/Customers/double?n=x", &[], None)).await;
    assert_eq!(
        body(resp).await,
        r#"{"error":{"statusCode":404,"name":"Error","message":"Unknown \"Customer\" id \"double\".","code":"MODEL_NOT_FOUND"}}"#
    );
    // Declared but not implemented.
    let resp = test::call_service(&app, call("GET", "/api/Customers/unwritten", &[], None)).await;
    assert_eq!(resp.status(), 501);

    // beforeRemote on create: rejects, or rewrites the data.
    let resp = test::call_service(
        &app,
        call(
            "POST",
            "/api/Customers",
            &[("X-Block", "1")],
            Some(r#"{"name":"Ann","email":"a@x.io"}"#),
        ),
    )
    .await;
    assert_eq!(resp.status(), 403);
    let resp = test::call_service(
        &app,
        call(
            "POST",
            "/api/Customers",
            &[],
            Some(r#"{"name":"Ann","email":"a@x.io"}"#),
        ),
    )
    .await;
    assert_eq!(
        body(resp).await,
        r#"{"name":"Ann","email":"a@x.io","vip":false,"tier":"gold","id":1}"#
    );
    // An instance method finds its instance; prototype.* hooks see it and relation methods.
    let resp = test::call_service(&app, call("GET", "/api/Customers/1/summary", &[], None)).await;
    assert_eq!(body(resp).await, r#"{"who":"Ann","orders":0}"#);
    let resp = test::call_service(&app, call("GET", "/api/Customers/9/summary", &[], None)).await;
    assert_eq!(resp.status(), 404);
    let resp = test::call_service(&app, call("GET", "/api/Customers/1/orders", &[], None)).await;
    assert_eq!(body(resp).await, "[]");
    // afterRemote replaces the result.
    let resp = test::call_service(&app, call("GET", "/api/Customers/1", &[], None)).await;
    assert_eq!(
        body(resp).await,
        r#"{"name":"Ann","email":"a@x.io","vip":false,"tier":"gold","id":1,"seen":true}"#
    );
    assert_eq!(
        *log.lock().unwrap(),
        [
            "before create",
            "before Customer.prototype.summary",
            "before Customer.prototype.__get__orders",
        ]
    );
    let _ = std::fs::remove_dir_all(&dir);
}
