//! Command line, environment and config file, resolved once into typed
//! settings grouped by subsystem.
//!
//! Every setting has a flag and a `GOVERNANCE_…` variable; `--config FILE`
//! names a TOML file with the same keys (snake_case). A flag or variable wins
//! over the file, and the file over the default. Each default is one
//! `DEFAULT_…` constant below, which both the help text and the resolver use.

use std::fmt::Display;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::evidence::DatabaseSettings;
use crate::evidence::layout::EvidenceLayout;
use crate::evidence::redact::DEFAULT_KEY_PATTERNS;
use crate::evidence::upkeep::{DEFAULT_KEY_LIFETIME, DEFAULT_MONTHS_AHEAD, Upkeep};
use crate::server::tls::TlsFiles;
use crate::vocabulary::Mode;

/// A sidecar talks to its own pod: loopback by default.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 50051));
pub const DEFAULT_TLS_RELOAD_MS: u64 = 5_000;
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
pub const DEFAULT_CONCURRENCY_LIMIT: usize = 1024;
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 30_000;
pub const DEFAULT_KEEPALIVE_INTERVAL_MS: u64 = 30_000;
pub const DEFAULT_KEEPALIVE_TIMEOUT_MS: u64 = 10_000;
pub const DEFAULT_SHUTDOWN_DELAY_MS: u64 = 0;
pub const DEFAULT_POLICY_BUNDLE_POLL_MS: u64 = 1_000;
pub const DEFAULT_POOL_SIZE: usize = 16;
/// Group-commit transactions in flight at once (see `evidence/group_commit.rs`):
/// one makes the largest batches, which cost PostgreSQL least per write.
pub const DEFAULT_GROUP_COMMIT: usize = 1;
pub const DEFAULT_POOL_WAIT_TIMEOUT_MS: u64 = 2_000;
pub const DEFAULT_STATEMENT_TIMEOUT_MS: u64 = 5_000;
pub const DEFAULT_LOG_INTERVAL_MS: u64 = 1_000;
pub const DEFAULT_HEALTH_SERVICE: &str = "governance.v1.Governance";
pub const DEFAULT_HEALTH_TIMEOUT_MS: u64 = 2_000;

/// Polling faster than this only burns CPU.
const MIN_TLS_RELOAD_MS: u64 = 100;
const MIN_POLICY_BUNDLE_POLL_MS: u64 = 10;
const MIN_LOG_INTERVAL_MS: u64 = 10;

/// A flag's help, ending with its default as clap shows defaults.
fn defaulted(help: &str, default: impl Display) -> String {
    format!("{help} [default: {default}]")
}

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
        #[arg(long, default_value_t = DEFAULT_LISTEN, help = "The sidecar's gRPC address.")]
        address: SocketAddr,
        #[arg(
            long,
            default_value = DEFAULT_HEALTH_SERVICE,
            help = "The service to ask about; empty for the server as a whole."
        )]
        service: String,
        #[arg(long, default_value_t = DEFAULT_HEALTH_TIMEOUT_MS, help = "Give up after this many milliseconds.")]
        timeout_ms: u64,
    },
    /// Make the verifiable log's Ed25519 key pair: the signer key goes to a new
    /// file (mode 0600) for --log-signing-key-file; the verifier key is printed
    /// for auditors and `verify`.
    LogKey {
        /// The log's name (its checkpoints' origin line), e.g. `example.com/payments/evidence`.
        #[arg(long)]
        origin: String,
        /// Where to write the signer key; an existing file is not overwritten.
        #[arg(long)]
        signing_key_file: PathBuf,
    },
    /// Check the evidence against the verifiable log with the log's public key
    /// alone (read-only): every row's leaf, every checkpoint's signature and
    /// root, the log's order, and rows missing from it. Exit 0 only when
    /// everything verifies; each discrepancy is printed, named by evidence id.
    /// A read-only role will do.
    Verify {
        #[command(flatten)]
        database: DatabaseArgs,
        /// The log's verifier key (`<origin>+<id>+<base64>`, as `log-key` printed it), or a file holding it.
        #[arg(long)]
        public_key: String,
        /// Longest a governed transaction may run, in seconds (from its rows' created_at to its commit).
        #[arg(long, default_value_t = crate::evidence::log::verify::DEFAULT_MAX_TRANSACTION_AGE.as_secs())]
        max_transaction_seconds: u64,
        /// Rows not yet sequenced are a discrepancy once older than this many seconds.
        #[arg(long, default_value_t = crate::evidence::log::verify::DEFAULT_MAX_LAG.as_secs())]
        max_lag_seconds: u64,
    },
    /// Apply the embedded schema migrations (safe with concurrent starters),
    /// as a role that may create tables.
    Migrate {
        #[command(flatten)]
        database: DatabaseArgs,
        /// The evidence tables' layout: `reference` (Kernite's table) or `partitioned`
        /// (by month, with retention and key lifetimes, ready for Citus). A reference
        /// database is converted, rows kept; there is no way back. Unset: leave it as it is.
        #[arg(long)]
        layout: Option<EvidenceLayout>,
    },
    /// One pass of the partitioned layout's upkeep, as `serve` runs every hour:
    /// create the months ahead, drop the months past retention (those the
    /// verifiable log has sequenced), forget expired idempotency keys. As the
    /// tables' owner: creating and dropping partitions is theirs alone.
    Maintain {
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        upkeep: UpkeepArgs,
    },
}

/// The partitioned layout's upkeep (`evidence/upkeep.rs`); the reference layout ignores them.
#[derive(Debug, Clone, Default, Args)]
pub struct UpkeepArgs {
    #[arg(long, env = "GOVERNANCE_IDEMPOTENCY_KEY_LIFETIME_SECONDS", help = defaulted(
        "How long a claimed idempotency key is replayed, in seconds; a retry after that is a new request.",
        DEFAULT_KEY_LIFETIME.as_secs()))]
    pub idempotency_key_lifetime_seconds: Option<u64>,
    /// Drop the months of evidence whose every row is older than this many months. Unset: keep all.
    #[arg(long, env = "GOVERNANCE_RETENTION_MONTHS")]
    pub retention_months: Option<u32>,
    #[arg(long, env = "GOVERNANCE_PARTITIONS_AHEAD_MONTHS", help = defaulted(
        "Months of partitions created ahead of the current one.", DEFAULT_MONTHS_AHEAD))]
    pub partitions_ahead_months: Option<u32>,
}

impl UpkeepArgs {
    pub fn resolve(&self) -> Upkeep {
        Upkeep {
            key_lifetime: self.idempotency_key_lifetime_seconds.map_or(DEFAULT_KEY_LIFETIME, Duration::from_secs),
            retention_months: self.retention_months,
            months_ahead: self.partitions_ahead_months.unwrap_or(DEFAULT_MONTHS_AHEAD),
        }
    }
}

/// How a one-off command (`migrate`, `verify`) reaches PostgreSQL.
#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// PostgreSQL URL, read as libpq reads it (with PG* and ~/.pgpass).
    #[arg(long, env = "GOVERNANCE_DATABASE_URL")]
    pub database_url: Option<String>,
    /// File holding the PostgreSQL URL, e.g. a mounted Kubernetes Secret.
    #[arg(long, env = "GOVERNANCE_DATABASE_URL_FILE")]
    pub database_url_file: Option<PathBuf>,
    /// PEM root certificate(s) to verify PostgreSQL with: libpq's sslrootcert, which the URL's own overrides.
    #[arg(long, env = "GOVERNANCE_DATABASE_CA_FILE")]
    pub database_ca_file: Option<PathBuf>,
}

impl DatabaseArgs {
    /// The URL (see [`database_url`]); a one-off command needs one.
    pub fn url(&self) -> anyhow::Result<String> {
        database_url(self.database_url.clone(), self.database_url_file.as_deref())?
            .ok_or_else(|| anyhow::anyhow!("--database-url, --database-url-file or PGHOST is required"))
    }
}

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Where the private PostgreSQL keeps its data; kept between runs. [default: $TMPDIR/governance-sidecar-dev]
    #[arg(long, env = "GOVERNANCE_DEV_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Port of the private PostgreSQL on 127.0.0.1 (0: any free port).
    #[arg(long, env = "GOVERNANCE_DEV_POSTGRES_PORT", default_value_t = 0)]
    pub postgres_port: u16,

    /// Decide the invoice example with its policy bundle (invoices up to 1000, in USD or EUR),
    /// written to the data directory, where edits are reloaded. `false`: requests bring their own policies.
    #[arg(long, env = "GOVERNANCE_DEV_EXAMPLE_POLICIES", default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub example_policies: bool,

    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Settings of `serve`, as flags, variables and file keys. Every field is
/// optional so that the three can be layered; [`ServeArgs::resolve`] applies
/// the defaults.
#[derive(Debug, Clone, Default, Args, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (snake_case keys).
    #[arg(long, env = "GOVERNANCE_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    // ---- listening
    #[arg(long, env = "GOVERNANCE_LISTEN", help = defaulted(
        "Address of the gRPC listener. A sidecar talks to its own pod: loopback by default.", DEFAULT_LISTEN))]
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

    #[arg(long, env = "GOVERNANCE_TLS_RELOAD_MS", help = defaulted(
        "How often the TLS files are checked for replacement, in milliseconds.", DEFAULT_TLS_RELOAD_MS))]
    pub tls_reload_ms: Option<u64>,

    // ---- limits
    #[arg(long, env = "GOVERNANCE_MAX_MESSAGE_BYTES", help = defaulted(
        "Largest request message accepted, in bytes.", DEFAULT_MAX_MESSAGE_BYTES))]
    pub max_message_bytes: Option<usize>,

    #[arg(long, env = "GOVERNANCE_CONCURRENCY_LIMIT", help = defaulted(
        "Governance calls processed at once across all connections; more wait (health checks never do).",
        DEFAULT_CONCURRENCY_LIMIT))]
    pub concurrency_limit: Option<usize>,

    #[arg(long, env = "GOVERNANCE_REQUEST_TIMEOUT_MS", help = defaulted(
        "Upper bound on any call, in milliseconds, on top of the client's own deadline.",
        DEFAULT_REQUEST_TIMEOUT_MS))]
    pub request_timeout_ms: Option<u64>,

    #[arg(long, env = "GOVERNANCE_KEEPALIVE_INTERVAL_MS", help = defaulted(
        "HTTP/2 keepalive ping interval, in milliseconds.", DEFAULT_KEEPALIVE_INTERVAL_MS))]
    pub keepalive_interval_ms: Option<u64>,

    #[arg(long, env = "GOVERNANCE_KEEPALIVE_TIMEOUT_MS", help = defaulted(
        "How long to wait for a keepalive ping's answer, in milliseconds.", DEFAULT_KEEPALIVE_TIMEOUT_MS))]
    pub keepalive_timeout_ms: Option<u64>,

    #[arg(long, env = "GOVERNANCE_SHUTDOWN_DELAY_MS", help = defaulted(
        "After SIGTERM/SIGINT, health reports NOT_SERVING for this long, in milliseconds, \
         before the listener closes and in-flight calls drain.", DEFAULT_SHUTDOWN_DELAY_MS))]
    pub shutdown_delay_ms: Option<u64>,

    // ---- process
    /// Tokio worker threads. [default: the number of CPUs]
    #[arg(long, env = "GOVERNANCE_WORKER_THREADS")]
    pub worker_threads: Option<usize>,

    #[arg(long, env = "GOVERNANCE_LOG_FORMAT", value_enum, help = defaulted("Log format.", "text"))]
    pub log_format: Option<LogFormat>,

    // ---- database
    /// PostgreSQL for ExecuteWithEvidence: a libpq URL or key=value string, e.g.
    /// postgresql://sidecar@db/app?sslmode=verify-full, completed from the PG* variables and ~/.pgpass.
    /// Without it (and without PGHOST) only Evaluate is served.
    #[arg(long, env = "GOVERNANCE_DATABASE_URL")]
    pub database_url: Option<String>,

    /// File holding the PostgreSQL URL (e.g. a mounted Kubernetes Secret), so the
    /// password is in no environment variable or command line; used when --database-url is not.
    #[arg(long, env = "GOVERNANCE_DATABASE_URL_FILE")]
    pub database_url_file: Option<PathBuf>,

    #[arg(long, env = "GOVERNANCE_POOL_SIZE", help = defaulted("Database connections in the pool.", DEFAULT_POOL_SIZE))]
    pub pool_size: Option<usize>,

    #[arg(long, env = "GOVERNANCE_GROUP_COMMIT", help = defaulted(
        "Concurrent callers' one-statement writes share a transaction, at most this many such transactions \
         in flight; 0 writes each call in its own.",
        DEFAULT_GROUP_COMMIT))]
    pub group_commit: Option<usize>,

    // ---- the partitioned layout's upkeep (see `maintain`)
    #[arg(long, env = "GOVERNANCE_IDEMPOTENCY_KEY_LIFETIME_SECONDS", help = defaulted(
        "Partitioned layout: how long a claimed idempotency key is replayed, in seconds; a retry after that \
         is a new request.",
        DEFAULT_KEY_LIFETIME.as_secs()))]
    pub idempotency_key_lifetime_seconds: Option<u64>,

    /// Partitioned layout: drop the months of evidence whose every row is older than this many months
    /// (hourly, as `maintain` does). Unset: keep all.
    #[arg(long, env = "GOVERNANCE_RETENTION_MONTHS")]
    pub retention_months: Option<u32>,

    #[arg(long, env = "GOVERNANCE_PARTITIONS_AHEAD_MONTHS", help = defaulted(
        "Partitioned layout: months of partitions created ahead of the current one.", DEFAULT_MONTHS_AHEAD))]
    pub partitions_ahead_months: Option<u32>,

    #[arg(long, env = "GOVERNANCE_POOL_WAIT_TIMEOUT_MS", help = defaulted(
        "How long a call waits for a database connection, in milliseconds; then it fails with UNAVAILABLE.",
        DEFAULT_POOL_WAIT_TIMEOUT_MS))]
    pub pool_wait_timeout_ms: Option<u64>,

    #[arg(long, env = "GOVERNANCE_MIGRATE", num_args = 0..=1, default_missing_value = "true",
        help = defaulted("Apply pending migrations before serving.", false))]
    pub migrate: Option<bool>,

    #[arg(long, env = "GOVERNANCE_STATEMENT_TIMEOUT_MS", help = defaulted(
        "Longest a database statement may run, in milliseconds; a mutation over it is rolled back.",
        DEFAULT_STATEMENT_TIMEOUT_MS))]
    pub statement_timeout_ms: Option<u64>,

    #[arg(long, env = "GOVERNANCE_DATABASE_CA_FILE", help = defaulted(
        "PEM root certificate(s) to verify PostgreSQL with: libpq's sslrootcert, which the URL's own overrides.",
        "~/.postgresql/root.crt if it exists"))]
    pub database_ca_file: Option<PathBuf>,

    // ---- policies
    /// Kernite policy bundle (`kernite.policy.bundle.v1`) to decide with: policies
    /// come from the operator, not the request. Reloaded when the file changes.
    #[arg(long, env = "GOVERNANCE_POLICY_BUNDLE")]
    pub policy_bundle: Option<PathBuf>,

    #[arg(long, env = "GOVERNANCE_POLICY_BUNDLE_POLL_MS", help = defaulted(
        "How often the policy bundle file is checked for changes, in milliseconds.", DEFAULT_POLICY_BUNDLE_POLL_MS))]
    pub policy_bundle_poll_ms: Option<u64>,

    #[arg(long, env = "GOVERNANCE_ALLOW_REQUEST_POLICIES", num_args = 0..=1, default_missing_value = "true",
        help = defaulted("With a policy bundle, decide a request that carries its own `policy_context` \
         with it instead of refusing the request.", false))]
    pub allow_request_policies: Option<bool>,

    // ---- evidence
    /// TOML file declaring the mutations callers may name (see README).
    #[arg(long, env = "GOVERNANCE_MUTATIONS")]
    pub mutations: Option<PathBuf>,

    #[arg(long, env = "GOVERNANCE_MODE", value_parser = str::parse::<Mode>, help = defaulted(
        "Mode of mutations that do not set their own: enforce, observe or skip.", Mode::default()))]
    pub mode: Option<Mode>,

    /// Request paths whose values are masked in stored evidence, comma-separated (e.g. payload.card_number).
    #[arg(long, env = "GOVERNANCE_REDACT_PATHS", value_delimiter = ',')]
    pub redact_paths: Option<Vec<String>>,

    #[arg(long, env = "GOVERNANCE_REDACT_KEYS", value_delimiter = ',', help = defaulted(
        "Key-name patterns masked anywhere in stored evidence, comma-separated, case-insensitive, `*` wildcard.",
        DEFAULT_KEY_PATTERNS.join(",")))]
    pub redact_keys: Option<Vec<String>>,

    // ---- verifiable log
    /// The verifiable log's Ed25519 signer key (`PRIVATE+KEY+<origin>+…`, made by `log-key`),
    /// e.g. a mounted Secret. With it this sidecar takes its turn sequencing the log and signing checkpoints.
    #[arg(long, env = "GOVERNANCE_LOG_SIGNING_KEY_FILE")]
    pub log_signing_key_file: Option<PathBuf>,

    #[arg(long, env = "GOVERNANCE_LOG_INTERVAL_MS", help = defaulted(
        "How often the log's sequencer takes the newly committed rows and signs a checkpoint, in milliseconds.",
        DEFAULT_LOG_INTERVAL_MS))]
    pub log_interval_ms: Option<u64>,
}

impl ServeArgs {
    /// Fills each setting unset here from `under`. Both are read as tables of
    /// their set keys, so no list of fields is kept here to fall out of date.
    fn over(self, under: ServeArgs) -> anyhow::Result<ServeArgs> {
        let config = self.config.clone().or(under.config.clone());
        let mut merged = toml::Table::try_from(&under)?;
        merged.extend(toml::Table::try_from(&self)?);
        Ok(ServeArgs { config, ..merged.try_into()? })
    }

    /// Layers the config file under the flags and applies the defaults.
    pub fn resolve(self) -> anyhow::Result<ServerSettings> {
        let set = match &self.config {
            Some(path) => {
                let file = read_config_file(path)?;
                self.over(file)?
            }
            None => self,
        };
        let ms = Duration::from_millis;
        Ok(ServerSettings {
            listen: ListenSettings {
                address: set.listen.unwrap_or(DEFAULT_LISTEN),
                health_address: set.health_listen,
                tls: match (set.tls_cert, set.tls_key) {
                    (Some(cert), Some(key)) => Some(TlsSettings {
                        files: TlsFiles { cert, key, client_ca: set.tls_client_ca },
                        reload: ms(set.tls_reload_ms.unwrap_or(DEFAULT_TLS_RELOAD_MS).max(MIN_TLS_RELOAD_MS)),
                    }),
                    (None, None) if set.tls_client_ca.is_none() => None,
                    _ => anyhow::bail!("TLS needs both tls_cert and tls_key (and tls_client_ca needs them too)"),
                },
            },
            limits: Limits {
                max_message_bytes: set.max_message_bytes.unwrap_or(DEFAULT_MAX_MESSAGE_BYTES),
                concurrency_limit: set.concurrency_limit.unwrap_or(DEFAULT_CONCURRENCY_LIMIT).max(1),
                request_timeout: ms(set.request_timeout_ms.unwrap_or(DEFAULT_REQUEST_TIMEOUT_MS)),
                keepalive_interval: ms(set.keepalive_interval_ms.unwrap_or(DEFAULT_KEEPALIVE_INTERVAL_MS)),
                keepalive_timeout: ms(set.keepalive_timeout_ms.unwrap_or(DEFAULT_KEEPALIVE_TIMEOUT_MS)),
                shutdown_delay: ms(set.shutdown_delay_ms.unwrap_or(DEFAULT_SHUTDOWN_DELAY_MS)),
            },
            process: ProcessSettings {
                log_format: set.log_format.unwrap_or_default(),
                worker_threads: set.worker_threads.filter(|&n| n > 0),
            },
            database: database_url(set.database_url, set.database_url_file.as_deref())?.map(|url| DatabaseSettings {
                url,
                pool_size: set.pool_size.unwrap_or(DEFAULT_POOL_SIZE).max(1),
                wait_timeout: ms(set.pool_wait_timeout_ms.unwrap_or(DEFAULT_POOL_WAIT_TIMEOUT_MS)),
                statement_timeout: ms(set.statement_timeout_ms.unwrap_or(DEFAULT_STATEMENT_TIMEOUT_MS)),
                ca_file: set.database_ca_file,
                group_commit: set.group_commit.unwrap_or(DEFAULT_GROUP_COMMIT),
                upkeep: UpkeepArgs {
                    idempotency_key_lifetime_seconds: set.idempotency_key_lifetime_seconds,
                    retention_months: set.retention_months,
                    partitions_ahead_months: set.partitions_ahead_months,
                }
                .resolve(),
            }),
            migrate: set.migrate.unwrap_or(false),
            policies: set.policy_bundle.map(|bundle| PolicySettings {
                bundle,
                poll: ms(set
                    .policy_bundle_poll_ms
                    .unwrap_or(DEFAULT_POLICY_BUNDLE_POLL_MS)
                    .max(MIN_POLICY_BUNDLE_POLL_MS)),
                allow_request_policies: set.allow_request_policies.unwrap_or(false),
            }),
            evidence: EvidenceSettings {
                mutations: set.mutations,
                mode: set.mode.unwrap_or_default(),
                redact_paths: set.redact_paths.unwrap_or_default(),
                redact_keys: set
                    .redact_keys
                    .unwrap_or_else(|| DEFAULT_KEY_PATTERNS.iter().map(|k| (*k).to_owned()).collect()),
            },
            log: set.log_signing_key_file.map(|signing_key_file| LogKeeping {
                signing_key_file,
                interval: ms(set.log_interval_ms.unwrap_or(DEFAULT_LOG_INTERVAL_MS).max(MIN_LOG_INTERVAL_MS)),
            }),
        })
    }
}

/// The URL given directly, else the one in `file` (surrounding whitespace
/// dropped), else, when `PGHOST` or `PGHOSTADDR` names a server, an empty
/// one: libpq's variables then say everything, as they do to psql.
pub fn database_url(direct: Option<String>, file: Option<&Path>) -> anyhow::Result<Option<String>> {
    match (direct, file) {
        (Some(url), _) => Ok(Some(url)),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the database URL from {}", path.display()))?;
            Ok(Some(text.trim().to_owned()))
        }
        (None, None) if ["PGHOST", "PGHOSTADDR"].iter().any(|v| std::env::var_os(v).is_some_and(|h| !h.is_empty())) => {
            Ok(Some(String::new()))
        }
        (None, None) => Ok(None),
    }
}

fn read_config_file(path: &Path) -> anyhow::Result<ServeArgs> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
}

/// The resolved settings of `serve`, by subsystem.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: ListenSettings,
    pub limits: Limits,
    pub process: ProcessSettings,
    /// Without a database only Evaluate is served.
    pub database: Option<DatabaseSettings>,
    /// Apply pending migrations before serving.
    pub migrate: bool,
    /// The operator's policy bundle; without one, requests bring their own policies.
    pub policies: Option<PolicySettings>,
    pub evidence: EvidenceSettings,
    /// The verifiable log, when this sidecar has the key to sign it.
    pub log: Option<LogKeeping>,
}

impl Default for ServerSettings {
    fn default() -> ServerSettings {
        ServeArgs::default().resolve().expect("defaults need no file")
    }
}

/// Where the service listens, and how.
#[derive(Debug, Clone)]
pub struct ListenSettings {
    pub address: SocketAddr,
    /// A second listener serving grpc.health.v1 only.
    pub health_address: Option<SocketAddr>,
    /// TLS (mutual when a client CA is set) on the service port.
    pub tls: Option<TlsSettings>,
}

#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub files: TlsFiles,
    /// How often the files are read again.
    pub reload: Duration,
}

/// Bounds on what callers may ask of the server.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_message_bytes: usize,
    pub concurrency_limit: usize,
    pub request_timeout: Duration,
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    /// How long health reports NOT_SERVING before the listener closes.
    pub shutdown_delay: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        ServerSettings::default().limits
    }
}

#[derive(Debug, Clone)]
pub struct ProcessSettings {
    pub log_format: LogFormat,
    /// Tokio worker threads; `None`: one per CPU.
    pub worker_threads: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct PolicySettings {
    pub bundle: PathBuf,
    pub poll: Duration,
    /// Whether a request's own `policy_context` is used instead of refused.
    pub allow_request_policies: bool,
}

/// What the operator lets callers write, and how its evidence is kept.
#[derive(Debug, Clone)]
pub struct EvidenceSettings {
    /// The registry of mutations; none: no mutation may be named.
    pub mutations: Option<PathBuf>,
    /// Mode of mutations that set none (and whose bundle scope sets none).
    pub mode: Mode,
    pub redact_paths: Vec<String>,
    pub redact_keys: Vec<String>,
}

/// How this sidecar keeps the verifiable log.
#[derive(Debug, Clone)]
pub struct LogKeeping {
    pub signing_key_file: PathBuf,
    /// How often a batch is cut and a checkpoint signed.
    pub interval: Duration,
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
        assert_eq!(settings.listen.address, "127.0.0.1:6000".parse().unwrap());
        assert_eq!(settings.limits.concurrency_limit, 9);
        assert_eq!(settings.limits.max_message_bytes, DEFAULT_MAX_MESSAGE_BYTES);
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
        let allows = |settings: &ServerSettings| settings.policies.as_ref().unwrap().allow_request_policies;
        let bare = parse(&["--policy-bundle", "b.json", "--migrate", "--allow-request-policies"]);
        assert!(bare.migrate && allows(&bare));
        let explicit = parse(&["--policy-bundle", "b.json", "--migrate", "false", "--allow-request-policies=false"]);
        assert!(!explicit.migrate && !allows(&explicit));
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

    #[test]
    fn every_file_key_layers_under_the_flags() {
        let scratch = tempfile::tempdir().unwrap();
        let file = scratch.path().join("sidecar.toml");
        let keys = "listen = \"127.0.0.1:6001\"\nmode = \"observe\"\nredact_keys = [\"pin\"]\n\
                    policy_bundle = \"b.json\"\nallow_request_policies = true\npool_size = 3\n\
                    database_url = \"postgresql://a@db/x\"\nlog_format = \"json\"\n";
        std::fs::write(&file, keys).unwrap();
        let flags = ServeArgs { config: Some(file), mode: Some(Mode::Skip), ..ServeArgs::default() };
        let settings = flags.resolve().unwrap();
        assert_eq!(settings.listen.address, "127.0.0.1:6001".parse().unwrap());
        assert_eq!(settings.evidence.mode, Mode::Skip, "the flag wins");
        assert_eq!(settings.evidence.redact_keys, ["pin"]);
        assert!(settings.policies.unwrap().allow_request_policies);
        assert_eq!(settings.database.unwrap().pool_size, 3);
        assert_eq!(settings.process.log_format, LogFormat::Json);
    }

    #[test]
    fn an_unknown_mode_is_refused_on_the_command_line_and_in_the_file() {
        assert!(Cli::try_parse_from(["governance-sidecar", "serve", "--mode", "audit"]).is_err());
        let scratch = tempfile::tempdir().unwrap();
        let file = scratch.path().join("sidecar.toml");
        std::fs::write(&file, "mode = \"Enforce\"\n").unwrap();
        let error = ServeArgs { config: Some(file), ..ServeArgs::default() }.resolve().unwrap_err();
        assert!(format!("{error:#}").contains("is not a mode"), "{error:#}");
    }
}
