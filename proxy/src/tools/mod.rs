//! The tools of the `hipache` binary (`hipache routes ...`), run instead of
//! the proxy: they read their input, talk to the configured store, print,
//! and exit. They are Hipache's promised "configuration adapters": what
//! operators typed with `redis-cli rpush`, validated first, and a routes
//! file kept in Redis.
//!
//! # Layout
//! - [`check`]: `routes check`, a route document validated offline.
//! - [`redis`]: the one connection of a tool and the frontend state it reads
//!   and writes (list, route document, dead marks), with the ownership rule.
//! - [`edit`]: `set`, `add-backend`, `rm-backend`, `rm`.
//! - [`show`]: `list`, `get`, `dead`, `export`, and the table printer.
//! - [`resolve`]: `resolve`, through the proxy's own route store.
//! - [`import`]: `import` (the difference, applied per host) and `--watch`.

pub mod check;
pub mod edit;
pub mod import;
pub mod redis;
pub mod resolve;
pub mod show;

use std::process::ExitCode;

use crate::cli::{Args, Command, RoutesCommand};

/// Why a tool stopped: refused (exit 1: invalid input, owned elsewhere, not
/// found) or failed (exit 2: Redis, a file, the configuration).
#[derive(Debug)]
pub enum ToolError {
    Refused(String),
    Failed(String),
}

impl ToolError {
    fn code(&self) -> ExitCode {
        match self {
            ToolError::Refused(_) => ExitCode::from(1),
            ToolError::Failed(_) => ExitCode::from(2),
        }
    }

    fn message(&self) -> &str {
        match self {
            ToolError::Refused(m) | ToolError::Failed(m) => m,
        }
    }
}

/// Runs a tool; its exit code.
pub fn run(args: &Args, command: &Command) -> ExitCode {
    let Command::Routes(routes) = command;
    if let RoutesCommand::Check { file } = routes {
        return check::routes_check(file);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hipache routes: cannot start: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run_routes(args, routes)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hipache routes: {}", e.message());
            e.code()
        }
    }
}

async fn run_routes(args: &Args, command: &RoutesCommand) -> Result<(), ToolError> {
    let config = match crate::config::load(args) {
        Ok(loaded) => loaded.config,
        Err(errors) => {
            return Err(ToolError::Failed(format!(
                "invalid configuration:\n{errors}"
            )))
        }
    };
    if let RoutesCommand::Resolve {
        host,
        path,
        method,
        headers,
        output,
    } = command
    {
        return resolve::run(&config, host, path, method, headers, *output).await;
    }
    let mut store = redis::Store::connect(&config).await?;
    match command {
        RoutesCommand::List { pattern, output } => {
            show::list(&mut store, pattern.as_deref(), *output).await
        }
        RoutesCommand::Get { host, output } => show::get(&mut store, host, *output).await,
        RoutesCommand::Dead { host, output } => show::dead(&mut store, host, *output).await,
        RoutesCommand::Export { format } => show::export(&mut store, *format).await,
        RoutesCommand::Set {
            host,
            identifier,
            backends,
            force,
        } => edit::set(&mut store, host, identifier, backends, *force).await,
        RoutesCommand::AddBackend {
            host,
            backend,
            force,
        } => edit::add_backend(&mut store, host, backend, *force).await,
        RoutesCommand::RmBackend {
            host,
            backend,
            force,
        } => edit::rm_backend(&mut store, host, backend, *force).await,
        RoutesCommand::Rm { host, force } => edit::rm(&mut store, host, *force).await,
        RoutesCommand::Import {
            file,
            apply,
            prune,
            watch,
            force,
        } => {
            let mode = import::Mode {
                apply: *apply || *watch,
                prune: *prune,
                force: force.force,
            };
            match watch {
                true => import::watch(&mut store, file, mode).await,
                false => import::once(&mut store, file, mode).await.map(|_| ()),
            }
        }
        RoutesCommand::Check { .. } | RoutesCommand::Resolve { .. } => Ok(()),
    }
}
