//! Building a model instance from client data: type coercion, defaults, strict mode, and the
//! LoopBack validations that model JSON can declare (`required`, date types, `forceId`).
//!
//! The result is a [`Record`] in canonical key order (declared properties in declaration order,
//! then unknown properties in arrival order), which is the order LoopBack serialises.

use chrono::Utc;
use serde_json::{Map, Value};

use crate::error::{Error, Result, ValidationError, Violation};
use crate::js;
use crate::model::{ModelDefinition, PropertyType, Strict};

/// A stored or returned row: property name to JSON value, in canonical order.
pub type Record = Map<String, Value>;

/// A value that JavaScript would hold but JSON cannot: kept aside for validation messages.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Oddity {
    NaN,
    InvalidDate,
}

/// Client data turned into a typed record, with what validation needs to know about it.
#[derive(Debug)]
pub struct Instance {
    /// The record's properties in canonical order (kept as a list: most instances go straight
    /// into a stored row, and a map would be built only to be taken apart).
    entries: Vec<(String, Value)>,
    oddities: Vec<(String, Oddity)>,
    /// Unknown properties a `strict` model refused.
    unknown: Vec<String>,
}

/// How defaults apply while building.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Defaults {
    Apply,
    Skip,
}

/// Coerces one value to a property type as LoopBack's property setters do.
fn coerce(ty: &PropertyType, v: Value) -> Result<(Value, Option<Oddity>)> {
    if v.is_null() {
        return Ok((v, None));
    }
    Ok(match ty {
        PropertyType::String => match v {
            Value::String(_) => (v, None),
            other => (Value::String(js::to_js_string(&other)), None),
        },
        PropertyType::Number => match js::to_number(&v) {
            Some(n) if n.is_finite() => (js::number_value(n), None),
            // `Infinity` serialises as `null` in JSON, as NaN does.
            Some(_) => (Value::Null, None),
            None => (Value::Null, Some(Oddity::NaN)),
        },
        PropertyType::Boolean => (Value::Bool(to_boolean(&v)), None),
        PropertyType::Date => match js::to_date(&v) {
            Some(d) => (Value::String(js::format_date(&d)), None),
            None => (Value::Null, Some(Oddity::InvalidDate)),
        },
        PropertyType::Array(item) => {
            // juggler's `List`: a string is parsed as JSON, then a falsy value is `[]`.
            let parsed = match v {
                Value::String(s) => serde_json::from_str::<Value>(&s).map_err(|_| {
                    Error::bad_request(format!(
                        "could not create List from JSON string: {}",
                        Value::String(s)
                    ))
                })?,
                other => other,
            };
            let items = match parsed {
                Value::Array(items) => items,
                falsy if !js::truthy(&falsy) => Vec::new(),
                other => {
                    return Err(Error::bad_request(format!(
                        "Items must be an array: {other}"
                    )));
                }
            };
            let items = match item {
                Some(item_ty) => items
                    .into_iter()
                    .map(|i| match (item_ty.as_ref(), i) {
                        // `String(null)` is "null" inside a typed list.
                        (PropertyType::String, Value::Null) => Ok(Value::from("null")),
                        (_, i) => coerce(item_ty, i).map(|(v, _)| v),
                    })
                    .collect::<Result<Vec<_>>>()?,
                None => items,
            };
            (Value::Array(items), None)
        }
        PropertyType::Object | PropertyType::Any => (v, None),
    })
}

/// LoopBack's `BooleanType`: `"true"`/`"1"` and `"false"`/`"0"`, else JavaScript truthiness.
pub fn to_boolean(v: &Value) -> bool {
    match v {
        Value::String(s) => match s.as_str() {
            "true" | "1" => true,
            "false" | "0" | "" => false,
            _ => true,
        },
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Value::Null => false,
        Value::Array(_) | Value::Object(_) => true,
    }
}

impl Instance {
    /// Builds an instance from `input` (client data, already an object).
    pub fn build(def: &ModelDefinition, input: Record, defaults: Defaults) -> Result<Self> {
        let mut oddities = Vec::new();
        let mut unknown = Vec::new();
        // Collected in a vector first so the record is allocated at its exact size (rows are
        // kept for a long time; spare capacity would be memory held per row).
        let mut data: Vec<(String, Value)> = Vec::with_capacity(def.properties.len() + input.len());
        // Entries are taken out by a linear scan: bodies are small, and this keeps the
        // arrival order of what is left (the unknown properties) without rehashing.
        let mut entries: Vec<(String, Option<Value>)> =
            input.into_iter().map(|(k, v)| (k, Some(v))).collect();
        for prop in &def.properties {
            let given = entries
                .iter_mut()
                .find(|(k, v)| *k == prop.name && v.is_some())
                .and_then(|(k, v)| Some((std::mem::take(k), v.take()?)));
            // A setter (a User's password) sees the client's value first, and may drop it.
            let given = match (given, &def.auth.setter) {
                (Some((key, v)), Some(setter)) if setter.applies(&prop.name) => {
                    setter.set(&prop.name, v)?.map(|v| (key, v))
                }
                (given, _) => given,
            };
            if let Some((key, v)) = given {
                let (v, odd) = coerce(&prop.ty, v)?;
                if let Some(odd) = odd {
                    oddities.push((prop.name.clone(), odd));
                }
                data.push((key, v));
            } else if defaults == Defaults::Apply
                && let Some(v) = default_value(prop)
            {
                data.push((prop.name.clone(), v));
            }
        }
        for (k, v) in entries.into_iter().filter_map(|(k, v)| Some((k, v?))) {
            match def.strict {
                Strict::Off => {
                    data.push((k, v));
                }
                Strict::Filter => {}
                Strict::Validate => unknown.push(k),
            }
        }
        // One spare slot when the id is missing: the connector adds it.
        data.reserve_exact(1);
        Ok(Self {
            entries: data,
            oddities,
            unknown,
        })
    }

    /// The properties in canonical order.
    pub fn into_entries(self) -> Vec<(String, Value)> {
        self.entries
    }

    /// The properties as a JSON map in canonical order.
    pub fn into_record(self) -> Record {
        self.entries.into_iter().collect()
    }

    pub(crate) fn get(&self, key: &str) -> Option<&Value> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Merges a patch into a stored record (the patch's keys win), in canonical order.
    pub fn merge(def: &ModelDefinition, current: &Record, patch: Record) -> Result<Self> {
        let mut merged = current.clone();
        for (k, v) in patch {
            // A value a setter drops leaves the stored one in place.
            let v = match &def.auth.setter {
                Some(setter) if setter.applies(&k) => match setter.set(&k, v)? {
                    Some(v) => v,
                    None => continue,
                },
                _ => v,
            };
            merged.insert(k, v);
        }
        // Re-build without defaults: stored values are already coerced, patch values are not.
        Self::build(def, merged, Defaults::Skip)
    }

    /// Runs the validations LoopBack derives from model JSON.
    ///
    /// `new_record` adds the `forceId` absence check on the id.
    pub fn validate(&self, def: &ModelDefinition, new_record: bool) -> Result<()> {
        self.validate_with(def, new_record, Vec::new())
    }

    /// [`Instance::validate`] with violations found elsewhere (uniqueness, which needs a
    /// query) reported after these, as juggler reports asynchronous validations last.
    pub fn validate_with(
        &self,
        def: &ModelDefinition,
        new_record: bool,
        more: Vec<Violation>,
    ) -> Result<()> {
        let mut violations = Vec::new();
        for prop in &def.properties {
            let value = self.get(&prop.name);
            let odd = self.oddity(&prop.name);
            if prop.required && is_blank(value, odd) {
                violations.push(violation(
                    &prop.name,
                    "presence",
                    "can't be blank",
                    value,
                    odd,
                ));
            }
            if prop.ty == PropertyType::Date && odd == Some(Oddity::InvalidDate) {
                violations.push(violation(
                    &prop.name,
                    "date",
                    "is not a valid date",
                    value,
                    odd,
                ));
            }
        }
        for v in &def.validations {
            if let crate::model::Validation::Email { property } = v {
                let value = self.get(property);
                let kind = match value {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) if s.is_empty() || is_email(s) => None,
                    Some(Value::String(_)) => Some("custom.email"),
                    Some(_) => Some("custom.string"),
                };
                if let Some(code) = kind {
                    violations.push(violation(property, code, "is invalid", value, None));
                }
            }
        }
        if new_record {
            violations.extend(self.force_id_violation(def));
        }
        for name in &self.unknown {
            violations.push(violation(
                name,
                "unknown-property",
                "is not defined in the model",
                None,
                None,
            ));
        }
        if let Some(rules) = &def.rules {
            // Rules apply to values that are there, as LoopBack's own validators skip
            // undefined and null (`presence` is `required`'s job).
            let present: Map<String, Value> = self
                .entries
                .iter()
                .filter(|(k, v)| !v.is_null() && self.oddity(k).is_none())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for (name, code, message) in rules.check(&Value::Object(present)) {
                let value = self.get(&name).cloned();
                violations.push(violation(&name, code, message, value.as_ref(), None));
            }
        }
        violations.extend(more);
        if violations.is_empty() {
            Ok(())
        } else {
            Err(Error::Validation(ValidationError {
                model: def.name.to_string(),
                violations,
            }))
        }
    }

    /// `forceId`'s absence check alone: a new instance of a `forceId` model may not name its id.
    pub fn check_force_id(&self, def: &ModelDefinition) -> Result<()> {
        match self.force_id_violation(def) {
            None => Ok(()),
            Some(v) => Err(Error::Validation(ValidationError {
                model: def.name.to_string(),
                violations: vec![v],
            })),
        }
    }

    fn force_id_violation(&self, def: &ModelDefinition) -> Option<Violation> {
        if !def.force_id {
            return None;
        }
        let id = def.id_name();
        let value = self.get(id);
        (!is_blank(value, None)).then(|| violation(id, "absence", "can't be set", value, None))
    }

    fn oddity(&self, name: &str) -> Option<Oddity> {
        self.oddities
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, o)| *o)
    }
}

/// Whether `s` is an email address as the `isemail` package (LoopBack's User validator)
/// accepts one without DNS checks: a dot-atom or quoted local part of at most 64 bytes, `@`,
/// and a domain of dot-separated labels (letters, digits, inner hyphens; at most 63 bytes
/// each) or an address literal in brackets, 254 bytes in all.
pub fn is_email(s: &str) -> bool {
    if s.len() > 254 {
        return false;
    }
    let Some(at) = s.rfind('@') else {
        return false;
    };
    let (local, domain) = (&s[..at], &s[at + 1..]);
    let atext =
        |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii();
    let local_ok = if local.len() >= 2 && local.starts_with('"') && local.ends_with('"') {
        let inner = &local[1..local.len() - 1];
        !inner.contains(|c: char| c == '"' || c == '\\' || c.is_ascii_control())
    } else {
        !local.is_empty()
            && local
                .split('.')
                .all(|p| !p.is_empty() && p.chars().all(atext))
    };
    if !local_ok || local.len() > 64 || domain.is_empty() {
        return false;
    }
    if domain.starts_with('[') && domain.ends_with(']') {
        return domain[1..domain.len() - 1]
            .parse::<std::net::IpAddr>()
            .is_ok()
            || domain[1..domain.len() - 1]
                .strip_prefix("IPv6:")
                .is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok());
    }
    domain.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || !c.is_ascii())
    })
}

/// The value a `default` or `defaultFn` gives a property on create/replace.
fn default_value(prop: &crate::model::Property) -> Option<Value> {
    match prop.default_fn.as_deref() {
        Some("now") => return Some(Value::String(js::format_date(&Utc::now()))),
        Some("guid" | "uuid" | "uuidv4") => return Some(Value::String(uuid_v4())),
        _ => {}
    }
    let d = prop.default.clone()?;
    if prop.ty == PropertyType::Date && d == "$now" {
        return Some(Value::String(js::format_date(&Utc::now())));
    }
    coerce(&prop.ty, d).ok().map(|(v, _)| v)
}

/// A random (version 4) UUID, as LoopBack's `defaultFn: "uuidv4"` makes. The 122 random bits
/// come from the standard library's randomly keyed hasher (seeded by the OS per process) over a
/// counter: unique and unpredictable enough for ids, with no extra dependency.
pub fn uuid_v4() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static KEYS: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    let keys = KEYS.get_or_init(std::collections::hash_map::RandomState::new);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let word = |salt: u64| {
        let mut h = keys.build_hasher();
        h.write_u64(n);
        h.write_u64(salt);
        h.finish()
    };
    let (a, b) = (word(0x5eed), word(0xfeed));
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&a.to_be_bytes());
    bytes[8..].copy_from_slice(&b.to_be_bytes());
    bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// LoopBack's `blank()`: undefined, null, `""`, `[]` and NaN.
fn is_blank(v: Option<&Value>, odd: Option<Oddity>) -> bool {
    if odd == Some(Oddity::NaN) {
        return true;
    }
    match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        _ => false,
    }
}

fn violation(
    property: &str,
    code: &'static str,
    message: &'static str,
    value: Option<&Value>,
    odd: Option<Oddity>,
) -> Violation {
    let shown_value = match odd {
        Some(Oddity::NaN) => "NaN".to_owned(),
        Some(Oddity::InvalidDate) => "Invalid Date".to_owned(),
        None => show_value(value),
    };
    Violation {
        property: property.to_owned(),
        code,
        message,
        shown_value,
    }
}

/// How LoopBack's `formatPropertyError` prints a value (strings quoted, long ones truncated,
/// objects as `util.inspect` shows them).
pub(crate) fn show_value(v: Option<&Value>) -> String {
    match v {
        None => "undefined".to_owned(),
        Some(Value::String(s)) => Value::String(truncate(s)).to_string(),
        Some(v @ (Value::Object(_) | Value::Array(_))) => truncate(&inspect(v, 0)),
        Some(other) => truncate(&js::number_as_parsed(other)),
    }
}

fn truncate(s: &str) -> String {
    const MAX: usize = 32;
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= MAX {
        return s.to_owned();
    }
    let trailing = chars
        .iter()
        .rev()
        .take_while(|c| matches!(c, ' ' | '\t' | '}' | ')' | ']'))
        .count();
    let (tail_len, len) = if trailing > 0 {
        let t = trailing.min(3);
        (t, MAX - t)
    } else {
        (3, MAX - 3)
    };
    let head: String = chars[..len - 4].iter().collect();
    let tail: String = chars[chars.len() - tail_len..].iter().collect();
    format!("{head}...{tail}")
}

/// A close rendering of Node's `util.inspect` for JSON values (top level only for objects).
fn inspect(v: &Value, depth: usize) -> String {
    match v {
        Value::String(s) => format!("'{}'", s.replace('\'', "\\'")),
        Value::Array(items) if items.is_empty() => "[]".to_owned(),
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(|i| inspect(i, depth + 1)).collect();
            format!("[ {} ]", inner.join(", "))
        }
        Value::Object(map) if map.is_empty() => "{}".to_owned(),
        Value::Object(_) if depth > 0 => "[Object]".to_owned(),
        Value::Object(map) => {
            let inner: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{k}: {}", inspect(v, depth + 1)))
                .collect();
            format!("{{ {} }}", inner.join(", "))
        }
        other => js::to_js_string(other),
    }
}
