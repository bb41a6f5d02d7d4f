//! The governed write itself, against a real PostgreSQL through the real gRPC
//! server: evidence and mutation commit or roll back together, whatever the
//! decision, the database or the deadline does mid-transaction.

mod common;

use std::time::Duration;

use common::TestServer;
use common::evidence::{BOTH_PATHS, REGISTRY, call, database, fixture, invoice_request, store, store_with};
use governance_sidecar::api::GovernanceApi;
use governance_sidecar::config::ServerSettings;
use governance_sidecar::postgres::DatabaseSettings;
use governance_sidecar::proto::{
    Decision, ExecuteWithEvidenceRequest, MutationCall, execute_with_evidence_request::Body,
};
use tonic::Code;

#[tokio::test]
async fn approved_call_commits_evidence_and_the_invoice_together() {
    let f = fixture().await;
    let response = f.execute(call(invoice_request(250, "USD"), Some("k1"), "create_invoice")).await.unwrap();
    let decision = response.decision.as_ref().unwrap();
    assert_eq!(decision.decision(), Decision::Approved);
    assert!(response.mutation_applied && !response.replayed);
    let result = response.mutation_result.unwrap();
    assert_eq!(result.rows_affected, 1);
    let invoice_id = &result.returning[0].fields["id"];

    let row = f.db.query_one("SELECT id, amount, evidence_id FROM invoices", &[]).await.unwrap();
    assert_eq!(
        prost_types::Value { kind: Some(prost_types::value::Kind::NumberValue(row.get::<_, i64>(0) as f64)) },
        *invoice_id
    );
    assert_eq!(row.get::<_, i64>(1), 250);
    assert_eq!(row.get::<_, i64>(2), response.evidence_id);

    let evidence =
        f.db.query_one(
            "SELECT decision, outcome, trace_hash, ctx_id, idempotency_key, reason_codes::text FROM governance_events",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(evidence.get::<_, String>(0), "approved");
    assert_eq!(evidence.get::<_, String>(1), "applied");
    assert_eq!(evidence.get::<_, String>(2), decision.trace_hash);
    assert_eq!(evidence.get::<_, String>(3), decision.ctx_id);
    assert_eq!(evidence.get::<_, Option<String>>(4).as_deref(), Some("k1"));
    assert_eq!(evidence.get::<_, String>(5), "[]");
}

#[tokio::test]
async fn one_statement_and_two_round_trips_store_the_same_evidence_and_result() {
    let f = fixture().await;
    for (mutation, key) in [("create_invoice", "k-two-trips"), ("create_invoice_plain", "k-one-statement")] {
        let response = f.execute(call(invoice_request(250, "USD"), Some(key), mutation)).await.unwrap();
        assert!(response.mutation_applied && !response.replayed);
        assert_eq!(response.mutation_result.unwrap().rows_affected, 1);
    }
    let stored = |key: &'static str| {
        let db = &f.db;
        async move {
            db.query_one(
                "SELECT e.decision, e.outcome, e.trace_hash, e.response_json, e.reason_codes, e.redacted_paths, \
                        r.rows_affected, r.returning_rows = jsonb_build_array(jsonb_build_object('id', i.id)) AS result \
                 FROM governance_events e JOIN governance_mutation_results r ON r.evidence_id = e.id \
                 JOIN invoices i ON i.id = (r.returning_rows -> 0 ->> 'id')::bigint WHERE e.idempotency_key = $1",
                &[&key],
            )
            .await
            .unwrap()
        }
    };
    let (two, one) = (stored("k-two-trips").await, stored("k-one-statement").await);
    for column in ["decision", "outcome"] {
        assert_eq!(two.get::<_, String>(column), one.get::<_, String>(column), "{column}");
    }
    for column in ["reason_codes", "redacted_paths"] {
        assert_eq!(two.get::<_, serde_json::Value>(column), one.get::<_, serde_json::Value>(column), "{column}");
    }
    // The key is in the response, and hashed into trace_hash and ctx_id.
    let response = |row: &tokio_postgres::Row, key: &str| {
        let text = row.get::<_, serde_json::Value>("response_json").to_string();
        let trace: String = row.get("trace_hash");
        let ctx_id = format!("ctx_{}", &trace["sha256:".len()..][..12]);
        text.replace(&trace, "TRACE").replace(&ctx_id, "CTX").replace(key, "KEY")
    };
    assert_eq!(response(&two, "k-two-trips"), response(&one, "k-one-statement"), "the same decision, stored alike");
    assert_eq!((two.get::<_, i64>("rows_affected"), two.get::<_, bool>("result")), (1, true));
    assert_eq!((one.get::<_, i64>("rows_affected"), one.get::<_, bool>("result")), (1, true));
}

#[tokio::test]
async fn one_statement_answers_returned_secrets_and_stores_them_masked() {
    let f = fixture().await;
    let call = call(invoice_request(250, "USD"), Some("k-secrets"), "create_invoice_returning_secrets");
    let response = f.execute(call).await.unwrap();
    let returned = &response.mutation_result.unwrap().returning[0].fields;
    let text = |name: &str| match &returned[name].kind {
        Some(prost_types::value::Kind::StringValue(text)) => text.clone(),
        other => panic!("{name}: {other:?}"),
    };
    assert_eq!(text("api_key"), "USD", "the caller gets what its write returned");
    assert!(matches!(returned["password"].kind, Some(prost_types::value::Kind::NullValue(_))));
    assert!(matches!(returned["eighth"].kind, Some(prost_types::value::Kind::NumberValue(n)) if n == 31.25));
    let stored: serde_json::Value =
        f.db.query_one("SELECT returning_rows FROM governance_mutation_results", &[]).await.unwrap().get(0);
    let row = &stored[0];
    assert_eq!(row["api_key"], "[REDACTED]", "a secret never reaches the evidence");
    assert_eq!(row["password"], serde_json::Value::Null, "NULL stays NULL, as the sidecar masks");
    assert_eq!(row["eighth"], 31.25);
    assert!(row["id"].is_i64());
}

#[tokio::test]
async fn a_statement_postgresql_cannot_compose_takes_the_transaction_instead() {
    let f = fixture().await;
    // The trailing comment would swallow the rest of the composed statement.
    let response =
        f.execute(call(invoice_request(250, "USD"), Some("k-comment"), "create_invoice_commented")).await.unwrap();
    assert!(response.mutation_applied);
    assert_eq!(response.mutation_result.unwrap().rows_affected, 1);
    assert_eq!(f.count("SELECT count(*) FROM governance_mutation_results").await, 1);
}

#[tokio::test]
async fn a_statement_without_returning_reports_the_rows_it_changed() {
    let f = fixture().await;
    for key in ["k-a", "k-b"] {
        f.execute(call(invoice_request(250, "USD"), Some(key), "create_invoice_plain")).await.unwrap();
    }
    let touched = f.execute(call(invoice_request(250, "USD"), Some("k-touch"), "touch_invoices")).await.unwrap();
    let result = touched.mutation_result.unwrap();
    assert_eq!((result.rows_affected, result.returning.len()), (2, 0));
    let stored = f.db.query_one(
        "SELECT r.rows_affected, r.returning_rows::text FROM governance_mutation_results r \
         JOIN governance_events e ON e.id = r.evidence_id WHERE e.idempotency_key = 'k-touch'",
        &[],
    );
    let stored = stored.await.unwrap();
    assert_eq!((stored.get::<_, i64>(0), stored.get::<_, String>(1)), (2, "[]".to_owned()));
    let replayed = f.execute(call(invoice_request(250, "USD"), Some("k-touch"), "touch_invoices")).await.unwrap();
    assert!(replayed.replayed);
    assert_eq!(replayed.mutation_result.unwrap().rows_affected, 2);
}

#[tokio::test]
async fn denied_call_records_evidence_and_writes_nothing_else() {
    let f = fixture().await;
    let response = f.execute(call(invoice_request(5000, "USD"), Some("k-denied"), "create_invoice")).await.unwrap();
    assert_eq!(response.decision.unwrap().decision(), Decision::Denied);
    assert!(!response.mutation_applied && response.mutation_result.is_none());
    assert_eq!(f.count("SELECT count(*) FROM invoices").await, 0);
    let row =
        f.db.query_one("SELECT id, decision, outcome, reason_codes::text FROM governance_events", &[]).await.unwrap();
    assert_eq!(row.get::<_, i64>(0), response.evidence_id);
    assert_eq!(row.get::<_, String>(1), "denied");
    assert_eq!(row.get::<_, String>(2), "not_applied");
    assert_eq!(row.get::<_, String>(3), r#"["amount_limit_denied"]"#);
}

#[tokio::test]
async fn stored_response_json_is_the_kernite_response() {
    let f = fixture().await;
    let response = f.execute(call(invoice_request(5000, "USD"), None, "create_invoice")).await.unwrap();
    let decision = response.decision.unwrap();
    let stored: String = f.db.query_one("SELECT response_json::text FROM governance_events", &[]).await.unwrap().get(0);
    let canonical = |text: &str| {
        use governance_sidecar::decision::json::{Layout, parse, to_string};
        to_string(&parse(text).unwrap(), Layout::Canonical)
    };
    assert_eq!(canonical(&stored), canonical(&decision.response_json));
}

#[tokio::test]
async fn a_failing_mutation_rolls_back_and_leaves_one_error_row() {
    for mutation in BOTH_PATHS {
        a_failing_mutation_on(mutation).await;
    }
}

async fn a_failing_mutation_on(mutation: &str) {
    let f = fixture().await;
    // The policy allows a negative amount; the table's CHECK does not.
    let status = f.execute(call(invoice_request(-5, "USD"), Some("k-fail"), mutation)).await.unwrap_err();
    assert_eq!(status.code(), Code::Aborted);
    assert!(status.message().contains("SQLSTATE 23514"), "{}", status.message());
    assert!(status.message().contains("trace_hash sha256:"));
    assert!(!status.message().contains("-5"), "no parameter values in errors");
    assert_eq!(f.count("SELECT count(*) FROM invoices").await, 0);
    let rows = f.db.query("SELECT outcome, error_sqlstate, idempotency_key FROM governance_events", &[]).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, String>(0), "error");
    assert_eq!(rows[0].get::<_, Option<String>>(1).as_deref(), Some("23514"));
    assert_eq!(rows[0].get::<_, Option<String>>(2), None, "the key is not claimed");
    // The failed attempt did not claim the key: a corrected retry with it succeeds.
    let retry = f.execute(call(invoice_request(5, "USD"), Some("k-fail"), mutation)).await.unwrap();
    assert!(retry.mutation_applied && !retry.replayed);
}

#[tokio::test]
async fn unknown_or_mismatched_mutations_are_refused_and_write_nothing() {
    let f = fixture().await;
    let unknown = f.execute(call(invoice_request(250, "USD"), Some("k-x"), "drop_tables")).await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    // A name the caller made huge comes back in a message cut to fit a trailer.
    let huge_name = "x".repeat(100_000);
    let unknown = f.execute(call(invoice_request(250, "USD"), Some("k-z"), &huge_name)).await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "{}", unknown.message());
    assert!(unknown.message().len() <= 1024 && unknown.message().ends_with('…'), "{} bytes", unknown.message().len());
    let mismatched = f.execute(call(invoice_request(250, "USD"), Some("k-y"), "archive_invoice")).await.unwrap_err();
    assert_eq!(mismatched.code(), Code::PermissionDenied);
    let mut no_mutation = call(invoice_request(250, "USD"), None, "create_invoice");
    no_mutation.mutation = None;
    assert_eq!(f.execute(no_mutation).await.unwrap_err().code(), Code::InvalidArgument);
    let mut undeclared = call(invoice_request(250, "USD"), None, "create_invoice");
    undeclared.mutation.as_mut().unwrap().params = Some(prost_types::Struct {
        fields: [("amount".to_owned(), prost_types::Value { kind: Some(prost_types::value::Kind::NumberValue(1.0)) })]
            .into(),
    });
    assert_eq!(f.execute(undeclared).await.unwrap_err().code(), Code::InvalidArgument);
    let long_key = "k".repeat(256);
    assert_eq!(
        f.execute(call(invoice_request(250, "USD"), Some(&long_key), "create_invoice")).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    assert_eq!(f.count("SELECT count(*) FROM invoices").await, 0);
    assert_eq!(f.count("SELECT count(*) FROM governance_events").await, 0);
}

#[tokio::test]
async fn a_backend_killed_mid_transaction_leaves_nothing_half_written() {
    let f = fixture().await;
    // A mutation that waits, so the transaction is open when its backend dies.
    let registry = format!(
        "{REGISTRY}\n[[mutations]]\nname = \"slow_invoice\"\nobject_type = \"invoice\"\noperation = \"create\"\nstatements = [\"SELECT pg_sleep(2)::text AS slept\", \"INSERT INTO invoices (workspace_id, amount, currency, evidence_id) VALUES ('w', 1, 'USD', 0)\"]\n"
    );
    let store = store(&f.url, &registry).await;
    let server = TestServer::start(
        ServerSettings::default(),
        GovernanceApi::with_evidence(store).allowing_request_policies(true),
    )
    .await;
    let mut client = server.client().await;
    let pending = tokio::spawn(async move {
        client.execute_with_evidence(call(invoice_request(250, "USD"), Some("k-kill"), "slow_invoice")).await
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    let killed: i64 = f
        .db
        .query_one("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%' AND datname = current_database() AND pid <> pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(killed, 1);
    let status = pending.await.unwrap().unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{}", status.message());
    assert_eq!(f.count("SELECT count(*) FROM invoices").await, 0);
    assert_eq!(f.count("SELECT count(*) FROM governance_events WHERE outcome <> 'error'").await, 0);
}

#[tokio::test]
async fn a_mutation_over_the_statement_timeout_is_cancelled_and_rolled_back() {
    let f = fixture().await;
    let url = f.url.clone();
    let settings = DatabaseSettings { statement_timeout: Duration::from_millis(200), ..database(&url) };
    let server = TestServer::start(
        ServerSettings::default(),
        GovernanceApi::with_evidence(store_with(settings, REGISTRY).await).allowing_request_policies(true),
    )
    .await;
    let started = std::time::Instant::now();
    let status = server
        .client()
        .await
        .execute_with_evidence(call(invoice_request(250, "USD"), Some("k-slow"), "slow_insert"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{}", status.message());
    assert!(started.elapsed() < Duration::from_millis(900), "cancelled before the sleep ended");
    assert_eq!(f.count("SELECT count(*) FROM invoices").await, 0);
    let sqlstate: Option<String> =
        f.db.query_one("SELECT error_sqlstate FROM governance_events", &[]).await.unwrap().get(0);
    assert_eq!(sqlstate.as_deref(), Some("57014"));
    // The sidecar stays responsive.
    let ok =
        server.client().await.execute_with_evidence(call(invoice_request(250, "USD"), None, "create_invoice")).await;
    assert!(ok.is_ok());
}

#[tokio::test]
async fn typed_requests_work_end_to_end_too() {
    use governance_sidecar::proto::{ExecuteRequest, Principal};
    use prost_types::{Struct, Value as V, value::Kind};
    let f = fixture().await;
    let text = |s: &str| V { kind: Some(Kind::StringValue(s.into())) };
    let payload = Struct {
        fields: [
            ("amount".to_owned(), V { kind: Some(Kind::NumberValue(42.0)) }),
            ("currency".to_owned(), text("EUR")),
        ]
        .into(),
    };
    let request = ExecuteWithEvidenceRequest {
        body: Some(Body::Request(ExecuteRequest {
            workspace_id: "ws_typed".into(),
            principal: Some(Principal { r#type: "service".into(), id: "billing".into(), attributes: None }),
            object_type: "invoice".into(),
            operation: "create".into(),
            payload: Some(payload),
            ..Default::default()
        })),
        idempotency_key: Some("typed-1".into()),
        mutation: Some(MutationCall { name: "create_invoice".into(), params: None }),
        answer_form: 0,
    };
    let response = f.execute(request).await.unwrap();
    assert!(response.mutation_applied);
    let row = f.db.query_one("SELECT workspace_id, amount, currency FROM invoices", &[]).await.unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, i64>(1), row.get::<_, String>(2)),
        ("ws_typed".into(), 42, "EUR".into())
    );
}

#[tokio::test]
async fn a_serialization_failure_is_retried_and_commits_once() {
    let f = fixture().await;
    let response = f.execute(call(invoice_request(250, "USD"), Some("k-flaky"), "flaky_invoice")).await.unwrap();
    assert!(response.mutation_applied && !response.replayed);
    let attempts: i64 = f.db.query_one("SELECT last_value FROM attempts", &[]).await.unwrap().get(0);
    assert_eq!(attempts, 2, "one failed attempt, one committed");
    assert_eq!(f.count("SELECT count(*) FROM invoices").await, 1);
    assert_eq!(f.count("SELECT count(*) FROM governance_events").await, 1, "the failed attempt left no row");
}

#[tokio::test]
async fn a_deadline_expiring_mid_transaction_commits_nothing_and_leaves_the_pool_clean() {
    let f = fixture().await;
    // One connection, so the calls after the cancelled one must reuse it.
    let url = f.url.clone();
    let settings = DatabaseSettings { pool_size: 1, ..database(&url) };
    let server = TestServer::start(
        ServerSettings::default(),
        GovernanceApi::with_evidence(store_with(settings, REGISTRY).await).allowing_request_policies(true),
    )
    .await;
    let mut client = server.client().await;

    let mut request = tonic::Request::new(call(invoice_request(250, "USD"), Some("k-deadline"), "slow_insert"));
    request.set_timeout(Duration::from_millis(300));
    let status = client.execute_with_evidence(request).await.unwrap_err();
    assert!(matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled), "{status:?}");

    for i in 0..3 {
        let key = format!("k-after-{i}");
        let response =
            client.execute_with_evidence(call(invoice_request(250, "USD"), Some(&key), "create_invoice")).await;
        assert!(response.unwrap().into_inner().mutation_applied);
    }
    // The cancelled call's evidence was never committed, by it or by a later caller.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(f.count("SELECT count(*) FROM governance_events WHERE idempotency_key = 'k-deadline'").await, 0);
    assert_eq!(f.count("SELECT count(*) FROM governance_events").await, 3);
    assert_eq!(f.count("SELECT count(*) FROM invoices").await, 3);
}

#[tokio::test]
async fn parameters_that_cannot_be_bound_are_refused_and_write_nothing() {
    let f = fixture().await;
    // No currency: in observe mode the write goes ahead whatever the decision,
    // and `currency` has no value to bind.
    let missing = invoice_request(250, "USD").replace(r#", "currency": "USD""#, "");
    let status = f.execute(call(missing, Some("k-missing"), "observe_invoice")).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("`currency` has no value"), "{}", status.message());
    // A string where a bigint is declared (the policy's max_value accepts numeric text).
    let wrong_type = invoice_request(250, "USD").replace(r#""amount": 250"#, r#""amount": "250""#);
    let status = f.execute(call(wrong_type, Some("k-type"), "create_invoice")).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("`amount` must be an integer"), "{}", status.message());
    assert_eq!(f.count("SELECT count(*) FROM governance_events").await, 0);
    assert_eq!(f.count("SELECT count(*) FROM invoices").await, 0);
}

#[tokio::test]
async fn sql_looking_values_are_stored_as_data() {
    let f = fixture().await;
    let hostile = "USD'); DROP TABLE invoices; --";
    // Skip mode writes whatever the policy would say, so the value reaches the INSERT.
    let request = invoice_request(250, "USD").replace(r#""currency": "USD""#, &format!(r#""currency": "{hostile}""#));
    assert!(f.execute(call(request, Some("k-sql"), "skip_invoice")).await.unwrap().mutation_applied);
    let stored: String = f.db.query_one("SELECT currency FROM invoices", &[]).await.unwrap().get(0);
    assert_eq!(stored, hostile);
}

#[tokio::test]
async fn a_decision_carrying_nan_is_stored_although_jsonb_has_no_nan() {
    // Kernite writes Python's NaN token here (max "nan" is float('nan')); found by fuzzing.
    let f = fixture().await;
    let body = r#"{"workspace_id": "ws_1", "principal": {"type": "user", "id": "u"}, "object_type": "invoice", "operation": "create", "payload": {"amount": 5, "currency": "USD"}, "policy_context": {"selected_policies": [{"policy_key": "p", "rules": [{"rule_key": "m", "rule_definition": {"type": "max_value", "field": "status", "max": "nan"}}]}]}}"#;
    let response = f.execute(call(body.into(), Some("nan-1"), "create_invoice")).await.unwrap();
    let decision = response.decision.unwrap();
    assert_eq!(decision.decision(), Decision::Denied);
    assert!(decision.response_json.contains(r#""max": NaN"#), "the answer is Kernite's, NaN and all");
    let stored: String =
        f.db.query_one("SELECT response_json #>> '{data,reasons,0,details,max}' FROM governance_events", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(stored, "NaN", "stored as the string \"NaN\"");
}

#[tokio::test]
async fn the_decision_in_the_answer_takes_the_form_the_caller_asks_for() {
    use governance_sidecar::proto::AnswerForm;
    let f = fixture().await;
    let typed = ExecuteWithEvidenceRequest {
        answer_form: AnswerForm::Typed.into(),
        ..call(invoice_request(250, "USD"), Some("form-typed"), "create_invoice")
    };
    let answer = f.execute(typed).await.unwrap();
    let decision = answer.decision.unwrap();
    assert!(answer.mutation_applied && decision.response_json.is_empty() && decision.policy.is_some());
    let kernite = ExecuteWithEvidenceRequest {
        answer_form: AnswerForm::KerniteJson.into(),
        ..call(invoice_request(5000, "USD"), Some("form-json"), "create_invoice")
    };
    let answer = f.execute(kernite).await.unwrap();
    let decision = answer.decision.unwrap();
    assert!(!answer.mutation_applied && decision.reasons.is_empty());
    assert!(decision.response_json.contains(r#""decision": "denied""#), "{}", decision.response_json);
    // The stored evidence is the same whatever the answer's form.
    let stored: String =
        f.db.query_one("SELECT response_json::text FROM governance_events WHERE id = $1", &[&answer.evidence_id])
            .await
            .unwrap()
            .get(0);
    assert!(stored.contains(&decision.ctx_id));
}
