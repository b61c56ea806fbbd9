//! How a model maps onto a SQLite table: one column per declared property, a presence mask and
//! a JSON column for the rest; creating and extending tables at boot; rows in and out.
//!
//! Columns carry no type affinity, so a value reads back exactly as it was written: a number
//! stays a number, a string that looks like one stays a string. Each column has a *kind* from
//! its property type, and a value of that kind is stored natively (INTEGER/REAL, TEXT, 0/1);
//! anything else (objects, arrays, a value of another type) is stored as a JSON BLOB. So the
//! SQL comparisons the filter compiles to see the same values the memory connector compares.
//!
//! `_oxbow_present` has bit `cid` set when the column at that position holds a value, which
//! keeps LoopBack's memory-connector difference between an absent property and a `null` one.
//! Bits are by table column position, which never changes (columns are only ever appended).

use std::sync::Arc;

use rusqlite::Connection;
use rusqlite::types::{Value as SqlValue, ValueRef};
use serde_json::{Map, Value};

use oxbow_core::js;
use oxbow_core::model::{ModelDefinition, PropertyType};
use oxbow_core::row::{Layout, Row};

use crate::cache::RowCache;

/// The presence-mask column.
pub const PRESENT: &str = "_oxbow_present";
/// Unknown properties of non-strict models, and declared ones without a column, as a JSON
/// object in arrival order.
pub const EXTRA: &str = "_oxbow_extra";
/// The id counters, one per model: LoopBack's memory connector hands out ids from a counter
/// that every create moves past the id it used, and oxbow keeps that on every connector.
pub const IDS: &str = "_oxbow_ids";
/// Columns at this position or later are not used (the mask is a signed 64-bit integer).
const MAX_CID: usize = 62;

/// How values of a column are stored natively.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Number,
    /// Strings and dates (ISO 8601 text, which orders chronologically).
    Text,
    Boolean,
    /// Everything as JSON.
    Json,
}

impl Kind {
    fn of(ty: &PropertyType) -> Self {
        match ty {
            PropertyType::Number => Self::Number,
            PropertyType::String | PropertyType::Date => Self::Text,
            PropertyType::Boolean => Self::Boolean,
            _ => Self::Json,
        }
    }

    /// The native SQL value of `v` when it has this kind; `None` when it would be JSON.
    pub fn native(self, v: &Value) -> Option<SqlValue> {
        match (self, v) {
            (_, Value::Null) => Some(SqlValue::Null),
            (Self::Number, Value::Number(n)) => Some(match n.as_i64() {
                Some(i) => SqlValue::Integer(i),
                None => SqlValue::Real(n.as_f64().unwrap_or(f64::NAN)),
            }),
            (Self::Text, Value::String(s)) => Some(SqlValue::Text(s.clone())),
            (Self::Boolean, Value::Bool(b)) => Some(SqlValue::Integer(i64::from(*b))),
            _ => None,
        }
    }

    fn encode(self, v: &Value) -> SqlValue {
        self.native(v)
            .unwrap_or_else(|| SqlValue::Blob(serde_json::to_vec(v).unwrap_or_default()))
    }

    fn decode(self, v: ValueRef<'_>) -> Value {
        match v {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(i) if self == Self::Boolean => Value::Bool(i != 0),
            ValueRef::Integer(i) => Value::from(i),
            ValueRef::Real(f) => js::number_value(f),
            ValueRef::Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => serde_json::from_slice(b).unwrap_or(Value::Null),
        }
    }
}

/// A declared property stored in a column.
#[derive(Debug, Clone)]
pub struct Column {
    pub property: String,
    /// Declared position of the property.
    pub slot: usize,
    /// Position in the table (the presence bit).
    pub cid: usize,
    pub kind: Kind,
    /// The column name, quoted for SQL.
    pub quoted: String,
}

/// A model's table.
#[derive(Debug)]
pub struct Table {
    pub def: ModelDefinition,
    pub layout: Arc<Layout>,
    /// The table name, quoted.
    pub quoted: String,
    /// Columns of declared properties, in declaration order.
    pub columns: Vec<Column>,
    /// Declared position → index in `columns`.
    by_slot: Vec<Option<usize>>,
    /// Index in `columns` of the id.
    pub id: usize,
    /// `SELECT <columns>, present, extra FROM table`.
    pub select: String,
    pub insert: String,
    /// `UPDATE … SET every column WHERE id IS ?1`.
    pub update: String,
    /// `SELECT … WHERE id IS ?1`.
    pub by_id: String,
    /// Rows recently read by id.
    pub cache: RowCache,
}

/// Quotes an SQL identifier.
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl Table {
    /// The table name: `settings.sqlite.table`, else the model name (LoopBack's SQL
    /// connectors' rule).
    pub fn name_of(def: &ModelDefinition) -> String {
        def.settings
            .get("sqlite")
            .and_then(|s| s.get("table"))
            .and_then(Value::as_str)
            .map_or_else(|| def.name.to_string(), str::to_owned)
    }

    /// Creates the table, or adds columns for properties it lacks (never drops any), then
    /// maps it.
    /// `cache_rows` bounds the rows kept for point reads.
    pub fn migrate(
        conn: &Connection,
        def: &ModelDefinition,
        cache_rows: usize,
    ) -> Result<Self, String> {
        Self::migrate_sql(conn, def, cache_rows).map_err(|e| e.to_string())?
    }

    fn migrate_sql(
        conn: &Connection,
        def: &ModelDefinition,
        cache_rows: usize,
    ) -> rusqlite::Result<Result<Self, String>> {
        let name = Self::name_of(def);
        let quoted = quote(&name);
        let id_name = def.id_name().to_owned();
        let rowid = def.id_property().ty == PropertyType::Number;
        let mut existing = table_columns(conn, &name)?;
        if existing.is_empty() {
            let mut cols = Vec::new();
            for p in def.properties.iter().take(MAX_CID) {
                if p.name == id_name {
                    cols.push(if rowid {
                        format!("{} INTEGER PRIMARY KEY", quote(&p.name))
                    } else {
                        format!("{} TEXT PRIMARY KEY NOT NULL", quote(&p.name))
                    });
                } else {
                    cols.push(quote(&p.name));
                }
            }
            cols.push(format!("{PRESENT} INTEGER NOT NULL DEFAULT 0"));
            cols.push(format!("{EXTRA} TEXT"));
            conn.execute_batch(&format!("CREATE TABLE {quoted} ({})", cols.join(", ")))?;
            existing = table_columns(conn, &name)?;
        } else {
            // A table oxbow did not create: its rows hold every column (as a SQL connector
            // reads them), so they count as present.
            if !existing.iter().any(|c| c == PRESENT) {
                conn.execute_batch(&format!(
                    "ALTER TABLE {quoted} ADD COLUMN {PRESENT} INTEGER NOT NULL DEFAULT -1"
                ))?;
            }
            if !existing.iter().any(|c| c == EXTRA) {
                conn.execute_batch(&format!("ALTER TABLE {quoted} ADD COLUMN {EXTRA} TEXT"))?;
            }
            existing = table_columns(conn, &name)?;
            for p in &def.properties {
                if existing.len() >= MAX_CID {
                    break;
                }
                if !existing.contains(&p.name) {
                    conn.execute_batch(&format!(
                        "ALTER TABLE {quoted} ADD COLUMN {}",
                        quote(&p.name)
                    ))?;
                    existing.push(p.name.clone());
                }
            }
        }
        let mut columns = Vec::new();
        let mut by_slot = vec![None; def.properties.len()];
        for (slot, p) in def.properties.iter().enumerate() {
            if let Some(cid) = existing.iter().position(|c| *c == p.name)
                && cid < MAX_CID
            {
                by_slot[slot] = Some(columns.len());
                columns.push(Column {
                    property: p.name.clone(),
                    slot,
                    cid,
                    kind: Kind::of(&p.ty),
                    quoted: quote(&p.name),
                });
            }
        }
        let Some(id) = columns.iter().position(|c| c.property == id_name) else {
            return Ok(Err(format!("table {name} has no column for the id")));
        };
        for p in indexed_properties(def) {
            if let Some(c) = columns.iter().find(|c| c.property == p) {
                conn.execute_batch(&format!(
                    "CREATE INDEX IF NOT EXISTS {} ON {quoted} ({})",
                    quote(&format!("{name}_{p}_idx")),
                    c.quoted
                ))?;
            }
        }
        let list: Vec<&str> = columns.iter().map(|c| c.quoted.as_str()).collect();
        let select = format!(
            "SELECT {}, {PRESENT}, {EXTRA} FROM {quoted}",
            list.join(", ")
        );
        let marks: Vec<String> = (1..=columns.len() + 2).map(|i| format!("?{i}")).collect();
        let insert = format!(
            "INSERT INTO {quoted} ({}, {PRESENT}, {EXTRA}) VALUES ({})",
            list.join(", "),
            marks.join(", ")
        );
        let sets: Vec<String> = list
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c} = ?{}", i + 1))
            .chain([
                format!("{PRESENT} = ?{}", columns.len() + 1),
                format!("{EXTRA} = ?{}", columns.len() + 2),
            ])
            .collect();
        let update = format!(
            "UPDATE {quoted} SET {} WHERE {} IS ?{}",
            sets.join(", "),
            columns[id].quoted,
            columns.len() + 3
        );
        let by_id = format!("{select} WHERE {} IS ?1", columns[id].quoted);
        Ok(Ok(Self {
            by_id,
            cache: RowCache::new(cache_rows),
            layout: Layout::of(def),
            def: def.clone(),
            quoted,
            columns,
            by_slot,
            id,
            select,
            insert,
            update,
        }))
    }

    /// The column of the declared property at `slot`.
    pub fn column_at(&self, slot: usize) -> Option<&Column> {
        self.by_slot
            .get(slot)
            .copied()
            .flatten()
            .map(|i| &self.columns[i])
    }

    pub fn id_column(&self) -> &Column {
        &self.columns[self.id]
    }

    /// The SQL value of an id (as stored).
    pub fn id_value(&self, id: &Value) -> SqlValue {
        self.id_column().kind.encode(id)
    }

    /// Reads a row selected with [`Table::select`].
    pub fn read(&self, row: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
        let n = self.columns.len();
        let present = row.get::<_, i64>(n)?;
        let mut entries: Vec<(String, Value)> = Vec::with_capacity(n);
        for (i, c) in self.columns.iter().enumerate() {
            let v = row.get_ref(i)?;
            if matches!(v, ValueRef::Null) && present & (1 << c.cid) == 0 {
                continue;
            }
            entries.push((c.property.clone(), c.kind.decode(v)));
        }
        if let ValueRef::Text(extra) = row.get_ref(n + 1)? {
            if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(extra) {
                for (k, v) in map {
                    if !entries.iter().any(|(e, _)| *e == k) {
                        entries.push((k, v));
                    }
                }
            }
        }
        Ok(Row::from_entries(&self.layout, entries))
    }

    /// The bound values of a record for [`Table::insert`] / [`Table::update`]: every column,
    /// the presence mask, the extras.
    pub fn encode<'r>(
        &self,
        record: impl IntoIterator<Item = (&'r str, &'r Value)>,
    ) -> Vec<SqlValue> {
        let mut values = vec![SqlValue::Null; self.columns.len() + 2];
        let mut present = 0i64;
        let mut extra = Map::new();
        for (k, v) in record {
            let slot = self.def.properties.iter().position(|p| p.name == k);
            match slot.and_then(|s| self.by_slot[s]) {
                Some(i) => {
                    let c = &self.columns[i];
                    values[i] = c.kind.encode(v);
                    present |= 1 << c.cid;
                }
                None => {
                    extra.insert(k.to_owned(), v.clone());
                }
            }
        }
        values[self.columns.len()] = SqlValue::Integer(present);
        if !extra.is_empty() {
            values[self.columns.len() + 1] =
                SqlValue::Text(serde_json::to_string(&extra).unwrap_or_default());
        }
        values
    }
}

/// Column names of a table in position order (empty when it does not exist).
fn table_columns(conn: &Connection, name: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_info(?1) ORDER BY cid")?;
    let names = stmt
        .query_map([name], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(names)
}

/// Properties worth an index: `"index": true` in the model JSON and belongsTo foreign keys
/// (what includes and relation routes look up).
fn indexed_properties(def: &ModelDefinition) -> Vec<String> {
    let mut out: Vec<String> = def
        .relations
        .iter()
        .filter(|r| r.kind == oxbow_core::RelationKind::BelongsTo)
        .map(|r| r.foreign_key.clone())
        .collect();
    if let Some(Value::Object(props)) = def.settings.get("properties") {
        for (name, p) in props {
            if p.get("index")
                .is_some_and(|i| i.as_bool() == Some(true) || i.is_object())
            {
                out.push(name.clone());
            }
        }
    }
    out.sort();
    out.dedup();
    out.retain(|p| *p != def.id_name());
    out
}
