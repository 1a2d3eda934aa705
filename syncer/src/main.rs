//! `hipache-syncer`: parses flags, starts tracing, runs until SIGTERM or
//! SIGINT (a second one exits at once: [`hipache_signal`]).

use clap::Parser;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = hipache_syncer::config::Args::parse();
    let check_only = args.check_config;
    let config = args.into_config()?;
    if check_only {
        println!("hipache-syncer: configuration is valid");
        println!("redis: {}", config.redis.censored());
        println!("key prefix: {:?}", config.redis_prefix);
        return Ok(());
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if config.log_json {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let shutdown = CancellationToken::new();
    let drain = shutdown.clone();
    tokio::spawn(async move {
        // The first SIGTERM or SIGINT drains; a second one exits at once.
        hipache_signal::signal().await;
        tracing::info!("shutting down");
        drain.cancel();
    });
    hipache_syncer::run(config, shutdown).await?;
    Ok(())
}
