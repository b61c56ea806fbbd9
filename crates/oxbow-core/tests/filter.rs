//! The filter parser and evaluator on their own: each case is a filter and the ids it selects
//! from a fixed set of rows (or the error it is refused with).

use std::collections::HashSet;
use std::sync::Arc;

use oxbow_core::model::{ModelDefinition, ModelName, Property, PropertyType, Strict};
use oxbow_core::{Filter, Layout, Row};
use serde_json::{Value, json};

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
        name: ModelName::new("Item"),
        plural: "Items".into(),
        http_path: "Items".into(),
        base: "PersistedModel".into(),
        properties: vec![
            prop("name", PropertyType::String),
            prop("price", PropertyType::Number),
            prop("active", PropertyType::Boolean),
            prop("added", PropertyType::Date),
            prop(
                "tags",
                PropertyType::Array(Some(Box::new(PropertyType::String))),
            ),
            prop("address", PropertyType::Object),
            prop("secret", PropertyType::String),
            id,
        ],
        id_index: 7,
        force_id: true,
        strict: Strict::Off,
        hidden: HashSet::from(["secret".to_owned()]),
        validate_upsert: false,
        public: true,
        data_source: "db".into(),
        relations: Vec::new(),
        rules: None,
        remoting: Default::default(),
        auth: Default::default(),
        validations: Vec::new(),
        settings: Default::default(),
    }
}

fn rows() -> Vec<Arc<Row>> {
    let layout = Layout::of(&model());
    let data = json!([
        {"name":"alpha","price":10,"active":true,"added":"2024-01-15T00:00:00.000Z","tags":["a","b"],"address":{"city":"Oslo"},"secret":"s1","id":1},
        {"name":"beta","price":20.5,"active":false,"added":"2023-06-01T00:00:00.000Z","tags":[],"address":{"city":"Bergen"},"id":2},
        {"name":"Gamma","price":5,"tags":["b","c"],"address":{"city":"Oslo","parts":[{"sku":"p1"},{"sku":"p2"}]},"id":3},
        {"name":"delta.4","active":true,"id":4,"extra":"5"}
    ]);
    data.as_array()
        .unwrap()
        .iter()
        .map(|r| Arc::new(Row::from_record(&layout, r.as_object().unwrap().clone())))
        .collect()
}

fn ids(filter: Value) -> Result<Vec<i64>, String> {
    let def = model();
    let f = Filter::parse(&def, &filter).map_err(|e| format!("{} {e}", e.status()))?;
    let rows = rows();
    Ok(f.apply(rows.iter())
        .iter()
        .map(|r| r.get("id").unwrap().as_i64().unwrap())
        .collect())
}

#[test]
fn comparisons() {
    assert_eq!(ids(json!({"where": {"price": {"gt": 9}}})), Ok(vec![1, 2]));
    assert_eq!(
        ids(json!({"where": {"price": {"gte": "10"}}})),
        Ok(vec![1, 2])
    );
    assert_eq!(ids(json!({"where": {"price": {"lt": 10}}})), Ok(vec![3]));
    assert_eq!(
        ids(json!({"where": {"price": {"between": [5, 10]}}})),
        Ok(vec![1, 3])
    );
    assert_eq!(
        ids(json!({"where": {"price": {"gt": 4, "lt": 11}}})),
        Ok(vec![1, 3])
    );
    assert_eq!(ids(json!({"where": {"price": "20.5"}})), Ok(vec![2]));
    assert_eq!(
        ids(json!({"where": {"price": {"neq": 10}}})),
        Ok(vec![2, 3, 4])
    );
    assert_eq!(ids(json!({"where": {"active": "false"}})), Ok(vec![2]));
    assert_eq!(ids(json!({"where": {"active": null}})), Ok(vec![3]));
    assert_eq!(
        ids(json!({"where": {"added": {"gt": "2024-01-01"}}})),
        Ok(vec![1])
    );
    assert_eq!(ids(json!({"where": {"extra": 5}})), Ok(vec![4]));
}

#[test]
fn sets_patterns_and_logic() {
    assert_eq!(
        ids(json!({"where": {"id": {"inq": ["1", 3]}}})),
        Ok(vec![1, 3])
    );
    assert_eq!(
        ids(json!({"where": {"id": {"nin": {"0": 1, "1": 2}}}})),
        Ok(vec![3, 4])
    );
    assert_eq!(
        ids(json!({"where": {"name": {"like": "%a%"}}})),
        Ok(vec![1, 2, 3, 4])
    );
    assert_eq!(ids(json!({"where": {"name": {"like": "^G"}}})), Ok(vec![3]));
    assert_eq!(
        ids(json!({"where": {"name": {"ilike": "gamma"}}})),
        Ok(vec![3])
    );
    assert_eq!(
        ids(json!({"where": {"name": {"nlike": "a_"}}})),
        Ok(vec![2])
    );
    assert_eq!(
        ids(json!({"where": {"name": {"nilike": "^A%"}}})),
        Ok(vec![2, 3, 4])
    );
    assert_eq!(
        ids(json!({"where": {"name": {"regexp": "/^[a-b]/i"}}})),
        Ok(vec![1, 2])
    );
    assert_eq!(
        ids(
            json!({"where": {"or": [{"price": 5}, {"and": [{"active": true}, {"price": {"gt": 1}}]}]}})
        ),
        Ok(vec![1, 3])
    );
    assert_eq!(
        ids(json!({"where": {"nor": [{"active": true}]}})),
        Ok(vec![2, 3])
    );
    assert_eq!(ids(json!({"where": {"tags": "b"}})), Ok(vec![1, 3]));
    // Any element may match, an empty array matches `neq`, and so does a missing value.
    assert_eq!(
        ids(json!({"where": {"tags": {"neq": "a"}}})),
        Ok(vec![1, 2, 3, 4])
    );
    assert_eq!(
        ids(json!({"where": {"address.city": "Oslo"}})),
        Ok(vec![1, 3])
    );
    assert_eq!(
        ids(json!({"where": {"address.parts.sku": "p2"}})),
        Ok(vec![3])
    );
    // Hidden properties are dropped from queries: every row matches.
    assert_eq!(
        ids(json!({"where": {"secret": "nope"}})),
        Ok(vec![1, 2, 3, 4])
    );
}

#[test]
fn order_paging_and_fields() {
    assert_eq!(ids(json!({"order": "price DESC"})), Ok(vec![2, 1, 3, 4]));
    assert_eq!(
        ids(json!({"order": ["active DESC", "name ASC"]})),
        Ok(vec![1, 4, 2, 3])
    );
    assert_eq!(
        ids(json!({"order": "id", "skip": 1, "limit": 2})),
        Ok(vec![2, 3])
    );
    assert_eq!(ids(json!({"offset": 3})), Ok(vec![4]));
    let def = model();
    let f = Filter::parse(&def, &json!({"fields": {"name": true, "id": true}})).unwrap();
    assert_eq!(
        Value::Object(f.project(&*rows()[0]).unwrap()),
        json!({"name": "alpha", "id": 1})
    );
    let f = Filter::parse(&def, &json!({"fields": ["price"]})).unwrap();
    assert_eq!(
        Value::Object(f.project(&*rows()[0]).unwrap()),
        json!({"price": 10})
    );
}

#[test]
fn refused_filters() {
    let err = |f: Value| ids(f).unwrap_err();
    assert_eq!(
        err(json!({"limit": "abc"})),
        "400 The limit parameter \"abc\" is not valid"
    );
    assert_eq!(
        err(json!({"limit": -1})),
        "400 The limit parameter -1 is not valid"
    );
    assert_eq!(
        err(json!({"skip": -2})),
        "400 The offset/skip parameter -2 is not valid"
    );
    assert_eq!(
        err(json!({"order": "name UP"})),
        "400 The order \"name UP\" has invalid direction"
    );
    assert_eq!(err(json!({"order": [1]})), "400 The order 1 is not valid");
    assert_eq!(
        err(json!({"where": "x"})),
        "400 The where clause \"x\" is not an object"
    );
    assert_eq!(
        err(json!({"where": {"id": {"inq": 1}}})),
        "400 The id property has invalid clause {\"inq\":1}: Error: Value is not an array or object with sequential numeric indices"
    );
    assert_eq!(
        err(json!({"where": {"price": {"between": [1]}}})),
        "400 The price property has invalid clause {\"between\":[1]}: Expected precisely 2 values, received 1"
    );
    assert_eq!(
        err(json!({"where": {"name": {"like": 5}}})),
        "400 The name property has invalid clause {\"like\":5}: Expected a string or RegExp"
    );
    assert_eq!(
        err(json!({"where": {"name": {"regexp": "/a/x"}}})),
        "400 Invalid regex flags: x"
    );
    assert_eq!(
        err(json!({"where": {"added": "never"}})),
        "400 Invalid date: never"
    );
    assert_eq!(
        err(json!({"where": {"or": "x"}})),
        "400 The or operator has invalid clauses \"x\": Value is not an array or object with sequential numeric indices"
    );
    assert!(
        err(json!({"where": {"name": {"$gt": "a"}}}))
            .starts_with("400 Operators \"$gt\" are not allowed in query")
    );
    let mut deep = json!({"name": "x"});
    for _ in 0..8 {
        deep = json!({"and": [deep]});
    }
    assert_eq!(
        err(json!({"where": deep})),
        "400 The query object exceeds maximum depth 12"
    );
}
