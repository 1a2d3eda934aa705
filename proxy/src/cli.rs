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
        value_name = "FILE",
        global = true
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
    #[arg(long, env = "HIPACHE_DRIVER", value_name = "URL", global = true)]
    pub driver: Option<String>,

    /// Password for every Redis connection, replacing any in the driver
    /// URLs: a secret with characters a URL would need escaped, kept out
    /// of the URL (set it through the environment, not the command line).
    #[arg(
        long,
        env = "HIPACHE_REDIS_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true,
        global = true
    )]
    pub redis_password: Option<String>,

    /// Password for the Sentinels of a `redis+sentinel://` driver,
    /// replacing any `sentinel_password` in the URLs (set it through the
    /// environment, not the command line).
    #[arg(
        long,
        env = "HIPACHE_SENTINEL_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true,
        global = true
    )]
    pub sentinel_password: Option<String>,

    /// Token the status page asks for (overrides `server.statusToken`): a
    /// secret, so set it through the environment (from a Kubernetes
    /// Secret, for instance), not in the file or on the command line.
    #[arg(
        long,
        env = "HIPACHE_STATUS_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub status_token: Option<String>,

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

///
/// Every command reads the driver of the configuration (`-c`, `--driver`,
/// `--redis-password`: the same flags and file as the proxy), so it honours
/// the Redis URL, its key prefix and its ACL user. Writes go to the write
/// URL, validate before writing, and never touch a frontend owned by
/// someone else (the syncer's `k8s:` identifiers, or another identifier
/// than the one given) unless `--force` says so. Exit codes: 0 done, 1
/// refused (invalid input, owned elsewhere, not found), 2 an error (Redis
/// unreachable, file unreadable).
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum RoutesCommand {
    /// Validates a route document as this proxy would read it: exit 0 when
    /// it is valid; 1 with every error on standard error, one per line as
    /// `<JSON pointer>: <message>`; 2 when the file cannot be read.
    Check {
        /// The document (JSON), or `-` for standard input.
        file: PathBuf,
    },
    /// Lists frontends (hosts, identifiers, backend and dead counts),
    /// sorted by host; SCAN, never KEYS.
    List {
        /// A glob on the host (`*.example.com`, `shop*`); every host when
        /// absent.
        pattern: Option<String>,
        #[command(flatten)]
        output: Output,
    },
    /// One frontend: its list, its route document, its dead marks.
    Get {
        host: String,
        #[command(flatten)]
        output: Output,
    },
    /// Creates or replaces a frontend's list: `IDENTIFIER URL...`.
    Set {
        host: String,
        identifier: String,
        /// Backend elements: `http://10.0.0.1:8080`, or with a path rule
        /// `/api http://10.0.0.2:8080` (quoted).
        #[arg(required = true)]
        backends: Vec<String>,
        #[command(flatten)]
        force: Force,
    },
    /// Appends a backend to a frontend's list.
    AddBackend {
        host: String,
        backend: String,
        #[command(flatten)]
        force: Force,
    },
    /// Removes a backend (every element equal to it) from a frontend's list.
    RmBackend {
        host: String,
        backend: String,
        #[command(flatten)]
        force: Force,
    },
    /// Deletes a frontend: its list, route document and dead marks.
    Rm {
        host: String,
        #[command(flatten)]
        force: Force,
    },
    /// The backends marked dead for a host, and for how long.
    Dead {
        host: String,
        #[command(flatten)]
        output: Output,
    },
    /// Which frontend, rule and backends a request would get, with the
    /// reasons: the proxy's own lookup, on the configured store.
    Resolve {
        host: String,
        /// The request path (with an optional `?query`).
        #[arg(default_value = "/")]
        path: String,
        /// The request method.
        #[arg(long, default_value = "GET")]
        method: String,
        /// A request header `NAME: VALUE` (repeatable), for header matches.
        #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
        headers: Vec<String>,
        #[command(flatten)]
        output: Output,
    },
    /// Prints every frontend and route document in the routes-file format
    /// (`frontends:` and `routes:`), which `import` and `--routes` read.
    Export {
        /// `yaml` or `json`.
        #[arg(long, value_enum, default_value_t = Format::Yaml)]
        format: Format,
    },
    /// Makes Redis hold a routes file's frontends and route documents: prints
    /// the difference, and writes it only with `--apply` (each host in one
    /// MULTI/EXEC transaction). Hosts absent from the file are left alone
    /// unless `--prune`.
    Import {
        /// The routes file (YAML or JSON), or `-` for standard input.
        file: PathBuf,
        /// Write the difference (without it: a dry run).
        #[arg(long)]
        apply: bool,
        /// Also delete frontends that are not in the file (never the
        /// syncer's `k8s:` ones unless `--force`).
        #[arg(long)]
        prune: bool,
        /// Keep Redis equal to the file: apply now, then again each time the
        /// file changes (implies `--apply`; a host removed from the file is
        /// deleted). Stops on SIGINT or SIGTERM.
        #[arg(long)]
        watch: bool,
        #[command(flatten)]
        force: Force,
    },
}

/// Output of the reading commands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::Args)]
pub struct Output {
    /// Machine-readable output (one JSON document) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Ownership override of the writing commands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::Args)]
pub struct Force {
    /// Write even a frontend owned by the syncer (`k8s:`) or by another
    /// identifier.
    #[arg(long)]
    pub force: bool,
}

/// Format of `routes export`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    #[default]
    Yaml,
    Json,
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
