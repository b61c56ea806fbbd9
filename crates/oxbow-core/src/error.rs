//! The errors a model operation can end with, each carrying what LoopBack's error body shows.
//!
//! The REST layer turns an [`Error`] into the strong-error-handler body through one table
//! (`oxbow-rest`'s `error` module); nothing here knows about HTTP beyond the status number.

use serde_json::{Map, Value};

/// A failed model operation.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// 404 (`MODEL_NOT_FOUND` when `code` is set).
    #[error("{message}")]
    NotFound {
        message: String,
        code: Option<&'static str>,
    },
    /// 400 with LoopBack's wording.
    #[error("{message}")]
    BadRequest {
        message: String,
        code: Option<&'static str>,
        details: Option<Value>,
    },
    /// 409, e.g. `Duplicate entry for Car.id`.
    #[error("{message}")]
    Conflict { message: String },
    /// 422 `ValidationError`.
    #[error("{}", .0.message())]
    Validation(ValidationError),
    /// 500: the message is logged, never sent.
    #[error("{0}")]
    Internal(String),
    /// Any other status, e.g. an operation hook rejecting a write with 403.
    #[error("{message}")]
    Status {
        status: u16,
        message: String,
        code: Option<String>,
    },
}

impl Error {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest {
            message: message.into(),
            code: None,
            details: None,
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound {
            message: message.into(),
            code: None,
        }
    }

    pub fn model_not_found(message: impl Into<String>) -> Self {
        Self::NotFound {
            message: message.into(),
            code: Some("MODEL_NOT_FOUND"),
        }
    }

    /// LoopBack's 404 for an instance a method needs (`could not find a model with id 9`).
    pub fn no_instance(id: &Value) -> Self {
        Self::model_not_found(format!(
            "could not find a model with id {}",
            crate::js::to_js_string(id)
        ))
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::Internal(message.into())
    }

    /// An error with any HTTP status (4xx are shown with their message, 5xx masked).
    pub fn status_error(status: u16, message: impl Into<String>) -> Self {
        Self::Status {
            status,
            message: message.into(),
            code: None,
        }
    }

    /// The HTTP status LoopBack answers with.
    pub fn status(&self) -> u16 {
        match self {
            Self::NotFound { .. } => 404,
            Self::BadRequest { .. } => 400,
            Self::Conflict { .. } => 409,
            Self::Validation(_) => 422,
            Self::Internal(_) => 500,
            Self::Status { status, .. } => *status,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One failed rule on one property.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    pub property: String,
    /// `presence`, `absence`, `date`, `unknown-property`, …
    pub code: &'static str,
    /// `can't be blank`, …
    pub message: &'static str,
    /// The value as LoopBack prints it in the message (`undefined`, `NaN`, `"abc"`, `50`).
    pub shown_value: String,
}

/// A 422 body: `The \`Customer\` instance is not valid. Details: …`.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationError {
    pub model: String,
    /// In the order LoopBack reports them (grouped by property, first failure first).
    pub violations: Vec<Violation>,
}

impl ValidationError {
    pub fn message(&self) -> String {
        let details: Vec<String> = self
            .grouped()
            .into_iter()
            .flat_map(|(prop, list)| {
                list.into_iter()
                    .map(move |v| format!("`{prop}` {} (value: {})", v.message, v.shown_value))
            })
            .collect();
        format!(
            "The `{}` instance is not valid. Details: {}.",
            self.model,
            details.join("; ")
        )
    }

    /// `details` of the error body: `{context, codes, messages}`.
    pub fn details(&self) -> Value {
        let mut codes = Map::new();
        let mut messages = Map::new();
        for (prop, list) in self.grouped() {
            codes.insert(
                prop.to_owned(),
                list.iter().map(|v| Value::from(v.code)).collect(),
            );
            messages.insert(
                prop.to_owned(),
                list.iter().map(|v| Value::from(v.message)).collect(),
            );
        }
        let mut details = Map::new();
        details.insert("context".into(), Value::from(self.model.clone()));
        details.insert("codes".into(), Value::Object(codes));
        details.insert("messages".into(), Value::Object(messages));
        Value::Object(details)
    }

    fn grouped(&self) -> Vec<(&str, Vec<&Violation>)> {
        let mut groups: Vec<(&str, Vec<&Violation>)> = Vec::new();
        for v in &self.violations {
            match groups.iter_mut().find(|(p, _)| *p == v.property) {
                Some((_, list)) => list.push(v),
                None => groups.push((&v.property, vec![v])),
            }
        }
        groups
    }
}
