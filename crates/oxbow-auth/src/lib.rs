//! oxbow-auth: LoopBack 3's users, access tokens, roles and ACLs over oxbow-core models,
//! with no HTTP: passwords (`password`), tokens and their cache (`token`), and the access
//! decision (`acl`). The REST layer finds the token in a request, asks [`Auth`] for a
//! decision before every call, and serves the User methods with these pieces.

pub mod acl;
pub mod events;
pub mod password;
pub mod token;
pub mod users;

use std::collections::HashMap;
use std::sync::Arc;

use oxbow_core::{AccessToken, Caller, Model, Registry};

pub use acl::{Check, MethodRules, RoleContext, RoleResolver};
pub use events::{EventRights, Revoked};
pub use token::{Lookup, TokenOptions};

/// Tokens kept by the cache before it starts over.
const TOKEN_CACHE_CAPACITY: usize = 100_000;

/// How long a change-stream ticket is good for, in seconds.
pub const TICKET_TTL: u64 = 30;

/// The scope a ticket's token row carries, before the id of the token it stands for: no
/// method accepts it, so a ticket is no access token.
const TICKET_SCOPE: &str = "oxbow:change-stream-ticket:";

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
    revocations: Arc<events::Revocations>,
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
            revocations: Arc::default(),
        }
        .routing_events(registry)
    }

    /// Keys every model's change feed by the owners of each event's record, so streams
    /// that may see only their own records' events get only those.
    fn routing_events(self, registry: &Registry) -> Self {
        if self.enabled {
            for model in registry.models() {
                let owners = acl::Owners::of(model, registry);
                model
                    .changes()
                    .route_by(Arc::new(move |e| events::event_keys(&owners, e)));
            }
        }
        self
    }

    /// Resolves when `token` is deleted (a logout, a password change); `None` when the app
    /// has no token model.
    pub fn watch(&self, token: &Arc<AccessToken>) -> Option<Revoked> {
        let model = self.token_model()?;
        Some(self.revocations.watch(token, model))
    }

    /// A single-use change-stream ticket standing for `token`, good for [`TICKET_TTL`]
    /// seconds: a row of the token model (so every instance on a shared database can
    /// redeem it, once) whose only scope no method accepts.
    pub async fn issue_ticket(&self, token: &AccessToken) -> oxbow_core::Result<String> {
        let Some(model) = self.token_model() else {
            return Err(oxbow_core::Error::internal("no token model"));
        };
        let mut row =
            users::new_token(TICKET_TTL as f64, token.user_id.clone().unwrap_or_default());
        row.insert(
            "scopes".into(),
            serde_json::json!([format!("{TICKET_SCOPE}{}", token.id)]),
        );
        let id = row
            .get("id")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned();
        model.create(row, &Caller::anonymous()).await?;
        Ok(id)
    }

    /// The token a ticket stands for, the ticket used up: `Invalid` for a ticket that is
    /// unknown, used, expired, or whose token is gone.
    pub async fn redeem_ticket(&self, ticket: &str) -> oxbow_core::Result<TokenState> {
        let Some(model) = self.token_model() else {
            return Ok(TokenState::Invalid);
        };
        let id = serde_json::Value::String(ticket.to_owned());
        let anon = Caller::anonymous();
        let Some(row) = model.find_by_id(&id, &anon).await? else {
            return Ok(TokenState::Invalid);
        };
        let Some(found) = token::from_row(&row) else {
            return Ok(TokenState::Invalid);
        };
        let stands_for = found
            .scopes
            .as_deref()
            .and_then(|s| match s {
                [one] => one.strip_prefix(TICKET_SCOPE),
                _ => None,
            })
            .map(str::to_owned);
        let Some(stands_for) = stands_for else {
            return Ok(TokenState::Invalid);
        };
        // Whoever deletes it first holds it: once, across every instance.
        if model.delete_by_id(&id, &anon).await? != 1 {
            return Ok(TokenState::Invalid);
        }
        self.forget(ticket);
        let now = chrono::Utc::now().timestamp_millis();
        if !token::is_valid(&found, now, false) {
            return Ok(TokenState::Invalid);
        }
        Ok(match self.resolve(&stands_for).await? {
            TokenState::None => TokenState::Invalid,
            other => other,
        })
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
