//! The [`Connector`] trait: the storage operations a datasource offers to the model layer.
//!
//! A connector stores and finds records; it never validates, never applies defaults and never
//! publishes change events (the model layer in `dao.rs` does, after the connector succeeded).
//! A connector that keeps a [`ChangeLog`] instead appends each write's [`ChangeNote`]
//! (`crate::change::ChangeNote`) to it inside the write's own transaction.
//! The trait is object-safe and its futures are `Send`, so SQL connectors can do real I/O.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::Value;

use crate::change::ChangeLog;
use crate::error::Result;
use crate::filter::{Filter, Where};
use crate::instance::Record;
use crate::js;
use crate::model::{ModelDefinition, PropertyType};
use crate::row::Row;

/// A boxed `Send` future, the return type of connector operations.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A read-modify-write step run by the connector on the stored record, atomically. It owns
/// what it needs (`'static`): a SQL connector runs it on its writer thread.
pub type Modify = Box<dyn FnOnce(&Record) -> Result<Record> + Send + 'static>;

/// Storage behind a datasource.
pub trait Connector: Send + Sync {
    /// The connector name as written in datasources.json (`memory`).
    fn name(&self) -> &str;

    /// The durable change log this connector appends every write's change to, in the write's
    /// transaction (the event of each write exactly as `ChangeNote` makes it for that
    /// operation: `record` after create/replace/modify when a row was written, `update_all`,
    /// `delete_by_id` even when nothing was deleted, `delete_all`). `None`: the model layer
    /// publishes to an in-process feed.
    fn change_log(&self) -> Option<Arc<dyn ChangeLog>> {
        None
    }

    /// Rows matching `filter.where_`, ordered (by id when `filter.order` is empty), with
    /// `skip`/`limit` applied. Field selection and `include` are the model layer's work.
    fn find<'a>(
        &'a self,
        model: &'a ModelDefinition,
        filter: &'a Filter,
    ) -> BoxFuture<'a, Result<Vec<Arc<Row>>>>;

    fn find_by_id<'a>(
        &'a self,
        model: &'a ModelDefinition,
        id: &'a Value,
    ) -> BoxFuture<'a, Result<Option<Arc<Row>>>>;

    fn count<'a>(
        &'a self,
        model: &'a ModelDefinition,
        where_: Option<&'a Where>,
    ) -> BoxFuture<'a, Result<u64>>;

    /// Inserts a record, generating the id when it is missing. 409 on a duplicate id.
    /// `data` is the validated instance's properties in canonical order.
    fn create<'a>(
        &'a self,
        model: &'a ModelDefinition,
        data: Vec<(String, Value)>,
    ) -> BoxFuture<'a, Result<Arc<Row>>>;

    /// Whether [`Connector::create_all`] writes all or none (one transaction). The model layer
    /// creates an array body with it then, and one by one otherwise, as LoopBack's memory
    /// connector does.
    fn creates_all_or_none(&self) -> bool {
        false
    }

    /// Inserts several records; with [`Connector::creates_all_or_none`], in one transaction,
    /// so an error (409 on a duplicate id) leaves nothing written. The default creates them
    /// one after another and stops at the first error.
    fn create_all<'a>(
        &'a self,
        model: &'a ModelDefinition,
        items: Vec<Vec<(String, Value)>>,
    ) -> BoxFuture<'a, Result<Vec<Arc<Row>>>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(items.len());
            for data in items {
                out.push(self.create(model, data).await?);
            }
            Ok(out)
        })
    }

    /// Inserts several records one after another, stopping at the first error, as LoopBack's
    /// memory connector creates an array: the rows written before it and the error. A
    /// connector that persists to a file makes them durable together (one write for the
    /// array). The default calls [`Connector::create`] for each.
    fn create_each<'a>(
        &'a self,
        model: &'a ModelDefinition,
        items: Vec<Vec<(String, Value)>>,
    ) -> BoxFuture<'a, (Vec<Arc<Row>>, Option<crate::error::Error>)> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(items.len());
            for data in items {
                match self.create(model, data).await {
                    Ok(row) => out.push(row),
                    Err(e) => return (out, Some(e)),
                }
            }
            (out, None)
        })
    }

    /// Replaces a stored record whole; `None` when the id does not exist.
    fn replace_by_id<'a>(
        &'a self,
        model: &'a ModelDefinition,
        id: &'a Value,
        data: Record,
    ) -> BoxFuture<'a, Result<Option<Arc<Row>>>>;

    /// Replaces the record with `id` by what `modify` makes of it, atomically; `None` when the
    /// id does not exist. An error from `modify` leaves the record unchanged.
    fn modify_by_id<'a>(
        &'a self,
        model: &'a ModelDefinition,
        id: &'a Value,
        modify: Modify,
    ) -> BoxFuture<'a, Result<Option<Arc<Row>>>>;

    /// Merges `patch` into every matching record; returns how many matched.
    fn update_all<'a>(
        &'a self,
        model: &'a ModelDefinition,
        where_: Option<&'a Where>,
        patch: &'a Record,
    ) -> BoxFuture<'a, Result<u64>>;

    fn delete_by_id<'a>(
        &'a self,
        model: &'a ModelDefinition,
        id: &'a Value,
    ) -> BoxFuture<'a, Result<u64>>;

    fn delete_all<'a>(
        &'a self,
        model: &'a ModelDefinition,
        where_: Option<&'a Where>,
    ) -> BoxFuture<'a, Result<u64>>;
}

/// Converts an id to the id property's type, as LoopBack does before storing.
pub fn typed_id(model: &ModelDefinition, id: Value) -> Value {
    match model.id_property().ty {
        PropertyType::Number => match js::to_number(&id) {
            Some(n) if n.is_finite() => js::number_value(n),
            _ => id,
        },
        PropertyType::String => match id {
            Value::String(_) => id,
            other => Value::String(js::to_js_string(&other)),
        },
        _ => id,
    }
}

/// Whether a given id counts as given: LoopBack treats a falsy id (0, "", null) as "no id".
pub fn is_truthy_id(v: &Value) -> bool {
    crate::js::truthy(v)
}

/// The largest number id a client may give: the counter moves past every id stored, so this
/// leaves it 2^52 ids of room before ids stop being exact integers (2^53). LoopBack stores any
/// number, and past 2^53 its counter can no longer move (every later create a 409).
pub const MAX_GIVEN_ID: f64 = 4_503_599_627_370_496.0;

/// The largest id the counter hands out: every id up to it is exact in a JavaScript number,
/// an `f64` and a 64-bit integer column.
pub const MAX_GENERATED_ID: f64 = 9_007_199_254_740_991.0;

/// The memory connector's id rule, which every connector follows: ids come from a counter per
/// model that every create moves past the id it used (a given id included), and a falsy id
/// counts as none. Puts the new record's id into `data` (typed as the id property) and returns
/// the counter's next value; `current` is the counter (1 for a model without one yet).
///
/// A number id beyond [`MAX_GIVEN_ID`] either way is a 422 naming it, so that no stored id
/// leaves the counter unable to go on; a counter past [`MAX_GENERATED_ID`] refuses to hand
/// out an id that would not be exact (507) rather than repeat one.
pub fn assign_id(
    def: &ModelDefinition,
    data: &mut Vec<(String, Value)>,
    current: f64,
) -> Result<f64> {
    let id_name = def.id_name();
    let given = data
        .iter()
        .find(|(k, _)| k == id_name)
        .map(|(_, v)| v)
        .filter(|v| is_truthy_id(v))
        .cloned();
    let mut current = current;
    let id = match given {
        Some(id) => {
            let id = typed_id(def, id);
            if let Some(n) = js::to_number_opt(&id) {
                if def.id_property().ty == PropertyType::Number
                    && (n.is_nan() || n.abs() > MAX_GIVEN_ID)
                {
                    return Err(id_out_of_range(def, &id));
                }
                if n > current {
                    current = n;
                }
            }
            id
        }
        None => {
            if current.is_nan() || current > MAX_GENERATED_ID {
                return Err(crate::error::Error::status_error(
                    507,
                    format!("the id counter of {} is past {MAX_GENERATED_ID}", def.name),
                ));
            }
            typed_id(def, js::number_value(current))
        }
    };
    match data.iter_mut().find(|(k, _)| k == id_name) {
        Some((_, v)) => *v = id,
        None => data.push((id_name.to_owned(), id)),
    }
    Ok(current + 1.0)
}

/// The 422 for a given number id beyond [`MAX_GIVEN_ID`].
fn id_out_of_range(def: &ModelDefinition, id: &Value) -> crate::error::Error {
    crate::error::Error::Validation(crate::error::ValidationError {
        model: def.name.to_string(),
        violations: vec![crate::error::Violation {
            property: def.id_name().to_owned(),
            code: "range",
            message: "is out of range (at most 4503599627370496 either way)",
            shown_value: js::number_as_parsed(id),
        }],
    })
}
