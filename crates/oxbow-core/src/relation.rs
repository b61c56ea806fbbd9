//! Relations declared in model JSON (`relations`), and `include`: related records fetched in
//! one query per relation and level (`inq` over the keys of every parent), never one per row.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::caller::Caller;
use crate::dao::{Model, RecordView};
use crate::error::{Error, Result};
use crate::filter::{Filter, Include};
use crate::js;
use crate::model::ModelDefinition;
use crate::registry::Registry;
use crate::row::Row;

/// LoopBack's relation types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelationKind {
    BelongsTo,
    HasMany,
    HasOne,
    /// `hasMany` with `through`.
    HasManyThrough,
    HasAndBelongsToMany,
    ReferencesMany,
    EmbedsOne,
    EmbedsMany,
}

impl RelationKind {
    /// The relation links through a third model (hasManyThrough, hasAndBelongsToMany).
    pub fn is_through(self) -> bool {
        matches!(self, Self::HasManyThrough | Self::HasAndBelongsToMany)
    }
}

/// One relation of a model, its keys resolved with LoopBack's defaults.
#[derive(Debug, Clone)]
pub struct Relation {
    pub name: String,
    pub kind: RelationKind,
    /// The related model's name.
    pub target: String,
    /// belongsTo: the property on this model; hasMany/hasOne: the property on the target;
    /// through: the property on the through model pointing at this model.
    pub foreign_key: String,
    /// The through model (hasManyThrough).
    pub through: Option<String>,
    /// The property on the through model pointing at the target (hasManyThrough).
    pub key_through: Option<String>,
    /// `options.nestRemoting`: the target's belongsTo routes under this relation's `/:fk`.
    pub nest_remoting: bool,
    /// `options.disableInclude`: `include` skips this relation.
    pub disable_include: bool,
    /// embedsOne / embedsMany / referencesMany: the owner's property holding the data (or ids).
    pub property: Option<String>,
}

fn camel(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_lowercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

impl Relation {
    /// The relations of a model's settings (`relations` in its JSON), in declaration order.
    pub fn from_settings(model: &str, settings: &Map<String, Value>) -> Vec<Relation> {
        let Some(Value::Object(rels)) = settings.get("relations") else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (name, r) in rels {
            let s = |k: &str| {
                r.get(k)
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
            };
            let target = s("model").unwrap_or_default();
            let through = s("through");
            let kind = match (r.get("type").and_then(Value::as_str), &through) {
                (Some("belongsTo"), _) => RelationKind::BelongsTo,
                (Some("hasMany"), Some(_)) => RelationKind::HasManyThrough,
                (Some("hasMany"), None) => RelationKind::HasMany,
                (Some("hasOne"), _) => RelationKind::HasOne,
                (Some("hasAndBelongsToMany"), _) => RelationKind::HasAndBelongsToMany,
                (Some("referencesMany"), _) => RelationKind::ReferencesMany,
                (Some("embedsOne"), _) => RelationKind::EmbedsOne,
                (Some("embedsMany"), _) => RelationKind::EmbedsMany,
                _ => continue,
            };
            let foreign_key = s("foreignKey").unwrap_or_else(|| match kind {
                RelationKind::BelongsTo => format!("{name}Id"),
                _ => format!("{}Id", camel(model)),
            });
            let key_through = kind
                .is_through()
                .then(|| s("keyThrough").unwrap_or_else(|| format!("{}Id", camel(&target))));
            let option = |k: &str| r.pointer(&format!("/options/{k}")) == Some(&Value::Bool(true));
            let property = match kind {
                RelationKind::EmbedsOne => {
                    Some(s("property").unwrap_or_else(|| format!("{}Item", camel(&target))))
                }
                RelationKind::EmbedsMany => {
                    Some(s("property").unwrap_or_else(|| format!("{}List", camel(&target))))
                }
                RelationKind::ReferencesMany => {
                    Some(s("foreignKey").unwrap_or_else(|| format!("{}Ids", camel(&target))))
                }
                _ => None,
            };
            out.push(Relation {
                name: name.clone(),
                kind,
                target,
                foreign_key,
                through,
                key_through,
                nest_remoting: option("nestRemoting"),
                disable_include: option("disableInclude"),
                property,
            });
        }
        out
    }
}

/// The key two values are matched by (`1` and `"1"` alike, as JavaScript's `==` would).
pub fn key_of(v: &Value) -> String {
    js::to_js_string(v)
}

/// [`key_of`] without an allocation for the usual numeric keys.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Int(i64),
    Text(String),
}

fn key(v: &Value) -> Key {
    match v {
        Value::Number(n) => match n.as_i64() {
            Some(i) => Key::Int(i),
            None => Key::Text(js::to_js_string(v)),
        },
        // "1" matches 1, as with `==`.
        Value::String(s) => match s.parse::<i64>() {
            Ok(i) if i.to_string() == *s => Key::Int(i),
            _ => Key::Text(s.clone()),
        },
        other => Key::Text(js::to_js_string(other)),
    }
}

/// Rows as REST shows them (hidden properties removed, `fields` applied), with every relation
/// `include` names attached, as JSON texts (one per row). Rows are written from their cached
/// JSON and related records spliced in as text: no JSON maps are built on the way.
pub async fn render(
    registry: &Registry,
    model: &Model,
    rows: &[Arc<Row>],
    fields: Option<&[String]>,
    include: Option<&Include>,
    caller: &Caller,
) -> Result<Vec<String>> {
    let def = model.definition();
    let mut objs: Vec<String> = rows
        .iter()
        .map(|r| match fields {
            None => r.rest_json(def).to_owned(),
            Some(_) => serde_json::to_string(&RecordView {
                def,
                record: &**r,
                fields,
            })
            .unwrap_or_else(|_| "{}".to_owned()),
        })
        .collect();
    // juggler includes nothing for no rows (and so never complains about their fields).
    if let (Some(include), false) = (include, rows.is_empty()) {
        attach(registry, model, rows, &mut objs, fields, include, caller).await?;
    }
    Ok(objs)
}

/// Adds `"name":<json>` at the end of a JSON object's text.
fn splice(obj: &mut String, name: &str, json: &str) {
    splice_with(obj, name, json.len(), |out| out.push_str(json));
}

/// Adds `"name":[a,b,…]` at the end of a JSON object's text, the items written straight in.
fn splice_array<'s>(obj: &mut String, name: &str, items: impl Iterator<Item = &'s str> + Clone) {
    let len = items.clone().map(|i| i.len() + 1).sum::<usize>() + 2;
    splice_with(obj, name, len, |out| {
        out.push('[');
        for (n, item) in items.enumerate() {
            if n > 0 {
                out.push(',');
            }
            out.push_str(item);
        }
        out.push(']');
    });
}

/// Adds `"name":` and what `write` writes (about `len` bytes) before an object's closing brace.
fn splice_with(obj: &mut String, name: &str, len: usize, write: impl FnOnce(&mut String)) {
    if !obj.ends_with('}') {
        return;
    }
    obj.pop();
    obj.reserve(name.len() + len + 5);
    if !obj.ends_with('{') {
        obj.push(',');
    }
    if name.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        obj.push('"');
        obj.push_str(name);
        obj.push('"');
    } else {
        obj.push_str(&Value::String(name.to_owned()).to_string());
    }
    obj.push(':');
    write(obj);
    obj.push('}');
}

/// `[a,b,c]` from JSON texts, allocated once.
pub fn json_array<S: AsRef<str>>(items: &[S]) -> String {
    let len = items.iter().map(|i| i.as_ref().len() + 1).sum::<usize>() + 2;
    let mut out = String::with_capacity(len);
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(item.as_ref());
    }
    out.push(']');
    out
}

type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// Fetches what `include` names for `rows` and splices it into `objs` (the same rows, rendered).
/// A key `fields` left out is not there for the include either, as in LoopBack (which projects
/// before it includes): no belongsTo target, empty related lists, and for a plain hasMany
/// LoopBack's 400.
fn attach<'a>(
    registry: &'a Registry,
    model: &'a Model,
    rows: &'a [Arc<Row>],
    objs: &'a mut [String],
    fields: Option<&'a [String]>,
    include: &'a Include,
    caller: &'a Caller,
) -> LocalFuture<'a, Result<()>> {
    Box::pin(async move {
        let shown = |k: &str| fields.is_none_or(|f| f.iter().any(|x| x == k));
        // The first row as juggler projected it (keys in `fields` order), for its message.
        let first = || {
            let (Some(row), Some(fields)) = (rows.first(), fields) else {
                return String::new();
            };
            let def = model.definition();
            let mut seen = Map::new();
            for k in fields.iter().filter(|k| !def.is_hidden(k)) {
                if let Some(v) = row.value_of(k) {
                    seen.insert(k.clone(), v);
                }
            }
            Value::Object(seen).to_string()
        };
        for item in &include.0 {
            let def = model.definition();
            let rel = def.relation(&item.relation).ok_or_else(|| {
                Error::bad_request(format!(
                    "Relation \"{}\" is not defined for {} model",
                    item.relation, def.name
                ))
            })?;
            if rel.disable_include {
                continue;
            }
            let target = related(registry, &rel.target)?;
            match rel.kind {
                RelationKind::BelongsTo => {
                    if !shown(&rel.foreign_key) {
                        continue;
                    }
                    let keys = distinct(rows.iter().filter_map(|r| r.value_of(&rel.foreign_key)));
                    if keys.is_empty() {
                        continue;
                    }
                    let pk = target.definition().id_name().to_owned();
                    let found =
                        fetch(registry, target, &item.scope, &pk, keys, true, caller).await?;
                    let by_key: BTreeMap<Key, usize> = found
                        .rows
                        .iter()
                        .enumerate()
                        .filter_map(|(i, r)| r.value_of(&pk).map(|k| (key(&k), i)))
                        .collect();
                    for (row, obj) in rows.iter().zip(objs.iter_mut()) {
                        let hit = row
                            .value_of(&rel.foreign_key)
                            .and_then(|k| by_key.get(&key(&k)));
                        if let Some(&i) = hit {
                            splice(obj, &rel.name, found.text(i));
                        }
                    }
                }
                RelationKind::HasMany | RelationKind::HasOne => {
                    let pk = def.id_name();
                    if !shown(pk) {
                        // juggler's plain hasMany include (no nested include) fails on the
                        // first row without its id; the other forms find nothing.
                        if rel.kind == RelationKind::HasOne {
                            continue;
                        }
                        if !item.scope.contains_key("include") {
                            return Err(Error::bad_request(format!(
                                "ID property \"{pk}\" is missing for included item: {}. \
                                 Please make sure `fields` include \"{pk}\" if it's present in \
                                 the `filter`",
                                first()
                            )));
                        }
                        for obj in objs.iter_mut() {
                            splice(obj, &rel.name, "[]");
                        }
                        continue;
                    }
                    let keys = distinct(rows.iter().filter_map(|r| r.value_of(pk)));
                    let found = fetch(
                        registry,
                        target,
                        &item.scope,
                        &rel.foreign_key,
                        keys,
                        false,
                        caller,
                    )
                    .await?;
                    let mut groups: BTreeMap<Key, Vec<usize>> = BTreeMap::new();
                    for (i, r) in found.rows.iter().enumerate() {
                        if let Some(k) = r.value_of(&rel.foreign_key) {
                            groups.entry(key(&k)).or_default().push(i);
                        }
                    }
                    for (row, obj) in rows.iter().zip(objs.iter_mut()) {
                        let mine = row
                            .value_of(pk)
                            .and_then(|k| groups.get(&key(&k)))
                            .map_or(&[][..], Vec::as_slice);
                        if rel.kind == RelationKind::HasOne {
                            if let Some(&first) = mine.first() {
                                splice(obj, &rel.name, found.text(first));
                            }
                        } else {
                            splice_array(obj, &rel.name, mine.iter().map(|&i| found.text(i)));
                        }
                    }
                }
                RelationKind::HasManyThrough | RelationKind::HasAndBelongsToMany => {
                    let pk = def.id_name();
                    if !shown(pk) {
                        for obj in objs.iter_mut() {
                            splice(obj, &rel.name, "[]");
                        }
                        continue;
                    }
                    let through = related(registry, rel.through.as_deref().unwrap_or(""))?;
                    let key_through = rel.key_through.clone().unwrap_or_default();
                    let keys = distinct(rows.iter().filter_map(|r| r.value_of(pk)));
                    let links = through
                        .find(
                            &through.parse_filter(
                                &json!({"where": {rel.foreign_key.as_str(): {"inq": keys}}}),
                            )?,
                            caller,
                        )
                        .await?;
                    let target_keys =
                        distinct(links.iter().filter_map(|l| l.value_of(&key_through)));
                    let target_pk = target.definition().id_name().to_owned();
                    let found = fetch(
                        registry,
                        target,
                        &item.scope,
                        &target_pk,
                        target_keys,
                        true,
                        caller,
                    )
                    .await?;
                    // How many links join each owner to each target: juggler lists a target
                    // once per link, in the order the targets were found.
                    let mut linked: BTreeMap<Key, BTreeMap<Key, usize>> = BTreeMap::new();
                    for l in &links {
                        if let (Some(owner), Some(t)) =
                            (l.value_of(&rel.foreign_key), l.value_of(&key_through))
                        {
                            *linked
                                .entry(key(&owner))
                                .or_default()
                                .entry(key(&t))
                                .or_default() += 1;
                        }
                    }
                    let none = BTreeMap::new();
                    for (row, obj) in rows.iter().zip(objs.iter_mut()) {
                        let mine = row
                            .value_of(pk)
                            .and_then(|k| linked.get(&key(&k)))
                            .unwrap_or(&none);
                        let texts: Vec<&str> = found
                            .rows
                            .iter()
                            .enumerate()
                            .flat_map(|(i, r)| {
                                let times = r
                                    .value_of(&target_pk)
                                    .and_then(|k| mine.get(&key(&k)).copied())
                                    .unwrap_or(0);
                                std::iter::repeat_n(i, times)
                            })
                            .map(|i| found.text(i))
                            .collect();
                        splice_array(obj, &rel.name, texts.iter().copied());
                    }
                }
                RelationKind::EmbedsOne | RelationKind::EmbedsMany => {
                    // The embedded data is the owner's own property, shown once more under the
                    // relation's name (an absent embedsOne item is left out).
                    let prop = rel.property.as_deref().unwrap_or("");
                    for (row, obj) in rows.iter().zip(objs.iter_mut()) {
                        match row.value_of(prop) {
                            Some(v @ Value::Object(_)) | Some(v @ Value::Array(_)) => {
                                splice(obj, &rel.name, &v.to_string());
                            }
                            _ if rel.kind == RelationKind::EmbedsMany => {
                                splice(obj, &rel.name, "[]");
                            }
                            _ => {}
                        }
                    }
                }
                RelationKind::ReferencesMany => {
                    let prop = rel.property.as_deref().unwrap_or("");
                    if !shown(prop) {
                        for obj in objs.iter_mut() {
                            splice(obj, &rel.name, "[]");
                        }
                        continue;
                    }
                    let all = |r: &Arc<Row>| match r.value_of(prop) {
                        Some(Value::Array(a)) => a,
                        _ => Vec::new(),
                    };
                    let keys = distinct(rows.iter().flat_map(all));
                    let target_pk = target.definition().id_name().to_owned();
                    let found = fetch(
                        registry,
                        target,
                        &item.scope,
                        &target_pk,
                        keys,
                        true,
                        caller,
                    )
                    .await?;
                    let by_key: BTreeMap<Key, usize> = found
                        .rows
                        .iter()
                        .enumerate()
                        .filter_map(|(i, r)| r.value_of(&target_pk).map(|k| (key(&k), i)))
                        .collect();
                    for (row, obj) in rows.iter().zip(objs.iter_mut()) {
                        let mine = all(row);
                        let list = mine
                            .iter()
                            .filter_map(|k| by_key.get(&key(k)))
                            .map(|&i| found.text(i));
                        splice_array(obj, &rel.name, list);
                    }
                }
            }
        }
        Ok(())
    })
}

/// The model a relation points at.
pub fn related<'r>(registry: &'r Registry, name: &str) -> Result<&'r Arc<Model>> {
    registry.model(name).ok_or_else(|| {
        Error::internal(format!(
            "the relation's model \"{name}\" is not attached to a datasource"
        ))
    })
}

/// Each value once, in first-seen order (nulls dropped).
fn distinct(values: impl Iterator<Item = Value>) -> Vec<Value> {
    let mut seen = std::collections::BTreeSet::new();
    values
        .filter(|v| !v.is_null())
        .filter(|v| seen.insert(key(v)))
        .collect()
}

/// The scope's `skip` / `limit` (numbers), applied per parent.
fn page(scope: &Map<String, Value>) -> (usize, Option<usize>) {
    let n = |k: &str| scope.get(k).and_then(Value::as_u64).map(|n| n as usize);
    // A limit of 0 is no limit (juggler tests it for truth).
    (
        n("skip").or_else(|| n("offset")).unwrap_or(0),
        n("limit").filter(|&l| l > 0),
    )
}

/// Related records as one query found them, with their JSON texts.
struct Fetched<'a> {
    def: &'a ModelDefinition,
    rows: Vec<Arc<Row>>,
    /// Set when the scope shapes the texts (`fields`, a nested include); otherwise each row's
    /// cached REST JSON is the text, borrowed, not copied.
    texts: Option<Vec<String>>,
}

impl Fetched<'_> {
    fn text(&self, i: usize) -> &str {
        match &self.texts {
            Some(texts) => &texts[i],
            None => self.rows[i].rest_json(self.def),
        }
    }
}

/// One query for every parent: the scope's filter with `key IN keys` in place of any
/// condition the scope puts on `key` itself (juggler assigns `where[key]`), the key kept in
/// `fields` (as LoopBack adds it), its nested include attached to the rows kept. juggler runs
/// a skip/limit scope once per key: without `paged` (hasMany, hasOne: many rows per key) the
/// page is taken from each key's rows; with `paged` (one target per key: belongsTo, through,
/// referencesMany) a limit changes nothing, a skip leaves nothing, and targets come in the
/// order of `keys`.
async fn fetch<'a>(
    registry: &Registry,
    target: &'a Model,
    scope: &Map<String, Value>,
    key: &str,
    keys: Vec<Value>,
    paged: bool,
    caller: &Caller,
) -> Result<Fetched<'a>> {
    let mut f = scope.clone();
    let set = |k: &str| f.get(k).is_some_and(js::truthy);
    let skipped = set("skip") || set("offset");
    let per_key = skipped || set("limit");
    let order_of: BTreeMap<Key, usize> = if per_key {
        keys.iter()
            .enumerate()
            .map(|(i, k)| (self::key(k), i))
            .collect()
    } else {
        BTreeMap::new()
    };
    let cond = json!({ key: { "inq": keys } });
    let where_ = match f.remove("where") {
        Some(Value::Object(mut w)) => {
            w.remove(key);
            if w.is_empty() {
                cond
            } else {
                json!({"and": [cond, Value::Object(w)]})
            }
        }
        Some(w) if !w.is_null() => json!({"and": [cond, w]}),
        _ => cond,
    };
    f.insert("where".into(), where_);
    let nested = f.remove("include").map(|v| Include::parse(&v));
    for k in ["limit", "skip", "offset"] {
        f.remove(k);
    }
    let mut filter: Filter = target.parse_filter(&Value::Object(f))?;
    if let Some(fields) = &mut filter.fields {
        let mut needed = vec![key.to_owned()];
        // With `fields` in a `{relation, scope}` include, juggler also keeps the keys of the
        // belongsTo relations the scope's own include names (as a string or in a list).
        let names: Vec<&str> = nested
            .iter()
            .flat_map(|n| &n.0)
            .filter(|i| i.plain)
            .map(|i| i.relation.as_str())
            .collect();
        let tdef = target.definition();
        needed.extend(
            names
                .into_iter()
                .filter_map(|n| tdef.relation(n))
                .filter(|r| r.kind == RelationKind::BelongsTo)
                .map(|r| r.foreign_key.clone()),
        );
        for k in needed {
            if !fields.contains(&k) {
                fields.push(k);
            }
        }
    }
    let mut rows = if paged && skipped {
        Vec::new()
    } else {
        target.find(&filter, caller).await?
    };
    if !paged {
        let (skip, limit) = page(scope);
        if skip > 0 || limit.is_some() {
            let mut seen: BTreeMap<Key, usize> = BTreeMap::new();
            rows.retain(|r| {
                let Some(k) = r.value_of(key) else {
                    return false;
                };
                let n = seen.entry(self::key(&k)).or_default();
                let keep = *n >= skip && limit.is_none_or(|l| *n < skip.saturating_add(l));
                *n += 1;
                keep
            });
        }
    }
    // Paged, juggler concatenates what it found key by key, in the order of `keys`.
    if per_key {
        rows.sort_by_key(|r| {
            r.value_of(key)
                .and_then(|k| order_of.get(&self::key(&k)).copied())
                .unwrap_or(usize::MAX)
        });
    }
    let texts = if filter.fields.is_some() || nested.is_some() {
        Some(
            render(
                registry,
                target,
                &rows,
                filter.fields.as_deref(),
                nested.as_ref(),
                caller,
            )
            .await?,
        )
    } else {
        None
    };
    Ok(Fetched {
        def: target.definition(),
        rows,
        texts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_loopback() {
        let settings = json!({"relations": {
            "customer": {"type": "belongsTo", "model": "Customer"},
            "orders": {"type": "hasMany", "model": "Order"},
            "products": {"type": "hasMany", "model": "Product", "through": "OrderLine"}
        }});
        let rels = Relation::from_settings("OrderItem", settings.as_object().unwrap());
        assert_eq!(rels[0].foreign_key, "customerId");
        assert_eq!(rels[1].foreign_key, "orderItemId");
        assert_eq!(rels[2].kind, RelationKind::HasManyThrough);
        assert_eq!(rels[2].key_through.as_deref(), Some("productId"));
    }

    #[test]
    fn include_forms() {
        let out = Include::parse(&json!([
            "a",
            {"b": "c"},
            {"relation": "d", "scope": {"limit": 1}},
            ["e"],
            {"relation": "a", "scope": {"limit": 2}}
        ]))
        .0;
        let names: Vec<&str> = out.iter().map(|i| i.relation.as_str()).collect();
        assert_eq!(names, ["a", "b", "d", "e"]);
        assert_eq!(out[1].scope.get("include"), Some(&json!("c")));
        assert_eq!(out[2].scope.get("limit"), Some(&json!(1)));
        // Named twice: first place, last scope.
        assert_eq!(out[0].scope.get("limit"), Some(&json!(2)));
        let plain: Vec<bool> = out.iter().map(|i| i.plain).collect();
        assert_eq!(plain, [true, false, false, false]);
    }
}
