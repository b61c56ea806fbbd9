//! Stored rows in a compact layout: values by declared-property position (names shared by all
//! rows of a model), unknown properties of non-strict models aside, and the REST JSON cached.
//!
//! A row costs about half the memory of a JSON map with its own keys, and reads never hash a
//! key. Rows never change once stored (a write stores a new row), so the cached JSON stays true.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

use crate::instance::Record;
use crate::model::ModelDefinition;

/// Read access to a record's properties, whatever its representation.
pub trait Fields {
    /// The value of a top-level property.
    fn field(&self, key: &str) -> Option<&Value>;
    /// Every property in canonical order.
    fn entries(&self) -> impl Iterator<Item = (&str, &Value)>;

    /// The value of the declared property at position `slot` (named `key`); stored rows read
    /// it without a name lookup.
    fn field_at(&self, slot: usize, key: &str) -> Option<&Value> {
        let _ = slot;
        self.field(key)
    }

    /// Like [`Fields::field`], possibly as an owned copy: stored rows hand out scalars without
    /// making their JSON values.
    fn lookup(&self, key: &str) -> Option<Cow<'_, Value>> {
        self.field(key).map(Cow::Borrowed)
    }

    /// Like [`Fields::field_at`], possibly as an owned copy.
    fn lookup_at(&self, slot: usize, key: &str) -> Option<Cow<'_, Value>> {
        self.field_at(slot, key).map(Cow::Borrowed)
    }

    /// The declared property at `slot` when it is stored as a number, read without making a
    /// JSON value (`where` tests numbers against numbers on this path); `None` when it is not
    /// a number or the record cannot tell cheaply.
    fn number_at(&self, slot: usize) -> Option<&serde_json::Number> {
        let _ = slot;
        None
    }
}

impl Fields for Record {
    fn field(&self, key: &str) -> Option<&Value> {
        // Records are small: comparing a few short keys beats hashing the key (SipHash).
        if self.len() <= 16 {
            self.iter().find(|(k, _)| k.as_str() == key).map(|(_, v)| v)
        } else {
            self.get(key)
        }
    }

    fn entries(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.iter().map(|(k, v)| (k.as_str(), v))
    }
}

/// The declared property names of a model, in declaration order, shared by its rows.
#[derive(Debug)]
pub struct Layout {
    names: Box<[Box<str>]>,
}

impl Layout {
    pub fn of(def: &ModelDefinition) -> Arc<Self> {
        Arc::new(Self {
            names: def
                .properties
                .iter()
                .map(|p| p.name.as_str().into())
                .collect(),
        })
    }

    fn index(&self, key: &str) -> Option<usize> {
        self.names.iter().position(|n| &**n == key)
    }
}

/// Declared properties past this position are kept with the extras (in canonical order).
const MASKED: usize = 128;

/// A stored record.
#[derive(Debug)]
pub struct Row {
    layout: Arc<Layout>,
    /// Bit `i` set: declared property `i` is set (possibly to `null`).
    mask: u128,
    /// The values of the set declared properties, in declaration order, compactly (24 bytes a
    /// value instead of serde_json's 72: rows are many and mostly only written and rendered).
    cells: Box<[Cell]>,
    /// The same values as JSON values, made on the first read that needs `&Value`.
    values: OnceLock<Box<[Value]>>,
    /// Unknown properties kept by non-strict models, in arrival order (and declared
    /// properties past the 128th, in declaration order).
    extras: Option<Box<Record>>,
    json: OnceLock<Box<str>>,
}

impl Row {
    /// Stores a record: declared properties by position, the others aside.
    pub fn from_record(layout: &Arc<Layout>, record: Record) -> Self {
        Self::from_entries(layout, record.into_iter().collect())
    }

    /// Stores a record given as a list of properties (each name once).
    pub fn from_entries(layout: &Arc<Layout>, record: Vec<(String, Value)>) -> Self {
        // Records arrive in canonical order (declared properties first, in declaration
        // order), so values are pushed as they come; anything else is sorted first.
        let mut mask = 0u128;
        let mut last = None;
        let mut ordered = true;
        let mut declared = 0;
        for (k, _) in &record {
            if let Some(i) = layout.index(k).filter(|&i| i < MASKED) {
                ordered &= last.is_none_or(|l| i > l);
                last = Some(i);
                mask |= 1u128 << i;
                declared += 1;
            }
        }
        let mut values: Vec<Cell> = Vec::with_capacity(declared);
        let mut extras = Record::new();
        if ordered {
            for (k, v) in record {
                if layout.index(&k).is_some_and(|i| i < MASKED) {
                    values.push(Cell::from(v));
                } else {
                    extras.insert(k, v);
                }
            }
        } else {
            let mut slots: Vec<(usize, Value)> = Vec::with_capacity(declared);
            for (k, v) in record {
                match layout.index(&k).filter(|&i| i < MASKED) {
                    Some(i) => slots.push((i, v)),
                    None => {
                        extras.insert(k, v);
                    }
                }
            }
            slots.sort_by_key(|(i, _)| *i);
            values.extend(slots.into_iter().map(|(_, v)| Cell::from(v)));
        }
        let extras = (!extras.is_empty()).then(|| Box::new(extras));
        Self {
            layout: layout.clone(),
            mask,
            cells: values.into_boxed_slice(),
            values: OnceLock::new(),
            extras,
            json: OnceLock::new(),
        }
    }

    fn values(&self) -> &[Value] {
        self.values
            .get_or_init(|| self.cells.iter().map(Cell::to_value).collect())
    }

    /// Names and cells of the set declared properties, in declaration order.
    fn declared_cells(&self) -> impl Iterator<Item = (&str, &Cell)> {
        let set =
            (0..self.layout.names.len().min(MASKED)).filter(|i| self.mask & (1u128 << i) != 0);
        set.zip(self.cells.iter())
            .map(|(i, c)| (&*self.layout.names[i], c))
    }

    fn extra_entries(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.extras
            .iter()
            .flat_map(|e| e.iter().map(|(k, v)| (k.as_str(), v)))
    }

    /// A property's value, copied out without making the row's JSON values (for writes, which
    /// should not grow the rows they store).
    pub fn value_of(&self, key: &str) -> Option<Value> {
        match self.layout.index(key).filter(|&i| i < MASKED) {
            Some(i) => self.cells.get(self.cell_index(i)?).map(Cell::to_value),
            None => self.extras.as_ref().and_then(|e| e.get(key)).cloned(),
        }
    }

    /// Where the value of the declared property at `slot` (< [`MASKED`]) sits among the set
    /// cells, if it is set: the set bits below its own. Most models have fewer than 64
    /// properties, and one 64-bit count is about half the work of a 128-bit one.
    #[inline]
    fn cell_index(&self, slot: usize) -> Option<usize> {
        if slot < 64 {
            let low = self.mask as u64;
            let bit = 1u64 << slot;
            return (low & bit != 0).then(|| (low & (bit - 1)).count_ones() as usize);
        }
        let bit = 1u128 << slot;
        (self.mask & bit != 0).then(|| (self.mask & (bit - 1)).count_ones() as usize)
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        match self.layout.index(key).filter(|&i| i < MASKED) {
            Some(i) => self.values().get(self.cell_index(i)?),
            None => self.extras.as_ref().and_then(|e| e.get(key)),
        }
    }

    /// The row as a JSON map in canonical order (for writes that start from it).
    pub fn to_record(&self) -> Record {
        let declared = self
            .declared_cells()
            .map(|(k, c)| (k.to_owned(), c.to_value()));
        declared
            .chain(self.extra_entries().map(|(k, v)| (k.to_owned(), v.clone())))
            .collect()
    }

    /// The row as REST shows it (hidden properties removed), as compact JSON, cached. `def`
    /// must be the row's own model.
    pub fn rest_json(&self, def: &ModelDefinition) -> &str {
        self.json.get_or_init(|| render(def, self).into_boxed_str())
    }

    /// Like [`Row::rest_json`] without filling the cache (for write responses: a row just
    /// written may never be read, and the cache costs memory per row).
    pub fn render_json(&self, def: &ModelDefinition) -> Cow<'_, str> {
        match self.json.get() {
            Some(cached) => Cow::Borrowed(cached),
            None => Cow::Owned(render(def, self)),
        }
    }
}

fn render(def: &ModelDefinition, row: &Row) -> String {
    serde_json::to_string(&RowJson {
        row,
        hidden: Some(def),
    })
    .unwrap_or_default()
}

/// A row serialised straight from its cells: as REST shows it (`hidden: Some(def)`) or whole.
struct RowJson<'a> {
    row: &'a Row,
    hidden: Option<&'a ModelDefinition>,
}

impl Serialize for RowJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let shown = |k: &str| self.hidden.is_none_or(|def| !def.is_hidden(k));
        let mut map = s.serialize_map(None)?;
        for (k, c) in self.row.declared_cells() {
            if shown(k) {
                map.serialize_entry(k, c)?;
            }
        }
        for (k, v) in self.row.extra_entries() {
            if shown(k) {
                map.serialize_entry(k, v)?;
            }
        }
        map.end()
    }
}

/// A stored value without serde_json's per-value map header.
#[derive(Debug)]
enum Cell {
    Null,
    Bool(bool),
    Num(serde_json::Number),
    Str(Box<str>),
    /// Arrays and objects.
    Json(Box<Value>),
}

impl From<Value> for Cell {
    fn from(v: Value) -> Self {
        match v {
            Value::Null => Self::Null,
            Value::Bool(b) => Self::Bool(b),
            Value::Number(n) => Self::Num(n),
            Value::String(s) => Self::Str(s.into_boxed_str()),
            other => Self::Json(Box::new(other)),
        }
    }
}

impl Cell {
    fn to_value(&self) -> Value {
        match self {
            Self::Null => Value::Null,
            Self::Bool(b) => Value::Bool(*b),
            Self::Num(n) => Value::Number(n.clone()),
            Self::Str(s) => Value::String(s.to_string()),
            Self::Json(v) => (**v).clone(),
        }
    }
}

impl Serialize for Cell {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Null => s.serialize_unit(),
            Self::Bool(b) => s.serialize_bool(*b),
            Self::Num(n) => n.serialize(s),
            Self::Str(v) => s.serialize_str(v),
            Self::Json(v) => v.serialize(s),
        }
    }
}

impl Fields for Row {
    fn field(&self, key: &str) -> Option<&Value> {
        self.get(key)
    }

    fn lookup(&self, key: &str) -> Option<Cow<'_, Value>> {
        match self.layout.index(key).filter(|&i| i < MASKED) {
            Some(i) => self.lookup_at(i, key),
            None => self
                .extras
                .as_ref()
                .and_then(|e| e.get(key))
                .map(Cow::Borrowed),
        }
    }

    fn lookup_at(&self, slot: usize, key: &str) -> Option<Cow<'_, Value>> {
        if slot >= MASKED {
            return self.lookup(key);
        }
        let at = self.cell_index(slot)?;
        match self.cells.get(at)? {
            Cell::Json(v) => Some(Cow::Borrowed(v)),
            // Already made: borrow rather than copy.
            _ if self.values.get().is_some() => self.values().get(at).map(Cow::Borrowed),
            c => Some(Cow::Owned(c.to_value())),
        }
    }

    fn number_at(&self, slot: usize) -> Option<&serde_json::Number> {
        if slot >= MASKED {
            return None;
        }
        match self.cells.get(self.cell_index(slot)?)? {
            Cell::Num(n) => Some(n),
            _ => None,
        }
    }

    fn field_at(&self, slot: usize, key: &str) -> Option<&Value> {
        if slot >= MASKED {
            return self.get(key);
        }
        self.values().get(self.cell_index(slot)?)
    }

    fn entries(&self) -> impl Iterator<Item = (&str, &Value)> {
        let set =
            (0..self.layout.names.len().min(MASKED)).filter(|i| self.mask & (1u128 << i) != 0);
        let declared = set
            .zip(self.values().iter())
            .map(|(i, v)| (&*self.layout.names[i], v));
        declared.chain(self.extra_entries())
    }
}

/// Every property of a row, hidden ones included (what a connector stores).
#[derive(Debug, Clone, Copy)]
pub struct StoredJson<'a>(pub &'a Row);

impl Serialize for StoredJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        RowJson {
            row: self.0,
            hidden: None,
        }
        .serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cells_are_compact_and_render_like_values() {
        assert_eq!(std::mem::size_of::<Cell>(), 24);
        let l = layout(3);
        let rec = record(json!({"p0": "s", "p1": {"a": [1, 2.5, null]}, "p2": -3, "z": true}));
        let row = Row::from_record(&l, rec.clone());
        assert_eq!(
            serde_json::to_string(&StoredJson(&row)).unwrap(),
            Value::Object(rec.clone()).to_string()
        );
        assert_eq!(row.to_record(), rec);
        assert_eq!(row.get("p1"), Some(&json!({"a": [1, 2.5, null]})));
    }

    fn layout(n: usize) -> Arc<Layout> {
        Arc::new(Layout {
            names: (0..n).map(|i| format!("p{i}").into_boxed_str()).collect(),
        })
    }

    fn record(v: Value) -> Record {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn canonical_and_unordered_records_read_back_in_declared_order() {
        let l = layout(4);
        for input in [
            json!({"p0": 1, "p2": null, "x": "extra", "y": 2}),
            json!({"x": "extra", "p2": null, "y": 2, "p0": 1}),
        ] {
            let row = Row::from_record(&l, record(input));
            assert_eq!(row.get("p0"), Some(&json!(1)));
            assert_eq!(row.get("p1"), None);
            assert_eq!(row.get("p2"), Some(&Value::Null));
            assert_eq!(row.field_at(2, "p2"), Some(&Value::Null));
            assert_eq!(row.field_at(3, "p3"), None);
            assert_eq!(row.get("x"), Some(&json!("extra")));
            assert_eq!(
                Value::Object(row.to_record()),
                json!({"p0": 1, "p2": null, "x": "extra", "y": 2})
            );
        }
    }

    #[test]
    fn models_with_more_than_128_properties_keep_every_value() {
        let l = layout(130);
        let mut r = Record::new();
        for i in [0, 5, 127, 128, 129] {
            r.insert(format!("p{i}"), json!(i));
        }
        r.insert("z".into(), json!("unknown"));
        let row = Row::from_record(&l, r.clone());
        for i in [0, 5, 127, 128, 129] {
            assert_eq!(row.get(&format!("p{i}")), Some(&json!(i)));
            assert_eq!(row.field_at(i, &format!("p{i}")), Some(&json!(i)));
        }
        assert_eq!(row.to_record(), r);
    }
}
