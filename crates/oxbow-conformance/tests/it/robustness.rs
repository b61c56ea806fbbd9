//! Bad input never panics and never answers 5xx: odd filters, ids, bodies and paths against the
//! shop app, each answered with a LoopBack error body or a result.

use actix_web::http::Method;
use actix_web::{App, test};

use crate::support::encode_path;

#[actix_web::test]
async fn nasty_requests_get_answers_not_panics() {
    let dir = oxbow_conformance::scratch_copy("examples/shop", "robust").unwrap();
    let plan = oxbow_config::load(&dir).unwrap();
    let booted = oxbow::boot(plan, &[]).await.unwrap();
    let app = test::init_service(
        App::new()
            .wrap(booted.pipeline())
            .configure(booted.configure()),
    )
    .await;
    let deep = format!("{}{}", "{\"and\":[".repeat(60), "]}".repeat(60));
    let cases: Vec<(&str, String, Option<&str>)> = vec![
        ("POST", "/api/catalog".into(), Some(r#"[{"name":"Pen","price":1},{"name":"Cup","price":2.5,"tags":["x"]}]"#)),
        ("GET", "/api/catalog?filter=%7B%7D%7D".into(), None),
        ("GET", "/api/catalog?filter={\"where\":{\"name\":{\"regexp\":\"é/i\"}}}".into(), None),
        ("GET", "/api/catalog?filter={\"where\":{\"name\":{\"regexp\":\"(((((\"}}}".into(), None),
        ("GET", "/api/catalog?filter={\"where\":{\"name\":{\"like\":\"\\\\\"}}}".into(), None),
        ("GET", "/api/catalog?filter={\"limit\":1e308,\"skip\":1e308}".into(), None),
        ("GET", "/api/catalog?filter={\"limit\":18446744073709551616}".into(), None),
        ("GET", "/api/catalog?filter={\"order\":[\"\",\" \",\",,,\"]}".into(), None),
        ("GET", "/api/catalog?filter={\"fields\":[1,null,{}]}".into(), None),
        ("GET", "/api/catalog?filter={\"where\":{\"price\":{\"between\":{\"0\":1}}}}".into(), None),
        ("GET", "/api/catalog?filter={\"where\":{\"and\":{}}}".into(), None),
        ("GET", "/api/catalog?filter={\"where\":{\"releasedAt\":{\"gt\":1e20}}}".into(), None),
        ("GET", format!("/api/catalog?filter={{\"where\":{deep}}}"), None),
        ("GET", format!("/api/catalog/count?where={deep}"), None),
        ("GET", "/api/catalog?filter[where][a][b][c][d][e][f][g][h]=1".into(), None),
        ("GET", "/api/catalog?filter[where][price][inq][999999999999]=1".into(), None),
        ("GET", "/api/catalog?filter[where][or][0]=x".into(), None),
        ("GET", "/api/catalog/%FF%FE".into(), None),
        ("GET", "/api/catalog/1e999".into(), None),
        ("GET", "/api/catalog/-0".into(), None),
        ("GET", "/api/catalog/9007199254740993".into(), None),
        ("DELETE", "/api/catalog/%00".into(), None),
        ("PUT", "/api/catalog/1".into(), Some(r#"{"id":"１","name":"x","price":1}"#)),
        ("PATCH", "/api/catalog/1".into(), Some(r#"{"price":{"$gt":1}}"#)),
        ("PATCH", "/api/catalog".into(), Some(r#"{"id":{"a":1},"name":"x"}"#)),
        ("POST", "/api/catalog".into(), Some(r#"{"name":"x","price":1,"releasedAt":"99999-01-01"}"#)),
        ("POST", "/api/catalog".into(), Some(r#"{"name":"x","price":1e400}"#)),
        ("POST", "/api/catalog".into(), Some(r#"{"name":"x","price":1,"tags":"[1,2"}"#)),
        ("POST", "/api/catalog".into(), Some(r#"{"name":"\ud800","price":1}"#)),
        ("POST", "/api/catalog".into(), Some("[[[]]]")),
        ("POST", "/api/catalog".into(), Some("\u{feff}{}")),
        ("POST", "/api/catalog/upsertWithWhere?where={\"name\":{\"inq\":5}}".into(), Some(r#"{"name":"y","price":2}"#)),
        ("POST", "/api/catalog/update?where=[]".into(), Some(r#"{"name":"z"}"#)),
        ("POST", "/api/Customers".into(), Some(r#"{"name":"a","email":"b","since":-8640000000000001}"#)),
        ("GET", "/api/Customers?filter={\"where\":{\"since\":{\"lt\":\"+275760-09-13T00:00:00.000Z\"}}}".into(), None),
        ("GET", "/api//catalog//1//".into(), None),
        ("GET", "/api/../api/catalog".into(), None),
    ];
    let mut failures = Vec::new();
    for (method, path, body) in cases {
        let mut req = test::TestRequest::default()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri(&encode_path(&path));
        if let Some(b) = body {
            req = req
                .insert_header(("Content-Type", "application/json"))
                .set_payload(b.to_owned());
        }
        let resp = test::call_service(&app, req.to_request()).await;
        let status = resp.status().as_u16();
        let body = String::from_utf8_lossy(&test::read_body(resp).await).into_owned();
        if status >= 500 {
            failures.push(format!("{method} {path} -> {status} {body}"));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "5xx answers:\n{}", failures.join("\n"));
}
