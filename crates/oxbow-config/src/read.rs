//! Reading one config artifact (`config`, `datasources`, …) as JSON or YAML, with its schema check.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::problem::{Problem, Problems};
use crate::schema::check;

/// One file as read: its path and its JSON value (an empty object when the file is absent).
#[derive(Debug, Clone)]
pub struct Artifact {
    pub path: PathBuf,
    pub value: Value,
}

/// `dir/name.json`, `.yaml` or `.yml`, whichever exists first.
pub fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    ["json", "yaml", "yml"]
        .iter()
        .map(|ext| dir.join(format!("{name}.{ext}")))
        .find(|p| p.is_file())
}

/// Parses a JSON or YAML file into JSON; a parse failure is one problem.
pub fn parse_file(path: &Path, problems: &mut Problems) -> Option<Value> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            problems.push(Problem::new(path, "", &format!("a readable file ({e})")));
            return None;
        }
    };
    let yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
    if yaml {
        match serde_yaml::from_str::<Value>(&text) {
            Ok(v) => Some(v),
            Err(e) => {
                problems.push(Problem::new(path, "", &format!("expected valid YAML: {e}")));
                None
            }
        }
    } else {
        match serde_json::from_str::<Value>(&text) {
            Ok(v) => Some(v),
            Err(e) => {
                problems.push(Problem::new(path, "", &format!("expected valid JSON: {e}")));
                None
            }
        }
    }
}

/// Reads `server/<name>.{json,yaml,yml}` and checks it against `schema`.
pub fn read_artifact(
    server: &Path,
    name: &str,
    schema: &crate::schema::Schema,
    problems: &mut Problems,
) -> Artifact {
    let Some(path) = find_file(server, name) else {
        return Artifact {
            path: server.join(format!("{name}.json")),
            value: Value::Object(Map::new()),
        };
    };
    let value = parse_file(&path, problems).unwrap_or(Value::Object(Map::new()));
    check(schema, &path, &value, problems);
    // Compilation goes on with a file that failed its schema (it reads defensively), so the
    // other files are still checked and every problem is reported at once.
    Artifact { path, value }
}
