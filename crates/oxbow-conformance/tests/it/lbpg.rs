//! An existing LoopBack 3 PostgreSQL database is served as it is: tables that
//! loopback-connector-postgresql created (lower-cased table and column names, `integer`,
//! `timestamp with time zone`, a `serial` id) and the rows it wrote, recorded with the real
//! LoopBack 3 by `tests/conformance/apps/lbpg/record.js` (`tables.sql`, `expected.json`), are
//! read by oxbow and answered byte for byte as LoopBack 3 answered; oxbow's writes land in
//! the same columns, as LoopBack's would.

use actix_web::dev::{Service, ServiceResponse};
use actix_web::{App, test};
use serde_json::{Map, Value, json};

use oxbow_conformance::scratch_copy;

async fn call<S>(app: &S, req: test::TestRequest) -> (u16, String)
where
    S: Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>,
{
    let resp = test::call_service(app, req.to_request()).await;
    let status = resp.status().as_u16();
    let body = test::read_body(resp).await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The app of `dir` on schema `schema` of `url`.
fn point_at(dir: &std::path::Path, url: &str, schema: &str) {
    let path = dir.join("server/datasources.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    v["db"]["url"] = json!(url);
    v["db"]["schema"] = json!(schema);
    std::fs::write(&path, v.to_string()).unwrap();
}

/// `tables.sql` (pg_dump of what LoopBack created) into `schema`, psql's own commands left out.
async fn load_tables(client: &tokio_postgres::Client, schema: &str) {
    let dump = std::fs::read_to_string(fixtures().join("tables.sql")).unwrap();
    let sql: String = dump
        .lines()
        .filter(|l| !l.starts_with('\\') && !l.starts_with("--"))
        .map(|l| format!("{l}\n"))
        .collect::<String>()
        .replace("lbcompat", schema);
    client.batch_execute(&sql).await.expect("LoopBack's tables");
}

fn fixtures() -> std::path::PathBuf {
    oxbow_conformance::repo_root().join("tests/conformance/apps/lbpg")
}

#[actix_web::test]
async fn loopback_postgres_tables_are_served_as_they_are() {
    let Some(url) = crate::conformance::postgres_url("LoopBack's PostgreSQL tables") else {
        return;
    };
    let dir = scratch_copy("tests/conformance/apps/lbpg", "lbpg").expect("scratch");
    let schema = format!("oxbow_{}_lbpg", std::process::id());
    crate::conformance::drop_schema(&url, &schema).await;
    point_at(&dir, &url, &schema);
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    actix_rt::spawn(async move {
        let _ = conn.await;
    });
    load_tables(&client, &schema).await;

    let plan = oxbow_config::load(&dir).unwrap_or_else(|p| panic!("{p}"));
    let booted = oxbow::boot(plan, &[])
        .await
        .expect("boot on LoopBack's tables");
    let app = test::init_service(
        App::new()
            .wrap(booted.pipeline())
            .configure(booted.configure()),
    )
    .await;

    // What LoopBack 3 answered, recorded with its PostgreSQL connector.
    let expected: Map<String, Value> =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("expected.json")).unwrap())
            .unwrap();
    for (request, body) in &expected {
        let (_, query) = request.split_once("?filter=").unwrap();
        let path = request
            .trim_start_matches("GET ")
            .split_once('?')
            .unwrap()
            .0;
        let filter: String = form_urlencoded::byte_serialize(query.as_bytes()).collect();
        let got = call(
            &app,
            test::TestRequest::get().uri(&format!("{path}?filter={filter}")),
        )
        .await;
        assert_eq!(got, (200, body.to_string()), "{request}");
    }

    // Writes land in LoopBack's columns, with its types: the id continues its serial ids.
    let created = call(
        &app,
        test::TestRequest::post()
            .uri("/api/Orders")
            .set_json(json!({
                "code": "B2", "total": 12, "placedAt": "2024-04-01T08:00:00.000Z", "customerId": 2
            })),
    )
    .await;
    assert_eq!(
        created,
        (
            200,
            r#"{"code":"B2","total":12,"placedAt":"2024-04-01T08:00:00.000Z","customerId":2,"id":4}"#
                .to_owned()
        )
    );
    let row = client
        .query_one(
            &format!(
                "SELECT placedat = '2024-04-01 08:00:00+00'::timestamptz, customerid, total \
                 FROM \"{schema}\".\"order\" WHERE id = 4"
            ),
            &[],
        )
        .await
        .expect("the created row");
    assert!(row.get::<_, bool>(0), "placedAt stored as the instant");
    assert_eq!((row.get::<_, i32>(1), row.get::<_, i32>(2)), (2, 12));
    let patched = call(
        &app,
        test::TestRequest::patch()
            .uri("/api/Customers/2")
            .set_json(json!({"visits": 1, "since": "2023-06-30T23:59:59.999Z"})),
    )
    .await;
    assert_eq!(
        patched,
        (
            200,
            r#"{"name":"Bob","email":null,"since":"2023-06-30T23:59:59.999Z","vip":false,"visits":1,"id":2}"#
                .to_owned()
        )
    );
    assert_eq!(
        call(
            &app,
            test::TestRequest::get().uri("/api/Customers/2/orders/count")
        )
        .await,
        (200, r#"{"count":2}"#.to_owned())
    );
    // A value LoopBack's `integer` column cannot hold fails its own create (500, as PostgreSQL
    // fails LoopBack's) and stores nothing, never a rounded or null value; concurrent creates
    // batched with it still succeed.
    let bodies: Vec<Value> = (0..8)
        .map(|i| {
            let total = if i == 3 { json!(12.5) } else { json!(i) };
            json!({"code": format!("C{i}"), "total": total, "customerId": 1})
        })
        .collect();
    let answers = futures_util::future::join_all(bodies.iter().map(|b| {
        call(
            &app,
            test::TestRequest::post().uri("/api/Orders").set_json(b),
        )
    }))
    .await;
    for (i, (status, body)) in answers.iter().enumerate() {
        assert_eq!(
            *status,
            if i == 3 { 500 } else { 200 },
            "create {i}: {body}"
        );
    }
    let too_big = call(
        &app,
        test::TestRequest::post()
            .uri("/api/Orders")
            .set_json(json!({"code": "D1", "total": 3e9})),
    )
    .await;
    assert_eq!(too_big.0, 500, "{}", too_big.1);
    assert_eq!(
        call(&app, test::TestRequest::get().uri("/api/Orders/count")).await,
        (200, r#"{"count":11}"#.to_owned())
    );
    let stored: i64 = client
        .query_one(
            &format!(
                "SELECT count(*) FROM \"{schema}\".\"order\" WHERE code IN ('C3', 'D1') OR total IS NULL AND code LIKE 'C%'"
            ),
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(stored, 0);
    drop(app);
    drop(booted);

    // A column of a type oxbow cannot read exactly stops boot with a message naming it.
    client
        .batch_execute(&format!(
            "ALTER TABLE \"{schema}\".customer ALTER COLUMN visits TYPE numeric"
        ))
        .await
        .expect("alter");
    let plan = oxbow_config::load(&dir).unwrap_or_else(|p| panic!("{p}"));
    let err = match oxbow::boot(plan, &[]).await {
        Ok(_) => panic!("boot accepted a numeric column"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("table customer: column \"visits\" (property `visits`) has type numeric"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    crate::conformance::drop_schema(&url, &schema).await;
}
