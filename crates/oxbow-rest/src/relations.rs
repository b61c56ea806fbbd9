//! The routes LoopBack 3 generates for relations (`/Customers/:id/orders`, `/count`, `/:fk`,
//! `/rel/:fk`), as data matched after the PersistedModel table, answered with LoopBack's
//! statuses and bodies. Writes go through the related model, so its change stream sees them.

use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse};
use serde_json::{Map, Value, json};

use oxbow_core::relation::{self, Relation, RelationKind, key_of};
use oxbow_core::{Model, ModelDefinition, Registry};

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
    DeleteAll,
    Count,
    FindById,
    UpdateById,
    DestroyById,
    /// hasManyThrough `PUT /:id/rel/rel/:fk`.
    Link,
    Unlink,
    /// `HEAD /:id/rel/rel/:fk`.
    Exists,
}

/// A matched relation route.
#[derive(Debug, Clone)]
pub struct RelRoute {
    pub relation: Relation,
    pub op: RelOp,
    pub id: String,
    pub fk: Option<String>,
}

/// Matches `[:id, rel, …]` against the model's relations.
pub fn match_route(def: &ModelDefinition, method: &Method, path: &[&str]) -> Option<RelRoute> {
    let (id, name, tail) = match path {
        [id, name, tail @ ..] => (*id, *name, tail),
        _ => return None,
    };
    let relation = def.relation(name)?.clone();
    let verb = method.as_str();
    let many = matches!(
        relation.kind,
        RelationKind::HasMany | RelationKind::HasManyThrough
    );
    let through = relation.kind == RelationKind::HasManyThrough;
    let (op, fk) = match (verb, tail) {
        ("GET" | "HEAD", []) if relation.kind == RelationKind::BelongsTo => (RelOp::Get, None),
        ("GET" | "HEAD", []) if many => (RelOp::List, None),
        ("POST", []) if many => (RelOp::Create, None),
        ("DELETE", []) if many => (RelOp::DeleteAll, None),
        ("GET" | "HEAD", [c]) if many && c.eq_ignore_ascii_case("count") => (RelOp::Count, None),
        ("PUT", [r, fk]) if through && r.eq_ignore_ascii_case("rel") => (RelOp::Link, Some(*fk)),
        ("DELETE", [r, fk]) if through && r.eq_ignore_ascii_case("rel") => {
            (RelOp::Unlink, Some(*fk))
        }
        ("HEAD", [r, fk]) if through && r.eq_ignore_ascii_case("rel") => (RelOp::Exists, Some(*fk)),
        ("GET" | "HEAD", [fk]) if many => (RelOp::FindById, Some(*fk)),
        ("PUT", [fk]) if many => (RelOp::UpdateById, Some(*fk)),
        ("DELETE", [fk]) if many => (RelOp::DestroyById, Some(*fk)),
        _ => return None,
    };
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    Some(RelRoute {
        relation,
        op,
        id: decode(id),
        fk: fk.map(decode),
    })
}

/// strong-remoting's 204: no body, but its JSON content type.
fn no_content() -> Outcome {
    Outcome::Response(
        HttpResponse::NoContent()
            .insert_header((
                actix_web::http::header::CONTENT_TYPE,
                "application/json; charset=utf-8",
            ))
            .finish(),
    )
}

/// `No instance with id 3 found for Order` (a scoped look-up missed).
fn not_in_scope(target: &Model, fk: &Value) -> RestError {
    RestError::new(
        404,
        format!(
            "No instance with id {} found for {}",
            oxbow_core::js::to_js_string(fk),
            target.name()
        ),
    )
}

/// Runs a relation route.
pub(crate) async fn run(
    registry: &Registry,
    model: &Model,
    route: RelRoute,
    req: &HttpRequest,
    plan: &plans::Parsed,
    body: Body,
) -> Result<Outcome, RestError> {
    let rel = &route.relation;
    let target = relation::related(registry, &rel.target)?;
    // The owner must exist for every relation method (LoopBack loads it first).
    let id = sloppy_any(&route.id);
    let Some(owner) = model.find_by_id(&id).await? else {
        return Err(oxbow_core::Error::model_not_found(format!(
            "could not find a model with id {}",
            oxbow_core::js::to_js_string(&id)
        ))
        .into());
    };
    let owner_pk = owner
        .value_of(model.definition().id_name())
        .unwrap_or(Value::Null);
    let fk = route.fk.as_deref().map(sloppy_any);
    let tdef = target.definition();
    let query = &plan.query;
    let filter_value = || -> Result<Map<String, Value>, RestError> {
        Ok(query_or_header(req, query, "filter")?
            .and_then(|v| v.as_object().cloned())
            .unwrap_or_default())
    };
    if rel.kind == RelationKind::BelongsTo {
        // `{}` when the owner has no foreign key, `null` when it points at nothing.
        let Some(key) = owner.value_of(&rel.foreign_key).filter(|v| !v.is_null()) else {
            return Ok(Outcome::Reply(reply(&json!({}))?));
        };
        return Ok(Outcome::Reply(match target.find_by_id(&key).await? {
            Some(r) => written_reply(tdef, &r)?,
            None => reply(&Value::Null)?,
        }));
    }
    if rel.kind == RelationKind::HasManyThrough {
        return through(
            registry, target, rel, route.op, owner_pk, fk, req, plan, body,
        )
        .await;
    }
    // hasMany: the target's foreign key equals the owner's id.
    let scope = json!({ rel.foreign_key.as_str(): owner_pk.clone() });
    let in_scope = |row: &oxbow_core::Row| {
        oxbow_core::js::loose_eq(row.value_of(&rel.foreign_key).as_ref(), Some(&owner_pk))
    };
    Ok(Outcome::Reply(match route.op {
        RelOp::List => {
            let mut f = filter_value()?;
            let where_ = match f.remove("where") {
                Some(w) if w.as_object().is_some_and(|o| !o.is_empty()) => {
                    json!({"and": [scope, w]})
                }
                _ => scope,
            };
            f.insert("where".into(), where_);
            let filter = target.parse_filter(&Value::Object(f))?;
            let rows = target.find(&filter).await?;
            match &filter.include {
                Some(inc) => reply(
                    &relation::render(registry, target, &rows, filter.fields.as_deref(), Some(inc))
                        .await?,
                )?,
                None => rows_reply(tdef, &rows, filter.fields.as_deref())?,
            }
        }
        RelOp::Count => {
            let w = query_or_header(req, query, "where")?;
            let where_ = match w.as_deref() {
                Some(w) if w.as_object().is_some_and(|o| !o.is_empty()) => {
                    json!({"and": [scope, w]})
                }
                _ => scope,
            };
            let w = target.parse_where(&where_)?;
            reply(&json!({ "count": target.count(w.as_ref()).await? }))?
        }
        RelOp::Create => {
            let with_fk = |mut data: Map<String, Value>| {
                data.insert(rel.foreign_key.clone(), owner_pk.clone());
                data
            };
            match data_arg(body, true)? {
                DataArg::One(data) => {
                    let row = target.create(with_fk(data)).await?;
                    written_reply(tdef, &row)?
                }
                DataArg::Many(items) => {
                    let rows = target
                        .create_many(items.into_iter().map(with_fk).collect())
                        .await?;
                    rows_reply(tdef, &rows, None)?
                }
            }
        }
        RelOp::DeleteAll => {
            let w = target.parse_where(&scope)?;
            target.delete_all(w.as_ref()).await?;
            return Ok(no_content());
        }
        RelOp::FindById | RelOp::UpdateById | RelOp::DestroyById => {
            let fk = fk.unwrap_or(Value::Null);
            let found = target.find_by_id(&fk).await?.filter(|r| in_scope(r));
            let Some(found) = found else {
                return Err(not_in_scope(target, &fk));
            };
            let found_id = found.value_of(tdef.id_name()).unwrap_or(Value::Null);
            match route.op {
                RelOp::FindById => {
                    let filter = target.parse_filter(&Value::Object(filter_value()?))?;
                    crate::one_reply(registry, target, found, &filter).await?
                }
                RelOp::UpdateById => {
                    let DataArg::One(mut data) = data_arg(body, false)? else {
                        return Err(RestError::new(400, "Value is not an object."));
                    };
                    data.insert(rel.foreign_key.clone(), owner_pk.clone());
                    {
                        let row = target.patch_attributes(&found_id, data, true).await?;
                        written_reply(tdef, &row)?
                    }
                }
                _ => {
                    target.delete_by_id(&found_id).await?;
                    return Ok(no_content());
                }
            }
        }
        RelOp::Get | RelOp::Link | RelOp::Unlink | RelOp::Exists => {
            return Err(RestError::new(500, "relation route matched the wrong kind"));
        }
    }))
}

/// hasManyThrough: the through model links the owner (`foreignKey`) to targets (`keyThrough`).
#[allow(clippy::too_many_arguments)]
async fn through(
    registry: &Registry,
    target: &Model,
    rel: &Relation,
    op: RelOp,
    owner_pk: Value,
    fk: Option<Value>,
    req: &HttpRequest,
    plan: &plans::Parsed,
    body: Body,
) -> Result<Outcome, RestError> {
    let via = relation::related(registry, rel.through.as_deref().unwrap_or(""))?;
    let key_through = rel.key_through.clone().unwrap_or_default();
    let tdef = target.definition();
    let tpk = tdef.id_name().to_owned();
    let links_filter = |extra: Option<&Value>| -> Result<oxbow_core::Filter, RestError> {
        let mut w = json!({ rel.foreign_key.as_str(): owner_pk.clone() });
        if let Some(k) = extra {
            w = json!({"and": [w, { key_through.as_str(): k.clone() }]});
        }
        Ok(via.parse_filter(&json!({ "where": w }))?)
    };
    // The linked target ids, in the through model's order.
    let linked = |links: &[std::sync::Arc<oxbow_core::Row>]| -> Vec<Value> {
        links
            .iter()
            .filter_map(|l| l.value_of(&key_through))
            .collect()
    };
    let query = &plan.query;
    Ok(Outcome::Reply(match op {
        RelOp::List | RelOp::Count => {
            let links = via.find(&links_filter(None)?).await?;
            let ids = linked(&links);
            let ids_where = json!({ tpk.as_str(): { "inq": ids.clone() } });
            if op == RelOp::Count {
                let w = query_or_header(req, query, "where")?;
                let w = match w.as_deref() {
                    Some(w) if w.as_object().is_some_and(|o| !o.is_empty()) => {
                        json!({"and": [ids_where, w]})
                    }
                    _ => ids_where,
                };
                let w = target.parse_where(&w)?;
                return Ok(Outcome::Reply(reply(
                    &json!({ "count": target.count(w.as_ref()).await? }),
                )?));
            }
            let mut f = query_or_header(req, query, "filter")?
                .and_then(|v| v.as_object().cloned())
                .unwrap_or_default();
            let ordered = f.contains_key("order");
            let where_ = match f.remove("where") {
                Some(w) if w.as_object().is_some_and(|o| !o.is_empty()) => {
                    json!({"and": [ids_where, w]})
                }
                _ => ids_where,
            };
            f.insert("where".into(), where_);
            let filter = target.parse_filter(&Value::Object(f))?;
            let mut rows = target.find(&filter).await?;
            if !ordered {
                // The through model's order, as LoopBack returns them.
                let pos = |r: &std::sync::Arc<oxbow_core::Row>| {
                    r.value_of(&tpk)
                        .and_then(|k| ids.iter().position(|i| key_of(i) == key_of(&k)))
                        .unwrap_or(usize::MAX)
                };
                rows.sort_by_key(pos);
            }
            match &filter.include {
                Some(inc) => reply(
                    &relation::render(registry, target, &rows, filter.fields.as_deref(), Some(inc))
                        .await?,
                )?,
                None => rows_reply(tdef, &rows, filter.fields.as_deref())?,
            }
        }
        RelOp::Create => {
            let DataArg::One(data) = data_arg(body, false)? else {
                return Err(RestError::new(400, "Value is not an object."));
            };
            let created = target.create(data).await?;
            let mut link = Map::new();
            link.insert(rel.foreign_key.clone(), owner_pk.clone());
            link.insert(
                key_through.clone(),
                created.value_of(&tpk).unwrap_or(Value::Null),
            );
            via.create(link).await?;
            written_reply(tdef, &created)?
        }
        RelOp::DeleteAll => {
            let links = via.find(&links_filter(None)?).await?;
            let ids = linked(&links);
            let w = target.parse_where(&json!({ tpk.as_str(): { "inq": ids } }))?;
            target.delete_all(w.as_ref()).await?;
            let w = via.parse_where(&json!({ rel.foreign_key.as_str(): owner_pk.clone() }))?;
            via.delete_all(w.as_ref()).await?;
            return Ok(no_content());
        }
        RelOp::FindById | RelOp::UpdateById | RelOp::DestroyById => {
            let fk = fk.unwrap_or(Value::Null);
            let links = via.find(&links_filter(Some(&fk))?).await?;
            let found = if links.is_empty() {
                None
            } else {
                target.find_by_id(&fk).await?
            };
            let Some(found) = found else {
                return Err(not_in_scope(target, &fk));
            };
            let found_id = found.value_of(&tpk).unwrap_or(Value::Null);
            match op {
                RelOp::FindById => {
                    let filter = target.parse_filter(
                        &query_or_header(req, query, "filter")?
                            .map(std::borrow::Cow::into_owned)
                            .unwrap_or(Value::Null),
                    )?;
                    crate::one_reply(registry, target, found, &filter).await?
                }
                RelOp::UpdateById => {
                    let DataArg::One(data) = data_arg(body, false)? else {
                        return Err(RestError::new(400, "Value is not an object."));
                    };
                    {
                        let row = target.patch_attributes(&found_id, data, true).await?;
                        written_reply(tdef, &row)?
                    }
                }
                _ => {
                    target.delete_by_id(&found_id).await?;
                    let w = via.parse_where(&json!({"and": [
                        { rel.foreign_key.as_str(): owner_pk.clone() },
                        { key_through.as_str(): found_id }
                    ]}))?;
                    via.delete_all(w.as_ref()).await?;
                    return Ok(no_content());
                }
            }
        }
        RelOp::Link => {
            let fk = fk.unwrap_or(Value::Null);
            let Some(found) = target.find_by_id(&fk).await? else {
                return Err(oxbow_core::Error::model_not_found(format!(
                    "could not find a model with id {}",
                    oxbow_core::js::to_js_string(&fk)
                ))
                .into());
            };
            let mut data = match data_arg(body, false)? {
                DataArg::One(d) => d,
                DataArg::Many(_) => return Err(RestError::new(400, "Value is not an object.")),
            };
            data.insert(rel.foreign_key.clone(), owner_pk.clone());
            data.insert(
                key_through.clone(),
                found.value_of(&tpk).unwrap_or(Value::Null),
            );
            {
                let row = via.create(data).await?;
                written_reply(via.definition(), &row)?
            }
        }
        RelOp::Unlink => {
            let fk = fk.unwrap_or(Value::Null);
            let w = via.parse_where(&json!({"and": [
                { rel.foreign_key.as_str(): owner_pk.clone() },
                { key_through.as_str(): fk }
            ]}))?;
            via.delete_all(w.as_ref()).await?;
            return Ok(no_content());
        }
        RelOp::Exists => {
            let fk = fk.unwrap_or(Value::Null);
            if via.find(&links_filter(Some(&fk))?).await?.is_empty() {
                return Err(RestError::new(404, "Not Found"));
            }
            reply(&json!(true))?
        }
        RelOp::Get => return Err(RestError::new(500, "relation route matched the wrong kind")),
    }))
}
