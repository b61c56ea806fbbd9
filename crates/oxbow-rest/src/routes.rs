//! The PersistedModel methods LoopBack 3 exposes over REST (`persisted-model.js`'s
//! `setupRemoting`), as endpoints: names, aliases, routes, access types, arguments and
//! results; and strong-remoting's coercion of ids read from a path.
//!
//! `replaceOnPUT: false` gives `PUT /` and `PUT /:id` to patchOrCreate and patchAttributes,
//! as LoopBack does. oxbow adds `prototype.createChangeStream` (`/:id/change-stream`), one
//! record's changes, and in apps that enable auth `createChangeStreamTicket`
//! (`POST /change-stream/ticket`).

use serde_json::Value;

use oxbow_core::ModelDefinition;

use crate::endpoint::{Access, Action, Arg, Endpoint, Returns, Source};
use crate::error::ErrorCode;

/// The PersistedModel remote methods exposed over REST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Create,
    PatchOrCreate,
    ReplaceOrCreate,
    UpsertWithWhere,
    Exists,
    FindById,
    ReplaceById,
    Find,
    FindOne,
    DestroyAll,
    UpdateAll,
    DeleteById,
    Count,
    PatchAttributes,
    ChangeStream,
    RecordChangeStream,
    /// oxbow's `POST /change-stream/ticket` (apps that enable auth): a single-use ticket
    /// standing for the caller's token, for clients that cannot send headers.
    ChangeStreamTicket,
}

/// The CRUD endpoints of a model, in LoopBack's definition order.
pub fn endpoints(def: &ModelDefinition) -> Vec<Endpoint> {
    let model = def.name.as_str();
    let replace_on_put = def.remoting.replace_on_put;
    let data = || Arg::data(model);
    let opt_where = |source| Arg::object("where", source);
    let filter = || Arg::object("filter", Source::Any);
    let instance = || vec![Returns::new("data", model, true)];
    let routes = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter()
            .map(|(v, p)| ((*v).to_owned(), (*p).to_owned()))
            .collect()
    };
    let ep = |op: Op,
              name: &str,
              aliases: &[&str],
              access: Access,
              accepts: Vec<Arg>,
              returns: Vec<Returns>,
              http: Vec<(String, String)>,
              errors: &[ErrorCode]| Endpoint {
        model: model.to_owned(),
        name: name.to_owned(),
        aliases: aliases.iter().map(|a| (*a).to_owned()).collect(),
        is_static: !name.starts_with("prototype."),
        access,
        accepts,
        returns,
        errors: errors.to_vec(),
        action: Action::Crud(op),
        shared: op != Op::DestroyAll,
        http,
        acl: Default::default(),
    };
    use Access::{Read, Write};
    use ErrorCode as E;
    let write = [E::NotAnObject, E::Model];
    let mut create_data = data();
    create_data.allow_array = true;
    let mut patch_or_create = vec![("patch", "/")];
    let mut replace_or_create = vec![("post", "/replaceOrCreate")];
    let mut replace_by_id = vec![("post", "/:id/replace")];
    let mut patch_attributes = vec![("patch", "/")];
    if replace_on_put {
        replace_or_create.push(("put", "/"));
        replace_by_id.push(("put", "/:id"));
    } else {
        patch_or_create.insert(0, ("put", "/"));
        patch_attributes.insert(0, ("put", "/"));
    }
    let under_id = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter()
            .map(|(v, p)| ((*v).to_owned(), crate::endpoint::join_paths("/:id", p)))
            .collect()
    };
    vec![
        ep(
            Op::Create,
            "create",
            &[],
            Write,
            vec![create_data],
            instance(),
            routes(&[("post", "/")]),
            &[E::NotAnObject, E::ArrayItemNotObject, E::Model],
        ),
        ep(
            Op::PatchOrCreate,
            "patchOrCreate",
            &["upsert", "updateOrCreate"],
            Write,
            vec![data()],
            instance(),
            routes(&patch_or_create),
            &write,
        ),
        ep(
            Op::ReplaceOrCreate,
            "replaceOrCreate",
            &[],
            Write,
            vec![data()],
            instance(),
            routes(&replace_or_create),
            &write,
        ),
        ep(
            Op::UpsertWithWhere,
            "upsertWithWhere",
            &["patchOrCreateWithWhere"],
            Write,
            vec![opt_where(Source::Query), data()],
            instance(),
            routes(&[("post", "/upsertWithWhere")]),
            &[E::NotAnObject, E::ObjectNotParsable, E::Model],
        ),
        ep(
            Op::Exists,
            "exists",
            &[],
            Read,
            vec![Arg::id("id")],
            vec![Returns::new("exists", "boolean", false)],
            routes(&[("get", "/:id/exists"), ("head", "/:id")]),
            &[E::RequiredArgument, E::UnknownId, E::Model],
        ),
        ep(
            Op::FindById,
            "findById",
            &[],
            Read,
            vec![Arg::id("id"), filter()],
            instance(),
            routes(&[("get", "/:id")]),
            &[
                E::RequiredArgument,
                E::NotAnObject,
                E::ObjectNotParsable,
                E::UnknownId,
                E::Model,
            ],
        ),
        ep(
            Op::ReplaceById,
            "replaceById",
            &[],
            Write,
            vec![Arg::id("id"), data()],
            instance(),
            routes(&replace_by_id),
            &[E::RequiredArgument, E::NotAnObject, E::Model],
        ),
        ep(
            Op::Find,
            "find",
            &[],
            Read,
            vec![filter()],
            vec![Returns::new("data", &format!("[{model}]"), true)],
            routes(&[("get", "/")]),
            &[E::NotAnObject, E::ObjectNotParsable, E::Model],
        ),
        ep(
            Op::FindOne,
            "findOne",
            &[],
            Read,
            vec![filter()],
            instance(),
            routes(&[("get", "/findOne")]),
            &[E::NotAnObject, E::ObjectNotParsable, E::UnknownId, E::Model],
        ),
        ep(
            Op::DestroyAll,
            "destroyAll",
            &[],
            Write,
            vec![opt_where(Source::Any)],
            vec![Returns::new("count", "object", true)],
            routes(&[("delete", "/")]),
            &[E::NotAnObject, E::ObjectNotParsable, E::Model],
        ),
        ep(
            Op::UpdateAll,
            "updateAll",
            &["update"],
            Write,
            vec![opt_where(Source::Query), data()],
            vec![Returns::new("info", "object", true)],
            routes(&[("post", "/update")]),
            &[E::NotAnObject, E::ObjectNotParsable, E::Model],
        ),
        ep(
            Op::DeleteById,
            "deleteById",
            &["destroyById", "removeById"],
            Write,
            vec![Arg::id("id")],
            vec![Returns::new("count", "object", true)],
            routes(&[("delete", "/:id")]),
            &[E::RequiredArgument, E::Model],
        ),
        ep(
            Op::Count,
            "count",
            &[],
            Read,
            vec![opt_where(Source::Any)],
            vec![Returns::new("count", "number", false)],
            routes(&[("get", "/count")]),
            &[E::NotAnObject, E::ObjectNotParsable, E::Model],
        ),
        ep(
            Op::PatchAttributes,
            "prototype.patchAttributes",
            &["updateAttributes"],
            Write,
            vec![Arg::id("id"), data()],
            instance(),
            under_id(&patch_attributes),
            &[E::RequiredArgument, E::NotAnObject, E::Model],
        ),
        ep(
            Op::ChangeStream,
            "createChangeStream",
            &[],
            Read,
            vec![Arg::object("options", Source::Any)],
            vec![Returns::new("changes", "ReadableStream", false)],
            if def.remoting.change_stream {
                routes(&[("post", "/change-stream"), ("get", "/change-stream")])
            } else {
                Vec::new()
            },
            &[E::NotAnObject, E::ObjectNotParsable, E::Model],
        ),
        ep(
            Op::RecordChangeStream,
            "prototype.createChangeStream",
            &[],
            Read,
            vec![Arg::id("id"), Arg::object("options", Source::Any)],
            vec![Returns::new("changes", "ReadableStream", false)],
            if def.remoting.change_stream {
                under_id(&[("post", "/change-stream"), ("get", "/change-stream")])
            } else {
                Vec::new()
            },
            &[E::NotAnObject, E::ObjectNotParsable, E::Model],
        ),
        // Decided by the rules of `createChangeStream` (`Endpoints::compile_acls`).
        ep(
            Op::ChangeStreamTicket,
            "createChangeStreamTicket",
            &[],
            Read,
            Vec::new(),
            vec![Returns::new("ticket", "object", true)],
            if def.remoting.change_stream && def.auth.enforced {
                routes(&[("post", "/change-stream/ticket")])
            } else {
                Vec::new()
            },
            &[E::Model],
        ),
    ]
}

/// strong-remoting's "sloppy" coercion of an `any` argument from a path or query string.
pub fn sloppy_any(s: &str) -> Value {
    match s {
        "" => Value::Null,
        "null" => Value::Null,
        _ if s.eq_ignore_ascii_case("true") => Value::Bool(true),
        _ if s.eq_ignore_ascii_case("false") => Value::Bool(false),
        _ => {
            let numeric = s
                .chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E'))
                && s.chars().any(|c| c.is_ascii_digit());
            // Only when the number prints back as written: `02`, `1e1` and `1.50` stay
            // strings, as strong-remoting keeps them.
            if let Some(value) = numeric
                .then(|| oxbow_core::js::number_as_written(s))
                .flatten()
                .filter(|v| {
                    v.as_f64()
                        .is_some_and(|n| n.abs() <= 9_007_199_254_740_991.0)
                })
            {
                return value;
            }
            Value::String(s.to_owned())
        }
    }
}
