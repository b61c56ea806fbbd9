//! Change-stream subscriptions live exactly as long as their response: 10 000 open/close
//! cycles leave no subscription behind and memory flat.

use actix_web::body::MessageBody;
use actix_web::{App, test};

fn rss_kib() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<usize>().ok())
        })
        .map_or(0, |pages| pages * 4)
}

#[actix_web::test]
async fn ten_thousand_connects_and_disconnects_leave_nothing_behind() {
    let dir = oxbow_conformance::scratch_copy(".", "streams").unwrap();
    let plan = oxbow_config::load(&dir).unwrap();
    let booted = oxbow::boot(plan, &[]).await.unwrap();
    let model = booted.registry.model("MyModel").unwrap().clone();
    let app = test::init_service(
        App::new()
            .wrap(booted.pipeline())
            .configure(booted.configure()),
    )
    .await;
    let open = |_: usize| {
        test::TestRequest::get()
            .uri("/api/MyModels/change-stream?_format=event-stream")
            .to_request()
    };
    // Warm up allocator pools before measuring.
    for i in 0..500 {
        drop(test::call_service(&app, open(i)).await);
    }
    let before = rss_kib();
    for i in 0..10_000 {
        let resp = test::call_service(&app, open(i)).await;
        assert_eq!(resp.status(), 200);
        // Read the first chunk (`:ok`), as a client would, then go away.
        let mut body = resp.into_body();
        let first = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_next(cx)).await;
        assert_eq!(first.unwrap().unwrap(), ":ok\n\n");
        drop(body);
        if i % 1000 == 0 {
            assert!(
                model.changes().subscriber_count() <= 1,
                "subscriptions pile up"
            );
        }
    }
    assert_eq!(
        model.changes().subscriber_count(),
        0,
        "every closed stream unsubscribed"
    );
    let grown = rss_kib().saturating_sub(before);
    assert!(
        grown < 4096,
        "memory grew by {grown} KiB over 10 000 streams"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
