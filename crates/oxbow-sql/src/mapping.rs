//! How a model's records map onto a table, whatever the database: one column per declared
//! property, `_oxbow_present` and `_oxbow_extra`; values in ([`Param`]) and out ([`Mapping::row`]).
//!
//! Each column has a *kind* from its property type, and a value of that kind is stored natively
//! (a number, text, a boolean), so the SQL comparisons the filter compiles to see the values the
//! memory connector compares. Objects and arrays are JSON text. A value of another kind (rare:
//! writes coerce to the declared type) goes where the dialect allows: as JSON in the same column
//! (SQLite, whose columns take any type), or with the unknown properties (PostgreSQL).
//!
//! `_oxbow_present` has bit `cid` set when the column at position `cid` holds a value, which
//! keeps the memory connector's difference between an absent property and a `null` one. Bits
//! are by table column position, which never changes: columns are only ever appended.

use std::sync::Arc;

use serde_json::{Map, Value};

use oxbow_core::model::{ModelDefinition, Property, PropertyType};
use oxbow_core::row::{Layout, Row};

use crate::compile::Dialect;
use crate::quote;

/// The presence-mask column.
pub const PRESENT: &str = "_oxbow_present";
/// Unknown properties (and values that fit no column) as a JSON object in arrival order.
pub const EXTRA: &str = "_oxbow_extra";
/// Columns at this position or later are not used (the mask is a signed 64-bit integer).
pub const MAX_CID: usize = 62;

/// A value bound to a statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Bool(bool),
    /// JSON text of any value.
    Json(String),
}

/// How values of a column are stored natively.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Number,
    /// Strings and dates (ISO 8601 text, which orders chronologically).
    Text,
    Boolean,
    /// Everything as JSON text.
    Json,
}

impl Kind {
    pub fn of(ty: &PropertyType) -> Self {
        match ty {
            PropertyType::Number => Self::Number,
            PropertyType::String | PropertyType::Date => Self::Text,
            PropertyType::Boolean => Self::Boolean,
            _ => Self::Json,
        }
    }

    /// The native value of `v` when it has this kind (`null` always fits).
    pub fn native(self, v: &Value) -> Option<Param> {
        match (self, v) {
            (_, Value::Null) => Some(Param::Null),
            (Self::Number, Value::Number(n)) => Some(match n.as_i64() {
                Some(i) => Param::Int(i),
                None => Param::Real(n.as_f64().unwrap_or(f64::NAN)),
            }),
            (Self::Text, Value::String(s)) => Some(Param::Text(s.clone())),
            (Self::Boolean, Value::Bool(b)) => Some(Param::Bool(*b)),
            (Self::Json, v) => Some(Param::Json(v.to_string())),
            _ => None,
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
    /// The column name, quoted.
    pub quoted: String,
}

/// A model's table as a connector reads and writes it.
#[derive(Debug)]
pub struct Mapping {
    pub def: ModelDefinition,
    pub layout: Arc<Layout>,
    pub dialect: Dialect,
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
    /// `… WHERE id = ?`.
    pub by_id: String,
    /// `INSERT` of every column, the mask and the extras.
    pub insert: String,
    /// `UPDATE … SET every column, mask, extras WHERE id = <last parameter>`.
    pub update: String,
    /// `DELETE … WHERE id = ?`.
    pub delete: String,
}

impl Mapping {
    /// The table name the model's connector settings give (`table` or `tableName`, as is).
    pub fn explicit_table(def: &ModelDefinition, settings_key: &str) -> Option<String> {
        let own = def.settings.get(settings_key)?;
        own.get("table")
            .or_else(|| own.get("tableName"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    /// The table name: [`Mapping::explicit_table`], else the model name.
    pub fn table_name(def: &ModelDefinition, settings_key: &str) -> String {
        Self::explicit_table(def, settings_key).unwrap_or_else(|| def.name.to_string())
    }

    /// The column a declared property is stored in, found as LoopBack's SQL connectors find
    /// it: the name the property's connector settings give (`column`, `columnName`, `field`,
    /// `fieldName`) as is; else an existing column of the property's name, else one that
    /// differs only in case (loopback-connector-postgresql lower-cases names; SQLite's are
    /// case-insensitive); else the property's name, for a new column.
    pub fn column_name(
        def: &ModelDefinition,
        p: &Property,
        existing: &[String],
        settings_key: &str,
    ) -> String {
        let explicit = def
            .settings
            .get("properties")
            .and_then(|props| props.get(&p.name))
            .and_then(|prop| prop.get(settings_key))
            .and_then(|own| {
                ["column", "columnName", "field", "fieldName"]
                    .iter()
                    .find_map(|k| own.get(*k).and_then(Value::as_str))
            });
        if let Some(name) = explicit {
            return name.to_owned();
        }
        if existing.contains(&p.name) {
            return p.name.clone();
        }
        existing
            .iter()
            .find(|c| c.eq_ignore_ascii_case(&p.name))
            .cloned()
            .unwrap_or_else(|| p.name.clone())
    }

    /// The declared properties a table with columns `existing` (in position order) lacks and
    /// has room for, in declaration order, with the name of the column to add for each.
    pub fn missing<'d>(
        def: &'d ModelDefinition,
        existing: &[String],
        dialect: Dialect,
    ) -> Vec<(&'d Property, String)> {
        let room = MAX_CID.saturating_sub(existing.len());
        def.properties
            .iter()
            .map(|p| (p, Self::column_name(def, p, existing, dialect.settings_key)))
            .filter(|(_, name)| !existing.contains(name))
            .take(room)
            .collect()
    }

    /// Maps `def` onto the table `name` whose columns are `existing`, in position order.
    pub fn new(
        def: &ModelDefinition,
        name: &str,
        existing: &[String],
        dialect: Dialect,
    ) -> Result<Self, String> {
        let quoted = quote(name);
        let mut columns = Vec::new();
        let mut by_slot = vec![None; def.properties.len()];
        for (slot, p) in def.properties.iter().enumerate() {
            let name = Self::column_name(def, p, existing, dialect.settings_key);
            if let Some(cid) = existing.iter().position(|c| *c == name)
                && cid < MAX_CID
            {
                by_slot[slot] = Some(columns.len());
                columns.push(Column {
                    property: p.name.clone(),
                    slot,
                    cid,
                    kind: Kind::of(&p.ty),
                    quoted: quote(&name),
                });
            }
        }
        let id_name = def.id_name();
        let Some(id) = columns.iter().position(|c| c.property == id_name) else {
            return Err(format!("table {name} has no column for the id `{id_name}`"));
        };
        let ph = dialect.placeholder;
        let list: Vec<&str> = columns.iter().map(|c| c.quoted.as_str()).collect();
        let n = columns.len();
        let select = format!(
            "SELECT {}, {PRESENT}, {EXTRA} FROM {quoted}",
            list.join(", ")
        );
        let id_col = &columns[id].quoted;
        let by_id = format!("{select} WHERE {id_col} = {}", ph(1));
        let marks: Vec<String> = (1..=n + 2).map(ph).collect();
        let insert = format!(
            "INSERT INTO {quoted} ({}, {PRESENT}, {EXTRA}) VALUES ({})",
            list.join(", "),
            marks.join(", ")
        );
        let sets: Vec<String> = list
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c} = {}", ph(i + 1)))
            .chain([
                format!("{PRESENT} = {}", ph(n + 1)),
                format!("{EXTRA} = {}", ph(n + 2)),
            ])
            .collect();
        let update = format!(
            "UPDATE {quoted} SET {} WHERE {id_col} = {}",
            sets.join(", "),
            ph(n + 3)
        );
        let delete = format!("DELETE FROM {quoted} WHERE {id_col} = {}", ph(1));
        Ok(Self {
            layout: Layout::of(def),
            def: def.clone(),
            dialect,
            quoted,
            columns,
            by_slot,
            id,
            select,
            by_id,
            insert,
            update,
            delete,
        })
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

    /// The id as bound in statements.
    pub fn id_param(&self, id: &Value) -> Param {
        self.id_column()
            .kind
            .native(id)
            .unwrap_or_else(|| Param::Text(oxbow_core::js::to_js_string(id)))
    }

    /// The parameters of a record for [`Mapping::insert`] / [`Mapping::update`]: every column,
    /// then the presence mask, then the extras.
    pub fn encode<'r>(&self, record: impl IntoIterator<Item = (&'r str, &'r Value)>) -> Vec<Param> {
        let n = self.columns.len();
        let mut values = vec![Param::Null; n + 2];
        let mut present = 0i64;
        let mut extra = Map::new();
        for (k, v) in record {
            let slot = self.def.properties.iter().position(|p| p.name == k);
            let column = slot.and_then(|s| self.by_slot[s]);
            let native = column.and_then(|i| match self.columns[i].kind.native(v) {
                Some(p) => Some((i, p)),
                None if self.dialect.json_anywhere => Some((i, Param::Json(v.to_string()))),
                None => None,
            });
            match native {
                Some((i, p)) => {
                    values[i] = p;
                    present |= 1 << self.columns[i].cid;
                }
                None => {
                    extra.insert(k.to_owned(), v.clone());
                }
            }
        }
        values[n] = Param::Int(present);
        if !extra.is_empty() {
            values[n + 1] = Param::Text(Value::Object(extra).to_string());
        }
        values
    }

    /// A stored row from its column values (SQL NULL as `Value::Null`, in column order), the
    /// presence mask and the extras' JSON text.
    pub fn row(
        &self,
        values: impl IntoIterator<Item = Value>,
        present: i64,
        extra: Option<&str>,
    ) -> Row {
        let mut entries: Vec<(String, Value)> = Vec::with_capacity(self.columns.len());
        for (c, v) in self.columns.iter().zip(values) {
            if v.is_null() && present & (1 << c.cid) == 0 {
                continue;
            }
            entries.push((c.property.clone(), v));
        }
        if let Some(Ok(Value::Object(map))) = extra.map(serde_json::from_str::<Value>) {
            // A property is in its column or here, never both (see `encode`).
            for (k, v) in map {
                if !entries.iter().any(|(e, _)| *e == k) {
                    entries.push((k, v));
                }
            }
        }
        Row::from_entries(&self.layout, entries)
    }

    /// Properties worth an index: `"index": true` in the model JSON and belongsTo foreign keys
    /// (what includes and relation routes look up).
    pub fn indexed(&self) -> Vec<&Column> {
        let def = &self.def;
        let mut names: Vec<&str> = def
            .relations
            .iter()
            .filter(|r| r.kind == oxbow_core::RelationKind::BelongsTo)
            .map(|r| r.foreign_key.as_str())
            .collect();
        if let Some(Value::Object(props)) = def.settings.get("properties") {
            for (name, p) in props {
                if p.get("index")
                    .is_some_and(|i| i.as_bool() == Some(true) || i.is_object())
                {
                    names.push(name);
                }
            }
        }
        self.columns
            .iter()
            .filter(|c| c.slot != self.id_column().slot && names.contains(&c.property.as_str()))
            .collect()
    }
}
