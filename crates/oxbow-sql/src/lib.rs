//! oxbow-sql: what the SQL connectors (SQLite, PostgreSQL) share, free of any database driver.
//!
//! [`mapping`]: how a model's records map onto a table (a column per declared property, a
//! presence mask, unknown properties as JSON) and back. [`compile`]: the filter language
//! compiled to SQL with bound parameters, exactly where SQL can say it, for a [`Dialect`].

pub mod cache;
pub mod compile;
pub mod mapping;

pub use compile::{Compiled, Dialect};
pub use mapping::{Column, Kind, Mapping, Param};

/// Quotes an SQL identifier (the same rule in SQLite and PostgreSQL).
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
