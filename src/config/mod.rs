//! Command line, environment and config file, resolved once into typed
//! settings grouped by subsystem.
//!
//! Every setting has a flag and a `GOVERNANCE_…` variable; `--config FILE`
//! names a TOML file with the same keys (snake_case). A flag or variable wins
//! over the file, and the file over the default. Each default is one
//! `DEFAULT_…` constant below, which both the help text and the resolver use.

use std::fmt::Display;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use serde::{Deserialize, Serialize};

pub use crate::authoring::command_line::{CheckArgs, GenerateArgs, StartArgs};
use crate::defaults::*;
pub use crate::policy_tests::command_line::TestArgs;
pub use crate::replay::command_line::ReplayArgs;
use crate::schema::layout::EvidenceLayout;
use crate::telemetry::LogFormat;
use crate::vocabulary::{FailureMode, Mode, Unmapped};

mod settings;

pub use settings::*;

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
    /// None: print the help, as Kernite does.
    #[command(subcommand)]
    pub command: Option<Command>,
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
        #[arg(long, default_value_t = DEFAULT_MAX_TRANSACTION_AGE.as_secs())]
        max_transaction_seconds: u64,
        /// Rows not yet sequenced are a discrepancy once older than this many seconds.
        #[arg(long, default_value_t = DEFAULT_MAX_LAG.as_secs())]
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
    /// Re-decide recorded evidence under a candidate policy bundle and compare (read-only, on one
    /// snapshot): the counts per scope of unchanged decisions and flips, every flip, and the rows it
    /// cannot compare, each in its own class. Exit 0; 1 when --fail-on finds what it names; 2 when the
    /// replay cannot be made.
    Replay {
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        replay: Box<ReplayArgs>,
    },
    /// Kernite's policy artifact utilities (`kernite policy`).
    Policy {
        #[command(subcommand)]
        command: Option<PolicyCommand>,
    },
    /// Check an OpenAPI document's write operations are governed, as `kernite
    /// check` does: exit 0 when covered, 1 when not, 2 when an input cannot be read.
    #[command(infer_long_args = true, args_override_self = true)]
    Check(CheckArgs),
    /// Write Kernite's starter bundle (policy, requests, guard, README), as `kernite start`, with
    /// tests of its policy for `policy test`.
    #[command(alias = "scaffold", infer_long_args = true, args_override_self = true)]
    Start(StartArgs),
}

/// `policy …`.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Generate Kernite policy artifacts from OpenAPI JSON, as `kernite policy
    /// generate` does: exit 0 when the report is valid, 1 when not, 2 when the
    /// document cannot be read.
    #[command(infer_long_args = true, args_override_self = true)]
    Generate(GenerateArgs),
    /// Run policy tests (`*.tests.json`) against a policy bundle or one policy, deciding each case as
    /// `serve` would: exit 0 when every case passes, 1 when one fails, 2 when a test file or the
    /// policies are malformed or no test file is found.
    Test(TestArgs),
}

/// The partitioned layout's upkeep (`src/upkeep.rs`), for `serve` (hourly)
/// and `maintain` alike; the reference layout ignores them.
#[derive(Debug, Clone, Default, Args, Deserialize, Serialize)]
pub struct UpkeepArgs {
    #[arg(long, env = "GOVERNANCE_IDEMPOTENCY_KEY_LIFETIME_SECONDS", help = defaulted(
        "Partitioned layout: how long a claimed idempotency key is replayed, in seconds; a retry after that \
         is a new request.",
        DEFAULT_KEY_LIFETIME.as_secs()))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key_lifetime_seconds: Option<u64>,

    /// Partitioned layout: drop each month of evidence once all of it lies more than this many months
    /// in the past. Unset: keep all.
    #[arg(long, env = "GOVERNANCE_RETENTION_MONTHS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_months: Option<u32>,

    #[arg(long, env = "GOVERNANCE_PARTITIONS_AHEAD_MONTHS", help = defaulted(
        "Partitioned layout: months of partitions created ahead of the current one.", DEFAULT_MONTHS_AHEAD))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partitions_ahead_months: Option<u32>,
}

/// How a command reaches PostgreSQL: `serve`, `migrate`, `verify`, `maintain`.
#[derive(Debug, Clone, Default, Args, Deserialize, Serialize)]
pub struct DatabaseArgs {
    /// PostgreSQL: a libpq URL or key=value string, e.g. postgresql://sidecar@db/app?sslmode=verify-full,
    /// completed from the PG* variables and ~/.pgpass. `serve` without one (and without PGHOST) serves
    /// Evaluate only.
    #[arg(long, env = "GOVERNANCE_DATABASE_URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,

    /// File holding the PostgreSQL URL (e.g. a mounted Kubernetes Secret), so the
    /// password is in no environment variable or command line; used when --database-url is not.
    #[arg(long, env = "GOVERNANCE_DATABASE_URL_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url_file: Option<PathBuf>,

    #[arg(long, env = "GOVERNANCE_DATABASE_CA_FILE", help = defaulted(
        "PEM root certificate(s) to verify PostgreSQL with: libpq's sslrootcert, which the URL's own overrides.",
        "~/.postgresql/root.crt if it exists"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_ca_file: Option<PathBuf>,
}

/// `dev` starts its own PostgreSQL: the database flags are not its own.
#[derive(Debug, Args)]
#[command(
    mut_arg("database_url", |a| a.hide(true)),
    mut_arg("database_url_file", |a| a.hide(true)),
    mut_arg("database_ca_file", |a| a.hide(true))
)]
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

    /// SQL run on the private PostgreSQL once it is migrated, before the mutations are checked (your
    /// tables, say); may be repeated.
    #[arg(long)]
    pub init_sql: Vec<PathBuf>,

    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Settings of `serve`, as flags, variables and file keys. Every field is
/// optional so that the three can be layered; [`ServeArgs::resolve`] applies
/// the defaults.
#[derive(Debug, Clone, Default, Args, Deserialize, Serialize)]
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

    /// Host names the HTTP routes answer on a loopback listener, besides loopback names and
    /// addresses (comma-separated, e.g. `governance.localhost`). Other Host headers get 421: a
    /// web page that rebinds its own name to 127.0.0.1 cannot drive the sidecar.
    #[arg(long, env = "GOVERNANCE_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Option<Vec<String>>,

    /// Serve on a listener that is not loopback with neither --callers nor mutual TLS
    /// (--tls-client-ca): any caller that reaches the port may then act for any workspace.
    /// Logged as a warning at start-up.
    #[arg(long, env = "GOVERNANCE_INSECURE_LISTEN", num_args = 0..=1, default_missing_value = "true")]
    pub insecure_listen: Option<bool>,

    #[arg(long, env = "GOVERNANCE_REFLECTION", num_args = 0..=1, default_missing_value = "true",
        help = defaulted("Serve gRPC reflection (what grpcurl lists and describes); `false` turns it off.", true))]
    pub reflection: Option<bool>,

    #[arg(long, env = "GOVERNANCE_METRICS", num_args = 0..=1, default_missing_value = "true",
        help = defaulted("Serve Prometheus metrics at GET /metrics; `false` turns it off.", true))]
    pub metrics: Option<bool>,

    // ---- callers
    /// TOML file naming the callers and what each may do (docs/security.md): every call must then
    /// authenticate, with a bearer token it lists or a client certificate whose identity it lists.
    /// Reloaded when it changes; refused when group or others may read it.
    #[arg(long, env = "GOVERNANCE_CALLERS")]
    pub callers: Option<PathBuf>,

    #[arg(long, env = "GOVERNANCE_CALLERS_POLL_MS", help = defaulted(
        "How often the callers file is checked for changes, in milliseconds.", DEFAULT_CALLERS_POLL_MS))]
    pub callers_poll_ms: Option<u64>,

    #[arg(long, env = "GOVERNANCE_TLS_RELOAD_MS", help = defaulted(
        "How often the TLS files are checked for replacement, in milliseconds.", DEFAULT_TLS_RELOAD_MS))]
    pub tls_reload_ms: Option<u64>,

    // ---- limits
    #[arg(long, env = "GOVERNANCE_MAX_MESSAGE_BYTES", help = defaulted(
        "Largest request message accepted, in bytes.", DEFAULT_MAX_MESSAGE_BYTES))]
    pub max_message_bytes: Option<usize>,

    #[arg(long, env = "GOVERNANCE_MAX_DOCUMENT_BYTES", help = defaulted(
        "Largest OpenAPI document accepted by the policy generate and check routes, in bytes.",
        DEFAULT_MAX_DOCUMENT_BYTES))]
    pub max_document_bytes: Option<usize>,

    #[arg(long, env = "GOVERNANCE_CONCURRENCY_LIMIT", help = defaulted(
        "Governance calls processed at once across all connections; more wait (health checks never do).",
        DEFAULT_CONCURRENCY_LIMIT))]
    pub concurrency_limit: Option<usize>,

    #[arg(long, env = "GOVERNANCE_MAX_REQUEST_BYTES_IN_FLIGHT", help = defaulted(
        "Request bytes processed at once across all calls (at least one largest message); more wait their turn.",
        DEFAULT_MAX_REQUEST_BYTES_IN_FLIGHT))]
    pub max_request_bytes_in_flight: Option<usize>,

    #[arg(long, env = "GOVERNANCE_MAX_CONCURRENT_STREAMS", help = defaulted(
        "HTTP/2 streams (calls) one connection may have open at once; a client queues the rest.",
        DEFAULT_MAX_CONCURRENT_STREAMS))]
    pub max_concurrent_streams: Option<u32>,

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
    #[command(flatten)]
    #[serde(flatten)]
    pub database: DatabaseArgs,

    #[arg(long, env = "GOVERNANCE_POOL_SIZE", help = defaulted("Database connections in the pool.", DEFAULT_POOL_SIZE))]
    pub pool_size: Option<usize>,

    #[arg(long, env = "GOVERNANCE_GROUP_COMMIT", help = defaulted(
        "Concurrent callers' one-statement writes share a transaction, at most this many such transactions \
         in flight; 0 writes each call in its own.",
        DEFAULT_GROUP_COMMIT))]
    pub group_commit: Option<usize>,

    #[arg(long, env = "GOVERNANCE_MAX_RECORDED_REQUEST_BYTES", help = defaulted(
        "The largest request an evidence row keeps for `replay` (its canonical JSON, in bytes); a larger one is \
         decided and evidenced, but not kept. Each pooled connection holds a buffer as large as the largest \
         row it has written.",
        DEFAULT_MAX_RECORDED_REQUEST_BYTES))]
    pub max_recorded_request_bytes: Option<usize>,

    // ---- the partitioned layout's upkeep (see `maintain`)
    #[command(flatten)]
    #[serde(flatten)]
    pub upkeep: UpkeepArgs,

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

    // ---- policies
    /// Kernite policy bundle (`kernite.policy.bundle.v1`) to decide with: policies
    /// come from the operator, not the request. Reloaded when the file changes.
    #[arg(long, env = "GOVERNANCE_POLICY_BUNDLE")]
    pub policy_bundle: Option<PathBuf>,

    #[arg(long, env = "GOVERNANCE_POLICY_BUNDLE_POLL_MS", help = defaulted(
        "How often the policy bundle file is checked for changes, in milliseconds.", DEFAULT_POLICY_BUNDLE_POLL_MS))]
    pub policy_bundle_poll_ms: Option<u64>,

    #[arg(long, env = "GOVERNANCE_ALLOW_REQUEST_POLICIES", num_args = 0..=1, default_missing_value = "true",
        help = defaulted("Let a request that carries its own `policy_context` be decided by it instead of \
         refusing it; without a policy bundle, this is what lets ExecuteWithEvidence run at all. \
         The caller then picks the policy its own write is decided by: for development only.", false))]
    pub allow_request_policies: Option<bool>,

    // ---- evidence
    /// TOML file declaring the mutations callers may name (see docs/evidence.md).
    #[arg(long, env = "GOVERNANCE_MUTATIONS")]
    pub mutations: Option<PathBuf>,

    /// Kernite's operation map (`policy-map.generated.json`, or a bundle with an `operation_map`): mutations
    /// that name an `operation_id` take their scope from it.
    #[arg(long, env = "GOVERNANCE_OPERATION_MAP")]
    pub operation_map: Option<PathBuf>,

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

    // ---- gateway (docs/gateway.md)
    /// Answer proxies' checks (Envoy's ext_authz `Check`, `GET|POST /v1/forward-auth`), reading a request's
    /// workspace from `header:NAME`, `path:PARAMETER` or `value:WORKSPACE`. Needs --gateway-principal,
    /// --operation-map (the routes), --policy-bundle and a database.
    #[arg(long, env = "GOVERNANCE_GATEWAY_WORKSPACE")]
    pub gateway_workspace: Option<String>,

    /// Where a checked request's principal comes from: `header:NAME` (a header the proxy sets from what it
    /// verified), `xfcc` (the URI SAN of the peer Envoy verified, from x-forwarded-client-cert) or `jwt:CLAIM`
    /// (a claim of a payload Envoy's jwt_authn verified).
    #[arg(long, env = "GOVERNANCE_GATEWAY_PRINCIPAL")]
    pub gateway_principal: Option<String>,

    /// The checked request's `principal.type`. [default: `service` with `xfcc`, else `user`]
    #[arg(long, env = "GOVERNANCE_GATEWAY_PRINCIPAL_TYPE")]
    pub gateway_principal_type: Option<String>,

    #[arg(long, env = "GOVERNANCE_GATEWAY_UNMAPPED", value_parser = str::parse::<Unmapped>, help = defaulted(
        "A checked request no governed route of the operation map matches: `deny` (403) or `allow`; \
         neither writes evidence.", Unmapped::Deny))]
    pub gateway_unmapped: Option<Unmapped>,

    #[arg(long, env = "GOVERNANCE_GATEWAY_FAILURE", value_parser = str::parse::<FailureMode>, help = defaulted(
        "An approved check whose evidence cannot be committed (PostgreSQL unreachable): `closed` denies it (503), \
         `open` passes it, counted in governance_gateway_fail_open_total.", FailureMode::Closed))]
    pub gateway_failure: Option<FailureMode>,

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
