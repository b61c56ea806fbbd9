//! Operation hooks (LoopBack's `Model.observe(name, fn)`): Rust functions a boot plugin
//! registers on a model, called by the model layer around every read and write with
//! LoopBack's context. A hook may change the data or the query, or reject the operation with
//! an [`Error`] that becomes the error body.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use serde_json::{Map, Value};

use crate::connector::BoxFuture;
use crate::error::Result;
use crate::instance::Record;

/// The operations LoopBack notifies observers of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Before a query (find, findById, count, and the look-ups of updates and deletes):
    /// `where_` may be changed.
    Access,
    /// Before a write: `instance` (create, replace) or `data` + `where_` (patch, updateAll),
    /// with `current_instance` for a patch of one record. Changes are written.
    BeforeSave,
    /// After a write: `instance` as stored (or `data` + `where_` for updateAll).
    AfterSave,
    /// Before a delete: `where_`.
    BeforeDelete,
    /// After a delete: `where_`.
    AfterDelete,
    /// Each record read from the connector (`data`); changes are what the client sees.
    Loaded,
    /// Just before the connector writes: `data` as it will be stored.
    Persist,
}

impl Operation {
    /// LoopBack's names: `"access"`, `"before save"`, …
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "access" => Self::Access,
            "before save" => Self::BeforeSave,
            "after save" => Self::AfterSave,
            "before delete" => Self::BeforeDelete,
            "after delete" => Self::AfterDelete,
            "loaded" => Self::Loaded,
            "persist" => Self::Persist,
            _ => return None,
        })
    }
}

/// What a hook sees and may change (LoopBack's `ctx`).
#[derive(Debug, Clone, Default)]
pub struct HookContext {
    /// The model's name (`ctx.Model.modelName`).
    pub model: String,
    /// The query's `where` (`ctx.query.where` / `ctx.where`), LoopBack's JSON form.
    pub where_: Option<Value>,
    /// The whole instance being created or replaced, or written (`ctx.instance`).
    pub instance: Option<Record>,
    /// A partial update, or a record as persisted or loaded (`ctx.data`).
    pub data: Option<Record>,
    /// The stored record a partial update applies to (`ctx.currentInstance`).
    pub current_instance: Option<Record>,
    /// `ctx.isNewInstance`: true for creates, false for updates, unset otherwise.
    pub is_new_instance: Option<bool>,
    /// `ctx.options`, for hooks to pass information along.
    pub options: Map<String, Value>,
    /// Who is calling (what LoopBack keeps in `ctx.options.accessToken`); anonymous for
    /// in-process calls.
    pub caller: crate::caller::Caller,
}

/// A registered hook.
pub type Hook = Arc<dyn for<'a> Fn(&'a mut HookContext) -> BoxFuture<'a, Result<()>> + Send + Sync>;

/// The hooks of one model. Registration happens at boot; the write path checks one flag when
/// nothing is registered.
#[derive(Default)]
pub struct Hooks {
    table: RwLock<HashMap<Operation, Vec<Hook>>>,
    any: AtomicBool,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let table = self.table.read().unwrap_or_else(|e| e.into_inner());
        let counts: HashMap<&Operation, usize> = table.iter().map(|(k, v)| (k, v.len())).collect();
        f.debug_struct("Hooks")
            .field("registered", &counts)
            .finish()
    }
}

impl Hooks {
    pub fn observe(&self, op: Operation, hook: Hook) {
        self.table
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(op)
            .or_default()
            .push(hook);
        self.any.store(true, Ordering::Release);
    }

    /// Whether any hook is registered for `op`.
    pub fn has(&self, op: Operation) -> bool {
        self.any.load(Ordering::Acquire)
            && self
                .table
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&op)
                .is_some_and(|v| !v.is_empty())
    }

    /// Runs the hooks of `op` in registration order; the first error stops the operation.
    pub async fn notify(&self, op: Operation, ctx: &mut HookContext) -> Result<()> {
        if !self.any.load(Ordering::Acquire) {
            return Ok(());
        }
        let hooks: Vec<Hook> = self
            .table
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&op)
            .cloned()
            .unwrap_or_default();
        for h in hooks {
            h(ctx).await?;
        }
        Ok(())
    }
}
