//! The load generator the benches share: callers over HTTP/2 connections for
//! `BENCH_SECONDS`, with latencies, and the invoice call of ExecuteWithEvidence.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use governance_sidecar::proto::governance_client::GovernanceClient;
use governance_sidecar::proto::{AnswerForm, ExecuteWithEvidenceRequest, MutationCall, execute_with_evidence_request};
use hdrhistogram::Histogram;
use tonic::transport::Channel;

use super::ROOT;

pub fn seconds() -> Duration {
    Duration::from_secs_f64(std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(10.0))
}

pub fn request_text(name: &str) -> String {
    std::fs::read_to_string(format!("{ROOT}/benches/requests/{name}.json")).unwrap()
}

/// Latencies in microseconds, and how many calls succeeded in how long.
pub struct Measured {
    pub ok: u64,
    pub failed: u64,
    pub elapsed: Duration,
    pub latency_us: Histogram<u64>,
}

impl Measured {
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }
    pub fn p(&self, q: f64) -> f64 {
        self.latency_us.value_at_quantile(q) as f64
    }
}

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).unwrap()
}

/// Runs `callers` concurrent callers over `connections` HTTP/2 connections
/// for the configured time; `call` makes one call and says whether it was OK.
pub async fn load<F, Fut>(
    port: u16,
    connections: usize,
    callers: usize,
    call: F,
    sample: impl Fn() + Send + 'static,
) -> Measured
where
    F: Fn(GovernanceClient<Channel>, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    load_with(port, connections, callers, GovernanceClient::new, call, sample).await
}

/// [`load`] with any service's client, made from a connection by `client`.
pub async fn load_with<C, F, Fut>(
    port: u16,
    connections: usize,
    callers: usize,
    client: fn(Channel) -> C,
    call: F,
    sample: impl Fn() + Send + 'static,
) -> Measured
where
    C: Clone + Send + 'static,
    F: Fn(C, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    let mut channels = Vec::new();
    for _ in 0..connections {
        let channel = Channel::from_shared(format!("http://127.0.0.1:{port}")).unwrap().connect().await.unwrap();
        channels.push(channel);
    }
    let call = Arc::new(call);
    let stop = Arc::new(AtomicBool::new(false));
    let sequence = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for caller in 0..callers {
        let client = client(channels[caller % connections].clone());
        let (call, stop, sequence, failed) = (call.clone(), stop.clone(), sequence.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let mut latency_us = histogram();
            while !stop.load(Ordering::Relaxed) {
                let n = sequence.fetch_add(1, Ordering::Relaxed);
                let t0 = Instant::now();
                if call(client.clone(), n).await {
                    latency_us.record(t0.elapsed().as_micros().max(1) as u64).unwrap();
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
            latency_us
        }));
    }
    let sampler = tokio::spawn({
        let stop = stop.clone();
        async move {
            while !stop.load(Ordering::Relaxed) {
                sample();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    tokio::time::sleep(seconds()).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed();
    let mut latency_us = histogram();
    for task in tasks {
        latency_us.add(task.await.unwrap()).unwrap();
    }
    sampler.await.unwrap();
    Measured { ok: latency_us.len(), failed: failed.load(Ordering::Relaxed), elapsed, latency_us }
}

/// The answer form the benches' writes ask for: `BENCH_ANSWER_FORM` (`both`,
/// `typed`, `kernite_json`), else the default (both).
pub fn answer_form() -> i32 {
    let form = match std::env::var("BENCH_ANSWER_FORM").as_deref() {
        Ok("typed") => AnswerForm::Typed,
        Ok("kernite_json") => AnswerForm::KerniteJson,
        Ok("both") => AnswerForm::Both,
        _ => AnswerForm::Unspecified,
    };
    form.into()
}

/// An approved invoice write, keyed `<prefix>-<n>`.
pub fn invoice_call(
    text: Arc<String>,
    prefix: String,
) -> impl Fn(GovernanceClient<Channel>, u64) -> std::pin::Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync {
    move |mut client, n| {
        let request = ExecuteWithEvidenceRequest {
            body: Some(execute_with_evidence_request::Body::RequestJson(text.as_ref().clone())),
            idempotency_key: Some(format!("{prefix}-{n}")),
            mutation: Some(MutationCall { name: "create_invoice".into(), params: None }),
            answer_form: answer_form(),
        };
        Box::pin(async move {
            match client.execute_with_evidence(request).await {
                // A replay would measure a key already used, not a write.
                Ok(response) => {
                    let response = response.into_inner();
                    response.mutation_applied && !response.replayed
                }
                Err(status) => {
                    eprintln!("ExecuteWithEvidence failed: {status:?}");
                    false
                }
            }
        })
    }
}
