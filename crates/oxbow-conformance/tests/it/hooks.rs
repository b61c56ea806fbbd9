//! Operation hooks from a boot plugin, through the REST API: a hook that rewrites data,
//! one that rejects a write, one that narrows reads, one that masks what is loaded, and
//! observers of saves and deletes with LoopBack's context.

use std::sync::{Arc, Mutex};

use actix_web::{App, test};
use serde_json::{Value, json};

use oxbow::{BootContext, BootFuture, BootPlugin};
use oxbow_core::{Error, HookContext, Operation};

type Log = Arc<Mutex<Vec<String>>>;

struct Observer {
    log: Log,
}

impl BootPlugin for Observer {
    fn name(&self) -> &str {
        "observer"
    }

    fn boot<'a>(&'a self, app: &'a mut BootContext) -> BootFuture<'a> {
        Box::pin(async move {
            let customers = app.model("Customer")?;
            customers.observe(Operation::BeforeSave, |ctx: &mut HookContext| {
                Box::pin(async move {
                    // Whole instances (create, replace) and partial updates alike.
                    let target = ctx.instance.as_mut().or(ctx.data.as_mut());
                    if let Some(rec) = target {
                        if rec.get("name") == Some(&json!("nope")) {
                            return Err(Error::status_error(403, "names like that are refused"));
                        }
                        if let Some(Value::String(n)) = rec.get("name").cloned() {
                            rec.insert("name".into(), Value::String(n.to_uppercase()));
                        }
                    }
                    Ok(())
                })
            });
            let log = self.log.clone();
            customers.observe(Operation::AfterSave, move |ctx: &mut HookContext| {
                let log = log.clone();
                Box::pin(async move {
                    let inst = ctx.instance.clone().unwrap_or_default();
                    log.lock().unwrap().push(format!(
                        "after save {} new={:?} name={} by {}",
                        ctx.model,
                        ctx.is_new_instance,
                        inst.get("name").cloned().unwrap_or(Value::Null),
                        ctx.caller.request_id().unwrap_or("nobody")
                    ));
                    Ok(())
                })
            });
            let log = self.log.clone();
            customers.observe(Operation::BeforeDelete, move |ctx: &mut HookContext| {
                let log = log.clone();
                Box::pin(async move {
                    log.lock().unwrap().push(format!(
                        "before delete where={}",
                        ctx.where_.clone().unwrap_or(Value::Null)
                    ));
                    Ok(())
                })
            });
            // Reads never see VIP customers.
            customers.observe(Operation::Access, |ctx: &mut HookContext| {
                Box::pin(async move {
                    let hide = json!({"vip": false});
                    ctx.where_ = Some(match ctx.where_.take() {
                        Some(w) if w.as_object().is_some_and(|o| !o.is_empty()) => {
                            json!({"and": [w, hide]})
                        }
                        _ => hide,
                    });
                    Ok(())
                })
            });
            customers.observe(Operation::Loaded, |ctx: &mut HookContext| {
                Box::pin(async move {
                    if let Some(d) = ctx.data.as_mut() {
                        d.insert("email".into(), json!("***"));
                    }
                    Ok(())
                })
            });
            Ok(())
        })
    }
}

#[actix_web::test]
async fn hooks_rewrite_reject_narrow_and_observe() {
    let dir = oxbow_conformance::scratch_copy("examples/shop", "hooks").unwrap();
    let plan = oxbow_config::load(&dir).unwrap();
    let log: Log = Arc::default();
    let plugins: Vec<Box<dyn BootPlugin>> = vec![Box::new(Observer { log: log.clone() })];
    let booted = oxbow::boot(plan, &plugins).await.unwrap();
    let app = test::init_service(
        App::new()
            .wrap(booted.pipeline())
            .configure(booted.configure()),
    )
    .await;
    let send = |method: &str, uri: &str, body: Option<Value>| {
        // The caller (here its request id) reaches the hooks as LoopBack's `ctx.options`.
        let mut r = test::TestRequest::default()
            .method(method.parse().unwrap())
            .uri(uri)
            .insert_header(("X-Request-Id", format!("{method} {uri}")));
        if let Some(b) = body {
            r = r
                .insert_header(("Content-Type", "application/json"))
                .set_payload(b.to_string());
        }
        r.to_request()
    };
    // before save rewrites; the response and the store hold the rewritten name.
    let resp = test::call_service(
        &app,
        send(
            "POST",
            "/api/Customers",
            Some(json!({"name": "ann", "email": "a@x.io"})),
        ),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        test::read_body(resp).await,
        r#"{"name":"ANN","email":"a@x.io","vip":false,"tier":"basic","id":1}"#
    );
    // before save rejects: LoopBack's error body, nothing written.
    let resp = test::call_service(
        &app,
        send(
            "POST",
            "/api/Customers",
            Some(json!({"name": "nope", "email": "n@x.io"})),
        ),
    )
    .await;
    assert_eq!(resp.status(), 403);
    assert_eq!(
        test::read_body(resp).await,
        r#"{"error":{"statusCode":403,"name":"Error","message":"names like that are refused"}}"#
    );
    // A patch goes through the same hook (as `data`).
    let resp = test::call_service(
        &app,
        send("PATCH", "/api/Customers/1", Some(json!({"name": "anna"}))),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body: Value = test::read_body_json(resp).await;
    assert_eq!(body["name"], "ANNA");
    // access hides VIPs from finds, counts and look-ups by id; loaded masks emails.
    let resp = test::call_service(
        &app,
        send(
            "POST",
            "/api/Customers",
            Some(json!({"name": "vic", "email": "v@x.io", "vip": true})),
        ),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let resp = test::call_service(&app, send("GET", "/api/Customers", None)).await;
    assert_eq!(
        test::read_body(resp).await,
        r#"[{"name":"ANNA","email":"***","vip":false,"tier":"basic","id":1}]"#
    );
    let resp = test::call_service(&app, send("GET", "/api/Customers/count", None)).await;
    assert_eq!(test::read_body(resp).await, r#"{"count":1}"#);
    let resp = test::call_service(&app, send("GET", "/api/Customers/2", None)).await;
    assert_eq!(resp.status(), 404);
    // Deletes are observed with their where.
    let resp = test::call_service(&app, send("DELETE", "/api/Customers/1", None)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        *log.lock().unwrap(),
        [
            r#"after save Customer new=Some(true) name="ANN" by POST /api/Customers"#,
            r#"after save Customer new=Some(false) name="ANNA" by PATCH /api/Customers/1"#,
            r#"after save Customer new=Some(true) name="VIC" by POST /api/Customers"#,
            r#"before delete where={"id":1}"#,
        ]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

struct Mixins {
    log: Log,
}

impl BootPlugin for Mixins {
    fn name(&self) -> &str {
        "mixins"
    }

    fn boot<'a>(&'a self, app: &'a mut BootContext) -> BootFuture<'a> {
        Box::pin(async move {
            let log = self.log.clone();
            app.mixin("Audited", move |model, opts| {
                let log = log.clone();
                let tag = opts["tag"].as_str().unwrap_or("-").to_owned();
                model.observe(Operation::AfterSave, move |ctx: &mut HookContext| {
                    log.lock()
                        .unwrap()
                        .push(format!("{tag}: saved {}", ctx.model));
                    Box::pin(std::future::ready(Ok(())))
                });
                Ok(())
            });
            Ok(())
        })
    }
}

/// The shop app with `mixins` added to Customer's JSON.
fn shop_with_mixins(tag: &str, mixins: Value) -> std::path::PathBuf {
    let dir = oxbow_conformance::scratch_copy("examples/shop", tag).unwrap();
    let path = dir.join("models/customer.json");
    let mut model: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    model["mixins"] = mixins;
    std::fs::write(&path, serde_json::to_string_pretty(&model).unwrap()).unwrap();
    dir
}

#[actix_web::test]
async fn timestamp_and_plugin_mixins() {
    let dir = shop_with_mixins(
        "mixins",
        json!({"TimeStamp": {"updatedAt": "modified"}, "Audited": {"tag": "audit"}}),
    );
    let log: Log = Arc::default();
    let plan = oxbow_config::load(&dir).unwrap();
    let props: Vec<&str> = plan
        .models
        .iter()
        .find(|m| m.name.as_str() == "Customer")
        .unwrap()
        .properties
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(props[props.len() - 3..], ["id", "createdAt", "modified"]);
    let plugins: Vec<Box<dyn BootPlugin>> = vec![Box::new(Mixins { log: log.clone() })];
    let booted = oxbow::boot(plan, &plugins).await.unwrap();
    let app = test::init_service(
        App::new()
            .wrap(booted.pipeline())
            .configure(booted.configure()),
    )
    .await;
    let resp = test::call_service(
        &app,
        test::TestRequest::post()
            .uri("/api/Customers")
            .insert_header(("Content-Type", "application/json"))
            .set_payload(r#"{"name":"Ann","email":"a@x.io"}"#)
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let created: Value = test::read_body_json(resp).await;
    let (c, m) = (
        created["createdAt"].as_str().unwrap(),
        created["modified"].as_str().unwrap(),
    );
    assert!(c.ends_with('Z') && m.ends_with('Z'), "{created}");
    std::thread::sleep(std::time::Duration::from_millis(5));
    let resp = test::call_service(
        &app,
        test::TestRequest::patch()
            .uri("/api/Customers/1")
            .insert_header(("Content-Type", "application/json"))
            .set_payload(r#"{"age":40}"#)
            .to_request(),
    )
    .await;
    let patched: Value = test::read_body_json(resp).await;
    assert_eq!(
        patched["createdAt"], created["createdAt"],
        "kept on a patch"
    );
    assert!(patched["modified"].as_str().unwrap() > m, "{patched}");
    assert_eq!(
        *log.lock().unwrap(),
        ["audit: saved Customer", "audit: saved Customer"]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[actix_web::test]
async fn an_unknown_mixin_fails_boot() {
    let dir = shop_with_mixins("mixins-unknown", json!({"SoftDelete": true}));
    let plan = oxbow_config::load(&dir).unwrap();
    let err = match oxbow::boot(plan, &[]).await {
        Ok(_) => panic!("boot must fail"),
        Err(e) => format!("{e:#}"),
    };
    assert_eq!(
        err,
        "model `Customer`: no mixin is registered as `SoftDelete`; a boot plugin must register it (BootContext::mixin). Known mixins: TimeStamp"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
