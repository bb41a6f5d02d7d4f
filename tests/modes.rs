//! Governance modes on ExecuteWithEvidence: observe records the real decision
//! and writes anyway, skip decides nothing, and under a policy bundle the
//! evidence names the bundle, the policy and the mode.

mod common;

use common::TestServer;
use common::evidence::{REGISTRY, call, fixture, invoice_request, store};
use governance_sidecar::api::GovernanceApi;
use governance_sidecar::config::ServerSettings;
use governance_sidecar::proto::Decision;
use tonic::Code;

#[tokio::test]
async fn observe_mode_records_the_real_decision_and_lets_the_write_through() {
    let f = fixture().await;
    let response = f.execute(call(invoice_request(5000, "USD"), None, "observe_invoice")).await.unwrap();
    assert_eq!(response.mode(), governance_sidecar::proto::Mode::Observe);
    assert_eq!(response.decision.unwrap().decision(), Decision::Denied);
    assert!(response.mutation_applied);
    assert_eq!(f.count("SELECT count(*) FROM invoices").await, 1);
    let row = f.db.query_one("SELECT decision, mode, outcome FROM governance_events", &[]).await.unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1), row.get::<_, String>(2)),
        ("denied".into(), "observe".into(), "applied".into())
    );
}

#[tokio::test]
async fn skip_mode_evaluates_nothing_and_says_so_in_the_evidence() {
    let f = fixture().await;
    let response = f.execute(call(invoice_request(5000, "XXX"), None, "skip_invoice")).await.unwrap();
    assert_eq!(response.mode(), governance_sidecar::proto::Mode::Skip);
    assert!(response.decision.is_none() && response.mutation_applied);
    assert_eq!(f.count("SELECT count(*) FROM invoices").await, 1);
    let row = f.db.query_one("SELECT decision, mode, trace_hash, ctx_id FROM governance_events", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "skipped");
    assert_eq!(row.get::<_, String>(1), "skip");
    assert_eq!(row.get::<_, String>(2), "", "nothing was hashed");
    assert!(row.get::<_, String>(3).starts_with("ctx_"));
    // Skip still validates: an invalid request writes nothing.
    let invalid = f.execute(call(r#"{"workspace_id": "ws_1"}"#.into(), None, "skip_invoice")).await.unwrap_err();
    assert_eq!(invalid.code(), Code::InvalidArgument);
    assert_eq!(f.count("SELECT count(*) FROM governance_events").await, 1);
}

#[tokio::test]
async fn under_a_policy_bundle_evidence_names_the_bundle_the_policy_and_the_bundles_mode() {
    let f = fixture().await;
    let bundle = r#"{"schema_version": "kernite.policy.bundle.v1",
        "policies": [{"policy_key": "invoice_limit", "policy_version": 7, "effect": "allow",
                      "rules": [{"rule_key": "max_amount", "rule_definition": {"type": "max_value", "field": "amount", "max": 1000}}]}],
        "governed_scopes": [{"object_type": "invoice", "operation": "create"}],
        "operation_map": [{"object_type": "invoice", "operation": "create", "governed": true,
                           "policy_key": "invoice_limit", "mode": "observe"}]}"#;
    let path = common::scratch("evidence-bundle").join("policy-bundle.json");
    std::fs::write(&path, bundle).unwrap();
    let policies = std::sync::Arc::new(governance_sidecar::policies::load(&path).unwrap());
    let sha256 = policies.current().sha256.clone();
    let api = GovernanceApi::with_evidence(store(&f.url, REGISTRY).await)
        .allowing_request_policies(true)
        .with_policies(policies, false);
    let server = TestServer::start(ServerSettings::default(), api).await;
    let without_policies = |amount: i64| {
        format!(
            r#"{{"workspace_id": "ws_1", "principal": {{"type": "user", "id": "usr_42"}}, "object_type": "invoice", "operation": "create", "payload": {{"amount": {amount}, "currency": "USD"}}}}"#
        )
    };
    let mut client = server.client().await;
    let approved = client.execute_with_evidence(call(without_policies(250), None, "create_invoice")).await.unwrap();
    assert_eq!(approved.get_ref().mode(), governance_sidecar::proto::Mode::Observe, "the bundle's mode");
    // Observe: the denial is recorded, the write goes through.
    let denied = client.execute_with_evidence(call(without_policies(5000), None, "create_invoice")).await.unwrap();
    assert_eq!(denied.get_ref().decision.as_ref().unwrap().decision(), Decision::Denied);
    assert!(denied.get_ref().mutation_applied);
    // A mutation's own mode wins over the bundle's.
    let skipped = client.execute_with_evidence(call(without_policies(5000), None, "skip_invoice")).await.unwrap();
    assert_eq!(skipped.get_ref().mode(), governance_sidecar::proto::Mode::Skip);

    let rows =
        f.db.query(
            "SELECT decision, policy_bundle_sha256, policy_key, policy_version FROM governance_events ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    type Provenance = (String, Option<String>, Option<String>, Option<i64>);
    let rows: Vec<Provenance> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect();
    let named = (Some(sha256.clone()), Some("invoice_limit".to_owned()), Some(7));
    assert_eq!(rows[0], ("approved".into(), named.0.clone(), named.1.clone(), named.2));
    assert_eq!(rows[1], ("denied".into(), named.0.clone(), named.1.clone(), named.2));
    assert_eq!(rows[2], ("skipped".into(), Some(sha256), None, None), "skip decides nothing: no policy");

    // Without a bundle, the columns stay empty.
    f.execute(call(invoice_request(250, "USD"), None, "create_invoice")).await.unwrap();
    let row =
        f.db.query_one("SELECT policy_bundle_sha256, policy_key FROM governance_events ORDER BY id DESC LIMIT 1", &[])
            .await
            .unwrap();
    assert_eq!(
        (row.get::<_, Option<String>>(0), row.get::<_, Option<String>>(1)),
        (None, Some("invoice_create".into()))
    );
}
