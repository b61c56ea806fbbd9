//! Rows recently read by id, per table, so repeated point reads skip the database and keep
//! their rendered JSON (as the memory connector's rows do).
//!
//! Coherence: after a commit, and before it answers, the connector drops the rows the commit
//! changed and moves the generation on (SQLite's writer thread; PostgreSQL's write paths, and
//! its change-log follower for commits by other processes). A reader that missed notes the
//! generation before its SQL read and stores what it read only if the generation has not moved
//! since, so a row read before a commit can never be stored after it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::Param;
use oxbow_core::row::Row;

/// A cached id (integer and text ids only).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    Int(i64),
    Text(String),
}

impl Key {
    pub fn of(v: &Param) -> Option<Self> {
        match v {
            Param::Int(i) => Some(Self::Int(*i)),
            Param::Text(s) => Some(Self::Text(s.clone())),
            _ => None,
        }
    }
}

/// What a point read through the cache finds.
#[derive(Debug)]
pub enum Lookup {
    /// The cached row.
    Hit(Arc<Row>),
    /// Not cached: read the database, then give the row to [`RowCache::fill`] with this
    /// ticket (`None`: an id the cache does not key).
    Miss(Option<(Key, u64)>),
}

#[derive(Debug, Default)]
struct Inner {
    generation: u64,
    rows: HashMap<Key, Arc<Row>>,
}

/// The cache of one table.
#[derive(Debug)]
pub struct RowCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

impl RowCache {
    /// A cache of at most `capacity` rows (0: nothing is cached).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached row, or the generation to hand to [`RowCache::store`] after reading it.
    fn get(&self, key: &Key) -> Result<Arc<Row>, u64> {
        if self.capacity == 0 {
            return Err(0);
        }
        let inner = self.lock();
        inner.rows.get(key).cloned().ok_or(inner.generation)
    }

    /// Keeps a row read at `generation`, unless a commit changed the table since.
    fn store(&self, key: Key, row: &Arc<Row>, generation: u64) {
        if self.capacity == 0 {
            return;
        }
        let mut inner = self.lock();
        if inner.generation != generation {
            return;
        }
        if inner.rows.len() >= self.capacity {
            // Simple and bounded: start over rather than track recency on every hit.
            inner.rows.clear();
        }
        inner.rows.insert(key, row.clone());
    }

    /// A point read's first step: the cached row, or the ticket to store what is read.
    pub fn lookup(&self, key: Option<Key>) -> Lookup {
        match key {
            None => Lookup::Miss(None),
            Some(key) => match self.get(&key) {
                Ok(row) => Lookup::Hit(row),
                Err(generation) => Lookup::Miss(Some((key, generation))),
            },
        }
    }

    /// A point read's last step: keeps what a missed read found, unless a commit changed the
    /// table since the lookup.
    pub fn fill(&self, ticket: Option<(Key, u64)>, row: Option<&Arc<Row>>) {
        if let (Some((key, generation)), Some(row)) = (ticket, row) {
            self.store(key, row, generation);
        }
    }

    /// After a commit that changed the row with `key`.
    pub fn forget(&self, key: &Key) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.rows.remove(key);
    }

    /// After a commit that changed any number of rows, or a write by another process.
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.rows.clear();
    }
}
