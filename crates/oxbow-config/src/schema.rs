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

/// Compiled validators for every file kind.
pub struct Schemas {
    pub model: Validator,
    pub config: Validator,
    pub datasources: Validator,
    pub model_config: Validator,
    pub middleware: Validator,
}

impl Schemas {
    /// Compiles the embedded schemas. They are part of the build, so a failure is a bug.
    pub fn compile() -> Self {
        let one = |src: &str| {
            let schema: Value = serde_json::from_str(src).expect("embedded schema is valid JSON");
            jsonschema::validator_for(&schema).expect("embedded schema compiles")
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
pub fn check(schema: &Validator, file: &Path, value: &Value, problems: &mut Problems) {
    for err in schema.iter_errors(value) {
        problems.push(Problem::new(
            file,
            err.instance_path().as_str(),
            &err.to_string(),
        ));
    }
}
