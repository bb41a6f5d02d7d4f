//! ExecuteWithEvidence against a real PostgreSQL, through the real gRPC server.

mod common;

use std::time::Duration;

use common::TestServer;
use common::postgres::{connect, fresh_database};
use governance_sidecar::api::GovernanceApi;
use governance_sidecar::config::ServerSettings;
use governance_sidecar::evidence::redact::Redactor;
use governance_sidecar::evidence::{DatabaseSettings, EvidenceStore, migrate};
use governance_sidecar::mutations::{Mode, Registry};
use governance_sidecar::proto::{
    Decision, ExecuteWithEvidenceRequest, ExecuteWithEvidenceResponse, MutationCall,
    execute_with_evidence_request::Body,
};
use tonic::Code;

const INVOICES: &str = "CREATE TABLE invoices (
    id bigserial PRIMARY KEY,
    workspace_id text NOT NULL,
    amount bigint NOT NULL CHECK (amount > 0),
    currency text NOT NULL,
    evidence_id bigint NOT NULL);
    CREATE TABLE numbered_invoices (number bigint PRIMARY KEY)";

/// The two ways an approved write runs: `create_invoice` binds the evidence
/// id, so its mutation waits for the evidence row; `create_invoice_plain`
/// does not, so its mutation is sent beside the evidence INSERT.
const BOTH_PATHS: [&str; 2] = ["create_invoice", "create_invoice_plain"];

const REGISTRY: &str = r#"
[[mutations]]
name = "create_invoice"
object_type = "invoice"
operation = "create"
statements = ["INSERT INTO invoices (workspace_id, amount, currency, evidence_id) VALUES (:workspace_id, :amount, :currency, :evidence_id) RETURNING id"]
[mutations.params]
workspace_id = { type = "text", builtin = "workspace_id" }
amount = { type = "bigint", request = "payload.amount" }
currency = { type = "text", request = "payload.currency" }
evidence_id = { type = "bigint", builtin = "evidence_id" }

[[mutations]]
name = "create_invoice_plain"
object_type = "invoice"
operation = "create"
statements = ["INSERT INTO invoices (workspace_id, amount, currency, evidence_id) VALUES (:workspace_id, :amount, :currency, 0) RETURNING id"]
[mutations.params]
workspace_id = { type = "text", builtin = "workspace_id" }
amount = { type = "bigint", request = "payload.amount" }
currency = { type = "text", request = "payload.currency" }

[[mutations]]
name = "create_numbered_invoice"
object_type = "invoice"
operation = "create"
statements = ["INSERT INTO numbered_invoices (number) VALUES (:amount)"]
[mutations.params]
amount = { type = "bigint", request = "payload.amount" }

[[mutations]]
name = "observe_invoice"
object_type = "invoice"
operation = "create"
mode = "observe"
statements = ["INSERT INTO invoices (workspace_id, amount, currency, evidence_id) VALUES (:workspace_id, :amount, :currency, :evidence_id)"]
[mutations.params]
workspace_id = { type = "text", builtin = "workspace_id" }
amount = { type = "bigint", request = "payload.amount" }
currency = { type = "text", request = "payload.currency" }
evidence_id = { type = "bigint", builtin = "evidence_id" }

[[mutations]]
name = "skip_invoice"
object_type = "invoice"
operation = "create"
mode = "skip"
statements = ["INSERT INTO invoices (workspace_id, amount, currency, evidence_id) VALUES (:workspace_id, :amount, :currency, :evidence_id)"]
[mutations.params]
workspace_id = { type = "text", builtin = "workspace_id" }
amount = { type = "bigint", request = "payload.amount" }
currency = { type = "text", request = "payload.currency" }
evidence_id = { type = "bigint", builtin = "evidence_id" }

[[mutations]]
name = "slow_insert"
object_type = "invoice"
operation = "create"
statements = ["SELECT pg_sleep(1)::text AS slept", "INSERT INTO invoices (workspace_id, amount, currency, evidence_id) VALUES ('w', 1, 'USD', 0)"]

[[mutations]]
name = "flaky_invoice"
object_type = "invoice"
operation = "create"
statements = ["SELECT fail_first_attempt() AS ok", "INSERT INTO invoices (workspace_id, amount, currency, evidence_id) VALUES (:workspace_id, 7, 'USD', :evidence_id)"]
[mutations.params]
workspace_id = { type = "text", builtin = "workspace_id" }
evidence_id = { type = "bigint", builtin = "evidence_id" }

[[mutations]]
name = "archive_invoice"
object_type = "invoice"
operation = "archive"
statements = ["DELETE FROM invoices WHERE id = :id"]
[mutations.params]
id = { type = "bigint", request = "resource.id" }
"#;

/// Allows invoices up to 1000 in USD or EUR.
fn invoice_request(amount: i64, currency: &str) -> String {
    format!(
        r#"{{"workspace_id": "ws_1", "principal": {{"type": "user", "id": "usr_42"}}, "object_type": "invoice", "operation": "create", "payload": {{"amount": {amount}, "currency": "{currency}"}}, "policy_context": {{"governed": true, "selected_policies": [{{"policy_key": "invoice_create", "policy_version": 3, "rules": [{{"rule_key": "amount_limit", "rule_definition": {{"type": "max_value", "field": "amount", "max": 1000}}}}, {{"rule_key": "currency", "rule_definition": {{"type": "allowed_values", "field": "currency", "values": ["USD", "EUR"]}}}}]}}]}}}}"#
    )
}

fn call(json: String, key: Option<&str>, mutation: &str) -> ExecuteWithEvidenceRequest {
    ExecuteWithEvidenceRequest {
        body: Some(Body::RequestJson(json)),
        idempotency_key: key.map(str::to_owned),
        mutation: Some(MutationCall { name: mutation.into(), params: None }),
    }
}

struct Fixture {
    server: TestServer,
    db: tokio_postgres::Client,
    /// The test database, as its owner: for tests that start a store of their own.
    url: String,
}

async fn fixture() -> Fixture {
    let url = fresh_database().await;
    let mut admin = connect(&url).await;
    migrate::migrate(&mut admin).await.unwrap();
    admin.batch_execute(INVOICES).await.unwrap();
    // Raises a serialization failure on its first call only; the sequence
    // counts calls across rolled-back transactions.
    admin
        .batch_execute(
            "CREATE SEQUENCE attempts;
             CREATE FUNCTION fail_first_attempt() RETURNS integer LANGUAGE plpgsql AS $$
             BEGIN
                 IF nextval('attempts') = 1 THEN
                     RAISE EXCEPTION 'simulated conflict' USING ERRCODE = 'serialization_failure';
                 END IF;
                 RETURN 1;
             END $$;",
        )
        .await
        .unwrap();
    // The sidecar runs as the least-privilege role the README recommends.
    let role = least_privilege_role(&admin).await;
    let sidecar_url = url.replacen("postgres@", &format!("{role}@"), 1);
    let store = store(&sidecar_url, REGISTRY).await;
    let server = TestServer::start(ServerSettings::default(), GovernanceApi::with_evidence(store)).await;
    Fixture { server, db: admin, url }
}

/// The README's recommended role: it may add evidence and read it back for
/// replays, and do what the registered mutations need. Nothing else.
async fn least_privilege_role(admin: &tokio_postgres::Client) -> String {
    let database: String = admin.query_one("SELECT current_database()", &[]).await.unwrap().get(0);
    let role = format!("sidecar_{database}");
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN;
             GRANT INSERT, SELECT ON governance_events, governance_mutation_results TO {role};
             GRANT SELECT ON governance_schema_migrations TO {role};
             GRANT USAGE ON SEQUENCE governance_events_id_seq TO {role};
             -- what the test mutations need
             GRANT INSERT, DELETE, SELECT ON invoices TO {role}; -- SELECT: for RETURNING
             GRANT INSERT ON numbered_invoices TO {role};
             GRANT USAGE ON SEQUENCE invoices_id_seq, attempts TO {role};"
        ))
        .await
        .unwrap();
    role
}

fn database(url: &str) -> DatabaseSettings {
    DatabaseSettings {
        url: url.to_owned(),
        pool_size: 8,
        wait_timeout: Duration::from_secs(2),
        statement_timeout: Duration::from_secs(5),
        ca_file: None,
    }
}

/// A store with the default redaction (key patterns) plus `payload.card_number`.
async fn store(url: &str, registry: &str) -> EvidenceStore {
    store_with(database(url), registry).await
}

async fn store_with(settings: DatabaseSettings, registry: &str) -> EvidenceStore {
    let keys: Vec<String> =
        governance_sidecar::evidence::redact::DEFAULT_KEY_PATTERNS.iter().map(|k| k.to_string()).collect();
    let redactor = Redactor::new(&["payload.card_number".to_owned()], &keys).unwrap();
    EvidenceStore::connect(&settings, Registry::parse(registry).unwrap(), Mode::Enforce, redactor).await.unwrap()
}

impl Fixture {
    async fn count(&self, sql: &str) -> i64 {
        self.db.query_one(sql, &[]).await.unwrap().get(0)
    }

    async fn execute(&self, request: ExecuteWithEvidenceRequest) -> Result<ExecuteWithEvidenceResponse, tonic::Status> {
        self.server.client().await.execute_with_evidence(request).await.map(|r| r.into_inner())
    }
}

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
    let server = TestServer::start(ServerSettings::default(), GovernanceApi::with_evidence(store)).await;
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
async fn concurrent_migrators_apply_each_version_once_and_newer_schemas_are_refused() {
    let url = fresh_database().await;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = connect(&url).await;
            migrate::migrate(&mut client).await.unwrap()
        }));
    }
    let mut applied = Vec::new();
    for task in tasks {
        applied.extend(task.await.unwrap());
    }
    applied.sort();
    assert_eq!(applied, (1..=migrate::latest_version()).collect::<Vec<_>>());

    let client = connect(&url).await;
    migrate::check_schema(&client).await.unwrap();
    client
        .execute("INSERT INTO governance_schema_migrations (version, name) VALUES (999, 'future')", &[])
        .await
        .unwrap();
    let error = migrate::check_schema(&client).await.unwrap_err();
    assert!(error.to_string().contains("newer than this binary knows"), "{error}");
}

#[tokio::test]
async fn a_bad_statement_stops_start_up_naming_the_mutation() {
    let url = fresh_database().await;
    let mut admin = connect(&url).await;
    migrate::migrate(&mut admin).await.unwrap();
    let registry = Registry::parse(
        "[[mutations]]\nname = \"broken\"\nobject_type = \"x\"\noperation = \"create\"\nstatements = [\"INSERT INTO no_such_table VALUES (1)\"]\n",
    )
    .unwrap();
    let error = EvidenceStore::connect(&database(&url), registry, Mode::Enforce, Redactor::default())
        .await
        .err()
        .expect("start-up must fail");
    assert!(error.to_string().contains("mutation `broken`"), "{error}");
}

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
async fn a_mutation_over_the_statement_timeout_is_cancelled_and_rolled_back() {
    let f = fixture().await;
    let url = f.url.clone();
    let settings = DatabaseSettings { statement_timeout: Duration::from_millis(200), ..database(&url) };
    let server = TestServer::start(
        ServerSettings::default(),
        GovernanceApi::with_evidence(store_with(settings, REGISTRY).await),
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
        GovernanceApi::with_evidence(store_with(settings, REGISTRY).await),
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
async fn evidence_is_append_only_except_through_the_purge_function() {
    let f = fixture().await;
    f.execute(call(invoice_request(250, "USD"), Some("k-keep"), "create_invoice")).await.unwrap();
    f.execute(call(invoice_request(5000, "USD"), Some("k-denied"), "create_invoice")).await.unwrap();

    for tampering in [
        "UPDATE governance_events SET decision = 'approved'",
        "DELETE FROM governance_events",
        "TRUNCATE governance_events CASCADE",
        "UPDATE governance_mutation_results SET rows_affected = 0",
        "DELETE FROM governance_mutation_results",
        "TRUNCATE governance_mutation_results",
    ] {
        let error = f.db.batch_execute(tampering).await.expect_err(tampering);
        assert_eq!(
            error.code(),
            Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
            "{tampering}: {error}"
        );
    }
    // Another role with DELETE privilege cannot open the door by setting the flag itself.
    f.db.batch_execute("CREATE ROLE evidence_tamperer; GRANT DELETE, SELECT ON governance_events TO evidence_tamperer")
        .await
        .unwrap();
    let error = f
        .db
        .batch_execute("BEGIN; SET LOCAL ROLE evidence_tamperer; SET LOCAL governance.purging = 'on'; DELETE FROM governance_events; COMMIT")
        .await
        .expect_err("flag set by another role");
    assert_eq!(error.code(), Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE), "{error}");
    f.db.batch_execute("ROLLBACK").await.unwrap();
    // Nobody may run the purge function until it is granted.
    let error =
        f.db.batch_execute("BEGIN; SET LOCAL ROLE evidence_tamperer; SELECT governance_purge_before(now()); COMMIT")
            .await
            .expect_err("purge without a grant");
    assert_eq!(error.code(), Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE), "{error}");
    f.db.batch_execute("ROLLBACK; DROP OWNED BY evidence_tamperer; DROP ROLE evidence_tamperer").await.unwrap();
    assert_eq!(f.count("SELECT count(*) FROM governance_events").await, 2);

    // Retention: the purge function deletes what is older than the cutoff, results included.
    let purged: i64 =
        f.db.query_one("SELECT governance_purge_before(now() + interval '1 minute')", &[]).await.unwrap().get(0);
    assert_eq!(purged, 2);
    assert_eq!(f.count("SELECT count(*) FROM governance_events").await, 0);
    assert_eq!(f.count("SELECT count(*) FROM governance_mutation_results").await, 0);
    // ...and the door closes behind it.
    assert!(f.db.batch_execute("DELETE FROM governance_events").await.is_ok(), "nothing left to refuse");
    f.execute(call(invoice_request(250, "USD"), Some("k-after"), "create_invoice")).await.unwrap();
    assert!(f.db.batch_execute("DELETE FROM governance_events").await.is_err());
}

#[tokio::test]
async fn the_concurrency_limit_queues_governance_calls_but_never_health_checks() {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
    let f = fixture().await;
    let url = f.url.clone();
    let settings = ServerSettings { concurrency_limit: 1, ..ServerSettings::default() };
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
    let policies = std::sync::Arc::new(governance_sidecar::policies::PolicySource::load(&path).unwrap());
    let sha256 = policies.current().sha256.clone();
    let api = GovernanceApi::with_evidence(store(&f.url, REGISTRY).await).with_policies(policies, false);
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

fn in_workspace(workspace: &str, amount: i64) -> String {
    invoice_request(amount, "USD").replacen(
        r#""workspace_id": "ws_1""#,
        &format!(r#""workspace_id": "{workspace}""#),
        1,
    )
}

#[tokio::test]
async fn the_audit_api_finds_a_record_by_each_key() {
    use governance_sidecar::proto::{GetEvidenceRequest, IdempotencyRef, get_evidence_request::Key};
    let f = fixture().await;
    let written = f.execute(call(in_workspace("ws_audit", 250), Some("audit-1"), "create_invoice")).await.unwrap();
    let decision = written.decision.unwrap();
    let mut client = f.server.client().await;
    let get = |key: Key| {
        let request = GetEvidenceRequest { key: Some(key) };
        let mut client = client.clone();
        async move { client.get_evidence(request).await.map(|r| r.into_inner()) }
    };
    let by_id = get(Key::EvidenceId(written.evidence_id)).await.unwrap();
    assert_eq!((by_id.decision.as_str(), by_id.outcome.as_str()), ("approved", "applied"));
    assert_eq!(by_id.trace_hash, decision.trace_hash);
    assert_eq!(by_id.idempotency_key.as_deref(), Some("audit-1"));
    assert_eq!(by_id.mutation_result.as_ref().unwrap().rows_affected, 1);
    assert_eq!(by_id.policy_key.as_deref(), Some("invoice_create"));
    let stored = governance_sidecar::decision::json::parse(&by_id.response_json).unwrap();
    let sent = governance_sidecar::decision::json::parse(&decision.response_json).unwrap();
    assert_eq!(stored, sent, "the stored JSON is Kernite's response (nothing to redact here)");
    assert!(by_id.created_at.unwrap().seconds > 1_700_000_000);

    for key in [
        Key::CtxId(decision.ctx_id.clone()),
        Key::TraceHash(decision.trace_hash.clone()),
        Key::Idempotency(IdempotencyRef { workspace_id: "ws_audit".into(), idempotency_key: "audit-1".into() }),
    ] {
        assert_eq!(get(key.clone()).await.unwrap(), by_id, "{key:?}");
    }
    assert_eq!(get(Key::EvidenceId(written.evidence_id + 1000)).await.unwrap_err().code(), Code::NotFound);
    assert_eq!(get(Key::CtxId(String::new())).await.unwrap_err().code(), Code::InvalidArgument);
    let keyless = client.get_evidence(GetEvidenceRequest { key: None }).await.unwrap_err();
    assert_eq!(keyless.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn the_audit_api_lists_a_workspace_newest_first_in_pages() {
    use governance_sidecar::proto::ListEvidenceRequest;
    let f = fixture().await;
    let mut ids = Vec::new();
    for (i, amount) in [250, 5000, 300, 6000, 350, 400, 7000].into_iter().enumerate() {
        let response =
            f.execute(call(in_workspace("ws_pages", amount), Some(&format!("p-{i}")), "create_invoice")).await;
        ids.push(response.unwrap().evidence_id);
    }
    f.execute(call(in_workspace("ws_other", 250), None, "create_invoice")).await.unwrap();
    let client = f.server.client().await;
    let list = |request: ListEvidenceRequest| {
        let mut client = client.clone();
        async move { client.list_evidence(request).await.map(|r| r.into_inner()) }
    };
    let workspace = || ListEvidenceRequest { workspace_id: "ws_pages".into(), ..Default::default() };

    // Pages of 3: 3 + 3 + 1, newest first, each row once.
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = list(ListEvidenceRequest { page_size: 3, page_token: token, ..workspace() }).await.unwrap();
        pages += 1;
        seen.extend(page.records.iter().map(|r| r.evidence_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let newest_first: Vec<i64> = ids.iter().rev().copied().collect();
    assert_eq!(seen, newest_first);
    assert_eq!(pages, 3);

    let denied = list(ListEvidenceRequest { decision: "denied".into(), ..workspace() }).await.unwrap();
    assert_eq!(denied.records.iter().map(|r| r.evidence_id).collect::<Vec<_>>(), [ids[6], ids[3], ids[1]]);
    assert!(denied.records.iter().all(|r| r.outcome == "not_applied"));
    let wrong_scope = list(ListEvidenceRequest { operation: "delete".into(), ..workspace() }).await.unwrap();
    assert!(wrong_scope.records.is_empty());
    let scoped = list(ListEvidenceRequest { object_type: "invoice".into(), operation: "create".into(), ..workspace() });
    assert_eq!(scoped.await.unwrap().records.len(), 7);

    // Time range: from the fifth row on, and before it.
    let all = list(workspace()).await.unwrap().records;
    let fifth = all.iter().find(|r| r.evidence_id == ids[4]).unwrap().created_at;
    let since = list(ListEvidenceRequest { since: fifth, ..workspace() }).await.unwrap().records;
    let until = list(ListEvidenceRequest { until: fifth, ..workspace() }).await.unwrap().records;
    assert_eq!(since.len() + until.len(), 7, "since is inclusive, until exclusive");
    assert!(since.iter().all(|r| r.evidence_id >= ids[4]) && until.iter().all(|r| r.evidence_id < ids[4]));

    for bad in [
        ListEvidenceRequest { page_token: "v1.nope".into(), ..workspace() },
        ListEvidenceRequest { decision: "maybe".into(), ..workspace() },
        ListEvidenceRequest::default(),
    ] {
        assert_eq!(list(bad).await.unwrap_err().code(), Code::InvalidArgument);
    }
    let huge = list(ListEvidenceRequest { page_size: 1_000_000, ..workspace() }).await.unwrap();
    assert_eq!(huge.records.len(), 7, "an over-large page size is capped, not refused");
}

#[tokio::test]
async fn a_callers_traceparent_joins_the_evidence_row_and_the_answer_names_its_ctx_id() {
    let f = fixture().await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut request = tonic::Request::new(call(invoice_request(250, "USD"), Some("traced"), "create_invoice"));
    request.metadata_mut().insert("traceparent", traceparent.parse().unwrap());
    let response = f.server.client().await.execute_with_evidence(request).await.unwrap();
    let ctx_id = response.metadata().get("x-ctx-id").unwrap().to_str().unwrap().to_owned();
    assert_eq!(ctx_id, response.get_ref().decision.as_ref().unwrap().ctx_id);
    let row = f.db.query_one("SELECT ctx_id, trace_id FROM governance_events", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), ctx_id);
    assert_eq!(row.get::<_, Option<String>>(1).as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));

    // A refusal that has a ctx_id (Kernite's 400) carries it too; a malformed
    // traceparent is ignored, never an error.
    let mut invalid = tonic::Request::new(call(r#"{"workspace_id": "w"}"#.into(), None, "create_invoice"));
    invalid.metadata_mut().insert("traceparent", "garbage".parse().unwrap());
    let status = f.server.client().await.execute_with_evidence(invalid).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.metadata().get("x-ctx-id").unwrap().to_str().unwrap().starts_with("ctx_"));
    let untraced = f.execute(call(invoice_request(300, "USD"), None, "create_invoice")).await.unwrap();
    let row = f.db.query_one("SELECT trace_id FROM governance_events WHERE id = $1", &[&untraced.evidence_id]).await;
    assert_eq!(row.unwrap().get::<_, Option<String>>(0), None);
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
