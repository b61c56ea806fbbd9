//! Remote methods declared in model JSON (`methods`) and implemented in Rust, and remote hooks
//! (`beforeRemote` / `afterRemote`) around every REST method, with strong-remoting's names
//! (`create`, `prototype.patchAttributes`, `prototype.__get__orders`, `greet`) and wildcard
//! patterns (`*` one segment, `**` any number).

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::HttpRequest;
use futures_util::future::LocalBoxFuture;
use serde_json::{Map, Value};

use oxbow_core::{Model, ModelDefinition, Row};

use crate::RestError;
use crate::error::ErrorCode;

/// One declared argument (`accepts`).
#[derive(Debug, Clone)]
pub struct Accept {
    pub arg: String,
    pub ty: String,
    /// `http.source`: `query`, `path`, `body`, `form`, `header`, `req`; none = the default
    /// search (path, body field, query, header).
    pub source: Option<String>,
    pub required: bool,
}

/// One declared result (`returns`).
#[derive(Debug, Clone)]
pub struct Returns {
    pub arg: String,
    pub ty: String,
    pub root: bool,
}

/// A remote method of a model's JSON, routed like LoopBack routes it.
#[derive(Debug, Clone)]
pub struct RemoteMethod {
    /// `greet`, or `prototype.summary` for an instance method.
    pub name: String,
    pub is_static: bool,
    /// Its routes: (verb, lower case, `all` when none is given; path under the model, under
    /// `/:id` for instance methods), one per entry of an `http` array.
    pub http: Vec<(String, String)>,
    /// `accessType`, else LoopBack's default for the name and verb.
    pub access: crate::endpoint::Access,
    pub accepts: Vec<Accept>,
    pub returns: Vec<Returns>,
    pub status: u16,
}

impl RemoteMethod {
    /// The methods a model's JSON declares (`"methods": {"greet": {...}}`).
    pub fn declared(def: &ModelDefinition) -> Vec<RemoteMethod> {
        let Some(Value::Object(methods)) = def.settings.get("methods") else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (key, spec) in methods {
            let Some(spec) = spec.as_object() else {
                continue;
            };
            let (is_static, bare) = match key.strip_prefix("prototype.") {
                Some(b) => (false, b.to_owned()),
                None => (
                    spec.get("isStatic") != Some(&Value::Bool(false)),
                    key.clone(),
                ),
            };
            let name = if is_static {
                bare.clone()
            } else {
                format!("prototype.{bare}")
            };
            let routes: Vec<&Value> = match spec.get("http") {
                Some(Value::Array(a)) if !a.is_empty() => a.iter().collect(),
                Some(h @ Value::Object(_)) => vec![h],
                _ => vec![&Value::Null],
            };
            let http = routes
                .iter()
                .map(|h| {
                    let verb = h
                        .get("verb")
                        .and_then(Value::as_str)
                        .unwrap_or("all")
                        .to_ascii_lowercase();
                    let path = h
                        .get("path")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .unwrap_or_else(|| format!("/{bare}"));
                    let path = if is_static {
                        crate::endpoint::join_paths("", &path)
                    } else {
                        crate::endpoint::join_paths("/:id", &path)
                    };
                    (verb, path)
                })
                .collect();
            // `_getAccessTypeForMethod` reads `http.verb`, which an array of routes has not.
            let verb = spec
                .get("http")
                .and_then(|h| h.get("verb"))
                .and_then(Value::as_str);
            let access = spec
                .get("accessType")
                .and_then(Value::as_str)
                .and_then(crate::endpoint::Access::parse)
                .unwrap_or_else(|| crate::endpoint::Access::default_for(&bare, verb));
            let http_first = match spec.get("http") {
                Some(Value::Array(a)) => a.first(),
                other => other,
            };
            let list = |v: Option<&Value>| -> Vec<Value> {
                match v {
                    Some(Value::Array(a)) => a.clone(),
                    Some(o @ Value::Object(_)) => vec![o.clone()],
                    _ => Vec::new(),
                }
            };
            let accepts = list(spec.get("accepts"))
                .iter()
                .filter_map(|a| {
                    Some(Accept {
                        arg: a.get("arg")?.as_str()?.to_owned(),
                        ty: a
                            .get("type")
                            .and_then(Value::as_str)
                            .unwrap_or("any")
                            .to_ascii_lowercase(),
                        source: a
                            .pointer("/http/source")
                            .and_then(Value::as_str)
                            .map(str::to_owned),
                        required: a.get("required") == Some(&Value::Bool(true)),
                    })
                })
                .collect();
            let returns = list(spec.get("returns"))
                .iter()
                .map(|r| Returns {
                    arg: r
                        .get("arg")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                    ty: r
                        .get("type")
                        .and_then(Value::as_str)
                        .unwrap_or("any")
                        .to_owned(),
                    root: r.get("root") == Some(&Value::Bool(true)),
                })
                .filter(|r| r.root || !r.arg.is_empty())
                .collect();
            let status = http_first
                .and_then(|h| h.get("status"))
                .and_then(Value::as_u64)
                .and_then(|s| u16::try_from(s).ok())
                .unwrap_or(200);
            out.push(RemoteMethod {
                name,
                is_static,
                http,
                access,
                accepts,
                returns,
                status,
            });
        }
        out
    }

    /// The method as an endpoint of `model`'s table.
    pub fn endpoint(self: &Arc<Self>, model: &str) -> crate::endpoint::Endpoint {
        use crate::endpoint::{Arg, Source};
        use crate::error::ErrorCode as E;
        let mut accepts = Vec::new();
        if !self.is_static {
            accepts.push(Arg::id("id"));
        }
        for a in &self.accepts {
            let source = match a.source.as_deref() {
                Some("path") => Source::Path,
                Some("query") => Source::Query,
                Some("body") => Source::Body,
                Some("form") => Source::Form,
                Some("header") => Source::Header,
                _ => Source::Any,
            };
            let mut arg = Arg::of(&a.arg, &a.ty, source);
            arg.required = a.required;
            accepts.push(arg);
        }
        crate::endpoint::Endpoint {
            model: model.to_owned(),
            name: self.name.clone(),
            aliases: Vec::new(),
            is_static: self.is_static,
            access: self.access,
            accepts,
            returns: self
                .returns
                .iter()
                .map(|r| crate::endpoint::Returns::new(&r.arg, &r.ty, r.root))
                .collect(),
            errors: vec![
                E::RequiredArgument,
                E::NotANumber,
                E::NotABoolean,
                E::NotAnObject,
                E::ObjectNotParsable,
                E::NotImplemented,
                E::Model,
            ],
            action: crate::endpoint::Action::Remote(self.clone()),
            shared: true,
            http: self.http.clone(),
            acl: Default::default(),
        }
    }

    /// The response body: the root result, or an object keyed by each `returns` arg. Numbers
    /// are written as JavaScript writes them (`42`, not `42.0`).
    pub fn shape(&self, mut result: Value) -> Value {
        js_numbers(&mut result);
        match self.returns.as_slice() {
            [] => Value::Object(Map::new()),
            [one] if one.root => result,
            [one] => {
                let mut m = Map::new();
                m.insert(one.arg.clone(), result);
                Value::Object(m)
            }
            _ => result,
        }
    }
}

/// Floats with an integral value become integers, as `JSON.stringify` prints them.
fn js_numbers(v: &mut Value) {
    match v {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64() {
                *v = oxbow_core::js::number_value(f);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(js_numbers),
        Value::Object(o) => o.values_mut().for_each(js_numbers),
        _ => {}
    }
}

/// strong-remoting's coercion of one argument from the request.
pub fn coerce_arg(
    accept: &Accept,
    v: Option<Value>,
    from_json_body: bool,
) -> Result<Option<Value>, RestError> {
    let Some(v) = v else {
        return Ok(None);
    };
    if from_json_body {
        // A JSON array where an object is declared (`login` with `[]`).
        if accept.ty == "object" && v.is_array() {
            return Err(ErrorCode::NotAnObject.err());
        }
        return Ok(Some(v));
    }
    let text = match &v {
        Value::String(s) => s.clone(),
        other => return Ok(Some(other.clone())),
    };
    Ok(Some(match accept.ty.as_str() {
        "number" | "integer" => {
            if text.is_empty() {
                return Ok(None);
            }
            match oxbow_core::js::str_to_number(&text) {
                Some(n) if n.is_finite() => oxbow_core::js::number_value(n),
                _ => return Err(ErrorCode::NotANumber.err()),
            }
        }
        "boolean" => match text.to_ascii_lowercase().as_str() {
            "true" | "1" => Value::Bool(true),
            "false" | "0" | "" => Value::Bool(false),
            _ => return Err(ErrorCode::NotABoolean.err()),
        },
        "object" => match crate::object_arg(Some(&v))? {
            Some(o) => o.into_owned(),
            None => return Ok(None),
        },
        "string" => Value::String(text),
        _ => crate::routes::sloppy_any(&text),
    }))
}

/// What a remote method implemented in Rust receives.
pub struct RemoteCall {
    pub req: HttpRequest,
    /// Who is calling (LoopBack's `options`).
    pub caller: oxbow_core::Caller,
    pub model: Arc<Model>,
    /// The declared arguments, coerced (absent ones left out).
    pub args: Map<String, Value>,
    /// The instance, for `prototype.*` methods.
    pub instance: Option<Arc<Row>>,
}

/// A remote method's implementation: the result LoopBack would pass to its callback.
pub type RemoteMethodFn =
    Arc<dyn Fn(RemoteCall) -> LocalBoxFuture<'static, Result<Value, RestError>> + Send + Sync>;

/// What a remote hook sees: the request, the method (`Customer.create`), its arguments and,
/// after the method, its result (which the hook may replace).
pub struct RemoteContext<'a> {
    pub req: &'a HttpRequest,
    /// Who is calling (LoopBack's `ctx.args.options`).
    pub caller: &'a oxbow_core::Caller,
    pub model: &'a str,
    /// The method name relative to the model: `create`, `prototype.patchAttributes`, …
    pub method: &'a str,
    /// `id`, `data` (the body), `filter`, `where`, and a custom method's declared arguments.
    /// Before hooks may change `data`.
    pub args: Map<String, Value>,
    /// The result, for after hooks.
    pub result: Option<Value>,
}

/// A remote hook; an error stops the request with that error's body.
pub type RemoteHook = Arc<
    dyn for<'a, 'b> Fn(&'a mut RemoteContext<'b>) -> LocalBoxFuture<'a, Result<(), RestError>>
        + Send
        + Sync,
>;

/// Whether a `.`-separated pattern matches a method name (`*` one segment, `**` any).
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    fn go(p: &[&str], n: &[&str]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(&"**"), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some(&"*"), Some(_)) => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    let p: Vec<&str> = pattern.split('.').collect();
    let n: Vec<&str> = name.split('.').collect();
    go(&p, &n)
}

/// Remote methods' implementations and remote hooks, registered by boot plugins.
#[derive(Default, Clone)]
pub struct Remotes {
    /// (model, method name) → implementation.
    pub methods: HashMap<(String, String), RemoteMethodFn>,
    /// (model or `*`, pattern, hook).
    pub before: Vec<(String, String, RemoteHook)>,
    pub after: Vec<(String, String, RemoteHook)>,
}

impl std::fmt::Debug for Remotes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remotes")
            .field("methods", &self.methods.keys().collect::<Vec<_>>())
            .field("before", &self.before.len())
            .field("after", &self.after.len())
            .finish()
    }
}

impl Remotes {
    fn hooks<'s>(
        list: &'s [(String, String, RemoteHook)],
        model: &'s str,
        method: &'s str,
    ) -> impl Iterator<Item = &'s RemoteHook> + 's {
        list.iter()
            .filter(move |(m, p, _)| (m == "*" || m == model) && pattern_matches(p, method))
            .map(|(_, _, h)| h)
    }

    pub fn has_hooks(&self) -> bool {
        !self.before.is_empty() || !self.after.is_empty()
    }

    pub async fn run_before(&self, ctx: &mut RemoteContext<'_>) -> Result<(), RestError> {
        let hooks: Vec<RemoteHook> = Self::hooks(&self.before, ctx.model, ctx.method)
            .cloned()
            .collect();
        for h in hooks {
            h(ctx).await?;
        }
        Ok(())
    }

    pub fn has_after(&self, model: &str, method: &str) -> bool {
        Self::hooks(&self.after, model, method).next().is_some()
    }

    pub async fn run_after(&self, ctx: &mut RemoteContext<'_>) -> Result<(), RestError> {
        let hooks: Vec<RemoteHook> = Self::hooks(&self.after, ctx.model, ctx.method)
            .cloned()
            .collect();
        for h in hooks {
            h(ctx).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::pattern_matches as m;

    #[test]
    fn patterns_follow_strong_remoting() {
        assert!(m("create", "create"));
        assert!(m("*", "find"));
        assert!(!m("*", "prototype.patchAttributes"));
        assert!(m("prototype.*", "prototype.patchAttributes"));
        assert!(m("**", "prototype.__get__orders"));
        assert!(m("*.__get__orders", "prototype.__get__orders"));
        assert!(!m("find", "findOne"));
    }
}
