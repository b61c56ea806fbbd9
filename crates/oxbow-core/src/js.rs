//! JavaScript value semantics that LoopBack's behaviour depends on: `Number(v)`, `String(v)`,
//! loose equality (`==`), the memory connector's `compare`, and `Date` parsing and printing.
//!
//! LoopBack 3 is JavaScript, and several of its visible behaviours (coercion of `"12"` to `12`,
//! `{"p": "5"}` matching `5`, dates printed by `toISOString()`) are JavaScript's own rules. They
//! live here, in one place, so every other module can name the rule it applies.

use std::cmp::Ordering;

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use serde_json::{Number, Value};

/// `Number(v)` of JavaScript. `None` stands for `NaN`.
pub fn to_number(v: &Value) -> Option<f64> {
    match v {
        Value::Null => Some(0.0),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        Value::Number(n) => n.as_f64(),
        Value::String(s) => str_to_number(s),
        Value::Array(items) => match items.as_slice() {
            [] => Some(0.0),
            [one] => str_to_number(&to_js_string(one)),
            _ => None,
        },
        Value::Object(_) => None,
    }
}

/// A number for numbers and numeric strings only (`None` otherwise), as `x > n` compares.
pub fn to_number_opt(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) if !s.trim().is_empty() => str_to_number(s),
        _ => None,
    }
}

/// `Number("...")` of JavaScript: trims whitespace, empty is 0, accepts hex/octal/binary
/// prefixes and `Infinity`, rejects everything else as `NaN` (`None`).
pub fn str_to_number(s: &str) -> Option<f64> {
    let t = s.trim();
    if t.is_empty() {
        return Some(0.0);
    }
    let radix = |digits: &str, radix: u32| -> Option<f64> {
        if digits.is_empty() {
            return None;
        }
        u64::from_str_radix(digits, radix).ok().map(|v| v as f64)
    };
    if let Some(rest) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        return radix(rest, 16);
    }
    if let Some(rest) = t.strip_prefix("0o").or_else(|| t.strip_prefix("0O")) {
        return radix(rest, 8);
    }
    if let Some(rest) = t.strip_prefix("0b").or_else(|| t.strip_prefix("0B")) {
        return radix(rest, 2);
    }
    match t {
        "Infinity" | "+Infinity" => return Some(f64::INFINITY),
        "-Infinity" => return Some(f64::NEG_INFINITY),
        _ => {}
    }
    // Rust accepts "inf", "nan" and "infinity" in any case; JavaScript does not.
    let body = t.trim_start_matches(['+', '-']);
    if !body.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return None;
    }
    if body.contains(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))) {
        return None;
    }
    t.parse::<f64>().ok()
}

/// The number a string is when JavaScript prints that number back as the same string (`"2"`,
/// `"-1.5"`); `None` for strings that only read as one (`"02"`, `"1e1"`, `" 3"`).
pub fn number_as_written(s: &str) -> Option<Value> {
    let n = str_to_number(s).filter(|n| n.is_finite())?;
    let value = number_value(n);
    (to_js_string(&value) == s).then_some(value)
}

/// A finite `f64` as the JSON number JavaScript would print (`12`, not `12.0`).
pub fn number_value(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 {
        Value::Number(Number::from(n as i64))
    } else {
        Number::from_f64(n)
            .map(Value::Number)
            .unwrap_or(Value::Null)
    }
}

/// Whether JavaScript finds `v` truthy: everything but `null`, `false`, `0`, `""` (JSON has no
/// `NaN` or `undefined`).
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// `String(v)` of JavaScript.
pub fn to_js_string(v: &Value) -> String {
    match v {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => number_to_js_string(n),
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::Null => String::new(),
                other => to_js_string(other),
            })
            .collect::<Vec<_>>()
            .join(","),
        Value::Object(_) => "[object Object]".to_owned(),
    }
}

fn number_to_js_string(n: &Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    let f = n.as_f64().unwrap_or(f64::NAN);
    if f == 0.0 {
        "0".to_owned()
    } else if f.fract() == 0.0 && f.abs() < 1e21 {
        // The shortest digits that read back as `f`, padded with zeros, as JavaScript prints
        // it: 2^64 is `18446744073709552000`, not its exact expansion.
        format!("{f}")
    } else {
        n.to_string()
    }
}

/// `String(n)` of the JavaScript number a JSON number becomes: integers beyond 2^53 rounded to
/// the nearest double (`9007199254740993` is `9007199254740992`), as LoopBack's messages show
/// them.
pub fn number_as_parsed(v: &Value) -> String {
    match v {
        Value::Number(n)
            if n.as_f64()
                .is_some_and(|f| f.abs() > 9_007_199_254_740_992.0) =>
        {
            let f = n.as_f64().unwrap_or(f64::NAN);
            to_js_string(&Value::from(f))
        }
        other => to_js_string(other),
    }
}

/// JavaScript's abstract equality `a == b` for JSON values (`undefined` is `None`).
/// `==` of two numbers (exact for integers beyond 2^53, where JavaScript would round).
pub fn number_eq(x: &serde_json::Number, y: &serde_json::Number) -> bool {
    match (x.as_i64(), y.as_i64()) {
        (Some(i), Some(j)) => i == j,
        _ => x.as_f64() == y.as_f64(),
    }
}

pub fn loose_eq(a: Option<&Value>, b: Option<&Value>) -> bool {
    let (a, b) = match (a, b) {
        (None | Some(Value::Null), None | Some(Value::Null)) => return true,
        (None | Some(Value::Null), _) | (_, None | Some(Value::Null)) => return false,
        (Some(a), Some(b)) => (a, b),
    };
    match (a, b) {
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Number(x), Value::Number(y)) => number_eq(x, y),
        (Value::Bool(x), Value::Bool(y)) => x == y,
        // Objects and arrays compare by reference in JavaScript: two parsed values are never
        // the same object, except when compared with a primitive (then ToPrimitive applies).
        (Value::Object(_) | Value::Array(_), Value::Object(_) | Value::Array(_)) => false,
        (Value::Object(_) | Value::Array(_), prim) | (prim, Value::Object(_) | Value::Array(_)) => {
            let obj = if matches!(a, Value::Object(_) | Value::Array(_)) {
                a
            } else {
                b
            };
            loose_eq(Some(&Value::String(to_js_string(obj))), Some(prim))
        }
        // Mixed primitives compare as numbers.
        _ => match (to_number(a), to_number(b)) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        },
    }
}

/// The memory connector's `compare(val1, val2)`: `None` where JavaScript yields `NaN`.
///
/// Numbers compare numerically (the other side converted with `Number()`), strings by UTF-16
/// code units, booleans as 0/1; `null`/missing only equal each other.
pub fn compare(a: Option<&Value>, b: Option<&Value>) -> Option<Ordering> {
    let (a, b) = match (a, b) {
        (None | Some(Value::Null), None | Some(Value::Null)) => return Some(Ordering::Equal),
        (None | Some(Value::Null), _) | (_, None | Some(Value::Null)) => return None,
        (Some(a), Some(b)) => (a, b),
    };
    match a {
        Value::Number(_) | Value::Bool(_) => {
            let x = to_number(a)?;
            let y = to_number(b)?;
            x.partial_cmp(&y)
        }
        Value::String(x) => match b {
            Value::String(y) => Some(cmp_utf16(x, y)),
            // `"10" > 9` converts the string to a number.
            Value::Number(_) | Value::Bool(_) => {
                let x = str_to_number(x)?;
                x.partial_cmp(&to_number(b)?)
            }
            _ => {
                let y = to_js_string(b);
                Some(cmp_utf16(x, &y))
            }
        },
        _ => {
            if loose_eq(Some(a), Some(b)) {
                Some(Ordering::Equal)
            } else {
                None
            }
        }
    }
}

/// Orders two strings as JavaScript's `<` does: by UTF-16 code units.
pub fn cmp_utf16(a: &str, b: &str) -> Ordering {
    if a.is_ascii() && b.is_ascii() {
        return a.cmp(b);
    }
    a.encode_utf16().cmp(b.encode_utf16())
}

/// `new Date(s)` for the forms clients send: ISO 8601 (date-only forms are UTC, date-time
/// forms without an offset are taken as UTC, the server's zone in every deployment we ship),
/// RFC 2822, and a few common variants. `None` is `Invalid Date`.
pub fn parse_date_str(s: &str) -> Option<DateTime<Utc>> {
    let t = s.trim();
    if t.is_empty() {
        return None;
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Some(dt.with_timezone(&Utc));
    }
    if let Ok(dt) = DateTime::parse_from_rfc2822(t) {
        return Some(dt.with_timezone(&Utc));
    }
    // ISO variants: "2020", "2020-01", "2020-01-02", "2020-01-02T03:04", "…:05", "…:05.123",
    // with an optional zone suffix "Z" or "+01:00".
    let (body, offset) = split_zone(t);
    let naive = if let Ok(d) = NaiveDate::parse_from_str(body, "%Y-%m-%d") {
        d.and_hms_opt(0, 0, 0)
    } else if let Ok(d) = NaiveDate::parse_from_str(&format!("{body}-01"), "%Y-%m-%d") {
        d.and_hms_opt(0, 0, 0)
    } else if body.len() == 4 && body.chars().all(|c| c.is_ascii_digit()) {
        NaiveDate::from_ymd_opt(body.parse().ok()?, 1, 1).and_then(|d| d.and_hms_opt(0, 0, 0))
    } else {
        let body = body.replacen(' ', "T", 1);
        [
            "%Y-%m-%dT%H:%M:%S%.f",
            "%Y-%m-%dT%H:%M:%S",
            "%Y-%m-%dT%H:%M",
        ]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(&body, f).ok())
    }?;
    let utc = Utc.from_utc_datetime(&naive);
    Some(utc - chrono::Duration::seconds(offset))
}

fn split_zone(t: &str) -> (&str, i64) {
    if let Some(body) = t.strip_suffix('Z').or_else(|| t.strip_suffix('z')) {
        return (body, 0);
    }
    // "+01:00" / "-0530" at the end of a date-time (not the date's own dashes).
    if let Some(pos) = t.rfind(['+', '-'])
        && (t[..pos].contains('T') || t[..pos].contains(' '))
    {
        let zone = &t[pos + 1..];
        let digits: String = zone.chars().filter(|c| c.is_ascii_digit()).collect();
        if digits.len() == 4 && zone.len() <= 5 {
            let h: i64 = digits[..2].parse().unwrap_or(0);
            let m: i64 = digits[2..].parse().unwrap_or(0);
            let sign = if &t[pos..=pos] == "-" { -1 } else { 1 };
            return (&t[..pos], sign * (h * 3600 + m * 60));
        }
    }
    (t, 0)
}

/// `new Date(v)` for any JSON value: numbers are milliseconds since the epoch.
pub fn to_date(v: &Value) -> Option<DateTime<Utc>> {
    match v {
        Value::String(s) => parse_date_str(s),
        Value::Number(n) => {
            let ms = n.as_f64()?;
            if !ms.is_finite() {
                return None;
            }
            DateTime::from_timestamp_millis(ms as i64)
        }
        Value::Bool(b) => DateTime::from_timestamp_millis(i64::from(*b)),
        Value::Null => DateTime::from_timestamp_millis(0),
        _ => None,
    }
}

/// `Date.prototype.toISOString()`: `2020-01-02T00:00:00.000Z`.
pub fn format_date(d: &DateTime<Utc>) -> String {
    d.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn number_follows_javascript() {
        assert_eq!(str_to_number("12"), Some(12.0));
        assert_eq!(str_to_number(" 4.5 "), Some(4.5));
        assert_eq!(str_to_number(""), Some(0.0));
        assert_eq!(str_to_number("abc"), None);
        assert_eq!(str_to_number("inf"), None);
        assert_eq!(str_to_number("0x10"), Some(16.0));
        assert_eq!(to_number(&json!(true)), Some(1.0));
        assert_eq!(number_value(12.0), json!(12));
        assert_eq!(number_value(2.5), json!(2.5));
    }

    #[test]
    fn loose_equality() {
        assert!(loose_eq(Some(&json!("5")), Some(&json!(5))));
        assert!(loose_eq(None, Some(&Value::Null)));
        assert!(!loose_eq(Some(&json!("true")), Some(&json!(true))));
        assert!(loose_eq(Some(&json!("1")), Some(&json!(true))));
        assert!(!loose_eq(Some(&json!({})), Some(&json!({}))));
    }

    #[test]
    fn dates() {
        let d = parse_date_str("2020-01-02").unwrap();
        assert_eq!(format_date(&d), "2020-01-02T00:00:00.000Z");
        let d = parse_date_str("2024-03-01T10:00:00Z").unwrap();
        assert_eq!(format_date(&d), "2024-03-01T10:00:00.000Z");
        let d = parse_date_str("2024-03-01T10:00:00+01:00").unwrap();
        assert_eq!(format_date(&d), "2024-03-01T09:00:00.000Z");
        assert!(parse_date_str("notadate").is_none());
        assert_eq!(
            format_date(&to_date(&json!(0)).unwrap()),
            "1970-01-01T00:00:00.000Z"
        );
    }
}
