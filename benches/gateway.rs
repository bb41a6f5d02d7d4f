//! The gateway's figures (docs/performance.md, "Gateway"): Envoy's `Check`
//! against the calls it sits between, side by side in one run, on one
//! sidecar and one PostgreSQL:
//!
//! - **Evaluate**: the decision alone, no evidence (the floor);
//! - **ExecuteWithEvidence, evidence only**: the invoice write denied (5000),
//!   so the row is the whole write: what a check costs besides its HTTP
//!   translation;
//! - **Check, approved** and **Check, denied**: the invoice request as Envoy
//!   sends it (`POST /invoices`, the JSON body, a fresh `x-request-id`),
//!   decided and its row committed before the answer.
//!
//! At 8 and 32 callers over 8 connections, each measured twice in turn
//! (`BENCH_SECONDS` each), medians of the rate and p99.
//! `cargo bench --bench gateway`.

use std::collections::HashMap;
use std::sync::Arc;

use governance_sidecar::proto::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use governance_sidecar::proto::envoy::service::auth::v3::{AttributeContext, CheckRequest, attribute_context};
use governance_sidecar::proto::{
    EvaluateRequest, ExecuteWithEvidenceRequest, MutationCall, evaluate_request, execute_with_evidence_request,
};
use tonic::transport::Channel;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod harness;

use harness::load::*;
use harness::*;

const MAP: &str = r#"{"operations": [{"operation_id": "createInvoice", "method": "post", "path": "/invoices", "object_type": "invoice", "operation": "create"}]}"#;

fn kernite_request(amount: u32) -> String {
    format!(
        r#"{{"workspace_id": "ws_bench", "principal": {{"type": "user", "id": "usr_1"}}, "object_type": "invoice", "operation": "create", "payload": {{"amount": {amount}, "currency": "USD"}}}}"#
    )
}

fn check_request(amount: u32, request_id: String) -> CheckRequest {
    let headers = HashMap::from([
        (":authority".to_owned(), "app.example".to_owned()),
        ("content-type".to_owned(), "application/json".to_owned()),
        ("x-workspace-id".to_owned(), "ws_bench".to_owned()),
        ("x-user-id".to_owned(), "usr_1".to_owned()),
        ("x-request-id".to_owned(), request_id),
    ]);
    let http = attribute_context::HttpRequest {
        method: "POST".to_owned(),
        path: "/invoices".to_owned(),
        headers,
        body: format!(r#"{{"amount": {amount}, "currency": "USD"}}"#),
        ..Default::default()
    };
    let request = attribute_context::Request { http: Some(http), ..Default::default() };
    CheckRequest { attributes: Some(AttributeContext { request: Some(request), ..Default::default() }) }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[derive(Clone, Copy, PartialEq)]
enum Call {
    Evaluate,
    EvidenceOnly,
    CheckApproved,
    CheckDenied,
}

impl Call {
    fn label(self) -> &'static str {
        match self {
            Call::Evaluate => "Evaluate (no evidence)",
            Call::EvidenceOnly => "ExecuteWithEvidence, evidence only (denied)",
            Call::CheckApproved => "Check, approved (row committed, then OK)",
            Call::CheckDenied => "Check, denied (row committed, then 403)",
        }
    }
}

async fn measure(port: u16, callers: usize, call: Call, round: usize) -> Measured {
    let prefix = format!("{}-{callers}-{round}", call as u8);
    match call {
        Call::Evaluate | Call::EvidenceOnly => {
            let approved = Arc::new(kernite_request(250));
            let denied = Arc::new(kernite_request(5000));
            load(
                port,
                8,
                callers,
                move |mut client, n| {
                    let (approved, denied, prefix) = (approved.clone(), denied.clone(), prefix.clone());
                    async move {
                        if call == Call::Evaluate {
                            let body = evaluate_request::Body::RequestJson(approved.as_ref().clone());
                            client
                                .evaluate(EvaluateRequest { body: Some(body), idempotency_key: None, answer_form: 0 })
                                .await
                                .is_ok()
                        } else {
                            let request = ExecuteWithEvidenceRequest {
                                body: Some(execute_with_evidence_request::Body::RequestJson(denied.as_ref().clone())),
                                idempotency_key: Some(format!("{prefix}-{n}")),
                                mutation: Some(MutationCall { name: "create_invoice".into(), params: None }),
                                answer_form: 0,
                            };
                            let answered = client.execute_with_evidence(request).await;
                            answered.is_ok_and(|r| r.into_inner().evidence_id > 0)
                        }
                    }
                },
                || {},
            )
            .await
        }
        Call::CheckApproved | Call::CheckDenied => {
            let (amount, expected) = if call == Call::CheckApproved { (250, 0) } else { (5000, 7) };
            let client: fn(Channel) -> AuthorizationClient<Channel> = AuthorizationClient::new;
            load_with(
                port,
                8,
                callers,
                client,
                move |mut client, n| {
                    let request = check_request(amount, format!("{prefix}-{n}"));
                    async move {
                        match client.check(request).await {
                            Ok(answer) => answer.into_inner().status.is_some_and(|s| s.code == expected),
                            Err(status) => {
                                eprintln!("Check failed: {status:?}");
                                false
                            }
                        }
                    }
                },
                || {},
            )
            .await
        }
    }
}

fn main() {
    let (url, _data) = start_postgres();
    let scratch = std::env::temp_dir().join(format!("governance-sidecar-bench-gateway-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let map = scratch.join("policy-map.json");
    std::fs::write(&map, MAP).unwrap();
    psql(&url, &std::fs::read_to_string(format!("{ROOT}/deploy/examples/invoice/schema.sql")).unwrap());
    let port = free_port();
    let (bundle, mutations, map) = (
        format!("{ROOT}/deploy/examples/invoice/policy-bundle.json"),
        format!("{ROOT}/deploy/examples/invoice/mutations.toml"),
        map.display().to_string(),
    );
    let _sidecar = spawn_sidecar(
        port,
        &[
            "--database-url",
            &url,
            "--migrate",
            "--pool-size",
            "32",
            "--policy-bundle",
            &bundle,
            "--mutations",
            &mutations,
            "--operation-map",
            &map,
            "--gateway-workspace",
            "header:x-workspace-id",
            "--gateway-principal",
            "header:x-user-id",
        ],
    );
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let calls = [Call::Evaluate, Call::EvidenceOnly, Call::CheckApproved, Call::CheckDenied];
    let mut rows =
        vec!["| callers | call | calls/s | p50 ms | p99 ms |".to_owned(), "| --- | --- | --- | --- | --- |".to_owned()];
    for callers in [8, 32] {
        let mut rates: HashMap<u8, Vec<f64>> = HashMap::new();
        let mut p50s: HashMap<u8, Vec<f64>> = HashMap::new();
        let mut p99s: HashMap<u8, Vec<f64>> = HashMap::new();
        for round in 0..2 {
            for call in calls {
                let measured = runtime.block_on(measure(port, callers, call, round));
                assert_eq!(measured.failed, 0, "{} failed calls", call.label());
                eprintln!(
                    "{callers} callers, {}: {:.0}/s p99 {:.2} ms",
                    call.label(),
                    measured.rate(),
                    measured.p(0.99) / 1000.0
                );
                rates.entry(call as u8).or_default().push(measured.rate());
                p50s.entry(call as u8).or_default().push(measured.p(0.5) / 1000.0);
                p99s.entry(call as u8).or_default().push(measured.p(0.99) / 1000.0);
            }
        }
        for call in calls {
            let key = call as u8;
            rows.push(format!(
                "| {callers} | {} | {:.0} ({:.0?}) | {:.2} | {:.2} |",
                call.label(),
                median(rates.get_mut(&key).unwrap()),
                rates[&key],
                median(p50s.get_mut(&key).unwrap()),
                median(p99s.get_mut(&key).unwrap()),
            ));
        }
    }
    println!("\n{}", rows.join("\n"));
    let _ = std::fs::remove_dir_all(&scratch);
}
