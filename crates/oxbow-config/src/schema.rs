//! The JSON Schemas of `schemas/`, compiled once and used to check every file an app has.

use std::path::Path;

use jsonschema::Validator;
use serde_json::Value;

use crate::problem::{Problem, Problems};

/// The schema sources, embedded so the binary needs no files besides the app.
pub const MODEL: &str = include_str!("../../../schemas/model.schema.json");
pub const CONFIG: &str = include_str!("../../../schemas/config.schema.json");
pub const DATASOURCES: &str = include_str!("../../../schemas/datasources.schema.json");
pub const MODEL_CONFIG: &str = include_str!("../../../schemas/model-config.schema.json");
pub const MIDDLEWARE: &str = include_str!("../../../schemas/middleware.schema.json");

/// A compiled schema and its document (for descriptions in messages).
pub struct Schema {
    validator: Validator,
    doc: Value,
}

/// Compiled validators for every file kind.
pub struct Schemas {
    pub model: Schema,
    pub config: Schema,
    pub datasources: Schema,
    pub model_config: Schema,
    pub middleware: Schema,
}

impl Schemas {
    /// Compiles the embedded schemas. They are part of the build, so a failure is a bug.
    pub fn compile() -> Self {
        let one = |src: &str| {
            let doc: Value = serde_json::from_str(src).expect("embedded schema is valid JSON");
            let validator = jsonschema::validator_for(&doc).expect("embedded schema compiles");
            Schema { validator, doc }
        };
        Self {
            model: one(MODEL),
            config: one(CONFIG),
            datasources: one(DATASOURCES),
            model_config: one(MODEL_CONFIG),
            middleware: one(MIDDLEWARE),
        }
    }
}

/// Adds one problem per schema violation of `value`.
pub fn check(schema: &Schema, file: &Path, value: &Value, problems: &mut Problems) {
    for err in schema.validator.iter_errors(value) {
        problems.push(Problem::new(
            file,
            err.instance_path().as_str(),
            &explain(&schema.doc, &err),
        ));
    }
}

/// A sentence for a user: what was expected (from the schema's `description` where the raw
/// keyword would be cryptic) and what was found.
fn explain(doc: &Value, err: &jsonschema::ValidationError<'_>) -> String {
    use jsonschema::error::ValidationErrorKind as K;
    let found = short(err.instance());
    let described = || describe(doc, err.schema_path().as_str());
    match err.kind() {
        K::Pattern { pattern } => match described() {
            Some(d) => format!("expected {d}, found {found}"),
            None => format!("expected a string matching `{pattern}`, found {found}"),
        },
        K::Not { .. } | K::AnyOf { .. } | K::OneOfNotValid { .. } | K::FalseSchema => {
            match described() {
                Some(d) => format!("expected {d}, found {found}"),
                None => err.to_string(),
            }
        }
        K::Type { .. } => format!("expected {}, found {found}", type_phrase(err)),
        K::Constant { expected_value } => format!("expected {expected_value}, found {found}"),
        K::Enum { options } => format!("expected one of {options}, found {found}"),
        K::Required { property } => format!("expected the property {property}"),
        _ => err.to_string(),
    }
}

/// "a string", "an object", … from jsonschema's `… is not of type "string"`.
fn type_phrase(err: &jsonschema::ValidationError<'_>) -> String {
    let msg = err.to_string();
    let list = msg
        .rsplit(" is not of type")
        .next()
        .unwrap_or("")
        .trim_start_matches('s')
        .trim();
    let phrases: Vec<String> = list
        .split(',')
        .map(|t| t.trim().trim_matches('"'))
        .filter(|t| !t.is_empty())
        .map(|t| {
            format!(
                "{} {t}",
                if t.starts_with(['a', 'e', 'i', 'o', 'u']) {
                    "an"
                } else {
                    "a"
                }
            )
        })
        .collect();
    phrases.join(" or ")
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(57).collect::<String>())
    } else {
        s
    }
}

/// The `description` of the innermost described schema node on the way to the failing
/// keyword (local `$ref`s followed), its first sentence, lower-cased.
fn describe(doc: &Value, schema_path: &str) -> Option<String> {
    let segments: Vec<&str> = schema_path.split('/').skip(1).collect();
    let mut node = doc;
    let mut described: Option<&str> = None;
    for seg in &segments[..segments.len().saturating_sub(1)] {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if seg == "$ref" {
            let target = node.get("$ref")?.as_str()?.strip_prefix('#')?;
            node = doc.pointer(target)?;
        } else {
            node = match node {
                Value::Object(o) => o.get(&seg)?,
                Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        if let Some(d) = node.get("description").and_then(Value::as_str) {
            described = Some(d);
        }
    }
    let d = described?;
    let first = d.split(". ").next().unwrap_or(d).trim_end_matches('.');
    // Lower-case the first letter, unless it starts an acronym ("TCP port").
    let mut chars = first.chars();
    let c = chars.next()?;
    let acronym = chars.clone().next().is_some_and(|n| n.is_uppercase());
    Some(if acronym {
        first.to_owned()
    } else {
        c.to_lowercase().collect::<String>() + chars.as_str()
    })
}
