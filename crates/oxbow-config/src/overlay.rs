//! LoopBack's environment overlays (`N.local.*`, then `N.{env}.*` merged over `N.json`) and
//! `${VAR}` substitution, with loopback-boot's merge rules and its error wording.

use std::path::Path;

use serde_json::{Map, Value};

use crate::problem::{Problem, Problems, escape};
use crate::read::{self, Artifact};
use crate::schema::{Schema, check};

/// The environment overlays are chosen by: `NODE_ENV`, LoopBack's name, or `development`.
pub fn env_name() -> String {
    std::env::var("NODE_ENV")
        .ok()
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| "development".to_owned())
}

/// How an overlay is merged into its base file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeRule {
    /// config, datasources, model-config: objects merged deeply, arrays element-wise.
    Generic,
    /// middleware: only phases and entries already in the main file may be changed.
    Middleware,
}

/// Reads `server/<name>.*` and merges `<name>.local.*` and `<name>.<env>.*` over it.
/// Also tells whether the main file exists.
pub fn read_merged(
    server: &Path,
    name: &str,
    env: &str,
    schema: &Schema,
    rule: MergeRule,
    problems: &mut Problems,
    warnings: &mut Vec<String>,
) -> (Artifact, bool) {
    let declared = read::find_file(server, name).is_some();
    let mut base = read::read_artifact(server, name, schema, problems);
    for suffix in ["local", env] {
        let overlay_name = format!("{name}.{suffix}");
        if server.join(format!("{overlay_name}.js")).is_file() {
            warnings.push(format!(
                "{}: JavaScript config files are not run by oxbow; write it as {overlay_name}.json",
                server.join(format!("{overlay_name}.js")).display()
            ));
        }
        let Some(path) = read::find_file(server, &overlay_name) else {
            continue;
        };
        if !declared {
            warnings.push(format!(
                "{}: applied although {name}.json does not exist",
                path.display()
            ));
        }
        let Some(value) = read::parse_file(&path, problems) else {
            continue;
        };
        check(schema, &path, &value, problems);
        let (Some(target), Some(over)) = (base.value.as_object_mut(), value.as_object()) else {
            continue;
        };
        match rule {
            MergeRule::Generic => merge_objects(target, over, "", &path, problems),
            MergeRule::Middleware => merge_middleware(target, over, &path, problems),
        }
    }
    (base, declared)
}

fn compatible(orig: &Value, new: &Value) -> bool {
    match orig {
        Value::Null => true,
        Value::Array(_) => new.is_array(),
        Value::Object(_) => new.is_object() || new.is_null(),
        _ => !(new.is_object() || new.is_array()),
    }
}

/// loopback-boot's `mergeObjects`: recursive for objects, element-wise for arrays of the same
/// length, replacement for scalars; `null` replaces anything.
fn merge_objects(
    target: &mut Map<String, Value>,
    over: &Map<String, Value>,
    prefix: &str,
    file: &Path,
    problems: &mut Problems,
) {
    for (key, new) in over {
        if key == "$schema" {
            continue;
        }
        let full = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        let pointer = format!(
            "/{}",
            full.split('.').map(escape).collect::<Vec<_>>().join("/")
        );
        match target.get_mut(key) {
            None => {
                target.insert(key.clone(), new.clone());
            }
            Some(orig) => merge_value(orig, new, &full, &pointer, file, problems),
        }
    }
}

fn merge_value(
    orig: &mut Value,
    new: &Value,
    full: &str,
    pointer: &str,
    file: &Path,
    problems: &mut Problems,
) {
    if !compatible(orig, new) {
        if problems.has(file, pointer) {
            return; // the schema check already said what this file should hold here
        }
        problems.push(Problem::new(
            file,
            pointer,
            &format!("Cannot merge values of incompatible types for the option `{full}`."),
        ));
        return;
    }
    match (orig, new) {
        (Value::Array(a), Value::Array(b)) => {
            if a.len() != b.len() {
                if problems.has(file, pointer) {
                    return;
                }
                problems.push(Problem::new(
                    file,
                    pointer,
                    &format!(
                        "Cannot merge array values of different length for the option `{full}`."
                    ),
                ));
                return;
            }
            for (i, (x, y)) in a.iter_mut().zip(b).enumerate() {
                merge_value(
                    x,
                    y,
                    &format!("{full}[{i}]"),
                    &format!("{pointer}/{i}"),
                    file,
                    problems,
                );
            }
        }
        (Value::Object(a), Value::Object(b)) => {
            merge_objects(a, b, full, file, problems);
        }
        (slot, new) => *slot = new.clone(),
    }
}

/// loopback-boot's `mergeMiddlewareConfig`.
fn merge_middleware(
    target: &mut Map<String, Value>,
    over: &Map<String, Value>,
    file: &Path,
    problems: &mut Problems,
) {
    for (phase, entries) in over {
        if phase == "$schema" {
            continue;
        }
        let Some(Value::Object(base_phase)) = target.get_mut(phase) else {
            problems.push(Problem::new(
                file,
                &format!("/{}", escape(phase)),
                &format!("The phase \"{phase}\" is not defined in the main config."),
            ));
            continue;
        };
        let Some(entries) = entries.as_object() else {
            continue;
        };
        for (name, new) in entries {
            let pointer = format!("/{}/{}", escape(phase), escape(name));
            let Some(orig) = base_phase.get_mut(name) else {
                problems.push(Problem::new(
                    file,
                    &pointer,
                    &format!(
                        "The middleware \"{name}\" in phase \"{phase}\" is not defined in the main config."
                    ),
                ));
                continue;
            };
            match (orig, new) {
                (Value::Array(a), Value::Array(b)) => merge_named(a, b),
                (Value::Array(a), Value::Object(b)) if !b.is_empty() => {
                    merge_named(a, std::slice::from_ref(new))
                }
                (Value::Array(_), _) => {}
                (slot @ Value::Object(_), Value::Array(b)) => {
                    if slot.as_object().is_some_and(|o| !o.is_empty()) {
                        let mut list = vec![slot.clone()];
                        merge_named(&mut list, b);
                        *slot = Value::Array(list);
                    } else {
                        *slot = Value::Array(b.clone());
                    }
                }
                (Value::Object(a), Value::Object(b)) => {
                    merge_objects(a, b, "", file, problems);
                }
                (slot, new) => *slot = new.clone(),
            }
        }
    }
}

/// Arrays of middleware instances merge by their `name`; unnamed or new ones are appended.
fn merge_named(target: &mut Vec<Value>, items: &[Value]) {
    for item in items {
        let name = item.get("name").and_then(Value::as_str);
        let found = name.and_then(|n| {
            target
                .iter_mut()
                .find(|t| t.get("name").and_then(Value::as_str) == Some(n))
        });
        match (found, item) {
            (Some(Value::Object(t)), Value::Object(i)) => {
                let mut ignore = Problems::default();
                merge_objects(t, i, "", Path::new(""), &mut ignore);
            }
            _ => target.push(item.clone()),
        }
    }
}

/// `${VAR}` at the end of a string replaces the whole string by the environment variable
/// `VAR`, or else the app setting `VAR` from config.json (so `${restApiRoot}` works); an
/// unknown name becomes null with a warning, as LoopBack leaves it undefined.
pub fn substitute(
    value: &mut Value,
    settings: &Map<String, Value>,
    file: &Path,
    pointer: &str,
    warnings: &mut Vec<String>,
) {
    match value {
        Value::String(s) => {
            if let Some(name) = placeholder(s) {
                let resolved = std::env::var(name)
                    .ok()
                    .map(Value::String)
                    .or_else(|| settings.get(name).cloned());
                match resolved {
                    Some(v) => *value = v,
                    None => {
                        warnings.push(format!(
                            "{}: {pointer}: ${{{name}}} is neither an environment variable nor an app setting",
                            file.display()
                        ));
                        *value = Value::Null;
                    }
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                substitute(v, settings, file, &format!("{pointer}/{i}"), warnings);
            }
        }
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                substitute(
                    v,
                    settings,
                    file,
                    &format!("{pointer}/{}", escape(k)),
                    warnings,
                );
            }
        }
        _ => {}
    }
}

/// The `NAME` of a string ending in `${NAME}` (LoopBack's `/\$\{(\w+)\}$/`).
fn placeholder(s: &str) -> Option<&str> {
    let body = s.strip_suffix('}')?;
    let start = body.rfind("${")?;
    let name = &body[start + 2..];
    (!name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        .then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn placeholders_are_whole_value_and_anchored_at_the_end() {
        assert_eq!(placeholder("${restApiRoot}"), Some("restApiRoot"));
        assert_eq!(placeholder("prefix-${X}"), Some("X"));
        assert_eq!(placeholder("${X}-suffix"), None);
        assert_eq!(placeholder("${a-b}"), None);
    }

    #[test]
    fn generic_merge_follows_loopback_boot() {
        let mut base = json!({"a": {"b": 1, "c": [1, 2]}, "d": "x"});
        let over = json!({"a": {"b": 2, "c": [3, 4]}, "e": true});
        let mut p = Problems::default();
        merge_objects(
            base.as_object_mut().unwrap(),
            over.as_object().unwrap(),
            "",
            Path::new("f"),
            &mut p,
        );
        assert!(p.is_empty());
        assert_eq!(
            base,
            json!({"a": {"b": 2, "c": [3, 4]}, "d": "x", "e": true})
        );
        let over = json!({"a": {"c": [1]}, "d": {"x": 1}});
        merge_objects(
            base.as_object_mut().unwrap(),
            over.as_object().unwrap(),
            "",
            Path::new("f"),
            &mut p,
        );
        let msgs: Vec<String> = p
            .iter()
            .map(|p| format!("{} {}", p.pointer, p.message))
            .collect();
        assert_eq!(
            msgs,
            [
                "/a/c Cannot merge array values of different length for the option `a.c`.",
                "/d Cannot merge values of incompatible types for the option `d`."
            ]
        );
    }
}
