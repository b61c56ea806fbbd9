//! The filter language compiled to SQL with bound parameters: `where` conditions on columns,
//! `order`, `limit`/`skip`, with the memory connector's semantics, for a [`Dialect`].
//!
//! A condition compiles only when SQL gives exactly the memory connector's answer: a declared
//! property with a column of a scalar kind, compared with a value of that kind. Every compiled
//! expression is two-valued (never SQL NULL), so `nor` can negate it. What does not compile
//! (dot paths, unknown properties, array properties, mixed types) is left out of an `and`,
//! which makes the SQL a superset, and the shared evaluator of `oxbow_core::filter` checks the
//! rows SQL returns. The result says which of the two happened.

use serde_json::Value;

use oxbow_core::filter::{Filter, OrderKey, Test, Where};

use crate::mapping::{Column, Kind, Mapping, PRESENT, Param};

/// What differs between the SQL of the databases oxbow speaks.
#[derive(Debug, Clone, Copy)]
pub struct Dialect {
    /// The key of the connector's own settings in a model or property definition
    /// (`"postgresql": {"table": …, "columnName": …}`).
    pub settings_key: &'static str,
    /// The `n`th parameter (from 1): `?1`, `$1`.
    pub placeholder: fn(usize) -> String,
    /// A function `f(pattern, text)` matching the memory connector's regular expressions, if
    /// the connector registers one; without it `like`/`regexp` are checked in Rust.
    pub regexp: Option<&'static str>,
    /// A boolean column as a number for ordering (`col`, `col::int`).
    pub bool_as_number: fn(&str) -> String,
    /// Columns take a value of any type (SQLite): a value of another kind is stored as JSON in
    /// its column rather than with the unknown properties.
    pub json_anywhere: bool,
    /// The `LIMIT` that means none, for an `OFFSET` alone (`-1`, `ALL`).
    pub unlimited: &'static str,
}

/// A compiled `where`: SQL text (empty: no condition), its parameters, and whether it is
/// exactly the filter (`false`: a superset, rows must be checked).
#[derive(Debug, Default)]
pub struct Compiled {
    pub sql: String,
    pub params: Vec<Param>,
    pub exact: bool,
}

impl Compiled {
    /// ` WHERE <condition>`, or nothing when there is none.
    pub fn where_clause(&self) -> String {
        if self.sql.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.sql)
        }
    }
}

/// Compiles `where_`.
pub fn compile_where(table: &Mapping, where_: Option<&Where>) -> Compiled {
    let Some(w) = where_ else {
        return Compiled {
            exact: true,
            ..Default::default()
        };
    };
    let mut params = Vec::new();
    match expr(table, w, &mut params) {
        Some((sql, exact)) => Compiled { sql, params, exact },
        None => Compiled::default(),
    }
}

/// `ORDER BY …` for the filter, or `None` when a key has no column (rows are then sorted by
/// the shared evaluator). Ties keep id order, as the memory connector's stable sort does.
pub fn compile_order(table: &Mapping, order: &[OrderKey]) -> Option<String> {
    let id = &table.id_column().quoted;
    let mut terms = Vec::new();
    for k in order {
        let c = scalar_column(table, &k.key)?;
        let dir = if k.descending { "DESC" } else { "ASC" };
        // Absent properties sort first ascending (memory: `undefined` before any value).
        terms.push(format!("(({PRESENT} >> {}) & 1) {dir}", c.cid));
        match c.kind {
            // JavaScript's `<` takes null as 0.
            Kind::Number => terms.push(format!("COALESCE({}, 0) {dir}", c.quoted)),
            Kind::Boolean => terms.push(format!(
                "COALESCE({}, 0) {dir}",
                (table.dialect.bool_as_number)(&c.quoted)
            )),
            // null before strings (after absent values), reversed descending; PostgreSQL's
            // default puts nulls last ascending, SQLite's first, so it is spelled out.
            _ => terms.push(format!(
                "{} {dir} NULLS {}",
                c.quoted,
                if k.descending { "LAST" } else { "FIRST" }
            )),
        }
    }
    terms.push(format!("{id} ASC"));
    Some(terms.join(", "))
}

/// The whole `SELECT` for a filter whose `where` compiled exactly and whose order compiled:
/// `None` when rows must be filtered or sorted in Rust.
pub fn select_sql(table: &Mapping, filter: &Filter, w: &Compiled) -> Option<(String, Vec<Param>)> {
    if !w.exact {
        return None;
    }
    let order = compile_order(table, &filter.order)?;
    let mut sql = format!("{}{} ORDER BY {order}", table.select, w.where_clause());
    let mut params = w.params.clone();
    if filter.limit.is_some() || filter.skip > 0 {
        let ph = table.dialect.placeholder;
        let limit = match filter.limit {
            Some(l) => {
                params.push(Param::Int(i64::try_from(l).unwrap_or(i64::MAX)));
                ph(params.len())
            }
            None => table.dialect.unlimited.to_owned(),
        };
        params.push(Param::Int(i64::try_from(filter.skip).unwrap_or(i64::MAX)));
        sql.push_str(&format!(" LIMIT {limit} OFFSET {}", ph(params.len())));
    }
    Some((sql, params))
}

/// The rows `w` selects (a superset when it is not exact), in id order.
pub fn candidates_sql(table: &Mapping, w: &Compiled) -> String {
    format!(
        "{}{} ORDER BY {}",
        table.select,
        w.where_clause(),
        table.id_column().quoted
    )
}

/// `SELECT COUNT(*)` of the rows `w` selects.
pub fn count_sql(table: &Mapping, w: &Compiled) -> String {
    format!("SELECT COUNT(*) FROM {}{}", table.quoted, w.where_clause())
}

/// `DELETE` of the rows `w` selects.
pub fn delete_sql(table: &Mapping, w: &Compiled) -> String {
    format!("DELETE FROM {}{}", table.quoted, w.where_clause())
}

fn scalar_column<'t>(table: &'t Mapping, key: &str) -> Option<&'t Column> {
    let slot = table.def.properties.iter().position(|p| p.name == key)?;
    table.column_at(slot).filter(|c| c.kind != Kind::Json)
}

/// Binds a parameter; its placeholder.
fn push(d: &Dialect, params: &mut Vec<Param>, v: Param) -> String {
    params.push(v);
    (d.placeholder)(params.len())
}

/// SQL for one clause and whether it is exact; `None` when it cannot be written as a
/// superset.
fn expr(table: &Mapping, w: &Where, params: &mut Vec<Param>) -> Option<(String, bool)> {
    match w {
        Where::And(list) => {
            let mut parts = Vec::new();
            let mut exact = true;
            for item in list {
                let mark = params.len();
                match expr(table, item, params) {
                    Some((sql, e)) => {
                        exact &= e;
                        parts.push(sql);
                    }
                    None => {
                        params.truncate(mark);
                        exact = false;
                    }
                }
            }
            Some(match parts.len() {
                0 => ("TRUE".to_owned(), exact),
                1 => (parts.remove(0), exact),
                _ => (format!("({})", parts.join(" AND ")), exact),
            })
        }
        Where::Or(list) => {
            if list.is_empty() {
                return Some(("FALSE".to_owned(), true));
            }
            let mut parts = Vec::new();
            let mut exact = true;
            for item in list {
                let (sql, e) = expr(table, item, params)?;
                exact &= e;
                parts.push(sql);
            }
            Some((format!("({})", parts.join(" OR ")), exact))
        }
        Where::Nor(list) => {
            if list.is_empty() {
                return Some(("TRUE".to_owned(), true));
            }
            let mut parts = Vec::new();
            for item in list {
                // A superset negated is a subset: only exact clauses may be negated.
                let (sql, true) = expr(table, item, params)? else {
                    return None;
                };
                parts.push(sql);
            }
            Some((format!("NOT ({})", parts.join(" OR ")), true))
        }
        Where::Cond { key, slot, test } => {
            let c = slot.and_then(|s| table.column_at(s))?;
            if c.kind == Kind::Json || *key != c.property {
                return None;
            }
            condition(&table.dialect, c, test, params).map(|sql| (sql, true))
        }
    }
}

fn condition(d: &Dialect, c: &Column, test: &Test, params: &mut Vec<Param>) -> Option<String> {
    let col = &c.quoted;
    // A non-null operand of the column's kind, bound.
    let bind = |v: &Value, params: &mut Vec<Param>| -> Option<String> {
        if v.is_null() {
            return None;
        }
        c.kind.native(v).map(|p| push(d, params, p))
    };
    // Every expression is two-valued (never SQL NULL), so `nor` may negate it; the forms keep
    // indexes usable.
    Some(match test {
        Test::Eq(Value::Null) => format!("{col} IS NULL"),
        Test::Eq(v) => format!("({col} IS NOT NULL AND {col} = {})", bind(v, params)?),
        Test::Neq(Value::Null) => format!("{col} IS NOT NULL"),
        Test::Neq(v) => format!("({col} IS NULL OR {col} <> {})", bind(v, params)?),
        // A null operand compares equal to null and absent values only.
        Test::Gte(Value::Null) | Test::Lte(Value::Null) => format!("{col} IS NULL"),
        Test::Gt(Value::Null) | Test::Lt(Value::Null) => "FALSE".to_owned(),
        Test::Gt(v) => format!("({col} IS NOT NULL AND {col} > {})", bind(v, params)?),
        Test::Gte(v) => format!("({col} IS NOT NULL AND {col} >= {})", bind(v, params)?),
        Test::Lt(v) => format!("({col} IS NOT NULL AND {col} < {})", bind(v, params)?),
        Test::Lte(v) => format!("({col} IS NOT NULL AND {col} <= {})", bind(v, params)?),
        Test::Between(a, b) => {
            let a = bind(a, params)?;
            let b = bind(b, params)?;
            format!("({col} IS NOT NULL AND {col} BETWEEN {a} AND {b})")
        }
        Test::Inq(items) | Test::Nin(items) => {
            let has_null = items.iter().any(Value::is_null);
            let mut marks = Vec::new();
            for i in items.iter().filter(|i| !i.is_null()) {
                marks.push(bind(i, params)?);
            }
            let list = marks.join(", ");
            match (matches!(test, Test::Inq(_)), has_null, marks.is_empty()) {
                (true, false, true) => "FALSE".to_owned(),
                (true, true, true) => format!("{col} IS NULL"),
                (true, false, false) => format!("({col} IS NOT NULL AND {col} IN ({list}))"),
                (true, true, false) => format!("({col} IS NULL OR {col} IN ({list}))"),
                (false, false, true) => "TRUE".to_owned(),
                (false, true, true) => format!("{col} IS NOT NULL"),
                (false, false, false) => format!("({col} IS NULL OR {col} NOT IN ({list}))"),
                (false, true, false) => format!("({col} IS NOT NULL AND {col} NOT IN ({list}))"),
            }
        }
        Test::Like { re, negated } if c.kind == Kind::Text => {
            let f = d.regexp?;
            // The memory connector matches `String(value)`: "null" and "undefined" included.
            let pattern = push(d, params, Param::Text(re.as_str().to_owned()));
            let subject = format!(
                "CASE WHEN {col} IS NOT NULL THEN {col} WHEN (({PRESENT} >> {}) & 1) = 1 THEN 'null' ELSE 'undefined' END",
                c.cid
            );
            let m = format!("{f}({pattern}, {subject})");
            if *negated { format!("NOT {m}") } else { m }
        }
        Test::Regexp(re) if c.kind == Kind::Text => {
            let f = d.regexp?;
            let pattern = push(d, params, Param::Text(re.as_str().to_owned()));
            format!("({col} IS NOT NULL AND {col} <> '' AND {f}({pattern}, {col}))")
        }
        Test::Near | Test::Always => "TRUE".to_owned(),
        Test::Never => "FALSE".to_owned(),
        _ => return None,
    })
}
