//! Property rules beyond LoopBack's (compiled into a JSON Schema per model, checked with the
//! `jsonschema` crate) answer in LoopBack's 422 body; `defaultFn` makes uuids and dates.

use actix_web::{App, test};
use serde_json::{Value, json};

fn app_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("oxbow-test-{}-rules", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("server")).unwrap();
    std::fs::create_dir_all(dir.join("models")).unwrap();
    let write = |p: &str, v: Value| {
        std::fs::write(dir.join(p), serde_json::to_string_pretty(&v).unwrap()).unwrap()
    };
    write("server/config.json", json!({"restApiRoot": "/api"}));
    write(
        "server/datasources.json",
        json!({"db": {"name": "db", "connector": "memory"}}),
    );
    write(
        "server/model-config.json",
        json!({"_meta": {"sources": ["../models"]}, "Person": {"dataSource": "db"}}),
    );
    write(
        "models/person.json",
        json!({
            "name": "Person",
            "properties": {
                "uid": {"type": "string", "defaultFn": "uuidv4"},
                "name": {"type": "string", "required": true, "minLength": 2, "maxLength": 10},
                "age": {"type": "number", "min": 0, "max": 150},
                "email": {"type": "string", "format": "email"},
                "role": {"type": "string", "enum": ["admin", "user"]},
                "code": {"type": "string", "pattern": "^[A-Z]{3}$"},
                "tags": {"type": ["string"], "maxLength": 2},
                "joined": {"type": "date", "defaultFn": "now"}
            }
        }),
    );
    dir
}

#[actix_web::test]
async fn declared_rules_answer_in_loopbacks_422_body() {
    let dir = app_dir();
    let plan = oxbow_config::load(&dir).expect("loads");
    let booted = oxbow::boot(plan, &[]).await.expect("boot");
    let app = test::init_service(
        App::new()
            .wrap(booted.pipeline())
            .configure(booted.configure()),
    )
    .await;
    let post = |body: Value| {
        test::TestRequest::post()
            .uri("/api/People")
            .insert_header(("Content-Type", "application/json"))
            .set_payload(body.to_string())
            .to_request()
    };
    let resp = test::call_service(
        &app,
        post(json!({"name": "Ann", "age": 30, "email": "ann@x.io", "role": "user", "code": "ABC", "tags": ["a"]})),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body: Value = test::read_body_json(resp).await;
    let uid = body["uid"].as_str().expect("a uuid");
    assert_eq!(uid.len(), 36, "{uid}");
    assert_eq!(&uid[14..15], "4", "version 4: {uid}");
    assert!(
        matches!(&uid[19..20], "8" | "9" | "a" | "b"),
        "variant: {uid}"
    );
    assert!(
        body["joined"].as_str().is_some_and(|d| d.ends_with('Z')),
        "{body}"
    );

    let resp = test::call_service(
        &app,
        post(json!({"name": "A", "age": 200, "email": "nope", "role": "root", "code": "abc", "tags": ["a", "b", "c"]})),
    )
    .await;
    assert_eq!(resp.status(), 422);
    let body = String::from_utf8(test::read_body(resp).await.to_vec()).unwrap();
    assert_eq!(
        body,
        concat!(
            r#"{"error":{"statusCode":422,"name":"ValidationError","message":"The `Person` instance is not valid. "#,
            r#"Details: `name` is too short (value: \"A\"); `age` is too large (value: 200); `email` is invalid (value: \"nope\"); "#,
            r#"`role` is not included in the list (value: \"root\"); `code` is invalid (value: \"abc\"); `tags` is too long (value: [ 'a', 'b', 'c' ]).","#,
            r#""details":{"context":"Person","codes":{"name":["length.min"],"age":["max"],"email":["format"],"role":["inclusion"],"code":["format"],"tags":["length.max"]},"#,
            r#""messages":{"name":["is too short"],"age":["is too large"],"email":["is invalid"],"role":["is not included in the list"],"code":["is invalid"],"tags":["is too long"]}}}}"#
        )
    );
    // A patch is checked too; absent and null values are not (that is `required`'s job).
    let resp = test::call_service(
        &app,
        test::TestRequest::patch()
            .uri("/api/People/1")
            .insert_header(("Content-Type", "application/json"))
            .set_payload(r#"{"age": -1, "email": null}"#)
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), 422);
    let body: Value = test::read_body_json(resp).await;
    assert_eq!(body["error"]["details"]["codes"], json!({"age": ["min"]}));
    let resp = test::call_service(
        &app,
        test::TestRequest::patch()
            .uri("/api/People/1")
            .insert_header(("Content-Type", "application/json"))
            .set_payload(r#"{"age": 0, "email": null}"#)
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let _ = std::fs::remove_dir_all(&dir);
}
