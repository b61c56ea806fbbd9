//! Access tokens: where `loopback#token` finds one in a request, ids as LoopBack makes them
//! (64 characters of `[A-Za-z0-9]` from the OS's CSPRNG, as `uid2`), a stored token read
//! and judged (`ttl`, expiry, `allowEternalTokens`), and the cache that spares a database
//! round trip per request: bounded, and emptied of a token as soon as its model's change
//! feed says it changed or went (a logout here, or on another instance through the
//! PostgreSQL change log).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use oxbow_core::{AccessToken, ChangeStream, ChangeType, Model, RecvError, Row};
use serde_json::Value;

/// `DEFAULT_TOKEN_LEN`.
pub const DEFAULT_ID_LENGTH: usize = 64;

const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// A new token id: `len` characters, each uniformly drawn (rejection sampling, no modulo
/// bias) from the OS's CSPRNG.
pub fn new_id(len: usize) -> String {
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 96];
    while out.len() < len {
        getrandom::fill(&mut buf).expect("the operating system's random source");
        for b in buf {
            // 248 = 4 × 62: bytes at or above it would favour the first characters.
            if b < 248 && out.len() < len {
                out.push(ALPHABET[(b % 62) as usize] as char);
            }
        }
    }
    out
}

/// `loopback#token`'s options (middleware.json `params`), with LoopBack's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenOptions {
    /// Query (and path) parameters searched, in order, before the default `access_token`.
    pub params: Vec<String>,
    /// Headers searched before `X-Access-Token` and `Authorization`.
    pub headers: Vec<String>,
    /// `searchDefaultTokenKeys` (default true).
    pub search_default_keys: bool,
    /// `bearerTokenBase64Encoded` (default true): `Bearer <base64 of the id>`.
    pub bearer_base64: bool,
    /// `currentUserLiteral` (`me`): `/Users/me` is the caller's own id.
    pub current_user_literal: Option<String>,
}

impl Default for TokenOptions {
    fn default() -> Self {
        Self {
            params: Vec::new(),
            headers: Vec::new(),
            search_default_keys: true,
            bearer_base64: true,
            current_user_literal: None,
        }
    }
}

impl TokenOptions {
    /// From a `loopback#token` entry's `params`.
    pub fn from_params(p: &serde_json::Map<String, Value>) -> Self {
        let list = |k: &str| -> Vec<String> {
            match p.get(k) {
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect(),
                _ => Vec::new(),
            }
        };
        Self {
            params: list("params"),
            headers: list("headers"),
            search_default_keys: p.get("searchDefaultTokenKeys") != Some(&Value::Bool(false)),
            bearer_base64: p.get("bearerTokenBase64Encoded") != Some(&Value::Bool(false)),
            current_user_literal: match p.get("currentUserLiteral") {
                Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                Some(v) if oxbow_core::js::truthy(v) => Some("me".into()),
                _ => None,
            },
        }
    }

    /// `AccessToken.getIdForRequest`: the first string found among the parameters (the
    /// body is not parsed yet when LoopBack looks), then the headers (`Bearer`, `Basic`
    /// decoded). Signed cookies need cookie-parser, which oxbow does not run.
    pub fn id_for_request<'a>(
        &self,
        query: impl Fn(&str) -> Option<&'a Value>,
        header: impl Fn(&str) -> Option<&'a str>,
    ) -> Option<String> {
        let defaults_p: &[&str] = if self.search_default_keys {
            &["access_token"]
        } else {
            &[]
        };
        for name in self
            .params
            .iter()
            .map(String::as_str)
            .chain(defaults_p.iter().copied())
        {
            if let Some(Value::String(s)) = query(name) {
                if s.is_empty() {
                    return None;
                }
                return Some(s.clone());
            }
        }
        let defaults_h: &[&str] = if self.search_default_keys {
            &["x-access-token", "authorization"]
        } else {
            &[]
        };
        for name in self
            .headers
            .iter()
            .map(String::as_str)
            .chain(defaults_h.iter().copied())
        {
            let Some(v) = header(name) else { continue };
            if v.is_empty() {
                continue;
            }
            if let Some(rest) = v.strip_prefix("Bearer ") {
                if !self.bearer_base64 {
                    return Some(rest.to_owned());
                }
                return Some(lossy_base64(rest));
            }
            if v.len() >= 6 && v[..6].eq_ignore_ascii_case("basic ") {
                let decoded = lossy_base64(&v[6..]);
                return Some(match decoded.split_once(':') {
                    Some((user, pass)) if pass.len() > user.len() => pass.to_owned(),
                    Some((user, _)) => user.to_owned(),
                    None => decoded,
                });
            }
            return Some(v.to_owned());
        }
        None
    }
}

/// Node's `Buffer.from(s, 'base64').toString('utf8')`: lenient (stops at the first
/// character that is not base64, padding optional), invalid UTF-8 replaced.
fn lossy_base64(s: &str) -> String {
    let clean: String = s
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '+' || *c == '/')
        .collect();
    // A lone last character carries no whole byte: Node drops it.
    let usable = if clean.len() % 4 == 1 {
        clean.len() - 1
    } else {
        clean.len()
    };
    const LENIENT: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_encode_padding(false)
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let bytes = LENIENT.decode(&clean[..usable]).unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A stored token as a [`AccessToken`], or `None` when its `created`/`ttl` are not what
/// `AccessToken.prototype.validate` asserts (such a token never authenticates).
pub fn from_row(row: &Row) -> Option<AccessToken> {
    let record = row.to_record();
    let id = match record.get("id")? {
        Value::String(s) => s.clone(),
        other => oxbow_core::js::to_js_string(other),
    };
    let ttl = record.get("ttl").and_then(Value::as_f64)?;
    let created = record.get("created").and_then(Value::as_str)?;
    let created_ms = oxbow_core::js::parse_date_str(created)?.timestamp_millis();
    let scopes = match record.get("scopes") {
        Some(Value::Array(a)) => Some(
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
        ),
        _ => None,
    };
    Some(AccessToken {
        id,
        user_id: record.get("userId").cloned().filter(|v| !v.is_null()),
        ttl,
        created_ms,
        scopes,
        principal_type: record
            .get("principalType")
            .and_then(Value::as_str)
            .map(str::to_owned),
        record,
    })
}

/// `validate`: an eternal token (`ttl: -1`) is valid only if the user model allows them;
/// any other is valid while less than `ttl` seconds old. `ttl` 0 or below -1 never is.
pub fn is_valid(token: &AccessToken, now_ms: i64, eternal_allowed: bool) -> bool {
    if token.ttl == -1.0 {
        return eternal_allowed;
    }
    if token.ttl == 0.0 || token.ttl < -1.0 || token.ttl.is_nan() {
        return false;
    }
    ((now_ms - token.created_ms) as f64 / 1000.0) < token.ttl
}

/// What a token id resolved to.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// No such token: the request is anonymous.
    Unknown,
    Found(Arc<AccessToken>),
}

/// Tokens read recently, by id. Bounded; before each use the token model's change feed is
/// drained and every token it names (or, for a change it cannot tell, all) is dropped, so a
/// deleted or changed token is never served from here.
pub struct TokenCache {
    model: Arc<Model>,
    /// Set by this process's own updates and deletes of tokens (see [`crate::acl`]).
    dirty: Arc<std::sync::atomic::AtomicBool>,
    state: Mutex<CacheState>,
    capacity: usize,
}

struct CacheState {
    changes: ChangeStream,
    tokens: HashMap<String, Arc<AccessToken>>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("model", &self.model.name())
            .finish()
    }
}

impl TokenCache {
    pub fn new(model: Arc<Model>, capacity: usize) -> Self {
        let changes = model.subscribe();
        let dirty = crate::acl::written_flag(&model, false);
        Self {
            model,
            dirty,
            state: Mutex::new(CacheState {
                changes,
                tokens: HashMap::new(),
            }),
            capacity,
        }
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    fn fresh(&self) -> std::sync::MutexGuard<'_, CacheState> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if self.dirty.swap(false, std::sync::atomic::Ordering::AcqRel) {
            state.tokens.clear();
        }
        while let Some(change) = state.changes.try_recv() {
            match change {
                Ok(e) if e.kind == ChangeType::Create => {}
                Ok(e) => match e.target.as_ref() {
                    Some(Value::String(id)) => {
                        state.tokens.remove(id);
                    }
                    _ => state.tokens.clear(),
                },
                Err(RecvError::Lagged(_)) => state.tokens.clear(),
                Err(RecvError::Closed) => {
                    state.tokens.clear();
                    break;
                }
            }
        }
        state
    }

    /// The token with this id, from the cache or the store.
    pub async fn get(&self, id: &str) -> oxbow_core::Result<Lookup> {
        if let Some(t) = self.fresh().tokens.get(id) {
            return Ok(Lookup::Found(t.clone()));
        }
        let row = self
            .model
            .find_by_id(
                &Value::String(id.to_owned()),
                &oxbow_core::Caller::anonymous(),
            )
            .await?;
        let Some(row) = row else {
            return Ok(Lookup::Unknown);
        };
        let Some(token) = from_row(&row) else {
            return Ok(Lookup::Found(Arc::new(AccessToken {
                id: id.to_owned(),
                user_id: None,
                ttl: 0.0,
                created_ms: 0,
                scopes: None,
                principal_type: None,
                record: row.to_record(),
            })));
        };
        let token = Arc::new(token);
        let mut state = self.fresh();
        if state.tokens.len() >= self.capacity {
            state.tokens.clear();
        }
        state.tokens.insert(id.to_owned(), token.clone());
        Ok(Lookup::Found(token))
    }

    /// Forgets a token at once (a logout on this instance).
    pub fn forget(&self, id: &str) {
        self.fresh().tokens.remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_64_alphanumerics_and_differ() {
        let a = new_id(DEFAULT_ID_LENGTH);
        let b = new_id(DEFAULT_ID_LENGTH);
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }

    #[test]
    fn finds_the_token_where_loopback_does() {
        let o = TokenOptions::default();
        let q = serde_json::json!({"access_token": "Q"});
        let none = |_: &str| None;
        assert_eq!(o.id_for_request(|k| q.get(k), none).as_deref(), Some("Q"));
        let h = |k: &str| (k == "authorization").then_some("Bearer VE9L");
        assert_eq!(o.id_for_request(|_| None, h).as_deref(), Some("TOK"));
        let basic = |k: &str| (k == "authorization").then_some("Basic OmxvbmdlcnRva2Vu");
        assert_eq!(
            o.id_for_request(|_| None, basic).as_deref(),
            Some("longertoken")
        );
        let raw = |k: &str| (k == "x-access-token").then_some("RAW");
        assert_eq!(o.id_for_request(|_| None, raw).as_deref(), Some("RAW"));
        let arr = serde_json::json!({"access_token": ["a", "b"]});
        assert_eq!(o.id_for_request(|k| arr.get(k), none), None);
    }

    #[test]
    fn expiry_follows_ttl() {
        let t = AccessToken {
            id: "x".into(),
            user_id: None,
            ttl: 10.0,
            created_ms: 0,
            scopes: None,
            principal_type: None,
            record: Default::default(),
        };
        assert!(is_valid(&t, 9_999, false));
        assert!(!is_valid(&t, 10_000, false));
        let eternal = AccessToken { ttl: -1.0, ..t };
        assert!(!is_valid(&eternal, 0, false));
        assert!(is_valid(&eternal, i64::MAX / 2, true));
    }
}
