//! Who is calling: LoopBack's `options` (its `accessToken`), made once per request by the
//! REST layer and handed to every step of the call, and kept by change-stream subscriptions
//! so each event can later be checked against the subscriber's rights.

use std::sync::Arc;

/// The caller of an operation. Cheap to clone (one `Arc`); anonymous when made in process
/// (boot plugins, tests) or by a request without credentials.
#[derive(Debug, Clone, Default)]
pub struct Caller(Option<Arc<CallerInfo>>);

/// What is known about a caller.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallerInfo {
    /// The request's id (`X-Request-Id`), when it has one.
    pub request_id: Option<String>,
    /// The valid access token the request carried (LoopBack's `req.accessToken`).
    pub token: Option<Arc<AccessToken>>,
}

/// An access token as the `AccessToken` model stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessToken {
    /// The 64-character id.
    pub id: String,
    /// `userId`: the user it was made for, as stored (number or string).
    pub user_id: Option<serde_json::Value>,
    /// `ttl` in seconds (`-1`: eternal, if the user model allows it).
    pub ttl: f64,
    /// `created`, in milliseconds since the epoch.
    pub created_ms: i64,
    /// `scopes`; `None` is LoopBack's `["DEFAULT"]`.
    pub scopes: Option<Vec<String>>,
    /// `principalType`, set when several user models share the token model.
    pub principal_type: Option<String>,
    /// The token as stored (every property, for plugins).
    pub record: serde_json::Map<String, serde_json::Value>,
}

impl AccessToken {
    /// The user id as ACLs compare it (`String(id)`).
    pub fn user_key(&self) -> Option<String> {
        self.user_id.as_ref().and_then(|v| match v {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some(s.clone()),
            other => Some(crate::js::to_js_string(other)),
        })
    }
}

impl Caller {
    /// Nobody in particular: in-process calls.
    pub fn anonymous() -> Self {
        Self(None)
    }

    pub fn new(info: CallerInfo) -> Self {
        if info == CallerInfo::default() {
            return Self(None);
        }
        Self(Some(Arc::new(info)))
    }

    pub fn request_id(&self) -> Option<&str> {
        self.0.as_ref()?.request_id.as_deref()
    }

    /// The caller's valid access token, if the request carried one.
    pub fn token(&self) -> Option<&Arc<AccessToken>> {
        self.0.as_ref()?.token.as_ref()
    }

    /// No access token with a user (`$unauthenticated`).
    pub fn is_anonymous(&self) -> bool {
        self.token().is_none_or(|t| t.user_key().is_none())
    }

    /// The same caller with a token (a login's own follow-up calls, tests).
    pub fn with_token(&self, token: Arc<AccessToken>) -> Self {
        let mut info = self.0.as_deref().cloned().unwrap_or_default();
        info.token = Some(token);
        Self(Some(Arc::new(info)))
    }
}
