//! Server limits around ExecuteWithEvidence: the concurrency limit queues
//! governance calls but never health checks, and a call whose deadline is
//! already spent writes nothing.

mod common;

use std::time::Duration;

use common::TestServer;
use common::evidence::{REGISTRY, call, fixture, invoice_request, store};
use governance_sidecar::api::GovernanceApi;
use governance_sidecar::config::{Limits, ServerSettings};
use tonic::Code;

#[tokio::test]
async fn the_concurrency_limit_queues_governance_calls_but_never_health_checks() {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
    let f = fixture().await;
    let url = f.url.clone();
    let settings =
        ServerSettings { limits: Limits { concurrency_limit: 1, ..Limits::default() }, ..ServerSettings::default() };
    let server = TestServer::start(settings, GovernanceApi::with_evidence(store(&url, REGISTRY).await)).await;

    // The only permit is held by a call that sleeps one second in PostgreSQL.
    let mut slow_client = server.client().await;
    let slow = tokio::spawn(async move {
        let response = slow_client.execute_with_evidence(call(invoice_request(250, "USD"), None, "slow_insert")).await;
        (response, std::time::Instant::now())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Health answers while the permit is taken...
    let mut health = HealthClient::new(server.channel().await);
    let status = health.check(HealthCheckRequest { service: String::new() }).await.unwrap().into_inner();
    assert_eq!(status.status(), ServingStatus::Serving);
    assert!(!slow.is_finished(), "the slow call still holds the permit");

    // ...while an Evaluate waits for it, and so finishes after the slow call.
    let evaluate = governance_sidecar::proto::EvaluateRequest {
        body: Some(governance_sidecar::proto::evaluate_request::Body::RequestJson(invoice_request(1, "USD"))),
        idempotency_key: None,
    };
    server.client().await.evaluate(evaluate).await.unwrap();
    let evaluated_at = std::time::Instant::now();
    let (slow_response, slow_done_at) = slow.await.unwrap();
    assert!(slow_response.unwrap().into_inner().mutation_applied);
    assert!(slow_done_at <= evaluated_at, "Evaluate was answered before the call holding the permit finished");
}

#[tokio::test]
async fn a_call_arriving_with_its_deadline_spent_writes_nothing() {
    let f = fixture().await;
    for _ in 0..5 {
        let mut request = tonic::Request::new(call(invoice_request(250, "USD"), None, "create_invoice"));
        request.set_timeout(Duration::from_nanos(1));
        let status = f.server.client().await.execute_with_evidence(request).await.unwrap_err();
        assert!(matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled), "{status:?}");
    }
    assert_eq!(f.count("SELECT count(*) FROM governance_events").await, 0);
    assert_eq!(f.count("SELECT count(*) FROM invoices").await, 0);
}
