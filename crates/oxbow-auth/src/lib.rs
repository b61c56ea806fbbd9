//! oxbow-auth: LoopBack 3's users, access tokens, roles and ACLs over oxbow-core models,
//! with no HTTP: passwords (`password`), tokens and their cache (`token`), and the access
//! decision (`acl`). The REST layer finds the token in a request, asks [`Auth`] for a
//! decision before every call, and serves the User methods with these pieces.

pub mod acl;
pub mod password;
pub mod token;
pub mod users;

use std::collections::HashMap;
use std::sync::Arc;

use oxbow_core::{AccessToken, Caller, Model, Registry};

pub use acl::{Check, MethodRules, RoleContext, RoleResolver};
pub use token::{Lookup, TokenOptions};

/// Tokens kept by the cache before it starts over.
const TOKEN_CACHE_CAPACITY: usize = 100_000;

/// The app's access control, built once per generation.
#[derive(Debug)]
pub struct Auth {
    /// `enableAuth`: tokens are read and ACLs enforced. Without it every call is allowed
    /// and tokens are not looked at, as in LoopBack.
    pub enabled: bool,
    /// config.json `aclErrorStatus`.
    pub acl_error_status: Option<u16>,
    pub token_options: TokenOptions,
    tokens: Option<token::TokenCache>,
    /// The `User` model, whose `allowEternalTokens` judges `ttl: -1` tokens (the token
    /// model's `user` relation points at it).
    eternal_allowed: bool,
    pub acls: acl::Acls,
}

/// What the token a request carried turned out to be.
#[derive(Debug, Clone)]
pub enum TokenState {
    /// No token, or an id no token has: anonymous.
    None,
    Valid(Arc<AccessToken>),
    /// Expired (now deleted) or unreadable: 401 `INVALID_TOKEN`.
    Invalid,
}

impl Auth {
    pub fn new(
        registry: &Registry,
        enabled: bool,
        acl_error_status: Option<u16>,
        token_options: TokenOptions,
        resolvers: HashMap<String, RoleResolver>,
    ) -> Self {
        let tokens = registry
            .model("AccessToken")
            .filter(|_| enabled)
            .map(|m| token::TokenCache::new(m.clone(), TOKEN_CACHE_CAPACITY));
        let eternal_allowed = registry
            .model("User")
            .and_then(|m| {
                m.definition()
                    .auth
                    .user
                    .as_ref()
                    .map(|u| u.allow_eternal_tokens)
            })
            .unwrap_or(false);
        Self {
            enabled,
            acl_error_status,
            token_options,
            tokens,
            eternal_allowed,
            acls: acl::Acls::new(registry, resolvers, enabled),
        }
    }

    /// The token model, when the app has one.
    pub fn token_model(&self) -> Option<&Arc<Model>> {
        self.tokens.as_ref().map(|t| t.model())
    }

    /// `AccessToken.resolve`: the token with this id if it is valid; an expired one is
    /// deleted and reported invalid.
    pub async fn resolve(&self, id: &str) -> oxbow_core::Result<TokenState> {
        let Some(cache) = &self.tokens else {
            return Ok(TokenState::None);
        };
        let token = match cache.get(id).await? {
            Lookup::Unknown => return Ok(TokenState::None),
            Lookup::Found(t) => t,
        };
        let now = chrono::Utc::now().timestamp_millis();
        if token::is_valid(&token, now, self.eternal_allowed) {
            return Ok(TokenState::Valid(token));
        }
        cache.forget(id);
        cache
            .model()
            .delete_by_id(
                &serde_json::Value::String(id.to_owned()),
                &Caller::anonymous(),
            )
            .await?;
        Ok(TokenState::Invalid)
    }

    /// Drops a token from the cache at once (logout).
    pub fn forget(&self, id: &str) {
        if let Some(c) = &self.tokens {
            c.forget(id);
        }
    }
}
