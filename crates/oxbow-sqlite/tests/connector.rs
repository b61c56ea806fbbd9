//! The SQLite connector outside HTTP: the point-read cache stays coherent with writes through
//! oxbow and by other processes; and a timing of the point read (`cargo test --release -p
//! oxbow-sqlite --test connector -- --ignored --nocapture`, a profiling tool, not an
//! assertion).

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
        remoting: Default::default(),
        auth: Default::default(),
        validations: Vec::new(),
        settings: Map::new(),
    }
}

fn scratch(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("oxbow-sqlite-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn item(name: &str, price: i64) -> Vec<(String, Value)> {
    vec![
        ("name".to_owned(), json!(name)),
        ("price".to_owned(), json!(price)),
    ]
}

#[tokio::test]
async fn cached_rows_follow_every_write() {
    let dir = scratch("coherent");
    let def = model();
    let c = oxbow_sqlite::SqliteConnector::open(
        &dir.join("db.sqlite"),
        [&def],
        oxbow_sqlite::Synchronous::Normal,
        100,
    )
    .unwrap();
    let price = |r: Option<std::sync::Arc<oxbow_core::Row>>| r.map(|r| r.value_of("price"));
    c.create(&def, item("a", 1)).await.unwrap();
    c.create(&def, item("b", 2)).await.unwrap();
    let one = Value::from(1);
    assert_eq!(
        price(c.find_by_id(&def, &one).await.unwrap()),
        Some(Some(json!(1)))
    );
    // Cached now; each kind of write must be seen by the next point read.
    let mut rec = oxbow_core::Record::new();
    rec.insert("name".into(), json!("a"));
    rec.insert("price".into(), json!(10));
    c.replace_by_id(&def, &one, rec).await.unwrap();
    assert_eq!(
        price(c.find_by_id(&def, &one).await.unwrap()),
        Some(Some(json!(10)))
    );
    c.modify_by_id(
        &def,
        &one,
        Box::new(|r: &oxbow_core::Record| {
            let mut r = r.clone();
            r.insert("price".into(), json!(11));
            Ok(r)
        }),
    )
    .await
    .unwrap();
    assert_eq!(
        price(c.find_by_id(&def, &one).await.unwrap()),
        Some(Some(json!(11)))
    );
    let mut patch = oxbow_core::Record::new();
    patch.insert("price".into(), json!(12));
    c.update_all(&def, None, &patch).await.unwrap();
    assert_eq!(
        price(c.find_by_id(&def, &one).await.unwrap()),
        Some(Some(json!(12)))
    );
    c.delete_by_id(&def, &one).await.unwrap();
    assert_eq!(price(c.find_by_id(&def, &one).await.unwrap()), None);
    let two = Value::from(2);
    assert_eq!(
        price(c.find_by_id(&def, &two).await.unwrap()),
        Some(Some(json!(12)))
    );
    c.delete_all(&def, None).await.unwrap();
    assert_eq!(price(c.find_by_id(&def, &two).await.unwrap()), None);

    // Another process writes the file: seen within the writer's check interval.
    c.create(&def, item("c", 3)).await.unwrap();
    let three = Value::from(3);
    assert_eq!(
        price(c.find_by_id(&def, &three).await.unwrap()),
        Some(Some(json!(3)))
    );
    let other = rusqlite::Connection::open(dir.join("db.sqlite")).unwrap();
    other
        .execute("UPDATE \"Product\" SET \"price\" = 30 WHERE \"id\" = 3", [])
        .unwrap();
    drop(other);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let p = price(c.find_by_id(&def, &three).await.unwrap());
        if p == Some(Some(json!(30))) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "an outside write never seen: {p:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
#[ignore = "timing tool"]
async fn point_read_timing() {
    let dir = scratch("timing");
    let def = model();
    let c = oxbow_sqlite::SqliteConnector::open(
        &dir.join("db.sqlite"),
        [&def],
        oxbow_sqlite::Synchronous::Normal,
        std::env::var("CACHE_ROWS")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(0),
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
