//! Change events checked against the subscriber's rights, beyond LoopBack (which checks a
//! stream once, when it opens): an event reaches a subscriber only if the subscriber may
//! read its record (`findById` with the record's id). The rules are decided once, at
//! subscribe time, for "the subscriber owns the record" and for "it does not"; when only
//! owners may read, the subscriber is keyed by its user id so a change wakes only the
//! subscribers it concerns. A token that is deleted (logout, a password change, an expiry
//! found elsewhere) ends the streams opened with it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use oxbow_core::{AccessToken, Caller, ChangeData, ChangeEvent, ChangeType, Model, Registry};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::Auth;
use crate::acl::{Check, MethodRules, Owner, Owners, Trace};

/// The key the feed routes a user's events by (ids compared as strings, as `isOwner`).
fn key_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => oxbow_core::js::to_js_string(other),
    }
}

/// The feed keys of an event: its record's owners (for a User-based model, the record's id).
pub fn event_keys(owners: &Owners, event: &ChangeEvent) -> Vec<String> {
    if owners.by_id {
        return event.target.iter().map(key_of).collect();
    }
    let Some(row) = record_of(event) else {
        return Vec::new();
    };
    owners
        .candidates(&|k| row.value_of(k))
        .into_iter()
        .map(|o| match o {
            Owner::Direct(v) => key_of(&v),
            Owner::Via { fk, .. } => key_of(&fk),
        })
        .collect()
}

/// The stored record an event is about: the saved one, or the one a delete removed.
fn record_of(event: &ChangeEvent) -> Option<&oxbow_core::Row> {
    match (&event.data, &event.removed) {
        (Some(ChangeData::Record(_, row)), _) => Some(row),
        (_, Some(row)) if event.kind == ChangeType::Remove => Some(row),
        _ => None,
    }
}

/// What one subscriber may see of a model's changes.
#[derive(Debug)]
pub struct EventRights {
    /// The decision when the subscriber owns the record, and when it does not.
    when_owner: bool,
    when_not: bool,
    /// A plugin's role resolver took part: decided per event, with the record's id.
    per_event: bool,
    user: Option<String>,
    owners: Owners,
    rules: MethodRules,
}

impl EventRights {
    /// The rights of `caller` on `model`'s events: READ of one record (`findById`).
    pub async fn of(
        auth: &Auth,
        registry: &Registry,
        model: &Arc<Model>,
        caller: &Caller,
    ) -> oxbow_core::Result<Self> {
        let rules = MethodRules::compile(model, "findById", &[], "READ");
        let owners = Owners::of(model, registry);
        let user = caller
            .token()
            .and_then(|t| t.user_id.as_ref())
            .filter(|v| oxbow_core::js::truthy(v))
            .map(key_of);
        if !auth.enabled {
            return Ok(Self {
                when_owner: true,
                when_not: true,
                per_event: false,
                user,
                owners,
                rules,
            });
        }
        let check = Check {
            registry,
            model,
            rules: &rules,
            access_scopes: None,
            // Any id: the decision is taken with `$owner` assumed either way.
            model_id: Some(Value::Bool(true)),
            caller,
        };
        let mut yes = Trace {
            assume_owner: Some(true),
            ..Trace::default()
        };
        let when_owner = auth.acls.decide(&check, &mut yes).await?;
        let mut no = Trace {
            assume_owner: Some(false),
            ..Trace::default()
        };
        let when_not = auth.acls.decide(&check, &mut no).await?;
        Ok(Self {
            when_owner,
            when_not,
            per_event: yes.resolver || no.resolver,
            user,
            owners,
            rules,
        })
    }

    /// Every event passes: no per-event work at all.
    pub fn sees_all(&self) -> bool {
        self.when_owner && self.when_not && !self.per_event
    }

    /// The feed key to subscribe with, when only the subscriber's own records' events can
    /// pass (the others are then never sent to it).
    pub fn key(&self) -> Option<String> {
        if self.when_owner && !self.when_not && !self.per_event {
            // No user: nothing is owned, nothing passes; an impossible key says so.
            return Some(self.user.clone().unwrap_or_else(|| "\0nobody".to_owned()));
        }
        None
    }

    /// Whether `event` may reach the subscriber.
    pub async fn permits(
        &self,
        auth: &Auth,
        registry: &Registry,
        model: &Arc<Model>,
        caller: &Caller,
        event: &ChangeEvent,
    ) -> oxbow_core::Result<bool> {
        if self.sees_all() {
            return Ok(true);
        }
        if self.per_event {
            let Some(target) = event.target.clone() else {
                return Ok(false);
            };
            let check = Check {
                registry,
                model,
                rules: &self.rules,
                access_scopes: None,
                model_id: Some(target),
                caller,
            };
            return auth.acls.allows(&check).await;
        }
        if !self.when_owner && !self.when_not {
            return Ok(false);
        }
        // An event that names no single record (updateAll, deleteAll, a delete whose
        // record was not kept) has no owner to judge: only unconditional rights see it.
        let keys = event_keys(&self.owners, event);
        if keys.is_empty() {
            return Ok(false);
        }
        let owns = self.user.as_ref().is_some_and(|u| keys.contains(u));
        Ok(if owns { self.when_owner } else { self.when_not })
    }
}

/// Streams waiting to hear that their token was deleted, by token id.
#[derive(Default)]
pub(crate) struct Revocations {
    watched: Mutex<Watched>,
}

impl std::fmt::Debug for Revocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let w = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        f.debug_struct("Revocations")
            .field("tokens", &w.by_token.len())
            .finish()
    }
}

/// One stream's watch: its number, the token, and what tells the stream.
type Watch = (u64, Arc<AccessToken>, oneshot::Sender<()>);

#[derive(Default)]
struct Watched {
    by_token: HashMap<String, Vec<Watch>>,
    next: u64,
    following: bool,
}

/// Resolves when the token it watches is deleted; dropping it stops watching.
pub struct Revoked {
    rx: oneshot::Receiver<()>,
    guard: WatchGuard,
}

struct WatchGuard {
    watched: Weak<Revocations>,
    token: String,
    id: u64,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        let Some(r) = self.watched.upgrade() else {
            return;
        };
        let mut w = r.watched.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(list) = w.by_token.get_mut(&self.token) {
            list.retain(|(id, _, _)| *id != self.id);
            if list.is_empty() {
                w.by_token.remove(&self.token);
            }
        }
    }
}

impl Revoked {
    /// Waits until the token is deleted (forever when the app stops watching tokens).
    pub async fn wait(&mut self) {
        if (&mut self.rx).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// The id of the token watched.
    pub fn token(&self) -> &str {
        &self.guard.token
    }
}

impl Revocations {
    /// Watches `token`; the first watch starts following the token model's feed.
    pub(crate) fn watch(self: &Arc<Self>, token: &Arc<AccessToken>, model: &Arc<Model>) -> Revoked {
        let (tx, rx) = oneshot::channel();
        let mut w = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        w.next += 1;
        let id = w.next;
        w.by_token
            .entry(token.id.clone())
            .or_default()
            .push((id, token.clone(), tx));
        if !w.following {
            w.following = true;
            tokio::spawn(follow(Arc::downgrade(self), model.clone()));
        }
        Revoked {
            rx,
            guard: WatchGuard {
                watched: Arc::downgrade(self),
                token: token.id.clone(),
                id,
            },
        }
    }

    /// Ends the watches of every token `gone` says was deleted.
    fn revoke(&self, gone: impl Fn(&AccessToken) -> bool) {
        let mut w = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        w.by_token.retain(|_, list| {
            let mut keep = Vec::new();
            for (id, token, tx) in list.drain(..) {
                if gone(&token) {
                    let _ = tx.send(());
                } else {
                    keep.push((id, token, tx));
                }
            }
            *list = keep;
            !list.is_empty()
        });
    }
}

/// Follows the token model's feed and revokes the watches of deleted tokens: by id
/// (`deleteById`, a logout) or by `where` (a user's tokens deleted together).
async fn follow(revocations: Weak<Revocations>, model: Arc<Model>) {
    let mut changes = model.subscribe();
    loop {
        let event = changes.recv().await;
        let Some(r) = revocations.upgrade() else {
            return;
        };
        match event {
            Ok(e) if e.kind == ChangeType::Remove => {
                if let Some(id) = e.target.as_ref().map(key_of) {
                    r.revoke(|t| t.id == id);
                    continue;
                }
                let w = e.where_.as_ref().and_then(|w| model.parse_where(w).ok());
                match w {
                    Some(Some(w)) => r.revoke(|t| w.matches(&t.record)),
                    // No where, or one oxbow cannot read: every token may be gone.
                    _ => r.revoke(|_| true),
                }
            }
            Ok(_) => {}
            // Missed events: end every watched stream (its client reconnects and its token
            // is checked afresh).
            Err(oxbow_core::RecvError::Lagged(_)) => r.revoke(|_| true),
            Err(oxbow_core::RecvError::Closed) => return,
        }
    }
}
