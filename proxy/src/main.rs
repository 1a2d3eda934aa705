//! The `hipache` binary: flags, tracing, configuration, then the proxy as
//! one process, as a master, or as one of its workers (see
//! [`hipache::process`]).

use std::process::ExitCode;

use clap::Parser;
use hipache::cli::Args;
use hipache::config::Config;
use hipache::process::{self, worker::Inherited};
use hipache::{config, shutdown, Listeners, Proxy};

fn main() -> ExitCode {
    // First, before any thread exists: a worker takes the sockets its
    // master passed (this edits the environment).
    let inherited = Inherited::from_env();
    let args = Args::parse();
    if let Some(command) = &args.command {
        return hipache::tools::run(&args, command);
    }
    init_tracing(&args);
    let loaded = match config::load(&args) {
        Ok(loaded) => loaded,
        Err(errors) => {
            eprintln!("hipache: invalid configuration:\n{errors}");
            return ExitCode::from(2);
        }
    };
    if args.dry {
        print!("{}", config::dry_run_output(&loaded.config));
        return ExitCode::SUCCESS;
    }
    if inherited.is_none() {
        for w in &loaded.warnings {
            tracing::warn!("{w}");
        }
        match &loaded.path {
            Some(path) => tracing::info!(path = %path.display(), "configuration loaded"),
            None => tracing::info!("no config file found: using built-in defaults"),
        }
    }
    let config = loaded.config;
    match inherited {
        Some(inherited) => run_worker(inherited, config),
        None if config.workers == 0 => run_single(config),
        None => run_master(config),
    }
}

/// One process: binds, drops privileges, serves, watches its own memory.
fn run_single(config: Config) -> ExitCode {
    let Some(runtime) = runtime(traffic_runtime()) else {
        return ExitCode::FAILURE;
    };
    finish(runtime.block_on(async move {
        shutdown::ignore_usr1_until_handled();
        let (user, group, limit) = (
            config.user.clone(),
            config.group.clone(),
            config.memory_limit,
        );
        let listeners = Listeners::bind(&config)?;
        let proxy = Proxy::from_listeners(config, listeners).await?;
        process::privileges::drop_to(user.as_deref(), group.as_deref())?;
        proxy
            .serve(shutdown::signal_or(process::memory::watch_self(limit)))
            .await?;
        Ok(())
    }))
}

/// A worker: the master's sockets, privilege drop, ready report, serve.
fn run_worker(mut inherited: Inherited, config: Config) -> ExitCode {
    // Workers are the unit of parallelism (one per core, as nginx's): each
    // runs a single-threaded runtime, with no cross-thread scheduling.
    let Some(runtime) = runtime(tokio::runtime::Builder::new_current_thread()) else {
        return ExitCode::FAILURE;
    };
    let slot = inherited.slot();
    let span = tracing::info_span!("worker", slot);
    let _entered = span.enter();
    finish(runtime.block_on(async move {
        shutdown::ignore_usr1_until_handled();
        let (user, group) = (config.user.clone(), config.group.clone());
        let listeners = inherited.listeners(&config)?;
        let proxy = Proxy::from_listeners(config, listeners).await?;
        process::privileges::drop_to(user.as_deref(), group.as_deref())?;
        inherited.report_ready(proxy.admin_addr())?;
        tracing::info!(pid = std::process::id(), "worker serving");
        proxy.serve(shutdown::signal()).await?;
        Ok(())
    }))
}

/// The master: a small single-threaded runtime; it serves no traffic.
fn run_master(config: Config) -> ExitCode {
    let Some(runtime) = runtime(tokio::runtime::Builder::new_current_thread()) else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(process::master::run(config)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            tracing::error!(error = %e, "hipache stopped");
            eprintln!("hipache: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The runtime of a single process serving traffic: one thread per core,
/// or a single-threaded runtime when only one core is available (a
/// container limited to one CPU, a process pinned to one): the same work
/// without the work-stealing scheduler's synchronisation.
fn traffic_runtime() -> tokio::runtime::Builder {
    match std::thread::available_parallelism().map(|n| n.get()) {
        Ok(1) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    }
}

fn runtime(mut builder: tokio::runtime::Builder) -> Option<tokio::runtime::Runtime> {
    match builder.enable_all().build() {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("hipache: cannot start the runtime: {e}");
            None
        }
    }
}

fn finish(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "hipache stopped");
            eprintln!("hipache: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(args: &Args) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("HIPACHE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if args.log_format == hipache::cli::LogFormat::Json {
        builder.json().init();
    } else {
        builder.init();
    }
}
