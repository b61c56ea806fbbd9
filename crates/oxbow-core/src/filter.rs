//! The LoopBack filter language: parsing `{where, order, limit, skip, offset, fields, include}`
//! into a typed [`Filter`], and evaluating it against records the way LoopBack's memory
//! connector does.
//!
//! Parsing applies juggler's normalisation and coercion (`_normalize`, `_coerce`) with its error
//! messages; evaluation applies the memory connector's matching rules (loose equality, `like` as
//! a regular expression, array properties matching when any element matches, dot paths).
//! Where LoopBack is plainly wrong (a second operator on one property silently dropped, `nor`
//! ignored, `eq` never matching undeclared properties) the filter does the right thing;
//! docs/COMPATIBILITY.md lists each case.

use std::cmp::Ordering;

use regex::{Regex, RegexBuilder};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::instance::{Record, to_boolean};
use crate::js;
use crate::model::{ModelDefinition, PropertyType, Strict};
use crate::row::Fields;

/// A normalised query.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub where_: Option<Where>,
    /// Empty means "by id ascending", the memory connector's default.
    pub order: Vec<OrderKey>,
    pub limit: Option<usize>,
    pub skip: usize,
    /// Property names to keep (`None`: all).
    pub fields: Option<Vec<String>>,
    /// `include`, its forms reduced to one list; relations resolve it.
    pub include: Option<Include>,
}

/// An `include` in its every form (`"a"`, `["a", {"b": "c"}]`, `{"a": "b"}`,
/// `{"relation": "a", "scope": {...}}`) as one list: a relation named twice is listed once,
/// at its first place, with its last scope (as a second assignment to the same key does in
/// JavaScript).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Include(pub Vec<IncludeItem>);

/// One relation an `include` names, with its scope (a filter for the related model, whose
/// `include` is the nested one).
#[derive(Debug, Clone, PartialEq)]
pub struct IncludeItem {
    pub relation: String,
    pub scope: Map<String, Value>,
    /// Named by a plain string (alone or in the top-level list), which is how juggler finds
    /// the belongsTo keys a `{relation, scope}` with `fields` must keep.
    pub plain: bool,
}

impl Include {
    /// The include's structure; relation names are checked by whoever resolves them.
    pub fn parse(v: &Value) -> Self {
        fn walk(v: &Value, top: bool, out: &mut Vec<IncludeItem>) {
            match v {
                Value::String(s) => out.push(IncludeItem {
                    relation: s.clone(),
                    scope: Map::new(),
                    plain: top,
                }),
                Value::Array(items) => {
                    for i in items {
                        // Strings in the top-level list are plain; deeper lists are not.
                        walk(i, top && !matches!(i, Value::Array(_)), out);
                    }
                }
                Value::Object(o) => {
                    if let Some(rel) = o.get("relation").and_then(Value::as_str) {
                        out.push(IncludeItem {
                            relation: rel.to_owned(),
                            scope: o
                                .get("scope")
                                .and_then(Value::as_object)
                                .cloned()
                                .unwrap_or_default(),
                            plain: false,
                        });
                        return;
                    }
                    for (rel, nested) in o {
                        let mut scope = Map::new();
                        if !nested.is_null() && nested != &Value::Bool(true) {
                            scope.insert("include".into(), nested.clone());
                        }
                        out.push(IncludeItem {
                            relation: rel.clone(),
                            scope,
                            plain: false,
                        });
                    }
                }
                _ => {}
            }
        }
        let mut listed = Vec::new();
        walk(v, true, &mut listed);
        let mut items: Vec<IncludeItem> = Vec::new();
        for item in listed {
            match items.iter_mut().find(|i| i.relation == item.relation) {
                Some(first) => {
                    first.scope = item.scope;
                    first.plain |= item.plain;
                }
                None => items.push(item),
            }
        }
        Self(items)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct OrderKey {
    pub key: String,
    pub descending: bool,
}

/// A `where` clause.
#[derive(Debug, Clone)]
pub enum Where {
    And(Vec<Where>),
    Or(Vec<Where>),
    Nor(Vec<Where>),
    /// `slot`: the property's position among the model's declared properties, so stored rows
    /// are read without looking the name up.
    Cond {
        key: String,
        slot: Option<usize>,
        test: Test,
    },
}

/// One condition on one property.
#[derive(Debug, Clone)]
pub enum Test {
    /// Loose equality; `null` matches null or missing.
    Eq(Value),
    Neq(Value),
    Gt(Value),
    Gte(Value),
    Lt(Value),
    Lte(Value),
    Between(Value, Value),
    Inq(Vec<Value>),
    Nin(Vec<Value>),
    /// `like`/`ilike` (`negated` for `nlike`/`nilike`); the pattern is already a regex.
    Like {
        re: Regex,
        negated: bool,
    },
    Regexp(Regex),
    /// Geo `near`: matches everything (sorting by distance is not supported).
    Near,
    /// An operator the memory connector does not know (`exists`, …): never matches.
    Never,
    /// Matches everything (`nlike` with a date pattern).
    Always,
}

const OPERATORS: &[&str] = &[
    "eq", "gt", "gte", "lt", "lte", "between", "inq", "nin", "neq", "like", "nlike", "ilike",
    "nilike", "regexp",
];

/// Whether `name` is a `where` operator (`gt`, `inq`, …) rather than a property.
pub fn is_operator(name: &str) -> bool {
    OPERATORS.contains(&name) || name == "near"
}

impl Filter {
    /// Parses a `filter` object (already JSON; bracket syntax gives string leaves).
    pub fn parse(def: &ModelDefinition, v: &Value) -> Result<Self> {
        let obj = match v {
            Value::Null => return Ok(Self::default()),
            Value::Object(o) => o,
            other => {
                return Err(Error::bad_request(format!(
                    "The query filter {other} is not an object"
                )));
            }
        };
        check_depth(v, 0)?;
        let mut filter = Self::default();
        let truthy = |k: &str| obj.get(k).is_some_and(js::truthy);
        if truthy("limit") || truthy("skip") || truthy("offset") {
            let limit_raw = obj.get("limit").filter(|v| js::truthy(v));
            let limit = limit_raw.map_or(Some(100.0), js::to_number);
            match limit {
                Some(l) if l > 0.0 && l.fract() == 0.0 && l.is_finite() => {
                    filter.limit = Some(l as usize)
                }
                _ => {
                    let shown = obj.get("limit").cloned().unwrap_or(Value::Null);
                    return Err(Error::bad_request(format!(
                        "The limit parameter {shown} is not valid"
                    )));
                }
            }
            let skip_raw = obj
                .get("skip")
                .filter(|v| js::truthy(v))
                .or_else(|| obj.get("offset").filter(|v| js::truthy(v)));
            let skip = skip_raw.map_or(Some(0.0), js::to_number);
            match skip {
                Some(s) if s >= 0.0 && s.fract() == 0.0 && s.is_finite() => {
                    filter.skip = s as usize
                }
                _ => {
                    let shown = skip_raw.cloned().unwrap_or(Value::Null);
                    return Err(Error::bad_request(format!(
                        "The offset/skip parameter {shown} is not valid"
                    )));
                }
            }
        }
        if let Some(order) = obj.get("order").filter(|v| js::truthy(v)) {
            filter.order = parse_order(order)?;
            // LoopBack sorts by a hidden property (its order leaks it); oxbow leaves those
            // keys out (docs/COMPATIBILITY.md).
            filter.order.retain(|k| !def.hides_path(&k.key));
        }
        if let Some(fields) = obj.get("fields").filter(|v| js::truthy(v)) {
            filter.fields = fields_to_list(def, fields);
            if filter
                .fields
                .as_ref()
                .is_some_and(|f| f.iter().any(|n| n.contains('.')))
            {
                return Err(Error::bad_request(
                    "Property names containing dot(s) are not supported",
                ));
            }
        }
        if let Some(w) = obj.get("where") {
            filter.where_ = parse_where(def, w)?;
        }
        if let Some(inc) = obj.get("include").filter(|v| js::truthy(v)) {
            for name in include_names(inc) {
                if def.relation(&name).is_none() {
                    return Err(Error::bad_request(format!(
                        "Relation \"{name}\" is not defined for {} model",
                        def.name
                    )));
                }
            }
            filter.include = Some(Include::parse(inc));
        }
        Ok(filter)
    }

    /// Applies the filter to rows given in id order (where, sort, skip/limit), as the memory
    /// connector does. Without `order` it stops as soon as `skip + limit` rows matched.
    pub fn apply<'a, R>(&self, rows: impl Iterator<Item = &'a R>) -> Vec<R>
    where
        R: std::ops::Deref + Clone + 'a,
        R::Target: Fields,
    {
        fn rec<R: std::ops::Deref>(r: &R) -> &R::Target {
            r
        }
        let matching = rows.filter(|r| self.where_.as_ref().is_none_or(|w| w.matches(rec(*r))));
        if self.order.is_empty() {
            let take = self.limit.unwrap_or(usize::MAX);
            return matching.skip(self.skip).take(take).cloned().collect();
        }
        let mut out: Vec<R> = matching.cloned().collect();
        out.sort_by(|a, b| compare_rows(&self.order, rec(a), rec(b)));
        let skip = self.skip.min(out.len());
        let end = match self.limit {
            Some(l) => skip.saturating_add(l).min(out.len()),
            None => out.len(),
        };
        out.truncate(end);
        out.drain(..skip);
        out
    }

    /// Keeps only the selected fields of a record, in record order.
    pub fn project<F: Fields + ?Sized>(&self, record: &F) -> Option<Record> {
        let fields = self.fields.as_ref()?;
        Some(
            record
                .entries()
                .filter(|(k, _)| fields.iter().any(|f| f == k))
                .map(|(k, v)| (k.to_owned(), v.clone()))
                .collect(),
        )
    }
}

/// The deepest level a REST query may nest (LoopBack's `maxDepthOfQuery`).
pub const MAX_QUERY_DEPTH: usize = 12;

/// Refuses query objects nested deeper than [`MAX_QUERY_DEPTH`], as LoopBack does.
pub fn check_depth(v: &Value, level: usize) -> Result<()> {
    if level > MAX_QUERY_DEPTH {
        return Err(Error::BadRequest {
            message: format!("The query object exceeds maximum depth {MAX_QUERY_DEPTH}"),
            code: Some("QUERY_OBJECT_TOO_DEEP"),
            details: None,
        });
    }
    match v {
        Value::Array(a) => a.iter().try_for_each(|x| check_depth(x, level + 1)),
        Value::Object(o) => o.values().try_for_each(|x| check_depth(x, level + 1)),
        _ => Ok(()),
    }
}

/// The top-level relation names an `include` value names (string, array, object keys,
/// `{relation: …}`).
fn include_names(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().flat_map(include_names).collect(),
        Value::Object(o) => match o.get("relation") {
            Some(Value::String(r)) => vec![r.clone()],
            _ => o.keys().cloned().collect(),
        },
        _ => Vec::new(),
    }
}

fn parse_order(order: &Value) -> Result<Vec<OrderKey>> {
    let items: Vec<&Value> = match order {
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    let mut keys = Vec::new();
    for item in items {
        let Value::String(s) = item else {
            return Err(Error::bad_request(format!("The order {item} is not valid")));
        };
        for token in split_commas(s) {
            let parts = split_ws(token);
            let key = parts.first().copied().unwrap_or_default().to_owned();
            let descending = match parts.get(1).copied() {
                None => false,
                Some(dir) if dir.eq_ignore_ascii_case("ASC") => false,
                Some(dir) if dir.eq_ignore_ascii_case("DESC") => true,
                Some(_) => {
                    return Err(Error::bad_request(format!(
                        "The order {} has invalid direction",
                        Value::String(token.to_owned())
                    )));
                }
            };
            keys.push(OrderKey { key, descending });
        }
    }
    Ok(keys)
}

/// `s.split(/(?:\s*,\s*)+/)` without the empty tokens.
fn split_commas(s: &str) -> Vec<&str> {
    s.split(',')
        .enumerate()
        .map(|(i, t)| {
            let n = s.matches(',').count();
            let t = if i > 0 { t.trim_start() } else { t };
            if i < n { t.trim_end() } else { t }
        })
        .filter(|t| !t.is_empty())
        .collect()
}

/// `s.split(/\s+/)`: runs of whitespace separate, leading/trailing whitespace gives "".
fn split_ws(s: &str) -> Vec<&str> {
    let mut parts: Vec<&str> = s.split(char::is_whitespace).collect();
    let first_empty = parts.first().is_some_and(|p| p.is_empty());
    let last_empty = parts.len() > 1 && parts.last().is_some_and(|p| p.is_empty());
    let inner: Vec<&str> = parts.drain(..).filter(|p| !p.is_empty()).collect();
    let mut out = Vec::new();
    if first_empty {
        out.push("");
    }
    out.extend(inner);
    if last_empty {
        out.push("");
    }
    out
}

/// juggler's `fieldsToArray`: the property names a `fields` value selects.
fn fields_to_list(def: &ModelDefinition, fields: &Value) -> Option<Vec<String>> {
    let declared = || {
        def.properties
            .iter()
            .map(|p| p.name.clone())
            .collect::<Vec<_>>()
    };
    let list = match fields {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) if !a.is_empty() => a.iter().map(js::to_js_string).collect(),
        Value::Object(o) if !o.is_empty() => {
            let included: Vec<String> = o
                .iter()
                .filter(|(_, v)| js::truthy(v))
                .map(|(k, _)| k.clone())
                .collect();
            if !included.is_empty() {
                included
            } else {
                let mut all = declared();
                all.retain(|p| !o.contains_key(p));
                all
            }
        }
        _ => return None,
    };
    if def.strict != Strict::Off {
        return Some(
            list.into_iter()
                .filter(|f| def.property(f).is_some())
                .collect(),
        );
    }
    Some(list)
}

/// Parses and coerces a `where` object. Hidden properties and dot paths through them are
/// dropped (LoopBack's `prohibitHiddenPropertiesInQuery`); `None` means "no condition".
pub fn parse_where(def: &ModelDefinition, w: &Value) -> Result<Option<Where>> {
    match w {
        Value::Null => Ok(None),
        Value::Object(o) => {
            let mut conds = Vec::new();
            for (key, value) in o {
                if def.hides_path(key) {
                    continue;
                }
                match key.as_str() {
                    "and" | "or" | "nor" => {
                        let clauses = coerce_array(value).map_err(|e| {
                            Error::bad_request(format!(
                                "The {key} operator has invalid clauses {value}: {e}"
                            ))
                        })?;
                        let mut parsed = Vec::new();
                        for clause in &clauses {
                            if !clause.is_object() {
                                return Err(Error::bad_request(format!(
                                    "The where clause {clause} is not an object"
                                )));
                            }
                            parsed
                                .push(parse_where(def, clause)?.unwrap_or(Where::And(Vec::new())));
                        }
                        conds.push(match key.as_str() {
                            "and" => Where::And(parsed),
                            "or" => Where::Or(parsed),
                            _ => Where::Nor(parsed),
                        });
                    }
                    _ => conds.extend(parse_condition(def, key, value)?),
                }
            }
            Ok(Some(if conds.len() == 1 {
                conds.remove(0)
            } else {
                Where::And(conds)
            }))
        }
        other => Err(Error::bad_request(format!(
            "The where clause {other} is not an object"
        ))),
    }
}

/// Arrays, or objects with keys `0..n` (qs turns long bracket arrays into those).
fn coerce_array(v: &Value) -> std::result::Result<Vec<Value>, &'static str> {
    match v {
        Value::Array(a) => Ok(a.clone()),
        Value::Object(o) if o.is_empty() => Err("Value is an empty object"),
        Value::Object(o) => (0..o.len())
            .map(|i| {
                o.get(&i.to_string())
                    .cloned()
                    .ok_or("Value is not an array or object with sequential numeric indices")
            })
            .collect(),
        _ => Err("Value is not an array or object with sequential numeric indices"),
    }
}

fn parse_condition(def: &ModelDefinition, key: &str, value: &Value) -> Result<Vec<Where>> {
    // Declared properties coerce operands to their type; for arrays, to the item type. juggler
    // leaves an untyped `array` alone, as it leaves undeclared properties and dot paths.
    let ty = def.property(key).and_then(|p| match &p.ty {
        PropertyType::Array(Some(item)) => Some((**item).clone()),
        PropertyType::Array(None) => None,
        other => Some(other.clone()),
    });
    let slot = if key.contains('.') {
        None
    } else {
        def.properties.iter().position(|p| p.name == key)
    };
    let cond = |test| Where::Cond {
        key: key.to_owned(),
        slot,
        test,
    };
    let Value::Object(ops) = value else {
        let v = match &ty {
            Some(ty) => coerce_operand(ty, value)?,
            None => value.clone(),
        };
        return Ok(vec![cond(Test::Eq(v))]);
    };
    let dollar: Vec<&String> = ops.keys().filter(|k| k.starts_with('$')).collect();
    if !dollar.is_empty() {
        let names: Vec<&str> = dollar.iter().map(|s| s.as_str()).collect();
        let mut details = Map::new();
        details.insert("operators".into(), Value::from(names.clone()));
        details.insert(
            "where".into(),
            Value::Object(Map::from_iter([(key.to_owned(), value.clone())])),
        );
        return Err(Error::BadRequest {
            message: format!(
                "Operators \"{}\" are not allowed in query",
                names.join(", ")
            ),
            code: Some("OPERATOR_NOT_ALLOWED_IN_QUERY"),
            details: Some(Value::Object(details)),
        });
    }
    let known: Vec<(&String, &Value)> = ops
        .iter()
        .filter(|(k, _)| OPERATORS.contains(&k.as_str()) || *k == "near")
        .collect();
    if known.is_empty() {
        // An object value with no operator: equality with an object never matches in the
        // memory connector (`exists` included).
        return Ok(vec![cond(if ops.is_empty() {
            Test::Eq(value.clone())
        } else {
            Test::Never
        })]);
    }
    let mut out = Vec::new();
    // The whole `{key: value}` clause, shown in error messages only.
    let clause = || Value::Object(Map::from_iter([(key.to_owned(), value.clone())]));
    let coerce = |v: &Value| -> Result<Value> {
        match &ty {
            Some(ty) => coerce_operand(ty, v),
            None => Ok(v.clone()),
        }
    };
    for (op, operand) in known {
        let test = match op.as_str() {
            "eq" => Test::Eq(coerce(operand)?),
            "neq" => Test::Neq(coerce(operand)?),
            "gt" => Test::Gt(coerce(operand)?),
            "gte" => Test::Gte(coerce(operand)?),
            "lt" => Test::Lt(coerce(operand)?),
            "lte" => Test::Lte(coerce(operand)?),
            "inq" | "nin" | "between" if ty.is_none() => loose_list_test(op, operand),
            "inq" | "nin" | "between" => {
                let items = coerce_array(operand).map_err(|e| {
                    Error::bad_request(format!(
                        "The {key} property has invalid clause {}: Error: {e}",
                        clause()[key]
                    ))
                })?;
                let items = items
                    .iter()
                    .map(|i| {
                        if i.is_null() {
                            Ok(Value::Null)
                        } else {
                            coerce(i)
                        }
                    })
                    .collect::<Result<Vec<_>>>()?;
                match op.as_str() {
                    "inq" => Test::Inq(items),
                    "nin" => Test::Nin(items),
                    _ => {
                        if items.len() != 2 {
                            return Err(Error::bad_request(format!(
                                "The {key} property has invalid clause {}: Expected precisely 2 values, received {}",
                                clause()[key],
                                items.len()
                            )));
                        }
                        let mut it = items.into_iter();
                        Test::Between(
                            it.next().unwrap_or(Value::Null),
                            it.next().unwrap_or(Value::Null),
                        )
                    }
                }
            }
            "like" | "nlike" | "ilike" | "nilike" => {
                if ty.is_some() && !operand.is_string() {
                    return Err(Error::bad_request(format!(
                        "The {key} property has invalid clause {}: Expected a string or RegExp",
                        clause()[key]
                    )));
                }
                let insensitive = op.starts_with('i') || op.starts_with("ni");
                like_test(ty.as_ref(), operand, insensitive, op.starts_with('n'))?
            }
            // juggler turns `"/^a/i"` into a RegExp for declared properties only; for others
            // the string is the pattern as it stands (`String.prototype.match`).
            "regexp" if ty.is_some() => Test::Regexp(parse_regexp(operand)?),
            "regexp" => match operand {
                Value::String(s) if !s.is_empty() => Test::Regexp(compile(s, false, false)?),
                other if !js::truthy(other) => Test::Never,
                other => Test::Regexp(compile(&js::to_js_string(other), false, false)?),
            },
            "near" => Test::Near,
            _ => Test::Never,
        };
        out.push(cond(test));
    }
    Ok(out)
}

/// Coerces a `where` operand to a declared property's type (juggler `_coerce`).
fn coerce_operand(ty: &PropertyType, v: &Value) -> Result<Value> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    Ok(match ty {
        PropertyType::Number => match js::to_number(v) {
            Some(n) if n.is_finite() => js::number_value(n),
            _ => v.clone(),
        },
        PropertyType::Boolean => match v {
            Value::String(s) if s == "true" || s == "1" => Value::Bool(true),
            Value::String(s) if s == "false" || s == "0" => Value::Bool(false),
            other => Value::Bool(to_boolean(other)),
        },
        PropertyType::Date => match js::to_date(v) {
            Some(d) => Value::String(js::format_date(&d)),
            None => {
                return Err(Error::bad_request(format!(
                    "Invalid date: {}",
                    js::to_js_string(v)
                )));
            }
        },
        PropertyType::String => match v {
            Value::String(_) => v.clone(),
            Value::Object(_) | Value::Array(_) => v.clone(),
            other => Value::String(js::to_js_string(other)),
        },
        _ => v.clone(),
    })
}

/// `inq`/`nin`/`between` on a property juggler does not coerce (undeclared, or a dot path):
/// the operand is not checked, and the memory connector reads it as JavaScript would. A
/// string is a list of its characters; `inq` of anything else that is not a list matches
/// nothing and `nin` of it everything (or nothing, when falsy); `between` takes the items
/// `0` and `1`. A missing bound is `undefined`, which compares equal to null and missing
/// values only: both missing (qs leaves `between[0]` unparsed past its depth of 5) match
/// those; one missing matches them when the other bound is null, else nothing.
fn loose_list_test(op: &str, operand: &Value) -> Test {
    let items: Option<Vec<Value>> = match operand {
        Value::Array(items) => Some(items.clone()),
        Value::String(s) => Some(s.chars().map(|c| Value::String(c.to_string())).collect()),
        _ => None,
    };
    match op {
        "inq" => items.map_or(Test::Never, Test::Inq),
        "nin" => match items {
            Some(items) => Test::Nin(items),
            None if js::truthy(operand) => Test::Always,
            None => Test::Never,
        },
        _ => {
            let at = |i: usize| match operand {
                Value::Object(o) => o.get(&i.to_string()).cloned(),
                _ => items.as_ref().and_then(|v| v.get(i).cloned()),
            };
            match (at(0), at(1)) {
                (Some(a), Some(b)) => Test::Between(a, b),
                (None, None) => Test::Eq(Value::Null),
                (Some(Value::Null), None) | (None, Some(Value::Null)) => Test::Eq(Value::Null),
                _ => Test::Never,
            }
        }
    }
}

/// A `like`-family condition as the memory connector decides it. juggler first coerces the
/// pattern to a declared property's type (`"1"` is `true` for a boolean, `"10"` is `10` for a
/// number); then a falsy pattern (`""`, `0`, `false`) skips the `like` test, and the
/// condition matches nothing, negated or not. A string pattern becomes a regex (see
/// [`like_to_regex`]); any other value is used as `new RegExp(value)`, its `String()` as the
/// pattern. A date pattern never matches (its `String()` is not the stored date's).
fn like_test(
    ty: Option<&PropertyType>,
    operand: &Value,
    insensitive: bool,
    negated: bool,
) -> Result<Test> {
    let pattern = match ty {
        Some(PropertyType::Date) => {
            coerce_operand(&PropertyType::Date, operand)?;
            return Ok(if negated { Test::Always } else { Test::Never });
        }
        // `Object("a%")`, a String object: always truthy, used as a regex as written.
        Some(PropertyType::Object) => {
            let re = compile(&js::to_js_string(operand), insensitive, false)?;
            return Ok(Test::Like { re, negated });
        }
        Some(ty) => coerce_operand(ty, operand)?,
        None => operand.clone(),
    };
    if !js::truthy(&pattern) {
        return Ok(Test::Never);
    }
    let source = match &pattern {
        Value::String(s) => like_to_regex(s),
        other => js::to_js_string(other),
    };
    let re = compile(&source, insensitive, false)?;
    Ok(Test::Like { re, negated })
}

/// The memory connector's `toRegExp` of a `like` pattern: `%` → `.*`, `_` → `.`, every other
/// character as written, regex syntax included (it escapes the special characters, then
/// drops every escaping backslash again); the match is unanchored. A backslash therefore
/// escapes what follows in the regex: `\%` is `\.*`, zero or more dots.
fn like_to_regex(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 8);
    for c in pattern.chars() {
        match c {
            '%' => out.push_str(".*"),
            '_' => out.push('.'),
            other => out.push(other),
        }
    }
    out
}

/// juggler's `toRegExp`: `"^abc"` or `"/^abc/i"` (flags `i`, `g`, `m` only).
fn parse_regexp(v: &Value) -> Result<Regex> {
    let Value::String(s) = v else {
        return Err(Error::bad_request(
            "Invalid argument, must be a string, regex literal, or RegExp object",
        ));
    };
    // juggler's test for "has flags" is `/.*\/.+$/`: any slash followed by a character.
    let has_flags = s.find('/').is_some_and(|i| i + 1 < s.len());
    if !has_flags {
        return compile(s, false, false);
    }
    let flags = &s[s.rfind('/').map_or(0, |i| i + 1)..];
    let invalid: Vec<String> = flags
        .chars()
        .filter(|c| !matches!(c, 'i' | 'g' | 'm'))
        .map(String::from)
        .collect();
    if !invalid.is_empty() {
        return Err(Error::bad_request(format!(
            "Invalid regex flags: {}",
            invalid.join(",")
        )));
    }
    // `regex.substr(1, regex.lastIndexOf('/') - 1)`: drop the first character (the opening
    // slash) and everything from the last slash on.
    let end = s.rfind('/').unwrap_or(0);
    let start = s.chars().next().map_or(0, char::len_utf8);
    let body = if end > start { &s[start..end] } else { "" };
    compile(body, flags.contains('i'), flags.contains('m'))
}

/// Compiles a pattern with its flags written inline (`(?i)…`), so `Regex::as_str` is the whole
/// pattern and SQL connectors can hand it to their `REGEXP` function.
fn compile(pattern: &str, insensitive: bool, multi_line: bool) -> Result<Regex> {
    let build = |p: &str| RegexBuilder::new(p).size_limit(1 << 20).build();
    let flags = match (insensitive, multi_line) {
        (false, false) => "",
        (true, false) => "(?i)",
        (false, true) => "(?m)",
        (true, true) => "(?im)",
    };
    build(&format!("{flags}{pattern}")).map_err(|_| {
        // The message quotes the client's pattern as written, without the flags.
        let e = build(pattern)
            .err()
            .map_or_else(String::new, |e| e.to_string());
        Error::bad_request(format!("Invalid regular expression: /{pattern}/: {e}"))
    })
}

/// `getValue(obj, "a.b")` of the memory connector (JavaScript property access, so strings and
/// arrays have a `length`).
fn get_path<'a, F: Fields + ?Sized>(
    record: &'a F,
    key: &str,
) -> Option<std::borrow::Cow<'a, Value>> {
    use std::borrow::Cow;
    if let Some(v) = record.lookup(key) {
        return Some(v);
    }
    if !key.contains('.') {
        return None;
    }
    let mut parts = key.split('.');
    let mut cur = match record.lookup(parts.next()?)? {
        Cow::Borrowed(v) => v,
        // A scalar: only a string's `length` lies below it.
        Cow::Owned(Value::String(s))
            if parts.next() == Some("length") && parts.next().is_none() =>
        {
            return Some(Cow::Owned(Value::from(s.encode_utf16().count())));
        }
        // `getValue` stops at a null on the way and answers it: `a.b` of `{a: null}` is null.
        Cow::Owned(Value::Null) => return Some(Cow::Owned(Value::Null)),
        Cow::Owned(_) => return None,
    };
    if cur.is_null() {
        return Some(Cow::Borrowed(cur));
    }
    for part in parts {
        cur = match cur {
            Value::Object(o) => o.get(part)?,
            Value::Array(a) if part == "length" => return Some(Cow::Owned(Value::from(a.len()))),
            Value::Array(a) => a.get(part.parse::<usize>().ok()?)?,
            Value::String(s) if part == "length" => {
                return Some(Cow::Owned(Value::from(s.encode_utf16().count())));
            }
            _ => return None,
        };
        if cur.is_null() {
            return Some(Cow::Borrowed(cur));
        }
    }
    Some(Cow::Borrowed(cur))
}

impl Where {
    /// Whether a record satisfies this clause.
    #[inline]
    pub fn matches<F: Fields + ?Sized>(&self, record: &F) -> bool {
        // A stored number tested against numbers, the usual `where` of a scan: decided here,
        // without entering the general path.
        if let Self::Cond {
            slot: Some(i),
            test,
            ..
        } = self
        {
            if let Some(hit) = record.number_at(*i).and_then(|n| test.test_number(n)) {
                return hit;
            }
        }
        self.matches_generally(record)
    }

    #[inline(never)]
    fn matches_generally<F: Fields + ?Sized>(&self, record: &F) -> bool {
        match self {
            Self::And(list) => list.iter().all(|w| w.matches(record)),
            Self::Or(list) => list.iter().any(|w| w.matches(record)),
            Self::Nor(list) => !list.iter().any(|w| w.matches(record)),
            Self::Cond { key, slot, test } => {
                let value = match slot {
                    Some(i) => record.lookup_at(*i, key),
                    None => get_path(record, key),
                };
                if let Some(Value::Array(items)) = value.as_deref() {
                    if matches!(test, Test::Neq(_)) && items.is_empty() {
                        return true;
                    }
                    return items.iter().any(|v| test.test(Some(v)));
                }
                if test.test(value.as_deref()) {
                    return true;
                }
                // "a.b.c": the memory connector retries with "b.c" inside `a` (an object, or
                // any element of an array of objects).
                if let Some((head, rest)) = slot.is_none().then(|| key.split_once('.')).flatten() {
                    let sub = Self::Cond {
                        key: rest.to_owned(),
                        slot: None,
                        test: test.clone(),
                    };
                    match record.lookup(head).as_deref() {
                        Some(Value::Array(items)) => {
                            return items
                                .iter()
                                .any(|i| matches!(i, Value::Object(o) if sub.matches(o)));
                        }
                        Some(Value::Object(o)) => return sub.matches(o),
                        _ => {}
                    }
                }
                false
            }
        }
    }
}

impl Test {
    /// [`Test::test`] of a stored number against numeric operands, without making a JSON
    /// value; `None` when an operand is not a number (the general path decides).
    #[inline]
    fn test_number(&self, n: &serde_json::Number) -> Option<bool> {
        let num = Value::as_number;
        let cmp = |v: &Value| Some(n.as_f64()?.partial_cmp(&num(v)?.as_f64()?));
        // Whether `n` is among `items`, in one pass: a match before any non-number decides
        // (the general path would find the same match); a non-number before one declines.
        let among = |items: &[Value]| {
            for i in items {
                if js::number_eq(n, num(i)?) {
                    return Some(true);
                }
            }
            Some(false)
        };
        Some(match self {
            Self::Eq(v) => js::number_eq(n, num(v)?),
            Self::Neq(v) => cmp(v)? != Some(Ordering::Equal),
            Self::Gt(v) => cmp(v)? == Some(Ordering::Greater),
            Self::Gte(v) => cmp(v)?.is_some_and(|o| o != Ordering::Less),
            Self::Lt(v) => cmp(v)? == Some(Ordering::Less),
            Self::Lte(v) => cmp(v)?.is_some_and(|o| o != Ordering::Greater),
            Self::Between(a, b) => {
                cmp(a)?.is_some_and(|o| o != Ordering::Less)
                    && cmp(b)?.is_some_and(|o| o != Ordering::Greater)
            }
            Self::Inq(items) => among(items)?,
            Self::Nin(items) => !among(items)?,
            _ => return None,
        })
    }

    fn test(&self, value: Option<&Value>) -> bool {
        let gt = |v: &Value| js::compare(value, Some(v)).is_some_and(|o| o == Ordering::Greater);
        let lt = |v: &Value| js::compare(value, Some(v)).is_some_and(|o| o == Ordering::Less);
        match self {
            Self::Eq(Value::Null) => value.is_none_or(Value::is_null),
            Self::Eq(v) => js::loose_eq(Some(v), value),
            Self::Neq(v) => js::compare(Some(v), value) != Some(Ordering::Equal),
            Self::Gt(v) => gt(v),
            Self::Gte(v) => js::compare(value, Some(v)).is_some_and(|o| o != Ordering::Less),
            Self::Lt(v) => lt(v),
            Self::Lte(v) => js::compare(value, Some(v)).is_some_and(|o| o != Ordering::Greater),
            Self::Between(a, b) => {
                js::compare(value, Some(a)).is_some_and(|o| o != Ordering::Less)
                    && js::compare(value, Some(b)).is_some_and(|o| o != Ordering::Greater)
            }
            Self::Inq(items) => items.iter().any(|i| js::loose_eq(Some(i), value)),
            Self::Nin(items) => !items.iter().any(|i| js::loose_eq(Some(i), value)),
            Self::Like { re, negated } => {
                let s = value.map_or_else(|| "undefined".to_owned(), js::to_js_string);
                re.is_match(&s) != *negated
            }
            Self::Regexp(re) => match value {
                None | Some(Value::Null) | Some(Value::Bool(false)) => false,
                Some(Value::String(s)) => !s.is_empty() && re.is_match(s),
                Some(other) => re.is_match(&js::to_js_string(other)),
            },
            Self::Near | Self::Always => true,
            Self::Never => false,
        }
    }
}

/// The memory connector's sort: JavaScript `<`/`>` per key, missing values first ascending,
/// made a total order (see [`sort_cmp`]).
fn compare_rows<F: Fields + ?Sized>(order: &[OrderKey], a: &F, b: &F) -> Ordering {
    for k in order {
        let av = get_path(a, &k.key);
        let bv = get_path(b, &k.key);
        let ord = match (av.as_deref(), bv.as_deref()) {
            (Some(_), None) => Ordering::Greater,
            (None, Some(_)) => Ordering::Less,
            (None, None) => Ordering::Equal,
            (Some(x), Some(y)) => sort_cmp(x, y),
        };
        let ord = if k.descending { ord.reverse() } else { ord };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    Ordering::Equal
}

/// JavaScript's `x < y` / `x > y` as the sort sees them, made a total order. JavaScript
/// compares two strings as strings and two numbers as numbers, and so does this: numbers,
/// booleans and `null` (as 0) by value, strings, arrays (`"1,2"`) and objects by their
/// `String()`. JavaScript finds some pairs neither below nor above each other (`null` and
/// `"abc"`, `5` and `"abc"`, `[1, 2]` and `3`), which makes its comparison no order at all and
/// LoopBack's result depend on the sort algorithm and on every row of the collection; here
/// every number-like value comes before every string-like one (docs/COMPATIBILITY.md).
fn sort_cmp(x: &Value, y: &Value) -> Ordering {
    use std::borrow::Cow;
    fn key(v: &Value) -> Result<f64, Cow<'_, str>> {
        match v {
            Value::Null => Ok(0.0),
            Value::Bool(b) => Ok(f64::from(u8::from(*b))),
            Value::Number(n) => Ok(n.as_f64().unwrap_or(0.0)),
            Value::String(s) => Err(Cow::Borrowed(s)),
            other => Err(Cow::Owned(js::to_js_string(other))),
        }
    }
    match (key(x), key(y)) {
        // JSON has no NaN, so this is total (and -0 equals 0, as in JavaScript).
        (Ok(a), Ok(b)) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
        (Ok(_), Err(_)) => Ordering::Less,
        (Err(_), Ok(_)) => Ordering::Greater,
        (Err(a), Err(b)) => js::cmp_utf16(&a, &b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Values JavaScript cannot compare with each other under one key (a mix of kinds) sort
    /// by a total order: no panic (Rust's sort detects a comparison that is no order), the
    /// same result whatever order the rows come in, and JavaScript's answer wherever it
    /// compares two numbers or two strings.
    #[test]
    fn sorting_mixed_values_is_a_total_order() {
        use crate::instance::Record;
        let kinds = [
            json!(null),
            json!("abc"),
            json!(5),
            json!("5"),
            json!("10"),
            json!([1, 2]),
            json!(3),
            json!(true),
            json!({"a": 1}),
            json!(""),
            json!(-0.5),
            json!("9"),
        ];
        let rows: Vec<Record> = (0..150)
            .map(|i| match (i * 7) % (kinds.len() + 1) {
                k if k == kinds.len() => Record::new(),
                k => Record::from_iter([("v".to_owned(), kinds[k].clone())]),
            })
            .collect();
        let order = [OrderKey {
            key: "v".into(),
            descending: false,
        }];
        let sorted = |mut rows: Vec<Record>| {
            rows.sort_by(|x, y| compare_rows(&order, x, y));
            rows.iter().map(|r| r.get("v").cloned()).collect::<Vec<_>>()
        };
        let forward = sorted(rows.clone());
        let backward = sorted(rows.into_iter().rev().collect());
        assert_eq!(forward, backward);
        let mut distinct = forward.clone();
        distinct.dedup();
        let expected = [
            None,
            Some(json!(-0.5)),
            Some(json!(null)),
            Some(json!(true)),
            Some(json!(3)),
            Some(json!(5)),
            Some(json!("")),
            Some(json!([1, 2])),
            Some(json!("10")),
            Some(json!("5")),
            Some(json!("9")),
            Some(json!({"a": 1})),
            Some(json!("abc")),
        ];
        assert_eq!(distinct, expected);
    }

    /// The numeric fast path answers exactly as the general path for every operator it takes,
    /// and declines (None) whenever an operand is not a number.
    #[test]
    fn number_fast_path_agrees_with_the_general_path() {
        let stored = [
            json!(0),
            json!(1),
            json!(-1),
            json!(2.5),
            json!(50),
            json!(9007199254740993_i64),
            json!(1e300),
        ];
        let operands = [
            json!(0),
            json!(1),
            json!(1.0),
            json!(2.5),
            json!(50),
            json!(9007199254740992_i64),
            json!("1"),
            json!(null),
            json!(true),
        ];
        for a in &operands {
            for b in &operands {
                let tests = [
                    Test::Eq(a.clone()),
                    Test::Neq(a.clone()),
                    Test::Gt(a.clone()),
                    Test::Gte(a.clone()),
                    Test::Lt(a.clone()),
                    Test::Lte(a.clone()),
                    Test::Between(a.clone(), b.clone()),
                    Test::Inq(vec![a.clone(), b.clone()]),
                    Test::Nin(vec![a.clone(), b.clone()]),
                ];
                for t in &tests {
                    for v in &stored {
                        let n = v.as_number().unwrap();
                        let general = t.test(Some(v));
                        match t.test_number(n) {
                            Some(fast) => assert_eq!(fast, general, "{t:?} on {v}"),
                            None => assert!(
                                !a.is_number() || !b.is_number(),
                                "{t:?} declined with number operands"
                            ),
                        }
                    }
                }
            }
        }
    }
}
