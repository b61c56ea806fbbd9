//! Property rules beyond LoopBack's (`min`, `max`, `minLength`, `maxLength`, `pattern`,
//! `enum`, `format` in a property's definition), compiled at boot into one JSON Schema per
//! model and checked with `jsonschema` on every validated write. Broken rules are reported in
//! LoopBack's 422 body with LoopBack-style codes (`length.min`, `format`, `inclusion`, …).

use std::path::Path;

use jsonschema::Validator;
use jsonschema::error::ValidationErrorKind as K;
use serde_json::{Map, Value, json};

use oxbow_core::model::{RuleViolation, Rules};
use oxbow_core::{Property, PropertyType};

use crate::problem::{Problem, Problems, escape};

/// The rule keywords a property may carry.
const KEYWORDS: &[&str] = &[
    "min",
    "max",
    "minLength",
    "maxLength",
    "pattern",
    "enum",
    "format",
];

/// A model's rules as a compiled JSON Schema.
pub struct SchemaRules {
    validator: Validator,
    /// The schema, kept for `Debug` and for tools.
    pub schema: Value,
}

impl std::fmt::Debug for SchemaRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SchemaRules({})", self.schema)
    }
}

impl Rules for SchemaRules {
    fn check(&self, record: &Value) -> Vec<RuleViolation> {
        let mut out = Vec::new();
        for err in self.validator.iter_errors(record) {
            let path = err.instance_path().as_str();
            let property = path
                .trim_start_matches('/')
                .split('/')
                .next()
                .unwrap_or("")
                .replace("~1", "/")
                .replace("~0", "~");
            let (code, message) = match err.kind() {
                K::Minimum { .. } | K::ExclusiveMinimum { .. } => ("min", "is too small"),
                K::Maximum { .. } | K::ExclusiveMaximum { .. } => ("max", "is too large"),
                K::MinLength { .. } | K::MinItems { .. } => ("length.min", "is too short"),
                K::MaxLength { .. } | K::MaxItems { .. } => ("length.max", "is too long"),
                K::Pattern { .. } | K::Format { .. } => ("format", "is invalid"),
                K::Enum { .. } => ("inclusion", "is not included in the list"),
                _ => ("custom", "is invalid"),
            };
            out.push((property, code, message));
        }
        out
    }
}

/// The rules declared on `properties` of the model JSON at `json`, or `None` when there are
/// none. A rule that cannot work (a bad pattern, `min` on a string) is a problem.
pub fn compile(
    file: &Path,
    json: &Map<String, Value>,
    properties: &[Property],
    problems: &mut Problems,
) -> Option<SchemaRules> {
    let specs = json.get("properties").and_then(Value::as_object)?;
    let mut schema_props = Map::new();
    for prop in properties {
        let Some(spec) = specs.get(&prop.name).and_then(Value::as_object) else {
            continue;
        };
        let mut s = Map::new();
        let at = |k: &str| format!("/properties/{}/{k}", escape(&prop.name));
        let is_array = matches!(prop.ty, PropertyType::Array(_));
        for key in KEYWORDS {
            let Some(v) = spec.get(*key) else { continue };
            let ok = match *key {
                "min" | "max" => {
                    let ok = v.is_number() && prop.ty == PropertyType::Number;
                    if ok {
                        s.insert(
                            if *key == "min" { "minimum" } else { "maximum" }.into(),
                            v.clone(),
                        );
                    }
                    ok
                }
                "minLength" | "maxLength" => {
                    let ok = v.as_u64().is_some() && (is_array || prop.ty == PropertyType::String);
                    if ok {
                        let name = match (*key, is_array) {
                            ("minLength", false) => "minLength",
                            ("maxLength", false) => "maxLength",
                            ("minLength", true) => "minItems",
                            _ => "maxItems",
                        };
                        s.insert(name.into(), v.clone());
                    }
                    ok
                }
                "pattern" => {
                    let ok = v
                        .as_str()
                        .is_some_and(|p| jsonschema::validator_for(&json!({"pattern": p})).is_ok())
                        && prop.ty == PropertyType::String;
                    if ok {
                        s.insert("pattern".into(), v.clone());
                    }
                    ok
                }
                "enum" => {
                    let ok = v.as_array().is_some_and(|a| !a.is_empty());
                    if ok {
                        s.insert("enum".into(), v.clone());
                    }
                    ok
                }
                _ => {
                    const FORMATS: &[&str] = &[
                        "email",
                        "uri",
                        "url",
                        "uuid",
                        "date",
                        "date-time",
                        "time",
                        "ipv4",
                        "ipv6",
                        "hostname",
                    ];
                    let ok = v.as_str().is_some_and(|f| FORMATS.contains(&f))
                        && prop.ty == PropertyType::String;
                    if ok {
                        let f = if v == "url" {
                            "uri"
                        } else {
                            v.as_str().unwrap_or("")
                        };
                        s.insert("format".into(), Value::from(f));
                    }
                    ok
                }
            };
            if !ok && !problems.has(file, &at(key)) {
                let expected = match *key {
                    "min" | "max" => "a number, on a number property",
                    "minLength" | "maxLength" => {
                        "a non-negative integer, on a string or array property"
                    }
                    "pattern" => "a regular expression, on a string property",
                    "enum" => "a non-empty array of allowed values",
                    _ => {
                        "one of email, uri, url, uuid, date, date-time, time, ipv4, ipv6, hostname, on a string property"
                    }
                };
                problems.push(Problem::new(
                    file,
                    &at(key),
                    &format!("expected {expected}, found {v}"),
                ));
            }
        }
        if !s.is_empty() {
            schema_props.insert(prop.name.clone(), Value::Object(s));
        }
    }
    if schema_props.is_empty() {
        return None;
    }
    let schema = json!({ "type": "object", "properties": schema_props });
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .ok()?;
    Some(SchemaRules { validator, schema })
}
