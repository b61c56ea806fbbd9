//! Reading: a read-only connection per thread and database, so reads run inline on the
//! calling worker thread (the fastest path measured in ../shared/research/deps.md), and the
//! SQL functions every connection registers.
//!
//! WAL lets these readers run while the writer commits; each statement sees the last commit.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use regex::Regex;
use rusqlite::functions::FunctionFlags;
use rusqlite::{Connection, OpenFlags, params_from_iter};

use oxbow_core::error::{Error, Result};
use oxbow_core::row::Row;

use oxbow_sql::Param;

use crate::table::{Table, sql_values};

/// How long a connection waits for a lock held by another process before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A database file; readers are keyed by it.
#[derive(Debug)]
pub struct Database {
    pub path: PathBuf,
}

thread_local! {
    /// This thread's read connections, one per open database.
    static READERS: RefCell<Vec<(Weak<Database>, Connection)>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's read connection to `db`, opening it on first use.
pub fn with_reader<T>(db: &Arc<Database>, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    READERS.with(|readers| {
        let mut readers = readers.borrow_mut();
        let found = readers
            .iter()
            .position(|(w, _)| w.upgrade().is_some_and(|d| Arc::ptr_eq(&d, db)));
        let i = match found {
            Some(i) => i,
            None => {
                // Connections of databases that were closed go with them.
                readers.retain(|(w, _)| w.strong_count() > 0);
                let conn = open(&db.path, true).map_err(|e| sql_error(&e))?;
                readers.push((Arc::downgrade(db), conn));
                readers.len() - 1
            }
        };
        f(&readers[i].1)
    })
}

/// Opens a connection with oxbow's functions registered.
pub fn open(path: &Path, read_only: bool) -> rusqlite::Result<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
    } | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(64);
    register_functions(&conn)?;
    Ok(conn)
}

/// `oxbow_regexp(pattern, text)`: the filter language's `like`/`regexp` with the same regular
/// expressions the memory connector uses (the pattern compiled once per statement).
fn register_functions(conn: &Connection) -> rusqlite::Result<()> {
    conn.create_scalar_function(
        "oxbow_regexp",
        2,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let re: Arc<Regex> = ctx.get_or_create_aux(
                0,
                |v| -> std::result::Result<Regex, Box<dyn std::error::Error + Send + Sync>> {
                    Ok(Regex::new(v.as_str()?)?)
                },
            )?;
            Ok(match ctx.get_raw(1) {
                rusqlite::types::ValueRef::Text(t) => re.is_match(&String::from_utf8_lossy(t)),
                _ => false,
            })
        },
    )
}

/// Runs a `SELECT` built on [`Table::select`] and reads its rows.
pub fn query_rows(
    conn: &Connection,
    table: &Table,
    sql: &str,
    params: Vec<Param>,
) -> Result<Vec<Arc<Row>>> {
    let mut stmt = conn.prepare_cached(sql).map_err(|e| sql_error(&e))?;
    let rows = stmt
        .query_map(params_from_iter(sql_values(params)), |r| {
            table.read(r).map(Arc::new)
        })
        .map_err(|e| sql_error(&e))?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(|e| sql_error(&e))?;
    Ok(rows)
}

/// A SQLite failure as a 500 (its message is logged, never sent).
pub fn sql_error(e: &rusqlite::Error) -> Error {
    Error::internal(format!("SQLite: {e}"))
}
