//! A model's SQLite table: created or extended at boot, and the conversions between SQLite
//! values and the shared [`Mapping`]'s.
//!
//! Columns carry no type affinity, so a value reads back exactly as it was written: a number
//! stays a number, a string that looks like one stays a string, and a value of another kind
//! than its column's is stored as a JSON BLOB in that column (TEXT is always a string).

use std::ops::Deref;

use rusqlite::Connection;
use rusqlite::types::{Value as SqlValue, ValueRef};
use serde_json::Value;

use oxbow_core::js;
use oxbow_core::model::{ModelDefinition, PropertyType};
use oxbow_core::row::Row;
use oxbow_sql::mapping::{EXTRA, PRESENT};
use oxbow_sql::{Dialect, Kind, Mapping, Param, quote};

use oxbow_sql::cache::RowCache;

/// SQLite's SQL.
pub const SQLITE: Dialect = Dialect {
    settings_key: "sqlite",
    placeholder: |n| format!("?{n}"),
    regexp: Some("oxbow_regexp"),
    bool_as_number: |c| c.to_owned(),
    json_anywhere: true,
    unlimited: "-1",
};

/// A model's table.
#[derive(Debug)]
pub struct Table {
    pub map: Mapping,
    /// Rows recently read by id.
    pub cache: RowCache,
}

impl Deref for Table {
    type Target = Mapping;
    fn deref(&self) -> &Mapping {
        &self.map
    }
}

impl Table {
    /// Creates the table, or adds columns for properties it lacks (never drops any), then
    /// maps it. `cache_rows` bounds the rows kept for point reads.
    pub fn migrate(
        conn: &Connection,
        def: &ModelDefinition,
        cache_rows: usize,
    ) -> Result<Self, String> {
        let name = Mapping::table_name(def, SQLITE.settings_key);
        let existing = Self::create_or_extend(conn, def, &name).map_err(|e| e.to_string())?;
        let map = Mapping::new(def, &name, &existing, SQLITE)?;
        for c in map.indexed() {
            conn.execute_batch(&format!(
                "CREATE INDEX IF NOT EXISTS {} ON {} ({})",
                quote(&format!("{name}_{}_idx", c.property)),
                map.quoted,
                c.quoted
            ))
            .map_err(|e| e.to_string())?;
        }
        Ok(Self {
            map,
            cache: RowCache::new(cache_rows),
        })
    }

    /// The table's columns after creating or extending it.
    fn create_or_extend(
        conn: &Connection,
        def: &ModelDefinition,
        name: &str,
    ) -> rusqlite::Result<Vec<String>> {
        let quoted = quote(name);
        let existing = table_columns(conn, name)?;
        if existing.is_empty() {
            let id_name = def.id_name();
            let cols: Vec<String> = Mapping::missing(def, &[], SQLITE)
                .into_iter()
                .map(|(p, column)| match (p.name == id_name, &p.ty) {
                    (true, PropertyType::Number) => {
                        format!("{} INTEGER PRIMARY KEY", quote(&column))
                    }
                    (true, _) => format!("{} TEXT PRIMARY KEY NOT NULL", quote(&column)),
                    (false, _) => quote(&column),
                })
                .chain([
                    format!("{PRESENT} INTEGER NOT NULL DEFAULT 0"),
                    format!("{EXTRA} TEXT"),
                ])
                .collect();
            conn.execute_batch(&format!("CREATE TABLE {quoted} ({})", cols.join(", ")))?;
            return table_columns(conn, name);
        }
        // A table oxbow did not create: its rows hold every column (as a SQL connector reads
        // them), so they count as present.
        if !existing.iter().any(|c| c == PRESENT) {
            conn.execute_batch(&format!(
                "ALTER TABLE {quoted} ADD COLUMN {PRESENT} INTEGER NOT NULL DEFAULT -1"
            ))?;
        }
        if !existing.iter().any(|c| c == EXTRA) {
            conn.execute_batch(&format!("ALTER TABLE {quoted} ADD COLUMN {EXTRA} TEXT"))?;
        }
        let existing = table_columns(conn, name)?;
        for (_, column) in Mapping::missing(def, &existing, SQLITE) {
            conn.execute_batch(&format!(
                "ALTER TABLE {quoted} ADD COLUMN {}",
                quote(&column)
            ))?;
        }
        table_columns(conn, name)
    }

    /// Reads a row selected with [`Mapping::select`].
    pub fn read(&self, row: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
        let n = self.columns.len();
        let mut values = Vec::with_capacity(n);
        for (i, c) in self.columns.iter().enumerate() {
            values.push(decode(c.kind, row.get_ref(i)?));
        }
        let present = row.get::<_, i64>(n)?;
        let extra = match row.get_ref(n + 1)? {
            ValueRef::Text(t) => std::str::from_utf8(t).ok(),
            _ => None,
        };
        Ok(self.map.row(values, present, extra))
    }
}

/// A parameter as SQLite stores it (JSON as a BLOB, so it never reads back as a string).
pub fn sql_value(p: Param) -> SqlValue {
    match p {
        Param::Null => SqlValue::Null,
        Param::Int(i) => SqlValue::Integer(i),
        Param::Real(f) => SqlValue::Real(f),
        Param::Text(s) => SqlValue::Text(s),
        Param::Bool(b) => SqlValue::Integer(i64::from(b)),
        Param::Json(s) => SqlValue::Blob(s.into_bytes()),
    }
}

/// Parameters for rusqlite.
pub fn sql_values(params: Vec<Param>) -> impl Iterator<Item = SqlValue> {
    params.into_iter().map(sql_value)
}

fn decode(kind: Kind, v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) if kind == Kind::Boolean => Value::Bool(i != 0),
        ValueRef::Integer(i) => Value::from(i),
        ValueRef::Real(f) => js::number_value(f),
        ValueRef::Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => serde_json::from_slice(b).unwrap_or(Value::Null),
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
