//! Validation cases as data: `tests/conformance/validation/*.json` each hold a model with
//! property rules and requests with the exact answers oxbow gives (LoopBack's 422 body).

use actix_web::{App, test};
use serde_json::{Value, json};

#[actix_web::test]
async fn validation_cases_as_data() {
    let root = oxbow_conformance::repo_root().join("tests/conformance/validation");
    let mut files: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no validation cases in {}",
        root.display()
    );
    let mut failures = Vec::new();
    for file in files {
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let dir = std::env::temp_dir().join(format!(
            "oxbow-test-{}-{}",
            std::process::id(),
            file.file_stem().unwrap().to_string_lossy()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("server")).unwrap();
        std::fs::create_dir_all(dir.join("models")).unwrap();
        let name = doc["model"]["name"].as_str().unwrap();
        let write = |p: &str, v: &Value| std::fs::write(dir.join(p), v.to_string()).unwrap();
        write("server/config.json", &json!({"restApiRoot": "/api"}));
        write(
            "server/datasources.json",
            &json!({"db": {"name": "db", "connector": "memory"}}),
        );
        write(
            "server/model-config.json",
            &json!({"_meta": {"sources": ["../models"]}, name: {"dataSource": "db"}}),
        );
        write("models/model.json", &doc["model"]);
        let plan = oxbow_config::load(&dir).unwrap_or_else(|p| panic!("{}: {p}", file.display()));
        let booted = oxbow::boot(plan, &[]).await.unwrap();
        let app = test::init_service(
            App::new()
                .wrap(booted.pipeline())
                .configure(booted.configure()),
        )
        .await;
        for case in doc["cases"].as_array().unwrap() {
            let title = case["title"].as_str().unwrap_or("?");
            let req = test::TestRequest::default()
                .method(case["method"].as_str().unwrap().parse().unwrap())
                .uri(case["path"].as_str().unwrap())
                .insert_header(("Content-Type", "application/json"))
                .set_payload(case["body"].to_string())
                .to_request();
            let resp = test::call_service(&app, req).await;
            let status = resp.status().as_u16();
            let body = String::from_utf8(test::read_body(resp).await.to_vec()).unwrap();
            let mask: Vec<String> = case["mask"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|m| m.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            let got = oxbow_conformance::masked(&body, &mask)
                .map(|v| v.to_string())
                .unwrap_or(body.clone());
            let want = case["response"].to_string();
            if status != case["status"].as_u64().unwrap() as u16 || got != want {
                failures.push(format!(
                    "{} — {title}\n    status {status}, want {}\n    got:  {got}\n    want: {want}",
                    file.display(),
                    case["status"]
                ));
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
