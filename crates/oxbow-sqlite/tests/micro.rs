//! Timing of the connector's point read, outside HTTP (`cargo test --release -p oxbow-sqlite
//! --test micro -- --ignored --nocapture`); a tool for profiling, not an assertion.

use std::collections::HashSet;
use std::time::Instant;

use oxbow_core::Connector;
use oxbow_core::model::{ModelDefinition, ModelName, Property, PropertyType, Strict};
use serde_json::{Map, Value, json};

fn prop(name: &str, ty: PropertyType) -> Property {
    Property {
        name: name.into(),
        ty,
        required: false,
        default: None,
        default_fn: None,
        id: None,
        generated: false,
    }
}

fn model() -> ModelDefinition {
    let mut id = prop("id", PropertyType::Number);
    id.id = Some(1);
    id.generated = true;
    ModelDefinition {
        name: ModelName::new("Product"),
        plural: "Products".into(),
        http_path: "catalog".into(),
        base: "PersistedModel".into(),
        properties: vec![
            prop("name", PropertyType::String),
            prop("price", PropertyType::Number),
            prop("category", PropertyType::String),
            prop("inStock", PropertyType::Boolean),
            id,
        ],
        id_index: 4,
        force_id: true,
        strict: Strict::Off,
        hidden: HashSet::new(),
        validate_upsert: false,
        public: true,
        data_source: "db".into(),
        relations: Vec::new(),
        rules: None,
        settings: Map::new(),
    }
}

#[tokio::test]
#[ignore = "timing tool"]
async fn point_read_timing() {
    let dir = std::env::temp_dir().join(format!("oxbow-micro-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let def = model();
    let c = oxbow_sqlite::SqliteConnector::open(
        &dir.join("db.sqlite"),
        [&def],
        oxbow_sqlite::Synchronous::Normal,
    )
    .unwrap();
    for i in 0..100 {
        let data = vec![
            ("name".to_owned(), json!(format!("Product-{i}"))),
            ("price".to_owned(), json!(i)),
            ("category".to_owned(), json!("tools")),
            ("inStock".to_owned(), json!(true)),
        ];
        c.create(&def, data).await.unwrap();
    }
    let id = Value::from(42);
    let n = 200_000;
    let t = Instant::now();
    for _ in 0..n {
        let r = c.find_by_id(&def, &id).await.unwrap().unwrap();
        std::hint::black_box(r);
    }
    let per = t.elapsed().as_nanos() as f64 / n as f64;
    let t = Instant::now();
    for _ in 0..n {
        let r = c.find_by_id(&def, &id).await.unwrap().unwrap();
        std::hint::black_box(r.rest_json(&def).len());
    }
    let rendered = t.elapsed().as_nanos() as f64 / n as f64;
    eprintln!("find_by_id: {per:.0} ns; with rest_json: {rendered:.0} ns");
    let _ = std::fs::remove_dir_all(&dir);
}
