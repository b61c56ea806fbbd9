//! Whether a caller may call a method, decided as LoopBack's `ACL.checkAccessForContext`
//! decides it: the model's static rules (ranked once per method at boot) and the rows of
//! the `ACL` model, the caller's principals, the built-in roles (`$everyone`,
//! `$authenticated`, `$unauthenticated`, `$owner`), roles of the `Role`/`RoleMapping`
//! models and resolvers plugins register, the most specific applicable rule deciding, and
//! the model's `defaultPermission` when none applies.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use oxbow_core::acl::{self, AccessRequest, AclRule, Permission};
use oxbow_core::connector::BoxFuture;
use oxbow_core::{Caller, ChangeStream, Filter, Model, Registry, Row};
use serde_json::Value;

/// What a role resolver is asked about (LoopBack's `AccessContext`).
#[derive(Debug, Clone)]
pub struct RoleContext {
    pub model: String,
    /// The model id the call is about (the instance, else `id` in the path, body or query).
    pub model_id: Option<Value>,
    pub property: String,
    pub access_type: String,
    pub caller: Caller,
}

/// A role resolver (`Role.registerResolver(name, fn)`), registered by a boot plugin.
pub type RoleResolver =
    Arc<dyn Fn(RoleContext) -> BoxFuture<'static, oxbow_core::Result<bool>> + Send + Sync>;

/// One method's static rules, ranked for it (`getStaticACLs` + `resolvePermission`'s sort).
#[derive(Debug, Clone, Default)]
pub struct MethodRules {
    pub request: Option<Arc<AccessRequest>>,
    pub ranked: Vec<(Option<i64>, AclRule)>,
}

impl MethodRules {
    /// Ranks `model`'s static rules for the method `name` with `aliases` and `access_type`.
    pub fn compile(model: &Model, name: &str, aliases: &[String], access_type: &str) -> Self {
        let request = AccessRequest {
            model: model.name().to_owned(),
            property: name.to_owned(),
            access_type: access_type.to_owned(),
            method_names: aliases.iter().cloned().chain([name.to_owned()]).collect(),
        };
        let statics: Vec<AclRule> = model
            .definition()
            .auth
            .acls
            .iter()
            .filter_map(|r| r.for_method(name))
            .collect();
        let ranked = acl::rank(statics, &request);
        Self {
            request: Some(Arc::new(request)),
            ranked,
        }
    }
}

/// A model's rows, loaded whole when first needed and dropped when its change feed says
/// anything changed.
pub(crate) struct Snapshot<T> {
    model: Arc<Model>,
    state: Mutex<(ChangeStream, Option<Arc<T>>)>,
    /// Set by this process's own writes at once (a logged feed delivers them a few
    /// milliseconds later).
    dirty: Arc<std::sync::atomic::AtomicBool>,
}

/// A flag the model's own writes set (after save, after delete), so what is cached from it
/// is dropped before the next read even where the feed delivers the change later.
pub(crate) fn written_flag(model: &Model, creates_too: bool) -> Arc<std::sync::atomic::AtomicBool> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    model.observe(oxbow_core::Operation::AfterSave, move |ctx| {
        if creates_too || ctx.is_new_instance != Some(true) {
            f.store(true, Ordering::Release);
        }
        Box::pin(async { Ok(()) })
    });
    let f = flag.clone();
    model.observe(oxbow_core::Operation::AfterDelete, move |_| {
        f.store(true, Ordering::Release);
        Box::pin(async { Ok(()) })
    });
    flag
}

impl<T> Snapshot<T> {
    pub(crate) fn new(model: Arc<Model>) -> Self {
        let changes = model.subscribe();
        let dirty = written_flag(&model, true);
        Self {
            model,
            state: Mutex::new((changes, None)),
            dirty,
        }
    }

    /// Drains the feed; `true` when something changed.
    fn drain(&self, state: &mut (ChangeStream, Option<Arc<T>>)) -> bool {
        let mut changed = self.dirty.swap(false, std::sync::atomic::Ordering::AcqRel);
        while let Some(r) = state.0.try_recv() {
            changed = true;
            if matches!(r, Err(oxbow_core::RecvError::Closed)) {
                break;
            }
        }
        if changed {
            state.1 = None;
        }
        changed
    }

    pub(crate) async fn get(
        &self,
        build: impl FnOnce(Vec<Arc<Row>>) -> T,
    ) -> oxbow_core::Result<Arc<T>> {
        {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            self.drain(&mut st);
            if let Some(v) = &st.1 {
                return Ok(v.clone());
            }
        }
        let rows = self
            .model
            .find(&Filter::default(), &Caller::anonymous())
            .await?;
        let value = Arc::new(build(rows));
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        // A change while loading: use what was read for this call, keep nothing.
        if !self.drain(&mut st) {
            st.1 = Some(value.clone());
        }
        Ok(value)
    }
}

/// The `Role` and `RoleMapping` rows, as `isInRole` queries them.
#[derive(Debug, Default)]
pub(crate) struct Roles {
    /// Role name → the id of the first role of that name (`findOne({where: {name}})`).
    by_name: HashMap<String, String>,
}

#[derive(Debug, Default)]
pub(crate) struct Mappings {
    /// (roleId, principalType, principalId), each as a string.
    set: HashSet<(String, String, String)>,
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(oxbow_core::js::to_js_string(other)),
    }
}

/// `matches(id1, id2)` of role.js: both present and not empty, equal as strings.
fn same_id(a: &Value, b: &Value) -> bool {
    let empty = |v: &Value| matches!(v, Value::Null) || v.as_str() == Some("");
    if empty(a) || empty(b) {
        return false;
    }
    a == b || oxbow_core::js::to_js_string(a) == oxbow_core::js::to_js_string(b)
}

/// The access-control data of an app: where ACL rows, roles and mappings live, and the
/// resolvers plugins registered.
pub struct Acls {
    rows: Option<Snapshot<Vec<AclRule>>>,
    roles: Option<Snapshot<Roles>>,
    mappings: Option<Snapshot<Mappings>>,
    resolvers: HashMap<String, RoleResolver>,
}

impl std::fmt::Debug for Acls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acls")
            .field("resolvers", &self.resolvers.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// One check: the method, its model, the id it is about, the caller.
pub struct Check<'a> {
    pub registry: &'a Registry,
    pub model: &'a Arc<Model>,
    pub rules: &'a MethodRules,
    /// The method's `accessScopes` (`None`: `["DEFAULT"]`).
    pub access_scopes: Option<&'a [String]>,
    pub model_id: Option<Value>,
    pub caller: &'a Caller,
}

impl Acls {
    /// The data of `registry`'s ACL, Role and RoleMapping models (watched only when
    /// `enabled`: an app without auth reads none of it).
    pub fn new(
        registry: &Registry,
        resolvers: HashMap<String, RoleResolver>,
        enabled: bool,
    ) -> Self {
        let model = |name: &str| registry.model(name).filter(|_| enabled).cloned();
        Self {
            rows: model("ACL").map(Snapshot::new),
            roles: model("Role").map(Snapshot::new),
            mappings: model("RoleMapping").map(Snapshot::new),
            resolvers,
        }
    }

    /// Whether the call is allowed.
    pub async fn allows(&self, check: &Check<'_>) -> oxbow_core::Result<bool> {
        self.decide(check, &mut Trace::default()).await
    }

    /// The decision, with `trace.assume_owner` standing in for the `$owner` lookup when set,
    /// and noting in `trace` whether a plugin's role resolver was asked.
    pub(crate) async fn decide(
        &self,
        check: &Check<'_>,
        trace: &mut Trace,
    ) -> oxbow_core::Result<bool> {
        let Some(req) = check.rules.request.as_deref() else {
            return Ok(true);
        };
        // Token scopes (default `DEFAULT`) must meet the method's.
        let token_scopes: Vec<String> = check
            .caller
            .token()
            .and_then(|t| t.scopes.clone())
            .unwrap_or_else(|| vec!["DEFAULT".to_owned()]);
        let default_scopes = ["DEFAULT".to_owned()];
        let method_scopes = check.access_scopes.unwrap_or(&default_scopes);
        if !method_scopes.iter().any(|s| token_scopes.contains(s)) {
            return Ok(false);
        }
        let dynamic = match &self.rows {
            Some(rows) => {
                let all = rows.get(acl_rows).await?;
                let names: Vec<&str> = req.method_names.iter().map(String::as_str).collect();
                all.iter()
                    .filter(|r| r.model == req.model || r.model == acl::ALL)
                    .filter(|r| match &r.property {
                        acl::PropertySpec::One(p) => p == acl::ALL || names.contains(&p.as_str()),
                        acl::PropertySpec::All => true,
                        acl::PropertySpec::Many(_) => false,
                    })
                    .filter(|r| {
                        r.access_type == req.access_type
                            || r.access_type == acl::ALL
                            || (req.access_type == "REPLICATE" && r.access_type == "WRITE")
                    })
                    .cloned()
                    .collect::<Vec<_>>()
            }
            None => Vec::new(),
        };
        let ranked_own;
        let ranked: &[(Option<i64>, AclRule)] = if dynamic.is_empty() {
            &check.rules.ranked
        } else {
            // The rows come first, then the static rules, before the stable sort.
            let mut all = dynamic;
            all.extend(check.rules.ranked.iter().map(|(_, r)| r.clone()));
            ranked_own = acl::rank(all, req);
            &ranked_own
        };
        let mut permission = Permission::Default;
        for (score, rule) in ranked {
            if score.is_none() {
                break;
            }
            if self.applies(rule, check, trace).await? {
                permission = rule.permission.unwrap_or(Permission::Default);
                break;
            }
        }
        if permission == Permission::Default {
            permission = check
                .model
                .definition()
                .auth
                .default_permission
                .unwrap_or(Permission::Allow);
        }
        Ok(permission != Permission::Deny)
    }

    /// Whether a rule's principal is the caller, or a role the caller is in.
    async fn applies(
        &self,
        rule: &AclRule,
        check: &Check<'_>,
        trace: &mut Trace,
    ) -> oxbow_core::Result<bool> {
        let principal = principal_of(check.caller);
        if let Some((ty, id)) = &principal {
            if *ty == rule.principal_type && *id == rule.principal_id {
                return Ok(true);
            }
        }
        if rule.principal_type != "ROLE" {
            return Ok(false);
        }
        self.in_role(&rule.principal_id, check, principal.as_ref(), trace)
            .await
    }

    async fn in_role(
        &self,
        role: &str,
        check: &Check<'_>,
        principal: Option<&(String, String)>,
        trace: &mut Trace,
    ) -> oxbow_core::Result<bool> {
        if let Some(resolver) = self.resolvers.get(role) {
            trace.resolver = true;
            let req = check.rules.request.as_deref();
            return resolver(RoleContext {
                model: check.model.name().to_owned(),
                model_id: check.model_id.clone(),
                property: req.map(|r| r.property.clone()).unwrap_or_default(),
                access_type: req.map(|r| r.access_type.clone()).unwrap_or_default(),
                caller: check.caller.clone(),
            })
            .await;
        }
        let user = check.caller.token().and_then(|t| t.user_id.clone());
        match role {
            acl::EVERYONE => return Ok(true),
            acl::AUTHENTICATED => return Ok(user.is_some()),
            acl::UNAUTHENTICATED => return Ok(user.is_none()),
            acl::OWNER => {
                if let Some(assumed) = trace.assume_owner {
                    return Ok(assumed && user.as_ref().is_some_and(oxbow_core::js::truthy));
                }
                return self.is_owner(check, user).await;
            }
            _ => {}
        }
        let Some((ty, id)) = principal else {
            return Ok(false);
        };
        let (Some(roles), Some(mappings)) = (&self.roles, &self.mappings) else {
            return Ok(false);
        };
        let roles = roles.get(role_rows).await?;
        let Some(role_id) = roles.by_name.get(role) else {
            return Ok(false);
        };
        let mappings = mappings.get(mapping_rows).await?;
        Ok(mappings
            .set
            .contains(&(role_id.clone(), ty.clone(), id.clone())))
    }

    /// The `$owner` resolver (`Role.isOwner`).
    async fn is_owner(&self, check: &Check<'_>, user: Option<Value>) -> oxbow_core::Result<bool> {
        let Some(model_id) = check
            .model_id
            .as_ref()
            .filter(|v| oxbow_core::js::truthy(v))
        else {
            return Ok(false);
        };
        let Some(user) = user.filter(oxbow_core::js::truthy) else {
            return Ok(false);
        };
        // Several user models sharing one token model (a polymorphic relation) are not
        // supported: a token's principalType is always USER here.
        if check
            .caller
            .token()
            .is_some_and(|t| t.principal_type.as_deref().is_some_and(|p| p != "USER"))
        {
            return Ok(false);
        }
        let owners = Owners::of(check.model, check.registry);
        if owners.by_id {
            return Ok(same_id(model_id, &user));
        }
        let anon = Caller::anonymous();
        let id = check.model.coerce_id(model_id);
        let Some(row) = check.model.find_by_id(&id, &anon).await? else {
            return Ok(false);
        };
        let record = row.to_record();
        for owner in owners.candidates(&|k| record.get(k).cloned()) {
            match owner {
                Owner::Direct(owner) => return Ok(same_id(&owner, &user)),
                Owner::Via { target, fk } => {
                    let Some(target) = check.registry.model(target) else {
                        continue;
                    };
                    let fk = target.coerce_id(&fk);
                    if let Some(u) = target.find_by_id(&fk, &anon).await? {
                        let uid = u.to_record().get(target.definition().id_name()).cloned();
                        if uid.is_some_and(|uid| same_id(&uid, &user)) {
                            return Ok(true);
                        }
                    }
                }
            }
        }
        Ok(false)
    }
}

/// What a decision saw: an assumed answer to `$owner`, and whether a resolver was asked.
#[derive(Debug, Default)]
pub(crate) struct Trace {
    pub assume_owner: Option<bool>,
    pub resolver: bool,
}

/// How `Role.isOwner` finds a record's owner, for one model.
#[derive(Debug, Clone)]
pub struct Owners {
    /// The model is User-based: a record is its own owner (the id is the user's).
    pub by_id: bool,
    /// LoopBack's legacy check: `userId`, else `owner`, before the relations (`None`:
    /// `ownerRelations` is set, only relations count).
    legacy: Option<Legacy>,
    /// The belongsTo relations to User-based models that may name the owner: (foreign
    /// key, target model).
    relations: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy)]
struct Legacy {
    /// A relation is named `userId` (so the property does not count).
    user_id_is_relation: bool,
    /// A relation is named `owner`.
    owner_is_relation: bool,
}

/// One way a record names its owner.
#[derive(Debug, Clone, PartialEq)]
pub enum Owner<'a> {
    /// The owner's id itself (`userId`/`owner`): decisive.
    Direct(Value),
    /// A belongsTo foreign key: the owner when that user exists.
    Via { target: &'a str, fk: Value },
}

impl Owners {
    /// The owner rules of `model`, as `Role.isOwner` applies them.
    pub fn of(model: &Model, registry: &Registry) -> Self {
        let def = model.definition();
        let is_user_model = |name: &str| {
            registry
                .model(name)
                .is_some_and(|m| m.definition().auth.user.is_some())
        };
        let user_relations = def
            .relations
            .iter()
            .filter(|r| r.kind == oxbow_core::RelationKind::BelongsTo && is_user_model(&r.target));
        let pair = |r: &oxbow_core::Relation| (r.foreign_key.clone(), r.target.clone());
        let relation_named = |n: &str| def.relations.iter().any(|r| r.name == n);
        let (legacy, relations) = match &def.auth.owner_relations {
            None => (
                Some(Legacy {
                    user_id_is_relation: relation_named("userId"),
                    owner_is_relation: relation_named("owner"),
                }),
                user_relations.take(1).map(pair).collect(),
            ),
            Some(oxbow_core::OwnerRelations::All) => (None, user_relations.map(pair).collect()),
            Some(oxbow_core::OwnerRelations::Named(names)) => (
                None,
                user_relations
                    .filter(|r| names.contains(&r.name))
                    .map(pair)
                    .collect(),
            ),
        };
        Self {
            by_id: def.auth.user.is_some(),
            legacy,
            relations,
        }
    }

    /// The record's owners, in the order `isOwner` tries them (a `Direct` one decides).
    pub fn candidates(&self, get: &dyn Fn(&str) -> Option<Value>) -> Vec<Owner<'_>> {
        if let Some(l) = self.legacy {
            // `userId`, else `owner` (unless a relation of that name hides it).
            let owner = match get("userId") {
                Some(v) if oxbow_core::js::truthy(&v) && !l.user_id_is_relation => Some(v),
                _ if l.owner_is_relation => None,
                _ => get("owner"),
            };
            if let Some(owner) = owner.filter(oxbow_core::js::truthy) {
                return vec![Owner::Direct(owner)];
            }
        }
        self.relations
            .iter()
            .filter_map(|(fk, target)| {
                let fk = get(fk).filter(|v| !v.is_null())?;
                Some(Owner::Via { target, fk })
            })
            .collect()
    }
}

/// The caller's principal: its token's user (`USER`, or the token's `principalType`).
fn principal_of(caller: &Caller) -> Option<(String, String)> {
    let t = caller.token()?;
    Some((
        t.principal_type
            .clone()
            .unwrap_or_else(|| "USER".to_owned()),
        t.user_key()?,
    ))
}

fn acl_rows(rows: Vec<Arc<Row>>) -> Vec<AclRule> {
    rows.iter()
        .filter_map(|row| {
            let record = row.to_record();
            // A row names its model, property and access type; rows without them match no
            // query LoopBack makes (`inq` never matches a missing value).
            text(record.get("model"))?;
            let property = text(record.get("property"))?;
            text(record.get("accessType"))?;
            let mut rule = AclRule::from_map("*", &record).ok()?;
            rule.property = acl::PropertySpec::One(property);
            Some(rule)
        })
        .collect()
}

fn role_rows(rows: Vec<Arc<Row>>) -> Roles {
    let mut by_name = HashMap::new();
    for row in rows {
        let r = row.to_record();
        if let (Some(name), Some(id)) = (text(r.get("name")), text(r.get("id"))) {
            by_name.entry(name).or_insert(id);
        }
    }
    Roles { by_name }
}

fn mapping_rows(rows: Vec<Arc<Row>>) -> Mappings {
    let mut set = HashSet::new();
    for row in rows {
        let r = row.to_record();
        if let (Some(role), Some(ty), Some(id)) = (
            text(r.get("roleId")),
            text(r.get("principalType")),
            text(r.get("principalId")),
        ) {
            set.insert((role, ty, id));
        }
    }
    Mappings { set }
}
