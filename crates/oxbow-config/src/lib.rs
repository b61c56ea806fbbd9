//! oxbow-config: reads a LoopBack 3 app directory (JSON or YAML files), checks every file
//! against the JSON Schemas in `schemas/`, and compiles the result into a typed [`AppPlan`].
//!
//! **Architecture invariant:** loading collects *every* problem before it fails; each problem
//! names the file, the JSON pointer inside it, and what was expected. Nothing here serves
//! requests or touches the network.

mod datasources;
pub mod middleware;
mod models;
pub mod overlay;
mod problem;
mod read;
mod rules;
mod schema;

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

pub use datasources::{ConnectorPlan, DataSourcePlan, PostgresPlan, SqlitePlan, SqliteSync};
pub use problem::{Problem, Problems};

use oxbow_core::ModelDefinition;

/// Settings from config.json that oxbow uses.
#[derive(Debug, Clone)]
pub struct AppConfig {
    pub rest_api_root: String,
    pub host: String,
    pub port: u16,
    /// `remoting.json.limit` in bytes.
    pub json_limit: usize,
    /// `remoting.urlencoded.limit` in bytes.
    pub urlencoded_limit: usize,
    /// `changeStreams`: how change streams behave (oxbow's own key).
    pub change_streams: ChangeStreamConfig,
    /// `remoting.sharedMethods`: methods enabled or disabled on every model, in key order.
    pub shared_methods: Vec<(String, bool)>,
    /// Access tokens and ACLs are enforced: the scaffold's `server/boot/authentication.js`
    /// (`server.enableAuth()`) or oxbow's `"enableAuth": true`.
    pub enable_auth: bool,
    /// `aclErrorStatus`: the status of a denial to a caller with a token (401 default).
    pub acl_error_status: Option<u16>,
    /// The whole merged config.json (apps keep their own settings there).
    pub raw: Map<String, Value>,
}

/// config.json `changeStreams` (oxbow's own key, all optional):
/// `{"ids": true, "retryMs": 2000, "heartbeatSeconds": 15, "queueSize": 1024,
///   "retention": {"count": 1000, "seconds": 3600}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeStreamConfig {
    /// Send `id:` lines (needed for `Last-Event-ID` resume). `false` gives LoopBack's exact bytes.
    pub ids: bool,
    /// The `retry:` hint in milliseconds (0: none).
    pub retry_ms: u64,
    /// Seconds between heartbeat comments on an idle stream (0: none).
    pub heartbeat_seconds: f64,
    /// Events a subscriber may have queued before it is cut off (it can resume).
    pub queue_size: usize,
    /// Events retained for resume: at most this many…
    pub retain_count: usize,
    /// …and none older than this many seconds.
    pub retain_seconds: f64,
}

impl Default for ChangeStreamConfig {
    fn default() -> Self {
        Self {
            ids: true,
            retry_ms: 2000,
            heartbeat_seconds: 15.0,
            queue_size: 1024,
            retain_count: 1000,
            retain_seconds: 3600.0,
        }
    }
}

fn compile_change_streams(file: &read::Artifact, problems: &mut Problems) -> ChangeStreamConfig {
    let mut c = ChangeStreamConfig::default();
    let Some(v) = file.value.get("changeStreams") else {
        return c;
    };
    let Some(o) = v.as_object() else {
        push_once(
            problems,
            Problem::new(&file.path, "/changeStreams", "expected an object"),
        );
        return c;
    };
    let number = |key: &str, pointer: &str, problems: &mut Problems| -> Option<f64> {
        let v = o.get(key)?;
        match v.as_f64().filter(|n| *n >= 0.0) {
            Some(n) => Some(n),
            None => {
                push_once(
                    problems,
                    Problem::new(
                        &file.path,
                        pointer,
                        &format!("expected a non-negative number, found {v}"),
                    ),
                );
                None
            }
        }
    };
    if let Some(ids) = o.get("ids") {
        match ids.as_bool() {
            Some(b) => c.ids = b,
            None => push_once(
                problems,
                Problem::new(
                    &file.path,
                    "/changeStreams/ids",
                    &format!("expected a boolean, found {ids}"),
                ),
            ),
        }
    }
    if let Some(n) = number("retryMs", "/changeStreams/retryMs", problems) {
        c.retry_ms = n as u64;
    }
    if let Some(n) = number(
        "heartbeatSeconds",
        "/changeStreams/heartbeatSeconds",
        problems,
    ) {
        c.heartbeat_seconds = n;
    }
    if let Some(n) = number("queueSize", "/changeStreams/queueSize", problems) {
        c.queue_size = (n as usize).max(1);
    }
    if let Some(r) = o.get("retention").and_then(Value::as_object) {
        if let Some(n) = r.get("count").and_then(Value::as_f64).filter(|n| *n >= 0.0) {
            c.retain_count = n as usize;
        }
        if let Some(n) = r
            .get("seconds")
            .and_then(Value::as_f64)
            .filter(|n| *n >= 0.0)
        {
            c.retain_seconds = n;
        }
    }
    c
}

/// A checked app directory, ready to boot.
#[derive(Debug, Clone)]
pub struct AppPlan {
    /// The app root (the folder holding `server/`).
    pub root: PathBuf,
    /// The `server/` folder.
    pub server_dir: PathBuf,
    pub config: AppConfig,
    pub datasources: Vec<DataSourcePlan>,
    /// Models listed in model-config.json and attached to a datasource, in that file's order.
    pub models: Vec<ModelDefinition>,
    /// middleware.json compiled: what runs, in which order, with which checked options.
    pub pipeline: middleware::MiddlewarePlan,
    /// The environment the overlays were chosen for (`NODE_ENV`, default `development`).
    pub env: String,
    /// Non-fatal findings (e.g. JavaScript boot scripts oxbow cannot run).
    pub warnings: Vec<String>,
}

/// Finds the server folder: `DIR/server`, or `DIR` itself when it holds the config files.
pub fn server_dir(dir: &Path) -> Option<PathBuf> {
    let nested = dir.join("server");
    if nested.is_dir() {
        return Some(nested);
    }
    let looks_like_server = ["config", "model-config", "datasources"]
        .iter()
        .any(|n| read::find_file(dir, n).is_some());
    looks_like_server.then(|| dir.to_path_buf())
}

/// Loads and checks an app directory.
pub fn load(dir: &Path) -> Result<AppPlan, Problems> {
    let mut problems = Problems::default();
    let Some(server) = server_dir(dir) else {
        problems.push(Problem::new(dir, "", "expected an app directory holding `server/` (or a server folder with config.json, model-config.json, datasources.json)"));
        return Err(problems);
    };
    let root = if server.file_name().is_some_and(|n| n == "server") {
        server
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| server.clone())
    } else {
        server.clone()
    };
    let schemas = schema::Schemas::compile();
    let env = overlay::env_name();
    let mut warnings = Vec::new();
    let mut read = |name: &str, schema: &schema::Schema, rule: overlay::MergeRule| {
        overlay::read_merged(
            &server,
            name,
            &env,
            schema,
            rule,
            &mut problems,
            &mut warnings,
        )
    };
    use overlay::MergeRule::{Generic, Middleware};
    let (config_file, _) = read("config", &schemas.config, Generic);
    let (mut ds_file, _) = read("datasources", &schemas.datasources, Generic);
    let (mc_file, _) = read("model-config", &schemas.model_config, Generic);
    let (mut mw_file, mw_declared) = read("middleware", &schemas.middleware, Middleware);

    let config = compile_config(&config_file, &mut problems);
    // `${VAR}` applies to datasources and middleware entries only, as in LoopBack.
    overlay::substitute(
        &mut ds_file.value,
        &config.raw,
        &ds_file.path,
        "",
        &mut warnings,
    );
    overlay::substitute(
        &mut mw_file.value,
        &config.raw,
        &mw_file.path,
        "",
        &mut warnings,
    );
    let datasources = datasources::compile(&ds_file, &mut problems, &mut warnings);
    let middleware_plan = middleware::compile(
        &mw_file.path,
        &mw_file.value,
        mw_declared,
        &server,
        &mut problems,
        &mut warnings,
    );
    let mut models = models::compile_models(
        &server,
        &mc_file,
        &datasources,
        &schemas.model,
        &mut problems,
        &mut warnings,
    );

    let mut enable_auth = false;
    for dir in [server.join("boot")] {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            let mut scripts: Vec<String> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".js"))
                .collect();
            scripts.sort();
            for s in scripts {
                let path = dir.join(&s);
                // The scaffold's authentication.js (`server.enableAuth()`) turns on access
                // tokens and ACLs, which oxbow enforces; anything else such a script does is
                // not run, and is named.
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                if text.contains("enableAuth(") {
                    enable_auth = true;
                    if !is_scaffold_auth_script(&text) {
                        warnings.push(format!(
                            "{}: oxbow honours this boot script's enableAuth() but does not run the rest of it; port it to a Rust boot plugin",
                            path.display()
                        ));
                    }
                    continue;
                }
                warnings.push(format!(
                    "{}: JavaScript boot scripts are not run by oxbow; port it to a Rust boot plugin",
                    path.display()
                ));
            }
        }
    }
    let mut config = config;
    config.enable_auth |= enable_auth;
    for m in models.iter_mut().filter(|_| config.enable_auth) {
        m.auth.enforced = true;
    }
    for m in models.iter().filter(|_| !config.enable_auth) {
        if m.settings
            .get("acls")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
            && m.auth.user.is_none()
            && !matches!(m.name.as_str(), "AccessToken")
        {
            warnings.push(format!(
                "model `{}`: its acls are not enforced, as LoopBack 3 does not enforce them in an app that does not enable auth",
                m.name
            ));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(AppPlan {
        root,
        server_dir: server,
        config,
        datasources,
        models,
        pipeline: middleware_plan,
        env,
        warnings,
    })
}

fn compile_config(file: &read::Artifact, problems: &mut Problems) -> AppConfig {
    let raw = file.value.as_object().cloned().unwrap_or_default();
    let rest_api_root = raw
        .get("restApiRoot")
        .and_then(Value::as_str)
        .unwrap_or("/api")
        .to_owned();
    let host = raw
        .get("host")
        .and_then(Value::as_str)
        .unwrap_or("0.0.0.0")
        .to_owned();
    let port = match raw.get("port") {
        None => 3000,
        Some(v) => {
            let parsed = match v {
                Value::Number(n) => n.as_u64().and_then(|p| u16::try_from(p).ok()),
                Value::String(s) => s.parse::<u16>().ok(),
                _ => None,
            };
            parsed.unwrap_or_else(|| {
                let expected = "expected a TCP port number from 0 to 65535";
                push_once(problems, Problem::new(&file.path, "/port", expected));
                3000
            })
        }
    };
    let limit = |pointer: &str, problems: &mut Problems| -> usize {
        let v = file.value.pointer(pointer);
        match v {
            None => 100 * 1024,
            Some(v) => match parse_size(v) {
                Some(n) => n,
                None => {
                    push_once(
                        problems,
                        Problem::new(
                            &file.path,
                            pointer,
                            "expected a size such as 100kb, 1mb or a number of bytes",
                        ),
                    );
                    100 * 1024
                }
            },
        }
    };
    let json_limit = limit("/remoting/json/limit", problems);
    let urlencoded_limit = limit("/remoting/urlencoded/limit", problems);
    let change_streams = compile_change_streams(file, problems);
    let shared_methods =
        models::shared_methods(raw.get("remoting").and_then(|r| r.get("sharedMethods")));
    let acl_error_status = match raw.get("aclErrorStatus") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(s @ (401 | 403 | 404)) => Some(s as u16),
            _ => {
                problems.push(Problem::new(
                    &file.path,
                    "/aclErrorStatus",
                    "expected 401, 403 or 404 (LoopBack has a body for no other status)",
                ));
                None
            }
        },
    };
    AppConfig {
        rest_api_root,
        host,
        port,
        json_limit,
        urlencoded_limit,
        change_streams,
        shared_methods,
        enable_auth: raw.get("enableAuth") == Some(&Value::Bool(true)),
        acl_error_status,
        raw,
    }
}

/// Whether a boot script is the one `lb app` writes (`server.enableAuth()` and nothing
/// else), comments, whitespace and `'use strict'` aside.
fn is_scaffold_auth_script(text: &str) -> bool {
    let mut code = String::new();
    for line in text.lines() {
        let line = line.split("//").next().unwrap_or("");
        code.extend(line.chars().filter(|c| !c.is_whitespace()));
    }
    let code = code
        .trim_start_matches("'usestrict';")
        .trim_start_matches("\"usestrict\";");
    code == "module.exports=functionenableAuthentication(server){server.enableAuth();};"
        || code == "module.exports=function(server){server.enableAuth();};"
}

/// Records a problem unless the schema check already reported one at the same place.
fn push_once(problems: &mut Problems, p: Problem) {
    if !problems.has(&p.file, &p.pointer) {
        problems.push(p);
    }
}

/// The `bytes` npm module's sizes: `100kb`, `1.5mb`, `512` (units are powers of 1024).
pub fn parse_size(v: &Value) -> Option<usize> {
    match v {
        Value::Number(n) => n.as_f64().filter(|f| *f >= 0.0).map(|f| f as usize),
        Value::String(s) => {
            let s = s.trim().to_ascii_lowercase();
            let split = s
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(s.len());
            let (num, unit) = s.split_at(split);
            let num: f64 = num.parse().ok()?;
            let mult = match unit.trim() {
                "" | "b" => 1.0,
                "kb" => 1024.0,
                "mb" => 1024.0 * 1024.0,
                "gb" => 1024.0 * 1024.0 * 1024.0,
                "tb" => 1024.0f64.powi(4),
                _ => return None,
            };
            Some((num * mult).floor() as usize)
        }
        _ => None,
    }
}
