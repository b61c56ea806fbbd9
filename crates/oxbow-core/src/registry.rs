//! The model registry: every model of the app, by name and by REST path, immutable after boot.

use std::collections::HashMap;
use std::sync::Arc;

use crate::dao::Model;

/// The models of a booted app. Built once; shared behind an `Arc`.
#[derive(Debug, Default)]
pub struct Registry {
    models: Vec<Arc<Model>>,
    by_name: HashMap<String, usize>,
    by_path: HashMap<String, usize>,
}

impl Registry {
    /// A registry of `models` in model-config.json order.
    pub fn new(models: Vec<Arc<Model>>) -> Self {
        let mut by_name = HashMap::new();
        let mut by_path = HashMap::new();
        for (i, m) in models.iter().enumerate() {
            by_name.insert(m.name().to_owned(), i);
            let def = m.definition();
            if def.public {
                by_path.entry(def.http_path.to_lowercase()).or_insert(i);
            }
        }
        Self {
            models,
            by_name,
            by_path,
        }
    }

    /// A model by its name (`Customer`).
    pub fn model(&self, name: &str) -> Option<&Arc<Model>> {
        self.by_name.get(name).map(|&i| &self.models[i])
    }

    /// A public model by its URL segment under the REST root (`Customers`, `catalog`),
    /// matched case-insensitively as Express matches routes.
    pub fn by_path(&self, segment: &str) -> Option<&Arc<Model>> {
        self.index_by_path(segment).map(|i| &self.models[i])
    }

    /// The position in [`Registry::models`] of the public model at `segment`.
    pub fn index_by_path(&self, segment: &str) -> Option<usize> {
        match self.by_path.get(segment) {
            Some(&i) => Some(i),
            None if segment.bytes().any(|b| b.is_ascii_uppercase()) => {
                self.by_path.get(&segment.to_lowercase()).copied()
            }
            None => None,
        }
    }

    pub fn models(&self) -> &[Arc<Model>] {
        &self.models
    }
}
