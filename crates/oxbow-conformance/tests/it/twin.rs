//! The SQL connectors answer every filter as the memory connector does: one app with the same
//! model on memory and SQLite (`tests/conformance/apps/twin`) and, when `OXBOW_TEST_POSTGRES`
//! is set, PostgreSQL; the same records written to each, then every query of a list asked of
//! all and the bodies compared byte for byte.
//!
//! The list covers what compiles to SQL (comparisons, `inq`/`nin` with nulls, `like` on null
//! and absent values, `regexp` flags, `and`/`or`/`nor`, order with absent and null values,
//! limit/skip) and what falls back to the shared evaluator (array properties, unknown
//! properties, dot paths, order on unknown properties).

use actix_web::dev::{Service, ServiceResponse};
use actix_web::test;
use serde_json::{Value, json};

use oxbow_conformance::scratch_copy;

use crate::support::app;

fn records() -> Vec<Value> {
    vec![
        json!({"name": "apple", "price": 10, "active": true, "when": "2024-01-02T00:00:00.000Z", "tags": ["red", "fruit"], "meta": {"a": 1}}),
        json!({"name": "Apricot", "price": 12.5, "active": false, "tags": ["orange"], "meta": {"a": 2, "b": "x"}}),
        json!({"name": "banana", "price": null, "active": true, "when": "2023-06-01T12:00:00.000Z"}),
        json!({"name": null, "price": 3}),
        json!({"price": 7, "color": "yellow"}),
        json!({"name": "cherry", "price": 10, "active": null, "tags": [], "color": "red"}),
        json!({"name": "Ähre", "price": -1, "when": "2030-12-31T23:59:59.999Z"}),
        json!({"name": "null", "price": 0, "active": false}),
        json!({"name": "", "price": 100, "extra": {"deep": true}}),
        json!({"name": "date", "price": 2, "tags": ["fruit"], "meta": null}),
    ]
}

fn filters() -> Vec<Value> {
    vec![
        json!({}),
        json!({"where": {"price": 10}}),
        json!({"where": {"price": {"gt": 5}}}),
        json!({"where": {"price": {"gte": 10}}}),
        json!({"where": {"price": {"lt": 10}}}),
        json!({"where": {"price": {"lte": null}}}),
        json!({"where": {"price": {"gt": null}}}),
        json!({"where": {"price": {"between": [2, 10]}}}),
        json!({"where": {"price": {"neq": 10}}}),
        json!({"where": {"price": {"neq": null}}}),
        json!({"where": {"price": null}}),
        json!({"where": {"name": null}}),
        json!({"where": {"price": {"inq": [10, 3, null]}}}),
        json!({"where": {"price": {"inq": [10, 3]}}}),
        json!({"where": {"price": {"nin": [10, 3]}}}),
        json!({"where": {"price": {"nin": [10, null]}}}),
        json!({"where": {"price": {"inq": []}}}),
        json!({"where": {"name": {"like": "%an%"}}}),
        json!({"where": {"name": {"like": "nu%"}}}),
        json!({"where": {"name": {"like": "und%"}}}),
        json!({"where": {"name": {"nlike": "a%"}}}),
        json!({"where": {"name": {"ilike": "a%"}}}),
        json!({"where": {"name": {"nilike": "A%"}}}),
        json!({"where": {"name": {"regexp": "^a"}}}),
        json!({"where": {"name": {"regexp": "/^a/i"}}}),
        json!({"where": {"name": {"regexp": "^$"}}}),
        json!({"where": {"name": {"gt": "b"}}}),
        json!({"where": {"active": true}}),
        json!({"where": {"active": false}}),
        json!({"where": {"active": {"neq": true}}}),
        json!({"where": {"when": {"gt": "2024-01-01"}}}),
        json!({"where": {"when": {"lt": "2025-01-01T00:00:00.000Z"}}}),
        json!({"where": {"or": [{"price": {"gt": 50}}, {"name": "apple"}]}}),
        json!({"where": {"and": [{"price": {"gt": 1}}, {"active": true}]}}),
        json!({"where": {"nor": [{"price": {"gt": 5}}, {"active": true}]}}),
        json!({"where": {"nor": [{"price": {"lt": 5}}]}}),
        json!({"where": {"or": []}}),
        json!({"where": {"tags": "fruit"}}),
        json!({"where": {"tags": {"inq": ["red", "orange"]}}}),
        json!({"where": {"color": "red"}}),
        json!({"where": {"color": {"neq": "red"}}}),
        json!({"where": {"meta.a": 2}}),
        json!({"where": {"and": [{"price": {"gt": 1}}, {"color": "red"}]}}),
        json!({"where": {"or": [{"price": {"gt": 50}}, {"color": "yellow"}]}}),
        json!({"where": {"nor": [{"color": "yellow"}]}}),
        json!({"where": {"price": {"gt": 1}, "name": {"exists": true}}}),
        json!({"order": "price DESC"}),
        json!({"order": "price ASC"}),
        json!({"order": "name ASC"}),
        json!({"order": ["active DESC", "price ASC"]}),
        json!({"order": "when DESC"}),
        json!({"order": "color ASC"}),
        json!({"order": "price DESC", "limit": 3}),
        json!({"order": "price ASC", "limit": 2, "skip": 2}),
        json!({"limit": 4, "skip": 3}),
        json!({"where": {"price": {"gt": 1}}, "order": "name DESC", "limit": 3, "skip": 1}),
        json!({"where": {"color": {"neq": "x"}}, "order": "price DESC", "limit": 2, "skip": 1}),
        json!({"fields": ["name", "price"], "order": "price ASC"}),
        json!({"where": {"id": {"inq": [1, 3, 5]}}}),
        json!({"where": {"id": {"gt": 7}}, "order": "id DESC"}),
    ]
}

async fn get<S>(app: &S, path: &str) -> (u16, String)
where
    S: Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>,
{
    let resp = test::call_service(app, test::TestRequest::get().uri(path).to_request()).await;
    let status = resp.status().as_u16();
    let body = test::read_body(resp).await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn post<S>(app: &S, path: &str, body: &Value) -> (u16, String)
where
    S: Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>,
{
    let resp = test::call_service(
        app,
        test::TestRequest::post()
            .uri(path)
            .set_json(body)
            .to_request(),
    )
    .await;
    let status = resp.status().as_u16();
    let body = test::read_body(resp).await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn encode(v: &Value) -> String {
    form_urlencoded::byte_serialize(v.to_string().as_bytes()).collect()
}

/// Adds `PgItem` on a PostgreSQL datasource in schema `schema`.
fn add_postgres(dir: &std::path::Path, url: &str, schema: &str) {
    let edit = |file: &str, f: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        let path = dir.join(file);
        let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        f(v.as_object_mut().unwrap());
        std::fs::write(&path, v.to_string()).unwrap();
    };
    edit("server/datasources.json", &|m| {
        m.insert(
            "pg".into(),
            json!({"name": "pg", "connector": "postgresql", "url": url, "schema": schema}),
        );
    });
    edit("server/model-config.json", &|m| {
        m.insert("PgItem".into(), json!({"dataSource": "pg", "public": true}));
    });
    let model = std::fs::read_to_string(dir.join("models/lite-item.json"))
        .unwrap()
        .replace("LiteItem", "PgItem");
    std::fs::write(dir.join("models/pg-item.json"), model).unwrap();
}

#[actix_web::test]
async fn sql_connectors_answer_every_filter_as_memory() {
    let dir = scratch_copy("tests/conformance/apps/twin", "twin").expect("scratch");
    let pg = crate::conformance::postgres_url("twin on PostgreSQL");
    let schema = format!("oxbow_{}_twin", std::process::id());
    if let Some(url) = &pg {
        crate::conformance::drop_schema(url, &schema).await;
        add_postgres(&dir, url, &schema);
    }
    let mut others = vec!["LiteItems"];
    if pg.is_some() {
        others.push("PgItems");
    }
    let app = app(&dir).await;
    for r in records() {
        let a = post(&app, "/api/MemItems", &r).await;
        for o in &others {
            let b = post(&app, &format!("/api/{o}"), &r).await;
            assert_eq!(a, b, "create {r} on {o}");
        }
    }
    let mut differ = Vec::new();
    let mut checked = 0;
    for f in filters() {
        let q = encode(&f);
        let w = encode(&f["where"]);
        for (what, path) in [
            ("find", format!("?filter={q}")),
            ("count", format!("/count?where={w}")),
        ] {
            let a = get(&app, &format!("/api/MemItems{path}")).await;
            for o in &others {
                let b = get(&app, &format!("/api/{o}{path}")).await;
                checked += 1;
                if a != b {
                    differ.push(format!("{what} {f}\n  memory: {a:?}\n  {o}: {b:?}"));
                }
            }
        }
    }
    // Writes by `where`: update then delete, compared through the rows left.
    for (path, body) in [
        (
            "update?where=%7B%22price%22%3A%7B%22gt%22%3A5%7D%7D",
            json!({"active": true, "note": "big"}),
        ),
        (
            "update?where=%7B%22color%22%3A%22red%22%7D",
            json!({"price": 11}),
        ),
    ] {
        let a = post(&app, &format!("/api/MemItems/{path}"), &body).await;
        for o in &others {
            let b = post(&app, &format!("/api/{o}/{path}"), &body).await;
            assert_eq!(a, b, "{path} on {o}");
        }
    }
    let a = get(&app, "/api/MemItems").await;
    for o in &others {
        let b = get(&app, &format!("/api/{o}")).await;
        assert_eq!(a, b, "rows after updates on {o}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    if let Some(url) = &pg {
        drop(app);
        crate::conformance::drop_schema(url, &schema).await;
    }
    assert!(
        differ.is_empty(),
        "{} of {checked} queries differ:\n{}",
        differ.len(),
        differ.join("\n")
    );
}

/// An array create is one transaction on the SQL connectors: a duplicate id in the array
/// leaves nothing written (409), where the memory connector, as LoopBack's, keeps the elements
/// before the failing one.
#[actix_web::test]
async fn an_array_create_is_all_or_none_on_sql_connectors() {
    let dir = scratch_copy("tests/conformance/apps/twin", "twin-arrays").expect("scratch");
    let pg = crate::conformance::postgres_url("array creates on PostgreSQL");
    let schema = format!("oxbow_{}_twin_arrays", std::process::id());
    if let Some(url) = &pg {
        crate::conformance::drop_schema(url, &schema).await;
        add_postgres(&dir, url, &schema);
    }
    let app = app(&dir).await;
    let mut models = vec![("MemItems", 3), ("LiteItems", 2)];
    if pg.is_some() {
        models.push(("PgItems", 2));
    }
    for (model, kept) in models {
        let ok = post(
            &app,
            &format!("/api/{model}"),
            &json!([{"id": 100, "name": "x"}, {"name": "y"}]),
        )
        .await;
        assert_eq!(
            ok,
            (
                200,
                r#"[{"name":"x","id":100},{"name":"y","id":101}]"#.to_owned()
            ),
            "{model}"
        );
        let (status, body) = post(
            &app,
            &format!("/api/{model}"),
            &json!([{"id": 102, "name": "z"}, {"id": 100, "name": "dup"}]),
        )
        .await;
        assert_eq!(status, 409, "{model}: {body}");
        let count = get(&app, &format!("/api/{model}/count")).await;
        assert_eq!(count, (200, format!(r#"{{"count":{kept}}}"#)), "{model}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    if let Some(url) = &pg {
        drop(app);
        crate::conformance::drop_schema(url, &schema).await;
    }
}

/// Rows stored past the id counter by other software (here: SQL) do not make creates fail:
/// PostgreSQL's sequence is moved past them, as the memory connector's counter moves past
/// every id it stores; lone creates and concurrent (batched) ones alike.
#[actix_web::test]
async fn postgres_creates_move_past_ids_stored_by_others() {
    let Some(url) = crate::conformance::postgres_url("ids stored by others on PostgreSQL") else {
        return;
    };
    let dir = scratch_copy("tests/conformance/apps/twin", "twin-ids").expect("scratch");
    let schema = format!("oxbow_{}_twin_ids", std::process::id());
    crate::conformance::drop_schema(&url, &schema).await;
    add_postgres(&dir, &url, &schema);
    let app = app(&dir).await;
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    actix_rt::spawn(async move {
        let _ = conn.await;
    });
    client
        .batch_execute(&format!(
            "INSERT INTO \"{schema}\".\"PgItem\" (id, name) VALUES (1, 'a'), (2, 'b'), (3, 'c')"
        ))
        .await
        .expect("rows written by SQL");
    let lone = post(&app, "/api/PgItems", &json!({"name": "lone"})).await;
    assert_eq!(lone, (200, r#"{"name":"lone","id":4}"#.to_owned()));
    client
        .batch_execute(&format!(
            "INSERT INTO \"{schema}\".\"PgItem\" (id, name) VALUES (5, 'd'), (6, 'e')"
        ))
        .await
        .expect("more rows written by SQL");
    let bodies: Vec<Value> = (0..6).map(|i| json!({ "name": format!("n{i}") })).collect();
    let together =
        futures_util::future::join_all(bodies.iter().map(|b| post(&app, "/api/PgItems", b))).await;
    let mut ids: Vec<u64> = together
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, 200, "{body}");
            serde_json::from_str::<Value>(body).unwrap()["id"]
                .as_u64()
                .unwrap()
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 6, "distinct ids: {ids:?}");
    assert!(ids.iter().all(|id| *id > 6), "{ids:?}");
    assert_eq!(
        get(&app, "/api/PgItems/count").await,
        (200, r#"{"count":12}"#.to_owned())
    );
    drop(app);
    let _ = std::fs::remove_dir_all(&dir);
    crate::conformance::drop_schema(&url, &schema).await;
}
