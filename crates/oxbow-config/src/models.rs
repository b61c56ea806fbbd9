//! model-config.json and the model definition files: finding definitions in `_meta.sources`,
//! resolving `base`, injecting the id, adding relation foreign keys, and compiling each model
//! into a [`ModelDefinition`].

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use oxbow_core::model::pluralize;
use oxbow_core::{ModelDefinition, ModelName, Property, PropertyType, Strict};

use crate::DataSourcePlan;
use crate::problem::{Problem, Problems, escape};
use crate::read::{Artifact, parse_file};
use crate::schema::check;

/// LoopBack's built-in models; apps list them in model-config.json from `loopback/common/models`.
const BUILT_IN: &[&str] = &[
    "User",
    "AccessToken",
    "ACL",
    "RoleMapping",
    "Role",
    "Application",
    "Email",
    "Change",
    "Checkpoint",
    "Scope",
    "KeyValueModel",
];

/// The definitions of LoopBack's built-in models oxbow provides (`loopback/common/models`),
/// as LoopBack's JSON has them; their JavaScript behaviour is oxbow-auth's.
const BUILTIN_JSON: &[(&str, &str)] = &[
    ("User", include_str!("../builtin/user.json")),
    ("AccessToken", include_str!("../builtin/access-token.json")),
    ("ACL", include_str!("../builtin/acl.json")),
    ("Role", include_str!("../builtin/role.json")),
    ("RoleMapping", include_str!("../builtin/role-mapping.json")),
];

/// The built-in models are always there to extend and to list in model-config, as in
/// LoopBack's registry; an app's own definition of the same name wins.
fn add_builtins(defs: &mut HashMap<String, Source>) {
    for (name, text) in BUILTIN_JSON {
        let Ok(Value::Object(json)) = serde_json::from_str::<Value>(text) else {
            unreachable!("built-in model {name} is valid JSON");
        };
        defs.entry((*name).to_owned()).or_insert(Source {
            file: PathBuf::from(format!("<built-in>/{name}.json")),
            json,
        });
    }
}

/// A definition file found in a source folder.
struct Source {
    file: PathBuf,
    json: Map<String, Value>,
}

pub fn compile_models(
    server: &Path,
    mc: &Artifact,
    datasources: &[DataSourcePlan],
    schema: &crate::schema::Schema,
    problems: &mut Problems,
    warnings: &mut Vec<String>,
) -> Vec<ModelDefinition> {
    let Some(config) = mc.value.as_object() else {
        return Vec::new();
    };
    let sources = config
        .get("_meta")
        .and_then(|m| m.get("sources"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .unwrap_or_else(|| vec!["./models".to_owned()]);
    let mut defs = scan_sources(server, &sources, schema, problems);
    add_builtins(&mut defs);
    model_scripts(server, &sources, warnings);

    let mut out: Vec<ModelDefinition> = Vec::new();
    for (name, entry) in config {
        if name == "_meta" || name == "$schema" {
            continue;
        }
        let pointer = format!("/{}", escape(name));
        let Some(entry) = entry.as_object() else {
            continue;
        };
        let Some(source) = defs.get(name.as_str()) else {
            if BUILT_IN.contains(&name.as_str()) {
                warnings.push(format!(
                    "{}: built-in model `{name}` is not provided by oxbow yet (users, tokens and ACLs are on the roadmap); it is not exposed",
                    mc.path.display()
                ));
            } else {
                problems.push(Problem::new(
                    &mc.path,
                    &pointer,
                    &format!("expected a model definition named `{name}` in one of the sources {sources:?}, found none"),
                ));
            }
            continue;
        };
        let ds = match entry.get("dataSource") {
            Some(Value::String(ds)) => ds.clone(),
            None | Some(Value::Null) | Some(Value::Bool(false)) => {
                warnings.push(format!(
                    "{}: model `{name}` has no dataSource; it is not exposed",
                    mc.path.display()
                ));
                continue;
            }
            Some(_) => continue,
        };
        if !datasources.iter().any(|d| d.name == ds) {
            let known: Vec<&str> = datasources.iter().map(|d| d.name.as_str()).collect();
            problems.push(Problem::new(
                &mc.path,
                &format!("{pointer}/dataSource"),
                &format!(
                    "expected the name of a datasource in datasources.json ({}), found `{ds}`",
                    known.join(", ")
                ),
            ));
            continue;
        }
        let public = entry.get("public").and_then(Value::as_bool).unwrap_or(true);
        let mut json = match resolve_base(name, &defs, problems, &mut HashSet::new()) {
            Some(j) => j,
            None => continue,
        };
        // model-config `options` are merged into the settings.
        if let Some(Value::Object(opts)) = entry.get("options") {
            let target = json
                .entry("options")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(t) = target {
                for (k, v) in opts {
                    t.insert(k.clone(), v.clone());
                }
            }
        }
        if let Some(mut def) = compile_one(name, &source.file, &json, &ds, public, problems) {
            def.remoting.shared_methods = shared_methods(
                entry
                    .get("options")
                    .and_then(|o| o.pointer("/remoting/sharedMethods")),
            );
            out.push(def);
        }
    }
    add_implicit_through_models(&mut out, &mc.path, problems);
    add_foreign_keys(&mut out, &defs);
    out
}

/// embedsOne, embedsMany and referencesMany keep their data in a property of the owner
/// (`property`, default `<target camelCase>Item` / `<target camelCase>List` / `<target
/// camelCase>Ids`, or the relation's `foreignKey` for referencesMany), added after the id in
/// relation order; the lists default to `[]`, as LoopBack shows them.
fn add_embedded_properties(json: &Map<String, Value>, properties: &mut Vec<Property>) {
    let Some(Value::Object(rels)) = json.get("relations") else {
        return;
    };
    for rel in rels.values() {
        let kind = rel.get("type").and_then(Value::as_str).unwrap_or("");
        let target = rel.get("model").and_then(Value::as_str).unwrap_or("");
        let mut camel = target.to_owned();
        if let Some(f) = camel.get(..1) {
            camel.replace_range(..1, &f.to_lowercase());
        }
        let (name, ty, default) = match kind {
            "embedsOne" => (
                rel.get("property")
                    .and_then(Value::as_str)
                    .map_or_else(|| format!("{camel}Item"), str::to_owned),
                PropertyType::Object,
                None,
            ),
            "embedsMany" => (
                rel.get("property")
                    .and_then(Value::as_str)
                    .map_or_else(|| format!("{camel}List"), str::to_owned),
                PropertyType::Array(None),
                Some(Value::Array(Vec::new())),
            ),
            "referencesMany" => (
                rel.get("foreignKey")
                    .and_then(Value::as_str)
                    .map_or_else(|| format!("{camel}Ids"), str::to_owned),
                PropertyType::Array(None),
                Some(Value::Array(Vec::new())),
            ),
            _ => continue,
        };
        if properties.iter().any(|p| p.name == name) {
            continue;
        }
        properties.push(Property {
            name,
            ty,
            required: false,
            default,
            default_fn: None,
            id: None,
            generated: false,
        });
    }
}

/// The built-in `TimeStamp` mixin (loopback-ds-timestamp-mixin's options: `createdAt`,
/// `updatedAt`, `required`) adds its two date properties after the id, as LoopBack applies
/// mixins when the model is defined; the boot sequence adds the hook that keeps them current.
fn add_timestamp_properties(json: &Map<String, Value>, properties: &mut Vec<Property>) {
    let Some(opts) = json.get("mixins").and_then(|m| m.get("TimeStamp")) else {
        return;
    };
    if matches!(opts, Value::Bool(false) | Value::Null) {
        return;
    }
    let name = |k: &str, default: &str| {
        opts.get(k)
            .and_then(Value::as_str)
            .unwrap_or(default)
            .to_owned()
    };
    let required = opts
        .get("required")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    for prop in [
        name("createdAt", "createdAt"),
        name("updatedAt", "updatedAt"),
    ] {
        if properties.iter().any(|p| p.name == prop) {
            continue;
        }
        properties.push(Property {
            name: prop,
            ty: PropertyType::Date,
            required,
            default: None,
            default_fn: Some("now".into()),
            id: None,
            generated: false,
        });
    }
}

/// `hasAndBelongsToMany` without `through`: juggler links the two models through a model named
/// `<Owner><Target>` or `<Target><Owner>`, whichever exists, else it defines `<Owner><Target>`
/// (not public, on the owner's datasource, `belongsTo` both sides). Relations are set up in
/// model-config order, a relation whose target comes later waiting until the target is defined
/// (after the target's own relations), so `Book.tags` and `Tag.books` share `TagBook`.
fn add_implicit_through_models(
    out: &mut Vec<ModelDefinition>,
    file: &Path,
    problems: &mut Problems,
) {
    let camel = |s: &str| {
        let mut c = s.chars();
        c.next()
            .map(|f| f.to_lowercase().collect::<String>() + c.as_str())
            .unwrap_or_default()
    };
    // The set-up order: (model index, relation index).
    let mut order: Vec<(usize, usize)> = Vec::new();
    let mut waiting: Vec<(usize, usize)> = Vec::new();
    let names: Vec<String> = out.iter().map(|m| m.name.to_string()).collect();
    for (i, m) in out.iter().enumerate() {
        for (j, r) in m.relations.iter().enumerate() {
            if r.kind != oxbow_core::RelationKind::HasAndBelongsToMany || r.through.is_some() {
                continue;
            }
            let target_at = names.iter().position(|n| *n == r.target);
            if target_at.is_some_and(|t| t <= i) {
                order.push((i, j));
            } else {
                waiting.push((i, j));
            }
        }
        let (ready, still): (Vec<_>, Vec<_>) = waiting
            .into_iter()
            .partition(|&(wi, wj)| out[wi].relations[wj].target == names[i]);
        order.extend(ready);
        waiting = still;
    }
    for (i, j) in order {
        let owner = out[i].name.to_string();
        let target = out[i].relations[j].target.clone();
        let (a, b) = (format!("{owner}{target}"), format!("{target}{owner}"));
        let through = if out.iter().any(|m| m.name.as_str() == a) {
            a
        } else if out.iter().any(|m| m.name.as_str() == b) {
            b
        } else {
            let json = serde_json::json!({
                "name": a,
                "base": "PersistedModel",
                "properties": {},
                "relations": {
                    camel(&owner): {"type": "belongsTo", "model": owner},
                    camel(&target): {"type": "belongsTo", "model": target}
                }
            });
            let ds = out[i].data_source.clone();
            if let Some(def) = json
                .as_object()
                .and_then(|j| compile_one(&a, file, j, &ds, false, problems))
            {
                out.push(def);
            }
            a
        };
        out[i].relations[j].through = Some(through);
    }
}

/// The directories of `_meta.sources` that exist, listed. Module paths
/// (`loopback/common/models`) name LoopBack's own models: accepted, nothing to read.
fn source_dirs<'a>(
    server: &'a Path,
    sources: &'a [String],
) -> impl Iterator<Item = std::fs::ReadDir> + 'a {
    sources
        .iter()
        .filter(|src| src.starts_with("./") || src.starts_with("../") || src.starts_with('/'))
        .filter_map(move |src| std::fs::read_dir(normalize(&server.join(src))).ok())
}

/// Model JavaScript (`common/models/customer.js`: remote methods, hooks, validations) is
/// never run by oxbow: each file is named in a warning, so nothing it did passes unnoticed.
fn model_scripts(server: &Path, sources: &[String], warnings: &mut Vec<String>) {
    for entries in source_dirs(server, sources) {
        let mut scripts: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "js"))
            .collect();
        scripts.sort();
        for s in scripts {
            warnings.push(format!(
                "{}: model JavaScript (remote methods, operation and remote hooks, validations) is not run by oxbow; port it to a Rust boot plugin",
                s.display()
            ));
        }
    }
}

fn scan_sources(
    server: &Path,
    sources: &[String],
    schema: &crate::schema::Schema,
    problems: &mut Problems,
) -> HashMap<String, Source> {
    let mut defs: HashMap<String, Source> = HashMap::new();
    for entries in source_dirs(server, sources) {
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                !name.starts_with('_')
                    && p.extension()
                        .is_some_and(|e| e == "json" || e == "yaml" || e == "yml")
            })
            .collect();
        files.sort();
        for file in files {
            let Some(value) = parse_file(&file, problems) else {
                continue;
            };
            check(schema, &file, &value, problems);
            let Value::Object(json) = value else { continue };
            let name = json
                .get("name")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| {
                    let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
                    class_name(stem)
                });
            defs.entry(name).or_insert(Source { file, json });
        }
    }
    defs
}

/// Removes `.` and `..` components lexically (`server/../models` → `models`).
fn normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if out.file_name().is_some() => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// `car-part` → `CarPart` (LoopBack's `upperFirst(camelCase(basename))`).
fn class_name(stem: &str) -> String {
    let mut out = String::new();
    let mut upper = true;
    for c in stem.chars() {
        if c == '-' || c == '_' || c == ' ' || c == '.' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Merges the definition with its app-defined base models (base properties first).
fn resolve_base(
    name: &str,
    defs: &HashMap<String, Source>,
    problems: &mut Problems,
    seen: &mut HashSet<String>,
) -> Option<Map<String, Value>> {
    let source = defs.get(name)?;
    if !seen.insert(name.to_owned()) {
        problems.push(Problem::new(
            &source.file,
            "/base",
            &format!("expected a base model chain without cycles, `{name}` extends itself"),
        ));
        return None;
    }
    let json = source.json.clone();
    let base = json
        .get("base")
        .and_then(Value::as_str)
        .unwrap_or("PersistedModel")
        .to_owned();
    if !defs.contains_key(&base) {
        return Some(json);
    }
    let mut merged = resolve_base(&base, defs, problems, seen)?;
    // juggler's mergeSettings with the legacy policy LoopBack 3 apps get: `description`
    // replaced, `properties` and `relations` patched key by key, `hidden`/`protected`
    // cumulated, everything else (acls, options, methods, mixins, …) deep-merged (arrays
    // concatenated), `null` deleting what the base set.
    let mut chain = merged
        .get(CHAIN)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    chain.push(Value::from(base.clone()));
    for (k, v) in json {
        if v.is_null() {
            merged.shift_remove(&k);
            continue;
        }
        match (k.as_str(), merged.get_mut(&k), v) {
            // The model's own properties first, then the base's it does not redefine (a
            // base id only when the model declares none), as `ModelClass.extend` lists them.
            ("properties", Some(Value::Object(bp)), Value::Object(own)) => {
                let own_id = own.values().any(|p| {
                    p.get("id")
                        .is_some_and(|i| i != &Value::Bool(false) && !i.is_null())
                });
                let mut props = Map::new();
                for (pk, pv) in &own {
                    if !pv.is_null() {
                        props.insert(pk.clone(), pv.clone());
                    }
                }
                for (pk, pv) in std::mem::take(bp) {
                    let is_id = pv
                        .get("id")
                        .is_some_and(|i| i != &Value::Bool(false) && !i.is_null());
                    if own.contains_key(&pk) || (own_id && is_id) {
                        continue;
                    }
                    props.insert(pk, pv);
                }
                *bp = props;
            }
            ("relations", Some(Value::Object(br)), Value::Object(own)) => {
                for (rk, rv) in own {
                    br.insert(rk, rv);
                }
            }
            ("hidden" | "protected", Some(Value::Array(b)), Value::Array(own)) => {
                for item in own {
                    if !b.contains(&item) {
                        b.push(item);
                    }
                }
            }
            ("base" | "name" | "description", _, v) => {
                merged.insert(k, v);
            }
            (_, Some(b), v) => {
                let old = std::mem::take(b);
                *b = deep_merge(old, v);
            }
            (_, None, v) => {
                merged.insert(k, v);
            }
        }
    }
    merged.insert(CHAIN.into(), Value::Array(chain));
    merged.insert("base".into(), Value::from(base));
    merged.insert("name".into(), Value::from(name));
    Some(merged)
}

/// Where [`resolve_base`] notes the names of a model's bases, nearest last (`["User"]`).
pub(crate) const CHAIN: &str = "_oxbow_bases";

/// juggler's `deepMerge`: objects merged key by key, arrays concatenated (primitives once),
/// anything else replaced.
fn deep_merge(base: Value, extra: Value) -> Value {
    match (base, extra) {
        (Value::Object(mut b), Value::Object(e)) => {
            for (k, v) in e {
                match b.get_mut(&k) {
                    Some(old) if !old.is_null() && (v.is_object() || v.is_array()) => {
                        let o = std::mem::take(old);
                        *old = deep_merge(o, v);
                    }
                    Some(old) => *old = v,
                    None => {
                        b.insert(k, v);
                    }
                }
            }
            Value::Object(b)
        }
        (Value::Array(mut b), Value::Array(e)) => {
            for item in e {
                if item.is_object() || item.is_array() || !b.contains(&item) {
                    b.push(item);
                }
            }
            Value::Array(b)
        }
        (_, e) => e,
    }
}

/// A `sharedMethods` map in key order (the schema has checked that every value is a boolean).
pub(crate) fn shared_methods(v: Option<&Value>) -> Vec<(String, bool)> {
    match v {
        Some(Value::Object(m)) => m
            .iter()
            .filter_map(|(k, v)| v.as_bool().map(|b| (k.clone(), b)))
            .collect(),
        _ => Vec::new(),
    }
}

/// oxbow's `changeStream` model setting: `false` or `{"enabled": false}` turns the routes off.
fn change_stream_enabled(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::Object(o)) => o.get("enabled").and_then(Value::as_bool).unwrap_or(true),
        _ => true,
    }
}

fn setting<'a>(json: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    json.get(key)
        .or_else(|| json.get("options").and_then(|o| o.get(key)))
}

fn parse_type(v: Option<&Value>) -> PropertyType {
    match v {
        Some(Value::String(s)) => PropertyType::from_name(s),
        Some(Value::Array(items)) => {
            PropertyType::Array(items.first().map(|i| Box::new(parse_type(Some(i)))))
        }
        Some(Value::Object(_)) => PropertyType::Object,
        _ => PropertyType::Any,
    }
}

fn compile_one(
    name: &str,
    file: &Path,
    json: &Map<String, Value>,
    ds: &str,
    public: bool,
    problems: &mut Problems,
) -> Option<ModelDefinition> {
    let mut properties = Vec::new();
    if let Some(Value::Object(props)) = json.get("properties") {
        for (pname, spec) in props {
            let prop = match spec {
                Value::String(_) | Value::Array(_) => Property {
                    name: pname.clone(),
                    ty: parse_type(Some(spec)),
                    required: false,
                    default: None,
                    default_fn: None,
                    id: None,
                    generated: false,
                },
                Value::Object(o) => Property {
                    name: pname.clone(),
                    ty: parse_type(o.get("type")),
                    required: o
                        .get("required")
                        .is_some_and(|r| r.as_bool().unwrap_or(r.is_object())),
                    default: o.get("default").cloned(),
                    default_fn: o
                        .get("defaultFn")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    id: match o.get("id") {
                        Some(Value::Bool(true)) => Some(1),
                        Some(Value::Number(n)) => n.as_u64().map(|n| n as u32),
                        _ => None,
                    },
                    generated: o.get("generated").and_then(Value::as_bool).unwrap_or(false),
                },
                _ => continue,
            };
            properties.push(prop);
        }
    }
    let id_injection = setting(json, "idInjection")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let id_index = match properties.iter().position(|p| p.id.is_some()) {
        Some(i) => i,
        None => {
            // A plain `Model` (embedded in others, never stored alone) may have no id at all.
            let plain_model = json
                .get("base")
                .and_then(Value::as_str)
                .is_some_and(|b| b.eq_ignore_ascii_case("Model"));
            if !id_injection && !plain_model {
                problems.push(Problem::new(
                    file,
                    "/properties",
                    "expected an id property (`\"id\": true`) when idInjection is false",
                ));
                return None;
            }
            properties.push(Property {
                name: "id".into(),
                ty: PropertyType::Number,
                required: false,
                default: None,
                default_fn: None,
                id: Some(1),
                generated: true,
            });
            properties.len() - 1
        }
    };
    add_timestamp_properties(json, &mut properties);
    add_embedded_properties(json, &mut properties);
    let generated = properties[id_index].generated;
    let force_id = match setting(json, "forceId") {
        Some(Value::Bool(false)) => false,
        Some(Value::Bool(true)) => true,
        _ => generated,
    } && generated
        || matches!(setting(json, "forceId"), Some(Value::Bool(true)));
    let strict = match setting(json, "strict") {
        Some(Value::Bool(true)) => Strict::Validate,
        Some(Value::String(s)) if s == "filter" => Strict::Filter,
        Some(Value::String(s)) if s == "throw" || s == "validate" => Strict::Validate,
        _ => Strict::Off,
    };
    let hidden = setting(json, "hidden")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let plural = setting(json, "plural")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| pluralize(name));
    let http_path = json
        .get("http")
        .and_then(|h| h.get("path"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| plural.clone());
    let http_path = http_path.trim_matches('/').to_owned();
    let validate_upsert = setting(json, "validateUpsert")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let base = json
        .get("base")
        .and_then(Value::as_str)
        .unwrap_or("PersistedModel")
        .to_owned();
    let rules = crate::rules::compile(file, json, &properties, problems)
        .map(|r| std::sync::Arc::new(r) as std::sync::Arc<dyn oxbow_core::model::Rules>);
    let (auth, validations) = compile_auth(name, file, json, problems);
    Some(ModelDefinition {
        name: ModelName::new(name),
        plural,
        http_path,
        base,
        properties,
        id_index,
        force_id,
        strict,
        hidden,
        validate_upsert,
        public,
        data_source: ds.to_owned(),
        relations: oxbow_core::Relation::from_settings(name, json),
        rules,
        remoting: oxbow_core::Remoting {
            replace_on_put: setting(json, "replaceOnPUT") != Some(&Value::Bool(false)),
            change_stream: change_stream_enabled(json.get("changeStream")),
            shared_methods: Vec::new(),
            scopes: match json.get("scopes") {
                Some(Value::Object(s)) => s
                    .iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_object()?.clone())))
                    .collect(),
                _ => Vec::new(),
            },
        },
        auth,
        validations,
        settings: json.clone(),
    })
}

/// A model's access control settings, and what a User-based model gets from `User`'s
/// JavaScript: its settings with LoopBack's defaults and its email validations.
fn compile_auth(
    name: &str,
    file: &Path,
    json: &Map<String, Value>,
    problems: &mut Problems,
) -> (oxbow_core::Auth, Vec<oxbow_core::Validation>) {
    use oxbow_core::acl::{AclRule, Permission};
    let mut auth = oxbow_core::Auth::default();
    if let Some(Value::Array(acls)) = json.get("acls") {
        for (i, entry) in acls.iter().enumerate() {
            match AclRule::from_json(name, entry) {
                Ok(mut rule) => {
                    // getStaticACLs: a model's own rules are about the model, whatever they say.
                    rule.model = name.to_owned();
                    auth.acls.push(rule);
                }
                Err((field, expected)) => {
                    let pointer = if field.is_empty() {
                        format!("/acls/{i}")
                    } else {
                        format!("/acls/{i}/{field}")
                    };
                    problems.push(Problem::new(
                        file,
                        &pointer,
                        &format!("expected {expected}"),
                    ));
                }
            }
        }
    }
    match setting(json, "aclErrorStatus") {
        None | Some(Value::Null) => {}
        Some(v) => match v.as_u64() {
            Some(s @ (401 | 403 | 404)) => auth.acl_error_status = Some(s as u16),
            _ => problems.push(Problem::new(
                file,
                "/aclErrorStatus",
                "expected 401, 403 or 404 (LoopBack has a body for no other status)",
            )),
        },
    }
    match setting(json, "defaultPermission") {
        None | Some(Value::Null) => {}
        Some(v) => match v.as_str().and_then(Permission::parse) {
            Some(p) if p != Permission::Default => auth.default_permission = Some(p),
            _ => problems.push(Problem::new(
                file,
                "/defaultPermission",
                "expected ALLOW or DENY",
            )),
        },
    }
    auth.owner_relations = match setting(json, "ownerRelations") {
        Some(Value::Bool(true)) => Some(oxbow_core::OwnerRelations::All),
        Some(Value::Array(a)) => Some(oxbow_core::OwnerRelations::Named(
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
        )),
        _ => None,
    };
    let is_user = name == "User"
        || json
            .get(CHAIN)
            .and_then(Value::as_array)
            .is_some_and(|c| c.iter().any(|b| b == "User"));
    let mut validations = Vec::new();
    let extends = |base: &str| {
        name == base
            || json
                .get(CHAIN)
                .and_then(Value::as_array)
                .is_some_and(|c| c.iter().any(|b| b == base))
    };
    // role.js: `Role.validatesUniquenessOf('name', {message: 'already exists'})`.
    if extends("Role") {
        validations.push(oxbow_core::Validation::Unique {
            property: "name".into(),
            message: "already exists",
            scoped_to: Vec::new(),
        });
    }
    if is_user {
        let num = |k: &str, d: f64| {
            setting(json, k)
                .and_then(Value::as_f64)
                .filter(|n| *n != 0.0)
                .unwrap_or(d)
        };
        let flag = |k: &str, d: bool| setting(json, k).and_then(Value::as_bool).unwrap_or(d);
        let defaults = oxbow_core::UserSettings::default();
        let user = oxbow_core::UserSettings {
            ttl: num("ttl", defaults.ttl),
            max_ttl: num("maxTTL", defaults.max_ttl),
            case_sensitive_email: flag("caseSensitiveEmail", false),
            email_verification_required: flag("emailVerificationRequired", false),
            realm_required: flag("realmRequired", false)
                || setting(json, "realmDelimiter")
                    .and_then(Value::as_str)
                    .is_some_and(|d| !d.is_empty()),
            realm_delimiter: setting(json, "realmDelimiter")
                .and_then(Value::as_str)
                .filter(|d| !d.is_empty())
                .map(str::to_owned),
            allow_eternal_tokens: flag("allowEternalTokens", false),
            salt_work_factor: setting(json, "saltWorkFactor")
                .and_then(Value::as_u64)
                .map_or(defaults.salt_work_factor, |n| n.clamp(4, 31) as u32),
            reject_password_changes_via_patch_or_replace: flag(
                "rejectPasswordChangesViaPatchOrReplace",
                false,
            ),
            restrict_reset_password_token_scope: flag("restrictResetPasswordTokenScope", false),
            reset_password_token_ttl: num(
                "resetPasswordTokenTTL",
                defaults.reset_password_token_ttl,
            ),
        };
        let realm_scoped = setting(json, "realmRequired").and_then(Value::as_bool) == Some(true)
            && user.realm_delimiter.is_some();
        let scoped_to = if realm_scoped {
            vec!["realm".to_owned()]
        } else {
            Vec::new()
        };
        validations.push(oxbow_core::Validation::Email {
            property: "email".into(),
        });
        validations.push(oxbow_core::Validation::Unique {
            property: "email".into(),
            message: "Email already exists",
            scoped_to: scoped_to.clone(),
        });
        validations.push(oxbow_core::Validation::Unique {
            property: "username".into(),
            message: "User already exists",
            scoped_to,
        });
        auth.user = Some(user);
    }
    (auth, validations)
}

/// LoopBack defines relation foreign keys as properties: `belongsTo` on the source model,
/// `hasMany`/`hasOne` on the target, `through` keys on the through model. They come after
/// the declared properties and the id, in the order relations are set up.
fn add_foreign_keys(models: &mut [ModelDefinition], _defs: &HashMap<String, Source>) {
    let camel = |s: &str| {
        let mut c = s.chars();
        c.next()
            .map(|f| f.to_lowercase().collect::<String>() + c.as_str())
            .unwrap_or_default()
    };
    let mut additions: Vec<(String, String)> = Vec::new();
    for m in models.iter() {
        let Some(Value::Object(rels)) = m.settings.get("relations") else {
            continue;
        };
        for (rel_name, rel) in rels {
            let kind = rel.get("type").and_then(Value::as_str).unwrap_or("");
            let target = rel.get("model").and_then(Value::as_str).unwrap_or("");
            let fk = rel
                .get("foreignKey")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty());
            match kind {
                "belongsTo" => additions.push((
                    m.name.to_string(),
                    fk.map_or_else(|| format!("{rel_name}Id"), str::to_owned),
                )),
                "hasMany" | "hasOne" => {
                    let fk =
                        fk.map_or_else(|| format!("{}Id", camel(m.name.as_str())), str::to_owned);
                    match rel.get("through").and_then(Value::as_str) {
                        Some(through) => {
                            additions.push((through.to_owned(), fk));
                            let kt = rel
                                .get("keyThrough")
                                .and_then(Value::as_str)
                                .map_or_else(|| format!("{}Id", camel(target)), str::to_owned);
                            additions.push((through.to_owned(), kt));
                        }
                        None => additions.push((target.to_owned(), fk)),
                    }
                }
                _ => {}
            }
        }
    }
    for (model, fk) in additions {
        if let Some(m) = models.iter_mut().find(|m| m.name.as_str() == model) {
            if m.property(&fk).is_none() {
                m.properties.push(Property {
                    name: fk,
                    ty: PropertyType::Number,
                    required: false,
                    default: None,
                    default_fn: None,
                    id: None,
                    generated: false,
                });
            }
        }
    }
}
