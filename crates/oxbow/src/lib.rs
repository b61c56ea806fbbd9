//! oxbow: boot a LoopBack 3 app directory and serve it.
//!
//! The boot sequence is: load and check the app ([`oxbow_config::load`]) → create one connector
//! per datasource → build the immutable model [`Registry`] → run the boot plugins in name order
//! (LoopBack sorts `server/boot/*.js` the same way) → listen. Everything is built before the
//! HTTP server starts; the server's per-worker factory only clones `Arc`s.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use actix_web::web::{self, ServiceConfig};
use actix_web::{App, HttpServer};
use anyhow::{Context, anyhow, bail};
use serde_json::Value;

pub use actix_rt as rt;
pub use actix_web;
pub use oxbow_config::{AppPlan, Problems};
pub use oxbow_core::{
    self as core, Caller, ChangeEvent, ChangeStream, ChangeType, Model, Record, Registry,
};
pub use oxbow_rest::pipeline::{Middleware, MiddlewareFactory, RequestId};
pub use oxbow_rest::{RestError, error_response};

/// The future a boot plugin returns. Boot runs on the server's main thread, so it need not be
/// `Send`.
pub type BootFuture<'a> = Pin<Box<dyn Future<Output = anyhow::Result<()>> + 'a>>;

/// A Rust boot plugin: LoopBack's `server/boot/*.js`, compiled into the app binary.
pub trait BootPlugin {
    /// The name it is registered under; plugins run in case-insensitive name order.
    fn name(&self) -> &str;

    /// Runs after the registry is built and before the server listens. An error stops boot.
    fn boot<'a>(&'a self, app: &'a mut BootContext) -> BootFuture<'a>;
}

type RouteFn = Arc<dyn Fn(&mut ServiceConfig) + Send + Sync>;

/// What a boot plugin can reach: the models, and the HTTP routes it may add.
pub struct BootContext {
    registry: Arc<Registry>,
    routes: Vec<RouteFn>,
    plan: Arc<AppPlan>,
    middleware: HashMap<String, MiddlewareFactory>,
    mixins: HashMap<String, MixinFn>,
    remotes: oxbow_rest::remote::Remotes,
    role_resolvers: HashMap<String, oxbow_auth::RoleResolver>,
    user_listeners: Vec<(String, oxbow_rest::users::UserEventListener)>,
}

/// A mixin a plugin provides: applied to every model whose JSON names it in `mixins`, with the
/// options given there (`true` becomes `{}`).
pub type MixinFn = Arc<dyn Fn(&Arc<Model>, &Value) -> anyhow::Result<()> + Send + Sync>;

impl BootContext {
    /// `Role.registerResolver(name, fn)`: decides whether the caller is in the role `name`
    /// (an ACL's `principalId`), for roles `Role`/`RoleMapping` rows do not give.
    pub fn role_resolver<F, Fut>(&mut self, name: &str, f: F)
    where
        F: Fn(oxbow_auth::RoleContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = oxbow_core::Result<bool>> + Send + 'static,
    {
        let f = Arc::new(f);
        self.role_resolvers.insert(
            name.to_owned(),
            Arc::new(move |c| {
                let f = f.clone();
                Box::pin(async move { f(c).await })
            }),
        );
    }

    /// Listens to a User model's event (LoopBack's `User.on(event, fn)`): today
    /// `resetPasswordRequest`, with `email`, `accessToken`, `user` and `options`; the
    /// listener gets the model's name too. oxbow has no mail connector: this is where an
    /// app sends the reset link.
    pub fn on_user_event(&mut self, event: &str, f: impl Fn(&str, &Value) + Send + Sync + 'static) {
        self.user_listeners.push((event.to_owned(), Arc::new(f)));
    }

    /// A model by name; an error names the models that exist.
    pub fn model(&self, name: &str) -> anyhow::Result<Arc<Model>> {
        self.registry.model(name).cloned().ok_or_else(|| {
            let known: Vec<&str> = self.registry.models().iter().map(|m| m.name()).collect();
            anyhow!("no model `{name}`; the app has: {}", known.join(", "))
        })
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The checked app configuration.
    pub fn plan(&self) -> &AppPlan {
        &self.plan
    }

    /// Adds routes to the app (outside the REST root), e.g. `GET /`.
    pub fn configure(&mut self, f: impl Fn(&mut ServiceConfig) + Send + Sync + 'static) {
        self.routes.push(Arc::new(f));
    }

    /// Registers the middleware that middleware.json names `name` (`"./middleware/audit"`);
    /// `factory` gets the entry's `params`. Entries naming nothing registered fail boot.
    pub fn middleware(
        &mut self,
        name: &str,
        factory: impl Fn(&Value) -> anyhow::Result<Arc<dyn Middleware>> + Send + Sync + 'static,
    ) {
        self.middleware.insert(name.to_owned(), Arc::new(factory));
    }

    /// Implements a remote method that `model`'s JSON declares in `methods` (`"greet"`, or
    /// `"prototype.summary"` for an instance method).
    pub fn remote_method<F, Fut>(&mut self, model: &str, name: &str, f: F)
    where
        F: Fn(oxbow_rest::remote::RemoteCall) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, oxbow_rest::RestError>> + 'static,
    {
        let f = Arc::new(f);
        self.remotes.methods.insert(
            (model.to_owned(), name.to_owned()),
            Arc::new(move |call| {
                let f = f.clone();
                Box::pin(async move { f(call).await })
            }),
        );
    }

    /// `Model.beforeRemote(pattern, fn)`: `model` is a model name or `*`; `pattern` names
    /// methods (`create`, `prototype.*`, `**`).
    pub fn before_remote(
        &mut self,
        model: &str,
        pattern: &str,
        hook: oxbow_rest::remote::RemoteHook,
    ) {
        self.remotes
            .before
            .push((model.to_owned(), pattern.to_owned(), hook));
    }

    /// `Model.afterRemote(pattern, fn)`: the hook may replace `ctx.result`.
    pub fn after_remote(
        &mut self,
        model: &str,
        pattern: &str,
        hook: oxbow_rest::remote::RemoteHook,
    ) {
        self.remotes
            .after
            .push((model.to_owned(), pattern.to_owned(), hook));
    }

    /// Registers a mixin under the name model JSON uses in `mixins` (`"Audited": {...}`).
    /// It runs once per model naming it, after every boot plugin, and usually adds operation
    /// hooks ([`Model::observe`]). `TimeStamp` is built in.
    pub fn mixin(
        &mut self,
        name: &str,
        apply: impl Fn(&Arc<Model>, &Value) -> anyhow::Result<()> + Send + Sync + 'static,
    ) {
        self.mixins.insert(name.to_owned(), Arc::new(apply));
    }

    /// Mounts LoopBack's `loopback#status` handler at `path`:
    /// `{"started":"<ISO date>","uptime":<seconds>}`.
    pub fn mount_status(&mut self, path: &str) {
        let started = oxbow_rest::now_iso();
        let since = Instant::now();
        let path = path.to_owned();
        let etags = oxbow_rest::etag::EtagMode::from_config(self.plan.config.raw.get("etag"));
        self.configure(move |cfg| {
            let started = started.clone();
            cfg.route(
                &path,
                web::route()
                    .guard(
                        actix_web::guard::Any(actix_web::guard::Get()).or(actix_web::guard::Head()),
                    )
                    .to(move |req: actix_web::HttpRequest| {
                        let started = started.clone();
                        async move {
                            let uptime = since.elapsed().as_millis() as f64 / 1000.0;
                            let body = serde_json::json!({ "started": started, "uptime": uptime });
                            oxbow_rest::etag::send(
                                &req,
                                etags,
                                actix_web::http::StatusCode::OK,
                                "application/json; charset=utf-8",
                                body.to_string().into_bytes(),
                            )
                        }
                    }),
            );
        });
    }
}

/// An app ready to serve: registry built, plugins run.
pub struct Booted {
    pub plan: Arc<AppPlan>,
    pub registry: Arc<Registry>,
    routes: Vec<RouteFn>,
    /// The generation served: registry, endpoint table, pipeline (with the plugins'
    /// middleware resolved), remote code; what a reload would swap.
    current: Arc<oxbow_rest::generation::Current>,
    /// Set at shutdown: open change streams send their last event and end.
    shutdown: Arc<tokio::sync::watch::Sender<bool>>,
}

/// Builds connectors and the registry for a checked app.
pub async fn build_registry(plan: &AppPlan) -> anyhow::Result<Arc<Registry>> {
    let mut models = Vec::new();
    for ds in &plan.datasources {
        let defs: Vec<Arc<oxbow_core::ModelDefinition>> = plan
            .models
            .iter()
            .filter(|m| m.data_source == ds.name)
            .cloned()
            .map(|mut d| {
                // A User-based model's password and email setters.
                if let Some(u) = &d.auth.user {
                    d.auth.setter = Some(Arc::new(oxbow_auth::password::UserSetter {
                        model: d.name.to_string(),
                        case_sensitive_email: u.case_sensitive_email,
                    }));
                }
                Arc::new(d)
            })
            .collect();
        use oxbow_config::ConnectorPlan;
        let connector: Arc<dyn oxbow_core::Connector> = match &ds.kind {
            ConnectorPlan::Memory { file } => {
                let file = file.as_deref().map(|f| resolve_data_file(&plan.root, f));
                Arc::new(
                    oxbow_core::MemoryConnector::new(defs.iter().map(|d| d.as_ref()), file)
                        .with_context(|| format!("datasource `{}`", ds.name))?,
                )
            }
            ConnectorPlan::Sqlite(s) => {
                let sync = match s.synchronous {
                    oxbow_config::SqliteSync::Full => oxbow_sqlite::Synchronous::Full,
                    oxbow_config::SqliteSync::Normal => oxbow_sqlite::Synchronous::Normal,
                };
                Arc::new(
                    oxbow_sqlite::SqliteConnector::open(
                        &resolve_data_file(&plan.root, &s.file),
                        defs.iter().map(|d| d.as_ref()),
                        sync,
                        s.cache_rows.unwrap_or(oxbow_sqlite::DEFAULT_CACHE_ROWS),
                    )
                    .with_context(|| format!("datasource `{}`", ds.name))?,
                )
            }
            ConnectorPlan::Postgres(p) => {
                let settings = oxbow_postgres::Settings {
                    url: p.url.clone(),
                    host: p.host.clone(),
                    port: p.port,
                    database: p.database.clone(),
                    user: p.user.clone(),
                    password: p.password.clone(),
                    schema: p.schema.clone(),
                    max: p.max,
                    cache_rows: p.cache_rows,
                };
                Arc::new(
                    oxbow_postgres::PostgresConnector::connect(
                        &settings,
                        defs.iter().map(|d| d.as_ref()),
                    )
                    .await
                    .with_context(|| format!("datasource `{}`", ds.name))?,
                )
            }
            // LoopBack's transient connector keeps nothing between calls; its models are
            // used embedded in others. oxbow gives them a memory store that nothing exposes.
            ConnectorPlan::Transient => Arc::new(
                oxbow_core::MemoryConnector::new(defs.iter().map(|d| d.as_ref()), None)
                    .with_context(|| format!("datasource `{}`", ds.name))?,
            ),
            ConnectorPlan::Unknown => bail!(
                "datasource `{}`: connector `{}` is not available",
                ds.name,
                ds.connector
            ),
        };
        for d in defs {
            models.push((d, connector.clone()));
        }
    }
    let cs = &plan.config.change_streams;
    let feed = oxbow_core::FeedSettings {
        queue: cs.queue_size,
        retain_count: cs.retain_count,
        retain_age: std::time::Duration::from_secs_f64(cs.retain_seconds),
    };
    // Keep model-config.json order.
    let order: Vec<&str> = plan.models.iter().map(|m| m.name.as_str()).collect();
    models.sort_by_key(|(d, _)| order.iter().position(|n| *n == d.name.as_str()));
    let models: Vec<Arc<Model>> = models
        .into_iter()
        .map(|(d, c)| Arc::new(Model::new(d, c, feed)))
        .collect();
    // Connectors with a change log feed their models' streams from it, from now on.
    let mut followed: Vec<*const ()> = Vec::new();
    for m in &models {
        let Some(log) = m.connector().change_log() else {
            continue;
        };
        let key = Arc::as_ptr(m.connector()).cast::<()>();
        if followed.contains(&key) {
            continue;
        }
        followed.push(key);
        let feeds = models
            .iter()
            .filter(|o| Arc::ptr_eq(o.connector(), m.connector()))
            .map(|o| o.changes().clone())
            .collect();
        log.follow(feeds)
            .await
            .with_context(|| format!("the change log of model `{}`'s datasource", m.name()))?;
    }
    Ok(Arc::new(Registry::new(models)))
}

/// A connector's `file` (memory, SQLite) is relative to the app root (where `node .` runs LoopBack).
fn resolve_data_file(root: &Path, file: &str) -> PathBuf {
    let p = Path::new(file);
    if p.is_absolute() {
        p.to_owned()
    } else {
        root.join(p)
    }
}

/// Builds the registry and runs the plugins in name order.
pub async fn boot(plan: AppPlan, plugins: &[Box<dyn BootPlugin>]) -> anyhow::Result<Booted> {
    let plan = Arc::new(plan);
    let registry = build_registry(&plan).await?;
    // LoopBack's User hooks come first, before any a plugin adds.
    for m in registry.models() {
        oxbow_auth::users::install(m, registry.model("AccessToken"));
    }
    let mut ctx = BootContext {
        registry: registry.clone(),
        routes: Vec::new(),
        plan: plan.clone(),
        middleware: HashMap::new(),
        mixins: HashMap::new(),
        remotes: Default::default(),
        role_resolvers: HashMap::new(),
        user_listeners: Vec::new(),
    };
    let mut ordered: Vec<&Box<dyn BootPlugin>> = plugins.iter().collect();
    ordered.sort_by_key(|p| p.name().to_lowercase());
    for p in ordered {
        p.boot(&mut ctx)
            .await
            .with_context(|| format!("boot plugin `{}` failed", p.name()))?;
    }
    apply_mixins(&registry, &ctx.mixins)?;
    let pipeline = oxbow_rest::pipeline::Compiled::new(&plan.pipeline, &ctx.middleware)?;
    let defs: Vec<&oxbow_core::ModelDefinition> =
        registry.models().iter().map(|m| m.definition()).collect();
    let mut endpoints = oxbow_rest::endpoint::Endpoints::build(&defs, &plan.config.shared_methods);
    let cfg = &plan.config;
    let token_options = plan
        .pipeline
        .token_params()
        .map(oxbow_auth::TokenOptions::from_params)
        .unwrap_or_default();
    let auth = Arc::new(oxbow_auth::Auth::new(
        &registry,
        cfg.enable_auth,
        cfg.acl_error_status,
        token_options,
        std::mem::take(&mut ctx.role_resolvers),
    ));
    if auth.enabled {
        endpoints.compile_acls(registry.models());
    }
    let endpoints = Arc::new(endpoints);
    oxbow_rest::users::register(
        &mut ctx.remotes,
        &registry,
        &auth,
        std::mem::take(&mut ctx.user_listeners),
    );
    for table in endpoints.models() {
        for ep in &table.endpoints {
            let oxbow_rest::endpoint::Action::Remote(_) = ep.action else {
                continue;
            };
            if !ctx
                .remotes
                .methods
                .contains_key(&(ep.model.clone(), ep.name.clone()))
            {
                tracing::warn!(
                    "model `{}` declares the remote method `{}`, which no boot plugin implements (BootContext::remote_method); it answers 501",
                    ep.model,
                    ep.name
                );
            }
        }
    }
    let current = oxbow_rest::generation::Current::new(oxbow_rest::generation::Generation {
        id: 0,
        registry: registry.clone(),
        endpoints,
        pipeline: Arc::new(pipeline),
        remotes: Arc::new(ctx.remotes),
        json_limit: cfg.json_limit,
        form_limit: cfg.urlencoded_limit,
        streams: oxbow_rest::stream::StreamOptions {
            ids: cfg.change_streams.ids,
            retry_ms: cfg.change_streams.retry_ms,
            heartbeat: (cfg.change_streams.heartbeat_seconds > 0.0)
                .then(|| std::time::Duration::from_secs_f64(cfg.change_streams.heartbeat_seconds)),
        },
        etag: oxbow_rest::etag::EtagMode::from_config(cfg.raw.get("etag")),
        auth,
    });
    let (shutdown, _) = tokio::sync::watch::channel(false);
    Ok(Booted {
        plan,
        registry,
        routes: ctx.routes,
        current,
        shutdown: Arc::new(shutdown),
    })
}

/// Applies each model's `mixins`: the built-in `TimeStamp`, or one a plugin registered.
fn apply_mixins(registry: &Registry, mixins: &HashMap<String, MixinFn>) -> anyhow::Result<()> {
    for model in registry.models() {
        let Some(Value::Object(wanted)) = model.definition().settings.get("mixins") else {
            continue;
        };
        for (name, opts) in wanted {
            let opts = match opts {
                Value::Bool(false) | Value::Null => continue,
                Value::Bool(true) => Value::Object(serde_json::Map::new()),
                other => other.clone(),
            };
            if name == "TimeStamp" {
                timestamp_mixin(model, &opts);
                continue;
            }
            let Some(apply) = mixins.get(name) else {
                let mut known: Vec<&str> = mixins.keys().map(String::as_str).collect();
                known.sort_unstable();
                known.insert(0, "TimeStamp");
                bail!(
                    "model `{}`: no mixin is registered as `{name}`; a boot plugin must register it (BootContext::mixin). Known mixins: {}",
                    model.name(),
                    known.join(", ")
                );
            };
            apply(model, &opts)
                .with_context(|| format!("mixin `{name}` on model `{}`", model.name()))?;
        }
    }
    Ok(())
}

/// loopback-ds-timestamp-mixin: `updatedAt` becomes now on every save; `createdAt` is set on
/// create (its `defaultFn: "now"`) and kept on partial updates.
fn timestamp_mixin(model: &Arc<Model>, opts: &Value) {
    let updated = opts
        .get("updatedAt")
        .and_then(Value::as_str)
        .unwrap_or("updatedAt")
        .to_owned();
    let created = opts
        .get("createdAt")
        .and_then(Value::as_str)
        .unwrap_or("createdAt")
        .to_owned();
    model.observe(core::Operation::BeforeSave, move |ctx| {
        let now = Value::String(oxbow_rest::now_iso());
        if let Some(inst) = ctx.instance.as_mut() {
            if ctx.is_new_instance == Some(true) {
                inst.insert(created.clone(), now.clone());
            }
            inst.insert(updated.clone(), now);
        } else if let Some(data) = ctx.data.as_mut() {
            data.insert(updated.clone(), now);
        }
        Box::pin(std::future::ready(Ok(())))
    });
}

/// Where to listen.
#[derive(Debug, Clone)]
pub struct Listen {
    pub host: String,
    pub port: u16,
    /// HTTP worker threads (0: one per core).
    pub workers: usize,
}

impl Booted {
    /// The actix app factory's configuration: plugin routes, the REST root, `urlNotFound`.
    fn rest_api(&self) -> web::Data<oxbow_rest::RestApi> {
        let cfg = &self.plan.config;
        web::Data::new(oxbow_rest::RestApi {
            current: self.current.clone(),
            root: self
                .plan
                .pipeline
                .rest_root(&cfg.rest_api_root)
                .unwrap_or_default(),
            shutdown: self.shutdown.subscribe(),
        })
    }

    /// Registers everything the app serves on an actix `ServiceConfig`: plugin routes, the REST
    /// root and what middleware.json puts after it (static files, `urlNotFound`). Used by
    /// [`Booted::serve`] and by tests, together with [`Booted::pipeline`].
    pub fn configure(&self) -> impl Fn(&mut ServiceConfig) + Clone + Send + 'static {
        let api = self.rest_api();
        let routes = self.routes.clone();
        let rest = self
            .plan
            .pipeline
            .rest_root(&self.plan.config.rest_api_root);
        move |cfg: &mut ServiceConfig| {
            cfg.app_data(api.clone());
            for r in &routes {
                r(cfg);
            }
            if let Some(root) = &rest {
                let scope = if root.is_empty() { "/" } else { root.as_str() };
                cfg.service(web::scope(scope).default_service(web::to(oxbow_rest::handle)));
            }
            cfg.default_service(web::to(oxbow_rest::url_not_found));
        }
    }

    /// The generation being served (what a reload swaps).
    pub fn current(&self) -> &Arc<oxbow_rest::generation::Current> {
        &self.current
    }

    /// The middleware.json entries that run before the router, as an actix middleware:
    /// `App::new().wrap(booted.pipeline()).configure(booted.configure())`.
    pub fn pipeline(&self) -> oxbow_rest::pipeline::Pipeline {
        oxbow_rest::pipeline::Pipeline(self.current.clone())
    }

    /// Binds and serves until SIGINT/SIGTERM. `on_bound` gets the bound address (port 0 works).
    pub async fn serve(
        self,
        listen: &Listen,
        on_bound: impl FnOnce(SocketAddr),
    ) -> anyhow::Result<()> {
        let configure = self.configure();
        // Signals are handled here, not by actix: change streams must end before the server
        // waits for open connections, or every shutdown would wait the full timeout.
        let pipeline = self.pipeline();
        let mut server = HttpServer::new(move || {
            App::new()
                .wrap(pipeline.clone())
                .configure(configure.clone())
        })
        .disable_signals()
        .shutdown_timeout(5)
        .backlog(4096);
        if listen.workers > 0 {
            server = server.workers(listen.workers);
        }
        let server = server
            .bind((listen.host.as_str(), listen.port))
            .with_context(|| format!("cannot listen on {}:{}", listen.host, listen.port))?;
        let addr = server
            .addrs()
            .first()
            .copied()
            .ok_or_else(|| anyhow!("no address bound"))?;
        on_bound(addr);
        let server = server.run();
        let handle = server.handle();
        let shutdown = self.shutdown.clone();
        actix_rt::spawn(async move {
            wait_for_signal().await;
            let _ = shutdown.send(true);
            handle.stop(true).await;
        });
        server.await.context("server stopped with an error")
    }
}

/// SIGINT or SIGTERM.
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `HOST` and `PORT` override config.json, as in LoopBack.
pub fn listen_from_env(plan: &AppPlan) -> Listen {
    let host = std::env::var("HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| plan.config.host.clone());
    let port = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(plan.config.port);
    Listen {
        host,
        port,
        workers: 0,
    }
}
