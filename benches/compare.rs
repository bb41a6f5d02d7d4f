//! The performance table of `docs/performance.md`, measured side by side in one run.
//!
//! `cargo bench --bench compare` (needs python3 with `pip install kernite==0.1.6
//! "psycopg[binary]==3.3.9"`, and the PostgreSQL server package for pgbench and
//! the private database).
//! `BENCH_SECONDS` sets each load's length (default 10); `BENCH_SIDECAR_ARGS`
//! adds flags to the sidecar under test; `BENCH_MUTATIONS` replaces the
//! invoice registry (e.g. `benches/invoice-two-round-trips.toml`); `BENCH_ONLY` (e.g. `engine,evaluate`)
//! runs some of the three parts (`engine`, `evaluate`, `execute`) while tuning one;
//! `BENCH_CALLERS` (e.g. `8`) and `BENCH_PLACEMENTS` (`unpinned`, `pinned`) narrow
//! the ExecuteWithEvidence loads, e.g. to profile one of them; `BENCH_SETUP_SQL`
//! is run on the database once it is migrated (to try a storage setting);
//! `BENCH_ANSWER_FORM` (`typed`, `kernite_json`) is the form the writes' answers take.
//!
//! - engine: validate + evaluate + hash in-process, next to Kernite's
//!   `execute_request` on the same requests (`benches/kernite_reference.py`),
//!   both handed a parsed request and both handed the JSON text;
//! - Evaluate over gRPC, 8 connections x 16 streams, in each answer form
//!   (both, typed, Kernite's JSON), next to a tonic server whose handler does
//!   nothing but answer the sidecar's own answer in that form (the same bytes),
//!   driven by the same load generator;
//! - ExecuteWithEvidence (the invoice mutation) at 1, 8 and 32 callers, decided
//!   by the operator's bundle (the request's policy moved into a bundle file,
//!   the request carrying no `policy_context`: the path every production write
//!   takes once writes fail closed), and beside it by the request's own policy
//!   (`BENCH_PATHS`: `bundle`, `request`), next to
//!   pgbench running the reference transaction against the same database (the
//!   response JSON bound as a parameter, as a real writer binds it, and as a
//!   constant), and at 8 callers next to the seed's Python recipe (Kernite
//!   in-process and psycopg, `benches/python_recipe.py`); first with every
//!   process sharing both cores, then with PostgreSQL pinned to CPU 0 and the
//!   rest to CPU 1 (`taskset`), as a database on cores of its own;
//! - the sidecar's resident memory, idle and under each load.
//!
//! Only calls answered OK (grpc-status 0) are counted; any other answer is
//! reported and fails the run.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use governance_sidecar::decision::value::object;
use governance_sidecar::decision::{Answer, Value, execute, json};
use governance_sidecar::proto::governance_client::GovernanceClient;
use governance_sidecar::proto::governance_server::{Governance, GovernanceServer};
use governance_sidecar::proto::{
    AnswerForm, EvaluateRequest, EvaluateResponse, ExecuteWithEvidenceRequest, ExecuteWithEvidenceResponse,
    evaluate_request,
};
use tonic::transport::Channel;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod harness;

use harness::load::*;
use harness::*;

/// Whether this run measures `part` (all parts unless `BENCH_ONLY` names some).
fn measures(part: &str) -> bool {
    chosen("BENCH_ONLY", part)
}

/// Whether `value` is among the comma-separated `variable` (all when unset).
fn chosen(variable: &str, value: &str) -> bool {
    std::env::var(variable).map_or(true, |list| list.split(',').any(|v| v.trim() == value))
}

// ---------------------------------------------------------------- engine

/// How the engine is handed its request.
#[derive(Clone, Copy)]
enum Input {
    /// Parsed outside the timing (a fresh copy per decision), as Kernite's
    /// in-process figure is taken: `execute_request` on a dict.
    Parsed,
    /// The JSON text, parsed inside the timing, as one call pays.
    Text,
}

/// One thread's decisions: per second (one over the mean timed latency, as
/// the Kernite script reports) and p50/p99 in nanoseconds.
fn engine(name: &str, input: Input) -> (f64, u64, u64) {
    let text = request_text(name);
    let parsed = json::parse(&text).unwrap();
    let mut nanos = histogram();
    let mut timed = Duration::ZERO;
    let deadline = Instant::now() + seconds().min(Duration::from_secs(5));
    while Instant::now() < deadline {
        for _ in 0..100 {
            let copy = matches!(input, Input::Parsed).then(|| parsed.clone());
            let t0 = Instant::now();
            let body = copy.unwrap_or_else(|| json::parse(&text).unwrap());
            let Answer::Decided(decided) = execute(body, Some("bench-key")).unwrap() else { panic!("valid request") };
            let elapsed = t0.elapsed();
            std::hint::black_box(decided);
            timed += elapsed;
            // A stall of the machine past the histogram's 60 ms counts as 60 ms.
            nanos.saturating_record(elapsed.as_nanos().max(1) as u64);
        }
    }
    let rate = nanos.len() as f64 / timed.as_secs_f64();
    (rate, nanos.value_at_quantile(0.5), nanos.value_at_quantile(0.99))
}

/// Kernite's own figures for the same file, handed a dict and handed the
/// text: (decisions/s, p50 us, p99 us) each.
fn kernite(name: &str) -> Option<[(f64, f64, f64); 2]> {
    let output = Command::new("python3")
        .arg(format!("{ROOT}/benches/kernite_reference.py"))
        .arg(seconds().min(Duration::from_secs(5)).as_secs_f64().to_string())
        .arg(format!("{ROOT}/benches/requests/{name}.json"))
        .output()
        .ok()?;
    if !output.status.success() {
        eprintln!(
            "kernite_reference.py failed (pip install kernite==0.1.6?): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        return None;
    }
    let line = String::from_utf8(output.stdout).ok()?;
    let value = json::parse(line.trim()).ok()?;
    let figures = |input: &str| {
        let map = value.as_object()?.get(input)?.as_object()?;
        let number = |key: &str| json_value_to_f64(map.get(key)?);
        Some((number("decisions_per_s")?, number("p50_us")?, number("p99_us")?))
    };
    Some([figures("parsed")?, figures("text")?])
}

fn json_value_to_f64(value: &Value) -> Option<f64> {
    match value {
        Value::Float(f) => Some(*f),
        Value::Int(n) => Some(*n as f64),
        _ => None,
    }
}

/// This same binary, serving the do-nothing server (see `main`).
fn spawn_floor(port: u16, responses: &Path) -> Process {
    let child = Command::new(std::env::current_exe().unwrap())
        .env("GOVERNANCE_BENCH_FLOOR_PORT", port.to_string())
        .env("GOVERNANCE_BENCH_FLOOR_RESPONSES", responses)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_port(port);
    Process { child }
}

/// A Governance service whose Evaluate does nothing but answer the
/// sidecar's own answer to the bench's request, in the form asked for (the
/// same bytes on the wire): the gRPC floor.
struct Floor {
    /// By `answer_form`: both, typed, Kernite's JSON.
    responses: [EvaluateResponse; 3],
}

#[tonic::async_trait]
impl Governance for Floor {
    async fn evaluate(
        &self,
        request: tonic::Request<EvaluateRequest>,
    ) -> Result<tonic::Response<EvaluateResponse>, tonic::Status> {
        let index = match request.get_ref().answer_form() {
            AnswerForm::Typed => 1,
            AnswerForm::KerniteJson => 2,
            _ => 0,
        };
        Ok(tonic::Response::new(self.responses[index].clone()))
    }
    async fn execute_with_evidence(
        &self,
        _request: tonic::Request<ExecuteWithEvidenceRequest>,
    ) -> Result<tonic::Response<ExecuteWithEvidenceResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("floor"))
    }
    async fn get_evidence(
        &self,
        _request: tonic::Request<governance_sidecar::proto::GetEvidenceRequest>,
    ) -> Result<tonic::Response<governance_sidecar::proto::EvidenceRecord>, tonic::Status> {
        Err(tonic::Status::unimplemented("floor"))
    }
    async fn list_evidence(
        &self,
        _request: tonic::Request<governance_sidecar::proto::ListEvidenceRequest>,
    ) -> Result<tonic::Response<governance_sidecar::proto::ListEvidenceResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("floor"))
    }
    async fn get_checkpoint(
        &self,
        _request: tonic::Request<governance_sidecar::proto::GetCheckpointRequest>,
    ) -> Result<tonic::Response<governance_sidecar::proto::Checkpoint>, tonic::Status> {
        Err(tonic::Status::unimplemented("floor"))
    }
    async fn get_inclusion_proof(
        &self,
        _request: tonic::Request<governance_sidecar::proto::GetInclusionProofRequest>,
    ) -> Result<tonic::Response<governance_sidecar::proto::InclusionProof>, tonic::Status> {
        Err(tonic::Status::unimplemented("floor"))
    }
    async fn get_consistency_proof(
        &self,
        _request: tonic::Request<governance_sidecar::proto::GetConsistencyProofRequest>,
    ) -> Result<tonic::Response<governance_sidecar::proto::ConsistencyProof>, tonic::Status> {
        Err(tonic::Status::unimplemented("floor"))
    }
    type ReplayEvidenceStream =
        tokio_stream::Empty<Result<governance_sidecar::proto::ReplayEvidenceResponse, tonic::Status>>;
    async fn replay_evidence(
        &self,
        _request: tonic::Request<governance_sidecar::proto::ReplayEvidenceRequest>,
    ) -> Result<tonic::Response<Self::ReplayEvidenceStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("floor"))
    }
}

/// The floor's answers, one per form, as the sidecar gave them (`FLOOR_RESPONSES`).
const FORMS: [AnswerForm; 3] = [AnswerForm::Both, AnswerForm::Typed, AnswerForm::KerniteJson];

fn serve_floor(port: u16) {
    use prost::Message as _;
    let bytes = std::fs::read(std::env::var("GOVERNANCE_BENCH_FLOOR_RESPONSES").unwrap()).unwrap();
    let mut buffer = bytes.as_slice();
    let responses = FORMS.map(|_| EvaluateResponse::decode_length_delimited(&mut buffer).unwrap());
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        tonic::transport::Server::builder()
            .add_service(GovernanceServer::new(Floor { responses }))
            .serve(SocketAddr::from(([127, 0, 0, 1], port)))
            .await
            .unwrap();
    });
}

// ---------------------------------------------------------------- load

fn evaluate_call(
    text: Arc<String>,
    form: AnswerForm,
) -> impl Fn(GovernanceClient<Channel>, u64) -> std::pin::Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync {
    move |mut client, _| {
        let request = evaluate_request(&text, form);
        Box::pin(async move { client.evaluate(request).await.is_ok() })
    }
}

fn evaluate_request(text: &str, form: AnswerForm) -> EvaluateRequest {
    EvaluateRequest {
        body: Some(evaluate_request::Body::RequestJson(text.to_owned())),
        idempotency_key: Some("bench-key".into()),
        answer_form: form.into(),
    }
}

// ---------------------------------------------------------------- postgres

/// How the reference transaction hands PostgreSQL the response JSON.
#[derive(Clone, Copy, PartialEq)]
enum Json {
    /// A constant in the prepared statement: parsed once, at prepare time.
    Constant,
    /// A parameter, as a real writer binds it: parsed on every transaction.
    Bound,
}

/// Every load starts just after a checkpoint. Otherwise a checkpoint that
/// WAL volume triggers lands in whichever load runs then, and the full-page
/// writes that follow it weigh on that load alone.
fn checkpoint(url: &str) {
    psql(url, "CHECKPOINT");
}

/// pgbench running the reference transaction: one evidence row with the
/// same ~2 KiB response JSON and one invoice, `BEGIN … END`, prepared.
/// Returns the transactions per second and how many were committed.
fn pgbench(url: &str, clients: usize, response_json: &str, json: Json, dir: &Path) -> (f64, u64) {
    let script = dir.join("reference.sql");
    let response = match json {
        // pgbench reads `:name` as a variable even inside literals: write the
        // JSON as a Unicode-escape literal, with `\` and `:` escaped.
        Json::Constant => {
            format!("U&'{}'", response_json.replace('\\', "\\005C").replace(':', "\\003A").replace('\'', "''"))
        }
        // `-D response=…` makes a variable, which `-M prepared` binds as a parameter.
        Json::Bound => ":response::jsonb".to_owned(),
    };
    std::fs::write(
        &script,
        format!(
            "\\set amount random(1, 1000)\n\
             \\set key random(1, 9000000000000000000)\n\
             BEGIN;\n\
             INSERT INTO governance_events (workspace_id, principal_id, object_type, operation, decision, reason_codes, ctx_id, trace_hash, idempotency_key, response_json) \
             VALUES ('ws_bench', 'usr_42', 'invoice', 'create', 'approved', '[]', 'ctx_0123456789ab', 'sha256:0123', 'pgbench-' || :client_id || '-' || :key, {response});\n\
             INSERT INTO invoices (workspace_id, amount, currency) VALUES ('ws_bench', :amount, 'USD');\n\
             END;\n"
        ),
    )
    .unwrap();
    let output = Command::new(pg_bin("pgbench"))
        .args(["-n", "-M", "prepared", "-c", &clients.to_string(), "-j", &clients.min(2).to_string()])
        .args(["-D", &format!("response={response_json}")])
        .args(["-T", &seconds().as_secs().max(1).to_string(), "-f"])
        .arg(&script)
        .arg(url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "pgbench failed: {}", String::from_utf8_lossy(&output.stderr));
    let tps = text
        .lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("pgbench prints tps");
    let transactions = text
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("pgbench prints the transactions processed");
    (tps, transactions)
}

/// The seed's Python recipe (`benches/python_recipe.py`): Kernite in-process
/// and psycopg, `threads` threads. Returns (calls/s, calls, p99 ms), or
/// `None` when Kernite or psycopg is not installed.
fn python_recipe(url: &str, threads: usize) -> Option<(f64, u64, f64)> {
    let output = Command::new("python3")
        .arg(format!("{ROOT}/benches/python_recipe.py"))
        .args([url, &seconds().as_secs_f64().to_string(), &threads.to_string()])
        .arg(format!("{ROOT}/benches/requests/approved.json"))
        .output()
        .ok()?;
    if !output.status.success() {
        eprintln!("python recipe: {}", String::from_utf8_lossy(&output.stderr));
        return None;
    }
    let figures = json::parse(String::from_utf8_lossy(&output.stdout).trim()).ok()?;
    let figure = |key: &str| figures.as_object().and_then(|o| o.get(key)).and_then(json_value_to_f64);
    let calls = figure("calls")?;
    Some((calls / figure("seconds")?, calls as u64, figure("p99_ms")?))
}

/// Where the processes run: sharing both cores, or PostgreSQL (the
/// postmaster and every backend, which inherit it) on CPU 0 and everything
/// else (this process, hence the sidecar and pgbench it starts) on CPU 1,
/// as a database on cores of its own.
fn place(dir: &Path, pinned: bool) {
    let (database, rest) = if pinned { ("0", "1") } else { ("0-1", "0-1") };
    let pid_file = std::fs::read_to_string(dir.join("postmaster.pid")).unwrap();
    let postmaster = pid_file.lines().next().unwrap().trim().to_owned();
    let mut postgres = vec![postmaster.clone()];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let parent = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1));
        if parent == Some(postmaster.as_str()) {
            postgres.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    for pid in &postgres {
        let _ = Command::new("taskset").args(["-a", "-cp", database, pid]).stdout(Stdio::null()).status();
    }
    let me = std::process::id().to_string();
    let status = Command::new("taskset").args(["-a", "-cp", rest, &me]).stdout(Stdio::null()).status().unwrap();
    assert!(status.success(), "taskset failed");
}

fn main() {
    if let Ok(port) = std::env::var("GOVERNANCE_BENCH_FLOOR_PORT") {
        serve_floor(port.parse().unwrap());
        return;
    }
    let mut rows: Vec<String> = Vec::new();
    let mut row = |cells: &[String]| rows.push(format!("| {} |", cells.join(" | ")));
    row(&["measure".into(), "sidecar".into(), "reference".into(), "ratio".into(), "target".into()]);
    row(&["---".into(), "---".into(), "---".into(), "---".into(), "---".into()]);

    // Engine beside Kernite, each handed a parsed request and the JSON text.
    for name in ["approved", "denied"].into_iter().filter(|_| measures("engine")) {
        let reference = kernite(name);
        for (input, label, index) in [(Input::Parsed, "parsed request", 0), (Input::Text, "JSON text", 1)] {
            let (rate, p50_ns, p99_ns) = engine(name, input);
            let (kernite_rate, kernite_cell) = match reference {
                Some(figures) => {
                    let (rate, p50, p99) = figures[index];
                    (rate, format!("Kernite {rate:.0}/s, p50 {p50:.1} µs, p99 {p99:.1} µs"))
                }
                None => (f64::NAN, "Kernite not installed".into()),
            };
            row(&[
                format!("engine, {name}, from {label} (1 thread)"),
                format!("{rate:.0}/s, p50 {:.1} µs, p99 {:.1} µs", p50_ns as f64 / 1000.0, p99_ns as f64 / 1000.0),
                kernite_cell,
                format!("{:.1}×", rate / kernite_rate),
                "≥ 30×".into(),
            ]);
        }
    }

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let approved = Arc::new(request_text("approved"));

    let mut memory = Vec::new();
    if measures("evaluate") {
        // Evaluate beside the do-nothing server answering the same bytes, same client, 8 x 16,
        // in each answer form (the floor's answers are the sidecar's own, fetched first).
        let sidecar_port = free_port();
        let sidecar = Arc::new(spawn_sidecar(sidecar_port, &[]));
        std::thread::sleep(Duration::from_millis(300));
        let idle_rss = sidecar.rss_kib();
        let responses = std::env::temp_dir().join(format!("governance-sidecar-bench-floor-{}.bin", std::process::id()));
        let canned: Vec<u8> = runtime.block_on(async {
            use prost::Message as _;
            let channel = Channel::from_shared(format!("http://127.0.0.1:{sidecar_port}")).unwrap().connect().await;
            let mut client = GovernanceClient::new(channel.unwrap());
            let mut bytes = Vec::new();
            for form in FORMS {
                let answer = client.evaluate(evaluate_request(&approved, form)).await.unwrap().into_inner();
                answer.encode_length_delimited(&mut bytes).unwrap();
            }
            bytes
        });
        std::fs::write(&responses, canned).unwrap();
        let floor_port = free_port();
        let floor = spawn_floor(floor_port, &responses);
        let peak = Arc::new(AtomicU64::new(0));
        for form in FORMS {
            let floor_cpu = floor.cpu();
            let floor_load = runtime.block_on(load(floor_port, 8, 128, evaluate_call(approved.clone(), form), || {}));
            let floor_cpu_us = (floor.cpu() - floor_cpu).as_secs_f64() * 1e6 / floor_load.ok.max(1) as f64;
            let sampler = {
                let (sidecar, peak) = (sidecar.clone(), peak.clone());
                move || {
                    peak.fetch_max(sidecar.rss_kib(), Ordering::Relaxed);
                }
            };
            let sidecar_cpu = sidecar.cpu();
            let evaluate_load =
                runtime.block_on(load(sidecar_port, 8, 128, evaluate_call(approved.clone(), form), sampler));
            let evaluate_cpu_us = (sidecar.cpu() - sidecar_cpu).as_secs_f64() * 1e6 / evaluate_load.ok.max(1) as f64;
            assert_eq!(evaluate_load.failed + floor_load.failed, 0, "failed calls in the Evaluate loads");
            row(&[
                format!("Evaluate over gRPC, 8 conns × 16 streams, answer {}", form.as_str_name()),
                format!(
                    "{:.0}/s, p50 {:.0} µs, p99 {:.0} µs, p99.9 {:.0} µs; server CPU {evaluate_cpu_us:.0} µs/call",
                    evaluate_load.rate(),
                    evaluate_load.p(0.5),
                    evaluate_load.p(0.99),
                    evaluate_load.p(0.999)
                ),
                format!(
                    "do-nothing tonic server, the same answer {:.0}/s, p50 {:.0} µs, p99 {:.0} µs; server CPU \
                     {floor_cpu_us:.0} µs/call",
                    floor_load.rate(),
                    floor_load.p(0.5),
                    floor_load.p(0.99)
                ),
                format!("{:.2}×", evaluate_load.rate() / floor_load.rate()),
                "≥ 0.75×".into(),
            ]);
        }
        drop(floor);
        drop(sidecar);
        let _ = std::fs::remove_file(&responses);
        memory.push(format!(
            "idle {:.1} MiB; Evaluate load {:.1} MiB",
            idle_rss as f64 / 1024.0,
            peak.load(Ordering::Relaxed) as f64 / 1024.0
        ));
    }

    if measures("execute") {
        // ExecuteWithEvidence beside pgbench, same database.
        let (admin_url, dir) = start_postgres();
        psql(&admin_url, "CREATE DATABASE bench");
        let url = format!("{}/bench", admin_url.rsplit_once('/').unwrap().0);
        let status =
            Command::new(SIDECAR).args(["migrate", "--database-url", &url]).env("RUST_LOG", "warn").status().unwrap();
        assert!(status.success());
        psql(&url, &std::fs::read_to_string(format!("{ROOT}/deploy/examples/invoice/schema.sql")).unwrap());
        if let Ok(sql) = std::env::var("BENCH_SETUP_SQL") {
            psql(&url, &sql);
        }
        // The bundle path: the request's policy as the operator's bundle, the
        // request without it, written beside pgbench's script in the private
        // database's directory (which the next run removes).
        let bundle_file = dir.join("bundle.json");
        let without_policy = {
            let Value::Object(mut request) = json::parse(&approved).unwrap() else { panic!() };
            let context = request.shift_remove("policy_context").expect("the bench's request carries its policy");
            let policies = context.as_object().and_then(|c| c.get("selected_policies")).cloned().unwrap();
            let bundle = object([
                ("schema_version", Value::str("kernite.policy.bundle.v1")),
                ("policies", policies),
                (
                    "operation_map",
                    Value::Array(vec![object([
                        ("object_type", Value::str("invoice")),
                        ("operation", Value::str("create")),
                        ("policy_key", Value::str("invoice_create")),
                    ])]),
                ),
            ]);
            std::fs::write(&bundle_file, json::to_string(&bundle, json::Layout::Response)).unwrap();
            Arc::new(json::to_string(&Value::Object(request), json::Layout::Response))
        };
        let bundle_arg = bundle_file.display().to_string();

        let body = json::parse(&approved).unwrap();
        let Answer::Decided(decided) = execute(body, Some("bench-0")).unwrap() else { panic!() };
        let response_json = json::to_string(&decided.record.to_value(), json::Layout::Response);

        let mutations = std::env::var("BENCH_MUTATIONS")
            .unwrap_or_else(|_| format!("{ROOT}/deploy/examples/invoice/mutations.toml"));
        // Unpinned (all processes share both cores), then pinned (PostgreSQL
        // on CPU 0, the sidecar, the load generator and pgbench on CPU 1).
        for pinned in [false, true] {
            let placement = if pinned { "pinned" } else { "unpinned" };
            if !chosen("BENCH_PLACEMENTS", placement) {
                continue;
            }
            for (path, request) in [("bundle", &without_policy), ("request", &approved)] {
                if !chosen("BENCH_PATHS", path) {
                    continue;
                }
                place(&dir, pinned);
                let ewe_port = free_port();
                let mut flags = vec!["--database-url", &url, "--mutations", &mutations, "--pool-size", "32"];
                if path == "bundle" {
                    flags.extend(["--policy-bundle", &bundle_arg]);
                }
                let sidecar = Arc::new(spawn_sidecar(ewe_port, &flags));
                // The sidecar's own connections are forked backends: pin them too.
                place(&dir, pinned);
                for callers in [1usize, 8, 32].into_iter().filter(|n| chosen("BENCH_CALLERS", &n.to_string())) {
                    let peak = Arc::new(AtomicU64::new(0));
                    let sampler = {
                        let (sidecar, peak) = (sidecar.clone(), peak.clone());
                        move || {
                            peak.fetch_max(sidecar.rss_kib(), Ordering::Relaxed);
                        }
                    };
                    checkpoint(&url);
                    let before = (own_cpu(), sidecar.cpu(), postgres_cpu(&dir));
                    // Keys unique to this load: a key of an earlier load would replay.
                    let call = invoice_call(request.clone(), format!("bench-{path}-{placement}-{callers}"));
                    let measured = runtime.block_on(load(ewe_port, callers.min(8), callers, call, sampler));
                    let per_call = |spent: Duration| spent.as_secs_f64() * 1e6 / measured.ok.max(1) as f64;
                    let (client_us, cpu_us, postgres_us) = (
                        per_call(own_cpu() - before.0),
                        per_call(sidecar.cpu() - before.1),
                        per_call(postgres_cpu(&dir) - before.2),
                    );
                    assert_eq!(measured.failed, 0, "failed ExecuteWithEvidence calls");
                    if !pinned {
                        memory.push(format!(
                            "{callers} caller(s), {path} policy {:.1} MiB",
                            peak.load(Ordering::Relaxed) as f64 / 1024.0
                        ));
                    }
                    let mut references = Vec::new();
                    for json in [Json::Bound, Json::Constant] {
                        checkpoint(&url);
                        let before = (children_cpu(), postgres_cpu(&dir));
                        let (tps, transactions) = pgbench(&url, callers, &response_json, json, &dir);
                        // Let the postmaster reap pgbench's backends, whose CPU it then holds.
                        std::thread::sleep(Duration::from_millis(300));
                        let per_tx = |spent: Duration| spent.as_secs_f64() * 1e6 / transactions.max(1) as f64;
                        references.push((
                            tps,
                            per_tx(children_cpu() - before.0),
                            per_tx(postgres_cpu(&dir) - before.1),
                        ));
                    }
                    let [(bound, bound_client_us, bound_postgres_us), (constant, _, constant_postgres_us)] =
                        references[..]
                    else {
                        unreachable!()
                    };
                    // Issue 32's targets, which are the bundle path's.
                    let target = match (callers, path) {
                        (8, "bundle") => "≥ 1.3× pinned, ≥ 1.0× unpinned; PostgreSQL ≤ 0.6×",
                        (1, _) => "p99 no worse",
                        _ => "no worse; p99 no worse",
                    }
                    .to_owned();
                    row(&[
                        format!("ExecuteWithEvidence, {callers} caller(s), {placement}, {path} policy"),
                        format!(
                            "{:.0} tx/s, p50 {:.2} ms, p99 {:.2} ms; CPU µs/call: sidecar {cpu_us:.0}, PostgreSQL \
                         {postgres_us:.0}, load generator {client_us:.0}",
                            measured.rate(),
                            measured.p(0.5) / 1000.0,
                            measured.p(0.99) / 1000.0
                        ),
                        format!(
                            "pgbench, JSON bound: {bound:.0} tx/s, CPU µs/tx PostgreSQL {bound_postgres_us:.0}, pgbench \
                         {bound_client_us:.0}; JSON constant: {constant:.0} tx/s, PostgreSQL {constant_postgres_us:.0}"
                        ),
                        format!(
                            "{:.2}× (PostgreSQL CPU {:.2}× bound, {:.2}× constant)",
                            measured.rate() / bound,
                            postgres_us / bound_postgres_us,
                            postgres_us / constant_postgres_us
                        ),
                        target,
                    ]);
                    if callers == 8 && path == "bundle" {
                        checkpoint(&url);
                        let before = (children_cpu(), postgres_cpu(&dir));
                        if let Some((rate, calls, p99_ms)) = python_recipe(&url, 8) {
                            std::thread::sleep(Duration::from_millis(300));
                            let per_call = |spent: Duration| spent.as_secs_f64() * 1e6 / calls.max(1) as f64;
                            let (python_us, python_postgres_us) =
                                (per_call(children_cpu() - before.0), per_call(postgres_cpu(&dir) - before.1));
                            row(&[
                                format!("  beside: the Python recipe, 8 threads, {placement}"),
                                format!("sidecar {:.0} tx/s", measured.rate()),
                                format!(
                                    "Kernite in-process + psycopg: {rate:.0} tx/s, p99 {p99_ms:.2} ms; CPU µs/call \
                                 Python {python_us:.0}, PostgreSQL {python_postgres_us:.0}"
                                ),
                                format!("{:.2}×", measured.rate() / rate),
                                "≥ 2× pinned".into(),
                            ]);
                        }
                    }
                }
                drop(sidecar);
            }
        }
        place(&dir, false);
    }

    row(&["sidecar RSS".into(), memory.join("; "), "—".into(), "—".into(), "no worse".into()]);

    println!("\n{}", rows.join("\n"));
}
