//! Who is calling: LoopBack's `options` (its `accessToken`), made once per request by the
//! REST layer and handed to every step of the call, and kept by change-stream subscriptions
//! so each event can later be checked against the subscriber's rights.

use std::sync::Arc;

/// The caller of an operation. Cheap to clone (one `Arc`); anonymous when made in process
/// (boot plugins, tests) or by a request without credentials.
#[derive(Debug, Clone, Default)]
pub struct Caller(Option<Arc<CallerInfo>>);

/// What is known about a caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallerInfo {
    /// The request's id (`X-Request-Id`), when it has one.
    pub request_id: Option<String>,
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

    /// No access token (all callers, until users and tokens land).
    pub fn is_anonymous(&self) -> bool {
        true
    }
}
