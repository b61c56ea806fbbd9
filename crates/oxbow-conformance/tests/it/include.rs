//! `include` is batched: one connector query per relation and level, whatever the number of
//! parents. The real memory connector is wrapped by a counter of the calls that reach it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};

use oxbow_core::connector::{BoxFuture, Modify};
use oxbow_core::filter::Where;
use oxbow_core::{
    Connector, Filter, MemoryConnector, Model, ModelDefinition, Record, Registry, Result, Row,
};

/// Counts `find` calls, then lets the memory connector answer.
struct Counting {
    inner: MemoryConnector,
    finds: AtomicUsize,
}

impl Connector for Counting {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn find<'a>(
        &'a self,
        model: &'a ModelDefinition,
        filter: &'a Filter,
    ) -> BoxFuture<'a, Result<Vec<Arc<Row>>>> {
        self.finds.fetch_add(1, Ordering::SeqCst);
        self.inner.find(model, filter)
    }
    fn find_by_id<'a>(
        &'a self,
        model: &'a ModelDefinition,
        id: &'a Value,
    ) -> BoxFuture<'a, Result<Option<Arc<Row>>>> {
        self.finds.fetch_add(1, Ordering::SeqCst);
        self.inner.find_by_id(model, id)
    }
    fn count<'a>(
        &'a self,
        model: &'a ModelDefinition,
        where_: Option<&'a Where>,
    ) -> BoxFuture<'a, Result<u64>> {
        self.inner.count(model, where_)
    }
    fn create<'a>(
        &'a self,
        model: &'a ModelDefinition,
        data: Vec<(String, Value)>,
    ) -> BoxFuture<'a, Result<Arc<Row>>> {
        self.inner.create(model, data)
    }
    fn replace_by_id<'a>(
        &'a self,
        model: &'a ModelDefinition,
        id: &'a Value,
        data: Record,
    ) -> BoxFuture<'a, Result<Option<Arc<Row>>>> {
        self.inner.replace_by_id(model, id, data)
    }
    fn modify_by_id<'a>(
        &'a self,
        model: &'a ModelDefinition,
        id: &'a Value,
        modify: Modify,
    ) -> BoxFuture<'a, Result<Option<Arc<Row>>>> {
        self.inner.modify_by_id(model, id, modify)
    }
    fn update_all<'a>(
        &'a self,
        model: &'a ModelDefinition,
        where_: Option<&'a Where>,
        patch: &'a Record,
    ) -> BoxFuture<'a, Result<u64>> {
        self.inner.update_all(model, where_, patch)
    }
    fn delete_by_id<'a>(
        &'a self,
        model: &'a ModelDefinition,
        id: &'a Value,
    ) -> BoxFuture<'a, Result<u64>> {
        self.inner.delete_by_id(model, id)
    }
    fn delete_all<'a>(
        &'a self,
        model: &'a ModelDefinition,
        where_: Option<&'a Where>,
    ) -> BoxFuture<'a, Result<u64>> {
        self.inner.delete_all(model, where_)
    }
}

fn object(v: Value) -> Record {
    match v {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

#[actix_web::test]
async fn include_over_a_hundred_parents_is_one_query_per_relation() {
    let plan = oxbow_config::load(&oxbow_conformance::repo_root().join("examples/shop"))
        .expect("shop app");
    let defs: Vec<Arc<ModelDefinition>> = plan.models.iter().cloned().map(Arc::new).collect();
    let counting = Arc::new(Counting {
        inner: MemoryConnector::new(defs.iter().map(|d| d.as_ref()), None).unwrap(),
        finds: AtomicUsize::new(0),
    });
    let models: Vec<Arc<Model>> = defs
        .iter()
        .map(|d| Arc::new(Model::new(d.clone(), counting.clone(), Default::default())))
        .collect();
    let registry = Registry::new(models);
    let customers = registry.model("Customer").unwrap().clone();
    let orders = registry.model("Order").unwrap().clone();
    for i in 0..100 {
        let c = customers
            .create(
                object(json!({"name": format!("c{i}"), "email": "x@y.z"})),
                &oxbow_core::Caller::anonymous(),
            )
            .await
            .unwrap();
        let id = c.value_of("id").unwrap();
        for j in 0..3 {
            orders
                .create(
                    object(json!({"code": format!("{i}-{j}"), "total": j, "customerId": id})),
                    &oxbow_core::Caller::anonymous(),
                )
                .await
                .unwrap();
        }
    }
    counting.finds.store(0, Ordering::SeqCst);
    let filter = customers
        .parse_filter(&json!({"include": {"orders": "customer"}}))
        .unwrap();
    let rows = customers
        .find(&filter, &oxbow_core::Caller::anonymous())
        .await
        .unwrap();
    let out: Vec<Value> = oxbow_core::relation::render(
        &registry,
        &customers,
        &rows,
        None,
        filter.include.as_ref(),
        &oxbow_core::Caller::anonymous(),
    )
    .await
    .unwrap()
    .iter()
    .map(|t| serde_json::from_str(t).unwrap())
    .collect();
    assert_eq!(out.len(), 100);
    assert!(
        out.iter()
            .all(|c| c["orders"].as_array().unwrap().len() == 3)
    );
    assert_eq!(out[42]["orders"][1]["customer"]["name"], "c42");
    // Customers, their orders, the orders' customers: three levels, three queries.
    assert_eq!(counting.finds.load(Ordering::SeqCst), 3);

    counting.finds.store(0, Ordering::SeqCst);
    let filter = customers
        .parse_filter(&json!({"include": "orders"}))
        .unwrap();
    let rows = customers
        .find(&filter, &oxbow_core::Caller::anonymous())
        .await
        .unwrap();
    oxbow_core::relation::render(
        &registry,
        &customers,
        &rows,
        None,
        filter.include.as_ref(),
        &oxbow_core::Caller::anonymous(),
    )
    .await
    .unwrap();
    assert_eq!(
        counting.finds.load(Ordering::SeqCst),
        2,
        "a hasMany include over 100 parents"
    );
}
