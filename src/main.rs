//! The `governance-sidecar` binary: parse the command line, set up logging,
//! and run the chosen command.

use std::io::Read as _;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{CommandFactory as _, Parser as _};
use governance_sidecar::access::{self, Gate};
use governance_sidecar::api::GovernanceApi;
use governance_sidecar::authoring::command_line;
use governance_sidecar::config::{Cli, Command, DevArgs, PolicyCommand, ServerSettings};
use governance_sidecar::decision::json::{self, Layout};
use governance_sidecar::decision::{self, Answer};
use governance_sidecar::evidence::EvidenceStore;
use governance_sidecar::evidence::redact::Redactor;
use governance_sidecar::gateway::{Gateway, GatewaySettings};
use governance_sidecar::log::checkpoint::LogVerifier;
use governance_sidecar::log::sequencer;
use governance_sidecar::log::verify::{self, VerifySettings};
use governance_sidecar::mutations::Registry;
use governance_sidecar::policies::{OperationMap, PolicyBundle, PolicySource};
use governance_sidecar::policy_tests;
use governance_sidecar::postgres::DatabaseTarget;
use governance_sidecar::postgres::local_postgres::LocalPostgres;
use governance_sidecar::schema::layout::{self, EvidenceLayout};
use governance_sidecar::schema::migrate;
use governance_sidecar::telemetry::LogFormat;
use governance_sidecar::{server, telemetry, upkeep};

/// mimalloc: about a quarter less CPU per decision than glibc malloc on our
/// many short-lived allocations (measured with benches/engine.rs). Version 2:
/// version 3 kept up to three times the memory after bursts of large requests
/// (`tests/memory.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay`, in its `mi_option_t` (versions 2 and 3 alike).
const MIMALLOC_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Freed memory goes back to the system at once. mimalloc otherwise keeps a
/// freed page 10 ms and gives it back only when the same thread next
/// allocates, so a worker that falls idle after a burst of large requests
/// keeps them: after each of 20 passes of hostile input, resident memory
/// ranged 46–66 MiB by default and 38–54 MiB with this, the idle sidecar
/// being 39 MiB (debug build, `tests/memory.rs`).
#[allow(unsafe_code)]
fn give_freed_memory_back_at_once() {
    // SAFETY: `mi_option_set` takes two integers, copies them into mimalloc's
    // option table and may be called from any thread at any time.
    unsafe { libmimalloc_sys::mi_option_set(MIMALLOC_PURGE_DELAY, 0) };
}

fn main() -> ExitCode {
    give_freed_memory_back_at_once();
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
    let Some(command) = cli.command else {
        // Like Kernite's `kernite` alone: the help on stdout, exit 0.
        Cli::command().print_help()?;
        return Ok(ExitCode::SUCCESS);
    };
    match command {
        Command::Serve(args) => {
            let settings = (*args).resolve()?;
            serve(&settings, &DevSetup::default(), || ())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Dev(args) => {
            let DevArgs { data_dir, postgres_port, example_policies, init_sql, serve: mut args } = *args;
            let init_sql = init_sql
                .iter()
                .map(|path| {
                    std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            if args.database.database_url.is_some() || args.database.database_url_file.is_some() {
                anyhow::bail!("`dev` starts its own PostgreSQL; use `serve` with --database-url for another one");
            }
            let data_dir = data_dir.unwrap_or_else(|| std::env::temp_dir().join("governance-sidecar-dev"));
            let data_dir = std::path::absolute(&data_dir)?;
            let postgres = LocalPostgres::start(&data_dir, postgres_port, true)?;
            // The private server has no TLS: say so, rather than let libpq's
            // default (`prefer`) ask for it on every new connection.
            let database_url = format!("{}?sslmode=disable", postgres.url("postgres"));
            // For `verify` and psql: the private server's port changes at every start.
            std::fs::write(data_dir.join("database-url"), format!("{database_url}\n"))?;
            args.database.database_url = Some(database_url);
            args.migrate = Some(true);
            if args.log_signing_key_file.is_none() {
                args.log_signing_key_file = Some(dev_log_key(&data_dir)?);
            }
            let example = args.mutations.is_none();
            if example && example_policies && args.policy_bundle.is_none() {
                args.policy_bundle = Some(example_bundle(&data_dir)?);
            }
            // Kernite's own request bodies carry their policies: dev decides those with them.
            if *args.allow_request_policies.get_or_insert(true) {
                eprintln!(
                    "dev: a request's own policy_context decides it, writes included (--allow-request-policies): \
                     for development only; `serve` refuses such requests unless told otherwise"
                );
            }
            let settings = args.resolve()?;
            let url = postgres.url("postgres");
            let setup = DevSetup { example: example.then_some(EXAMPLE_MUTATIONS), init_sql };
            serve(&settings, &setup, || {
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
        Command::LogKey { origin, signing_key_file } => {
            let verifier_key = new_log_key(&origin, &signing_key_file)?;
            eprintln!("wrote the signer key to {}; the verifier key is:", signing_key_file.display());
            println!("{verifier_key}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { database, public_key, max_transaction_seconds, max_lag_seconds } => {
            let database = database.required()?;
            let verifier = LogVerifier::new(&read_key_argument(&public_key)?)?;
            let settings = VerifySettings {
                max_transaction_age: std::time::Duration::from_secs(max_transaction_seconds),
                max_lag: std::time::Duration::from_secs(max_lag_seconds),
            };
            tokio::runtime::Runtime::new()?.block_on(verify_log(&database, &verifier, settings))
        }
        Command::Migrate { database, layout } => {
            telemetry::init_logs(LogFormat::Text);
            let database = database.required()?;
            tokio::runtime::Runtime::new()?.block_on(migrate(&database, layout))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Maintain { database, upkeep } => {
            telemetry::init_logs(LogFormat::Text);
            let database = database.required()?;
            tokio::runtime::Runtime::new()?.block_on(async {
                let client = database.connect_once().await?;
                match upkeep::run_once(&client, &upkeep.resolve()).await? {
                    Some(report) => tracing::info!(?report, "upkeep done"),
                    None => tracing::info!("nothing to do: the reference layout, or another upkeep is running"),
                }
                anyhow::Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy { command: Some(PolicyCommand::Generate(args)) } => Ok(command_line::generate(&args).into()),
        Command::Policy { command: Some(PolicyCommand::Test(args)) } => {
            Ok(policy_tests::command_line::test(&args).into())
        }
        Command::Policy { command: None } => {
            // Clap's own help of `policy`, as `policy --help` prints it.
            Cli::try_parse_from(["governance-sidecar", "policy", "--help"]).map(drop).unwrap_or_else(|help| {
                let _ = help.print();
            });
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay { database, replay } => {
            Ok(governance_sidecar::replay::command_line::run(database.required(), &replay))
        }
        Command::Check(args) => Ok(command_line::check(&args).into()),
        Command::Start(args) => Ok(command_line::start(&args).into()),
    }
}

/// Serves until SIGTERM or SIGINT, on a runtime of the configured size, with
/// logs and trace export set up first (`started` logs what happened before).
/// The server is tied to this (the main) thread, which lives as long as we do.
/// With the invoice example, prints how to try it once the port is bound.
/// What `dev` adds to `serve`: the invoice example's registry (with its
/// schema) when no --mutations is given, and the SQL of --init-sql.
#[derive(Default)]
struct DevSetup {
    example: Option<&'static str>,
    init_sql: Vec<String>,
}

fn serve(settings: &ServerSettings, dev: &DevSetup, started: impl FnOnce()) -> anyhow::Result<()> {
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
        // Before anything is bound or read: a listener open to the network needs authentication.
        server::check_exposure(settings.listen.address, settings)?;
        let api = api_for(settings, dev).await?;
        let listener = tokio::net::TcpListener::bind(settings.listen.address).await?;
        if dev.example.is_some() && settings.policies.is_some() {
            println!("{}", try_it(listener.local_addr()?));
        }
        server::serve(listener, settings, api, shutdown).await
    });
    telemetry.shutdown();
    served
}

/// The invoice example's policy bundle, written where `dev` keeps its data
/// at its first start, so that edits to it are reloaded live and kept
/// across restarts (deleting the file brings the example back).
fn example_bundle(data_dir: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    let path = data_dir.join("policy-bundle.json");
    match std::fs::read_to_string(&path) {
        Ok(kept) if kept != EXAMPLE_BUNDLE => {
            eprintln!("dev: deciding with the edited bundle {} (delete it to restore the example's)", path.display());
        }
        Ok(_) => {}
        Err(_) => std::fs::write(&path, EXAMPLE_BUNDLE)?,
    }
    Ok(path)
}

/// The verifiable log's key of `dev`, made at its first start and kept in
/// its data directory, with the verifier key beside it for `verify`.
fn dev_log_key(data_dir: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    let path = data_dir.join("log-signing-key");
    if !path.exists() {
        let verifier_key = new_log_key("governance-sidecar.dev/evidence", &path)?;
        std::fs::write(data_dir.join("log-public-key"), format!("{verifier_key}\n"))?;
    }
    Ok(path)
}

/// The first run's commands, for the address the server listens on: the
/// README shows the same lines for 127.0.0.1:50051.
fn try_it(address: std::net::SocketAddr) -> String {
    EXAMPLE_TRY_IT.replace("{address}", &address.to_string())
}

/// The service, with an evidence store when a database is configured.
async fn governed_writes(
    settings: &ServerSettings,
    dev: &DevSetup,
    bundle: Option<&PolicyBundle>,
) -> anyhow::Result<GovernanceApi> {
    let Some(database) = &settings.database else {
        if settings.log.is_some() {
            anyhow::bail!("the verifiable log needs a database: give --database-url too");
        }
        tracing::info!("no database configured: serving Evaluate only");
        return Ok(GovernanceApi::new());
    };
    let target = &database.target;
    if settings.migrate {
        migrate(target, None).await?;
    }
    for sql in &dev.init_sql {
        target.connect_once().await?.batch_execute(sql).await?;
    }
    let evidence = &settings.evidence;
    let registry = match (&evidence.mutations, dev.example) {
        (Some(path), _) => {
            let operations = evidence.operation_map.as_deref().map(OperationMap::load).transpose()?;
            Registry::load(path, operations.as_ref())?
        }
        (None, Some(example)) => {
            target
                .connect_once()
                .await?
                .batch_execute(&format!("SET client_min_messages = warning; {EXAMPLE_SCHEMA}"))
                .await?;
            Registry::parse(example)?
        }
        (None, None) => Registry::default(),
    };
    let registry = registry.with_default_mode(evidence.mode);
    check_governed(&registry, bundle, settings)?;
    let redactor = Redactor::new(&evidence.redact_paths, &evidence.redact_keys)?;
    let store = EvidenceStore::connect(database, settings.writes, registry, redactor).await?;
    upkeep::keep_up(target.clone(), settings.upkeep.clone());
    let api = GovernanceApi::with_evidence(store);
    Ok(match &settings.log {
        Some(keeping) => api.with_log_state(sequencer::spawn(target.clone(), keeping)?),
        None => api,
    })
}

/// The service as configured: evidence store, the gate, then the
/// operator's policy bundle, which must govern every registered mutation.
async fn api_for(settings: &ServerSettings, dev: &DevSetup) -> anyhow::Result<GovernanceApi> {
    if let Some(log) = &settings.log {
        governance_sidecar::secret_file::check(&log.signing_key_file, "the log signing key")?;
    }
    let gate = gate(settings)?;
    let source = match &settings.policies {
        Some(policies) => Some(Arc::new(governance_sidecar::policies::load(&policies.bundle)?)),
        None => None,
    };
    let api = governed_writes(settings, dev, source.as_ref().map(|s| s.current()).as_deref()).await?;
    let api = api.with_gate(gate);
    if let (Some(source), Some(policies)) = (&source, &settings.policies) {
        Arc::clone(source).watch(policies.poll);
    }
    let api = match &settings.gateway {
        Some(gateway_settings) => api.with_gateway(gateway(settings, gateway_settings, source.as_deref())?),
        None => api,
    };
    Ok(match source {
        Some(source) => api.with_policies(source, settings.allow_request_policies),
        None => api.allowing_request_policies(settings.allow_request_policies),
    })
}

/// The gateway over the operation map's routes. It needs what a check
/// does: the routes, the operator's bundle, which must govern every route
/// (a route nothing governs would be refused on every request), and the
/// database its evidence goes to.
fn gateway(
    settings: &ServerSettings,
    gateway: &GatewaySettings,
    policies: Option<&PolicySource>,
) -> anyhow::Result<Gateway> {
    let Some(map) = &settings.evidence.operation_map else {
        anyhow::bail!("the gateway needs --operation-map: its routes, as `policy generate` writes them");
    };
    let Some(policies) = policies else {
        anyhow::bail!("the gateway needs --policy-bundle: its checks are decided by the operator's policies");
    };
    if settings.database.is_none() {
        anyhow::bail!("the gateway needs a database: every check commits its evidence before it is answered");
    }
    let gateway = Gateway::new(gateway.clone(), &OperationMap::load(map)?)?;
    let bundle = policies.current();
    let ungoverned = gateway.routes_ungoverned_by(&bundle).join(", ");
    if !ungoverned.is_empty() {
        anyhow::bail!("the policy bundle does not govern these routes of the operation map: {ungoverned}");
    }
    tracing::info!(routes = gateway.route_count(), "answering proxies' checks (Envoy ext_authz, forward-auth)");
    Ok(gateway)
}

/// Who may call: the callers file's callers, else a client certificate's
/// identity or the listener's anonymous caller (`local` on loopback).
fn gate(settings: &ServerSettings) -> anyhow::Result<Gate> {
    Ok(match &settings.callers {
        Some(callers) => {
            let source = Arc::new(access::callers::load(&callers.file)?);
            Arc::clone(&source).watch(callers.poll);
            Gate::with_callers(source)
        }
        None if settings.listen.address.ip().is_loopback() => Gate::open(access::LOCAL_CALLER),
        None => Gate::open(access::ANONYMOUS_CALLER),
    })
}

/// Refuses to start when the bundle does not govern a registered mutation
/// (unless the registry marks it `ungoverned`), naming it: a write nothing
/// governs would be approved as out of scope.
fn check_governed(registry: &Registry, bundle: Option<&PolicyBundle>, settings: &ServerSettings) -> anyhow::Result<()> {
    let ungoverned = registry.ungoverned_by(bundle).join(", ");
    match bundle {
        _ if ungoverned.is_empty() => {}
        Some(_) => anyhow::bail!(
            "the policy bundle does not govern the scope of mutation(s) {ungoverned}: add their scopes to the bundle, \
             or mark them `ungoverned = true` in the mutations file"
        ),
        None if settings.allow_request_policies => tracing::warn!(
            mutations = ungoverned,
            "no policy bundle: these mutations are decided by the policies their requests carry"
        ),
        None => anyhow::bail!(
            "no policy bundle governs mutation(s) {ungoverned}: give --policy-bundle (or, for development only, \
             --allow-request-policies)"
        ),
    }
    Ok(())
}

/// The invoice example that `dev` serves unless --mutations is given: its
/// table and mutation, its policy bundle, and how to try it.
const EXAMPLE_SCHEMA: &str = include_str!("../deploy/examples/invoice/schema.sql");
const EXAMPLE_MUTATIONS: &str = include_str!("../deploy/examples/invoice/mutations.toml");
const EXAMPLE_BUNDLE: &str = include_str!("../deploy/examples/invoice/policy-bundle.json");
const EXAMPLE_TRY_IT: &str = include_str!("../deploy/examples/invoice/try-it.txt");

async fn migrate(database: &DatabaseTarget, wanted: Option<EvidenceLayout>) -> anyhow::Result<()> {
    let mut client = database.connect_once().await?;
    let applied = migrate::migrate_to(&mut client, wanted).await?;
    let layout = layout::detect(&client).await?;
    tracing::info!(?applied, latest = migrate::latest_version(), layout = layout.as_str(), "schema is up to date");
    Ok(())
}

/// A new key pair for the log named `origin`: the signer key goes to a new
/// file only its owner can read (an existing file is never overwritten); the
/// verifier key is returned.
fn new_log_key(origin: &str, path: &std::path::Path) -> anyhow::Result<String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let (signer_key, verifier_key) = governance_sidecar::log::checkpoint::generate_key(origin)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| anyhow::anyhow!("creating {}: {e}", path.display()))?;
    writeln!(file, "{signer_key}")?;
    Ok(verifier_key)
}

/// A verifier key given inline, or the contents of the file it names.
fn read_key_argument(argument: &str) -> anyhow::Result<String> {
    let path = std::path::Path::new(argument);
    if path.is_file() { Ok(std::fs::read_to_string(path)?.trim().to_owned()) } else { Ok(argument.to_owned()) }
}

/// `verify`: prints each discrepancy on stdout and progress on stderr.
async fn verify_log(
    database: &DatabaseTarget,
    verifier: &LogVerifier,
    settings: VerifySettings,
) -> anyhow::Result<ExitCode> {
    let client = database.connect_once().await?;
    let started = std::time::Instant::now();
    let mut shown = started;
    let report = verify::verify(&client, verifier, settings, |done, total| {
        if shown.elapsed() >= std::time::Duration::from_secs(1) || done == total {
            shown = std::time::Instant::now();
            eprintln!("checked {done} of {total} leaves ({:.1} s)", started.elapsed().as_secs_f64());
        }
    })
    .await?;
    for discrepancy in &report.discrepancies {
        println!("{discrepancy}");
    }
    for record in &report.retention {
        eprintln!("{record}");
    }
    eprintln!(
        "{} leaves ({} removed by retention, checked by their stored hashes), {} checkpoints, {} rows awaiting \
         sequencing: {} in {:.1} s",
        report.leaves,
        report.pruned,
        report.checkpoints,
        report.pending,
        if report.discrepancies.is_empty() {
            "everything verifies".to_owned()
        } else {
            format!("{} discrepancies", report.discrepancies.len())
        },
        started.elapsed().as_secs_f64()
    );
    Ok(if report.discrepancies.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
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
