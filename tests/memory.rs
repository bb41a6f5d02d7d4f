//! Memory stays flat under hostile input: the `dev` binary, as a process of
//! its own, is sent the same table of hostile calls twenty times, one after
//! another, over gRPC and HTTP. Its resident memory after the last passes is
//! within 10% of what it was after the first ones, and within 25% of the idle
//! sidecar's. (Medians of five passes: a single pass ends anywhere within
//! about 4 MiB, whatever the allocator holds at that moment.)
//!
//! Measured on 2026-12-06 (debug build, 38–39 MiB resident before the first
//! pass), resident memory after a pass was:
//! - with mimalloc 3's defaults, 80–122 MiB; with mimalloc 2's, 46–66 MiB;
//! - with mimalloc 2 giving freed memory back at once (`main.rs`), 38–46 MiB,
//!   and 40–59 MiB with each pass's calls sent all at once.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::dev::DevSidecar;
use common::evidence::call;
use governance_sidecar::proto::governance_client::GovernanceClient;
use governance_sidecar::proto::{EvaluateRequest, evaluate_request::Body};
use tonic::transport::Channel;

const PASSES: usize = 20;

/// The sidecar's resident memory, in KiB.
fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Resident memory once the pass is over: the least of three samples taken
/// over 200 ms, half a second after the last answer.
async fn settled_resident_kib(pid: u32) -> u64 {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut least = u64::MAX;
    for _ in 0..3 {
        least = least.min(resident_kib(pid));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    least
}

fn invoice(payload: &str) -> String {
    format!(
        r#"{{"workspace_id": "ws_mem", "principal": {{"type": "user", "id": "usr_42"}}, "object_type": "invoice", "operation": "create", "payload": {payload}}}"#
    )
}

/// The hostile requests of one pass, as JSON bodies.
fn hostile_bodies() -> Vec<String> {
    let big_array = format!("[{}0]", "0,".repeat(300_000));
    let mut bodies = vec![
        "{\"workspace_id\": ".to_owned(),
        "[".repeat(100_000),
        invoice(&format!(r#"{{"amount": 1, "currency": "USD", "items": {big_array}}}"#)),
        invoice(r#"{"x": "\ud800"}"#),
        invoice(r#"{"x": NaN}"#),
        invoice(r#"{"x": 1e400}"#),
        invoice(r#"{"x": 1, "x": 2}"#),
        invoice(&format!(r#"{{"amount": 1, "currency": "USD", "note": "{}"}}"#, "a".repeat(3 << 20))),
        invoice(&format!(r#"{{"note": "{}"}}"#, "a".repeat(5 << 20))),
        invoice(r#"{"amount": 1, "currency": "U\u0000SD"}"#),
        invoice(r#"{"amount": 1, "currency": "USD"}"#).replace("ws_mem", &"w".repeat(2000)),
        invoice(r#"{"amount": 1, "currency": "USD"}"#).replace("usr_42", "usr\\u000042"),
        "[1, 2]".to_owned(),
        format!("{{{}}}", (0..20_000).map(|n| format!("\"k{n}\": {n}")).collect::<Vec<_>>().join(",")),
    ];
    // Many small refusals too.
    for n in 0..40 {
        bodies.push(invoice(&format!(r#"{{"amount": {n}, "currency": 7}}"#)).replace("\"operation\"", "\"op\""));
    }
    bodies
}

async fn grpc_pass(client: &mut GovernanceClient<Channel>, bodies: &[String], pass: usize) {
    for (n, body) in bodies.iter().enumerate() {
        let request =
            EvaluateRequest { body: Some(Body::RequestJson(body.clone())), idempotency_key: None, answer_form: 0 };
        let evaluated = client.evaluate(request).await.map(|_| ());
        let key = format!("mem-{pass}-{n}");
        let executed = client.execute_with_evidence(call(body.clone(), Some(&key), "create_invoice")).await;
        for status in [evaluated.err(), executed.err()].into_iter().flatten() {
            assert_ne!(status.code(), tonic::Code::Internal, "{status:?}");
            assert_ne!(status.code(), tonic::Code::Unavailable, "{status:?}");
        }
    }
}

async fn http_pass(address: SocketAddr, bodies: &[String]) {
    for body in bodies.iter().take(14) {
        for (path, content_type) in [
            ("/v1/execute", "application/json"),
            ("/v1/execute", "text/plain"),
            ("/v1/execute-with-evidence", "application/json"),
        ] {
            let wrapped = if path == "/v1/execute" {
                body.clone()
            } else {
                format!(r#"{{"request": {body}, "mutation": {{"name": "create_invoice"}}}}"#)
            };
            let status = post(address, path, content_type, wrapped).await;
            assert!(status < 500, "HTTP {status}");
        }
    }
}

/// A POST whose answer may come before the body is sent (a refusal): the
/// status line, whatever became of the rest.
async fn post(address: SocketAddr, path: &str, content_type: &str, body: String) -> u16 {
    let host = address.to_string();
    let headers: Vec<(&str, &[u8])> = vec![("Host", host.as_bytes()), ("Content-Type", content_type.as_bytes())];
    let answer = common::http::exchange(address, "POST", path, &headers, body.as_bytes()).await;
    let answer = String::from_utf8_lossy(&answer);
    answer.split(' ').nth(1).and_then(|status| status.parse().ok()).unwrap_or_else(|| panic!("no answer: {answer}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resident_memory_stays_flat_over_twenty_passes_of_hostile_input() {
    let sidecar = DevSidecar::start("memory");
    let address: SocketAddr = sidecar.address.parse().unwrap();
    let mut client = GovernanceClient::connect(format!("http://{address}"))
        .await
        .unwrap()
        .max_encoding_message_size(16 << 20)
        .max_decoding_message_size(16 << 20);
    let bodies = hostile_bodies();
    let idle = settled_resident_kib(sidecar.pid()).await;
    let mut resident = Vec::new();
    for pass in 0..PASSES {
        grpc_pass(&mut client, &bodies, pass).await;
        http_pass(address, &bodies).await;
        resident.push(settled_resident_kib(sidecar.pid()).await);
    }
    let median = |passes: &[u64]| {
        let mut sorted = passes.to_vec();
        sorted.sort_unstable();
        sorted[sorted.len() / 2]
    };
    let (first, last) = (median(&resident[..5]), median(&resident[PASSES - 5..]));
    eprintln!("resident memory, KiB: idle {idle}; after each pass {resident:?}");
    assert!(
        last as f64 <= first as f64 * 1.10,
        "resident memory grew from {first} KiB after the first passes to {last} KiB after the last ones"
    );
    assert!(last as f64 <= idle as f64 * 1.25, "{last} KiB after the last passes; {idle} KiB idle");
}
