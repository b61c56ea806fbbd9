//! The [`Connector`] trait: the storage operations a datasource offers to the model layer.
//!
//! A connector stores and finds records; it never validates, never applies defaults and never
//! publishes change events (the model layer in `dao.rs` does, after the connector succeeded).
//! The trait is object-safe and its futures are `Send`, so SQL connectors can do real I/O.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::Value;

use crate::error::Result;
use crate::filter::{Filter, Where};
use crate::instance::Record;
use crate::model::ModelDefinition;
use crate::row::Row;

/// A boxed `Send` future, the return type of connector operations.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A read-modify-write step run by the connector on the stored record, atomically.
pub type Modify<'a> = Box<dyn FnOnce(&Record) -> Result<Record> + Send + 'a>;

/// Storage behind a datasource.
pub trait Connector: Send + Sync {
    /// The connector name as written in datasources.json (`memory`).
    fn name(&self) -> &str;

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
        modify: Modify<'a>,
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
