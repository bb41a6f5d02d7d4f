//! The ExecuteWithEvidence fixture: a fresh PostgreSQL database with the
//! invoice tables, a sidecar on it running as the least-privilege
//! role, the mutation registry the tests call, and request builders.

use std::time::Duration;

use super::TestServer;
use super::postgres::{connect, fresh_database};
use governance_sidecar::api::GovernanceApi;
use governance_sidecar::config::ServerSettings;
use governance_sidecar::evidence::redact::Redactor;
use governance_sidecar::evidence::{EvidenceStore, WriteSettings};
use governance_sidecar::log::sequencer::{self, LogKeeping};
use governance_sidecar::mutations::Registry;
use governance_sidecar::postgres::{DatabaseSettings, DatabaseTarget};
use governance_sidecar::proto::{
    ExecuteWithEvidenceRequest, ExecuteWithEvidenceResponse, MutationCall, execute_with_evidence_request::Body,
};
use governance_sidecar::schema::layout::EvidenceLayout;
use governance_sidecar::schema::migrate;
use governance_sidecar::upkeep::Upkeep;
use governance_sidecar::vocabulary::Mode;

const INVOICES: &str = "CREATE TABLE invoices (
    id bigserial PRIMARY KEY,
    workspace_id text NOT NULL,
    amount bigint NOT NULL CHECK (amount > 0),
    currency text NOT NULL,
    evidence_id bigint NOT NULL);
    CREATE TABLE numbered_invoices (number bigint PRIMARY KEY)";

/// The two ways an approved write runs: `create_invoice` binds the evidence
/// id, so its mutation waits for the evidence row in a transaction of two
/// round trips; `create_invoice_plain` does not, so it is written with its
/// evidence as one statement.
pub const BOTH_PATHS: [&str; 2] = ["create_invoice", "create_invoice_plain"];

pub const REGISTRY: &str = r#"
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
name = "create_invoice_returning_secrets"
object_type = "invoice"
operation = "create"
statements = ["INSERT INTO invoices (workspace_id, amount, currency, evidence_id) VALUES (:workspace_id, :amount, :currency, 0) RETURNING id, currency AS api_key, NULL::text AS password, amount::real / 8 AS eighth"]
[mutations.params]
workspace_id = { type = "text", builtin = "workspace_id" }
amount = { type = "bigint", request = "payload.amount" }
currency = { type = "text", request = "payload.currency" }

[[mutations]]
name = "create_invoice_commented"
object_type = "invoice"
operation = "create"
statements = ["INSERT INTO invoices (workspace_id, amount, currency, evidence_id) VALUES (:workspace_id, :amount, :currency, 0) RETURNING id -- a trailing comment"]
[mutations.params]
workspace_id = { type = "text", builtin = "workspace_id" }
amount = { type = "bigint", request = "payload.amount" }
currency = { type = "text", request = "payload.currency" }

[[mutations]]
name = "touch_invoices"
object_type = "invoice"
operation = "create"
statements = ["UPDATE invoices SET amount = amount WHERE currency = :currency"]
[mutations.params]
currency = { type = "text", request = "payload.currency" }

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
pub fn invoice_request(amount: i64, currency: &str) -> String {
    format!(
        r#"{{"workspace_id": "ws_1", "principal": {{"type": "user", "id": "usr_42"}}, "object_type": "invoice", "operation": "create", "payload": {{"amount": {amount}, "currency": "{currency}"}}, "policy_context": {{"governed": true, "selected_policies": [{{"policy_key": "invoice_create", "policy_version": 3, "rules": [{{"rule_key": "amount_limit", "rule_definition": {{"type": "max_value", "field": "amount", "max": 1000}}}}, {{"rule_key": "currency", "rule_definition": {{"type": "allowed_values", "field": "currency", "values": ["USD", "EUR"]}}}}]}}]}}}}"#
    )
}

pub fn call(json: String, key: Option<&str>, mutation: &str) -> ExecuteWithEvidenceRequest {
    ExecuteWithEvidenceRequest {
        body: Some(Body::RequestJson(json)),
        idempotency_key: key.map(str::to_owned),
        mutation: Some(MutationCall { name: mutation.into(), params: None }),
        answer_form: 0,
    }
}

pub struct Fixture {
    pub server: TestServer,
    pub db: tokio_postgres::Client,
    /// The test database, as its owner: for tests that start a store of their own.
    pub url: String,
    /// The sidecar's role's URL.
    pub sidecar_url: String,
}

pub async fn fixture() -> Fixture {
    fixture_keeping(None).await
}

/// The fixture, its sidecar keeping the verifiable log when given how.
pub async fn fixture_keeping(log: Option<LogKeeping>) -> Fixture {
    fixture_in(EvidenceLayout::Reference, Upkeep::default(), log).await
}

/// The fixture with its evidence tables in `layout` (converted after the
/// sidecar's role was granted its rights on the reference tables, as an
/// existing deployment would be), its store with `upkeep`.
pub async fn fixture_in(layout: EvidenceLayout, upkeep: Upkeep, log: Option<LogKeeping>) -> Fixture {
    fixture_serving(layout, upkeep, log, ServerSettings::default(), |api| api).await
}

/// The fixture with its server started with `settings`, its API as `serve` wires it by `customize`
/// (a gate, a policy bundle).
pub async fn fixture_serving(
    layout: EvidenceLayout,
    upkeep: Upkeep,
    log: Option<LogKeeping>,
    settings: ServerSettings,
    customize: impl FnOnce(GovernanceApi) -> GovernanceApi,
) -> Fixture {
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
    // The sidecar runs as the least-privilege role docs/production.md recommends.
    let role = least_privilege_role(&admin).await;
    migrate::migrate_to(&mut admin, Some(layout)).await.unwrap();
    let sidecar_url = url.replacen("postgres@", &format!("{role}@"), 1);
    let writes = WriteSettings { key_lifetime: upkeep.key_lifetime, ..WriteSettings::default() };
    let store = store_writing(database(&sidecar_url), writes, REGISTRY).await;
    let mut api = GovernanceApi::with_evidence(store).allowing_request_policies(true);
    if let Some(log) = log {
        api = api.with_log_state(sequencer::spawn(DatabaseTarget::new(&sidecar_url), &log).unwrap());
    }
    let server = TestServer::start(settings, customize(api)).await;
    Fixture { server, db: admin, url, sidecar_url }
}

/// The recommended role (docs/production.md): it may add evidence and read it back for
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
             GRANT INSERT, SELECT ON governance_log_batches, governance_log_checkpoints TO {role};
             GRANT SELECT ON governance_log_retention TO {role};
             -- what the test mutations need
             GRANT INSERT, UPDATE, DELETE, SELECT ON invoices TO {role}; -- SELECT: for RETURNING
             GRANT INSERT ON numbered_invoices TO {role};
             GRANT USAGE ON SEQUENCE invoices_id_seq, attempts TO {role};"
        ))
        .await
        .unwrap();
    role
}

pub fn database(url: &str) -> DatabaseSettings {
    DatabaseSettings {
        target: DatabaseTarget::new(url),
        pool_size: 8,
        wait_timeout: Duration::from_secs(2),
        statement_timeout: Duration::from_secs(5),
    }
}

/// A store with the default redaction (key patterns) plus `payload.card_number`.
pub async fn store(url: &str, registry: &str) -> EvidenceStore {
    store_with(database(url), registry).await
}

pub async fn store_with(settings: DatabaseSettings, registry: &str) -> EvidenceStore {
    store_writing(settings, WriteSettings::default(), registry).await
}

/// A store as [`store`] makes it, sending writes as `writes` says.
pub async fn store_writing(settings: DatabaseSettings, writes: WriteSettings, registry: &str) -> EvidenceStore {
    let keys: Vec<String> = governance_sidecar::defaults::DEFAULT_KEY_PATTERNS.iter().map(|k| k.to_string()).collect();
    let redactor = Redactor::new(&["payload.card_number".to_owned()], &keys).unwrap();
    let registry = Registry::parse(registry).unwrap().with_default_mode(Mode::Enforce);
    EvidenceStore::connect(&settings, writes, registry, redactor).await.unwrap()
}

impl Fixture {
    pub async fn count(&self, sql: &str) -> i64 {
        self.db.query_one(sql, &[]).await.unwrap().get(0)
    }

    pub async fn execute(
        &self,
        request: ExecuteWithEvidenceRequest,
    ) -> Result<ExecuteWithEvidenceResponse, tonic::Status> {
        self.server.client().await.execute_with_evidence(request).await.map(|r| r.into_inner())
    }
}
