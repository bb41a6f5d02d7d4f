//! Command line, environment and config file, resolved once into typed settings.
//!
//! Every setting has a flag and a `GOVERNANCE_…` variable; `--config FILE`
//! names a TOML file with the same keys (snake_case). A flag or variable wins
//! over the file, and the file over the default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;

use crate::evidence::DatabaseSettings;
use crate::evidence::redact::DEFAULT_KEY_PATTERNS;
use crate::mutations::Mode;
use crate::server::tls::TlsFiles;

#[derive(Debug, Parser)]
#[command(
    name = "governance-sidecar",
    version,
    about = "Kernite policy decisions over gRPC, with evidence committed in one Postgres transaction with the write it governs."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the gRPC API (Governance, grpc.health.v1, reflection).
    Serve(Box<ServeArgs>),
    /// Decide one Kernite request read as JSON from stdin and print Kernite's
    /// response body. Exit status: 0 for a decision, 2 for an invalid request.
    Evaluate {
        /// The Idempotency-Key to decide with (part of the trace_hash).
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Serve with a private PostgreSQL started from the machine's installed
    /// server binaries (as the `postgres` user when root), migrated, with the
    /// invoice example's table and mutation unless --mutations is given.
    Dev(Box<DevArgs>),
    /// Ask a running sidecar's grpc.health.v1 service; exit 0 when SERVING.
    /// For container health checks where there is no shell or grpc_health_probe.
    Health {
        /// The sidecar's gRPC address.
        #[arg(long, default_value = "127.0.0.1:50051")]
        address: SocketAddr,
        /// The service to ask about; empty for the server as a whole.
        #[arg(long, default_value = "governance.v1.Governance")]
        service: String,
        /// Give up after this many milliseconds.
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
    /// Apply the embedded schema migrations (safe with concurrent starters).
    Migrate {
        /// PostgreSQL URL (of a role that may create tables).
        #[arg(long, env = "GOVERNANCE_DATABASE_URL", required_unless_present = "database_url_file")]
        database_url: Option<String>,
        /// File holding the PostgreSQL URL, e.g. a mounted Kubernetes Secret.
        #[arg(long, env = "GOVERNANCE_DATABASE_URL_FILE")]
        database_url_file: Option<PathBuf>,
        /// PEM file of the CA that signs PostgreSQL's certificate (with `sslmode=require` or stricter).
        #[arg(long, env = "GOVERNANCE_DATABASE_CA_FILE")]
        database_ca_file: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Where the private PostgreSQL keeps its data; kept between runs. [default: $TMPDIR/governance-sidecar-dev]
    #[arg(long, env = "GOVERNANCE_DEV_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Port of the private PostgreSQL on 127.0.0.1 (0: any free port).
    #[arg(long, env = "GOVERNANCE_DEV_POSTGRES_PORT", default_value_t = 0)]
    pub postgres_port: u16,

    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Settings of `serve`. Every field is optional here so that flags,
/// environment and file can be layered; [`ServeArgs::resolve`] applies defaults.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (snake_case keys).
    #[arg(long, env = "GOVERNANCE_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Address of the gRPC listener. A sidecar talks to its own pod: loopback by default. [default: 127.0.0.1:50051]
    #[arg(long, env = "GOVERNANCE_LISTEN")]
    pub listen: Option<SocketAddr>,

    /// Optional second listener that serves grpc.health.v1 only, e.g. `0.0.0.0:50052`:
    /// kubelet's gRPC probes dial the pod IP, while Governance stays on loopback.
    #[arg(long, env = "GOVERNANCE_HEALTH_LISTEN")]
    pub health_listen: Option<SocketAddr>,

    /// PEM certificate chain for TLS on the service port (with --tls-key).
    /// Without it the port speaks plaintext, which loopback in a pod needs no more than.
    #[arg(long, env = "GOVERNANCE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, env = "GOVERNANCE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// PEM CA certificates: clients must present a certificate one of them signed (mutual TLS).
    #[arg(long, env = "GOVERNANCE_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,

    /// How often the TLS files are checked for replacement, in milliseconds. [default: 5000]
    #[arg(long, env = "GOVERNANCE_TLS_RELOAD_MS")]
    pub tls_reload_ms: Option<u64>,

    /// Largest request message accepted, in bytes. [default: 4194304]
    #[arg(long, env = "GOVERNANCE_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<usize>,

    /// Governance calls processed at once across all connections; more wait (health checks never do). [default: 1024]
    #[arg(long, env = "GOVERNANCE_CONCURRENCY_LIMIT")]
    pub concurrency_limit: Option<usize>,

    /// Upper bound on any call, in milliseconds, on top of the client's own deadline. [default: 30000]
    #[arg(long, env = "GOVERNANCE_REQUEST_TIMEOUT_MS")]
    pub request_timeout_ms: Option<u64>,

    /// HTTP/2 keepalive ping interval, in milliseconds. [default: 30000]
    #[arg(long, env = "GOVERNANCE_KEEPALIVE_INTERVAL_MS")]
    pub keepalive_interval_ms: Option<u64>,

    /// How long to wait for a keepalive ping's answer, in milliseconds. [default: 10000]
    #[arg(long, env = "GOVERNANCE_KEEPALIVE_TIMEOUT_MS")]
    pub keepalive_timeout_ms: Option<u64>,

    /// After SIGTERM/SIGINT, health reports NOT_SERVING for this long, in
    /// milliseconds, before the listener closes and in-flight calls drain. [default: 0]
    #[arg(long, env = "GOVERNANCE_SHUTDOWN_DELAY_MS")]
    pub shutdown_delay_ms: Option<u64>,

    /// Tokio worker threads. [default: the number of CPUs]
    #[arg(long, env = "GOVERNANCE_WORKER_THREADS")]
    pub worker_threads: Option<usize>,

    /// Log format. [default: text]
    #[arg(long, env = "GOVERNANCE_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,

    /// PostgreSQL URL for ExecuteWithEvidence, e.g. postgresql://sidecar@127.0.0.1/app. Without it only Evaluate is served.
    #[arg(long, env = "GOVERNANCE_DATABASE_URL")]
    pub database_url: Option<String>,

    /// File holding the PostgreSQL URL (e.g. a mounted Kubernetes Secret), so the
    /// password is in no environment variable or command line; used when --database-url is not.
    #[arg(long, env = "GOVERNANCE_DATABASE_URL_FILE")]
    pub database_url_file: Option<PathBuf>,

    /// Kernite policy bundle (`kernite.policy.bundle.v1`) to decide with: policies
    /// come from the operator, not the request. Reloaded when the file changes.
    #[arg(long, env = "GOVERNANCE_POLICY_BUNDLE")]
    pub policy_bundle: Option<PathBuf>,

    /// How often the policy bundle file is checked for changes, in milliseconds. [default: 1000]
    #[arg(long, env = "GOVERNANCE_POLICY_BUNDLE_POLL_MS")]
    pub policy_bundle_poll_ms: Option<u64>,

    /// With a policy bundle, decide a request that carries its own `policy_context`
    /// with it instead of refusing the request. [default: false]
    #[arg(long, env = "GOVERNANCE_ALLOW_REQUEST_POLICIES", num_args = 0..=1, default_missing_value = "true")]
    pub allow_request_policies: Option<bool>,

    /// TOML file declaring the mutations callers may name (see README).
    #[arg(long, env = "GOVERNANCE_MUTATIONS")]
    pub mutations: Option<PathBuf>,

    /// Database connections in the pool. [default: 16]
    #[arg(long, env = "GOVERNANCE_POOL_SIZE")]
    pub pool_size: Option<usize>,

    /// How long a call waits for a database connection, in milliseconds; then it fails with UNAVAILABLE. [default: 2000]
    #[arg(long, env = "GOVERNANCE_POOL_WAIT_TIMEOUT_MS")]
    pub pool_wait_timeout_ms: Option<u64>,

    /// Apply pending migrations before serving. [default: false]
    #[arg(long, env = "GOVERNANCE_MIGRATE", num_args = 0..=1, default_missing_value = "true")]
    pub migrate: Option<bool>,

    /// Longest a database statement may run, in milliseconds; a mutation over it is rolled back. [default: 5000]
    #[arg(long, env = "GOVERNANCE_STATEMENT_TIMEOUT_MS")]
    pub statement_timeout_ms: Option<u64>,

    /// PEM CA certificate(s) to verify Postgres with when the URL's sslmode is not `disable`. [default: system roots]
    #[arg(long, env = "GOVERNANCE_DATABASE_CA_FILE")]
    pub database_ca_file: Option<PathBuf>,

    /// Mode of mutations that do not set their own: enforce, observe or skip. [default: enforce]
    #[arg(long, env = "GOVERNANCE_MODE", value_enum)]
    pub mode: Option<Mode>,

    /// Request paths whose values are masked in stored evidence, comma-separated (e.g. payload.card_number).
    #[arg(long, env = "GOVERNANCE_REDACT_PATHS", value_delimiter = ',')]
    pub redact_paths: Option<Vec<String>>,

    /// Key-name patterns masked anywhere in stored evidence, comma-separated, case-insensitive, `*` wildcard.
    /// [default: password,passwd,secret,*_secret,token,*_token,api_key,authorization,card_number,cvv]
    #[arg(long, env = "GOVERNANCE_REDACT_KEYS", value_delimiter = ',')]
    pub redact_keys: Option<Vec<String>>,
}

impl ServeArgs {
    /// Fills each unset setting from `other`.
    fn or(self, other: ServeArgs) -> ServeArgs {
        ServeArgs {
            config: self.config.or(other.config),
            listen: self.listen.or(other.listen),
            health_listen: self.health_listen.or(other.health_listen),
            tls_cert: self.tls_cert.or(other.tls_cert),
            tls_key: self.tls_key.or(other.tls_key),
            tls_client_ca: self.tls_client_ca.or(other.tls_client_ca),
            tls_reload_ms: self.tls_reload_ms.or(other.tls_reload_ms),
            max_message_bytes: self.max_message_bytes.or(other.max_message_bytes),
            concurrency_limit: self.concurrency_limit.or(other.concurrency_limit),
            request_timeout_ms: self.request_timeout_ms.or(other.request_timeout_ms),
            keepalive_interval_ms: self.keepalive_interval_ms.or(other.keepalive_interval_ms),
            keepalive_timeout_ms: self.keepalive_timeout_ms.or(other.keepalive_timeout_ms),
            shutdown_delay_ms: self.shutdown_delay_ms.or(other.shutdown_delay_ms),
            log_format: self.log_format.or(other.log_format),
            worker_threads: self.worker_threads.or(other.worker_threads),
            database_url: self.database_url.or(other.database_url),
            database_url_file: self.database_url_file.or(other.database_url_file),
            mutations: self.mutations.or(other.mutations),
            policy_bundle: self.policy_bundle.or(other.policy_bundle),
            policy_bundle_poll_ms: self.policy_bundle_poll_ms.or(other.policy_bundle_poll_ms),
            allow_request_policies: self.allow_request_policies.or(other.allow_request_policies),
            pool_size: self.pool_size.or(other.pool_size),
            pool_wait_timeout_ms: self.pool_wait_timeout_ms.or(other.pool_wait_timeout_ms),
            migrate: self.migrate.or(other.migrate),
            statement_timeout_ms: self.statement_timeout_ms.or(other.statement_timeout_ms),
            database_ca_file: self.database_ca_file.or(other.database_ca_file),
            mode: self.mode.or(other.mode),
            redact_paths: self.redact_paths.or(other.redact_paths),
            redact_keys: self.redact_keys.or(other.redact_keys),
        }
    }

    /// Layers the config file under the flags and applies the defaults.
    pub fn resolve(self) -> anyhow::Result<ServerSettings> {
        let merged = match &self.config {
            Some(path) => {
                let file = read_config_file(path)?;
                self.or(file)
            }
            None => self,
        };
        let ms = Duration::from_millis;
        Ok(ServerSettings {
            listen: merged.listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 50051))),
            health_listen: merged.health_listen,
            tls: match (merged.tls_cert, merged.tls_key) {
                (Some(cert), Some(key)) => Some(TlsFiles { cert, key, client_ca: merged.tls_client_ca }),
                (None, None) if merged.tls_client_ca.is_none() => None,
                _ => anyhow::bail!("TLS needs both tls_cert and tls_key (and tls_client_ca needs them too)"),
            },
            tls_reload: ms(merged.tls_reload_ms.unwrap_or(5_000).max(100)),
            max_message_bytes: merged.max_message_bytes.unwrap_or(4 * 1024 * 1024),
            concurrency_limit: merged.concurrency_limit.unwrap_or(1024).max(1),
            request_timeout: ms(merged.request_timeout_ms.unwrap_or(30_000)),
            keepalive_interval: ms(merged.keepalive_interval_ms.unwrap_or(30_000)),
            keepalive_timeout: ms(merged.keepalive_timeout_ms.unwrap_or(10_000)),
            shutdown_delay: ms(merged.shutdown_delay_ms.unwrap_or(0)),
            log_format: merged.log_format.unwrap_or_default(),
            worker_threads: merged.worker_threads.filter(|&n| n > 0),
            database: database_url(merged.database_url, merged.database_url_file.as_deref())?.map(|url| {
                DatabaseSettings {
                    url,
                    pool_size: merged.pool_size.unwrap_or(16).max(1),
                    wait_timeout: ms(merged.pool_wait_timeout_ms.unwrap_or(2_000)),
                    statement_timeout: ms(merged.statement_timeout_ms.unwrap_or(5_000)),
                    ca_file: merged.database_ca_file,
                }
            }),
            mutations: merged.mutations,
            policy_bundle: merged.policy_bundle,
            policy_bundle_poll: ms(merged.policy_bundle_poll_ms.unwrap_or(1_000).max(10)),
            allow_request_policies: merged.allow_request_policies.unwrap_or(false),
            migrate: merged.migrate.unwrap_or(false),
            mode: merged.mode.unwrap_or_default(),
            redact_paths: merged.redact_paths.unwrap_or_default(),
            redact_keys: merged
                .redact_keys
                .unwrap_or_else(|| DEFAULT_KEY_PATTERNS.iter().map(|k| (*k).to_owned()).collect()),
        })
    }
}

/// The URL given directly, else the one in `file` (surrounding whitespace dropped).
pub fn database_url(direct: Option<String>, file: Option<&Path>) -> anyhow::Result<Option<String>> {
    match (direct, file) {
        (Some(url), _) => Ok(Some(url)),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the database URL from {}", path.display()))?;
            Ok(Some(text.trim().to_owned()))
        }
        (None, None) => Ok(None),
    }
}

fn read_config_file(path: &Path) -> anyhow::Result<ServeArgs> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
}

/// The resolved settings of the gRPC server.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub health_listen: Option<SocketAddr>,
    /// TLS (mutual when a client CA is set) on the service port.
    pub tls: Option<TlsFiles>,
    pub tls_reload: Duration,
    pub max_message_bytes: usize,
    pub concurrency_limit: usize,
    pub request_timeout: Duration,
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    pub shutdown_delay: Duration,
    pub log_format: LogFormat,
    pub worker_threads: Option<usize>,
    pub database: Option<DatabaseSettings>,
    pub mutations: Option<PathBuf>,
    pub policy_bundle: Option<PathBuf>,
    pub policy_bundle_poll: Duration,
    pub allow_request_policies: bool,
    pub migrate: bool,
    pub mode: Mode,
    pub redact_paths: Vec<String>,
    pub redact_keys: Vec<String>,
}

impl Default for ServerSettings {
    fn default() -> ServerSettings {
        ServeArgs::default().resolve().expect("defaults need no file")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path();
        let file = dir.join("sidecar.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:6000\"\nconcurrency_limit = 7\n").unwrap();
        let cli = ServeArgs { config: Some(file), concurrency_limit: Some(9), ..ServeArgs::default() };
        let settings = cli.resolve().unwrap();
        assert_eq!(settings.listen, "127.0.0.1:6000".parse().unwrap());
        assert_eq!(settings.concurrency_limit, 9);
        assert_eq!(settings.max_message_bytes, 4 * 1024 * 1024);
    }

    #[test]
    fn the_database_url_may_come_from_a_secret_file() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path();
        let secret = dir.join("url");
        std::fs::write(&secret, "postgresql://sidecar:s3cret@db/app\n").unwrap();
        let from_file = ServeArgs { database_url_file: Some(secret.clone()), ..ServeArgs::default() };
        assert_eq!(from_file.resolve().unwrap().database.unwrap().url, "postgresql://sidecar:s3cret@db/app");

        let direct = ServeArgs {
            database_url: Some("postgresql://other@db/app".into()),
            database_url_file: Some(secret),
            ..ServeArgs::default()
        };
        assert_eq!(direct.resolve().unwrap().database.unwrap().url, "postgresql://other@db/app");

        let missing = ServeArgs { database_url_file: Some(dir.join("absent")), ..ServeArgs::default() };
        assert!(missing.resolve().unwrap_err().to_string().contains("reading the database URL"));
    }

    #[test]
    fn switches_work_bare_or_with_a_value() {
        let parse = |args: &[&str]| {
            let cli = Cli::try_parse_from([&["governance-sidecar", "serve"], args].concat()).unwrap();
            let Command::Serve(serve) = cli.command else { panic!("not serve") };
            serve.resolve().unwrap()
        };
        let bare = parse(&["--migrate", "--allow-request-policies"]);
        assert!(bare.migrate && bare.allow_request_policies);
        let explicit = parse(&["--migrate", "false", "--allow-request-policies=false"]);
        assert!(!explicit.migrate && !explicit.allow_request_policies);
        assert!(!parse(&[]).migrate);
    }

    #[test]
    fn unknown_keys_in_the_file_are_an_error() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path();
        let file = dir.join("sidecar.toml");
        std::fs::write(&file, "listne = \"127.0.0.1:6000\"\n").unwrap();
        let cli = ServeArgs { config: Some(file), ..ServeArgs::default() };
        assert!(cli.resolve().is_err());
    }
}
