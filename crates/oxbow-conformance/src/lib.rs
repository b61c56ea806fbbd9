//! Helpers of the conformance suite: the transcript format, copying an app to a scratch folder,
//! and comparing a response with what LoopBack 3 answered.
//!
//! Transcripts live in `tests/conformance/transcripts/` (recorded from the real LoopBack 3 by
//! `scripts/record-transcripts.sh`); deliberate differences live in
//! `tests/conformance/deviations.json`, each with its reason (docs/COMPATIBILITY.md lists them).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

/// The repository root.
/// A test that cannot run here says so and passes, except under CI (`CI=true`), where a
/// missing service or browser is a failure: a silent green skip would hide it.
pub fn skip_or_fail(test: &str, why: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{test} cannot run: {why} (CI=true, so this is a failure, not a skip)");
    }
    eprintln!("skipping {test}: {why}");
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

#[derive(Debug, Clone, Deserialize)]
pub struct Transcript {
    #[serde(default)]
    pub description: String,
    pub app: String,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Step {
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub restart: bool,
    #[serde(default)]
    pub method: String,
    #[serde(default)]
    pub path: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub body: Option<String>,
    #[serde(default)]
    pub mask: Vec<String>,
    #[serde(default)]
    pub compare: Option<String>,
    /// Response headers whose value depends on the moment of recording (a static file's
    /// mtime-based ETag); their presence is still compared.
    #[serde(default, rename = "ignoreHeaders")]
    pub ignore_headers: Vec<String>,
    /// Opens a change stream under this name (its response never ends).
    #[serde(default)]
    pub stream: Option<String>,
    /// Collects what the named stream received so far (in `response.body`) and closes it.
    #[serde(default)]
    pub collect: Option<String>,
    /// How long a `collect` step waits before it takes the stream's bytes (milliseconds).
    #[serde(default, rename = "settleMs")]
    pub settle_ms: Option<f64>,
    /// Values this step's JSON answer hands to later steps: name → JSON pointer (a string or a
    /// number must be there). Later steps write `{{name}}` or `{{base64:name}}`.
    #[serde(default)]
    pub capture: BTreeMap<String, String>,
    /// Regular expressions a captured value must match: name → pattern.
    #[serde(default, rename = "captureShape")]
    pub capture_shape: BTreeMap<String, String>,
    pub response: Option<Expected>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Expected {
    /// Absent for `collect` steps (only the body is recorded).
    #[serde(default)]
    pub status: u16,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: String,
    /// A body that is not UTF-8 (an icon), base64-encoded.
    #[serde(default, rename = "bodyBase64")]
    pub body_base64: Option<String>,
}

/// Standard base64 with padding (how the recorder writes `bodyBase64`).
pub fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A deliberate difference from LoopBack 3 for one step: what oxbow answers instead, and why.
#[derive(Debug, Clone, Deserialize)]
pub struct Deviation {
    pub status: u16,
    #[serde(default)]
    pub body: Option<String>,
    pub reason: String,
}

/// `deviations.json`: transcript name → step title → deviation.
pub type Deviations = BTreeMap<String, BTreeMap<String, Deviation>>;

/// Steps not answered yet because the feature belongs to a later issue: transcript name →
/// step-title prefix → reason.
pub type Pending = BTreeMap<String, BTreeMap<String, String>>;

pub fn load_transcript(name: &str) -> anyhow::Result<Transcript> {
    let path = repo_root()
        .join("tests/conformance/transcripts")
        .join(format!("{name}.json"));
    Ok(serde_json::from_str(&std::fs::read_to_string(&path)?)?)
}

pub fn load_json<T: for<'de> Deserialize<'de> + Default>(file: &str) -> T {
    let path = repo_root().join("tests/conformance").join(file);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        }
        Err(_) => T::default(),
    }
}

/// The scratch app replays change streams in oxbow's LoopBack-exact mode (no ids, no retry
/// hint, no heartbeats), the mode whose bytes a LoopBack transcript can show.
pub fn loopback_exact_streams(dir: &Path) -> anyhow::Result<()> {
    let path = dir.join("server/config.json");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    config["changeStreams"] =
        serde_json::json!({"ids": false, "retryMs": 0, "heartbeatSeconds": 0});
    std::fs::write(&path, serde_json::to_string_pretty(&config)?)?;
    Ok(())
}

/// Replaces LoopBack's random mux-demux stream id (`["<26 hex>","new",…`) by `<id>`.
pub fn normalize_stream_id(body: &str) -> String {
    let Some(rest) = body.strip_prefix("[\"") else {
        return body.to_owned();
    };
    let Some(end) = rest.find('"') else {
        return body.to_owned();
    };
    let id = &rest[..end];
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit()) {
        return body.to_owned();
    }
    body.replace(id, "<id>")
}

/// Copies the config files of an app (`server/`, `models/`, `common/`, `data/`, `client/`) to a
/// fresh scratch folder, so tests never write into the repository.
pub fn scratch_copy(app: &str, tag: &str) -> anyhow::Result<PathBuf> {
    let src = repo_root().join(app);
    let dst = std::env::temp_dir().join(format!("oxbow-test-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dst);
    std::fs::create_dir_all(&dst)?;
    for dir in ["server", "models", "common", "data", "client"] {
        let from = src.join(dir);
        if from.is_dir() {
            copy_dir(&from, &dst.join(dir))?;
        }
    }
    Ok(dst)
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let path = entry.path();
        if path.is_dir() {
            copy_dir(&path, &to.join(entry.file_name()))?;
        } else if path.extension().is_some_and(|e| {
            e == "json"
                || e == "yaml"
                || e == "yml"
                || e == "html"
                || e == "js"
                || e == "css"
                || e == "ico"
        }) {
            if path.parent().is_some_and(|p| p.ends_with("data"))
                && path.extension().is_some_and(|e| e == "json")
            {
                continue; // never copy stored data
            }
            std::fs::copy(&path, to.join(entry.file_name()))?;
        }
    }
    Ok(())
}

/// Replaces the values at `pointers` by `null` (keeping their JSON type check to the caller).
pub fn masked(body: &str, pointers: &[String]) -> Result<Value, String> {
    let mut v: Value =
        serde_json::from_str(body).map_err(|e| format!("body is not JSON: {e}: {body}"))?;
    for p in pointers {
        match v.pointer_mut(p) {
            Some(slot) => {
                let kind = match slot {
                    Value::Number(_) => "number",
                    Value::String(_) => "string",
                    Value::Bool(_) => "boolean",
                    Value::Null => "null",
                    Value::Array(_) => "array",
                    Value::Object(_) => "object",
                };
                *slot = Value::from(format!("<{kind}>"));
            }
            None => return Err(format!("masked pointer {p} missing in {body}")),
        }
    }
    Ok(v)
}

/// Values captured from earlier answers (`capture`): name → the value as text (a number as its
/// JSON text).
pub type Captured = BTreeMap<String, String>;

/// `text` with every `{{name}}` replaced by the captured value and every `{{base64:name}}` by
/// the base64 of its UTF-8 text. Names not captured (yet, or because the capture failed) stay
/// as the literal placeholder.
pub fn substitute(text: &str, vars: &Captured) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let replaced = after.find("}}").and_then(|end| {
            let inner = &after[..end];
            let (b64, name) = match inner.strip_prefix("base64:") {
                Some(n) => (true, n),
                None => (false, inner),
            };
            if !is_capture_name(name) {
                return None;
            }
            let value = vars.get(name)?;
            let text = if b64 {
                base64(value.as_bytes())
            } else {
                value.clone()
            };
            Some((text, end))
        });
        match replaced {
            Some((text, end)) => {
                out.push_str(&text);
                rest = &after[end + 2..];
            }
            None => {
                out.push_str("{{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Whether `text` holds a placeholder (`{{name}}` or `{{base64:name}}`) of any name.
pub fn has_placeholder(text: &str) -> bool {
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        if let Some(end) = after.find("}}") {
            let inner = &after[..end];
            if is_capture_name(inner.strip_prefix("base64:").unwrap_or(inner)) {
                return true;
            }
        }
        rest = after;
    }
    false
}

/// A capture name: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_capture_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The values a step captures from an answer body: `(name, value as text)` for each pointer
/// that names a string or a number, and a message for each that does not.
pub fn capture_values(
    body: &str,
    capture: &BTreeMap<String, String>,
) -> (Vec<(String, String)>, Vec<String>) {
    let mut found = Vec::new();
    let mut problems = Vec::new();
    if capture.is_empty() {
        return (found, problems);
    }
    let doc: Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(_) => {
            for (name, pointer) in capture {
                problems.push(format!(
                    "capture `{name}` ({pointer}): the answer is not JSON: {body}"
                ));
            }
            return (found, problems);
        }
    };
    for (name, pointer) in capture {
        match doc.pointer(pointer) {
            Some(Value::String(s)) => found.push((name.clone(), s.clone())),
            Some(Value::Number(n)) => found.push((name.clone(), n.to_string())),
            Some(other) => problems.push(format!(
                "capture `{name}`: {pointer} is {other}, not a string or a number, in {body}"
            )),
            None => problems.push(format!(
                "capture `{name}`: {pointer} is missing in {body}; later steps keep `{{{{{name}}}}}` as written"
            )),
        }
    }
    (found, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Captured {
        [("tok", "abc"), ("n", "7")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn substitutes_known_names_only() {
        assert_eq!(
            substitute("/a/{{tok}}?n={{n}}&x={{nope}}&b={{base64:tok}}", &vars()),
            "/a/abc?n=7&x={{nope}}&b=YWJj"
        );
        assert_eq!(substitute("{{\"a\":{{tok}}}}", &vars()), "{{\"a\":abc}}");
        assert_eq!(substitute("{{ tok }} {{", &vars()), "{{ tok }} {{");
    }

    #[test]
    fn finds_placeholders() {
        assert!(has_placeholder("{\"id\":\"{{tok}}\"}"));
        assert!(has_placeholder("Bearer {{base64:tok}}"));
        assert!(!has_placeholder("{\"where\":{\"a\":{}}}"));
    }

    #[test]
    fn captures_strings_and_numbers() {
        let capture: BTreeMap<String, String> =
            [("tok", "/id"), ("uid", "/userId"), ("u", "/user")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
        let (found, problems) = capture_values(r#"{"id":"xyz","userId":3,"user":{}}"#, &capture);
        assert_eq!(
            found,
            vec![
                ("tok".to_owned(), "xyz".to_owned()),
                ("uid".to_owned(), "3".to_owned())
            ]
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        let (found, problems) = capture_values("[]", &capture);
        assert!(found.is_empty());
        assert!(
            problems.iter().all(|p| p.contains("missing")),
            "{problems:?}"
        );
    }
}
