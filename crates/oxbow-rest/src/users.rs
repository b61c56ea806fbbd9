//! The remote methods of a User-based model, with LoopBack's statuses, bodies and error
//! codes: `login`, `logout`, `changePassword`, `setPassword` (`/reset-password`),
//! `resetPassword` (`/reset`, emitting `resetPasswordRequest` to plugins), `confirm` and
//! `prototype.verify`. They are declared in the built-in User JSON's `methods` and
//! implemented here for every model that extends User.

use std::sync::Arc;

use oxbow_auth::Auth;
use oxbow_core::{Caller, Filter, Model, Registry, js};
use serde_json::{Map, Value, json};

use crate::RestError;
use crate::error::ErrorCode;
use crate::remote::{RemoteCall, RemoteMethodFn, Remotes};

/// A listener of a User model's events (`resetPasswordRequest`): the model's name and
/// LoopBack's payload (`email`, `accessToken`, `user`, `options`).
pub type UserEventListener = Arc<dyn Fn(&str, &Value) + Send + Sync>;

/// What the methods need beside the call.
#[derive(Clone)]
struct Ctx {
    registry: Arc<Registry>,
    auth: Arc<Auth>,
    listeners: Arc<Vec<(String, UserEventListener)>>,
}

/// Implements the User methods for every User-based model that a plugin has not
/// implemented itself, and LoopBack's `beforeRemote('create')` that keeps a new user's
/// `emailVerified` false.
pub fn register(
    remotes: &mut Remotes,
    registry: &Arc<Registry>,
    auth: &Arc<Auth>,
    listeners: Vec<(String, UserEventListener)>,
) {
    let ctx = Ctx {
        registry: registry.clone(),
        auth: auth.clone(),
        listeners: Arc::new(listeners),
    };
    for model in registry.models() {
        if model.definition().auth.user.is_none() {
            continue;
        }
        let name = model.name().to_owned();
        let methods: [(&str, Method); 7] = [
            ("login", |c, call| Box::pin(login(c, call))),
            ("logout", |c, call| Box::pin(logout(c, call))),
            ("changePassword", |c, call| {
                Box::pin(change_password(c, call))
            }),
            ("setPassword", |c, call| Box::pin(set_password(c, call))),
            ("resetPassword", |c, call| Box::pin(reset_password(c, call))),
            ("confirm", |c, call| Box::pin(confirm(c, call))),
            ("prototype.verify", |c, call| Box::pin(verify(c, call))),
        ];
        for (method, f) in methods {
            let ctx = ctx.clone();
            let imp: RemoteMethodFn = Arc::new(move |call| f(ctx.clone(), call));
            remotes
                .methods
                .entry((name.clone(), method.to_owned()))
                .or_insert(imp);
        }
        let hook: crate::remote::RemoteHook = Arc::new(|rc| {
            Box::pin(async move {
                if let Some(Value::Object(data)) = rc.args.get_mut("data") {
                    if data.get("emailVerified").is_some_and(js::truthy) {
                        data.insert("emailVerified".into(), Value::Bool(false));
                    }
                }
                Ok(())
            })
        });
        remotes.before.insert(0, (name, "create".to_owned(), hook));
    }
}

type Fut = futures_util::future::LocalBoxFuture<'static, Result<Value, RestError>>;

/// One User method's implementation.
type Method = fn(Ctx, RemoteCall) -> Fut;

fn settings(model: &Model) -> oxbow_core::UserSettings {
    model.definition().auth.user.clone().unwrap_or_default()
}

fn tokens(ctx: &Ctx) -> Result<Arc<Model>, RestError> {
    ctx.auth
        .token_model()
        .cloned()
        .or_else(|| ctx.registry.model("AccessToken").cloned())
        .ok_or_else(|| {
            ErrorCode::Internal.with(&[&"the app has no AccessToken model (model-config.json)"])
        })
}

/// A where of plain equalities (values already known to be strings).
fn equal(model: &Model, pairs: &[(&str, Value)]) -> Result<Filter, RestError> {
    let mut w = Map::new();
    for (k, v) in pairs {
        w.insert((*k).to_owned(), v.clone());
    }
    Ok(Filter {
        where_: model.parse_where(&Value::Object(w))?,
        ..Filter::default()
    })
}

/// `login`: by email (else username), realm rules, bcrypt off the worker, then a token.
async fn login(ctx: Ctx, call: RemoteCall) -> Result<Value, RestError> {
    let model = &call.model;
    let s = settings(model);
    let creds = match call.args.get("credentials") {
        Some(Value::Object(o)) => o.clone(),
        _ => Map::new(),
    };
    let truthy = |k: &str| creds.get(k).filter(|v| js::truthy(v)).cloned();
    let mut query: Vec<(&str, Value)> = Vec::new();
    let split = |v: &Value| -> (Option<String>, Value) {
        match (v, s.realm_delimiter.as_deref()) {
            (Value::String(name), Some(d)) => match name.find(d) {
                Some(i) => (
                    Some(name[..i].to_owned()),
                    Value::String(name[i + d.len()..].to_owned()),
                ),
                None => (None, v.clone()),
            },
            _ => (None, v.clone()),
        }
    };
    let mut realm = if s.realm_required {
        truthy("realm")
    } else {
        None
    };
    if let Some(email) = truthy("email") {
        let (r, e) = if s.realm_required {
            split(&email)
        } else {
            (None, email)
        };
        realm = r.map(Value::String).or(realm);
        query.push(("email", e));
    } else if let Some(username) = truthy("username") {
        let (r, u) = if s.realm_required {
            split(&username)
        } else {
            (None, username)
        };
        realm = r.map(Value::String).or(realm);
        query.push(("username", u));
    }
    if s.realm_required {
        match &realm {
            None => return Err(ErrorCode::RealmRequired.err()),
            Some(Value::String(_)) => query.push(("realm", realm.clone().unwrap_or_default())),
            Some(_) => return Err(ErrorCode::InvalidRealm.err()),
        }
    }
    let Some((field, value)) = query.iter().find(|(k, _)| *k != "realm").cloned() else {
        return Err(ErrorCode::UsernameEmailRequired.err());
    };
    if !value.is_string() {
        return Err(if field == "username" {
            ErrorCode::InvalidUsername.err()
        } else {
            ErrorCode::InvalidEmail.err()
        });
    }
    if field == "email" && !s.case_sensitive_email {
        if let Some(slot) = query.iter_mut().find(|(k, _)| *k == "email") {
            slot.1 = Value::String(value.as_str().unwrap_or("").to_lowercase());
        }
    }
    let failed = || ErrorCode::LoginFailed.err();
    let user = model
        .find_one(&equal(model, &query)?, &call.caller)
        .await
        .map_err(|_| failed())?
        .ok_or_else(failed)?;
    let record = user.to_record();
    let (Some(Value::String(plain)), Some(Value::String(hash))) =
        (creds.get("password"), record.get("password"))
    else {
        return Err(failed());
    };
    if plain.is_empty() || !oxbow_auth::password::verify(plain.clone(), hash.clone()).await {
        return Err(failed());
    }
    let id_name = model.definition().id_name().to_owned();
    let user_id = record.get(&id_name).cloned().unwrap_or(Value::Null);
    if s.email_verification_required && !record.get("emailVerified").is_some_and(js::truthy) {
        let mut e = ErrorCode::LoginEmailNotVerified.err();
        e.details = Some(json!({ "userId": user_id }));
        return Err(e);
    }
    // `Math.min(ttl || settings.ttl, maxTTL)`; only a number (or a numeric string) is a
    // ttl here: LoopBack's use of an object as the whole token is not followed (the client
    // would choose the token's id and scopes).
    let asked = creds
        .get("ttl")
        .filter(|v| js::truthy(v) && !v.is_object() && !v.is_array())
        .and_then(js::to_number)
        .filter(|n| *n != 0.0 && !n.is_nan());
    let ttl = asked.unwrap_or(s.ttl).min(s.max_ttl);
    let token_model = tokens(&ctx)?;
    let row = token_model
        .create(oxbow_auth::users::new_token(ttl, user_id), &call.caller)
        .await?;
    let mut out = match serde_json::to_value(token_model.view(&row.to_record()))
        .map_err(|e| ErrorCode::Internal.with(&[&e]))?
    {
        Value::Object(o) => o,
        _ => Map::new(),
    };
    let wants_user = match call.args.get("include") {
        Some(Value::String(s)) => s.eq_ignore_ascii_case("user"),
        Some(Value::Array(a)) => a
            .iter()
            .any(|v| v.as_str().is_some_and(|s| s.eq_ignore_ascii_case("user"))),
        _ => false,
    };
    if wants_user {
        let shown = serde_json::to_value(model.view(&record)).unwrap_or(Value::Null);
        out.insert("user".into(), shown);
    }
    Ok(Value::Object(out))
}

/// `logout`: deletes the caller's token.
async fn logout(ctx: Ctx, call: RemoteCall) -> Result<Value, RestError> {
    let Some(token) = call.caller.token() else {
        return Err(ErrorCode::LogoutNoToken.err());
    };
    let id = token.id.clone();
    ctx.auth.forget(&id);
    let deleted = tokens(&ctx)?
        .delete_by_id(&Value::String(id), &Caller::anonymous())
        .await?;
    if deleted == 0 {
        return Err(ErrorCode::LogoutUnknownToken.err());
    }
    Ok(Value::Null)
}

/// The user the caller's token belongs to (`User ${id} not found`, 401, when it is gone).
async fn token_user(call: &RemoteCall) -> Result<(Value, oxbow_core::Record), RestError> {
    let id = call
        .caller
        .token()
        .and_then(|t| t.user_id.clone())
        .unwrap_or(Value::Null);
    let row = match id.is_null() {
        true => None,
        false => {
            call.model
                .find_by_id(&call.model.coerce_id(&id), &call.caller)
                .await?
        }
    };
    match row {
        Some(r) => Ok((id, r.to_record())),
        None => Err(user_not_found(&id)),
    }
}

fn user_not_found(id: &Value) -> RestError {
    let shown = if id.is_null() {
        "undefined".to_owned()
    } else {
        js::to_js_string(id)
    };
    ErrorCode::UserNotFound.with(&[&shown])
}

/// `setPassword`'s last step: a patch of the password alone (hashed by the User hooks,
/// which also end the user's other sessions).
async fn store_password(call: &RemoteCall, id: &Value, new: &Value) -> Result<(), RestError> {
    let Value::String(plain) = new else {
        return Err(oxbow_core::Error::Status {
            status: 422,
            message: "Invalid password.".into(),
            code: Some("INVALID_PASSWORD".into()),
        }
        .into());
    };
    oxbow_auth::password::validate(plain)?;
    let mut patch = oxbow_core::Record::new();
    patch.insert("password".into(), new.clone());
    let id = call.model.coerce_id(id);
    call.model
        .patch_attributes(&id, patch, true, &call.caller)
        .await?;
    Ok(())
}

async fn change_password(_ctx: Ctx, call: RemoteCall) -> Result<Value, RestError> {
    let (id, record) = token_user(&call).await?;
    let old = call.args.get("oldPassword").cloned().unwrap_or(Value::Null);
    let matches = match (&old, record.get("password")) {
        (Value::String(o), Some(Value::String(h))) if !o.is_empty() => {
            oxbow_auth::password::verify(o.clone(), h.clone()).await
        }
        _ => false,
    };
    if !matches {
        return Err(ErrorCode::InvalidCurrentPassword.err());
    }
    let new = call.args.get("newPassword").cloned().unwrap_or(Value::Null);
    store_password(&call, &id, &new).await?;
    Ok(Value::Null)
}

async fn set_password(_ctx: Ctx, call: RemoteCall) -> Result<Value, RestError> {
    let (id, _) = token_user(&call).await?;
    let new = call.args.get("newPassword").cloned().unwrap_or(Value::Null);
    store_password(&call, &id, &new).await?;
    Ok(Value::Null)
}

/// `resetPassword`: a short-lived token for the user with that email, handed to the
/// plugins listening for `resetPasswordRequest` (LoopBack emits the event; an app mails
/// the token). The client only learns whether the email is known.
async fn reset_password(ctx: Ctx, call: RemoteCall) -> Result<Value, RestError> {
    let model = &call.model;
    let s = settings(model);
    let options = match call.args.get("options") {
        Some(Value::Object(o)) => o.clone(),
        _ => Map::new(),
    };
    let Some(Value::String(email)) = options.get("email") else {
        return Err(ErrorCode::EmailRequired.err());
    };
    if let Some(p) = options.get("password").filter(|v| js::truthy(v)) {
        match p {
            Value::String(p) => oxbow_auth::password::validate(p)?,
            _ => oxbow_auth::password::validate("")?,
        }
    }
    let mut pairs = vec![("email", Value::String(email.clone()))];
    if let Some(realm) = options.get("realm").filter(|v| js::truthy(v)) {
        pairs.push(("realm", realm.clone()));
    }
    let Some(user) = model.find_one(&equal(model, &pairs)?, &call.caller).await? else {
        return Err(ErrorCode::EmailNotFound.err());
    };
    let record = user.to_record();
    if s.email_verification_required && !record.get("emailVerified").is_some_and(js::truthy) {
        return Err(ErrorCode::ResetEmailNotVerified.err());
    }
    let user_id = record
        .get(model.definition().id_name())
        .cloned()
        .unwrap_or(Value::Null);
    let mut token =
        oxbow_auth::users::new_token(s.reset_password_token_ttl.min(s.max_ttl), user_id);
    if s.restrict_reset_password_token_scope {
        token.insert("scopes".into(), json!(["reset-password"]));
    }
    let token_model = tokens(&ctx)?;
    let row = token_model.create(token, &Caller::anonymous()).await?;
    let payload = json!({
        "email": email,
        "accessToken": row.to_record(),
        "user": serde_json::to_value(model.view(&record)).unwrap_or(Value::Null),
        "options": options,
    });
    for (event, listener) in ctx.listeners.iter() {
        if event == "resetPasswordRequest" {
            listener(model.name(), &payload);
        }
    }
    Ok(Value::Null)
}

/// `confirm`: the emailed verification token marks the email verified.
async fn confirm(_ctx: Ctx, call: RemoteCall) -> Result<Value, RestError> {
    let model = &call.model;
    let uid = call.args.get("uid").cloned().unwrap_or(Value::Null);
    let token = call.args.get("token").cloned().unwrap_or(Value::Null);
    let Some(user) = model
        .find_by_id(&model.coerce_id(&uid), &call.caller)
        .await?
    else {
        return Err(ErrorCode::ConfirmUserNotFound.with(&[&js::to_js_string(&uid)]));
    };
    let record = user.to_record();
    if record.get("verificationToken") != Some(&token) {
        return Err(ErrorCode::ConfirmInvalidToken.with(&[&js::to_js_string(&token)]));
    }
    let mut patch = oxbow_core::Record::new();
    patch.insert("verificationToken".into(), Value::Null);
    patch.insert("emailVerified".into(), Value::Bool(true));
    let id = record
        .get(model.definition().id_name())
        .cloned()
        .unwrap_or(Value::Null);
    model
        .patch_attributes(&id, patch, true, &call.caller)
        .await?;
    Ok(Value::Null)
}

/// `verify` sends a mail; oxbow has no mail connector (LoopBack 3 without one crashes).
async fn verify(_ctx: Ctx, call: RemoteCall) -> Result<Value, RestError> {
    Err(ErrorCode::NotImplemented.with(&[
        &call.model.name(),
        &"prototype.verify (it needs a mail connector)",
    ]))
}
