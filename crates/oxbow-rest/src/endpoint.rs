//! The endpoint table: every route the REST root answers, per model, built once at boot from
//! the registry and matched by [`ModelEndpoints::find`] on every request.
//!
//! An [`Endpoint`] is one strong-remoting method (`find`, `prototype.__get__orders`, a remote
//! method of the model's JSON) with what an ACL check, an explorer or a metric needs: its
//! name and aliases, access type, arguments, results and error codes. A [`Route`] is one verb
//! and path of an endpoint (`exists` has two). Routes are kept in strong-remoting's order
//! (`sortRoutes`: verb descending with `all` last, then part by part, literal parts before
//! `:params`, longer paths first) and the first one whose verb handles the request's and
//! whose path matches wins, as Express's router picks it. `sharedMethods` (config.json and
//! model-config) removes endpoints before the routes are ordered.

use std::cmp::Ordering;
use std::sync::Arc;

use oxbow_core::relation::Relation;

use crate::error::ErrorCode;
use crate::relations::RelOp;
use crate::remote::RemoteMethod;
use crate::routes::Op;

/// LoopBack's access types (`ACL.READ`, …), as `_getAccessTypeForMethod` assigns them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    Execute,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "READ",
            Self::Write => "WRITE",
            Self::Execute => "EXECUTE",
        }
    }

    /// A method without an explicit `accessType`: GET and HEAD read, some names write or
    /// read, everything else executes.
    pub fn default_for(name: &str, verb: Option<&str>) -> Self {
        if verb.is_some_and(|v| v.eq_ignore_ascii_case("get") || v.eq_ignore_ascii_case("head")) {
            return Self::Read;
        }
        match name {
            "create" | "updateOrCreate" | "upsertWithWhere" | "upsert" | "destroyById"
            | "deleteById" | "removeById" => Self::Write,
            "exists" | "findById" | "find" | "findOne" | "count" => Self::Read,
            _ => Self::Execute,
        }
    }

    /// `"READ"`, `"WRITE"`, `"EXECUTE"` (LoopBack also has `REPLICATE`, which no REST
    /// method oxbow serves declares).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "READ" => Some(Self::Read),
            "WRITE" => Some(Self::Write),
            "EXECUTE" => Some(Self::Execute),
            _ => None,
        }
    }
}

/// Where an argument comes from (`http.source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Path,
    Query,
    /// The whole body.
    Body,
    /// A field of the body.
    Form,
    Header,
    /// strong-remoting's search when no source is given: path, body field, query, header.
    Any,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Path => "path",
            Self::Query => "query",
            Self::Body => "body",
            Self::Form => "form",
            Self::Header => "header",
            Self::Any => "",
        }
    }
}

/// One declared argument (`accepts`).
#[derive(Debug, Clone)]
pub struct Arg {
    pub name: String,
    /// strong-remoting's type, lower case: `any`, `object`, `number`, `string`, `boolean`, …
    pub ty: String,
    pub source: Source,
    pub required: bool,
    /// `create`'s `data` takes an array too.
    pub allow_array: bool,
    /// The model a `data` argument describes.
    pub model: Option<String>,
}

impl Arg {
    fn new(name: &str, ty: &str, source: Source) -> Self {
        Self {
            name: name.to_owned(),
            ty: ty.to_owned(),
            source,
            required: false,
            allow_array: false,
            model: None,
        }
    }

    pub(crate) fn id(name: &str) -> Self {
        Self {
            required: true,
            ..Self::new(name, "any", Source::Path)
        }
    }

    pub(crate) fn data(model: &str) -> Self {
        Self {
            model: Some(model.to_owned()),
            ..Self::new("data", "object", Source::Body)
        }
    }

    pub(crate) fn object(name: &str, source: Source) -> Self {
        Self::new(name, "object", source)
    }

    pub(crate) fn of(name: &str, ty: &str, source: Source) -> Self {
        Self::new(name, ty, source)
    }
}

/// One declared result (`returns`).
#[derive(Debug, Clone)]
pub struct Returns {
    pub arg: String,
    /// `Customer`, `[Customer]` (an array of), `number`, `boolean`, `object`,
    /// `ReadableStream`, or a remote method's own type.
    pub ty: String,
    /// The value is the whole body, not a property of it.
    pub root: bool,
}

impl Returns {
    pub(crate) fn new(arg: &str, ty: &str, root: bool) -> Self {
        Self {
            arg: arg.to_owned(),
            ty: ty.to_owned(),
            root,
        }
    }
}

/// What an endpoint runs.
#[derive(Debug, Clone)]
pub enum Action {
    /// A PersistedModel method (and the change streams).
    Crud(Op),
    /// A relation method.
    Relation { relation: Box<Relation>, op: RelOp },
    /// nestRemoting: the target's relation method `op` on `inner`, reached through one of
    /// `relation`'s items (`/:id/<relation>/:nk/<inner>…`).
    Nested {
        relation: Box<Relation>,
        inner: Box<Relation>,
        op: RelOp,
    },
    /// A remote method of the model's JSON `methods`.
    Remote(Arc<RemoteMethod>),
    /// A method of one of the model's `scopes`.
    Scope {
        filter: Arc<serde_json::Map<String, serde_json::Value>>,
        op: ScopeOp,
    },
}

/// What a scope method does (`__get__vintage`, `__create__`, `__delete__`, `__count__`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeOp {
    List,
    Create,
    DeleteAll,
    Count,
}

/// One strong-remoting method of a model.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The model's name (`Customer`).
    pub model: String,
    /// The method name relative to the model: `find`, `prototype.patchAttributes`,
    /// `prototype.__get__orders`, `greet`.
    pub name: String,
    /// Other names ACLs and `sharedMethods` may use (`upsert`, `updateOrCreate`, …).
    pub aliases: Vec<String>,
    pub is_static: bool,
    pub access: Access,
    pub accepts: Vec<Arg>,
    pub returns: Vec<Returns>,
    /// The error codes the endpoint can answer with, besides those of any request (body
    /// parsing, routing).
    pub errors: Vec<ErrorCode>,
    pub action: Action,
    /// Exposed unless `sharedMethods` says otherwise (`destroyAll` is not).
    pub shared: bool,
    /// Its routes: (verb as strong-remoting writes it, lower case; path under the model).
    pub http: Vec<(String, String)>,
    /// The model's static ACL rules for this method, ranked once at boot
    /// ([`Endpoints::compile_acls`]); empty until then.
    pub acl: oxbow_auth::MethodRules,
}

impl Endpoint {
    /// `Customer.find`, `Customer.prototype.__get__orders`.
    pub fn full_name(&self) -> String {
        format!("{}.{}", self.model, self.name)
    }

    /// The name without `prototype.` (what ACL `property` entries use).
    pub fn property(&self) -> &str {
        self.name.strip_prefix("prototype.").unwrap_or(&self.name)
    }
}

/// One part of a route's path under the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Lit(Box<str>),
    Param(Box<str>),
}

/// One verb and path of an endpoint.
#[derive(Debug, Clone)]
pub struct Route {
    /// Lower case, as strong-remoting keeps it (`get`, `post`, `delete`, `all`, …).
    pub verb: Box<str>,
    /// As strong-remoting joins it (`/`, `/count`, `/:id/orders/:fk`).
    pub path: Box<str>,
    pub segs: Vec<Seg>,
    /// Index of the endpoint in [`ModelEndpoints::endpoints`].
    pub endpoint: usize,
}

impl Route {
    /// Whether an Express route of this verb handles a request of `method` (an `all` route
    /// handles every method, a `get` route also HEAD).
    fn handles(&self, method: &str) -> bool {
        let v = &*self.verb;
        v == "all" || v.eq_ignore_ascii_case(method) || (v == "get" && method == "HEAD")
    }

    /// Express's match of the path (case-insensitive literals, a param takes one segment).
    fn matches<'r>(&self, path: &[&'r str]) -> Option<Vec<&'r str>> {
        if self.segs.len() != path.len() {
            return None;
        }
        let mut values = Vec::new();
        for (seg, got) in self.segs.iter().zip(path) {
            match seg {
                Seg::Lit(l) if l.eq_ignore_ascii_case(got) => {}
                Seg::Lit(_) => return None,
                Seg::Param(_) => values.push(*got),
            }
        }
        Some(values)
    }

    /// The value of the `:name` param in a match of this route.
    pub fn param<'r>(&self, values: &[&'r str], name: &str) -> Option<&'r str> {
        self.segs
            .iter()
            .filter_map(|s| match s {
                Seg::Param(p) => Some(&**p),
                Seg::Lit(_) => None,
            })
            .zip(values)
            .find(|(p, _)| *p == name)
            .map(|(_, v)| *v)
    }

    /// The params of a match, by name.
    pub fn params<'s, 'r>(
        &'s self,
        values: &'s [&'r str],
    ) -> impl Iterator<Item = (&'s str, &'r str)> + 's {
        self.segs
            .iter()
            .filter_map(|s| match s {
                Seg::Param(p) => Some(&**p),
                Seg::Lit(_) => None,
            })
            .zip(values.iter().copied())
    }
}

/// A request matched to a route.
#[derive(Debug)]
pub struct Matched<'t, 'r> {
    pub route: &'t Route,
    pub endpoint: &'t Endpoint,
    /// The path params' values (percent-encoded), in path order.
    pub values: Vec<&'r str>,
}

impl<'r> Matched<'_, 'r> {
    pub fn param(&self, name: &str) -> Option<&'r str> {
        self.route.param(&self.values, name)
    }
}

/// A model's endpoints and their routes in matching order.
#[derive(Debug, Default)]
pub struct ModelEndpoints {
    /// Every endpoint the model defines, shared or not, in definition order.
    pub endpoints: Vec<Endpoint>,
    /// The routes of the shared endpoints, in strong-remoting's order.
    pub routes: Vec<Route>,
    /// For each verb of [`VERBS`], the routes that handle it, in order: a request only
    /// tries those.
    by_verb: [Vec<usize>; VERBS.len()],
}

/// The verbs requests are matched by without scanning every route.
const VERBS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

impl ModelEndpoints {
    /// Orders the shared endpoints' routes as strong-remoting does.
    pub fn new(endpoints: Vec<Endpoint>) -> Self {
        let mut routes = Vec::new();
        for (i, e) in endpoints.iter().enumerate() {
            if !e.shared {
                continue;
            }
            for (verb, path) in &e.http {
                let verb = match verb.as_str() {
                    "del" => "delete".to_owned(),
                    v => v.to_ascii_lowercase(),
                };
                routes.push(Route {
                    segs: segments(path),
                    verb: verb.into(),
                    path: path.as_str().into(),
                    endpoint: i,
                });
            }
        }
        routes.sort_by(|a, b| compare_routes(&a.verb, &a.path, &b.verb, &b.path));
        let by_verb = VERBS.map(|verb| {
            routes
                .iter()
                .enumerate()
                .filter(|(_, r)| r.handles(verb))
                .map(|(i, _)| i)
                .collect()
        });
        Self {
            endpoints,
            routes,
            by_verb,
        }
    }

    /// The first route that handles `method` on `path` (the segments after the model's).
    pub fn find<'t, 'r>(&'t self, method: &str, path: &[&'r str]) -> Option<Matched<'t, 'r>> {
        let hit = |route: &'t Route| {
            route.matches(path).map(|values| Matched {
                route,
                endpoint: &self.endpoints[route.endpoint],
                values,
            })
        };
        match VERBS.iter().position(|v| *v == method) {
            Some(v) => self.by_verb[v].iter().find_map(|&i| hit(&self.routes[i])),
            None => self
                .routes
                .iter()
                .filter(|r| r.handles(method))
                .find_map(hit),
        }
    }

    /// The endpoint named `name` (`find`, `prototype.__get__orders`), shared or not.
    pub fn endpoint(&self, name: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.name == name)
    }

    /// Applies `sharedMethods` (config.json's map, then the model's from model-config, merged
    /// key by key) as loopback's `configureSharedMethods` does: an exact key decides alone
    /// (`true` shares even a method that is not shared by default); otherwise every glob
    /// that matches applies in key order, and a `false` one disables for good.
    pub fn share(endpoints: &mut [Endpoint], settings: &[(String, bool)]) {
        if settings.is_empty() {
            return;
        }
        for e in endpoints.iter_mut() {
            if let Some((_, on)) = settings.iter().find(|(k, _)| *k == e.name) {
                e.shared = *on;
                continue;
            }
            let mut disabled = false;
            for (key, on) in settings.iter().filter(|(k, _)| k.contains('*')) {
                if glob_matches(key, &e.name) {
                    if *on {
                        e.shared = true;
                    } else {
                        disabled = true;
                    }
                }
            }
            if disabled {
                e.shared = false;
            }
        }
        // oxbow's one-record stream follows LoopBack's `createChangeStream` unless it is named
        // itself: an app that turned change streams off must not leak them through `/:id`.
        let all_off = endpoints
            .iter()
            .any(|e| e.name == "createChangeStream" && !e.shared);
        let named = settings
            .iter()
            .any(|(k, _)| k == "prototype.createChangeStream");
        if all_off && !named {
            for e in endpoints
                .iter_mut()
                .filter(|e| e.name == "prototype.createChangeStream")
            {
                e.shared = false;
            }
        }
    }
}

/// Every model's endpoints, in registry order: the one table dispatch matches against,
/// `oxbow routes` prints, and ACLs and the explorer read.
#[derive(Debug, Default)]
pub struct Endpoints {
    models: Vec<ModelEndpoints>,
}

impl Endpoints {
    /// The table of `models` (in registry order): each one's CRUD methods (for persisted
    /// models), its relations' methods and the remote methods its JSON declares, with
    /// `sharedMethods` (the app's, then the model's) applied.
    pub fn build(models: &[&oxbow_core::ModelDefinition], app_shared: &[(String, bool)]) -> Self {
        let settings: Vec<Vec<(String, bool)>> = models
            .iter()
            .map(|def| merge_shared_methods(app_shared, &def.remoting.shared_methods))
            .collect();
        let mut tables: Vec<Vec<Endpoint>> = models
            .iter()
            .zip(&settings)
            .map(|(def, settings)| {
                let mut endpoints = Vec::new();
                if def.is_persisted() {
                    endpoints.extend(crate::routes::endpoints(def));
                    endpoints.extend(crate::relations::endpoints(def));
                    endpoints.extend(scope_endpoints(def));
                }
                for m in RemoteMethod::declared(def) {
                    endpoints.push(Arc::new(m).endpoint(def.name.as_str()));
                }
                ModelEndpoints::share(&mut endpoints, settings);
                endpoints
            })
            .collect();
        for i in 0..models.len() {
            let mut nested = nested_endpoints(models, &tables, i);
            ModelEndpoints::share(&mut nested, &settings[i]);
            tables[i].extend(nested);
        }
        Self {
            models: tables.into_iter().map(ModelEndpoints::new).collect(),
        }
    }

    /// The endpoints of the model at `index` in the registry.
    /// Ranks each endpoint's static ACL rules for it (`models` in registry order).
    pub fn compile_acls(&mut self, models: &[Arc<oxbow_core::Model>]) {
        for (table, model) in self.models.iter_mut().zip(models) {
            for ep in &mut table.endpoints {
                let aliases: Vec<String> = ep
                    .aliases
                    .iter()
                    .map(|a| a.strip_prefix("prototype.").unwrap_or(a).to_owned())
                    .collect();
                // A stream ticket is decided as the stream it opens.
                let property = match ep.action {
                    Action::Crud(crate::routes::Op::ChangeStreamTicket) => "createChangeStream",
                    _ => ep.property(),
                };
                ep.acl =
                    oxbow_auth::MethodRules::compile(model, property, &aliases, ep.access.as_str());
            }
        }
    }

    pub fn at(&self, index: usize) -> Option<&ModelEndpoints> {
        self.models.get(index)
    }

    /// Every model's endpoints, in registry order.
    pub fn models(&self) -> &[ModelEndpoints] {
        &self.models
    }
}

/// One scope method: what it does, its name's verb, access type, HTTP verb, path tail,
/// arguments and results.
type ScopeMethod<'a> = (
    ScopeOp,
    &'a str,
    Access,
    &'a str,
    &'a str,
    Vec<Arg>,
    Vec<Returns>,
);

/// The methods of a model's `scopes`, as loopback's `scopeRemoting` defines them: static
/// `__get__<scope>` (`GET /<scope>`), `__create__` (`POST`), `__delete__` (`DELETE`) and
/// `__count__` (`GET /<scope>/count`).
fn scope_endpoints(def: &oxbow_core::ModelDefinition) -> Vec<Endpoint> {
    let model = def.name.as_str();
    let mut out = Vec::new();
    for (name, filter) in &def.remoting.scopes {
        let filter = Arc::new(filter.clone());
        let mut data = Arg::data(model);
        data.allow_array = true;
        let defs: [ScopeMethod; 4] = [
            (
                ScopeOp::List,
                "get",
                Access::Read,
                "get",
                "",
                vec![Arg::object("filter", Source::Any)],
                vec![Returns::new(name, &format!("[{model}]"), true)],
            ),
            (
                ScopeOp::Create,
                "create",
                Access::Write,
                "post",
                "",
                vec![data],
                vec![Returns::new("data", model, true)],
            ),
            (
                ScopeOp::DeleteAll,
                "delete",
                Access::Write,
                "delete",
                "",
                vec![],
                vec![],
            ),
            (
                ScopeOp::Count,
                "count",
                Access::Read,
                "get",
                "/count",
                vec![Arg::object("where", Source::Any)],
                vec![Returns::new("count", "number", false)],
            ),
        ];
        for (op, verb_name, access, verb, tail, accepts, returns) in defs {
            out.push(Endpoint {
                model: model.to_owned(),
                name: format!("__{verb_name}__{name}"),
                aliases: Vec::new(),
                is_static: true,
                access,
                accepts,
                returns,
                errors: vec![
                    ErrorCode::NotAnObject,
                    ErrorCode::ObjectNotParsable,
                    ErrorCode::ArrayItemNotObject,
                    ErrorCode::Model,
                ],
                action: Action::Scope {
                    filter: filter.clone(),
                    op,
                },
                shared: true,
                http: vec![(verb.to_owned(), format!("/{name}{tail}"))],
                acl: Default::default(),
            });
        }
    }
    out
}

/// nestRemoting's methods of the model at `index`: for each to-many relation with
/// `nestRemoting`, the target's relation methods, under `/:id/<relation>/:nk`, named
/// `prototype.__<op>__<relation>__<targetRelation>`. Which ones, as loopback-boot's order of
/// `app.model()` calls decides them (model-config order): the nesting happens when the
/// relation is complete (its source, target and through model attached), and copies the
/// target's relations complete by then, minus the methods the target's own `sharedMethods`
/// disabled, unless the target is the model that completed the relation (its settings come
/// later in that pass). The nesting model's own `sharedMethods` then apply to the copies.
fn nested_endpoints(
    models: &[&oxbow_core::ModelDefinition],
    tables: &[Vec<Endpoint>],
    index: usize,
) -> Vec<Endpoint> {
    use oxbow_core::RelationKind;
    let position = |name: &str| models.iter().position(|d| d.name.as_str() == name);
    // The `app.model()` call that completes `rel` of `def` (its position).
    let completed = |def: &oxbow_core::ModelDefinition, rel: &Relation| {
        let mut at = position(def.name.as_str()).unwrap_or(0);
        if let Some(t) = position(&rel.target) {
            at = at.max(t);
        }
        // hasAndBelongsToMany's through model is made with the relation.
        if rel.kind == RelationKind::HasManyThrough {
            if let Some(t) = rel.through.as_deref().and_then(position) {
                at = at.max(t);
            }
        }
        at
    };
    let plain = |name: &str| !name.is_empty() && !name.contains('_');
    let def = models[index];
    let mut out = Vec::new();
    for rel in &def.relations {
        let many = matches!(
            rel.kind,
            RelationKind::HasMany | RelationKind::EmbedsMany | RelationKind::ReferencesMany
        ) || rel.kind.is_through();
        if !rel.nest_remoting || !many || !plain(&rel.name) {
            continue;
        }
        let Some(t) = position(&rel.target) else {
            continue;
        };
        let at = completed(def, rel);
        let target_settings_applied = t != at;
        for inner in &models[t].relations {
            if !plain(&inner.name) || completed(models[t], inner) > at {
                continue;
            }
            for m in &tables[t] {
                let Action::Relation { relation, op } = &m.action else {
                    continue;
                };
                if relation.name != inner.name || (target_settings_applied && !m.shared) {
                    continue;
                }
                let http = m
                    .http
                    .iter()
                    .map(|(verb, path)| {
                        let tail = path.strip_prefix("/:id").unwrap_or(path);
                        (verb.clone(), format!("/:id/{}/:nk{tail}", rel.name))
                    })
                    .collect();
                let mut accepts = vec![Arg::id("id"), Arg::id("nk")];
                accepts.extend(m.accepts.iter().filter(|a| a.name != "id").cloned());
                out.push(Endpoint {
                    model: def.name.to_string(),
                    name: format!(
                        "prototype.__{}__{}__{}",
                        op.verb_name(),
                        rel.name,
                        inner.name
                    ),
                    aliases: Vec::new(),
                    is_static: false,
                    access: m.access,
                    accepts,
                    returns: m.returns.clone(),
                    errors: [&[ErrorCode::RelatedNotFound][..], &m.errors].concat(),
                    action: Action::Nested {
                        relation: Box::new(rel.clone()),
                        inner: relation.clone(),
                        op: *op,
                    },
                    shared: true,
                    http,
                    acl: Default::default(),
                });
            }
        }
    }
    out
}

/// The merged `sharedMethods` settings: the app's, then the model's over them key by key
/// (a key the app has keeps its place, as `util._extend` keeps it).
pub fn merge_shared_methods(
    app: &[(String, bool)],
    model: &[(String, bool)],
) -> Vec<(String, bool)> {
    let mut out = app.to_vec();
    for (k, v) in model {
        match out.iter_mut().find(|(key, _)| key == k) {
            Some(slot) => slot.1 = *v,
            None => out.push((k.clone(), *v)),
        }
    }
    out
}

/// A `sharedMethods` glob: `*` is any run of characters and the pattern is not anchored
/// (`find*` matches `prototype.__findById__orders`), as loopback turns it into a RegExp.
pub fn glob_matches(glob: &str, name: &str) -> bool {
    let mut rest = name;
    for part in glob.split('*').filter(|p| !p.is_empty()) {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

fn segments(path: &str) -> Vec<Seg> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| match s.strip_prefix(':') {
            Some(p) => Seg::Param(p.into()),
            None => Seg::Lit(s.into()),
        })
        .collect()
}

/// strong-remoting's `sortRoutes`: verbs in descending order (`put`, `post`, `patch`,
/// `head`, `get`, `delete`, then `all`), then the paths part by part: an empty part after a
/// non-empty one, a `:param` after a literal, then plain string order; when one path is a
/// prefix of the other, the longer comes first.
pub fn compare_routes(verb_a: &str, path_a: &str, verb_b: &str, path_b: &str) -> Ordering {
    match verb_b.cmp(verb_a) {
        Ordering::Equal => {}
        other => return other,
    }
    let a: Vec<&str> = path_a.split('/').collect();
    let b: Vec<&str> = path_b.split('/').collect();
    for (x, y) in a.iter().zip(&b) {
        match (x.is_empty(), y.is_empty()) {
            (true, false) => return Ordering::Greater,
            (false, true) => return Ordering::Less,
            _ => {}
        }
        match (x.starts_with(':'), y.starts_with(':')) {
            (true, false) => return Ordering::Greater,
            (false, true) => return Ordering::Less,
            _ => {}
        }
        match x.cmp(y) {
            Ordering::Equal => {}
            other => return other,
        }
    }
    b.len().cmp(&a.len())
}

/// strong-remoting's `joinPaths`: an instance method's path under the `/:id` of its model.
pub fn join_paths(left: &str, right: &str) -> String {
    if left.is_empty() {
        return right.to_owned();
    }
    if right.is_empty() || right == "/" {
        return left.to_owned();
    }
    match (left.ends_with('/'), right.starts_with('/')) {
        (true, true) => format!("{left}{}", &right[1..]),
        (false, false) => format!("{left}/{right}"),
        _ => format!("{left}{right}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_are_unanchored() {
        assert!(glob_matches("find*", "prototype.__findById__orders"));
        assert!(glob_matches("*", "find"));
        assert!(glob_matches(
            "prototype.__*__tags",
            "prototype.__link__tags"
        ));
        assert!(!glob_matches(
            "prototype.__*__tags",
            "prototype.__get__orders"
        ));
        assert!(glob_matches("*Id", "findById"));
    }

    #[test]
    fn routes_sort_as_strong_remoting_sorts_them() {
        let mut routes = vec![
            ("all", "/greet"),
            ("get", "/:id"),
            ("get", "/"),
            ("get", "/count"),
            ("head", "/:id"),
            ("get", "/:id/exists"),
            ("put", "/:id/tags/:fk"),
            ("put", "/:id/tags/rel/:fk"),
            ("delete", "/:id"),
        ];
        routes.sort_by(|a, b| compare_routes(a.0, a.1, b.0, b.1));
        assert_eq!(
            routes,
            [
                ("put", "/:id/tags/rel/:fk"),
                ("put", "/:id/tags/:fk"),
                ("head", "/:id"),
                ("get", "/count"),
                ("get", "/:id/exists"),
                ("get", "/:id"),
                ("get", "/"),
                ("delete", "/:id"),
                ("all", "/greet"),
            ]
        );
    }

    #[test]
    fn shared_methods_follow_configure_shared_methods() {
        let ep = |name: &str, shared: bool| Endpoint {
            model: "Car".into(),
            name: name.into(),
            aliases: Vec::new(),
            is_static: !name.starts_with("prototype."),
            access: Access::Read,
            accepts: Vec::new(),
            returns: Vec::new(),
            errors: Vec::new(),
            action: Action::Crud(Op::Find),
            shared,
            http: Vec::new(),
            acl: Default::default(),
        };
        let mut eps = vec![
            ep("find", true),
            ep("findById", true),
            ep("prototype.__findById__parts", true),
            ep("destroyAll", false),
            ep("count", true),
        ];
        let settings = merge_shared_methods(
            &[("*".into(), false), ("count".into(), false)],
            &[
                ("find*".into(), true),
                ("count".into(), true),
                ("destroyAll".into(), true),
            ],
        );
        ModelEndpoints::share(&mut eps, &settings);
        let shared: Vec<(&str, bool)> = eps.iter().map(|e| (e.name.as_str(), e.shared)).collect();
        assert_eq!(
            shared,
            [
                // `*: false` disabled them; a later `true` glob does not undo it.
                ("find", false),
                ("findById", false),
                ("prototype.__findById__parts", false),
                // Exact keys decide alone.
                ("destroyAll", true),
                ("count", true),
            ]
        );
        let mut streams = vec![
            ep("createChangeStream", true),
            ep("prototype.createChangeStream", true),
        ];
        ModelEndpoints::share(&mut streams, &[("createChangeStream".into(), false)]);
        assert!(streams.iter().all(|e| !e.shared), "both streams off");
        let mut streams = vec![
            ep("createChangeStream", true),
            ep("prototype.createChangeStream", true),
        ];
        ModelEndpoints::share(
            &mut streams,
            &[
                ("createChangeStream".into(), false),
                ("prototype.createChangeStream".into(), true),
            ],
        );
        assert!(streams[1].shared, "named on its own, it stays");
    }
}
