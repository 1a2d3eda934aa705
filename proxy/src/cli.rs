//! Command-line flags of `hipache`, each with a `HIPACHE_*` environment
//! fallback; flags win over the environment, which wins over the file.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// A Redis-configured HTTP and WebSocket reverse proxy, compatible with Hipache.
#[derive(Debug, Clone, Default, PartialEq, Eq, Parser)]
#[command(name = "hipache", version, about)]
pub struct Args {
    /// Configuration file (JSON or YAML). Default: `config_$SETTINGS_FLAVOR.json`
    /// when SETTINGS_FLAVOR is set, else `config.json`, in the working
    /// directory; built-in defaults when there is none.
    #[arg(
        short = 'c',
        long = "config",
        env = "HIPACHE_CONFIG",
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,

    /// Validate the configuration, print it (secrets censored) and exit
    /// (`HIPACHE_DRY` takes 1/0, true/false, yes/no, on/off.)
    #[arg(long, env = "HIPACHE_DRY", value_parser = clap::builder::BoolishValueParser::new())]
    pub dry: bool,

    /// Serve routes from this YAML file instead of Redis: shorthand for
    /// `--driver file:FILE`; overrides the file's driver.
    #[arg(long, env = "HIPACHE_ROUTES", value_name = "FILE")]
    pub routes: Option<PathBuf>,

    /// Driver URL (`redis://[[user]:password@]host[:port][/db][#prefix]`,
    /// `rediss://...`, `file:PATH`), or `READ_URL,WRITE_URL`; overrides the
    /// file's driver.
    #[arg(long, env = "HIPACHE_DRIVER", value_name = "URL")]
    pub driver: Option<String>,

    /// Password for every Redis connection, replacing any in the driver
    /// URLs: a secret with characters a URL would need escaped, kept out
    /// of the URL (set it through the environment, not the command line).
    #[arg(
        long,
        env = "HIPACHE_REDIS_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true
    )]
    pub redis_password: Option<String>,

    /// Port of every plain HTTP listener (overrides the file).
    #[arg(long, env = "HIPACHE_HTTP_PORT", value_name = "PORT")]
    pub http_port: Option<u16>,

    /// Port of every HTTPS listener (overrides the file).
    #[arg(long, env = "HIPACHE_HTTPS_PORT", value_name = "PORT")]
    pub https_port: Option<u16>,

    /// Admin listener (`/metrics`, `/healthz`, `/readyz`) as `IP:PORT`, or
    /// `off` to disable (overrides `server.adminAddress`).
    #[arg(long = "admin", env = "HIPACHE_ADMIN_ADDRESS", value_name = "ADDR")]
    pub admin: Option<String>,

    /// Worker processes: 0 is one process with no master, N >= 1 a master
    /// plus N workers (overrides `server.workers`).
    #[arg(long, env = "HIPACHE_WORKERS", value_name = "N")]
    pub workers: Option<usize>,

    /// Format of the process's own logs (not the access log).
    #[arg(long, env = "HIPACHE_LOG_FORMAT", value_enum, ignore_case = true, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// A tool instead of the proxy.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Tools of the `hipache` binary.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Route documents (`routes:<host>` in Redis, see docs/routes.md).
    #[command(subcommand)]
    Routes(RoutesCommand),
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum RoutesCommand {
    /// Validates a route document as this proxy would read it: exit 0 when
    /// it is valid; 1 with every error on standard error, one per line as
    /// `<JSON pointer>: <message>`; 2 when the file cannot be read.
    Check {
        /// The document (JSON), or `-` for standard input.
        file: PathBuf,
    },
}

/// Format of the process's own logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn flags_parse() {
        let a = Args::try_parse_from([
            "hipache",
            "-c",
            "/etc/hipache.json",
            "--dry",
            "--routes",
            "routes.yaml",
            "--http-port",
            "8080",
            "--https-port",
            "8443",
            "--admin",
            "0.0.0.0:10264",
            "--workers",
            "4",
            "--log-format",
            "json",
        ])
        .unwrap();
        assert_eq!(a.config, Some(PathBuf::from("/etc/hipache.json")));
        assert!(a.dry);
        assert_eq!(a.routes, Some(PathBuf::from("routes.yaml")));
        assert_eq!((a.http_port, a.https_port), (Some(8080), Some(8443)));
        assert_eq!(a.admin.as_deref(), Some("0.0.0.0:10264"));
        assert_eq!(a.workers, Some(4));
        assert_eq!(a.log_format, LogFormat::Json);
    }

    #[test]
    fn routes_check_parses() {
        let a = Args::try_parse_from(["hipache", "routes", "check", "-"]).unwrap();
        let want = RoutesCommand::Check { file: "-".into() };
        assert_eq!(a.command, Some(Command::Routes(want)));
        assert!(Args::try_parse_from(["hipache", "routes", "check"]).is_err());
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(Args::try_parse_from(["hipache", "--http-port", "70000"]).is_err());
        assert!(Args::try_parse_from(["hipache", "--workers", "-1"]).is_err());
        assert!(Args::try_parse_from(["hipache", "--log-format", "xml"]).is_err());
    }
}
