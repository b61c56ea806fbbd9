//! oxbow-postgres: the PostgreSQL connector (`"connector": "postgresql"`), pooled.
//!
//! Tables follow the shared [`Mapping`] with typed columns (`double precision`, `text COLLATE
//! "C"` so strings order by code point as on SQLite, `boolean`, JSON as `text` to keep key
//! order). Every write runs in its own transaction, appends its change to the change log in
//! it ([`log`]) and is answered after it committed. Ids come from a sequence per table that
//! follows the memory connector's counter rule without a lock.

mod batch;
pub mod log;
pub mod values;

use std::collections::HashMap;
use std::sync::Arc;

use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use serde_json::Value;
use tokio_postgres::NoTls;

use oxbow_core::change::{ChangeLog, ChangeNote, ChangeType, EncodedNote};
use oxbow_core::connector::{BoxFuture, Connector, Modify};
use oxbow_core::error::{Error, Result};
use oxbow_core::filter::{Filter, Where};
use oxbow_core::instance::Record;
use oxbow_core::memory::merge_patch;
use oxbow_core::model::ModelDefinition;
use oxbow_core::row::Row;
use oxbow_sql::cache::{Key, Lookup, RowCache};
use oxbow_sql::compile::{candidates_sql, compile_where, count_sql, delete_sql, select_sql};
use oxbow_sql::mapping::{EXTRA, PRESENT};
use oxbow_sql::{Dialect, Kind, Mapping, Param, quote};

use values::{bind, column, refs};

/// PostgreSQL's SQL.
pub const POSTGRES: Dialect = Dialect {
    settings_key: "postgresql",
    placeholder: |n| format!("${n}"),
    // PostgreSQL's regular expressions are not JavaScript's: `like`/`regexp` are checked in
    // Rust on the rows the rest of the filter selects.
    regexp: None,
    bool_as_number: |c| format!("{c}::int"),
    json_anywhere: false,
    unlimited: "ALL",
};

/// A problem connecting or migrating at boot.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct OpenError(pub String);

/// A model's table.
#[derive(Debug)]
pub(crate) struct Table {
    map: Mapping,
    /// `SELECT nextval(…)` of the table's id sequence.
    next_id: String,
    /// `$1` values of the same sequence, in order.
    next_ids: String,
    /// For number ids: moves the sequence past the largest id stored (rows written by
    /// something other than oxbow's counter), so the next generated id is free.
    catch_up_ids: Option<String>,
    /// [`Mapping::insert`] up to ` VALUES`.
    insert_head: String,
    /// `SELECT setval(…, $1)` of the same sequence.
    move_id: String,
    /// [`Mapping::by_id`] locking the row.
    by_id_for_update: String,
    /// [`Mapping::insert`] and the change's append in one statement: the insert's
    /// parameters, then model, type, target, where, data, is_record.
    insert_logged: String,
    /// Rows read by id (`cacheRows`, off by default).
    cache: RowCache,
}

impl Table {
    fn key(&self, id: &Value) -> Option<Key> {
        Key::of(&self.id_param(id))
    }

    /// After a commit that changed the row with `id` (`None`: any rows).
    fn stale(&self, id: Option<&Value>) {
        match id.and_then(|id| self.key(id)) {
            Some(k) => self.cache.forget(&k),
            None => self.cache.clear(),
        }
    }
}

impl std::ops::Deref for Table {
    type Target = Mapping;
    fn deref(&self) -> &Mapping {
        &self.map
    }
}

/// The PostgreSQL connector of one datasource.
pub struct PostgresConnector {
    pool: Pool,
    readers: Readers,
    tables: HashMap<String, Arc<Table>>,
    log: Arc<log::PgLog>,
    batcher: batch::Batcher,
}

impl std::fmt::Debug for PostgresConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConnector").finish_non_exhaustive()
    }
}

/// One connection per thread for point reads (findById), made on that thread so that its
/// I/O runs where the reads run: every read of the thread sends its query on it without
/// waiting for the others' answers, and the client pipelines what is in flight, so one
/// PostgreSQL backend answers a burst of lookups per wake-up, with no hop to another thread
/// and no pooled connection taken per read. Replaced when closed.
struct Readers {
    cfg: tokio_postgres::Config,
    /// Tells this connector's readers from another's in the thread's map.
    id: usize,
}

/// A thread's reading connection and the statements prepared on it.
struct Reader {
    client: tokio_postgres::Client,
    statements: std::sync::Mutex<HashMap<String, tokio_postgres::Statement>>,
}

impl Reader {
    async fn prepare(&self, sql: &str) -> Result<tokio_postgres::Statement> {
        let cached = self
            .statements
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(sql)
            .cloned();
        if let Some(stmt) = cached {
            return Ok(stmt);
        }
        let stmt = self.client.prepare(sql).await.map_err(|e| pg_error(&e))?;
        self.statements
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(sql.to_owned(), stmt.clone());
        Ok(stmt)
    }
}

thread_local! {
    static READERS: std::cell::RefCell<HashMap<usize, Arc<Reader>>> =
        std::cell::RefCell::new(HashMap::new());
}

impl Readers {
    fn new(cfg: tokio_postgres::Config) -> Self {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        Self {
            cfg,
            id: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }

    async fn get(&self) -> Result<Arc<Reader>> {
        let cached = READERS.with(|m| m.borrow().get(&self.id).cloned());
        if let Some(reader) = cached.filter(|r| !r.client.is_closed()) {
            return Ok(reader);
        }
        let (client, connection) = self.cfg.connect(NoTls).await.map_err(|e| pg_error(&e))?;
        // Driven on this thread's runtime: the reads and their I/O stay on one thread.
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("PostgreSQL reading connection ended: {e}");
            }
        });
        let reader = Arc::new(Reader {
            client,
            statements: std::sync::Mutex::new(HashMap::new()),
        });
        READERS.with(|m| m.borrow_mut().insert(self.id, reader.clone()));
        Ok(reader)
    }
}

impl Drop for Readers {
    fn drop(&mut self) {
        // This thread's reader goes with the connector (other threads' end with the thread).
        let _ = READERS.try_with(|m| m.borrow_mut().remove(&self.id));
    }
}

/// A PostgreSQL datasource's settings, as oxbow-config checked them: LoopBack's `url`, else
/// `host`, `port`, `database`, `user`, `password`; oxbow's `schema` (the tables' schema,
/// created when missing), `max` (pool size, default 16) and `cacheRows` (default 0: off).
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub url: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub database: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub schema: Option<String>,
    pub max: Option<usize>,
    pub cache_rows: Option<usize>,
}

/// The client configuration of `settings`.
pub fn config(settings: &Settings) -> std::result::Result<tokio_postgres::Config, String> {
    let mut cfg = match &settings.url {
        Some(url) => url
            .parse::<tokio_postgres::Config>()
            .map_err(|e| format!("url: {e}"))?,
        None => {
            let mut c = tokio_postgres::Config::new();
            c.host(settings.host.as_deref().unwrap_or("localhost"));
            c.port(settings.port.unwrap_or(5432));
            if let Some(db) = &settings.database {
                c.dbname(db);
            }
            if let Some(u) = &settings.user {
                c.user(u);
            }
            if let Some(p) = &settings.password {
                c.password(p);
            }
            c
        }
    };
    if cfg.get_user().is_none() {
        cfg.user(std::env::var("USER").unwrap_or_else(|_| "postgres".into()));
    }
    if let Some(schema) = &settings.schema {
        cfg.options(format!("-c search_path={schema}"));
    }
    cfg.application_name("oxbow");
    Ok(cfg)
}

pub(crate) fn pg_error(e: &tokio_postgres::Error) -> Error {
    Error::internal(describe(e))
}

/// The server's message when there is one ("db error" alone says nothing).
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("PostgreSQL: {}: {}", db.code().code(), db.message()),
        None => format!("PostgreSQL: {e}"),
    }
}

fn pool_error(e: &deadpool_postgres::PoolError) -> Error {
    Error::internal(format!("PostgreSQL pool: {e}"))
}

impl PostgresConnector {
    /// Connects, creates or extends the tables of `models` (columns are added, never
    /// dropped) and their id sequences.
    pub async fn connect<'a>(
        settings: &Settings,
        models: impl IntoIterator<Item = &'a ModelDefinition>,
    ) -> std::result::Result<Self, OpenError> {
        let cfg = config(settings).map_err(|e| OpenError(format!("PostgreSQL settings: {e}")))?;
        let max = settings.max.unwrap_or(16);
        let schema = settings.schema.as_deref();
        let cache_rows = settings.cache_rows.unwrap_or(0);
        let mgr = Manager::from_config(
            cfg.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(mgr)
            .max_size(max)
            .build()
            .map_err(|e| OpenError(format!("PostgreSQL: {e}")))?;
        let mut client = pool
            .get()
            .await
            .map_err(|e| OpenError(format!("PostgreSQL: {e}")))?;
        let fail = |e: tokio_postgres::Error| OpenError(describe(&e));
        let txn = client.transaction().await.map_err(fail)?;
        // One migration at a time when several instances boot together (`IF NOT EXISTS`
        // alone still races on the catalog's unique indexes).
        txn.batch_execute("SELECT pg_advisory_xact_lock(7336952)")
            .await
            .map_err(fail)?;
        if let Some(schema) = schema {
            txn.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {}", quote(schema)))
                .await
                .map_err(fail)?;
        }
        log::migrate(&txn)
            .await
            .map_err(|e| OpenError(format!("change log: {e}")))?;
        let mut tables = HashMap::new();
        for def in models {
            if def.id_property().id.is_none() {
                continue; // a plain Model: nothing to store
            }
            let table = migrate(&txn, def, cache_rows)
                .await
                .map_err(|e| OpenError(format!("model `{}`: {e}", def.name)))?;
            tables.insert(def.name.to_string(), Arc::new(table));
        }
        txn.commit().await.map_err(fail)?;
        drop(client);
        // Commits by other processes reach the caches through the change log's follower.
        let cached = tables.clone();
        let invalidate = Box::new(move |model: &str, target: Option<&str>| {
            if let Some(table) = cached.get(model) {
                let id = target.and_then(|t| serde_json::from_str::<Value>(t).ok());
                table.stale(id.as_ref());
            }
        });
        // The listening connection says what it is in pg_stat_activity.
        let mut reader_cfg = cfg.clone();
        reader_cfg.application_name(format!("oxbow-read:{}", schema.unwrap_or("-")));
        let mut listen = cfg;
        listen.application_name(format!("oxbow-listen:{}", schema.unwrap_or("-")));
        let log = Arc::new(log::PgLog::new(pool.clone(), listen, invalidate));
        let batcher = batch::Batcher::start(pool.clone(), log.clone());
        Ok(Self {
            readers: Readers::new(reader_cfg),
            pool,
            tables,
            log,
            batcher,
        })
    }

    fn table(&self, model: &ModelDefinition) -> Result<&Arc<Table>> {
        self.tables.get(model.name.as_str()).ok_or_else(|| {
            Error::internal(format!(
                "model `{}` has no table in this PostgreSQL datasource",
                model.name
            ))
        })
    }

    async fn client(&self) -> Result<deadpool_postgres::Client> {
        self.pool.get().await.map_err(|e| pool_error(&e))
    }
}

/// Creates or extends a model's table; maps it.
async fn migrate(
    txn: &deadpool_postgres::Transaction<'_>,
    def: &ModelDefinition,
    cache_rows: usize,
) -> std::result::Result<Table, String> {
    let e = |e: tokio_postgres::Error| describe(&e);
    let name = table_name(txn, def).await.map_err(e)?;
    let quoted = quote(&name);
    let id_name = def.id_name();
    let sql_type = |p: &oxbow_core::Property| match (p.name == id_name, Kind::of(&p.ty)) {
        (true, Kind::Number) => "bigint PRIMARY KEY",
        (true, _) => "text COLLATE \"C\" PRIMARY KEY",
        (false, Kind::Number) => "double precision",
        (false, Kind::Text) => "text COLLATE \"C\"",
        (false, Kind::Boolean) => "boolean",
        (false, Kind::Json) => "text",
    };
    let mut existing = names(&columns(txn, &name).await.map_err(e)?);
    if existing.is_empty() {
        let cols: Vec<String> = Mapping::missing(def, &[], POSTGRES)
            .into_iter()
            .map(|(p, column)| format!("{} {}", quote(&column), sql_type(p)))
            .chain([
                format!("{PRESENT} bigint NOT NULL DEFAULT 0"),
                format!("{EXTRA} text"),
            ])
            .collect();
        txn.batch_execute(&format!("CREATE TABLE {quoted} ({})", cols.join(", ")))
            .await
            .map_err(e)?;
    } else {
        if !existing.iter().any(|c| c == PRESENT) {
            txn.batch_execute(&format!(
                "ALTER TABLE {quoted} ADD COLUMN {PRESENT} bigint NOT NULL DEFAULT -1"
            ))
            .await
            .map_err(e)?;
        }
        if !existing.iter().any(|c| c == EXTRA) {
            txn.batch_execute(&format!("ALTER TABLE {quoted} ADD COLUMN {EXTRA} text"))
                .await
                .map_err(e)?;
        }
        existing = names(&columns(txn, &name).await.map_err(e)?);
        for (p, column) in Mapping::missing(def, &existing, POSTGRES) {
            txn.batch_execute(&format!(
                "ALTER TABLE {quoted} ADD COLUMN {} {}",
                quote(&column),
                sql_type(p)
            ))
            .await
            .map_err(e)?;
        }
    }
    let attributes = columns(txn, &name).await.map_err(e)?;
    let map = Mapping::new(def, &name, &names(&attributes), POSTGRES)?;
    unreadable_columns(&name, &map, &attributes)?;
    for c in map.indexed() {
        txn.batch_execute(&format!(
            "CREATE INDEX IF NOT EXISTS {} ON {quoted} ({})",
            quote(&format!("{name}_{}_idx", c.property)),
            c.quoted
        ))
        .await
        .map_err(e)?;
    }
    let sequence = quote(&format!("{name}_oxbow_id_seq"));
    txn.batch_execute(&format!("CREATE SEQUENCE IF NOT EXISTS {sequence}"))
        .await
        .map_err(e)?;
    let literal = sequence.replace('\'', "''");
    let n = map.encode(std::iter::empty()).len();
    let insert_logged = format!(
        "WITH ins AS ({} RETURNING 1) INSERT INTO {} \
         SELECT ${}::text, ${}::text, ${}::text, ${}::text, ${}::text, ${}::boolean FROM ins",
        map.insert,
        log::APPEND_COLUMNS,
        n + 1,
        n + 2,
        n + 3,
        n + 4,
        n + 5,
        n + 6
    );
    let insert_head = map
        .insert
        .split(" VALUES (")
        .next()
        .unwrap_or_default()
        .to_owned();
    let catch_up_ids = (Kind::of(&def.id_property().ty) == Kind::Number).then(|| {
        format!(
            "SELECT setval('{literal}', GREATEST((SELECT max({}) FROM {quoted}), \
             (SELECT last_value FROM {sequence})))",
            map.id_column().quoted
        )
    });
    Ok(Table {
        insert_head,
        catch_up_ids,
        next_ids: format!("SELECT nextval('{literal}') FROM generate_series(1, $1::int8)"),
        insert_logged,
        cache: RowCache::new(cache_rows),
        next_id: format!("SELECT nextval('{literal}')"),
        move_id: format!("SELECT setval('{literal}', $1)"),
        by_id_for_update: format!("{} FOR UPDATE", map.by_id),
        map,
    })
}

/// The model's table: the name its `postgresql` settings give; else a table of the model's
/// name; else one of its lower-cased name, which loopback-connector-postgresql creates, so an
/// existing LoopBack database is served as it is; else (a new table) the model's name.
async fn table_name(
    txn: &deadpool_postgres::Transaction<'_>,
    def: &ModelDefinition,
) -> std::result::Result<String, tokio_postgres::Error> {
    if let Some(name) = Mapping::explicit_table(def, POSTGRES.settings_key) {
        return Ok(name);
    }
    let exact = def.name.to_string();
    let lower = exact.to_lowercase();
    if lower != exact
        && columns(txn, &exact).await?.is_empty()
        && !columns(txn, &lower).await?.is_empty()
    {
        return Ok(lower);
    }
    Ok(exact)
}

/// Fails with one line per mapped column of a type oxbow cannot read and write exactly (a
/// table made by other software may have any), rather than answering 500s later.
fn unreadable_columns(
    table: &str,
    map: &Mapping,
    attributes: &[Attribute],
) -> std::result::Result<(), String> {
    let problems: Vec<String> = map
        .columns
        .iter()
        .filter_map(|c| {
            let a = attributes.get(c.cid)?;
            let readable = tokio_postgres::types::Type::from_oid(a.type_oid)
                .is_some_and(|t| values::readable(&t));
            (!readable).then(|| {
                format!(
                    "table {table}: column {} (property `{}`) has type {}, which oxbow does \
                     not read or write; change the column to one of bigint, integer, smallint, \
                     double precision, real, boolean, text, varchar, char, json, jsonb, \
                     timestamp with or without time zone, date",
                    c.quoted, c.property, a.type_shown
                )
            })
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// A table's column at one position: its name (`""` once dropped, so positions stay the
/// presence bits) and its type.
struct Attribute {
    name: String,
    type_oid: u32,
    /// The type as SQL writes it (`integer`, `character varying(20)`).
    type_shown: String,
}

/// A table's columns by position (none when the table does not exist).
async fn columns(
    txn: &deadpool_postgres::Transaction<'_>,
    table: &str,
) -> std::result::Result<Vec<Attribute>, tokio_postgres::Error> {
    let rows = txn
        .query(
            "SELECT attname, attisdropped, atttypid, format_type(atttypid, atttypmod) \
             FROM pg_attribute \
             WHERE attrelid = to_regclass(quote_ident($1)) AND attnum > 0 ORDER BY attnum",
            &[&table],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Attribute {
            name: if r.get::<_, bool>(1) {
                String::new()
            } else {
                r.get(0)
            },
            type_oid: r.get(2),
            type_shown: r.get(3),
        })
        .collect())
}

/// The column names of [`columns`], by position.
fn names(attributes: &[Attribute]) -> Vec<String> {
    attributes.iter().map(|a| a.name.clone()).collect()
}

/// A statement's text: a table's own (fixed, prepared once per connection) or built from a
/// filter (prepared for the call: its text varies with each filter's shape, and the pool's
/// statement cache keeps whatever it is given for the connection's lifetime).
#[derive(Debug, Clone, Copy)]
enum Sql<'a> {
    Fixed(&'a str),
    Built(&'a str),
}

async fn prepare(db: &impl GenericClient, sql: Sql<'_>) -> Result<tokio_postgres::Statement> {
    match sql {
        Sql::Fixed(q) => db.prepare_cached(q).await,
        Sql::Built(q) => db.prepare(q).await,
    }
    .map_err(|e| pg_error(&e))
}

/// Runs a query built on [`Mapping::select`] and reads its rows.
async fn query_rows(
    db: &impl GenericClient,
    table: &Table,
    sql: Sql<'_>,
    params: &[Param],
) -> Result<Vec<Arc<Row>>> {
    let stmt = prepare(db, sql).await?;
    let values = bind(params, stmt.params());
    let rows = db
        .query(&stmt, &refs(&values))
        .await
        .map_err(|e| pg_error(&e))?;
    rows.iter().map(|r| read(table, r)).collect()
}

/// Runs a statement; how many rows it touched.
async fn exec(db: &impl GenericClient, sql: Sql<'_>, params: &[Param]) -> Result<u64> {
    let stmt = prepare(db, sql).await?;
    let values = bind(params, stmt.params());
    db.execute(&stmt, &refs(&values))
        .await
        .map_err(|e| pg_error(&e))
}

fn read(table: &Table, r: &tokio_postgres::Row) -> Result<Arc<Row>> {
    let n = table.columns.len();
    let mut values = Vec::with_capacity(n);
    for (i, c) in table.columns.iter().enumerate() {
        values.push(column(r, i, c.kind).map_err(|e| pg_error(&e))?);
    }
    let present: i64 = r.try_get(n).map_err(|e| pg_error(&e))?;
    let extra: Option<String> = r.try_get(n + 1).map_err(|e| pg_error(&e))?;
    Ok(Arc::new(table.row(values, present, extra.as_deref())))
}

/// The rows `where_` matches (locked for update), in id order.
async fn matching(
    txn: &deadpool_postgres::Transaction<'_>,
    table: &Table,
    where_: Option<&Where>,
) -> Result<Vec<Arc<Row>>> {
    let w = compile_where(table, where_);
    let sql = format!("{} FOR UPDATE", candidates_sql(table, &w));
    let mut rows = query_rows(txn, table, Sql::Built(&sql), &w.params).await?;
    if !w.exact {
        if let Some(w) = where_ {
            rows.retain(|r| w.matches(&**r));
        }
    }
    Ok(rows)
}

/// The parameters of [`Mapping::update`]: the record's columns, then the id.
fn update_params(table: &Table, id: &Value, record: &Record) -> Vec<Param> {
    let mut params = table.encode(record.iter().map(|(k, v)| (k.as_str(), v)));
    params.push(table.id_param(id));
    params
}

/// Stores `record` as the row with `id`; `None` when there is none.
async fn write_back(
    txn: &deadpool_postgres::Transaction<'_>,
    table: &Table,
    id: &Value,
    record: Record,
) -> Result<Option<Arc<Row>>> {
    let n = exec(
        txn,
        Sql::Fixed(&table.update),
        &update_params(table, id, &record),
    )
    .await?;
    Ok((n > 0).then(|| Arc::new(Row::from_record(&table.layout, record))))
}

/// Puts the new record's id into `data`: the memory connector's counter on a sequence. Every
/// create takes a value; a larger given id moves it there. Sequences never block and never
/// roll back, as the counter.
async fn take_id(
    db: &impl GenericClient,
    table: &Table,
    data: &mut Vec<(String, Value)>,
) -> Result<()> {
    let stmt = prepare(db, Sql::Fixed(&table.next_id)).await?;
    let taken: i64 = db
        .query_one(&stmt, &[])
        .await
        .map_err(|e| pg_error(&e))?
        .get(0);
    let next = oxbow_core::connector::assign_id(&table.def, data, taken as f64)?;
    if next - 1.0 > taken as f64 {
        exec(
            db,
            Sql::Fixed(&table.move_id),
            &[Param::Int((next - 1.0) as i64)],
        )
        .await?;
    }
    Ok(())
}

/// A create as one statement (its own transaction): the row and its change together, after
/// the id.
pub(crate) async fn insert_one(
    pool: &Pool,
    table: &Table,
    mut data: Vec<(String, Value)>,
) -> Result<Arc<Row>> {
    let def = &table.def;
    let client = pool.get().await.map_err(|e| pool_error(&e))?;
    take_id(&client, table, &mut data).await?;
    let mut params = table.encode(data.iter().map(|(k, v)| (k.as_str(), v)));
    let row = Arc::new(Row::from_entries(&table.layout, data));
    let note = EncodedNote::record(def, ChangeType::Create, &row);
    params.extend(log::change_params(def.name.as_str(), note));
    let stmt = prepare(&client, Sql::Fixed(&table.insert_logged)).await?;
    let values = bind(&params, stmt.params());
    client
        .execute(&stmt, &refs(&values))
        .await
        .map_err(|e| insert_error(def, &e))?;
    Ok(row)
}

/// A failed insert: 409 for a duplicate id, as LoopBack words it.
pub(crate) fn insert_error(def: &ModelDefinition, e: &tokio_postgres::Error) -> Error {
    if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
        Error::Conflict {
            message: format!("Duplicate entry for {}.{}", def.name, def.id_name()),
        }
    } else {
        pg_error(e)
    }
}

/// [`write_back`] and the update's change, pipelined; the caller commits only when a row was
/// written (otherwise the appended change is rolled back with the transaction).
async fn write_back_logged(
    txn: &deadpool_postgres::Transaction<'_>,
    table: &Table,
    id: &Value,
    record: Record,
) -> Result<Option<Arc<Row>>> {
    let params = update_params(table, id, &record);
    let row = Arc::new(Row::from_record(&table.layout, record));
    let note = EncodedNote::record(&table.def, ChangeType::Update, &row);
    let (written, appended) = tokio::join!(
        exec(txn, Sql::Fixed(&table.update), &params),
        log::append(txn, table.def.name.as_str(), &note)
    );
    if written? == 0 {
        return Ok(None);
    }
    appended?;
    Ok(Some(row))
}

impl PostgresConnector {
    async fn find_rows(&self, table: &Table, filter: &Filter) -> Result<Vec<Arc<Row>>> {
        let client = self.client().await?;
        let w = compile_where(table, filter.where_.as_ref());
        if let Some((sql, params)) = select_sql(table, filter, &w) {
            return query_rows(&client, table, Sql::Built(&sql), &params).await;
        }
        let sql = candidates_sql(table, &w);
        let rows = query_rows(&client, table, Sql::Built(&sql), &w.params).await?;
        Ok(filter.apply(rows.iter()))
    }

    /// A create on its own (one with a given id).
    async fn create_row(&self, table: &Table, data: Vec<(String, Value)>) -> Result<Arc<Row>> {
        let row = insert_one(&self.pool, table, data).await?;
        self.log.committed();
        Ok(row)
    }

    /// An array create: one transaction, all rows or none.
    async fn create_rows(
        &self,
        table: &Table,
        items: Vec<Vec<(String, Value)>>,
    ) -> Result<Vec<Arc<Row>>> {
        let def = &table.def;
        let mut client = self.client().await?;
        let txn = client.transaction().await.map_err(|e| pg_error(&e))?;
        let insert = prepare(&txn, Sql::Fixed(&table.insert)).await?;
        let mut rows = Vec::with_capacity(items.len());
        for mut data in items {
            // Sequences do not roll back: a failed array moves the counter, as a failed
            // create does on the memory connector.
            take_id(&txn, table, &mut data).await?;
            let params = table.encode(data.iter().map(|(k, v)| (k.as_str(), v)));
            let values = bind(&params, insert.params());
            let args = refs(&values);
            let row = Arc::new(Row::from_entries(&table.layout, data));
            let note = EncodedNote::record(def, ChangeType::Create, &row);
            let (inserted, appended) = tokio::join!(
                txn.execute(&insert, &args),
                log::append(&txn, def.name.as_str(), &note)
            );
            inserted.map_err(|e| insert_error(def, &e))?;
            appended?;
            rows.push(row);
        }
        self.commit(txn).await?;
        Ok(rows)
    }

    /// Commits a write's transaction and has its change numbered.
    async fn commit(&self, txn: deadpool_postgres::Transaction<'_>) -> Result<()> {
        txn.commit().await.map_err(|e| pg_error(&e))?;
        self.log.committed();
        Ok(())
    }

    async fn replace_row(
        &self,
        table: &Table,
        id: &Value,
        mut data: Record,
    ) -> Result<Option<Arc<Row>>> {
        let mut client = self.client().await?;
        let txn = client.transaction().await.map_err(|e| pg_error(&e))?;
        data.insert(table.def.id_name().to_owned(), id.clone());
        let out = write_back_logged(&txn, table, id, data).await?;
        if out.is_some() {
            self.commit(txn).await?;
            table.stale(Some(id));
        }
        Ok(out)
    }

    async fn modify_row(
        &self,
        table: &Table,
        id: &Value,
        modify: Modify,
    ) -> Result<Option<Arc<Row>>> {
        let mut client = self.client().await?;
        let txn = client.transaction().await.map_err(|e| pg_error(&e))?;
        let Some(current) = query_rows(
            &txn,
            table,
            Sql::Fixed(&table.by_id_for_update),
            &[table.id_param(id)],
        )
        .await?
        .pop() else {
            return Ok(None);
        };
        let next = modify(&current.to_record())?;
        let out = write_back_logged(&txn, table, id, next).await?;
        if out.is_some() {
            self.commit(txn).await?;
            table.stale(Some(id));
        }
        Ok(out)
    }

    async fn update_rows(
        &self,
        table: &Table,
        where_: Option<&Where>,
        patch: &Record,
    ) -> Result<u64> {
        let mut client = self.client().await?;
        let txn = client.transaction().await.map_err(|e| pg_error(&e))?;
        let rows = matching(&txn, table, where_).await?;
        let id_name = table.def.id_name();
        for row in &rows {
            if let Some(id) = row.value_of(id_name) {
                write_back(
                    &txn,
                    table,
                    &id,
                    merge_patch(&table.def, &row.to_record(), patch),
                )
                .await?;
            }
        }
        let note = ChangeNote::update_all(&table.def, where_, patch).encode();
        log::append(&txn, table.def.name.as_str(), &note).await?;
        self.commit(txn).await?;
        table.stale(None);
        Ok(rows.len() as u64)
    }

    async fn delete_rows(&self, table: &Table, where_: Option<&Where>) -> Result<u64> {
        let mut client = self.client().await?;
        let txn = client.transaction().await.map_err(|e| pg_error(&e))?;
        let w = compile_where(table, where_);
        let n = if w.exact {
            exec(&txn, Sql::Built(&delete_sql(table, &w)), &w.params).await?
        } else {
            let rows = matching(&txn, table, where_).await?;
            for row in &rows {
                if let Some(id) = row.value_of(table.def.id_name()) {
                    exec(&txn, Sql::Fixed(&table.delete), &[table.id_param(&id)]).await?;
                }
            }
            rows.len() as u64
        };
        let note = ChangeNote::delete_all(where_).encode();
        log::append(&txn, table.def.name.as_str(), &note).await?;
        self.commit(txn).await?;
        table.stale(None);
        Ok(n)
    }

    async fn delete_one(&self, table: &Table, id: &Value) -> Result<u64> {
        let mut client = self.client().await?;
        let txn = client.transaction().await.map_err(|e| pg_error(&e))?;
        let removed = if table.def.auth.keeps_removed() {
            query_rows(
                &txn,
                table,
                Sql::Fixed(&table.by_id_for_update),
                &[table.id_param(id)],
            )
            .await?
            .into_iter()
            .next()
        } else {
            None
        };
        let n = exec(&txn, Sql::Fixed(&table.delete), &[table.id_param(id)]).await?;
        let note = ChangeNote::delete_by_id(&table.def, id, removed).encode();
        log::append(&txn, table.def.name.as_str(), &note).await?;
        self.commit(txn).await?;
        table.stale(Some(id));
        Ok(n)
    }
}

impl Connector for PostgresConnector {
    fn name(&self) -> &str {
        "postgresql"
    }

    fn change_log(&self) -> Option<Arc<dyn ChangeLog>> {
        Some(self.log.clone())
    }

    fn find<'a>(
        &'a self,
        model: &'a ModelDefinition,
        filter: &'a Filter,
    ) -> BoxFuture<'a, Result<Vec<Arc<Row>>>> {
        Box::pin(async move { self.find_rows(self.table(model)?, filter).await })
    }

    fn find_by_id<'a>(
        &'a self,
        model: &'a ModelDefinition,
        id: &'a Value,
    ) -> BoxFuture<'a, Result<Option<Arc<Row>>>> {
        Box::pin(async move {
            let table = self.table(model)?;
            // The cache is trusted only while the follower keeps up with other processes.
            let ticket = match table
                .cache
                .lookup(table.key(id).filter(|_| self.log.fresh()))
            {
                Lookup::Hit(row) => return Ok(Some(row)),
                Lookup::Miss(ticket) => ticket,
            };
            let reader = self.readers.get().await?;
            let stmt = reader.prepare(&table.by_id).await?;
            let values = bind(&[table.id_param(id)], stmt.params());
            let row = reader
                .client
                .query_opt(&stmt, &refs(&values))
                .await
                .map_err(|e| pg_error(&e))?
                .map(|r| read(table, &r))
                .transpose()?;
            table.cache.fill(ticket, row.as_ref());
            Ok(row)
        })
    }

    fn count<'a>(
        &'a self,
        model: &'a ModelDefinition,
        where_: Option<&'a Where>,
    ) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let table = self.table(model)?;
            let w = compile_where(table, where_);
            if !w.exact {
                let filter = Filter {
                    where_: where_.cloned(),
                    ..Filter::default()
                };
                return Ok(self.find_rows(table, &filter).await?.len() as u64);
            }
            let client = self.client().await?;
            let stmt = prepare(&client, Sql::Built(&count_sql(table, &w))).await?;
            let values = bind(&w.params, stmt.params());
            let row = client
                .query_one(&stmt, &refs(&values))
                .await
                .map_err(|e| pg_error(&e))?;
            Ok(row.get::<_, i64>(0) as u64)
        })
    }

    fn create<'a>(
        &'a self,
        model: &'a ModelDefinition,
        data: Vec<(String, Value)>,
    ) -> BoxFuture<'a, Result<Arc<Row>>> {
        Box::pin(async move {
            let table = self.table(model)?;
            // Concurrent creates share a transaction; one with its own id goes alone.
            let given = data
                .iter()
                .any(|(k, v)| k == model.id_name() && oxbow_core::connector::is_truthy_id(v));
            if given {
                self.create_row(table, data).await
            } else {
                self.batcher.create(table.clone(), data).await
            }
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
        Box::pin(async move { self.create_rows(self.table(model)?, items).await })
    }

    fn replace_by_id<'a>(
        &'a self,
        model: &'a ModelDefinition,
        id: &'a Value,
        data: Record,
    ) -> BoxFuture<'a, Result<Option<Arc<Row>>>> {
        Box::pin(async move { self.replace_row(self.table(model)?, id, data).await })
    }

    fn modify_by_id<'a>(
        &'a self,
        model: &'a ModelDefinition,
        id: &'a Value,
        modify: Modify,
    ) -> BoxFuture<'a, Result<Option<Arc<Row>>>> {
        Box::pin(async move { self.modify_row(self.table(model)?, id, modify).await })
    }

    fn update_all<'a>(
        &'a self,
        model: &'a ModelDefinition,
        where_: Option<&'a Where>,
        patch: &'a Record,
    ) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move { self.update_rows(self.table(model)?, where_, patch).await })
    }

    fn delete_by_id<'a>(
        &'a self,
        model: &'a ModelDefinition,
        id: &'a Value,
    ) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move { self.delete_one(self.table(model)?, id).await })
    }

    fn delete_all<'a>(
        &'a self,
        model: &'a ModelDefinition,
        where_: Option<&'a Where>,
    ) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move { self.delete_rows(self.table(model)?, where_).await })
    }
}
