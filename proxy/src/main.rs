//! The `hipache` binary: flags, tracing, configuration, then the proxy.

use std::process::ExitCode;

use clap::Parser;
use hipache::cli::Args;
use hipache::{config, shutdown, Proxy};

fn main() -> ExitCode {
    let args = Args::parse();
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
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    match &loaded.path {
        Some(path) => tracing::info!(path = %path.display(), "configuration loaded"),
        None => tracing::info!("no config file found: using built-in defaults"),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hipache: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let proxy = Proxy::bind(loaded.config).await?;
        proxy.serve(shutdown::signal()).await
    });
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
