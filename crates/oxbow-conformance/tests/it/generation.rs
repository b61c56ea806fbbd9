//! A generation swapped whole: the next request is served by the new registry, endpoint
//! table and pipeline, and a query string parsed (and cached per worker) under the old one is
//! parsed again, never served from the old generation's plan.

use actix_web::{App, test};

#[actix_web::test]
async fn a_swapped_generation_serves_the_next_request_and_no_stale_plan() {
    let plain = oxbow_conformance::scratch_copy("examples/shop", "gen-plain").unwrap();
    let hiding = oxbow_conformance::scratch_copy("examples/shop", "gen-hiding").unwrap();
    let mc = hiding.join("server/model-config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&mc).unwrap()).unwrap();
    config["Customer"]["options"] =
        serde_json::json!({"remoting": {"sharedMethods": {"find": false}}});
    std::fs::write(&mc, config.to_string()).unwrap();

    let first = oxbow::boot(oxbow_config::load(&plain).unwrap(), &[])
        .await
        .unwrap();
    let second = oxbow::boot(oxbow_config::load(&hiding).unwrap(), &[])
        .await
        .unwrap();
    let app = test::init_service(
        App::new()
            .wrap(first.pipeline())
            .configure(first.configure()),
    )
    .await;
    let get = || {
        test::TestRequest::get()
            .uri("/api/Customers?filter=%7B%22limit%22%3A1%7D")
            .to_request()
    };
    for _ in 0..2 {
        let resp = test::call_service(&app, get()).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(test::read_body(resp).await, "[]");
    }
    let next = (*second.current().load()).clone();
    let before = first.current().load().id;
    let id = first.current().swap(next);
    assert_ne!(id, before);
    let resp = test::call_service(&app, get()).await;
    assert_eq!(resp.status(), 404);
    assert_eq!(
        test::read_body(resp).await,
        r#"{"error":{"statusCode":404,"name":"Error","message":"Shared class \"Customer\" has no method handling GET /?filter=%7B%22limit%22%3A1%7D"}}"#
    );
    let _ = std::fs::remove_dir_all(&plain);
    let _ = std::fs::remove_dir_all(&hiding);
}
