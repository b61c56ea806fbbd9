//! The methods LoopBack 3 defines for relations (`/Customers/:id/orders`, `/count`, `/:fk`,
//! `/rel/:fk`, hasOne's `GET/POST/PUT/DELETE /:id/profile`, nestRemoting's belongsTo), as
//! endpoints of the model's table, answered with LoopBack's statuses and bodies.
//! Writes go through the related model, so its change stream sees them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse};
use serde_json::{Map, Value, json};

use oxbow_core::relation::{self, Relation, RelationKind, key_of};
use oxbow_core::{Caller, Model, Registry, Row};

use crate::endpoint::{Access, Action, Arg, Endpoint, Returns, Source};
use crate::error::ErrorCode as E;
use crate::routes::sloppy_any;
use crate::{
    Body, DataArg, Outcome, RestError, data_arg, plans, query_or_header, reply, rows_reply,
    written_reply,
};

/// What a relation route does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelOp {
    /// belongsTo / hasOne `GET /:id/rel`.
    Get,
    /// hasMany `GET /:id/rel`.
    List,
    Create,
    /// hasOne `PUT /:id/rel`.
    Update,
    /// hasOne `DELETE /:id/rel`.
    Destroy,
    DeleteAll,
    Count,
    FindById,
    UpdateById,
    DestroyById,
    /// `PUT /:id/rel/rel/:fk`.
    Link,
    Unlink,
    /// `HEAD /:id/rel/rel/:fk`.
    Exists,
}

impl RelOp {
    /// The verb in strong-remoting's name of the method (`__get__orders`, `__link__tags`).
    pub fn verb_name(self) -> &'static str {
        match self {
            Self::Get | Self::List => "get",
            Self::Create => "create",
            Self::Update => "update",
            Self::Destroy => "destroy",
            Self::DeleteAll => "delete",
            Self::Count => "count",
            Self::FindById => "findById",
            Self::UpdateById => "updateById",
            Self::DestroyById => "destroyById",
            Self::Link => "link",
            Self::Unlink => "unlink",
            Self::Exists => "exists",
        }
    }
}

/// A matched relation route.
#[derive(Debug, Clone)]
pub struct RelRoute<'a> {
    pub relation: &'a Relation,
    pub op: RelOp,
    /// The `:fk` of the route, decoded.
    pub fk: Option<String>,
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

impl<'a> RelRoute<'a> {
    /// The route a request matched: the relation endpoint and its `:fk`.
    pub fn of(
        relation: &'a Relation,
        op: RelOp,
        matched: &crate::endpoint::Matched<'_, '_>,
    ) -> Self {
        Self {
            relation,
            op,
            fk: matched.param("fk").map(decode),
        }
    }
}

/// The endpoints of a model's relations, as loopback's `belongsToRemoting`,
/// `hasOneRemoting`, `hasManyRemoting` (with `scopeRemoting` for the list methods) and
/// `nestRemoting` define them: `prototype.__get__orders` and the rest, under `/:id/<name>`.
pub fn endpoints(def: &oxbow_core::ModelDefinition) -> Vec<Endpoint> {
    use Access::{Read, Write};
    let model = def.name.as_str();
    let mut out = Vec::new();
    for rel in &def.relations {
        let name = rel.name.as_str();
        let target = rel.target.as_str();
        let kind = rel.kind;
        let mut ep = |op: RelOp,
                      access: Access,
                      verb: &str,
                      tail: &str,
                      accepts: Vec<Arg>,
                      returns: Vec<Returns>,
                      errors: &[E],
                      _: Option<()>| {
            let method = format!("prototype.__{}__{name}", op.verb_name());
            let mut args = vec![Arg::id("id")];
            args.extend(accepts);
            out.push(Endpoint {
                model: model.to_owned(),
                name: method,
                aliases: Vec::new(),
                is_static: false,
                access,
                accepts: args,
                returns,
                errors: [&[E::Model][..], errors].concat(),
                action: Action::Relation {
                    relation: Box::new(rel.clone()),
                    op,
                },
                shared: true,
                http: vec![(verb.to_owned(), format!("/:id/{name}{tail}"))],
                acl: Default::default(),
            });
        };
        let one = Returns::new;
        let data = || Arg::data(target);
        let fk = || Arg::id("fk");
        let refresh = || Arg::of("refresh", "boolean", Source::Query);
        let many = matches!(
            kind,
            RelationKind::HasMany | RelationKind::EmbedsMany | RelationKind::ReferencesMany
        ) || kind.is_through();
        match kind {
            RelationKind::BelongsTo => ep(
                RelOp::Get,
                Read,
                "get",
                "",
                vec![refresh()],
                vec![one(name, target, true)],
                &[],
                None,
            ),
            RelationKind::HasOne | RelationKind::EmbedsOne => {
                ep(
                    RelOp::Get,
                    Read,
                    "get",
                    "",
                    vec![refresh()],
                    vec![one(name, target, true)],
                    &[E::NoRelatedInstance],
                    None,
                );
                ep(
                    RelOp::Create,
                    Write,
                    "post",
                    "",
                    vec![data()],
                    vec![one("data", target, true)],
                    &[E::NotAnObject, E::HasOneExists],
                    None,
                );
                ep(
                    RelOp::Update,
                    Write,
                    "put",
                    "",
                    vec![data()],
                    vec![one("data", target, true)],
                    &[E::NotAnObject, E::NoRelatedInstance],
                    None,
                );
                ep(
                    RelOp::Destroy,
                    Write,
                    "delete",
                    "",
                    vec![],
                    vec![],
                    &[E::NoRelatedInstance],
                    None,
                );
            }
            _ if many => {
                let mut create_data = data();
                create_data.allow_array = true;
                ep(
                    RelOp::List,
                    Read,
                    "get",
                    "",
                    vec![Arg::object("filter", Source::Any)],
                    vec![one(name, &format!("[{target}]"), true)],
                    &[E::NotAnObject, E::ObjectNotParsable],
                    None,
                );
                ep(
                    RelOp::Create,
                    Write,
                    "post",
                    "",
                    vec![create_data],
                    vec![one("data", target, true)],
                    &[E::NotAnObject],
                    None,
                );
                ep(
                    RelOp::DeleteAll,
                    Write,
                    "delete",
                    "",
                    vec![],
                    vec![],
                    &[],
                    None,
                );
                ep(
                    RelOp::Count,
                    Read,
                    "get",
                    "/count",
                    vec![Arg::object("where", Source::Any)],
                    vec![one("count", "number", false)],
                    &[E::NotAnObject, E::ObjectNotParsable],
                    None,
                );
                ep(
                    RelOp::FindById,
                    Read,
                    "get",
                    "/:fk",
                    vec![fk()],
                    vec![one("result", target, true)],
                    &[
                        E::RelatedNotFound,
                        E::NoLink,
                        E::UnknownRelatedId,
                        E::RelationKeyMismatch,
                    ],
                    None,
                );
                ep(
                    RelOp::DestroyById,
                    Write,
                    "delete",
                    "/:fk",
                    vec![fk()],
                    vec![],
                    &[
                        E::RelatedNotFound,
                        E::NoLink,
                        E::UnknownRelatedId,
                        E::RelationKeyMismatch,
                    ],
                    None,
                );
                ep(
                    RelOp::UpdateById,
                    Write,
                    "put",
                    "/:fk",
                    vec![fk(), data()],
                    vec![one("result", target, true)],
                    &[
                        E::NotAnObject,
                        E::RelatedNotFound,
                        E::NoLink,
                        E::UnknownRelatedId,
                        E::ForeignKeyChange,
                        E::RelationKeyMismatch,
                    ],
                    None,
                );
                if kind.is_through() || kind == RelationKind::ReferencesMany {
                    let through = rel.through.as_deref().unwrap_or(target);
                    let mut link = vec![fk()];
                    if kind.is_through() {
                        link.push(Arg::data(through));
                    }
                    ep(
                        RelOp::Link,
                        Write,
                        "put",
                        "/rel/:fk",
                        link,
                        vec![one(name, through, true)],
                        &[E::NotAnObject],
                        None,
                    );
                    ep(
                        RelOp::Unlink,
                        Write,
                        "delete",
                        "/rel/:fk",
                        vec![fk()],
                        vec![],
                        &[],
                        None,
                    );
                    ep(
                        RelOp::Exists,
                        Read,
                        "head",
                        "/rel/:fk",
                        vec![fk()],
                        vec![one("exists", "boolean", true)],
                        &[E::NotFound],
                        None,
                    );
                }
            }
            _ => {}
        }
    }
    out
}

/// strong-remoting's 204: no body, but its JSON content type.
pub(crate) fn no_content() -> Outcome {
    Outcome::Response(
        HttpResponse::NoContent()
            .insert_header((
                actix_web::http::header::CONTENT_TYPE,
                "application/json; charset=utf-8",
            ))
            .finish(),
    )
}

fn one_object(body: Body) -> Result<Map<String, Value>, RestError> {
    match data_arg(body, false)? {
        DataArg::One(d) => Ok(d),
        DataArg::Many(_) => Err(E::NotAnObject.err()),
    }
}

/// `where` for the relation's scope, and the request's own `where` if any.
fn scoped_where(scope: Value, extra: Option<&Value>) -> Value {
    match extra {
        Some(w) if w.as_object().is_some_and(|o| !o.is_empty()) => {
            json!({"and": [scope, w.clone()]})
        }
        _ => scope,
    }
}

/// The target's rows within `scope` (a `where`), the request's `filter` applied on top (its
/// `where`, fields, order, limit, include); without an `order`, in the order of `ids` when
/// given (referencesMany lists).
async fn scoped_list(
    registry: &Registry,
    target: &Model,
    scope: Value,
    ids: Option<&[Value]>,
    req: &HttpRequest,
    query: &Map<String, Value>,
    caller: &Caller,
) -> Result<crate::Reply, RestError> {
    let tdef = target.definition();
    let mut f = query_or_header(req, query, "filter")?
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default();
    let ordered = f.contains_key("order");
    let w = f.remove("where");
    f.insert("where".into(), scoped_where(scope, w.as_ref()));
    let filter = target.parse_filter(&Value::Object(f))?;
    let mut rows = target.find(&filter, caller).await?;
    if let (Some(ids), false) = (ids, ordered) {
        let tpk = tdef.id_name();
        let keys: Vec<String> = ids.iter().map(key_of).collect();
        rows.sort_by_key(|r| {
            r.value_of(tpk)
                .and_then(|k| keys.iter().position(|i| *i == key_of(&k)))
                .unwrap_or(usize::MAX)
        });
    }
    Ok(match &filter.include {
        Some(inc) => crate::texts_reply(
            &relation::render(
                registry,
                target,
                &rows,
                filter.fields.as_deref(),
                Some(inc),
                caller,
            )
            .await?,
        ),
        None => rows_reply(tdef, &rows, filter.fields.as_deref())?,
    })
}

/// `{"count": n}` of the target's rows within `scope` and the request's `where`.
async fn scoped_count(
    target: &Model,
    scope: Value,
    req: &HttpRequest,
    query: &Map<String, Value>,
    caller: &Caller,
) -> Result<crate::Reply, RestError> {
    let w = query_or_header(req, query, "where")?;
    let w = target.parse_where(&scoped_where(scope, w.as_deref()))?;
    reply(&json!({ "count": target.count(w.as_ref(), caller).await? }))
}

/// Everything a relation route needs about its owner.
struct Ctx<'a> {
    caller: &'a Caller,
    registry: &'a Registry,
    owner: &'a Model,
    owner_pk: Value,
    rel: &'a Relation,
    target: &'a Arc<Model>,
}

impl Ctx<'_> {
    /// A related row by id, only if it belongs to the owner.
    async fn scoped(&self, fk: &Value) -> Result<Arc<Row>, RestError> {
        let rel = self.rel;
        if rel.kind.is_through() {
            let via = self.through()?;
            let key_through = rel.key_through.as_deref().unwrap_or("");
            let filter = via.parse_filter(&json!({"where": {"and": [
                { rel.foreign_key.as_str(): self.owner_pk.clone() },
                { key_through: fk.clone() }
            ]}}))?;
            let linked = !via.find(&filter, self.caller).await?.is_empty();
            let found = if linked {
                self.target.find_by_id(fk, self.caller).await?
            } else {
                None
            };
            return found.ok_or_else(|| {
                E::NoLink.with(&[
                    &via.name(),
                    &self.owner.name(),
                    &oxbow_core::js::to_js_string(&self.owner_pk),
                    &self.target.name(),
                    &oxbow_core::js::to_js_string(fk),
                ])
            });
        }
        self.target
            .find_by_id(fk, self.caller)
            .await?
            .filter(|r| {
                oxbow_core::js::loose_eq(
                    r.value_of(&rel.foreign_key).as_ref(),
                    Some(&self.owner_pk),
                )
            })
            .ok_or_else(|| {
                E::RelatedNotFound.with(&[&oxbow_core::js::to_js_string(fk), &self.target.name()])
            })
    }

    fn through(&self) -> Result<&Arc<Model>, RestError> {
        Ok(relation::related(
            self.registry,
            self.rel.through.as_deref().unwrap_or(""),
        )?)
    }

    /// The owner's links, in the through model's order.
    async fn links(&self) -> Result<Vec<Arc<Row>>, RestError> {
        let via = self.through()?;
        let f = via.parse_filter(
            &json!({"where": { self.rel.foreign_key.as_str(): self.owner_pk.clone() }}),
        )?;
        Ok(via.find(&f, self.caller).await?)
    }
}

/// Runs a relation route of the model the request names, for the owner at `/:id`.
pub(crate) async fn run(
    call: &crate::Call<'_>,
    route: RelRoute<'_>,
    body: Body,
) -> Result<Outcome, RestError> {
    let id = sloppy_any(&decode(call.matched.param("id").unwrap_or("")));
    run_on(call, call.model, route, id, body).await
}

/// A nestRemoting route (`GET /Customers/1/orders/5/customer`): the owner at `/:id`, its
/// related item at `/:nk` (a 404 unless it is the owner's), then the target's own relation
/// method on that item.
pub(crate) async fn run_nested(
    call: &crate::Call<'_>,
    relation: &Relation,
    route: RelRoute<'_>,
    body: Body,
) -> Result<Outcome, RestError> {
    let (registry, model, caller) = (&*call.live.registry, &**call.model, call.caller);
    let id = sloppy_any(&decode(call.matched.param("id").unwrap_or("")));
    let Some(owner) = model.find_by_id(&id, caller).await? else {
        return Err(RestError::from(oxbow_core::Error::no_instance(&id)));
    };
    let target = relation::related(registry, &relation.target)?;
    let cx = Ctx {
        caller,
        registry,
        owner: model,
        owner_pk: owner
            .value_of(model.definition().id_name())
            .unwrap_or(Value::Null),
        rel: relation,
        target,
    };
    let nk = sloppy_any(&decode(call.matched.param("nk").unwrap_or("")));
    let child = cx.scoped(&nk).await?;
    let child_id = child
        .value_of(target.definition().id_name())
        .unwrap_or(Value::Null);
    run_on(call, target, route, child_id, body).await
}

/// Runs `route` on `model`'s record `id`.
async fn run_on(
    call: &crate::Call<'_>,
    model: &Model,
    route: RelRoute<'_>,
    id: Value,
    body: Body,
) -> Result<Outcome, RestError> {
    let (registry, caller) = (&*call.live.registry, call.caller);
    let (req, plan) = (call.req, call.plan);
    let rel = route.relation;
    let target = relation::related(registry, &rel.target)?;
    // Every relation method loads the owner first.
    let Some(owner) = model.find_by_id(&id, caller).await? else {
        return Err(RestError::from(oxbow_core::Error::no_instance(&id)));
    };
    let cx = Ctx {
        caller,
        registry,
        owner: model,
        owner_pk: owner
            .value_of(model.definition().id_name())
            .unwrap_or(Value::Null),
        rel,
        target,
    };
    let fk = route.fk.as_deref().map(sloppy_any);
    match rel.kind {
        RelationKind::BelongsTo => {
            // `{}` when the owner has no foreign key, `null` when it points at nothing.
            belongs_to(target, &owner, rel, caller)
                .await
                .map(Outcome::Reply)
        }
        RelationKind::HasOne => has_one(&cx, route.op, body).await,
        RelationKind::HasMany
        | RelationKind::HasManyThrough
        | RelationKind::HasAndBelongsToMany => many(&cx, &route, fk, req, plan, body).await,
        RelationKind::EmbedsOne => embeds_one(&cx, &owner, route.op, body).await,
        RelationKind::EmbedsMany => embeds_many(&cx, &owner, route.op, fk, body).await,
        RelationKind::ReferencesMany => {
            references_many(&cx, &owner, route.op, fk, req, plan, body).await
        }
    }
}

async fn belongs_to(
    target: &Model,
    owner: &Row,
    rel: &Relation,
    caller: &Caller,
) -> Result<crate::Reply, RestError> {
    let Some(key) = owner.value_of(&rel.foreign_key).filter(|v| !v.is_null()) else {
        return reply(&json!({}));
    };
    match target.find_by_id(&key, caller).await? {
        Some(r) => written_reply(target.definition(), &r),
        None => reply(&Value::Null),
    }
}

/// hasOne: `GET` (404 when there is none), `POST`, `PUT`, `DELETE`.
async fn has_one(cx: &Ctx<'_>, op: RelOp, body: Body) -> Result<Outcome, RestError> {
    let caller = cx.caller;
    let (rel, target) = (cx.rel, cx.target);
    let tdef = target.definition();
    let existing = target
        .find_one(
            &target.parse_filter(
                &json!({"where": { rel.foreign_key.as_str(): cx.owner_pk.clone() }}),
            )?,
            caller,
        )
        .await?;
    let none = || E::NoRelatedInstance.with(&[&target.name()]);
    Ok(Outcome::Reply(match op {
        RelOp::Get => {
            let row = existing.ok_or_else(none)?;
            written_reply(tdef, &row)?
        }
        RelOp::Create => {
            if existing.is_some() {
                return Err(E::HasOneExists.with(&[&target.name()]));
            }
            let mut data = one_object(body)?;
            data.insert(rel.foreign_key.clone(), cx.owner_pk.clone());
            let row = target.create(data, caller).await?;
            written_reply(tdef, &row)?
        }
        RelOp::Update => {
            let existing = existing.ok_or_else(none)?;
            let mut data = one_object(body)?;
            data.insert(rel.foreign_key.clone(), cx.owner_pk.clone());
            let id = existing.value_of(tdef.id_name()).unwrap_or(Value::Null);
            let row = target.patch_attributes(&id, data, true, caller).await?;
            written_reply(tdef, &row)?
        }
        RelOp::Destroy => {
            let existing = existing.ok_or_else(none)?;
            let id = existing.value_of(tdef.id_name()).unwrap_or(Value::Null);
            target.delete_by_id(&id, caller).await?;
            return Ok(no_content());
        }
        _ => return Err(E::Internal.with(&[&"hasOne route with a to-many method"])),
    }))
}

/// hasMany, hasManyThrough and hasAndBelongsToMany.
async fn many(
    cx: &Ctx<'_>,
    route: &RelRoute<'_>,
    fk: Option<Value>,
    req: &HttpRequest,
    plan: &plans::Parsed,
    body: Body,
) -> Result<Outcome, RestError> {
    let caller = cx.caller;
    let (rel, target, registry) = (cx.rel, cx.target, cx.registry);
    let tdef = target.definition();
    let tpk = tdef.id_name().to_owned();
    let through = rel.kind.is_through();
    let query = &plan.query;
    let key_through = rel.key_through.clone().unwrap_or_default();
    // The owner's related rows as a `where` on the target.
    let scope = || async {
        if !through {
            return Ok::<_, RestError>((
                json!({ rel.foreign_key.as_str(): cx.owner_pk.clone() }),
                Vec::new(),
            ));
        }
        let ids: Vec<Value> = cx
            .links()
            .await?
            .iter()
            .filter_map(|l| l.value_of(&key_through))
            .collect();
        Ok((json!({ tpk.as_str(): { "inq": ids.clone() } }), ids))
    };
    Ok(Outcome::Reply(match route.op {
        RelOp::List if through && query_or_header(req, query, "filter")?.is_none() => {
            // Without a filter juggler collects each link's target: the through model's
            // order, a target once per link, links to nothing left out.
            let (scope, ids) = scope().await?;
            let found = target
                .find(&target.parse_filter(&json!({ "where": scope }))?, caller)
                .await?;
            let by_id: BTreeMap<String, &Arc<Row>> = found
                .iter()
                .filter_map(|r| r.value_of(&tpk).map(|k| (key_of(&k), r)))
                .collect();
            let rows: Vec<Arc<Row>> = ids
                .iter()
                .filter_map(|id| by_id.get(&key_of(id)).map(|r| Arc::clone(r)))
                .collect();
            rows_reply(tdef, &rows, None)?
        }
        RelOp::List => {
            // With a filter (`{}` included) juggler queries the target model itself: the
            // filter's order, else the target's id order.
            let (scope, _) = scope().await?;
            scoped_list(registry, target, scope, None, req, query, caller).await?
        }
        RelOp::Count if through => {
            // juggler counts the links (a target linked twice counts twice). The `where` is
            // the target's (LoopBack applies it to the through model: docs/COMPATIBILITY.md).
            let links = cx.links().await?;
            let w = query_or_header(req, query, "where")?;
            let matching = match w.as_deref() {
                Some(w) if w.as_object().is_some_and(|o| !o.is_empty()) => {
                    let ids: Vec<Value> = links
                        .iter()
                        .filter_map(|l| l.value_of(&key_through))
                        .collect();
                    let scope = json!({ tpk.as_str(): { "inq": ids } });
                    let f =
                        target.parse_filter(&json!({ "where": scoped_where(scope, Some(w)) }))?;
                    let hits: BTreeSet<String> = target
                        .find(&f, caller)
                        .await?
                        .iter()
                        .filter_map(|r| r.value_of(&tpk).map(|k| key_of(&k)))
                        .collect();
                    links
                        .iter()
                        .filter(|l| {
                            l.value_of(&key_through)
                                .is_some_and(|k| hits.contains(&key_of(&k)))
                        })
                        .count()
                }
                _ => links.len(),
            };
            reply(&json!({ "count": matching }))?
        }
        RelOp::Count => {
            let (scope, _) = scope().await?;
            scoped_count(target, scope, req, query, caller).await?
        }
        RelOp::Create if through => {
            let created = target.create(one_object(body)?, caller).await?;
            let mut link = Map::new();
            link.insert(rel.foreign_key.clone(), cx.owner_pk.clone());
            link.insert(
                key_through.clone(),
                created.value_of(&tpk).unwrap_or(Value::Null),
            );
            cx.through()?.create(link, caller).await?;
            written_reply(tdef, &created)?
        }
        RelOp::Create => {
            let with_fk = |mut data: Map<String, Value>| {
                data.insert(rel.foreign_key.clone(), cx.owner_pk.clone());
                data
            };
            match data_arg(body, true)? {
                DataArg::One(data) => {
                    let row = target.create(with_fk(data), caller).await?;
                    written_reply(tdef, &row)?
                }
                DataArg::Many(items) => {
                    let rows = target
                        .create_many(items.into_iter().map(with_fk).collect(), caller)
                        .await?;
                    rows_reply(tdef, &rows, None)?
                }
            }
        }
        RelOp::DeleteAll => {
            let (scope, _) = scope().await?;
            let w = target.parse_where(&scope)?;
            target.delete_all(w.as_ref(), caller).await?;
            if through {
                let via = cx.through()?;
                let w =
                    via.parse_where(&json!({ rel.foreign_key.as_str(): cx.owner_pk.clone() }))?;
                via.delete_all(w.as_ref(), caller).await?;
            }
            return Ok(no_content());
        }
        // The related instance as stored: LoopBack ignores a `filter` here.
        RelOp::FindById => written_reply(tdef, &*cx.scoped(&fk.unwrap_or(Value::Null)).await?)?,
        RelOp::UpdateById => {
            let found = cx.scoped(&fk.unwrap_or(Value::Null)).await?;
            let mut data = one_object(body)?;
            if !through {
                if let Some(v) = data.get(&rel.foreign_key) {
                    if !oxbow_core::js::loose_eq(Some(v), Some(&cx.owner_pk)) {
                        return Err(E::ForeignKeyChange.with(&[&rel.foreign_key, &rel.name]));
                    }
                }
                data.insert(rel.foreign_key.clone(), cx.owner_pk.clone());
            }
            let id = found.value_of(&tpk).unwrap_or(Value::Null);
            let row = target.patch_attributes(&id, data, true, caller).await?;
            written_reply(tdef, &row)?
        }
        RelOp::DestroyById => {
            let found = cx.scoped(&fk.unwrap_or(Value::Null)).await?;
            let id = found.value_of(&tpk).unwrap_or(Value::Null);
            target.delete_by_id(&id, caller).await?;
            if through {
                let via = cx.through()?;
                let w = via.parse_where(&json!({"and": [
                    { rel.foreign_key.as_str(): cx.owner_pk.clone() },
                    { key_through.as_str(): id }
                ]}))?;
                via.delete_all(w.as_ref(), caller).await?;
            }
            return Ok(no_content());
        }
        RelOp::Link => {
            let fk = fk.unwrap_or(Value::Null);
            let Some(found) = target.find_by_id(&fk, caller).await? else {
                return Err(RestError::from(oxbow_core::Error::no_instance(&fk)));
            };
            let mut data = match body {
                Body::None => Map::new(),
                other => one_object(other)?,
            };
            data.insert(rel.foreign_key.clone(), cx.owner_pk.clone());
            data.insert(
                key_through.clone(),
                found.value_of(&tpk).unwrap_or(Value::Null),
            );
            let via = cx.through()?;
            let row = via.create(data, caller).await?;
            written_reply(via.definition(), &row)?
        }
        RelOp::Unlink => {
            let via = cx.through()?;
            let w = via.parse_where(&json!({"and": [
                { rel.foreign_key.as_str(): cx.owner_pk.clone() },
                { key_through.as_str(): fk.unwrap_or(Value::Null) }
            ]}))?;
            via.delete_all(w.as_ref(), caller).await?;
            return Ok(no_content());
        }
        RelOp::Exists => {
            let fk = fk.unwrap_or(Value::Null);
            let linked = cx.links().await?.iter().any(|l| {
                l.value_of(&key_through)
                    .is_some_and(|k| key_of(&k) == key_of(&fk))
            });
            if !linked {
                return Err(E::NotFound.err());
            }
            reply(&json!(true))?
        }
        RelOp::Get | RelOp::Update | RelOp::Destroy => {
            return Err(E::Internal.with(&[&"to-many route with a to-one method"]));
        }
    }))
}

/// A random 24-hex-digit id, as juggler gives embedded items.
fn embedded_id() -> Value {
    Value::String(oxbow_core::instance::uuid_v4().replace('-', "")[..24].to_owned())
}

/// Writes the owner's embedded property (through the owner's model: hooks and change events).
async fn save_owner(cx: &Ctx<'_>, property: &str, value: Value) -> Result<(), RestError> {
    let caller = cx.caller;
    let mut patch = Map::new();
    patch.insert(property.to_owned(), value);
    cx.owner
        .patch_attributes(&cx.owner_pk, patch, false, caller)
        .await?;
    Ok(())
}

/// embedsOne: the item lives in the owner's property.
async fn embeds_one(
    cx: &Ctx<'_>,
    owner: &Row,
    op: RelOp,
    body: Body,
) -> Result<Outcome, RestError> {
    let prop = cx.rel.property.clone().unwrap_or_default();
    let current = owner.value_of(&prop).filter(Value::is_object);
    let none = || E::NoRelatedInstance.with(&[&cx.target.name()]);
    Ok(Outcome::Reply(match op {
        // LoopBack answers an absent embedded item with 204.
        RelOp::Get => match current {
            Some(v) => reply(&v)?,
            None => return Ok(no_content()),
        },
        RelOp::Create => {
            let mut item = cx.target.build_valid(one_object(body)?, true)?;
            item.entry("id").or_insert_with(embedded_id);
            let item = Value::Object(item);
            save_owner(cx, &prop, item.clone()).await?;
            reply(&item)?
        }
        RelOp::Update => {
            let Some(Value::Object(mut merged)) = current else {
                return Err(none());
            };
            for (k, v) in one_object(body)? {
                merged.insert(k, v);
            }
            let item = Value::Object(keep_id(
                cx.target.build_valid(merged.clone(), false)?,
                &merged,
            ));
            save_owner(cx, &prop, item.clone()).await?;
            reply(&item)?
        }
        RelOp::Destroy => {
            save_owner(cx, &prop, Value::Null).await?;
            return Ok(no_content());
        }
        _ => return Err(E::Internal.with(&[&"embedsOne route with a to-many method"])),
    }))
}

/// An embedded item keeps the id it was given (juggler's are 24-hex strings, whatever the
/// embedded model's id type says).
fn keep_id(mut item: Map<String, Value>, from: &Map<String, Value>) -> Map<String, Value> {
    if let Some(id) = from.get("id") {
        item.insert("id".into(), id.clone());
    }
    item
}

/// The index of the embedded item whose `id` is `fk` (`"2"` matches `2`).
fn item_at(items: &[Value], fk: &Value) -> Option<usize> {
    let want = key_of(fk);
    items
        .iter()
        .position(|i| i.get("id").is_some_and(|id| key_of(id) == want))
}

/// embedsMany: the items live in the owner's array property.
async fn embeds_many(
    cx: &Ctx<'_>,
    owner: &Row,
    op: RelOp,
    fk: Option<Value>,
    body: Body,
) -> Result<Outcome, RestError> {
    let prop = cx.rel.property.clone().unwrap_or_default();
    let mut items = match owner.value_of(&prop) {
        Some(Value::Array(a)) => a,
        _ => Vec::new(),
    };
    let target = cx.target;
    let fk = fk.unwrap_or(Value::Null);
    let missing =
        |fk: &Value| E::UnknownRelatedId.with(&[&target.name(), &oxbow_core::js::to_js_string(fk)]);
    Ok(Outcome::Reply(match op {
        RelOp::List => reply(&items)?,
        RelOp::Count => reply(&json!({ "count": items.len() }))?,
        RelOp::Create => {
            let mut item = target.build_valid(one_object(body)?, true)?;
            item.entry("id").or_insert_with(embedded_id);
            let item = Value::Object(item);
            items.push(item.clone());
            save_owner(cx, &prop, Value::Array(items)).await?;
            reply(&item)?
        }
        RelOp::FindById => {
            let at = item_at(&items, &fk).ok_or_else(|| missing(&fk))?;
            reply(&items[at])?
        }
        RelOp::UpdateById => {
            let at = item_at(&items, &fk).ok_or_else(|| missing(&fk))?;
            let mut merged = items[at].as_object().cloned().unwrap_or_default();
            for (k, v) in one_object(body)? {
                merged.insert(k, v);
            }
            let item = Value::Object(keep_id(target.build_valid(merged.clone(), false)?, &merged));
            items[at] = item.clone();
            save_owner(cx, &prop, Value::Array(items)).await?;
            reply(&item)?
        }
        RelOp::DestroyById => {
            let at = item_at(&items, &fk).ok_or_else(|| missing(&fk))?;
            items.remove(at);
            save_owner(cx, &prop, Value::Array(items)).await?;
            return Ok(no_content());
        }
        RelOp::DeleteAll => {
            save_owner(cx, &prop, Value::Array(Vec::new())).await?;
            return Ok(no_content());
        }
        _ => return Err(E::Internal.with(&[&"embedsMany route with another method"])),
    }))
}

/// referencesMany: the owner keeps an array of the targets' ids.
#[allow(clippy::too_many_arguments)]
async fn references_many(
    cx: &Ctx<'_>,
    owner: &Row,
    op: RelOp,
    fk: Option<Value>,
    req: &HttpRequest,
    plan: &plans::Parsed,
    body: Body,
) -> Result<Outcome, RestError> {
    let caller = cx.caller;
    let prop = cx.rel.property.clone().unwrap_or_default();
    let mut ids = match owner.value_of(&prop) {
        Some(Value::Array(a)) => a,
        _ => Vec::new(),
    };
    let target = cx.target;
    let tdef = target.definition();
    let tpk = tdef.id_name().to_owned();
    let linked = |ids: &[Value], fk: &Value| ids.iter().any(|i| key_of(i) == key_of(fk));
    let fk = fk.unwrap_or(Value::Null);
    let query = &plan.query;
    Ok(Outcome::Reply(match op {
        RelOp::List | RelOp::Count => {
            let scope = json!({ tpk.as_str(): { "inq": ids.clone() } });
            if op == RelOp::Count {
                scoped_count(target, scope, req, query, caller).await?
            } else {
                scoped_list(cx.registry, target, scope, Some(&ids), req, query, caller).await?
            }
        }
        RelOp::Create => {
            let row = target.create(one_object(body)?, caller).await?;
            ids.push(row.value_of(&tpk).unwrap_or(Value::Null));
            save_owner(cx, &prop, Value::Array(ids)).await?;
            written_reply(tdef, &row)?
        }
        RelOp::Link => {
            let Some(row) = target.find_by_id(&fk, caller).await? else {
                return Err(RestError::from(oxbow_core::Error::no_instance(&fk)));
            };
            if !linked(&ids, &fk) {
                ids.push(row.value_of(&tpk).unwrap_or(Value::Null));
                save_owner(cx, &prop, Value::Array(ids)).await?;
            }
            written_reply(tdef, &row)?
        }
        RelOp::Unlink => {
            ids.retain(|i| key_of(i) != key_of(&fk));
            save_owner(cx, &prop, Value::Array(ids)).await?;
            return Ok(no_content());
        }
        RelOp::Exists => {
            if !linked(&ids, &fk) {
                return Err(E::NotFound.err());
            }
            reply(&json!(true))?
        }
        RelOp::FindById | RelOp::UpdateById | RelOp::DestroyById => {
            if !linked(&ids, &fk) {
                return Err(E::RelationKeyMismatch.with(&[
                    &cx.owner.name(),
                    &prop,
                    &Value::Array(ids.clone()),
                    &target.name(),
                    &tpk,
                    &oxbow_core::js::to_js_string(&fk),
                ]));
            }
            let Some(row) = target.find_by_id(&fk, caller).await? else {
                return Err(RestError::from(oxbow_core::Error::no_instance(&fk)));
            };
            let id = row.value_of(&tpk).unwrap_or(Value::Null);
            match op {
                RelOp::FindById => written_reply(tdef, &row)?,
                RelOp::UpdateById => {
                    let row = target
                        .patch_attributes(&id, one_object(body)?, true, caller)
                        .await?;
                    written_reply(tdef, &row)?
                }
                _ => {
                    target.delete_by_id(&id, caller).await?;
                    ids.retain(|i| key_of(i) != key_of(&fk));
                    save_owner(cx, &prop, Value::Array(ids)).await?;
                    return Ok(no_content());
                }
            }
        }
        RelOp::DeleteAll => {
            let w = target.parse_where(&json!({ tpk.as_str(): { "inq": ids } }))?;
            target.delete_all(w.as_ref(), caller).await?;
            save_owner(cx, &prop, Value::Array(Vec::new())).await?;
            return Ok(no_content());
        }
        _ => {
            return Err(E::Internal.with(&[&"referencesMany route with another method"]));
        }
    }))
}
