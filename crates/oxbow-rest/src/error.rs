//! The one error table: every failure becomes strong-error-handler's body
//! `{"error":{"statusCode","name","message","code","details"}}`, 5xx messages masked.

use actix_web::http::StatusCode;
use std::borrow::Cow;

use serde_json::{Map, Value};

use oxbow_core::Error;

/// Every error the REST layer answers with: its HTTP status, strong-error-handler's `name`,
/// LoopBack's `code` and the message, with `{}` where the request's values go in order.
/// Endpoints list the codes they can answer ([`crate::endpoint::Endpoint::errors`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// body-parser: a body over `remoting.json.limit` / `urlencoded.limit`.
    PayloadTooLarge,
    /// body-parser: a JSON body that does not parse.
    BadJson,
    /// The request body could not be read.
    BodyUnreadable,
    /// strong-remoting: an `object` argument that is not one.
    NotAnObject,
    /// strong-remoting: an `object` argument given as JSON text that does not parse.
    ObjectNotParsable,
    NotANumber,
    NotABoolean,
    /// `create` with an array holding something else than objects.
    ArrayItemNotObject,
    /// A required argument missing, `null` or empty.
    RequiredArgument,
    /// strong-remoting: no model under the REST root has that URL segment.
    NoMethod,
    /// strong-remoting: the model has no route for that verb and path.
    NoSharedMethod,
    /// `loopback#urlNotFound`: nothing answered outside the REST root.
    CannotGet,
    /// `Unknown "Customer" id "9".` (findById, findOne, HEAD exists, relation items).
    UnknownId,
    /// A related item that is not the owner's (`No instance with id 5 found for Order`).
    RelatedNotFound,
    /// A through model's link that does not exist.
    NoLink,
    /// A hasOne / embedsOne with nothing there (`No "Profile" instance(s) found`).
    NoRelatedInstance,
    /// An embedded item or a referencesMany id that is not there.
    UnknownRelatedId,
    /// serve-static: `If-Match` / `If-Unmodified-Since` not met.
    PreconditionFailed,
    /// serve-static: a byte range outside the file.
    RangeNotSatisfiable,
    /// A HEAD exists on a missing row or link.
    NotFound,
    /// hasOne create when one exists.
    HasOneExists,
    /// A relation write that would move the item to another owner.
    ForeignKeyChange,
    /// A referencesMany item that is not in the owner's list.
    RelationKeyMismatch,
    /// `oxbow#rateLimit`.
    TooManyRequests,
    /// A remote method the model declares that no boot plugin implements.
    NotImplemented,
    /// An ACL denied a caller without a token (or `aclErrorStatus` 401).
    AuthorizationRequired,
    /// An ACL denied a caller with a token, `aclErrorStatus` 403.
    AccessDenied,
    /// An ACL denied a caller with a token, `aclErrorStatus` 404.
    AclNotFound,
    /// The request's access token has expired (it is deleted).
    InvalidToken,
    /// Login: no such user, or the wrong password.
    LoginFailed,
    /// Login with `emailVerificationRequired` and an unverified email.
    LoginEmailNotVerified,
    /// Login without `email` or `username`.
    UsernameEmailRequired,
    InvalidUsername,
    InvalidEmail,
    /// Login to a model with `realmRequired` without a realm.
    RealmRequired,
    InvalidRealm,
    /// Logout without a token.
    LogoutNoToken,
    /// Logout with a token that is not there (any more).
    LogoutUnknownToken,
    /// changePassword / setPassword: the token's user is gone.
    UserNotFound,
    /// changePassword with the wrong old password.
    InvalidCurrentPassword,
    /// resetPassword without an email.
    EmailRequired,
    /// resetPassword for an email no user has.
    EmailNotFound,
    /// resetPassword with `emailVerificationRequired` and an unverified email.
    ResetEmailNotVerified,
    /// confirm for a user that does not exist.
    ConfirmUserNotFound,
    /// confirm with the wrong verification token.
    ConfirmInvalidToken,
    /// A model operation's own error ([`oxbow_core::Error`]: 400, 404 `MODEL_NOT_FOUND`,
    /// 409, 422 `ValidationError`, a hook's status).
    Model,
    /// A failure of oxbow or of the database; the message is logged, never sent.
    Internal,
}

/// One row of the error table.
#[derive(Debug, Clone, Copy)]
pub struct ErrorSpec {
    pub status: u16,
    pub name: &'static str,
    pub code: Option<&'static str>,
    /// The message, `{}` standing for the request's values in order (empty for
    /// [`ErrorCode::Model`], whose messages are the model layer's).
    pub message: &'static str,
}

impl ErrorCode {
    /// Every code, in table order.
    pub const ALL: &'static [ErrorCode] = &[
        Self::PayloadTooLarge,
        Self::BadJson,
        Self::BodyUnreadable,
        Self::NotAnObject,
        Self::ObjectNotParsable,
        Self::NotANumber,
        Self::NotABoolean,
        Self::ArrayItemNotObject,
        Self::RequiredArgument,
        Self::NoMethod,
        Self::NoSharedMethod,
        Self::CannotGet,
        Self::UnknownId,
        Self::RelatedNotFound,
        Self::NoLink,
        Self::NoRelatedInstance,
        Self::UnknownRelatedId,
        Self::PreconditionFailed,
        Self::RangeNotSatisfiable,
        Self::NotFound,
        Self::HasOneExists,
        Self::ForeignKeyChange,
        Self::RelationKeyMismatch,
        Self::TooManyRequests,
        Self::NotImplemented,
        Self::Model,
        Self::Internal,
    ];

    pub const fn spec(self) -> ErrorSpec {
        const fn e(status: u16, name: &'static str, message: &'static str) -> ErrorSpec {
            ErrorSpec {
                status,
                name,
                code: None,
                message,
            }
        }
        match self {
            Self::PayloadTooLarge => e(413, "PayloadTooLargeError", "request entity too large"),
            Self::BadJson => e(
                400,
                "SyntaxError",
                "Unexpected token in JSON at line {} column {}: {}",
            ),
            Self::BodyUnreadable => e(400, "Error", "{}"),
            Self::NotAnObject => e(400, "Error", "Value is not an object."),
            Self::ObjectNotParsable => e(400, "Error", "Cannot parse JSON-encoded object value."),
            Self::NotANumber => e(400, "Error", "Value is not a number."),
            Self::NotABoolean => e(400, "Error", "Value is not a boolean."),
            Self::ArrayItemNotObject => e(400, "Error", "Some of array items are not an object."),
            Self::RequiredArgument => e(400, "Error", "{} is a required argument"),
            Self::NoMethod => e(404, "Error", "There is no method to handle {} {}"),
            Self::NoSharedMethod => e(
                404,
                "Error",
                "Shared class \"{}\" has no method handling {} {}",
            ),
            Self::CannotGet => e(404, "Error", "Cannot {} {}"),
            Self::UnknownId => ErrorSpec {
                code: Some("MODEL_NOT_FOUND"),
                ..e(404, "Error", "Unknown \"{}\" id \"{}\".")
            },
            Self::RelatedNotFound => e(404, "Error", "No instance with id {} found for {}"),
            Self::NoLink => e(404, "Error", "No relation found in {} for ({}.{},{}.{})"),
            Self::NoRelatedInstance => ErrorSpec {
                code: Some("MODEL_NOT_FOUND"),
                ..e(404, "Error", "No \"{}\" instance(s) found")
            },
            Self::UnknownRelatedId => ErrorSpec {
                code: Some("MODEL_NOT_FOUND"),
                ..e(404, "Error", "Unknown \"{}\" id \"{}\".")
            },
            Self::PreconditionFailed => e(412, "PreconditionFailedError", "Precondition Failed"),
            Self::RangeNotSatisfiable => {
                e(416, "RangeNotSatisfiableError", "Range Not Satisfiable")
            }
            Self::NotFound => e(404, "Error", "Not Found"),
            Self::HasOneExists => e(
                409,
                "Error",
                "HasOne relation cannot create more than one instance of {}",
            ),
            Self::ForeignKeyChange => {
                e(400, "Error", "{} cannot be changed through the relation {}")
            }
            Self::RelationKeyMismatch => e(400, "Error", "Key mismatch: {}.{}: {}, {}.{}: {}"),
            Self::TooManyRequests => e(429, "Error", "Too many requests, please try again later."),
            Self::NotImplemented => e(
                501,
                "Error",
                "{}.{} is declared in the model's methods but no boot plugin implements it",
            ),
            Self::AuthorizationRequired => ErrorSpec {
                code: Some("AUTHORIZATION_REQUIRED"),
                ..e(401, "Error", "Authorization Required")
            },
            Self::AccessDenied => ErrorSpec {
                code: Some("ACCESS_DENIED"),
                ..e(403, "Error", "Access Denied")
            },
            Self::AclNotFound => ErrorSpec {
                code: Some("MODEL_NOT_FOUND"),
                ..e(404, "Error", "could not find {} with id {}")
            },
            Self::InvalidToken => ErrorSpec {
                code: Some("INVALID_TOKEN"),
                ..e(401, "Error", "Invalid Access Token")
            },
            Self::LoginFailed => ErrorSpec {
                code: Some("LOGIN_FAILED"),
                ..e(401, "Error", "login failed")
            },
            Self::LoginEmailNotVerified => ErrorSpec {
                code: Some("LOGIN_FAILED_EMAIL_NOT_VERIFIED"),
                ..e(
                    401,
                    "Error",
                    "login failed as the email has not been verified",
                )
            },
            Self::UsernameEmailRequired => ErrorSpec {
                code: Some("USERNAME_EMAIL_REQUIRED"),
                ..e(400, "Error", "username or email is required")
            },
            Self::InvalidUsername => ErrorSpec {
                code: Some("INVALID_USERNAME"),
                ..e(400, "Error", "Invalid username")
            },
            Self::InvalidEmail => ErrorSpec {
                code: Some("INVALID_EMAIL"),
                ..e(400, "Error", "Invalid email")
            },
            Self::RealmRequired => ErrorSpec {
                code: Some("REALM_REQUIRED"),
                ..e(400, "Error", "realm is required")
            },
            Self::InvalidRealm => ErrorSpec {
                code: Some("INVALID_REALM"),
                ..e(400, "Error", "Invalid realm")
            },
            Self::LogoutNoToken => e(401, "Error", "accessToken is required to logout"),
            Self::LogoutUnknownToken => e(401, "Error", "Could not find accessToken"),
            Self::UserNotFound => ErrorSpec {
                code: Some("USER_NOT_FOUND"),
                ..e(401, "Error", "User {} not found")
            },
            Self::InvalidCurrentPassword => ErrorSpec {
                code: Some("INVALID_PASSWORD"),
                ..e(400, "Error", "Invalid current password")
            },
            Self::EmailRequired => ErrorSpec {
                code: Some("EMAIL_REQUIRED"),
                ..e(400, "Error", "Email is required")
            },
            Self::EmailNotFound => ErrorSpec {
                code: Some("EMAIL_NOT_FOUND"),
                ..e(404, "Error", "Email not found")
            },
            Self::ResetEmailNotVerified => ErrorSpec {
                code: Some("RESET_FAILED_EMAIL_NOT_VERIFIED"),
                ..e(401, "Error", "Email has not been verified")
            },
            Self::ConfirmUserNotFound => ErrorSpec {
                code: Some("USER_NOT_FOUND"),
                ..e(404, "Error", "User not found: {}")
            },
            Self::ConfirmInvalidToken => ErrorSpec {
                code: Some("INVALID_TOKEN"),
                ..e(400, "Error", "Invalid token: {}")
            },
            Self::Model => e(400, "Error", ""),
            Self::Internal => e(500, "Error", "{}"),
        }
    }

    /// The error with the message's `{}` filled with `args` in order.
    pub fn with(self, args: &[&dyn std::fmt::Display]) -> RestError {
        let spec = self.spec();
        let mut message = String::with_capacity(spec.message.len() + 16);
        let mut args = args.iter();
        let mut parts = spec.message.split("{}");
        if let Some(first) = parts.next() {
            message.push_str(first);
        }
        for part in parts {
            if let Some(a) = args.next() {
                use std::fmt::Write;
                let _ = write!(message, "{a}");
            }
            message.push_str(part);
        }
        RestError {
            status: spec.status,
            name: spec.name,
            message,
            code: spec.code.map(Cow::Borrowed),
            details: None,
        }
    }

    /// The error of a code whose message takes nothing from the request.
    pub fn err(self) -> RestError {
        self.with(&[])
    }
}

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
