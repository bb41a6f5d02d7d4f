//! The `governance-sidecar` binary: parse the command line, set up logging,
//! and run the chosen command.

use std::io::Read as _;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser as _;
use governance_sidecar::api::GovernanceApi;
use governance_sidecar::config::{self, Cli, Command, DevArgs, LogFormat, ServerSettings};
use governance_sidecar::decision::json::{self, Layout};
use governance_sidecar::decision::{self, Answer};
use governance_sidecar::evidence::local_postgres::LocalPostgres;
use governance_sidecar::evidence::redact::Redactor;
use governance_sidecar::evidence::{EvidenceStore, connect_once, migrate};
use governance_sidecar::mutations::Registry;
use governance_sidecar::{server, telemetry};

/// mimalloc: about a quarter less CPU per decision than glibc malloc on our
/// many short-lived allocations (measured with benches/engine.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("governance-sidecar: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => {
            let settings = (*args).resolve()?;
            serve(&settings, None, || ())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Dev(args) => {
            let DevArgs { data_dir, postgres_port, example_policies, serve: mut args } = *args;
            if args.database_url.is_some() || args.database_url_file.is_some() {
                anyhow::bail!("`dev` starts its own PostgreSQL; use `serve` with --database-url for another one");
            }
            let data_dir = data_dir.unwrap_or_else(|| std::env::temp_dir().join("governance-sidecar-dev"));
            let data_dir = std::path::absolute(&data_dir)?;
            let postgres = LocalPostgres::start(&data_dir, postgres_port, true)?;
            // The private server has no TLS: say so, rather than let libpq's
            // default (`prefer`) ask for it on every new connection.
            args.database_url = Some(format!("{}?sslmode=disable", postgres.url("postgres")));
            args.migrate = Some(true);
            let example = args.mutations.is_none();
            if example && example_policies && args.policy_bundle.is_none() {
                // Kernite's own request bodies carry their policies: dev decides those with them.
                args.policy_bundle = Some(example_bundle(&data_dir)?);
                args.allow_request_policies = args.allow_request_policies.or(Some(true));
            }
            let settings = args.resolve()?;
            let url = postgres.url("postgres");
            serve(&settings, example.then_some(EXAMPLE_MUTATIONS), || {
                tracing::info!(url, data_dir = %data_dir.display(), "private PostgreSQL is up");
            })?;
            drop(postgres);
            Ok(ExitCode::SUCCESS)
        }
        Command::Evaluate { idempotency_key } => evaluate_stdin(idempotency_key.as_deref()),
        Command::Health { address, service, timeout_ms } => {
            let timeout = std::time::Duration::from_millis(timeout_ms);
            let status = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(server::health_check(address, service, timeout))?;
            println!("{}", status.as_str_name());
            Ok(if status == server::ReportedStatus::Serving { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Migrate { database_url, database_url_file, database_ca_file } => {
            telemetry::init_logs(LogFormat::Text);
            let url = config::database_url(database_url, database_url_file.as_deref())?
                .ok_or_else(|| anyhow::anyhow!("--database-url, --database-url-file or PGHOST is required"))?;
            tokio::runtime::Runtime::new()?.block_on(migrate(&url, database_ca_file.as_deref()))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Serves until SIGTERM or SIGINT, on a runtime of the configured size, with
/// logs and trace export set up first (`started` logs what happened before).
/// The server is tied to this (the main) thread, which lives as long as we do.
/// With the invoice example, prints how to try it once the port is bound.
fn serve(settings: &ServerSettings, example: Option<&str>, started: impl FnOnce()) -> anyhow::Result<()> {
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = settings.process.worker_threads {
        runtime.worker_threads(threads);
    }
    let runtime = runtime.enable_all().build()?;
    let telemetry = {
        let _inside = runtime.enter();
        telemetry::init(settings.process.log_format)
    };
    started();
    let served = runtime.block_on(async {
        let shutdown = server::termination_signal();
        let api = api_for(settings, example).await?;
        let listener = tokio::net::TcpListener::bind(settings.listen.address).await?;
        if example.is_some() && settings.policies.is_some() {
            println!("{}", try_it(listener.local_addr()?));
        }
        server::serve(listener, settings, api, shutdown).await
    });
    telemetry.shutdown();
    served
}

/// The invoice example's policy bundle, written where `dev` keeps its data
/// (and rewritten at each start), so that edits to it are reloaded live.
fn example_bundle(data_dir: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    let path = data_dir.join("policy-bundle.json");
    std::fs::write(&path, EXAMPLE_BUNDLE)?;
    Ok(path)
}

/// The first run's commands, for the address the server listens on: the
/// README opens with the same lines for 127.0.0.1:50051.
fn try_it(address: std::net::SocketAddr) -> String {
    EXAMPLE_TRY_IT.replace("{address}", &address.to_string())
}

/// The service, with an evidence store when a database is configured.
/// `example` is a registry (with its schema) to use when no --mutations is given.
async fn governed_writes(settings: &ServerSettings, example: Option<&str>) -> anyhow::Result<GovernanceApi> {
    let Some(database) = &settings.database else {
        tracing::info!("no database configured: serving Evaluate only");
        return Ok(GovernanceApi::new());
    };
    if settings.migrate {
        migrate(&database.url, database.ca_file.as_deref()).await?;
    }
    let evidence = &settings.evidence;
    let registry = match (&evidence.mutations, example) {
        (Some(path), _) => Registry::load(path)?,
        (None, Some(example)) => {
            connect_once(&database.url, database.ca_file.as_deref()).await?.batch_execute(EXAMPLE_SCHEMA).await?;
            Registry::parse(example)?
        }
        (None, None) => Registry::default(),
    };
    let redactor = Redactor::new(&evidence.redact_paths, &evidence.redact_keys)?;
    Ok(GovernanceApi::with_evidence(EvidenceStore::connect(database, registry, evidence.mode, redactor).await?))
}

/// The service as configured: evidence store, then the operator's policy bundle.
async fn api_for(settings: &ServerSettings, example: Option<&str>) -> anyhow::Result<GovernanceApi> {
    let api = governed_writes(settings, example).await?;
    let Some(policies) = &settings.policies else { return Ok(api) };
    let source = Arc::new(governance_sidecar::policies::load(&policies.bundle)?);
    Arc::clone(&source).watch(policies.poll);
    Ok(api.with_policies(source, policies.allow_request_policies))
}

/// The invoice example that `dev` serves unless --mutations is given: its
/// table and mutation, its policy bundle, and how to try it.
const EXAMPLE_SCHEMA: &str = include_str!("../deploy/examples/invoice/schema.sql");
const EXAMPLE_MUTATIONS: &str = include_str!("../deploy/examples/invoice/mutations.toml");
const EXAMPLE_BUNDLE: &str = include_str!("../deploy/examples/invoice/policy-bundle.json");
const EXAMPLE_TRY_IT: &str = include_str!("../deploy/examples/invoice/try-it.txt");

async fn migrate(url: &str, ca_file: Option<&std::path::Path>) -> anyhow::Result<()> {
    let mut client = connect_once(url, ca_file).await?;
    let applied = migrate::migrate(&mut client).await?;
    tracing::info!(?applied, latest = migrate::latest_version(), "schema is up to date");
    Ok(())
}

/// Offline debugging: one request on stdin, Kernite's response body on stdout.
fn evaluate_stdin(idempotency_key: Option<&str>) -> anyhow::Result<ExitCode> {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input)?;
    let body = json::parse(&input).map_err(|e| anyhow::anyhow!("stdin is not valid JSON: {e}"))?;
    let (response, code) = match decision::execute(body, idempotency_key)? {
        Answer::Decided(decided) => (decided.record.to_value(), ExitCode::SUCCESS),
        Answer::Invalid(invalid) => (invalid.to_value("ctx_offline"), ExitCode::from(2)),
    };
    println!("{}", json::to_string(&response, Layout::Response));
    Ok(code)
}
