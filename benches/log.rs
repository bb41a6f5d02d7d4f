//! The verifiable log's figures (docs/performance.md, "Current figures"):
//!
//! - **sequencing**: `BENCH_LOG_ROWS` (default 1,000,000) realistic evidence
//!   rows (Kernite's ~1 KiB approved response, random idempotency keys, a
//!   quarter denied) are written with the log off; then a sidecar with the
//!   key sequences them all, and the rows per second are reported;
//! - **verify**: `governance-sidecar verify` over those rows, timed;
//! - **overhead**: ExecuteWithEvidence at 8 callers with the log off and on,
//!   alternating (off, on, off, on) for `BENCH_SECONDS` each, on a fresh
//!   database; medians and the ratio;
//! - **commit to checkpoint**: for every row of the log-on runs, the time from
//!   its `created_at` (its transaction's start, so slightly more than from its
//!   commit) to the commit of the first checkpoint that covers it; p50, p99, max.
//!
//! `cargo bench --bench log`; `BENCH_ONLY=sequencing` or `overhead` for one part.

use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use governance_sidecar::decision::{Answer, execute, json};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod harness;

use harness::load::*;
use harness::*;

fn measures(part: &str) -> bool {
    std::env::var("BENCH_ONLY").map_or(true, |only| only.split(',').any(|p| p.trim() == part))
}

/// A database of its own on the bench's PostgreSQL, migrated, with the invoice table.
fn database(admin_url: &str, name: &str) -> String {
    psql(admin_url, &format!("CREATE DATABASE {name}"));
    let url = format!("{}/{name}", admin_url.rsplit_once('/').unwrap().0);
    let status =
        Command::new(SIDECAR).args(["migrate", "--database-url", &url]).env("RUST_LOG", "warn").status().unwrap();
    assert!(status.success());
    psql(&url, &std::fs::read_to_string(format!("{ROOT}/deploy/examples/invoice/schema.sql")).unwrap());
    url
}

fn scalar(url: &str, sql: &str) -> String {
    let output = Command::new(pg_bin("psql")).args([url, "-qtAX", "-c", sql]).output().unwrap();
    assert!(output.status.success(), "{sql}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// A key pair in `dir`: (signer key file, verifier key).
fn key_pair(dir: &std::path::Path) -> (String, String) {
    let file = dir.join(format!("log-key-{}", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let output = Command::new(SIDECAR)
        .args(["log-key", "--origin", "bench.example/evidence", "--signing-key-file"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(output.status.success());
    (file.display().to_string(), String::from_utf8(output.stdout).unwrap().trim().to_owned())
}

fn latest_size(url: &str) -> u64 {
    scalar(url, "SELECT coalesce(max(tree_size), 0) FROM governance_log_checkpoints").parse().unwrap()
}

fn main() {
    let (admin_url, dir) = start_postgres();
    let (key_file, verifier_key) = key_pair(&dir);
    let body = json::parse(&request_text("approved")).unwrap();
    let Answer::Decided(decided) = execute(body, Some("bench-0")).unwrap() else { panic!("the request decides") };
    let response_json = json::to_string(&decided.record.to_value(), json::Layout::Response);
    let mut rows: Vec<String> = vec!["| measure | figure | target |".into(), "| --- | --- | --- |".into()];

    if measures("sequencing") {
        let count: u64 = std::env::var("BENCH_LOG_ROWS").ok().and_then(|n| n.parse().ok()).unwrap_or(1_000_000);
        let url = database(&admin_url, "sequencing");
        let started = Instant::now();
        psql(
            &url,
            &format!(
                "INSERT INTO governance_events (workspace_id, principal_id, object_type, operation, decision, \
                     reason_codes, ctx_id, trace_hash, idempotency_key, response_json, outcome, mutation_name, \
                     request_fingerprint) \
                 SELECT 'ws_' || (g % 50), 'usr_' || (g % 1000), 'invoice', 'create', \
                        CASE WHEN g % 4 = 0 THEN 'denied' ELSE 'approved' END, '[]', 'ctx_' || md5(g::text), \
                        md5('t' || g), md5(random()::text), \
                        jsonb_set($json${response_json}$json$::jsonb, '{{ctx_id}}', to_jsonb('ctx_' || g)), \
                        CASE WHEN g % 4 = 0 THEN 'not_applied' ELSE 'applied' END, 'create_invoice', md5('f' || g) \
                 FROM generate_series(1, {count}) g"
            ),
        );
        let filled = started.elapsed();
        let table = scalar(&url, "SELECT pg_size_pretty(pg_total_relation_size('governance_events'))");
        let postgres_before = postgres_cpu(&dir);
        let port = free_port();
        let started = Instant::now();
        let sidecar = spawn_sidecar(port, &["--database-url", &url, "--log-signing-key-file", &key_file]);
        let sidecar_before = sidecar.cpu();
        while latest_size(&url) < count {
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        let sequenced = started.elapsed();
        let (sidecar_cpu, postgres_cpu_spent) = (sidecar.cpu() - sidecar_before, postgres_cpu(&dir) - postgres_before);
        drop(sidecar);
        rows.push(format!(
            "| sequencing {count} rows ({table} of evidence, written in {:.0} s) | {:.0} rows/s ({:.1} s; CPU: \
             sidecar {:.0} µs/row, PostgreSQL {:.0} µs/row) | ≥ 5,000 rows/s |",
            filled.as_secs_f64(),
            count as f64 / sequenced.as_secs_f64(),
            sequenced.as_secs_f64(),
            sidecar_cpu.as_secs_f64() * 1e6 / count as f64,
            postgres_cpu_spent.as_secs_f64() * 1e6 / count as f64,
        ));

        let started = Instant::now();
        let output = Command::new(SIDECAR)
            .args(["verify", "--database-url", &url, "--public-key", &verifier_key])
            .output()
            .unwrap();
        assert!(output.status.success(), "verify: {}", String::from_utf8_lossy(&output.stdout));
        rows.push(format!(
            "| `verify` over {count} rows | {:.1} s | ≤ 60 s for 1,000,000 |",
            started.elapsed().as_secs_f64()
        ));
    }

    if measures("overhead") {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let approved = Arc::new(request_text("approved"));
        let url = database(&admin_url, "overhead");
        if std::env::var_os("BENCH_LOG_SLOW_MS").is_some() {
            let ms = std::env::var("BENCH_LOG_SLOW_MS").unwrap();
            psql(&admin_url, &format!("ALTER SYSTEM SET log_min_duration_statement = {ms}"));
            psql(&admin_url, "SELECT pg_reload_conf()");
        }
        let mutations = format!("{ROOT}/deploy/examples/invoice/mutations.toml");
        let mut rates = [Vec::new(), Vec::new()];
        let mut p99s = [Vec::new(), Vec::new()];
        let mut cpu: [Vec<(f64, f64)>; 2] = [Vec::new(), Vec::new()];
        // Off, on, on, off, twice: the table grows run by run, and this order
        // gives both settings the same mean table size.
        let order = [false, true, true, false, false, true, true, false];
        for (round, log_on) in order.into_iter().enumerate() {
            let port = free_port();
            let mut flags = vec!["--database-url", &url, "--mutations", &mutations, "--pool-size", "32"];
            if log_on {
                flags.extend(["--log-signing-key-file", &key_file]);
            }
            let sidecar = spawn_sidecar(port, &flags);
            let call = invoice_call(approved.clone(), format!("round-{round}"));
            let before = (sidecar.cpu(), postgres_cpu(&dir));
            let measured = runtime.block_on(load(port, 8, 8, call, || {}));
            assert_eq!(measured.failed, 0);
            let per_call = |spent: std::time::Duration| spent.as_secs_f64() * 1e6 / measured.ok as f64;
            cpu[usize::from(log_on)]
                .push((per_call(sidecar.cpu() - before.0), per_call(postgres_cpu(&dir) - before.1)));
            rates[usize::from(log_on)].push(measured.rate());
            p99s[usize::from(log_on)].push(measured.p(0.99) / 1000.0);
            if log_on {
                let written: u64 = scalar(&url, "SELECT count(*) FROM governance_events").parse().unwrap();
                while latest_size(&url) < written {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            }
            drop(sidecar);
        }
        // The median of the runs (of four, the mean of the middle two): one
        // run disturbed by a neighbour on this shared machine moves it least.
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            let n = v.len();
            (v[(n - 1) / 2] + v[n / 2]) / 2.0
        };
        let (off, on) = (median(&mut rates[0]), median(&mut rates[1]));
        let cpu_of = |runs: &[(f64, f64)]| {
            let n = runs.len() as f64;
            (runs.iter().map(|c| c.0).sum::<f64>() / n, runs.iter().map(|c| c.1).sum::<f64>() / n)
        };
        let ((sidecar_off, postgres_off), (sidecar_on, postgres_on)) = (cpu_of(&cpu[0]), cpu_of(&cpu[1]));
        let runs = format!(
            "off {:.0?}, on {:.0?}; CPU µs/call off/on: sidecar {sidecar_off:.0}/{sidecar_on:.0}, \
             PostgreSQL {postgres_off:.0}/{postgres_on:.0}",
            rates[0], rates[1]
        );
        rows.push(format!(
            "| ExecuteWithEvidence, 8 callers, log off / on (off, on, on, off, twice; {runs}) | {off:.0} / {on:.0} calls/s \
             = {:.2}× (p99 {:.1} / {:.1} ms) | ≥ 0.95× |",
            on / off,
            median(&mut p99s[0]),
            median(&mut p99s[1])
        ));
        let latency = scalar(
            &url,
            "SELECT concat_ws(' / ', round(percentile_cont(0.5) WITHIN GROUP (ORDER BY s)::numeric, 2), \
                    round(percentile_cont(0.99) WITHIN GROUP (ORDER BY s)::numeric, 2), round(max(s)::numeric, 2)) \
             FROM (SELECT extract(epoch FROM c.created_at - e.created_at) AS s \
                   FROM governance_log_batches b CROSS JOIN unnest(b.evidence_ids) AS leaf(evidence_id) \
                   JOIN governance_events e ON e.id = leaf.evidence_id \
                   JOIN governance_log_checkpoints c ON c.tree_size = b.first_index + cardinality(b.evidence_ids) \
                   WHERE e.idempotency_key ~ '^round-[1256]-') t",
        );
        rows.push(format!(
            "| commit to signed checkpoint, default 1 s interval, under that load (p50 / p99 / max) | {latency} s | \
             p99 ≤ 2 s |"
        ));
    }
    if std::env::var_os("BENCH_LOG_SLOW_MS").is_some() {
        let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
        for line in log.lines().filter(|l| l.contains("duration:")) {
            println!("{}", &line[..line.len().min(300)]);
        }
    }
    println!("\n{}", rows.join("\n"));
}
