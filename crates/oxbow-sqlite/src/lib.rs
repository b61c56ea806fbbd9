//! oxbow-sqlite: the SQLite connector (`"connector": "sqlite"`), embedded and bundled.
//!
//! A table per model ([`table`]), the filter language compiled to SQL ([`sql`]), reads inline
//! on the calling thread ([`read`]) and writes through one writer thread with group commit
//! ([`writer`]). A write is answered only after its transaction committed; with
//! `"synchronous": "full"` (the default) that commit is on disk (fsync of the WAL), so an
//! acknowledged write survives a crash of the process or of the machine.

pub mod read;
pub mod table;
pub mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::params_from_iter;
use serde_json::Value;

use oxbow_core::connector::{BoxFuture, Connector, Modify};
use oxbow_core::error::{Error, Result};
use oxbow_core::filter::{Filter, Where};
use oxbow_core::instance::Record;
use oxbow_core::model::ModelDefinition;
use oxbow_core::row::Row;

use oxbow_sql::cache::{Key, Lookup};
use oxbow_sql::compile;
use read::{Database, query_rows, sql_error, with_reader};
use table::Table;
use writer::{Done, Op, Writer};

/// `synchronous`: how far a commit goes before a write is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    /// fsync on every commit: acknowledged writes survive power loss (default).
    Full,
    /// No fsync on commit (WAL): acknowledged writes survive a process crash, the last
    /// commits may be lost on power loss.
    Normal,
}

/// Rows kept per table for point reads unless `cacheRows` says otherwise.
pub const DEFAULT_CACHE_ROWS: usize = 10_000;

/// A problem opening the database at boot.
#[derive(Debug, thiserror::Error)]
#[error("SQLite database `{path}`: {message}")]
pub struct OpenError {
    pub path: PathBuf,
    pub message: String,
}

/// The SQLite connector of one datasource.
pub struct SqliteConnector {
    db: Arc<Database>,
    tables: HashMap<String, Arc<Table>>,
    writer: Writer,
}

impl std::fmt::Debug for SqliteConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteConnector")
            .field("path", &self.db.path)
            .finish_non_exhaustive()
    }
}

impl SqliteConnector {
    /// Opens (creating) the database at `path` in WAL mode, creates or extends the tables of
    /// `models` (LoopBack's autoupdate: columns are added, never dropped) and starts the
    /// writer.
    pub fn open<'a>(
        path: &Path,
        models: impl IntoIterator<Item = &'a ModelDefinition>,
        synchronous: Synchronous,
        cache_rows: usize,
    ) -> std::result::Result<Self, OpenError> {
        let fail = |message: String| OpenError {
            path: path.to_owned(),
            message,
        };
        let conn = read::open(path, false).map_err(|e| fail(e.to_string()))?;
        let sync = match synchronous {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        };
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; BEGIN IMMEDIATE"
        ))
        .map_err(|e| fail(e.to_string()))?;
        conn.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {} (model TEXT PRIMARY KEY NOT NULL, next REAL NOT NULL)",
            writer::IDS
        ))
        .map_err(|e| fail(e.to_string()))?;
        let mut tables = HashMap::new();
        for def in models {
            if def.id_property().id.is_none() {
                // A plain Model: nothing to store.
                continue;
            }
            let table = Table::migrate(&conn, def, cache_rows)
                .map_err(|e| fail(format!("model `{}`: {e}", def.name)))?;
            tables.insert(def.name.to_string(), Arc::new(table));
        }
        conn.execute_batch("COMMIT")
            .map_err(|e| fail(e.to_string()))?;
        let writer = Writer::start(
            conn,
            &path.display().to_string(),
            tables.values().cloned().collect(),
        )
        .map_err(|e| fail(e.to_string()))?;
        Ok(Self {
            db: Arc::new(Database {
                path: path.to_owned(),
            }),
            tables,
            writer,
        })
    }

    fn table(&self, model: &ModelDefinition) -> Result<&Arc<Table>> {
        self.tables.get(model.name.as_str()).ok_or_else(|| {
            Error::internal(format!(
                "model `{}` has no table in this SQLite datasource",
                model.name
            ))
        })
    }

    fn write<'a, T: Send + 'a>(
        &'a self,
        model: &'a ModelDefinition,
        op: Op,
        answer: fn(Done) -> Option<T>,
    ) -> BoxFuture<'a, Result<T>> {
        Box::pin(async move {
            let table = self.table(model)?.clone();
            let done = self.writer.write(table, op).await?;
            answer(done).ok_or_else(|| Error::internal("the SQLite writer answered another write"))
        })
    }

    /// Rows matching `where_` (all of them when it is not exactly SQL), in id order.
    fn candidates(&self, table: &Table, w: &oxbow_sql::Compiled) -> Result<Vec<Arc<Row>>> {
        let q = compile::candidates_sql(table, w);
        with_reader(&self.db, |conn| {
            query_rows(conn, table, &q, w.params.clone())
        })
    }
}

fn ready<'a, T: Send + 'a>(v: T) -> BoxFuture<'a, T> {
    Box::pin(std::future::ready(v))
}

impl Connector for SqliteConnector {
    fn name(&self) -> &str {
        "sqlite"
    }

    fn find<'a>(
        &'a self,
        model: &'a ModelDefinition,
        filter: &'a Filter,
    ) -> BoxFuture<'a, Result<Vec<Arc<Row>>>> {
        ready((|| {
            let table = self.table(model)?;
            let w = compile::compile_where(table, filter.where_.as_ref());
            if let Some((q, params)) = compile::select_sql(table, filter, &w) {
                return with_reader(&self.db, |conn| query_rows(conn, table, &q, params));
            }
            let rows = self.candidates(table, &w)?;
            Ok(filter.apply(rows.iter()))
        })())
    }

    fn find_by_id<'a>(
        &'a self,
        model: &'a ModelDefinition,
        id: &'a Value,
    ) -> BoxFuture<'a, Result<Option<Arc<Row>>>> {
        ready((|| {
            let table = self.table(model)?;
            let sql_id = table.id_param(id);
            let ticket = match table.cache.lookup(Key::of(&sql_id)) {
                Lookup::Hit(row) => return Ok(Some(row)),
                Lookup::Miss(ticket) => ticket,
            };
            let row = with_reader(&self.db, |conn| {
                Ok(query_rows(conn, table, &table.by_id, vec![sql_id.clone()])?.pop())
            })?;
            table.cache.fill(ticket, row.as_ref());
            Ok(row)
        })())
    }

    fn count<'a>(
        &'a self,
        model: &'a ModelDefinition,
        where_: Option<&'a Where>,
    ) -> BoxFuture<'a, Result<u64>> {
        ready((|| {
            let table = self.table(model)?;
            let w = compile::compile_where(table, where_);
            if !w.exact {
                let rows = self.candidates(table, &w)?;
                let matches = |r: &&Arc<Row>| where_.is_none_or(|w| w.matches(&***r));
                return Ok(rows.iter().filter(matches).count() as u64);
            }
            let q = compile::count_sql(table, &w);
            with_reader(&self.db, |conn| {
                conn.prepare_cached(&q)
                    .and_then(|mut s| {
                        s.query_row(params_from_iter(table::sql_values(w.params)), |r| {
                            r.get::<_, i64>(0)
                        })
                    })
                    .map(|n| n as u64)
                    .map_err(|e| sql_error(&e))
            })
        })())
    }

    fn create<'a>(
        &'a self,
        model: &'a ModelDefinition,
        data: Vec<(String, Value)>,
    ) -> BoxFuture<'a, Result<Arc<Row>>> {
        self.write(model, Op::Create(data), |d| match d {
            Done::Row(r) => Some(r),
            _ => None,
        })
    }

    fn creates_all_or_none(&self) -> bool {
        true
    }

    fn create_all<'a>(
        &'a self,
        model: &'a ModelDefinition,
        items: Vec<Vec<(String, Value)>>,
    ) -> BoxFuture<'a, Result<Vec<Arc<Row>>>> {
        self.write(model, Op::CreateAll(items), |d| match d {
            Done::Rows(r) => Some(r),
            _ => None,
        })
    }

    fn replace_by_id<'a>(
        &'a self,
        model: &'a ModelDefinition,
        id: &'a Value,
        data: Record,
    ) -> BoxFuture<'a, Result<Option<Arc<Row>>>> {
        self.write(model, Op::Replace(id.clone(), data), maybe)
    }

    fn modify_by_id<'a>(
        &'a self,
        model: &'a ModelDefinition,
        id: &'a Value,
        modify: Modify,
    ) -> BoxFuture<'a, Result<Option<Arc<Row>>>> {
        self.write(model, Op::Modify(id.clone(), modify), maybe)
    }

    fn update_all<'a>(
        &'a self,
        model: &'a ModelDefinition,
        where_: Option<&'a Where>,
        patch: &'a Record,
    ) -> BoxFuture<'a, Result<u64>> {
        self.write(model, Op::UpdateAll(where_.cloned(), patch.clone()), count)
    }

    fn delete_by_id<'a>(
        &'a self,
        model: &'a ModelDefinition,
        id: &'a Value,
    ) -> BoxFuture<'a, Result<u64>> {
        self.write(model, Op::DeleteById(id.clone()), count)
    }

    fn delete_all<'a>(
        &'a self,
        model: &'a ModelDefinition,
        where_: Option<&'a Where>,
    ) -> BoxFuture<'a, Result<u64>> {
        self.write(model, Op::DeleteAll(where_.cloned()), count)
    }
}

fn maybe(d: Done) -> Option<Option<Arc<Row>>> {
    match d {
        Done::Maybe(r) => Some(r),
        _ => None,
    }
}

fn count(d: Done) -> Option<u64> {
    match d {
        Done::Count(n) => Some(n),
        _ => None,
    }
}
