//! LoopBack 3's route table for a PersistedModel, as data: verb, path pattern, operation.
//!
//! Matching follows strong-remoting: within a verb, literal segments win over `:id`
//! (`GET /Cars/count` is count, never `findById("count")`). `HEAD` falls back to `GET` routes
//! as Express does, except `HEAD /:id` which is `exists`.

use actix_web::http::Method;
use serde_json::Value;

/// The PersistedModel remote methods exposed over REST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Create,
    PatchOrCreate,
    ReplaceOrCreate,
    UpsertWithWhere,
    Exists,
    ExistsHead,
    FindById,
    ReplaceById,
    Find,
    FindOne,
    UpdateAll,
    DeleteById,
    Count,
    PatchAttributes,
    ChangeStream,
    RecordChangeStream,
}

impl Op {
    /// The method reads the request body.
    pub fn takes_body(self) -> bool {
        matches!(
            self,
            Self::Create
                | Self::PatchOrCreate
                | Self::ReplaceOrCreate
                | Self::UpsertWithWhere
                | Self::ReplaceById
                | Self::UpdateAll
                | Self::PatchAttributes
        )
    }

    /// LoopBack's method name (`Customer.find`, `prototype.patchAttributes`).
    pub fn method_name(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::PatchOrCreate => "patchOrCreate",
            Self::ReplaceOrCreate => "replaceOrCreate",
            Self::UpsertWithWhere => "upsertWithWhere",
            Self::Exists | Self::ExistsHead => "exists",
            Self::FindById => "findById",
            Self::ReplaceById => "replaceById",
            Self::Find => "find",
            Self::FindOne => "findOne",
            Self::UpdateAll => "updateAll",
            Self::DeleteById => "deleteById",
            Self::Count => "count",
            Self::PatchAttributes => "prototype.patchAttributes",
            Self::ChangeStream => "createChangeStream",
            Self::RecordChangeStream => "prototype.createChangeStream",
        }
    }
}

/// One segment of a route pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seg {
    Lit(&'static str),
    Id,
}

/// The route table: (verb, pattern under the model path, operation), literal routes first.
pub const TABLE: &[(&str, &[Seg], Op)] = &[
    ("POST", &[], Op::Create),
    ("PATCH", &[], Op::PatchOrCreate),
    ("POST", &[Seg::Lit("replaceOrCreate")], Op::ReplaceOrCreate),
    ("PUT", &[], Op::ReplaceOrCreate),
    ("POST", &[Seg::Lit("upsertWithWhere")], Op::UpsertWithWhere),
    ("GET", &[], Op::Find),
    ("GET", &[Seg::Lit("findOne")], Op::FindOne),
    ("POST", &[Seg::Lit("update")], Op::UpdateAll),
    ("GET", &[Seg::Lit("count")], Op::Count),
    ("POST", &[Seg::Lit("change-stream")], Op::ChangeStream),
    ("GET", &[Seg::Lit("change-stream")], Op::ChangeStream),
    ("GET", &[Seg::Id, Seg::Lit("exists")], Op::Exists),
    (
        "GET",
        &[Seg::Id, Seg::Lit("change-stream")],
        Op::RecordChangeStream,
    ),
    (
        "POST",
        &[Seg::Id, Seg::Lit("change-stream")],
        Op::RecordChangeStream,
    ),
    ("HEAD", &[Seg::Id], Op::ExistsHead),
    ("GET", &[Seg::Id], Op::FindById),
    ("POST", &[Seg::Id, Seg::Lit("replace")], Op::ReplaceById),
    ("PUT", &[Seg::Id], Op::ReplaceById),
    ("DELETE", &[Seg::Id], Op::DeleteById),
    ("PATCH", &[Seg::Id], Op::PatchAttributes),
];

/// A matched route with its `:id`.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub op: Op,
    pub id: Option<String>,
}

fn match_pattern(pattern: &[Seg], path: &[&str]) -> Option<Option<String>> {
    if pattern.len() != path.len() {
        return None;
    }
    let mut id = None;
    for (p, s) in pattern.iter().zip(path) {
        match p {
            // Express routes are case-insensitive.
            Seg::Lit(l) if l.eq_ignore_ascii_case(s) => {}
            Seg::Lit(_) => return None,
            Seg::Id => id = Some((*s).to_owned()),
        }
    }
    Some(id)
}

fn match_verb(verb: &str, path: &[&str]) -> Option<Route> {
    // Literal-only patterns first, then patterns with `:id` (no allocation: two passes).
    let literal = |p: &[Seg]| !p.contains(&Seg::Id);
    [true, false].into_iter().find_map(|want_literal| {
        TABLE
            .iter()
            .filter(|(v, p, _)| *v == verb && literal(p) == want_literal)
            .find_map(|(_, pattern, op)| {
                match_pattern(pattern, path).map(|id| Route { op: *op, id })
            })
    })
}

/// Finds the route for a verb and the path segments after the model's URL segment.
pub fn match_route(method: &Method, path: &[&str]) -> Option<Route> {
    let verb = method.as_str();
    match_verb(verb, path).or_else(|| {
        if verb == "HEAD" {
            match_verb("GET", path)
        } else {
            None
        }
    })
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
