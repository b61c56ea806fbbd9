//! Group commit for creates: concurrent single-record creates (the REST API's `POST /Model`)
//! share one transaction, one multi-row `INSERT` and one multi-row change-log append, as the
//! SQLite writer shares one commit. Each create is still answered only after the commit that
//! holds it.
//!
//! A lone create is one statement, as without batching. A batch that fails (a duplicate id, a
//! value a column rejects) is retried one create at a time, so one client's bad create never
//! fails another's. Creates that give their own id skip batching (the
//! id counter must move past a given id before the next create takes one).

use std::fmt::Write as _;
use std::sync::Arc;

use deadpool_postgres::Pool;
use serde_json::Value;
use tokio::sync::{Mutex, mpsc, oneshot};

use oxbow_core::change::{ChangeType, EncodedNote};
use oxbow_core::error::{Error, Result};
use oxbow_core::row::Row;
use oxbow_sql::Param;

use crate::log::{APPEND_COLUMNS, PgLog, change_params};
use crate::values::{bind, refs};
use crate::{Table, insert_error, insert_one, pg_error};

/// Most creates in one batch.
const MAX_BATCH: usize = 256;

/// Batches committing at the same time (so one batch's fsync overlaps the next one's work).
const LANES: usize = 2;

struct Job {
    table: Arc<Table>,
    data: Vec<(String, Value)>,
    reply: oneshot::Sender<Result<Arc<Row>>>,
}

/// The create queue of one datasource.
pub(crate) struct Batcher {
    tx: mpsc::UnboundedSender<Job>,
}

impl Batcher {
    /// Starts [`LANES`] batch writers on the current runtime.
    pub(crate) fn start(pool: Pool, log: Arc<PgLog>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..LANES {
            tokio::spawn(lane(rx.clone(), pool.clone(), log.clone()));
        }
        Self { tx }
    }

    /// Creates `data` (its id not given) in the next batch.
    pub(crate) async fn create(
        &self,
        table: Arc<Table>,
        data: Vec<(String, Value)>,
    ) -> Result<Arc<Row>> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Job { table, data, reply })
            .map_err(|_| Error::internal("PostgreSQL: the create queue is closed"))?;
        answer
            .await
            .map_err(|_| Error::internal("PostgreSQL: a create batch was dropped"))?
    }
}

/// One batch writer: takes what is queued (up to [`MAX_BATCH`]), writes it, answers, again.
async fn lane(rx: Arc<Mutex<mpsc::UnboundedReceiver<Job>>>, pool: Pool, log: Arc<PgLog>) {
    loop {
        let jobs = {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else {
                return;
            };
            let mut jobs = vec![first];
            while jobs.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            jobs
        };
        // By table, in arrival order (a batch rarely spans tables).
        let mut by_table: Vec<Vec<Job>> = Vec::new();
        for job in jobs {
            match by_table
                .iter_mut()
                .find(|g| Arc::ptr_eq(&g[0].table, &job.table))
            {
                Some(group) => group.push(job),
                None => by_table.push(vec![job]),
            }
        }
        for jobs in by_table {
            write(&pool, &log, jobs).await;
        }
    }
}

/// Writes one table's batch and answers every job in it: a lone create as one statement, more
/// in one transaction. A duplicate id means rows were stored past the id counter (written by
/// other software): the counter is moved past them, as the memory connector's moves past every
/// id it stores, and the creates are retried one at a time, so only a real duplicate fails.
async fn write(pool: &Pool, log: &PgLog, jobs: Vec<Job>) {
    let table = jobs[0].table.clone();
    let mut caught_up = false;
    if jobs.len() > 1 {
        let mut items: Vec<Vec<(String, Value)>> = jobs.iter().map(|j| j.data.clone()).collect();
        match insert_all(pool, &table, &mut items).await {
            Ok(rows) => {
                log.committed();
                for (job, row) in jobs.into_iter().zip(rows) {
                    let _ = job.reply.send(Ok(row));
                }
                return;
            }
            Err(Error::Conflict { .. }) => caught_up = catch_up(pool, &table).await,
            // Any other failure (a value a column of another program's table rejects: too
            // long for its varchar, out of its integer's range, a constraint of its own) is
            // one create's: the batch rolled back whole, so each is retried alone and only
            // the create at fault fails.
            Err(_) => {}
        }
    }
    for job in jobs {
        let mut result = insert_one(pool, &table, job.data.clone()).await;
        if matches!(result, Err(Error::Conflict { .. })) && !caught_up {
            caught_up = catch_up(pool, &table).await;
            if caught_up {
                result = insert_one(pool, &table, job.data).await;
            }
        }
        if result.is_ok() {
            log.committed();
        }
        let _ = job.reply.send(result);
    }
}

/// Moves a number-id table's sequence past its largest stored id; whether it did.
async fn catch_up(pool: &Pool, table: &Table) -> bool {
    let Some(sql) = &table.catch_up_ids else {
        return false;
    };
    let Ok(client) = pool.get().await else {
        return false;
    };
    match client.query_one(sql.as_str(), &[]).await {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(
                "PostgreSQL: moving the id sequence of {}: {e}",
                table.def.name
            );
            false
        }
    }
}

/// One transaction: ids for every item, one `INSERT` of every row, one append of every change
/// (pipelined after the insert, so each change is numbered after its row's locks).
async fn insert_all(
    pool: &Pool,
    table: &Table,
    items: &mut [Vec<(String, Value)>],
) -> Result<Vec<Arc<Row>>> {
    let def = &table.def;
    let e = |e: tokio_postgres::Error| pg_error(&e);
    let client = pool
        .get()
        .await
        .map_err(|e| Error::internal(format!("PostgreSQL pool: {e}")))?;
    let n = items.len();
    let ids = client.prepare_cached(&table.next_ids).await.map_err(e)?;
    let taken: Vec<i64> = client
        .query(&ids, &[&(n as i64)])
        .await
        .map_err(e)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut params: Vec<Param> = Vec::with_capacity(n * (table.columns.len() + 2));
    let mut changes: Vec<Param> = Vec::with_capacity(n * 6);
    let mut rows = Vec::with_capacity(n);
    for (data, taken) in items.iter_mut().zip(&taken) {
        oxbow_core::connector::assign_id(def, data, *taken as f64)?;
        params.extend(table.encode(data.iter().map(|(k, v)| (k.as_str(), v))));
        let row = Arc::new(Row::from_entries(&table.layout, std::mem::take(data)));
        let note = EncodedNote::record(def, ChangeType::Create, &row);
        changes.extend(change_params(def.name.as_str(), note));
        rows.push(row);
    }
    // Chunks of 256, 128, …, 1 rows: a few statement shapes per table and connection, whatever
    // the batch size.
    let width = table.columns.len() + 2;
    let mut statements = Vec::new();
    let mut start = 0;
    for size in chunks(n) {
        let insert = client
            .prepare_cached(&values_sql(&table.insert_head, width, size))
            .await
            .map_err(e)?;
        let append = client
            .prepare_cached(&values_sql(
                &format!("INSERT INTO {APPEND_COLUMNS}"),
                6,
                size,
            ))
            .await
            .map_err(e)?;
        let row_values = bind(
            &params[start * width..(start + size) * width],
            insert.params(),
        );
        let change_values = bind(&changes[start * 6..(start + size) * 6], append.params());
        statements.push((insert, row_values, true));
        statements.push((append, change_values, false));
        start += size;
    }
    // One round trip: BEGIN, every chunk's insert then its append, COMMIT, all pipelined. If a
    // statement fails the transaction is aborted and the COMMIT rolls it back, so the result
    // is all rows or none either way; the connection ends outside a transaction.
    let db = &*client;
    let sent = statements
        .iter()
        .map(|(stmt, values, is_insert)| async move {
            let args = refs(values);
            db.execute(stmt, &args).await.map_err(|err| {
                if *is_insert {
                    insert_error(def, &err)
                } else {
                    pg_error(&err)
                }
            })
        });
    let (begun, results, committed) = tokio::join!(
        db.batch_execute("BEGIN"),
        futures_util::future::join_all(sent),
        db.batch_execute("COMMIT")
    );
    begun.map_err(e)?;
    // The first failure is the cause; the statements after it failed because of it.
    if let Some(err) = results.into_iter().find_map(Result::err) {
        return Err(err);
    }
    committed.map_err(e)?;
    Ok(rows)
}

/// `n` as a sum of powers of two, largest first, none above [`MAX_BATCH`].
fn chunks(mut n: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut size = MAX_BATCH;
    while n > 0 {
        while size > n {
            size /= 2;
        }
        out.push(size);
        n -= size;
    }
    out
}

/// `<head> VALUES ($1, …), (…)`: `rows` groups of `width` parameters.
fn values_sql(head: &str, width: usize, rows: usize) -> String {
    let mut sql = format!("{head} VALUES ");
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..width {
            if c > 0 {
                sql.push_str(", ");
            }
            let _ = write!(sql, "${}", r * width + c + 1);
        }
        sql.push(')');
    }
    sql
}
