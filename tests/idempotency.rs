//! Idempotency keys on ExecuteWithEvidence: a retry replays the recorded
//! answer and writes nothing, a key is never reused for another request, and
//! concurrent duplicates write once.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::evidence::{BOTH_PATHS, call, fixture, invoice_request};
use tonic::Code;

#[tokio::test]
async fn a_retry_with_the_same_key_replays_and_writes_nothing() {
    let f = fixture().await;
    let first = f.execute(call(invoice_request(250, "USD"), Some("k-replay"), "create_invoice")).await.unwrap();
    let again = f.execute(call(invoice_request(250, "USD"), Some("k-replay"), "create_invoice")).await.unwrap();
    assert!(again.replayed && again.mutation_applied);
    assert_eq!(again.evidence_id, first.evidence_id);
    assert_eq!(again.mutation_result, first.mutation_result);
    assert_eq!(again.decision.unwrap().trace_hash, first.decision.unwrap().trace_hash);
    assert_eq!(f.count("SELECT count(*) FROM invoices").await, 1);
    assert_eq!(f.count("SELECT count(*) FROM governance_events").await, 1);
}

#[tokio::test]
async fn reusing_a_key_for_another_request_is_refused_and_writes_nothing() {
    for mutation in BOTH_PATHS {
        let f = fixture().await;
        f.execute(call(invoice_request(250, "USD"), Some("k-reuse"), mutation)).await.unwrap();
        let status = f.execute(call(invoice_request(300, "USD"), Some("k-reuse"), mutation)).await.unwrap_err();
        assert_eq!(status.code(), Code::AlreadyExists, "{mutation}: {}", status.message());
        assert_eq!(f.count("SELECT count(*) FROM invoices").await, 1, "{mutation}");
        assert_eq!(f.count("SELECT count(*) FROM governance_events").await, 1, "{mutation}");
    }
}

#[tokio::test]
async fn thirty_two_concurrent_calls_with_one_key_write_once() {
    for mutation in BOTH_PATHS {
        let f = fixture().await;
        let mut calls = Vec::new();
        for _ in 0..32 {
            let mut client = f.server.client().await;
            calls.push(tokio::spawn(async move {
                client.execute_with_evidence(call(invoice_request(250, "USD"), Some("k-race"), mutation)).await
            }));
        }
        let mut answers = Vec::new();
        let mut replays = 0;
        for call in calls {
            let response = call.await.unwrap().expect("every duplicate gets an answer").into_inner();
            replays += usize::from(response.replayed);
            answers.push((response.evidence_id, response.mutation_applied, response.mutation_result));
        }
        answers.dedup();
        assert_eq!(answers.len(), 1, "{mutation}: one evidence id and one result for all: {answers:?}");
        assert_eq!(replays, 31, "{mutation}");
        assert_eq!(f.count("SELECT count(*) FROM invoices").await, 1, "{mutation}");
        assert_eq!(f.count("SELECT count(*) FROM governance_events").await, 1, "{mutation}");
    }
}

#[tokio::test]
async fn a_write_without_the_evidence_id_replays_and_reads_back_its_result() {
    use governance_sidecar::proto::{GetEvidenceRequest, get_evidence_request::Key};
    let f = fixture().await;
    let first = f.execute(call(invoice_request(250, "USD"), Some("k-plain"), "create_invoice_plain")).await.unwrap();
    assert!(first.mutation_applied && !first.replayed);
    let invoice_id: i64 = f.db.query_one("SELECT id FROM invoices", &[]).await.unwrap().get(0);
    let stored: String =
        f.db.query_one(
            "SELECT returning_rows::text FROM governance_mutation_results WHERE evidence_id = $1",
            &[&first.evidence_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, format!(r#"[{{"id": {invoice_id}}}]"#));

    let again = f.execute(call(invoice_request(250, "USD"), Some("k-plain"), "create_invoice_plain")).await.unwrap();
    assert!(again.replayed && again.mutation_applied);
    assert_eq!((again.evidence_id, &again.mutation_result), (first.evidence_id, &first.mutation_result));
    let mut client = f.server.client().await;
    let read = client
        .get_evidence(GetEvidenceRequest { key: Some(Key::EvidenceId(first.evidence_id)) })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.mutation_result, first.mutation_result);
    assert_eq!(f.count("SELECT count(*) FROM invoices").await, 1);
}

#[tokio::test]
async fn a_mutations_own_unique_violation_is_an_error_not_a_replay() {
    let f = fixture().await;
    f.execute(call(invoice_request(250, "USD"), Some("k-number-1"), "create_numbered_invoice")).await.unwrap();
    // Another key, the same invoice number: the table refuses it.
    let status =
        f.execute(call(invoice_request(250, "USD"), Some("k-number-2"), "create_numbered_invoice")).await.unwrap_err();
    assert_eq!(status.code(), Code::Aborted, "{}", status.message());
    assert!(status.message().contains("SQLSTATE 23505"), "{}", status.message());
    let outcomes: Vec<String> =
        f.db.query("SELECT outcome FROM governance_events ORDER BY id", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
    assert_eq!(outcomes, ["applied", "error"]);
}

/// A retry after the operator's bundle changed its decision is refused, not
/// answered with the new decision beside the old write; a retry the new
/// bundle decides alike still replays.
#[tokio::test]
async fn a_retry_decided_otherwise_by_a_reloaded_bundle_is_refused_and_writes_nothing() {
    let bundle = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/examples/invoice/policy-bundle.json");
    let original = std::fs::read_to_string(&bundle).unwrap();
    let path = common::scratch("idempotency-reload").join("policy-bundle.json");
    std::fs::write(&path, &original).unwrap();
    let policies = Arc::new(governance_sidecar::policies::load(&path).unwrap());
    let f = common::evidence::fixture_serving(
        governance_sidecar::schema::layout::EvidenceLayout::Reference,
        Default::default(),
        None,
        Default::default(),
        |api| api.with_policies(Arc::clone(&policies), true),
    )
    .await;
    let write = |amount: i64, key: &'static str| call(bundle_request(amount), Some(key), "create_invoice");
    let first = f.execute(write(500, "reload-1")).await.unwrap();
    assert!(first.mutation_applied);
    f.execute(write(50, "reload-2")).await.unwrap();

    std::fs::write(&path, original.replace(r#""max": 1000"#, r#""max": 100"#)).unwrap();
    policies.reload();
    let refused = f.execute(write(500, "reload-1")).await.unwrap_err();
    assert_eq!(refused.code(), Code::AlreadyExists, "{refused:?}");
    assert!(refused.message().contains("decided under another policy bundle"), "{}", refused.message());
    let alike = f.execute(write(50, "reload-2")).await.unwrap();
    assert!(alike.replayed, "{alike:?}");
    assert_eq!(f.count("SELECT count(*) FROM governance_events").await, 2);
}

/// An invoice as a request decided by the operator's bundle: no policies of its own.
fn bundle_request(amount: i64) -> String {
    format!(
        r#"{{"workspace_id": "ws_1", "principal": {{"type": "user", "id": "usr_42"}}, "object_type": "invoice", "operation": "create", "payload": {{"amount": {amount}, "currency": "USD"}}}}"#
    )
}
