//! Configuration problems: one per mistake, each with file, JSON pointer and what was expected.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    /// JSON pointer into the file (`/properties/name/type`), empty for the whole file.
    pub pointer: String,
    /// What was expected, or what is wrong.
    pub message: String,
}

impl Problem {
    pub fn new(file: &Path, pointer: &str, message: &str) -> Self {
        Self {
            file: file.to_owned(),
            pointer: pointer.to_owned(),
            message: message.to_owned(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pointer = if self.pointer.is_empty() {
            "(root)"
        } else {
            &self.pointer
        };
        write!(f, "{}: {}: {}", self.file.display(), pointer, self.message)
    }
}

/// Every problem found while loading an app.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    pub fn push(&mut self, p: Problem) {
        self.0.push(p);
    }
    /// Whether a problem is already recorded at this place (to avoid reporting it twice).
    pub fn has(&self, file: &Path, pointer: &str) -> bool {
        self.0
            .iter()
            .any(|p| p.file == file && p.pointer == pointer)
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = &Problem> {
        self.0.iter()
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.0 {
            writeln!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

/// Escapes a key for a JSON pointer (`~` → `~0`, `/` → `~1`).
pub fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}
