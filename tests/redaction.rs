//! Redaction: secrets in a decision are masked before the evidence row is
//! stored, while the trace_hash stays the one Kernite computes.

mod common;

use common::evidence::{call, fixture};
use governance_sidecar::proto::Decision;

/// A request whose decision echoes secrets: a failing rule on the card
/// number and on a password, and a guardrail reason carrying an API key.
fn request_with_secrets() -> String {
    r#"{"workspace_id": "ws_1", "principal": {"type": "user", "id": "usr_42"}, "object_type": "invoice", "operation": "create",
        "payload": {"amount": 250, "currency": "USD", "card_number": "4111111111111111", "user": {"password": "hunter2-secret"}},
        "policy_context": {"guardrail_result": {"decision": "approved", "reasons": []},
          "default_policy": {"policy_key": "p", "api_key": "sk-live-DEADBEEF"},
          "selected_policies": [{"policy_key": "cards", "rules": [
            {"rule_key": "card_allowed", "rule_definition": {"type": "allowed_values", "field": "card_number", "values": ["0000"]}},
            {"rule_key": "pw", "rule_definition": {"type": "allowed_values", "field": "user.password", "values": ["x"]}},
            {"rule_key": "amount", "rule_definition": {"type": "max_value", "field": "amount", "max": 100}}]}]}}"#
        .to_owned()
}

#[tokio::test]
async fn secrets_are_masked_before_storage_while_trace_hash_stays_kernites() {
    use governance_sidecar::decision::json::{Layout, parse, to_string};
    let f = fixture().await;
    let response = f.execute(call(request_with_secrets(), Some("k-secret"), "create_invoice")).await.unwrap();
    let decision = response.decision.unwrap();
    assert_eq!(decision.decision(), Decision::Denied);

    // Nothing stored, in any column, contains a secret.
    let everything: String =
        f.db.query_one("SELECT string_agg(t::text, '|') FROM governance_events t", &[]).await.unwrap().get(0);
    for secret in ["4111111111111111", "hunter2-secret", "sk-live-DEADBEEF"] {
        assert!(!everything.contains(secret), "{secret} reached the table");
    }
    assert!(everything.contains("[REDACTED]"));

    // The stored JSON is Kernite's response with exactly the listed paths masked.
    let row =
        f.db.query_one("SELECT response_json::text, redacted_paths::text FROM governance_events", &[]).await.unwrap();
    let paths: Vec<String> = match parse(&row.get::<_, String>(1)).unwrap() {
        governance_sidecar::decision::Value::Array(items) => {
            items.into_iter().map(|v| v.as_str().unwrap().to_owned()).collect()
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(
        paths,
        [
            "data.policy.api_key",
            "data.reasons[0].details.current",
            "data.reasons[1].details.current",
            "data.rule_events[0].details.current",
            "data.rule_events[1].details.current",
        ]
    );
    let mut expected = parse(&decision.response_json).unwrap();
    for path in &paths {
        mask(&mut expected, path);
    }
    let stored = parse(&row.get::<_, String>(0)).unwrap();
    assert_eq!(to_string(&stored, Layout::Canonical), to_string(&expected, Layout::Canonical));
    // The non-secret amount stays visible for auditors.
    assert!(to_string(&stored, Layout::Canonical).contains(r#""current":250.0"#));

    // The hash is over the unredacted input: Evaluate gives the same one.
    let evaluated = f
        .server
        .client()
        .await
        .evaluate(governance_sidecar::proto::EvaluateRequest {
            body: Some(governance_sidecar::proto::evaluate_request::Body::RequestJson(request_with_secrets())),
            idempotency_key: Some("k-secret".into()),
            answer_form: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(evaluated.trace_hash, decision.trace_hash);
}

/// Replaces the value at a dotted path with `[0]` indices by the mask.
fn mask(value: &mut governance_sidecar::decision::Value, path: &str) {
    use governance_sidecar::decision::Value;
    let mut current = value;
    for segment in path.split('.') {
        let (key, index) = match segment.split_once('[') {
            Some((key, rest)) => (key, Some(rest.trim_end_matches(']').parse::<usize>().unwrap())),
            None => (segment, None),
        };
        current = current.as_object_mut().unwrap().get_mut(key).unwrap();
        if let Some(i) = index {
            let Value::Array(items) = current else { panic!("{path}") };
            current = &mut items[i];
        }
    }
    *current = Value::str("[REDACTED]");
}
