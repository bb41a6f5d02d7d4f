//! The soak: millions of calls at a steady rate, and whether the sidecar
//! stays flat. `cargo bench --bench soak` (needs the PostgreSQL server
//! package; takes about 14 minutes at the defaults).
//!
//! Evaluate and ExecuteWithEvidence run together, each at a fixed rate, until
//! `SOAK_EVALUATE` (default 5,000,000) and `SOAK_EXECUTE` (default 1,000,000)
//! calls are answered; `SOAK_EVALUATE_RATE` (6,250/s) and
//! `SOAK_EXECUTE_RATE` (1,250/s) set the rates. Every 10 s it samples the
//! sidecar's resident memory, open file descriptors, pool size, and the p99
//! of each call in that window, and prints one table row. At the end it
//! compares resident memory with the first minute's (the bound: +10%) and
//! the p99 of the last minute with the first's.

mod harness;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use governance_sidecar::proto::governance_client::GovernanceClient;
use governance_sidecar::proto::{
    EvaluateRequest, ExecuteWithEvidenceRequest, MutationCall, evaluate_request, execute_with_evidence_request,
};
use harness::*;
use hdrhistogram::Histogram;
use tokio::sync::Mutex;
use tonic::transport::Channel;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SAMPLE_EVERY: Duration = Duration::from_secs(10);

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|value| value.replace('_', "").parse().ok()).unwrap_or(default)
}

/// One kind of call, made at a steady rate by several callers.
struct Stream {
    done: AtomicU64,
    failed: AtomicU64,
    /// Latencies of the current sampling window, in microseconds.
    window: Mutex<Histogram<u64>>,
}

impl Stream {
    fn new() -> Arc<Stream> {
        Arc::new(Stream {
            done: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            window: Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3).unwrap()),
        })
    }

    /// The window's p99 in milliseconds, and a new window.
    async fn take_p99_ms(&self) -> f64 {
        let mut window = self.window.lock().await;
        let p99 = window.value_at_quantile(0.99) as f64 / 1000.0;
        window.reset();
        p99
    }
}

/// `callers` callers sharing `rate` calls per second until `total` are made.
fn drive<F, Fut>(
    channel: &Channel,
    stream: &Arc<Stream>,
    callers: u64,
    rate: u64,
    total: u64,
    call: F,
) -> Vec<tokio::task::JoinHandle<()>>
where
    F: Fn(GovernanceClient<Channel>, u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = bool> + Send,
{
    let next = Arc::new(AtomicU64::new(0));
    (0..callers)
        .map(|_| {
            let (client, stream, next, call) =
                (GovernanceClient::new(channel.clone()), Arc::clone(stream), Arc::clone(&next), call.clone());
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(Duration::from_secs_f64(callers as f64 / rate as f64));
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticks.tick().await;
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= total {
                        return;
                    }
                    let started = Instant::now();
                    if call(client.clone(), n).await {
                        let micros = started.elapsed().as_micros().max(1) as u64;
                        stream.window.lock().await.record(micros).unwrap();
                        stream.done.fetch_add(1, Ordering::Relaxed);
                    } else {
                        stream.failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect()
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// `governance_db_pool_connections` from the sidecar's `/metrics`.
async fn pool_connections(port: u16) -> Option<u64> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: sidecar\r\nConnection: close\r\n\r\n").await.ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await.ok()?;
    text.lines().find_map(|line| line.strip_prefix("governance_db_pool_connections ")?.trim().parse().ok())
}

fn main() {
    let (evaluate_total, execute_total) = (setting("SOAK_EVALUATE", 5_000_000), setting("SOAK_EXECUTE", 1_000_000));
    let (evaluate_rate, execute_rate) = (setting("SOAK_EVALUATE_RATE", 6_250), setting("SOAK_EXECUTE_RATE", 1_250));

    let (admin_url, postgres_dir) = start_postgres();
    psql(&admin_url, "CREATE DATABASE soak");
    let url = format!("{}/soak", admin_url.rsplit_once('/').unwrap().0);
    let migrated = std::process::Command::new(SIDECAR).args(["migrate", "--database-url", &url]).status().unwrap();
    assert!(migrated.success());
    psql(&url, &std::fs::read_to_string(format!("{ROOT}/deploy/examples/invoice/schema.sql")).unwrap());
    let mutations = format!("{ROOT}/deploy/examples/invoice/mutations.toml");
    let port = free_port();
    let sidecar = spawn_sidecar(port, &["--database-url", &url, "--mutations", &mutations, "--pool-size", "16"]);
    let pid = sidecar.child.id();

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async move {
        let channel = Channel::from_shared(format!("http://127.0.0.1:{port}")).unwrap().connect().await.unwrap();
        let text = Arc::new(std::fs::read_to_string(format!("{ROOT}/benches/requests/approved.json")).unwrap());
        let (evaluations, executions) = (Stream::new(), Stream::new());
        let evaluate = {
            let text = Arc::clone(&text);
            move |mut client: GovernanceClient<Channel>, _| {
                let request = EvaluateRequest {
                    body: Some(evaluate_request::Body::RequestJson(text.as_ref().clone())),
                    idempotency_key: Some("soak".into()), answer_form: 0,
                };
                async move { client.evaluate(request).await.is_ok() }
            }
        };
        let execute = move |mut client: GovernanceClient<Channel>, n: u64| {
            let request = ExecuteWithEvidenceRequest {
                body: Some(execute_with_evidence_request::Body::RequestJson(text.as_ref().clone())),
                idempotency_key: Some(format!("soak-{n}")),
                mutation: Some(MutationCall { name: "create_invoice".into(), params: None }), answer_form: 0,
            };
            async move { client.execute_with_evidence(request).await.is_ok_and(|answer| answer.get_ref().mutation_applied) }
        };
        let mut callers = drive(&channel, &evaluations, 32, evaluate_rate, evaluate_total, evaluate);
        callers.extend(drive(&channel, &executions, 16, execute_rate, execute_total, execute));
        let running = Arc::new(AtomicBool::new(true));
        let finished = {
            let running = Arc::clone(&running);
            tokio::spawn(async move {
                for caller in callers {
                    caller.await.unwrap();
                }
                running.store(false, Ordering::Relaxed);
            })
        };

        println!(
            "| time | Evaluate calls | ExecuteWithEvidence calls | RSS MiB | open fds | pool | Evaluate p99 ms | \
             ExecuteWithEvidence p99 ms | sidecar CPU | PostgreSQL CPU |"
        );
        println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        let started = Instant::now();
        // CPU seconds per second in each window: what the sidecar and the
        // database (which share this machine's cores) each took.
        let mut cpu_before = (cpu_of(pid, false), postgres_cpu(&postgres_dir));
        let mut samples: Vec<(Duration, f64, f64, f64)> = Vec::new();
        while running.load(Ordering::Relaxed) {
            tokio::time::sleep(SAMPLE_EVERY).await;
            let (rss_mib, fds) = (rss_kib(pid) as f64 / 1024.0, open_fds(pid));
            let pool = pool_connections(port).await.map_or_else(|| "?".to_owned(), |n| n.to_string());
            let (evaluate_p99, execute_p99) = (evaluations.take_p99_ms().await, executions.take_p99_ms().await);
            let at = started.elapsed();
            let cpu_now = (cpu_of(pid, false), postgres_cpu(&postgres_dir));
            let share = |now: Duration, before: Duration| (now - before).as_secs_f64() / SAMPLE_EVERY.as_secs_f64();
            let (sidecar_cpu, postgres_cpu_share) = (share(cpu_now.0, cpu_before.0), share(cpu_now.1, cpu_before.1));
            cpu_before = cpu_now;
            println!(
                "| {:.0} s | {} | {} | {rss_mib:.1} | {fds} | {pool} | {evaluate_p99:.2} | {execute_p99:.2} | \
                 {sidecar_cpu:.2} | {postgres_cpu_share:.2} |",
                at.as_secs_f64(),
                evaluations.done.load(Ordering::Relaxed),
                executions.done.load(Ordering::Relaxed),
            );
            samples.push((at, rss_mib, evaluate_p99, execute_p99));
        }
        finished.await.unwrap();

        let first_minute_rss =
            samples.iter().filter(|s| s.0 <= Duration::from_secs(60)).map(|s| s.1).fold(0.0, f64::max);
        let peak_rss = samples.iter().map(|s| s.1).fold(0.0, f64::max);
        let median = |values: Vec<f64>| {
            let mut values = values;
            values.sort_by(f64::total_cmp);
            values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
        };
        let (first, last) = (&samples[..samples.len().min(6)], &samples[samples.len().saturating_sub(6)..]);
        println!(
            "\nanswered: Evaluate {} (failed {}), ExecuteWithEvidence {} (failed {}) in {:.0} s",
            evaluations.done.load(Ordering::Relaxed),
            evaluations.failed.load(Ordering::Relaxed),
            executions.done.load(Ordering::Relaxed),
            executions.failed.load(Ordering::Relaxed),
            started.elapsed().as_secs_f64()
        );
        println!(
            "RSS: first minute {first_minute_rss:.1} MiB, peak {peak_rss:.1} MiB ({:+.1}%; bound +10%)",
            (peak_rss / first_minute_rss - 1.0) * 100.0
        );
        println!(
            "p99, median of the first and last minute's windows: Evaluate {:.2} → {:.2} ms, \
             ExecuteWithEvidence {:.2} → {:.2} ms",
            median(first.iter().map(|s| s.2).collect()),
            median(last.iter().map(|s| s.2).collect()),
            median(first.iter().map(|s| s.3).collect()),
            median(last.iter().map(|s| s.3).collect()),
        );
    });
    drop(sidecar);
    // What a million evidence rows came to, for the p99 columns above.
    psql(
        &url,
        "SELECT pg_size_pretty(pg_total_relation_size('governance_events')) AS evidence, \
         pg_size_pretty(pg_total_relation_size('governance_mutation_results')) AS results, \
         pg_size_pretty(pg_total_relation_size('invoices')) AS invoices",
    );
}
