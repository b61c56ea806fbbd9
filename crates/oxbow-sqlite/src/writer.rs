//! The one writer of a database: a thread that owns the read-write connection and commits the
//! writes waiting for it together (group commit).
//!
//! Writes queue on a channel. The thread takes everything queued, runs each write in its own
//! savepoint inside one transaction (a failing write is rolled back alone), commits once, and
//! only then answers each caller. While the commit's fsync runs, new writes queue up for the
//! next group, so the fsync cost is shared by every write in flight.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::{Connection, params_from_iter};
use serde_json::Value;
use tokio::sync::oneshot;

use oxbow_core::connector::{Modify, assign_id};
use oxbow_core::error::{Error, Result};
use oxbow_core::filter::Where;
use oxbow_core::instance::Record;
use oxbow_core::memory::merge_patch;
use oxbow_core::row::Row;

use crate::read::{query_rows, sql_error};
use crate::table::{Table, sql_value, sql_values};
use oxbow_sql::cache::Key;
use oxbow_sql::compile::{candidates_sql, compile_where, delete_sql};

/// The id counters, one row per model (the memory connector's `ids`).
pub const IDS: &str = "_oxbow_ids";

/// At most this many writes share a commit.
const MAX_GROUP: usize = 512;

/// A write for the writer thread.
pub enum Op {
    Create(Vec<(String, Value)>),
    /// An array create: all rows or none (one savepoint).
    CreateAll(Vec<Vec<(String, Value)>>),
    Replace(Value, Record),
    Modify(Value, Modify),
    UpdateAll(Option<Where>, Record),
    DeleteById(Value),
    DeleteAll(Option<Where>),
}

/// What a write answers.
pub enum Done {
    Row(Arc<Row>),
    Rows(Vec<Arc<Row>>),
    Maybe(Option<Arc<Row>>),
    Count(u64),
    /// Failed after changing what must stay changed (the id counter): committed all the same.
    Failed(Error),
}

struct Job {
    table: Arc<Table>,
    op: Op,
    reply: oneshot::Sender<Result<Done>>,
}

/// The handle writes are sent through.
#[derive(Debug, Clone)]
pub struct Writer {
    tx: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").finish_non_exhaustive()
    }
}

impl Writer {
    /// Starts the writer thread on `conn` for `tables`; it ends when the last handle is
    /// dropped.
    pub fn start(conn: Connection, name: &str, tables: Vec<Arc<Table>>) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name(format!("sqlite-writer-{name}"))
            .spawn(move || run(conn, rx, tables))?;
        Ok(Self { tx })
    }

    /// Queues a write and waits for its commit.
    pub async fn write(&self, table: Arc<Table>, op: Op) -> Result<Done> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Job { table, op, reply })
            .map_err(|_| Error::internal("the SQLite writer has stopped"))?;
        answer
            .await
            .map_err(|_| Error::internal("the SQLite writer has stopped"))?
    }
}

/// How often an idle writer looks for commits by other processes.
const EXTERNAL_CHECK: Duration = Duration::from_millis(200);

/// The cached rows a committed write makes stale.
enum Stale {
    None,
    Row(Key),
    All,
}

fn stale(table: &Table, op: &Op) -> Stale {
    let by_id = |id: &Value| Key::of(&table.id_param(id)).map_or(Stale::All, Stale::Row);
    match op {
        Op::Create(_) | Op::CreateAll(_) => Stale::None,
        Op::Replace(id, _) | Op::Modify(id, _) | Op::DeleteById(id) => by_id(id),
        Op::UpdateAll(..) | Op::DeleteAll(_) => Stale::All,
    }
}

fn run(conn: Connection, rx: mpsc::Receiver<Job>, tables: Vec<Arc<Table>>) {
    let data_version = |conn: &Connection| {
        conn.query_row("PRAGMA data_version", [], |r| r.get::<_, i64>(0))
            .ok()
    };
    let mut seen = data_version(&conn);
    // Another process (or a tool) committed: nothing cached can be trusted.
    let mut check_external = |conn: &Connection| {
        let now = data_version(conn);
        if now != seen {
            seen = now;
            tables.iter().for_each(|t| t.cache.clear());
        }
    };
    loop {
        let first = match rx.recv_timeout(EXTERNAL_CHECK) {
            Ok(job) => job,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                check_external(&conn);
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        check_external(&conn);
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            for job in group {
                let _ = job.reply.send(Err(sql_error(&e)));
            }
            continue;
        }
        let mut answers = Vec::with_capacity(group.len());
        for job in group {
            let stale = stale(&job.table, &job.op);
            let result = conn
                .execute_batch("SAVEPOINT op")
                .map_err(|e| sql_error(&e))
                .and_then(|()| {
                    std::panic::catch_unwind(AssertUnwindSafe(|| apply(&conn, &job.table, job.op)))
                        .unwrap_or_else(|_| Err(Error::internal("a write panicked")))
                });
            let end = if result.is_ok() {
                "RELEASE op"
            } else {
                "ROLLBACK TO op; RELEASE op"
            };
            let result = match conn.execute_batch(end) {
                Ok(()) => result,
                Err(e) => Err(sql_error(&e)),
            };
            let result = match result {
                Ok(Done::Failed(e)) => Err(e),
                other => other,
            };
            answers.push((job.table, stale, job.reply, result));
        }
        match conn.execute_batch("COMMIT") {
            Ok(()) => {
                // Stale rows go before anyone hears of the write.
                for (table, stale, _, result) in &answers {
                    match (stale, result) {
                        (_, Err(_)) | (Stale::None, _) => {}
                        (Stale::Row(key), Ok(_)) => table.cache.forget(key),
                        (Stale::All, Ok(_)) => table.cache.clear(),
                    }
                }
                for (_, _, reply, result) in answers {
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "SQLite commit failed; the group's writes are lost");
                let _ = conn.execute_batch("ROLLBACK");
                for (table, _, reply, _) in answers {
                    table.cache.clear();
                    let _ = reply.send(Err(sql_error(&e)));
                }
            }
        }
    }
}

fn apply(conn: &Connection, table: &Table, op: Op) -> Result<Done> {
    let def = &table.def;
    match op {
        Op::Create(mut data) => {
            let model = def.name.to_string();
            let next = assign_id(def, &mut data, next_id(conn, &model)?)?;
            set_next_id(conn, &model, next)?;
            let values = table.encode(data.iter().map(|(k, v)| (k.as_str(), v)));
            let mut stmt = conn
                .prepare_cached(&table.insert)
                .map_err(|e| sql_error(&e))?;
            match stmt.execute(params_from_iter(sql_values(values))) {
                Ok(_) => Ok(Done::Row(Arc::new(Row::from_entries(&table.layout, data)))),
                // The counter moved all the same, as in the memory connector.
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    Ok(Done::Failed(Error::Conflict {
                        message: format!("Duplicate entry for {}.{}", def.name, def.id_name()),
                    }))
                }
                Err(e) => Err(sql_error(&e)),
            }
        }
        Op::CreateAll(items) => {
            let mut rows = Vec::with_capacity(items.len());
            for data in items {
                match apply(conn, table, Op::Create(data))? {
                    Done::Row(row) => rows.push(row),
                    // A failure undoes the whole array, counter included.
                    Done::Failed(e) => return Err(e),
                    _ => return Err(Error::internal("a create answered something else")),
                }
            }
            Ok(Done::Rows(rows))
        }
        Op::Replace(id, mut data) => {
            data.insert(def.id_name().to_owned(), id.clone());
            Ok(Done::Maybe(write_back(conn, table, &id, data)?))
        }
        Op::Modify(id, modify) => {
            let Some(current) = find_one(conn, table, &id)? else {
                return Ok(Done::Maybe(None));
            };
            let next = modify(&current.to_record())?;
            Ok(Done::Maybe(write_back(conn, table, &id, next)?))
        }
        Op::UpdateAll(where_, patch) => {
            let rows = matching(conn, table, where_.as_ref())?;
            let id_name = def.id_name();
            for row in &rows {
                let Some(id) = row.value_of(id_name) else {
                    continue;
                };
                write_back(conn, table, &id, merge_patch(def, &row.to_record(), &patch))?;
            }
            Ok(Done::Count(rows.len() as u64))
        }
        Op::DeleteById(id) => {
            let n = conn
                .prepare_cached(&table.delete)
                .and_then(|mut s| s.execute([sql_value(table.id_param(&id))]))
                .map_err(|e| sql_error(&e))?;
            Ok(Done::Count(n as u64))
        }
        Op::DeleteAll(where_) => {
            let w = compile_where(table, where_.as_ref());
            if w.exact {
                let sql = delete_sql(table, &w);
                let n = conn
                    .execute(&sql, params_from_iter(sql_values(w.params)))
                    .map_err(|e| sql_error(&e))?;
                return Ok(Done::Count(n as u64));
            }
            let rows = matching(conn, table, where_.as_ref())?;
            let id_name = def.id_name();
            for row in &rows {
                if let Some(id) = row.value_of(id_name) {
                    conn.execute(&table.delete, [sql_value(table.id_param(&id))])
                        .map_err(|e| sql_error(&e))?;
                }
            }
            Ok(Done::Count(rows.len() as u64))
        }
    }
}

/// The id counter of a model (1 when it has none yet).
fn next_id(conn: &Connection, model: &str) -> Result<f64> {
    let mut stmt = conn
        .prepare_cached(&format!("SELECT next FROM {} WHERE model = ?1", IDS))
        .map_err(|e| sql_error(&e))?;
    match stmt.query_row([model], |r| r.get::<_, f64>(0)) {
        Ok(n) => Ok(n),
        Err(rusqlite::Error::QueryReturnedNoRows) => Ok(1.0),
        Err(e) => Err(sql_error(&e)),
    }
}

fn set_next_id(conn: &Connection, model: &str, next: f64) -> Result<()> {
    conn.prepare_cached(&format!(
        "INSERT INTO {} (model, next) VALUES (?1, ?2) ON CONFLICT (model) DO UPDATE SET next = excluded.next",
        IDS
    ))
    .and_then(|mut s| s.execute(rusqlite::params![model, next]))
    .map_err(|e| sql_error(&e))?;
    Ok(())
}

/// Stores `record` as the row with `id`; `None` when there is none.
fn write_back(
    conn: &Connection,
    table: &Table,
    id: &Value,
    record: Record,
) -> Result<Option<Arc<Row>>> {
    let mut values = table.encode(record.iter().map(|(k, v)| (k.as_str(), v)));
    values.push(table.id_param(id));
    let n = conn
        .prepare_cached(&table.update)
        .and_then(|mut s| s.execute(params_from_iter(sql_values(values))))
        .map_err(|e| sql_error(&e))?;
    Ok((n > 0).then(|| Arc::new(Row::from_record(&table.layout, record))))
}

fn find_one(conn: &Connection, table: &Table, id: &Value) -> Result<Option<Arc<Row>>> {
    Ok(query_rows(conn, table, &table.by_id, vec![table.id_param(id)])?.pop())
}

/// The rows `where_` matches, in id order.
fn matching(conn: &Connection, table: &Table, where_: Option<&Where>) -> Result<Vec<Arc<Row>>> {
    let w = compile_where(table, where_);
    let mut rows = query_rows(conn, table, &candidates_sql(table, &w), w.params)?;
    if !w.exact {
        if let Some(w) = where_ {
            rows.retain(|r| w.matches(&**r));
        }
    }
    Ok(rows)
}
