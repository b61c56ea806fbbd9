//! The `oxbow` command line: `serve`, `check` and `routes` for LoopBack 3 app directories.
//!
//! App binaries with their own boot plugins (like this repository's default app in `server/`)
//! call [`run`] with their plugins; the plain `oxbow` binary calls it with none.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use oxbow::BootPlugin;

#[derive(Debug, Parser)]
#[command(
    name = "oxbow",
    version,
    about = "A configuration-driven model server for LoopBack 3 apps"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve an app directory (the folder holding `server/`, or `server/` itself).
    Serve {
        dir: Option<PathBuf>,
        /// Port (overrides `PORT` and config.json; 0 picks a free port).
        #[arg(long)]
        port: Option<u16>,
        /// Host to bind (overrides `HOST` and config.json).
        #[arg(long)]
        host: Option<String>,
        /// HTTP worker threads (default: one per core).
        #[arg(long, default_value_t = 0)]
        workers: usize,
    },
    /// Check an app directory and print every problem, without serving.
    Check { dir: Option<PathBuf> },
    /// Print the REST endpoint table: verb, path, method name, access type, in the order
    /// requests are matched (after `sharedMethods`).
    Routes { dir: Option<PathBuf> },
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("OXBOW_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Parses the command line and runs it. `default_dir` is served when no subcommand is given.
pub fn run(plugins: Vec<Box<dyn BootPlugin>>, default_dir: Option<PathBuf>) -> ExitCode {
    init_logging();
    let cli = Cli::parse();
    let command = match cli.command {
        Some(c) => c,
        None => match &default_dir {
            Some(_) => Command::Serve {
                dir: None,
                port: None,
                host: None,
                workers: 0,
            },
            None => {
                eprintln!("usage: oxbow serve DIR | oxbow check DIR (see oxbow --help)");
                return ExitCode::from(2);
            }
        },
    };
    match command {
        Command::Routes { dir } => {
            let dir = dir.or(default_dir).unwrap_or_else(|| PathBuf::from("."));
            match oxbow_config::load(&dir) {
                Ok(plan) => {
                    print!("{}", routes_table(&plan));
                    ExitCode::SUCCESS
                }
                Err(problems) => {
                    eprint!("{problems}");
                    eprintln!("{} problem(s) found", problems.0.len());
                    ExitCode::from(1)
                }
            }
        }
        Command::Check { dir } => {
            let dir = dir.or(default_dir).unwrap_or_else(|| PathBuf::from("."));
            match oxbow_config::load(&dir) {
                Ok(plan) => {
                    for w in &plan.warnings {
                        eprintln!("warning: {w}");
                    }
                    println!(
                        "{}: ok ({} models, {} datasources)",
                        dir.display(),
                        plan.models.len(),
                        plan.datasources.len()
                    );
                    ExitCode::SUCCESS
                }
                Err(problems) => {
                    eprint!("{problems}");
                    eprintln!("{} problem(s) found", problems.0.len());
                    ExitCode::from(1)
                }
            }
        }
        Command::Serve {
            dir,
            port,
            host,
            workers,
        } => {
            let dir = dir.or(default_dir).unwrap_or_else(|| PathBuf::from("."));
            let plan = match oxbow_config::load(&dir) {
                Ok(p) => p,
                Err(problems) => {
                    eprint!("{problems}");
                    eprintln!("{} problem(s) found; not serving", problems.0.len());
                    return ExitCode::from(1);
                }
            };
            for w in &plan.warnings {
                eprintln!("warning: {w}");
            }
            let mut listen = oxbow::listen_from_env(&plan);
            if let Some(p) = port {
                listen.port = p;
            }
            if let Some(h) = host {
                listen.host = h;
            }
            listen.workers = workers;
            let result = actix_rt_block_on(async move {
                let booted = oxbow::boot(plan, &plugins).await?;
                booted
                    .serve(&listen, |addr| {
                        let host = match addr.ip() {
                            ip if ip.is_unspecified() => "localhost".to_owned(),
                            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
                            ip => ip.to_string(),
                        };
                        println!("Web server listening at: http://{host}:{}", addr.port());
                    })
                    .await
            });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

/// The endpoint table as `oxbow routes` prints it: one line per route, models in
/// model-config order, each model's routes in matching order; then the methods
/// `sharedMethods` left out.
pub fn routes_table(plan: &oxbow_config::AppPlan) -> String {
    use std::fmt::Write;
    let Some(root) = plan.pipeline.rest_root(&plan.config.rest_api_root) else {
        return "middleware.json has no loopback#rest entry: no REST routes\n".to_owned();
    };
    let defs: Vec<&oxbow_core::ModelDefinition> = plan.models.iter().collect();
    let table = oxbow_rest::endpoint::Endpoints::build(&defs, &plan.config.shared_methods);
    let mut rows: Vec<[String; 4]> = Vec::new();
    let mut hidden = Vec::new();
    for (def, model) in defs.iter().zip(table.models()) {
        if !def.public || !def.is_persisted() {
            continue;
        }
        for route in &model.routes {
            let ep = &model.endpoints[route.endpoint];
            let path = match &*route.path {
                "/" => String::new(),
                p => p.to_owned(),
            };
            rows.push([
                route.verb.to_ascii_uppercase(),
                format!("{root}/{}{path}", def.http_path),
                ep.full_name(),
                ep.access.as_str().to_owned(),
            ]);
        }
        for ep in model.endpoints.iter().filter(|e| !e.shared) {
            // destroyAll is never shared unless an app says so.
            if ep.name != "destroyAll" {
                hidden.push(ep.full_name());
            }
        }
    }
    let mut widths = [4, 4, 6, 6];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, r: [&str; 4]| {
        let _ = writeln!(
            out,
            "{:<w0$}  {:<w1$}  {:<w2$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
    };
    line(&mut out, ["VERB", "PATH", "METHOD", "ACCESS"]);
    for r in &rows {
        line(&mut out, [&r[0], &r[1], &r[2], &r[3]]);
    }
    if !hidden.is_empty() {
        let _ = writeln!(out, "\nnot shared (sharedMethods): {}", hidden.join(", "));
    }
    out
}

fn actix_rt_block_on<F: std::future::Future>(f: F) -> F::Output {
    oxbow::rt::System::new().block_on(f)
}
