//! The one error table: every failure becomes strong-error-handler's body
//! `{"error":{"statusCode","name","message","code","details"}}`, 5xx messages masked.

use actix_web::http::StatusCode;
use std::borrow::Cow;

use serde_json::{Map, Value};

use oxbow_core::Error;

/// An HTTP error as LoopBack shows it.
#[derive(Debug, Clone)]
pub struct RestError {
    pub status: u16,
    pub name: &'static str,
    pub message: String,
    pub code: Option<Cow<'static, str>>,
    pub details: Option<Value>,
}

impl RestError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            name: "Error",
            message: message.into(),
            code: None,
            details: None,
        }
    }

    pub fn named(status: u16, name: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            name,
            message: message.into(),
            code: None,
            details: None,
        }
    }

    /// The JSON body in production mode: `{"error": {...}}`.
    pub fn body(&self) -> Value {
        let mut root = Map::new();
        root.insert("error".into(), Value::Object(self.fields(false)));
        Value::Object(root)
    }

    /// The error object strong-error-handler writes. Production mode: 5xx keep only
    /// statusCode and the reason phrase. Debug mode: every field, the real message, and a
    /// `stack` (oxbow has no JavaScript stack; it is `name: message`).
    pub fn fields(&self, debug: bool) -> Map<String, Value> {
        let mut e = Map::new();
        e.insert("statusCode".into(), Value::from(self.status));
        if self.status >= 500 && !debug {
            let reason = StatusCode::from_u16(self.status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("Internal Server Error");
            e.insert("message".into(), Value::from(reason));
            return e;
        }
        e.insert("name".into(), Value::from(self.name));
        e.insert("message".into(), Value::from(self.message.clone()));
        if let Some(code) = &self.code {
            e.insert("code".into(), Value::from(code.as_ref()));
        }
        if let Some(d) = &self.details {
            e.insert("details".into(), d.clone());
        }
        if debug {
            e.insert(
                "stack".into(),
                Value::from(format!("{}: {}", self.name, self.message)),
            );
        }
        e
    }
}

impl From<Error> for RestError {
    fn from(e: Error) -> Self {
        match e {
            Error::NotFound { message, code } => Self {
                status: 404,
                name: "Error",
                message,
                code: code.map(Cow::Borrowed),
                details: None,
            },
            Error::BadRequest {
                message,
                code,
                details,
            } => Self {
                status: 400,
                name: "Error",
                message,
                code: code.map(Cow::Borrowed),
                details,
            },
            Error::Conflict { message } => Self::new(409, message),
            Error::Validation(v) => Self {
                status: 422,
                name: "ValidationError",
                message: v.message(),
                code: None,
                details: Some(v.details()),
            },
            Error::Internal(message) => Self::new(500, message),
            Error::Status {
                status,
                message,
                code,
            } => Self {
                status,
                name: "Error",
                message,
                code: code.map(Cow::Owned),
                details: None,
            },
        }
    }
}

/// A response to a request whose body was left unread (413), on a connection that closes once
/// it is sent. actix-web drains an unread chunked body before it reuses or closes the
/// connection, so a client that never ends its body would hold the socket forever; keeping
/// the payload alive until the response body is sent makes actix close instead.
pub fn closing_unread(
    resp: actix_web::HttpResponse,
    payload: actix_web::web::Payload,
) -> actix_web::HttpResponse {
    let mut resp = resp.map_body(|head, body| {
        head.set_connection_type(actix_web::http::ConnectionType::Close);
        HoldPayload {
            body,
            _payload: payload,
        }
    });
    resp.head_mut()
        .set_connection_type(actix_web::http::ConnectionType::Close);
    resp.map_into_boxed_body()
}

pin_project_lite::pin_project! {
    /// A body that keeps the request's unread payload until it is dropped.
    struct HoldPayload<B> {
        #[pin]
        body: B,
        _payload: actix_web::web::Payload,
    }
}

impl<B: actix_web::body::MessageBody> actix_web::body::MessageBody for HoldPayload<B> {
    type Error = B::Error;

    fn size(&self) -> actix_web::body::BodySize {
        self.body.size()
    }

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<bytes::Bytes, Self::Error>>> {
        self.project().body.poll_next(cx)
    }
}
