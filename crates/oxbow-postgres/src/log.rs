//! The PostgreSQL change log: what lets several oxbow processes on one database serve the
//! same change streams, with the same event ids, resumable on any of them.
//!
//! - **Append.** Every write inserts its change into `_oxbow_changes` after its data statement,
//!   in the same transaction: a change is logged if and only if its write committed. The row's
//!   `id` (a sequence, taken after the write's row locks were granted) orders writes that
//!   touched the same rows.
//! - **Sequence.** Any process may run a sequencing step, one at a time (an advisory lock per
//!   schema): it numbers the committed, unnumbered changes in `id` order with a global position
//!   (`gpos`) and a per-model number (`seq`, 1, 2, 3, … with no gaps, the SSE event id). A step
//!   sees only committed rows and steps run one after the other, so positions follow commit
//!   order: a change numbered earlier committed no later than one numbered after it. The process
//!   that wrote runs the step right after its commit; every process also runs one each second, so
//!   a change whose writer died before numbering it is numbered anyway.
//! - **Follow.** Each process reads the numbered changes past its position in `gpos` order and
//!   delivers them to its feeds. `NOTIFY` only wakes followers early; they also poll, and
//!   after a lost connection they read what they missed from the table, so nothing depends on a
//!   notification arriving.
//! - **Retention.** Numbered changes older than the feeds' retention are deleted; a client
//!   resuming from before that is told to refetch (`event: reset`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use tokio::sync::{Notify, watch};
use tokio_postgres::{AsyncMessage, NoTls};

use oxbow_core::change::{ChangeFeed, ChangeLog, ChangeNote, EncodedNote};
use oxbow_core::connector::BoxFuture;
use oxbow_core::error::{Error, Result};
use oxbow_core::model::ModelDefinition;
use oxbow_core::row::Layout;
use oxbow_sql::Param;

use crate::{describe, pg_error};

/// The columns a write appends, in its transaction.
pub(crate) const APPEND_COLUMNS: &str =
    "_oxbow_changes (model, kind, target, where_json, data, is_record)";

/// The row a write appends, in its transaction.
const APPEND: &str = "INSERT INTO _oxbow_changes (model, kind, target, where_json, data, is_record) \
     VALUES ($1, $2, $3, $4, $5, $6)";

/// The channel followers listen on (the payload names the schema; any notification only
/// makes a follower read sooner).
const CHANNEL: &str = "oxbow_changes";

/// Changes numbered per sequencing step, and read per follower query.
const BATCH: i64 = 2000;

/// How often each process sequences and reads without being woken.
const POLL: Duration = Duration::from_secs(1);

/// Numbers up to `$1` committed changes in `id` order: global positions after the global
/// head (kept under the empty model name), per-model numbers after each model's head; moves
/// the heads; notifies when it numbered something. Returns how many, and the global head.
const NUMBER: &str = "
WITH pending AS (
    SELECT id, model FROM _oxbow_changes WHERE gpos IS NULL ORDER BY id LIMIT $1
), numbered AS (
    SELECT p.id, p.model,
        coalesce((SELECT seq FROM _oxbow_change_heads WHERE model = ''), 0)
            + row_number() OVER (ORDER BY p.id) AS g,
        coalesce(h.seq, 0) + row_number() OVER (PARTITION BY p.model ORDER BY p.id) AS s
    FROM pending p LEFT JOIN _oxbow_change_heads h ON h.model = p.model
), updated AS (
    UPDATE _oxbow_changes c SET gpos = n.g, seq = n.s FROM numbered n WHERE c.id = n.id
), heads AS (
    INSERT INTO _oxbow_change_heads (model, seq)
    SELECT model, max(s) FROM numbered GROUP BY model
    UNION ALL SELECT '', max(g) FROM numbered HAVING count(*) > 0
    ON CONFLICT (model) DO UPDATE SET seq = EXCLUDED.seq
), summary AS (
    SELECT count(*) AS n, max(g) AS g FROM numbered
)
SELECT n, coalesce(g, (SELECT seq FROM _oxbow_change_heads WHERE model = ''), 0)::int8,
    CASE WHEN n > 0 THEN (SELECT count(*) FROM pg_notify('oxbow_changes', current_schema())) END
FROM summary";

/// How long a new subscription waits for this process to deliver what is already committed.
const SYNC_WAIT: Duration = Duration::from_secs(5);

/// Creates the log's tables (in the boot migration's transaction).
pub(crate) async fn migrate(
    txn: &deadpool_postgres::Transaction<'_>,
) -> std::result::Result<(), String> {
    txn.batch_execute(
        "CREATE TABLE IF NOT EXISTS _oxbow_changes (
            id bigserial PRIMARY KEY,
            gpos bigint UNIQUE,
            model text COLLATE \"C\" NOT NULL,
            seq bigint,
            kind text NOT NULL,
            target text,
            where_json text,
            data text,
            is_record boolean NOT NULL DEFAULT false,
            at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX IF NOT EXISTS _oxbow_changes_pending ON _oxbow_changes (id) WHERE gpos IS NULL;
        CREATE UNIQUE INDEX IF NOT EXISTS _oxbow_changes_model_seq ON _oxbow_changes (model, seq);
        CREATE TABLE IF NOT EXISTS _oxbow_change_heads (
            model text COLLATE \"C\" PRIMARY KEY,
            seq bigint NOT NULL
        );",
    )
    .await
    .map_err(|e| describe(&e))
}

/// The parameters of one change in [`APPEND_COLUMNS`] order.
pub(crate) fn change_params(model: &str, note: EncodedNote) -> [Param; 6] {
    let text = |v: Option<String>| v.map_or(Param::Null, Param::Text);
    [
        Param::Text(model.to_owned()),
        Param::Text(note.kind.to_owned()),
        text(note.target),
        text(note.where_),
        text(note.data),
        Param::Bool(note.is_record),
    ]
}

/// Appends a change in the write's transaction (after its data statement).
pub(crate) async fn append(
    txn: &deadpool_postgres::Transaction<'_>,
    model: &str,
    note: &EncodedNote,
) -> Result<()> {
    let stmt = txn.prepare_cached(APPEND).await.map_err(|e| pg_error(&e))?;
    txn.execute(
        &stmt,
        &[
            &model,
            &note.kind,
            &note.target,
            &note.where_,
            &note.data,
            &note.is_record,
        ],
    )
    .await
    .map_err(|e| pg_error(&e))?;
    Ok(())
}

/// The change log of one PostgreSQL datasource.
pub struct PgLog {
    pool: Pool,
    config: tokio_postgres::Config,
    /// Wakes this process's sequencer (after a local commit).
    sequence: Notify,
    /// Wakes this process's follower (after a step numbered something, or a notification).
    follow: Arc<Notify>,
    /// The global position up to which this process's follower has delivered.
    position: watch::Sender<i64>,
    /// Drops cached rows a delivered change made stale (model, target id as JSON; no target:
    /// any rows of the model).
    invalidate: Invalidate,
    /// When the follower last read the log successfully (ms since `epoch`; 0: never).
    last_read: AtomicU64,
    epoch: Instant,
}

/// See [`PgLog::new`].
pub(crate) type Invalidate = Box<dyn Fn(&str, Option<&str>) + Send + Sync>;

/// How long after its last successful read the follower still counts as keeping up (it reads
/// at least each [`POLL`]); past it, row caches are bypassed.
const FRESH: Duration = Duration::from_secs(3);

impl std::fmt::Debug for PgLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgLog").finish_non_exhaustive()
    }
}

impl PgLog {
    /// The log of the datasource behind `pool`; `config` is for the listening connection;
    /// `invalidate` hears of every change the follower delivers, this process's and others'.
    pub(crate) fn new(pool: Pool, config: tokio_postgres::Config, invalidate: Invalidate) -> Self {
        Self {
            pool,
            config,
            sequence: Notify::new(),
            follow: Arc::new(Notify::new()),
            position: watch::Sender::new(-1),
            invalidate,
            last_read: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// Whether the follower read the log lately, so every commit by another process older
    /// than about a [`POLL`] has reached the row caches.
    pub(crate) fn fresh(&self) -> bool {
        let last = self.last_read.load(Ordering::Acquire);
        last > 0 && (self.epoch.elapsed().as_millis() as u64) < last + FRESH.as_millis() as u64
    }

    /// Called after a write that appended a change committed.
    pub(crate) fn committed(&self) {
        self.sequence.notify_one();
    }

    async fn client(&self) -> Result<deadpool_postgres::Client> {
        self.pool
            .get()
            .await
            .map_err(|e| Error::internal(format!("PostgreSQL pool: {e}")))
    }

    /// Numbers the committed, unnumbered changes (at most [`BATCH`]); how many it numbered,
    /// and the global position of the last numbered change. One round trip: take the
    /// schema's lock, run [`NUMBER`] (its own transaction, so its snapshot is taken once the
    /// lock is held and it has committed before the lock is released), release the lock.
    /// Should the lock fail, the unique positions still keep two steps from numbering alike.
    async fn sequence_step(&self) -> Result<(usize, i64)> {
        let e = |e: tokio_postgres::Error| pg_error(&e);
        let client = self.client().await?;
        let lock = client
            .prepare_cached("SELECT pg_advisory_lock(7336953, hashtext(current_schema()))")
            .await
            .map_err(e)?;
        let unlock = client
            .prepare_cached("SELECT pg_advisory_unlock(7336953, hashtext(current_schema()))")
            .await
            .map_err(e)?;
        let number = client.prepare_cached(NUMBER).await.map_err(e)?;
        let (locked, numbered, unlocked) = tokio::join!(
            client.query(&lock, &[]),
            client.query_one(&number, &[&BATCH]),
            client.query(&unlock, &[])
        );
        locked.map_err(e)?;
        let row = numbered.map_err(e)?;
        unlocked.map_err(e)?;
        let (n, head): (i64, i64) = (row.get(0), row.get(1));
        if n > 0 {
            self.follow.notify_one();
        }
        Ok((n as usize, head))
    }

    /// Numbers everything committed so far; the global position of the last change.
    async fn sequence_all(&self) -> Result<i64> {
        loop {
            let (n, head) = self.sequence_step().await?;
            if (n as i64) < BATCH {
                return Ok(head);
            }
        }
    }

    /// Deletes numbered changes older than `retain`.
    async fn prune(&self, retain: Duration) -> Result<u64> {
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM _oxbow_changes \
                 WHERE gpos IS NOT NULL AND at < now() - make_interval(secs => $1)",
                &[&retain.as_secs_f64()],
            )
            .await
            .map_err(|e| pg_error(&e))
    }

    /// The sequencer of this process: after each local commit, each [`POLL`], until nothing
    /// is left to number; prunes once a minute.
    async fn sequencer(self: Arc<Self>, retain: Duration) {
        let mut pruned = Instant::now();
        loop {
            tokio::select! {
                () = self.sequence.notified() => {}
                () = tokio::time::sleep(POLL) => {}
            }
            if let Err(err) = self.sequence_all().await {
                tracing::warn!("change log: numbering changes failed: {err}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            if pruned.elapsed() > Duration::from_secs(60) {
                pruned = Instant::now();
                if let Err(err) = self.prune(retain).await {
                    tracing::warn!("change log: pruning failed: {err}");
                }
            }
        }
    }

    /// Reads the numbered changes after `after` (global positions) into the feeds; the last
    /// position read.
    async fn read_into(
        &self,
        feeds: &HashMap<String, Arc<ChangeFeed>>,
        mut after: i64,
    ) -> Result<i64> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT gpos, model, seq, kind, target, where_json, data, is_record \
                 FROM _oxbow_changes WHERE gpos > $1 ORDER BY gpos LIMIT $2",
            )
            .await
            .map_err(|e| pg_error(&e))?;
        loop {
            let rows = client
                .query(&stmt, &[&after, &BATCH])
                .await
                .map_err(|e| pg_error(&e))?;
            for r in &rows {
                after = r.get(0);
                let model: &str = r.get(1);
                // One row changed: a record's create or update, or a delete by id; any
                // other change (updateAll, destroyAll) may have changed any row.
                let target: Option<&str> = r.get(4);
                let one_row =
                    r.get::<_, bool>(7) || (r.get::<_, &str>(3) == "remove" && target.is_some());
                (self.invalidate)(model, target.filter(|_| one_row));
                let Some(feed) = feeds.get(model) else {
                    continue; // a model this app does not serve
                };
                let Some((def, layout)) = feed.logged_model() else {
                    continue;
                };
                let seq: i64 = r.get(2);
                match ChangeNote::decode(
                    def,
                    layout,
                    r.get(3),
                    r.get(4),
                    r.get(5),
                    r.get(6),
                    r.get(7),
                ) {
                    Ok(note) => feed.deliver(seq as u64, note),
                    Err(err) => tracing::warn!("change log: change {seq} of {model}: {err}"),
                }
            }
            if (rows.len() as i64) < BATCH {
                return Ok(after);
            }
        }
    }

    /// The follower of this process: reads when woken (a local step, a notification) and each
    /// [`POLL`].
    async fn follower(self: Arc<Self>, feeds: HashMap<String, Arc<ChangeFeed>>, mut after: i64) {
        loop {
            tokio::select! {
                () = self.follow.notified() => {}
                () = tokio::time::sleep(POLL) => {}
            }
            match self.read_into(&feeds, after).await {
                Ok(last) => {
                    after = last;
                    self.position.send_replace(after);
                    let now = (self.epoch.elapsed().as_millis() as u64).max(1);
                    self.last_read.store(now, Ordering::Release);
                }
                Err(err) => {
                    tracing::warn!("change log: reading changes failed: {err}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// Keeps one connection listening on [`CHANNEL`], reconnecting when it drops; every
    /// notification, and every (re)connection, wakes the follower.
    async fn listener(self: Arc<Self>) {
        loop {
            match self.config.connect(NoTls).await {
                Ok((client, mut conn)) => {
                    let wake = self.follow.clone();
                    let driver = tokio::spawn(async move {
                        while let Some(m) = std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                            match m {
                                Ok(AsyncMessage::Notification(_)) => wake.notify_one(),
                                Ok(_) => {}
                                Err(_) => break,
                            }
                        }
                    });
                    match client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
                        Ok(()) => {
                            self.follow.notify_one();
                            let _ = driver.await;
                        }
                        Err(err) => {
                            tracing::warn!("change log: LISTEN failed: {}", describe(&err));
                            driver.abort();
                        }
                    }
                    drop(client);
                }
                Err(err) => {
                    tracing::warn!("change log: listening connection: {}", describe(&err));
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

impl ChangeLog for PgLog {
    fn replay<'a>(
        &'a self,
        model: &'a Arc<ModelDefinition>,
        layout: &'a Arc<Layout>,
        after: u64,
        upto: u64,
    ) -> BoxFuture<'a, Result<Vec<(u64, ChangeNote)>>> {
        Box::pin(async move {
            let client = self.client().await?;
            let rows = client
                .query(
                    "SELECT seq, kind, target, where_json, data, is_record FROM _oxbow_changes \
                     WHERE model = $1 AND seq > $2 AND seq <= $3 ORDER BY seq",
                    &[&model.name.as_str(), &(after as i64), &(upto as i64)],
                )
                .await
                .map_err(|e| pg_error(&e))?;
            rows.iter()
                .map(|r| {
                    let note = ChangeNote::decode(
                        model,
                        layout,
                        r.get(1),
                        r.get(2),
                        r.get(3),
                        r.get(4),
                        r.get(5),
                    )?;
                    Ok((r.get::<_, i64>(0) as u64, note))
                })
                .collect()
        })
    }

    fn sync(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let head = self.sequence_all().await?;
            self.follow.notify_one();
            let mut position = self.position.subscribe();
            match tokio::time::timeout(SYNC_WAIT, position.wait_for(|p| *p >= head)).await {
                Ok(Ok(_)) => Ok(()),
                _ => Err(Error::internal(
                    "change log: this process's follower did not catch up in time",
                )),
            }
        })
    }

    fn head<'a>(&'a self, model: &'a str) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let client = self.client().await?;
            let row = client
                .query_opt(
                    "SELECT seq FROM _oxbow_change_heads WHERE model = $1",
                    &[&model],
                )
                .await
                .map_err(|e| pg_error(&e))?;
            Ok(row.map_or(0, |r| r.get::<_, i64>(0) as u64))
        })
    }

    fn follow(self: Arc<Self>, feeds: Vec<Arc<ChangeFeed>>) -> BoxFuture<'static, Result<()>> {
        Box::pin(async move {
            let retain = feeds
                .first()
                .map_or(Duration::from_secs(3600), |f| f.settings().retain_age);
            let client = self.client().await?;
            // One statement, one snapshot: the feeds' numbers and the global position agree.
            let heads: HashMap<String, i64> = client
                .query("SELECT model, seq FROM _oxbow_change_heads", &[])
                .await
                .map_err(|e| pg_error(&e))?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            drop(client);
            let feeds: HashMap<String, Arc<ChangeFeed>> = feeds
                .into_iter()
                .map(|f| (f.model().as_str().to_owned(), f))
                .collect();
            for (name, feed) in &feeds {
                feed.start_at(heads.get(name).copied().unwrap_or(0) as u64);
            }
            let after = heads.get("").copied().unwrap_or(0);
            self.position.send_replace(after);
            tokio::spawn(self.clone().listener());
            tokio::spawn(self.clone().sequencer(retain));
            tokio::spawn(self.follower(feeds, after));
            Ok(())
        })
    }
}
