//! What LoopBack's `User` does around every write of a User-based model, as operation
//! hooks: a plain password is hashed before it is stored; a changed password or email
//! ends the user's other sessions (their tokens are deleted, the caller's own is kept); a
//! deleted user's tokens go with it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, Weak};

use oxbow_core::{Caller, HookContext, Model, Operation, Record};
use serde_json::{Value, json};

use crate::password;

/// Installs the User hooks on `user` (a User-based model), deleting from `tokens`.
pub fn install(user: &Arc<Model>, tokens: Option<&Arc<Model>>) {
    let Some(settings) = user.definition().auth.user.clone() else {
        return;
    };
    let cost = settings.salt_work_factor;
    let id_name = user.definition().id_name().to_owned();
    // Ids of users whose sessions end once the write in progress is stored.
    let ending: Arc<Mutex<HashSet<String>>> = Arc::default();
    let this: Weak<Model> = Arc::downgrade(user);
    let tokens: Option<Weak<Model>> = tokens.map(Arc::downgrade);

    {
        let ending = ending.clone();
        let this = this.clone();
        let id_name = id_name.clone();
        user.observe(Operation::BeforeSave, move |ctx: &mut HookContext| {
            let ending = ending.clone();
            let this = this.clone();
            let id_name = id_name.clone();
            Box::pin(async move {
                let record = ctx.instance.as_mut().or(ctx.data.as_mut());
                let Some(record) = record else { return Ok(()) };
                let plain = match record.get("password") {
                    Some(Value::String(p)) if !password::is_hash(p) => Some(p.clone()),
                    _ => None,
                };
                if let Some(plain) = &plain {
                    let hashed = password::hash(plain.clone(), cost).await?;
                    record.insert("password".into(), Value::String(hashed));
                }
                if ctx.is_new_instance == Some(true) {
                    return Ok(());
                }
                // Which user: the one being replaced or patched.
                let id = record
                    .get(&id_name)
                    .cloned()
                    .or_else(|| {
                        ctx.current_instance
                            .as_ref()
                            .and_then(|c| c.get(&id_name).cloned())
                    })
                    .or_else(|| ctx.where_.as_ref().and_then(|w| w.get(&id_name).cloned()))
                    .filter(|v| !v.is_object() && !v.is_null());
                let Some(id) = id else { return Ok(()) };
                let mut changed = plain.is_some();
                if !changed {
                    if let Some(email) = record.get("email") {
                        let current = match &ctx.current_instance {
                            Some(c) => c.get("email").cloned(),
                            None => match this.upgrade() {
                                Some(m) => m
                                    .find_by_id(&id, &Caller::anonymous())
                                    .await?
                                    .and_then(|r| r.to_record().get("email").cloned()),
                                None => None,
                            },
                        };
                        changed = current.as_ref() != Some(email);
                    }
                }
                if changed {
                    ending
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(oxbow_core::js::to_js_string(&id));
                }
                Ok(())
            })
        });
    }
    if let Some(tokens) = tokens.clone() {
        let ending = ending.clone();
        let id_name = id_name.clone();
        user.observe(Operation::AfterSave, move |ctx: &mut HookContext| {
            let ending = ending.clone();
            let tokens = tokens.clone();
            let id_name = id_name.clone();
            Box::pin(async move {
                if ctx.is_new_instance != Some(false) {
                    return Ok(());
                }
                let Some(id) = ctx.instance.as_ref().and_then(|i| i.get(&id_name).cloned()) else {
                    return Ok(());
                };
                let key = oxbow_core::js::to_js_string(&id);
                let was = ending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&key);
                if !was {
                    return Ok(());
                }
                let Some(tokens) = tokens.upgrade() else {
                    return Ok(());
                };
                let mut w = json!({"userId": id});
                if let Some(own) = ctx.caller.token() {
                    w["id"] = json!({"neq": own.id});
                }
                let w = tokens.parse_where(&w)?;
                tokens.delete_all(w.as_ref(), &Caller::anonymous()).await?;
                Ok(())
            })
        });
    }
    if let Some(tokens) = tokens {
        let this = this.clone();
        user.observe(Operation::BeforeDelete, move |ctx: &mut HookContext| {
            let tokens = tokens.clone();
            let this = this.clone();
            let id_name = id_name.clone();
            Box::pin(async move {
                let (Some(tokens), Some(users)) = (tokens.upgrade(), this.upgrade()) else {
                    return Ok(());
                };
                let filter = oxbow_core::Filter {
                    where_: match &ctx.where_ {
                        Some(w) => users.parse_where(w)?,
                        None => None,
                    },
                    ..Default::default()
                };
                let ids: Vec<Value> = users
                    .find(&filter, &Caller::anonymous())
                    .await?
                    .iter()
                    .filter_map(|r| r.to_record().get(&id_name).cloned())
                    .collect();
                if ids.is_empty() {
                    return Ok(());
                }
                let w = tokens.parse_where(&json!({"userId": {"inq": ids}}))?;
                tokens.delete_all(w.as_ref(), &Caller::anonymous()).await?;
                Ok(())
            })
        });
    }
}

/// The record a login's token starts as: its `ttl` and user (the id is made here, as the
/// token model's `before save` makes it).
pub fn new_token(ttl: f64, user_id: Value) -> Record {
    let mut r = Record::new();
    r.insert(
        "id".into(),
        Value::String(crate::token::new_id(crate::token::DEFAULT_ID_LENGTH)),
    );
    r.insert("ttl".into(), oxbow_core::js::number_value(ttl));
    r.insert("userId".into(), user_id);
    r
}
