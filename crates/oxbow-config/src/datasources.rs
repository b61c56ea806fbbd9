//! datasources.json compiled per connector kind: every setting the connector reads is typed
//! and checked here, so `oxbow check` reports a bad port or pool size without connecting; a
//! setting no oxbow connector reads is named in a warning (and `ssl`, which oxbow cannot honour,
//! is a problem: connecting without TLS where the app asked for it would be a silent
//! downgrade).

use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::problem::{self, Problem, Problems};
use crate::read;

/// A datasource from datasources.json.
#[derive(Debug, Clone)]
pub struct DataSourcePlan {
    pub name: String,
    /// `memory`, `transient`, `sqlite`, `postgresql`, or an unknown name (already a problem).
    pub connector: String,
    /// The connector's settings, checked.
    pub kind: ConnectorPlan,
    /// The file the entry came from, for messages.
    pub file: PathBuf,
}

/// What each connector oxbow provides is configured with.
#[derive(Debug, Clone, PartialEq)]
pub enum ConnectorPlan {
    /// `file`: LoopBack's JSON file, relative to the app root.
    Memory {
        file: Option<String>,
    },
    Transient,
    Sqlite(SqlitePlan),
    Postgres(PostgresPlan),
    /// A connector oxbow does not provide (reported as a problem).
    Unknown,
}

/// `synchronous` of a SQLite datasource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SqliteSync {
    /// fsync on every commit (the default).
    #[default]
    Full,
    /// No fsync on commit (WAL): a process crash loses nothing, a power loss the last commits.
    Normal,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SqlitePlan {
    /// The database file, relative to the app root.
    pub file: String,
    pub synchronous: SqliteSync,
    /// `cacheRows`: rows kept per table for point reads (`None`: the connector's default).
    pub cache_rows: Option<usize>,
}

/// A PostgreSQL datasource as loopback-connector-postgresql reads it, plus oxbow's `schema`
/// and `cacheRows`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PostgresPlan {
    /// `url` (or `connectionString`): wins over the separate settings.
    pub url: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub database: Option<String>,
    /// `user` (or `username`).
    pub user: Option<String>,
    pub password: Option<String>,
    /// The schema the tables live in (created when missing).
    pub schema: Option<String>,
    /// `max`: the pool size.
    pub max: Option<usize>,
    /// `cacheRows`: rows kept per table for point reads (off when absent).
    pub cache_rows: Option<usize>,
}

/// Keys any datasource may carry that no connector needs.
const COMMON: &[&str] = &["name", "connector", "adapter", "debug", "$schema"];
/// Keys LoopBack connectors take that change nothing in oxbow (pool tuning oxbow does its own
/// way, lazy connection).
const HARMLESS: &[&str] = &[
    "lazyConnect",
    "min",
    "idleTimeoutMillis",
    "connectionTimeout",
];

/// Compiles every entry of datasources.json.
pub(crate) fn compile(
    file: &read::Artifact,
    problems: &mut Problems,
    warnings: &mut Vec<String>,
) -> Vec<DataSourcePlan> {
    const KNOWN: &[&str] = &["memory", "transient", "sqlite", "postgresql"];
    let mut out = Vec::new();
    let Some(map) = file.value.as_object() else {
        return out;
    };
    for (name, entry) in map {
        if name == "$schema" {
            continue;
        }
        let Some(settings) = entry.as_object() else {
            continue;
        };
        let connector = settings
            .get("connector")
            .or_else(|| settings.get("adapter"))
            .and_then(Value::as_str)
            .unwrap_or("memory");
        let mut connector = connector
            .strip_prefix("loopback-connector-")
            .unwrap_or(connector)
            .to_owned();
        // LoopBack's package is loopback-connector-sqlite3.
        if connector == "sqlite3" {
            connector = "sqlite".to_owned();
        }
        if connector == "postgres" {
            connector = "postgresql".to_owned();
        }
        let mut cx = Entry {
            file,
            name,
            settings,
            problems,
        };
        let (kind, reads): (ConnectorPlan, &[&str]) = match connector.as_str() {
            "memory" => (
                ConnectorPlan::Memory {
                    file: cx.string("file"),
                },
                &["file"],
            ),
            "transient" => (ConnectorPlan::Transient, &[]),
            "sqlite" => (ConnectorPlan::Sqlite(cx.sqlite()), SQLITE_KEYS),
            "postgresql" => (ConnectorPlan::Postgres(cx.postgres()), POSTGRES_KEYS),
            _ => {
                cx.problem(
                    "connector",
                    &format!(
                        "expected a connector oxbow provides (one of: {}), found `{connector}`",
                        KNOWN.join(", ")
                    ),
                );
                // Kept, so models that name it are not reported a second time.
                (ConnectorPlan::Unknown, &[])
            }
        };
        if kind != ConnectorPlan::Unknown {
            for key in settings.keys() {
                if COMMON.contains(&key.as_str())
                    || HARMLESS.contains(&key.as_str())
                    || reads.contains(&key.as_str())
                {
                    continue;
                }
                warnings.push(format!(
                    "{}: /{}/{}: the {connector} connector of oxbow does not read `{key}`; it is ignored",
                    file.path.display(),
                    problem::escape(name),
                    problem::escape(key)
                ));
            }
        }
        out.push(DataSourcePlan {
            name: name.clone(),
            connector,
            kind,
            file: file.path.clone(),
        });
    }
    out
}

const SQLITE_KEYS: &[&str] = &["file", "synchronous", "cacheRows"];
const POSTGRES_KEYS: &[&str] = &[
    "url",
    "connectionString",
    "host",
    "hostname",
    "port",
    "database",
    "user",
    "username",
    "password",
    "schema",
    "max",
    "cacheRows",
    "ssl",
];

/// One datasource entry being compiled.
struct Entry<'a> {
    file: &'a read::Artifact,
    name: &'a str,
    settings: &'a Map<String, Value>,
    problems: &'a mut Problems,
}

impl Entry<'_> {
    fn pointer(&self, key: &str) -> String {
        format!("/{}/{}", problem::escape(self.name), problem::escape(key))
    }

    fn problem(&mut self, key: &str, expected: &str) {
        // The schema may have said the same already.
        if !self.problems.has(&self.file.path, &self.pointer(key)) {
            let p = Problem::new(&self.file.path, &self.pointer(key), expected);
            self.problems.push(p);
        }
    }

    /// A string setting; another JSON type is a problem (`null` is absent).
    fn string(&mut self, key: &str) -> Option<String> {
        match self.settings.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                self.problem(key, &format!("expected a string, found {other}"));
                None
            }
        }
    }

    /// A whole number in `min..=max`, as a number or a string of digits.
    fn number(&mut self, key: &str, min: u64, max: u64) -> Option<u64> {
        let v = self.settings.get(key)?;
        let n = match v {
            Value::Null => return None,
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        };
        match n {
            Some(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.problem(
                    key,
                    &format!("expected a whole number from {min} to {max}, found {v}"),
                );
                None
            }
        }
    }

    fn sqlite(&mut self) -> SqlitePlan {
        let given = !matches!(self.settings.get("file"), None | Some(Value::Null));
        let file = match self.string("file") {
            Some(f) if !f.is_empty() => f,
            // A `file` of another type is reported as such.
            None if given => String::new(),
            _ => {
                let p = Problem::new(
                    &self.file.path,
                    &format!("/{}", problem::escape(self.name)),
                    "expected a `file` setting: the path of the SQLite database, relative to the app root",
                );
                self.problems.push(p);
                String::new()
            }
        };
        let synchronous = match self.settings.get("synchronous") {
            None | Some(Value::Null) => SqliteSync::Full,
            Some(Value::String(s)) if s.eq_ignore_ascii_case("full") => SqliteSync::Full,
            Some(Value::String(s)) if s.eq_ignore_ascii_case("normal") => SqliteSync::Normal,
            Some(other) => {
                let expected = format!("expected \"full\" or \"normal\", found {other}");
                self.problem("synchronous", &expected);
                SqliteSync::Full
            }
        };
        let cache_rows = self.number("cacheRows", 0, 1 << 32).map(|n| n as usize);
        SqlitePlan {
            file,
            synchronous,
            cache_rows,
        }
    }

    fn postgres(&mut self) -> PostgresPlan {
        let url = self
            .string("url")
            .or_else(|| self.string("connectionString"));
        if let Some(u) = &url {
            let key = if self.settings.contains_key("url") {
                "url"
            } else {
                "connectionString"
            };
            if !(u.starts_with("postgres://") || u.starts_with("postgresql://") || u.contains('='))
            {
                self.problem(
                    key,
                    &format!(
                        "expected a PostgreSQL URL (postgres://user:password@host:port/database) or `key=value` connection string, found `{u}`"
                    ),
                );
            }
        }
        if self
            .settings
            .get("ssl")
            .is_some_and(|v| !matches!(v, Value::Null | Value::Bool(false)))
        {
            self.problem(
                "ssl",
                "expected no `ssl` (or false): oxbow's PostgreSQL connector has no TLS; terminate TLS at a proxy or connect over a local socket",
            );
        }
        let schema = self.string("schema");
        if schema.as_deref() == Some("") {
            self.problem(
                "schema",
                "expected the name of a schema, found an empty string",
            );
        }
        PostgresPlan {
            host: self.string("host").or_else(|| self.string("hostname")),
            port: self.number("port", 1, 65535).map(|p| p as u16),
            database: self.string("database"),
            user: self.string("user").or_else(|| self.string("username")),
            password: self.string("password"),
            max: self.number("max", 1, 10_000).map(|n| n as usize),
            cache_rows: self.number("cacheRows", 0, 1 << 32).map(|n| n as usize),
            schema: schema.filter(|s| !s.is_empty()),
            url,
        }
    }
}
