//! Replay's figures (docs/performance.md, "Replay"):
//!
//! - **throughput**: `BENCH_REPLAY_ROWS` (default 1,000,000) evidence rows
//!   decided by a bundle: 2,000 written through ExecuteWithEvidence by a
//!   sidecar serving the bench's ~1 KiB invoice request under a bundle
//!   (amounts spread so that about a third are denied), then copied by SQL to
//!   the row count. `governance-sidecar replay` over them under a candidate
//!   that lowers the limit (a fifth of the rows flip) and under the bundle
//!   that decided them (every row reproduced), timed, with the CPU the
//!   command and PostgreSQL took;
//! - **the ceiling**: the engine alone on the same stored request, in this
//!   process on one thread: deciding a parsed request, and judging a row as
//!   replay does (reading its stored JSON, deciding, comparing);
//! - **beside writes**: ExecuteWithEvidence at 8 callers on the same
//!   database, without and with a replay running at its default pace
//!   (`BENCH_REPLAY_PACE` for another; replays restarted for the whole run;
//!   `BENCH_BESIDE=burner`, the control: a busy loop in the idle scheduling
//!   class instead), alternating (without, with, with, without, twice) for
//!   `BENCH_SECONDS` each; medians and the ratio.
//!
//! `cargo bench --bench replay`; `BENCH_ONLY=throughput`, `ceiling` or `beside` for one part.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use governance_sidecar::decision::json::{self, Dialect, Layout};
use governance_sidecar::decision::{Map, NormalizedRequest, Value};
use governance_sidecar::policies::PolicyBundle;
use governance_sidecar::proto::{ExecuteWithEvidenceRequest, MutationCall, execute_with_evidence_request};
use governance_sidecar::replay::{Judge, RecordedRow};
use governance_sidecar::vocabulary::{Mode, RecordedDecision};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod harness;

use harness::load::*;
use harness::*;

fn measures(part: &str) -> bool {
    std::env::var("BENCH_ONLY").map_or(true, |only| only.split(',').any(|p| p.trim() == part))
}

fn scalar(url: &str, sql: &str) -> String {
    let output = Command::new(pg_bin("psql")).args([url, "-qtAX", "-c", sql]).output().unwrap();
    assert!(output.status.success(), "{sql}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// The bench's request (`benches/requests/approved.json`) without its policies.
fn bare_request() -> Map {
    let Value::Object(mut request) = json::parse(&request_text("approved")).unwrap() else { panic!("an object") };
    request.shift_remove("policy_context");
    request
}

/// The bench request's policies as a bundle, with the amount limit at `max`.
fn bundle(max: u32) -> String {
    let Value::Object(request) = json::parse(&request_text("approved")).unwrap() else { panic!("an object") };
    let policies = request["policy_context"].as_object().unwrap()["selected_policies"].clone();
    let policies = json::to_string(&policies, Layout::Response).replace(r#""max": 1000"#, &format!(r#""max": {max}"#));
    format!(
        r#"{{"schema_version": "kernite.policy.bundle.v1", "policies": {policies},
            "operation_map": [{{"object_type": "invoice", "operation": "create", "policy_key": "invoice_create"}}]}}"#
    )
}

/// The body of the `n`th write: the bench request with an amount from 1 to 1,500.
fn body(request: &Map, n: u64) -> String {
    let mut request = request.clone();
    let Some(Value::Object(payload)) = request.get_mut("payload") else { panic!("a payload") };
    payload.insert("amount".into(), Value::Int((n * 7919 % 1500 + 1) as i64));
    json::to_string(&Value::Object(request), Layout::Response)
}

/// `replay` at `rows_per_second` (`0`: unlimited).
fn replay_command(url: &str, candidate: &std::path::Path, rows_per_second: &str) -> Command {
    let mut command = Command::new(SIDECAR);
    command.args(["replay", "--database-url", url, "--max-rows-per-second", rows_per_second, "--policy-bundle"]);
    command.arg(candidate).arg("--jsonl").arg("/dev/null");
    command.stdout(Stdio::null()).stderr(Stdio::null());
    command
}

/// The median (of an even count, the mean of the middle two).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    (values[(n - 1) / 2] + values[n / 2]) / 2.0
}

fn main() {
    let (admin_url, dir) = start_postgres();
    psql(&admin_url, "CREATE DATABASE replay");
    let url = format!("{}/replay", admin_url.rsplit_once('/').unwrap().0);
    let status =
        Command::new(SIDECAR).args(["migrate", "--database-url", &url]).env("RUST_LOG", "warn").status().unwrap();
    assert!(status.success());
    psql(&url, &std::fs::read_to_string(format!("{ROOT}/deploy/examples/invoice/schema.sql")).unwrap());
    let files = dir.join("replay-bench");
    std::fs::create_dir_all(&files).unwrap();
    let (recorded, candidate) = (files.join("bundle.json"), files.join("candidate.json"));
    std::fs::write(&recorded, bundle(1000)).unwrap();
    std::fs::write(&candidate, bundle(700)).unwrap();
    let mutations = format!("{ROOT}/deploy/examples/invoice/mutations.toml");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let request = Arc::new(bare_request());
    let mut rows: Vec<String> = vec!["| measure | figure |".into(), "| --- | --- |".into()];

    // 2,000 rows written by the sidecar, decided by the bundle.
    let port = free_port();
    let recorded_arg = recorded.display().to_string();
    let sidecar =
        spawn_sidecar(port, &["--database-url", &url, "--mutations", &mutations, "--policy-bundle", &recorded_arg]);
    runtime.block_on(async {
        let channel = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}")).unwrap();
        let mut client =
            governance_sidecar::proto::governance_client::GovernanceClient::new(channel.connect().await.unwrap());
        for n in 0..2_000 {
            let call = ExecuteWithEvidenceRequest {
                body: Some(execute_with_evidence_request::Body::RequestJson(body(&request, n))),
                idempotency_key: Some(format!("seed-{n}")),
                mutation: Some(MutationCall { name: "create_invoice".into(), params: None }),
                answer_form: 0,
            };
            client.execute_with_evidence(call).await.unwrap();
        }
    });
    drop(sidecar);
    let count: u64 = std::env::var("BENCH_REPLAY_ROWS").ok().and_then(|n| n.parse().ok()).unwrap_or(1_000_000);
    let columns = "workspace_id, principal_id, object_type, operation, decision, reason_codes, ctx_id, trace_hash, \
                   response_json, outcome, mutation_name, mode, policy_bundle_sha256, caller, request_json, \
                   request_redacted_paths, request_fingerprint, redacted_paths, policy_key, policy_version";
    let copies = count.div_ceil(2_000) - 1;
    psql(
        &url,
        &format!(
            "INSERT INTO governance_events ({columns}) SELECT {columns} FROM governance_events, \
             generate_series(1, {copies}) ORDER BY generate_series, id"
        ),
    );
    psql(&url, "VACUUM ANALYZE governance_events");
    let total: u64 = scalar(&url, "SELECT count(*) FROM governance_events").parse().unwrap();
    let denied = scalar(
        &url,
        "SELECT round(100.0 * count(*) FILTER (WHERE decision = 'denied') / count(*)) FROM governance_events",
    );
    let size = scalar(&url, "SELECT pg_size_pretty(pg_total_relation_size('governance_events'))");
    rows.push(format!("| evidence replayed | {total} rows ({size}, {denied}% denied) |"));

    if measures("throughput") {
        for (what, bundle) in
            [("a candidate (limit 1000 → 700)", &candidate), ("the bundle that decided them", &recorded)]
        {
            let mut rates = Vec::new();
            let mut cpu = Vec::new();
            for _ in 0..3 {
                let postgres_before = postgres_cpu(&dir);
                let children_before = children_cpu();
                let started = Instant::now();
                let status = replay_command(&url, bundle, "0").status().unwrap();
                let took = started.elapsed();
                assert!(status.success());
                let per_row = |spent: Duration| spent.as_secs_f64() * 1e6 / total as f64;
                cpu.push((per_row(children_cpu() - children_before), per_row(postgres_cpu(&dir) - postgres_before)));
                rates.push(total as f64 / took.as_secs_f64());
            }
            let (replay_cpu, postgres) =
                (cpu.iter().map(|c| c.0).sum::<f64>() / 3.0, cpu.iter().map(|c| c.1).sum::<f64>() / 3.0);
            rows.push(format!(
                "| `replay` under {what}, three runs | {:.0} rows/s (median; runs {:.0?}; CPU per row: replay {replay_cpu:.1} µs, PostgreSQL {postgres:.1} µs) |",
                median(&mut rates.clone()),
                rates
            ));
        }
    }

    if measures("ceiling") {
        // One stored row as replay reads it, judged again and again on this thread.
        let stored = scalar(&url, "SELECT request_json FROM governance_events WHERE decision = 'approved' LIMIT 1");
        let row = RecordedRow {
            id: 1,
            created_at_micros: 0,
            workspace_id: "ws_bench".into(),
            object_type: "invoice".into(),
            operation: "create".into(),
            decision: RecordedDecision::Approved,
            mode: Mode::Enforce,
            reason_codes: Vec::new(),
            trace_hash: String::new(),
            policy_bundle_sha256: Some("sha256:recorded".into()),
            request_json: Some(stored.clone()),
            request_redacted_paths: Vec::new(),
        };
        let candidate_bundle = Arc::new(PolicyBundle::parse(&std::fs::read(&candidate).unwrap()).unwrap());
        let parsed = NormalizedRequest::from_stored(json::parse_as(&stored, Dialect::Python).unwrap()).unwrap();
        let context = candidate_bundle.resolve("invoice", "create").context.clone();
        let iterations = 300_000;
        let started = Instant::now();
        for _ in 0..iterations {
            std::hint::black_box(
                governance_sidecar::decision::evaluate_under(std::hint::black_box(&parsed), &context).unwrap(),
            );
        }
        let engine = iterations as f64 / started.elapsed().as_secs_f64();
        let mut judge = Judge::new(candidate_bundle);
        let started = Instant::now();
        for _ in 0..iterations {
            std::hint::black_box(judge.judge(std::hint::black_box(&row)));
        }
        let judged = iterations as f64 / started.elapsed().as_secs_f64();
        rows.push(format!("| the engine alone, one thread: deciding the parsed stored request | {engine:.0} rows/s |"));
        rows.push(format!(
            "| a row judged as replay judges it (read its JSON, decide, compare), one thread | {judged:.0} rows/s |"
        ));
    }

    if measures("beside") {
        let approved = Arc::new(json::to_string(&Value::Object(bare_request()), Layout::Response));
        let mut rates = [Vec::new(), Vec::new()];
        let mut p99s = [Vec::new(), Vec::new()];
        let mut whole_replays = 0_u64;
        // The pace replay runs at beside the writes: its default unless BENCH_REPLAY_PACE says.
        let pace = std::env::var("BENCH_REPLAY_PACE")
            .unwrap_or_else(|_| governance_sidecar::defaults::DEFAULT_REPLAY_ROWS_PER_SECOND.to_string());
        let order = [false, true, true, false, false, true, true, false];
        for (round, with_replay) in order.into_iter().enumerate() {
            let port = free_port();
            let sidecar = spawn_sidecar(
                port,
                &[
                    "--database-url",
                    &url,
                    "--mutations",
                    &mutations,
                    "--policy-bundle",
                    &recorded_arg,
                    "--pool-size",
                    "32",
                ],
            );
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let replays = with_replay.then(|| {
                let (stop, url, candidate, pace) = (Arc::clone(&stop), url.clone(), candidate.clone(), pace.clone());
                std::thread::spawn(move || {
                    let mut runs = 0_u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let mut child = match std::env::var("BENCH_BESIDE").as_deref() {
                            // The control: one busy loop in the idle scheduling class, as replay's threads are.
                            Ok("burner") => Command::new("chrt")
                                .args(["--idle", "0", "bash", "-c", "while :; do :; done"])
                                .spawn()
                                .unwrap(),
                            _ => replay_command(&url, &candidate, &pace).spawn().unwrap(),
                        };
                        loop {
                            if child.try_wait().unwrap().is_some() {
                                runs += 1;
                                break;
                            }
                            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                                let _ = child.kill();
                                let _ = child.wait();
                                break;
                            }
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    }
                    runs
                })
            });
            // Let the replay's snapshot open and its first pages flow.
            std::thread::sleep(Duration::from_millis(if with_replay { 500 } else { 0 }));
            let call = invoice_call(approved.clone(), format!("beside-{round}"));
            let measured = runtime.block_on(load(port, 8, 8, call, || {}));
            assert_eq!(measured.failed, 0);
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            if let Some(replays) = replays {
                whole_replays += replays.join().unwrap();
            }
            rates[usize::from(with_replay)].push(measured.rate());
            p99s[usize::from(with_replay)].push(measured.p(0.99) / 1000.0);
            drop(sidecar);
        }
        let runs = format!("without {:.0?}, with {:.0?}", rates[0], rates[1]);
        let (without, with) = (median(&mut rates[0]), median(&mut rates[1]));
        rows.push(format!(
            "| ExecuteWithEvidence, 8 callers, without / with a replay running at {pace} rows/s ({runs}; {whole_replays} whole replays finished meanwhile) | \
             {without:.0} / {with:.0} calls/s = {:.3}× (p99 {:.1} / {:.1} ms) |",
            with / without,
            median(&mut p99s[0]),
            median(&mut p99s[1])
        ));
    }
    println!("\n{}", rows.join("\n"));
}
