//! The resolved settings of each command, by subsystem, and how the flags,
//! variables and config file resolve into them.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::CommandFactory as _;

use super::{Cli, DatabaseArgs, ServeArgs, UpkeepArgs};
use crate::defaults::*;
use crate::evidence::WriteSettings;
use crate::gateway::{GatewaySettings, PrincipalSource, WorkspaceSource};
use crate::log::sequencer::LogKeeping;
use crate::postgres::libpq::{Environment, ProcessEnvironment};
use crate::postgres::{DatabaseSettings, DatabaseTarget};
use crate::telemetry::LogFormat;
use crate::upkeep::Upkeep;
use crate::vocabulary::Mode;

impl UpkeepArgs {
    pub fn resolve(&self) -> Upkeep {
        Upkeep {
            key_lifetime: self.key_lifetime(),
            retention_months: self.retention_months,
            months_ahead: self.partitions_ahead_months.unwrap_or(DEFAULT_MONTHS_AHEAD),
        }
    }

    fn key_lifetime(&self) -> Duration {
        self.idempotency_key_lifetime_seconds.map_or(DEFAULT_KEY_LIFETIME, Duration::from_secs)
    }
}

impl DatabaseArgs {
    /// The database to reach, if one is named (see [`database_url`]).
    pub fn target(&self) -> anyhow::Result<Option<DatabaseTarget>> {
        let url = database_url(self.database_url.clone(), self.database_url_file.as_deref(), &ProcessEnvironment)?;
        Ok(url.map(|url| DatabaseTarget { url, ca_file: self.database_ca_file.clone() }))
    }

    /// The database a one-off command (`migrate`, `verify`, `maintain`) needs.
    pub fn required(&self) -> anyhow::Result<DatabaseTarget> {
        self.target()?.ok_or_else(|| anyhow::anyhow!("--database-url, --database-url-file or PGHOST is required"))
    }
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
                allowed_hosts: set.allowed_hosts.unwrap_or_default(),
                insecure: set.insecure_listen.unwrap_or(false),
                reflection: set.reflection.unwrap_or(true),
                metrics: set.metrics.unwrap_or(true),
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
                max_document_bytes: set.max_document_bytes.unwrap_or(DEFAULT_MAX_DOCUMENT_BYTES),
                concurrency_limit: set.concurrency_limit.unwrap_or(DEFAULT_CONCURRENCY_LIMIT).max(1),
                max_request_bytes_in_flight: set
                    .max_request_bytes_in_flight
                    .unwrap_or(DEFAULT_MAX_REQUEST_BYTES_IN_FLIGHT),
                max_concurrent_streams: set.max_concurrent_streams.unwrap_or(DEFAULT_MAX_CONCURRENT_STREAMS).max(1),
                request_timeout: ms(set.request_timeout_ms.unwrap_or(DEFAULT_REQUEST_TIMEOUT_MS)),
                keepalive_interval: ms(set.keepalive_interval_ms.unwrap_or(DEFAULT_KEEPALIVE_INTERVAL_MS)),
                keepalive_timeout: ms(set.keepalive_timeout_ms.unwrap_or(DEFAULT_KEEPALIVE_TIMEOUT_MS)),
                shutdown_delay: ms(set.shutdown_delay_ms.unwrap_or(DEFAULT_SHUTDOWN_DELAY_MS)),
            },
            process: ProcessSettings {
                log_format: set.log_format.unwrap_or_default(),
                worker_threads: set.worker_threads.filter(|&n| n > 0),
            },
            database: set.database.target()?.map(|target| DatabaseSettings {
                target,
                pool_size: set.pool_size.unwrap_or(DEFAULT_POOL_SIZE).max(1),
                wait_timeout: ms(set.pool_wait_timeout_ms.unwrap_or(DEFAULT_POOL_WAIT_TIMEOUT_MS)),
                statement_timeout: ms(set.statement_timeout_ms.unwrap_or(DEFAULT_STATEMENT_TIMEOUT_MS)),
            }),
            writes: WriteSettings {
                group_commit: set.group_commit.unwrap_or(DEFAULT_GROUP_COMMIT),
                key_lifetime: set.upkeep.key_lifetime(),
                max_recorded_request_bytes: set
                    .max_recorded_request_bytes
                    .unwrap_or(DEFAULT_MAX_RECORDED_REQUEST_BYTES),
            },
            upkeep: set.upkeep.resolve(),
            migrate: set.migrate.unwrap_or(false),
            policies: set.policy_bundle.map(|bundle| PolicySettings {
                bundle,
                poll: ms(set
                    .policy_bundle_poll_ms
                    .unwrap_or(DEFAULT_POLICY_BUNDLE_POLL_MS)
                    .max(MIN_POLICY_BUNDLE_POLL_MS)),
            }),
            allow_request_policies: set.allow_request_policies.unwrap_or(false),
            callers: set.callers.map(|file| CallersSettings {
                file,
                poll: ms(set.callers_poll_ms.unwrap_or(DEFAULT_CALLERS_POLL_MS).max(MIN_CALLERS_POLL_MS)),
            }),
            evidence: EvidenceSettings {
                mutations: set.mutations,
                operation_map: set.operation_map,
                mode: set.mode.unwrap_or_default(),
                redact_paths: set.redact_paths.unwrap_or_default(),
                redact_keys: set
                    .redact_keys
                    .unwrap_or_else(|| DEFAULT_KEY_PATTERNS.iter().map(|k| (*k).to_owned()).collect()),
            },
            gateway: gateway_settings(
                set.gateway_workspace,
                set.gateway_principal,
                set.gateway_principal_type,
                set.gateway_unmapped,
                set.gateway_failure,
            )?,
            log: set.log_signing_key_file.map(|signing_key_file| LogKeeping {
                signing_key_file,
                interval: ms(set.log_interval_ms.unwrap_or(DEFAULT_LOG_INTERVAL_MS).max(MIN_LOG_INTERVAL_MS)),
            }),
        })
    }
}

/// The gateway's settings: none unless `--gateway-workspace` is given, and
/// then `--gateway-principal` too; the other gateway flags need both.
fn gateway_settings(
    workspace: Option<String>,
    principal: Option<String>,
    principal_type: Option<String>,
    unmapped: Option<crate::vocabulary::Unmapped>,
    failure: Option<crate::vocabulary::FailureMode>,
) -> anyhow::Result<Option<GatewaySettings>> {
    let Some(workspace) = workspace else {
        if principal.is_some() || principal_type.is_some() || unmapped.is_some() || failure.is_some() {
            anyhow::bail!("the gateway's settings need --gateway-workspace, which turns the gateway on");
        }
        return Ok(None);
    };
    let principal =
        principal.context("the gateway needs --gateway-principal: where a request's principal comes from")?;
    if principal_type.as_deref().is_some_and(str::is_empty) {
        anyhow::bail!("--gateway-principal-type is empty");
    }
    Ok(Some(GatewaySettings {
        workspace: WorkspaceSource::parse(&workspace)?,
        principal: PrincipalSource::parse(&principal)?,
        principal_type,
        unmapped: unmapped.unwrap_or(crate::vocabulary::Unmapped::Deny),
        failure: failure.unwrap_or(crate::vocabulary::FailureMode::Closed),
    }))
}

/// The URL given directly, else the one in `file` (surrounding whitespace
/// dropped), else, when `PGHOST` or `PGHOSTADDR` names a server, an empty
/// one: libpq's variables then say everything, as they do to psql.
pub fn database_url(
    direct: Option<String>,
    file: Option<&Path>,
    environment: &impl Environment,
) -> anyhow::Result<Option<String>> {
    match (direct, file) {
        (Some(url), _) => Ok(Some(url)),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the database URL from {}", path.display()))?;
            Ok(Some(text.trim().to_owned()))
        }
        (None, None) if ["PGHOST", "PGHOSTADDR"].iter().any(|v| environment.var(v).is_some()) => {
            Ok(Some(String::new()))
        }
        (None, None) => Ok(None),
    }
}

/// The config file: the same keys as the flags, snake_case; any other key is an error.
fn read_config_file(path: &Path) -> anyhow::Result<ServeArgs> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))?;
    let known = serve_keys();
    if let Some(unknown) = table.keys().find(|key| !known.contains(key.as_str())) {
        anyhow::bail!("config file {}: unknown key `{unknown}`", path.display());
    }
    table.try_into().with_context(|| format!("parsing config file {}", path.display()))
}

/// The settings `serve` takes (the file's keys): its flags' names, `config` aside.
fn serve_keys() -> BTreeSet<String> {
    let cli = Cli::command();
    let serve = cli.find_subcommand("serve").expect("serve is a subcommand");
    serve.get_arguments().map(|arg| arg.get_id().to_string()).filter(|id| id != "config").collect()
}

/// The resolved settings of `serve`, by subsystem.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: ListenSettings,
    pub limits: Limits,
    pub process: ProcessSettings,
    /// Without a database only Evaluate is served.
    pub database: Option<DatabaseSettings>,
    pub writes: WriteSettings,
    pub upkeep: Upkeep,
    /// Apply pending migrations before serving.
    pub migrate: bool,
    /// The operator's policy bundle; without one, Evaluate decides with the
    /// request's own policies and writes are refused (unless allowed below).
    pub policies: Option<PolicySettings>,
    /// Whether a request's own `policy_context` decides it instead of being refused.
    pub allow_request_policies: bool,
    /// Who may call, and what each may do; none: see [`crate::access`].
    pub callers: Option<CallersSettings>,
    pub evidence: EvidenceSettings,
    /// Proxies' checks (`crate::gateway`), when turned on.
    pub gateway: Option<GatewaySettings>,
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
    /// Host names the HTTP routes answer on a loopback listener, besides
    /// loopback ones (`api/http.rs`).
    pub allowed_hosts: Vec<String>,
    /// TLS (mutual when a client CA is set) on the service port.
    pub tls: Option<TlsSettings>,
    /// A listener beyond loopback may go without authentication (`--insecure-listen`).
    pub insecure: bool,
    /// Serve gRPC reflection.
    pub reflection: bool,
    /// Serve `GET /metrics`.
    pub metrics: bool,
}

impl ListenSettings {
    /// Whether clients must present a certificate the client CA signed.
    pub fn mutual_tls(&self) -> bool {
        self.tls.as_ref().is_some_and(|tls| tls.files.client_ca.is_some())
    }
}

/// Where the service port's certificate material lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA certificates; when set, clients must present a certificate it signed.
    pub client_ca: Option<PathBuf>,
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
    /// The largest OpenAPI document the authoring routes read.
    pub max_document_bytes: usize,
    pub concurrency_limit: usize,
    /// Request bytes processed at once (`api/admission.rs`).
    pub max_request_bytes_in_flight: usize,
    /// HTTP/2 streams one connection may have open at once.
    pub max_concurrent_streams: u32,
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
}

/// The callers file (`crate::access::callers`).
#[derive(Debug, Clone)]
pub struct CallersSettings {
    pub file: PathBuf,
    pub poll: Duration,
}

/// What the operator lets callers write, and how its evidence is kept.
#[derive(Debug, Clone)]
pub struct EvidenceSettings {
    /// The registry of mutations; none: no mutation may be named.
    pub mutations: Option<PathBuf>,
    /// Kernite's operation map, giving the scope of mutations that name an `operation_id`.
    pub operation_map: Option<PathBuf>,
    /// Mode of mutations that set none (and whose bundle scope sets none).
    pub mode: Mode,
    pub redact_paths: Vec<String>,
    pub redact_keys: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Cli, Command};
    use clap::Parser as _;

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

    fn serve_with(database: DatabaseArgs) -> ServeArgs {
        ServeArgs { database, ..ServeArgs::default() }
    }

    #[test]
    fn the_database_url_may_come_from_a_secret_file() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path();
        let secret = dir.join("url");
        std::fs::write(&secret, "postgresql://sidecar:s3cret@db/app\n").unwrap();
        let from_file = serve_with(DatabaseArgs { database_url_file: Some(secret.clone()), ..DatabaseArgs::default() });
        assert_eq!(from_file.resolve().unwrap().database.unwrap().target.url, "postgresql://sidecar:s3cret@db/app");

        let direct = serve_with(DatabaseArgs {
            database_url: Some("postgresql://other@db/app".into()),
            database_url_file: Some(secret),
            ..DatabaseArgs::default()
        });
        assert_eq!(direct.resolve().unwrap().database.unwrap().target.url, "postgresql://other@db/app");

        let missing =
            serve_with(DatabaseArgs { database_url_file: Some(dir.join("absent")), ..DatabaseArgs::default() });
        assert!(missing.resolve().unwrap_err().to_string().contains("reading the database URL"));
    }

    #[test]
    fn switches_work_bare_or_with_a_value() {
        let parse = |args: &[&str]| {
            let cli = Cli::try_parse_from([&["governance-sidecar", "serve"], args].concat()).unwrap();
            let Some(Command::Serve(serve)) = cli.command else { panic!("not serve") };
            serve.resolve().unwrap()
        };
        let allows = |settings: &ServerSettings| settings.allow_request_policies;
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
        let error = format!("{:#}", cli.resolve().unwrap_err());
        assert!(error.contains("unknown key `listne`"), "{error}");
    }

    #[test]
    fn every_file_key_layers_under_the_flags() {
        let scratch = tempfile::tempdir().unwrap();
        let file = scratch.path().join("sidecar.toml");
        let keys = "listen = \"127.0.0.1:6001\"\nmode = \"observe\"\nredact_keys = [\"pin\"]\n\
                    policy_bundle = \"b.json\"\nallow_request_policies = true\npool_size = 3\n\
                    database_url = \"postgresql://a@db/x\"\nlog_format = \"json\"\nretention_months = 13\n";
        std::fs::write(&file, keys).unwrap();
        let flags = ServeArgs { config: Some(file), mode: Some(Mode::Skip), ..ServeArgs::default() };
        let settings = flags.resolve().unwrap();
        assert_eq!(settings.listen.address, "127.0.0.1:6001".parse().unwrap());
        assert_eq!(settings.evidence.mode, Mode::Skip, "the flag wins");
        assert_eq!(settings.evidence.redact_keys, ["pin"]);
        assert!(settings.allow_request_policies && settings.policies.is_some());
        assert_eq!(settings.database.unwrap().pool_size, 3);
        assert_eq!(settings.upkeep.retention_months, Some(13), "a flattened group's key");
        assert_eq!(settings.process.log_format, LogFormat::Json);
    }

    #[test]
    fn every_database_and_upkeep_flag_is_declared_once_for_every_command() {
        let cli = Cli::command();
        let takes = |command: &str, flag: &str| {
            let command = cli.find_subcommand(command).unwrap();
            command.get_arguments().any(|a| a.get_id() == flag)
        };
        for command in ["serve", "dev", "migrate", "verify", "maintain"] {
            assert!(takes(command, "database_url") && takes(command, "database_ca_file"), "{command}");
        }
        for command in ["serve", "dev", "maintain"] {
            assert!(takes(command, "retention_months"), "{command}");
        }
        let dev = cli.find_subcommand("dev").unwrap();
        let database_url = dev.get_arguments().find(|a| a.get_id() == "database_url").unwrap();
        assert!(database_url.is_hide_set(), "dev starts its own PostgreSQL: its help does not offer --database-url");
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
