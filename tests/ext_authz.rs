//! The gateway as Envoy's external authorization server: every test sends
//! `envoy.service.auth.v3.Authorization/Check` through a tonic client built
//! from Envoy's own protos, shaped as Envoy sends it (the original request's
//! method, path with its query, lower-case header map with pseudo-headers and
//! `x-request-id`, the body as `with_request_body` passes it), to a real
//! sidecar on a real PostgreSQL.
//!
//! Every allowed or denied decision must have its evidence row committed
//! *before* the answer: each test reads the rows over a connection of its
//! own (the fixture's admin connection, not the sidecar's pool) the moment
//! the answer arrives.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::TestServer;
use common::evidence::{Fixture, fixture_serving};
use common::postgres::{OwnedPostgres, connect};
use governance_sidecar::access::{Gate, callers};
use governance_sidecar::api::GovernanceApi;
use governance_sidecar::config::{Limits, ServerSettings};
use governance_sidecar::evidence::redact::Redactor;
use governance_sidecar::evidence::{EvidenceStore, WriteSettings};
use governance_sidecar::gateway::{FailureMode, Gateway, GatewaySettings, PrincipalSource, Unmapped, WorkspaceSource};
use governance_sidecar::mutations::Registry;
use governance_sidecar::policies::{self, OperationMap};
use governance_sidecar::postgres::{DatabaseSettings, DatabaseTarget};
use governance_sidecar::proto::envoy::config::core::v3::header_value_option::HeaderAppendAction;
use governance_sidecar::proto::envoy::config::core::v3::{HeaderValueOption, Metadata};
use governance_sidecar::proto::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use governance_sidecar::proto::envoy::service::auth::v3::check_response::HttpResponse;
use governance_sidecar::proto::envoy::service::auth::v3::{
    AttributeContext, CheckRequest, CheckResponse, attribute_context,
};
use governance_sidecar::schema::layout::EvidenceLayout;
use governance_sidecar::schema::migrate;
use governance_sidecar::upkeep::Upkeep;
use governance_sidecar::vocabulary::Mode;
use sha2::{Digest as _, Sha256};
use tonic::Code;
use tonic::transport::Channel;

// ---- what the sidecar is configured with -----------------------------------------

/// The gateway's routes: `POST /invoices` is invoice/create (the example
/// bundle governs it, enforce); `GET /invoices` is mapped but not governed
/// (so unmapped); `POST /invoices/{invoiceId}/void` is mapped to a scope the
/// bundle does not mention (invoice/update).
const MAP: &str = r#"{"operations": [
  {"operation_id": "createInvoice", "method": "post", "path": "/invoices", "object_type": "invoice", "operation": "create"},
  {"operation_id": "listInvoices", "method": "get", "path": "/invoices", "object_type": "invoice", "operation": "list", "governed": false},
  {"operation_id": "voidInvoice", "method": "post", "path": "/invoices/{invoiceId}/void", "object_type": "invoice", "operation": "update"}
]}"#;

/// Observe and skip scopes: invoice/create observed (a denial passes),
/// invoice/delete skipped (nothing is decided).
const MODES_BUNDLE: &str = r#"{
  "schema_version": "kernite.policy.bundle.v1",
  "policies": [{"policy_key": "invoice_create", "policy_version": 1, "effect": "allow",
    "rules": [{"rule_key": "max_amount", "rule_definition": {"type": "max_value", "field": "amount", "max": 1000}}]}],
  "governed_scopes": [{"object_type": "invoice", "operation": "create"}, {"object_type": "invoice", "operation": "delete"}],
  "operation_map": [
    {"operation_id": "createInvoice", "method": "post", "path": "/invoices", "governed": true,
     "object_type": "invoice", "operation": "create", "policy_key": "invoice_create", "mode": "observe"},
    {"operation_id": "deleteInvoice", "method": "delete", "path": "/invoices/{invoiceId}", "governed": true,
     "object_type": "invoice", "operation": "delete", "policy_key": null, "mode": "skip"}
  ]
}"#;

fn example_bundle() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/examples/invoice/policy-bundle.json")
}

/// Workspace and principal from headers, unmapped routes denied, fail closed.
fn gateway_settings() -> GatewaySettings {
    GatewaySettings {
        workspace: WorkspaceSource::parse("header:x-workspace-id").unwrap(),
        principal: PrincipalSource::parse("header:x-user-id").unwrap(),
        principal_type: None,
        unmapped: Unmapped::Deny,
        failure: FailureMode::Closed,
    }
}

fn gateway(settings: GatewaySettings, map: &str) -> Gateway {
    Gateway::new(settings, &OperationMap::parse(map).unwrap()).unwrap()
}

/// A bundle file of the test's own.
fn bundle_file(name: &str, text: &str) -> PathBuf {
    let path = common::scratch(&format!("ext-authz-{name}-bundle")).join("policy-bundle.json");
    std::fs::write(&path, text).unwrap();
    path
}

/// The invoice fixture's database and sidecar, as `serve` wires the gateway:
/// `bundle` deciding, `gateway` translating, on `server` settings, behind `gate`.
async fn sidecar_with(bundle: &Path, gateway: Gateway, server: ServerSettings, gate: Option<Gate>) -> Fixture {
    let policies = Arc::new(policies::load(bundle).unwrap());
    fixture_serving(EvidenceLayout::Reference, Upkeep::default(), None, server, move |api| {
        let api = api.with_policies(policies, false).with_gateway(gateway);
        match gate {
            Some(gate) => api.with_gate(gate),
            None => api,
        }
    })
    .await
}

/// The example bundle, [`MAP`], [`gateway_settings`].
async fn sidecar() -> Fixture {
    sidecar_with(&example_bundle(), gateway(gateway_settings(), MAP), ServerSettings::default(), None).await
}

// ---- what Envoy sends -------------------------------------------------------------

/// The original request's headers as Envoy's ext_authz filter passes them:
/// lower-case names, pseudo-headers included.
fn envoy_headers(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> HashMap<String, String> {
    let mut map: HashMap<String, String> = [
        (":authority", "invoices.example.com"),
        (":method", method),
        (":path", path),
        (":scheme", "https"),
        ("user-agent", "curl/8.5.0"),
        ("accept", "*/*"),
        ("x-forwarded-proto", "https"),
        ("x-envoy-internal", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    if !body.is_empty() {
        map.insert("content-length".into(), body.len().to_string());
    }
    for (name, value) in headers {
        map.insert(name.to_ascii_lowercase(), (*value).to_owned());
    }
    map
}

/// A CheckRequest for `method path` (the path with its query, as Envoy sends
/// it), its body in `body` (`with_request_body`, not packed as bytes).
fn envoy(method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> CheckRequest {
    let header_map = envoy_headers(method, path, headers, body.as_bytes());
    let http = attribute_context::HttpRequest {
        id: header_map.get("x-request-id").cloned().unwrap_or_default(),
        method: method.to_owned(),
        headers: header_map,
        path: path.to_owned(),
        host: "invoices.example.com".into(),
        scheme: "https".into(),
        protocol: "HTTP/1.1".into(),
        size: if body.is_empty() { -1 } else { body.len() as i64 },
        body: body.to_owned(),
        ..attribute_context::HttpRequest::default()
    };
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(attribute_context::Request {
                time: Some(prost_types::Timestamp { seconds: 1_760_000_000, nanos: 0 }),
                http: Some(http),
            }),
            ..AttributeContext::default()
        }),
    }
}

fn http_of(request: &mut CheckRequest) -> &mut attribute_context::HttpRequest {
    request.attributes.as_mut().unwrap().request.as_mut().unwrap().http.as_mut().unwrap()
}

/// The headers a client of the invoice API sends through Envoy.
fn client<'a>(request_id: &'a str, workspace: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("content-type", "application/json"),
        ("x-request-id", request_id),
        ("x-workspace-id", workspace),
        ("x-user-id", "usr_42"),
    ]
}

fn invoice(amount: i64, currency: &str) -> String {
    format!(r#"{{"amount": {amount}, "currency": "{currency}"}}"#)
}

/// `POST /invoices` of `amount` USD with request id `id`, in workspace `ws_gateway`.
fn create(id: &str, amount: i64) -> CheckRequest {
    envoy("POST", "/invoices", &client(id, "ws_gateway"), &invoice(amount, "USD"))
}

// ---- what the sidecar answers -----------------------------------------------------

/// A CheckResponse, flattened.
#[derive(Debug, Clone)]
struct Answer {
    /// `CheckResponse.status.code`.
    code: i32,
    /// ok_response (the request passes) rather than denied_response.
    passes: bool,
    /// denied_response.status.code.
    http_status: Option<i32>,
    /// (name, value, append_action).
    headers: Vec<(String, String, i32)>,
    headers_to_remove: Vec<String>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _, _)| key == name).map(|(_, value, _)| value.as_str())
    }

    fn must(&self, name: &str) -> &str {
        self.header(name).unwrap_or_else(|| panic!("no {name} in {self:#?}"))
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not a JSON body ({e}): {self:#?}"))
    }

    /// A denial with `code` in the CheckResponse and `status` to the client,
    /// saying `decision`, with a JSON body.
    fn assert_denied(&self, code: Code, status: i32, decision: &str) {
        assert!(!self.passes, "passed: {self:#?}");
        assert_eq!(self.code, code as i32, "{self:#?}");
        assert_eq!(self.http_status, Some(status), "{self:#?}");
        assert_eq!(self.header("x-governance-decision"), Some(decision), "{self:#?}");
        assert_eq!(self.header("content-type"), Some("application/json; charset=utf-8"), "{self:#?}");
        let _ = self.json();
    }

    /// A refusal: denied with `status`, `{"message", "code"}`, nothing decided.
    fn assert_refused(&self, code: Code, status: i32) {
        self.assert_denied(code, status, "refused");
        let body = self.json();
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
        assert!(self.header("x-governance-ctx-id").is_none() && self.header("x-governance-evidence-id").is_none());
    }
}

fn headers_of(options: Vec<HeaderValueOption>) -> Vec<(String, String, i32)> {
    options
        .into_iter()
        .map(|option| {
            let header = option.header.expect("a header");
            let value = if header.raw_value.is_empty() {
                header.value
            } else {
                String::from_utf8(header.raw_value).expect("a UTF-8 header")
            };
            (header.key, value, option.append_action)
        })
        .collect()
}

fn flatten(response: CheckResponse) -> Answer {
    let code = response.status.as_ref().map_or(0, |s| s.code);
    match response.http_response.expect("an http_response") {
        HttpResponse::OkResponse(ok) => Answer {
            code,
            passes: true,
            http_status: None,
            headers: headers_of(ok.headers),
            headers_to_remove: ok.headers_to_remove,
            body: String::new(),
        },
        HttpResponse::DeniedResponse(denied) => Answer {
            code,
            passes: false,
            http_status: denied.status.map(|s| s.code),
            headers: headers_of(denied.headers),
            headers_to_remove: Vec::new(),
            body: denied.body,
        },
        other => panic!("neither ok nor denied: {other:?}"),
    }
}

async fn authorization(address: std::net::SocketAddr) -> AuthorizationClient<Channel> {
    let channel = Channel::from_shared(format!("http://{address}")).unwrap().connect().await.unwrap();
    AuthorizationClient::new(channel)
}

/// One Check, answered (not a failed call).
async fn check(f: &Fixture, request: CheckRequest) -> Answer {
    check_at(f.server.address, request).await
}

async fn check_at(address: std::net::SocketAddr, request: CheckRequest) -> Answer {
    let response = authorization(address).await.check(request).await.unwrap_or_else(|s| panic!("Check failed: {s:?}"));
    flatten(response.into_inner())
}

// ---- the evidence -----------------------------------------------------------------

#[derive(Debug, Clone)]
struct Row {
    id: i64,
    mutation: Option<String>,
    decision: String,
    outcome: String,
    mode: String,
    workspace: String,
    principal: String,
    ctx_id: String,
    trace_hash: String,
    idempotency_key: Option<String>,
    caller: Option<String>,
    reason_codes: serde_json::Value,
    request: serde_json::Value,
}

/// Every evidence row, oldest first, read over the test's own connection.
async fn rows(db: &tokio_postgres::Client) -> Vec<Row> {
    let found = db
        .query(
            "SELECT id, mutation_name, decision, outcome, mode, workspace_id, principal_id, ctx_id, trace_hash,
                    idempotency_key, caller, reason_codes, request_json
             FROM governance_events ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    found
        .iter()
        .map(|row| Row {
            id: row.get(0),
            mutation: row.get(1),
            decision: row.get(2),
            outcome: row.get(3),
            mode: row.get(4),
            workspace: row.get(5),
            principal: row.get(6),
            ctx_id: row.get(7),
            trace_hash: row.get(8),
            idempotency_key: row.get(9),
            caller: row.get(10),
            reason_codes: row.get(11),
            request: row
                .get::<_, Option<String>>(12)
                .map_or(serde_json::Value::Null, |text| serde_json::from_str(&text).unwrap()),
        })
        .collect()
}

/// The one row there is.
async fn only_row(db: &tokio_postgres::Client) -> Row {
    let all = rows(db).await;
    assert_eq!(all.len(), 1, "exactly one evidence row: {all:#?}");
    all.into_iter().next().unwrap()
}

async fn row_count(db: &tokio_postgres::Client) -> usize {
    rows(db).await.len()
}

/// The headers of a decided answer name its row: its ctx id, trace hash and id.
fn assert_names_row(answer: &Answer, row: &Row) {
    assert_eq!(answer.must("x-governance-ctx-id"), row.ctx_id);
    assert_eq!(answer.must("x-governance-trace-hash"), row.trace_hash);
    assert_eq!(answer.must("x-governance-evidence-id"), row.id.to_string());
}

// ---- 1. approved -------------------------------------------------------------------

#[tokio::test]
async fn an_approved_request_passes_with_its_decision_headers_after_its_row_is_committed() {
    let f = sidecar().await;
    let answer = check(&f, create("req-approved-1", 250)).await;

    assert!(answer.passes, "{answer:#?}");
    assert_eq!(answer.code, Code::Ok as i32);
    assert_eq!(answer.must("x-governance-decision"), "approved");
    for name in ["x-governance-decision", "x-governance-ctx-id", "x-governance-trace-hash", "x-governance-evidence-id"]
    {
        let (_, _, action) = answer.headers.iter().find(|(key, _, _)| key == name).unwrap();
        assert_eq!(*action, HeaderAppendAction::OverwriteIfExistsOrAdd as i32, "{name}");
    }
    // A client's own headers of the names the sidecar does not set are removed from the upstream request.
    for name in ["x-governance-reason-codes", "x-governance-fail-open"] {
        assert!(answer.headers_to_remove.iter().any(|h| h == name), "{name} not removed: {answer:#?}");
        assert!(answer.header(name).is_none());
    }

    // Committed before the answer: visible to another connection now.
    let row = only_row(&f.db).await;
    assert_names_row(&answer, &row);
    assert!(row.ctx_id.starts_with("ctx_"), "{row:?}");
    assert_eq!(row.mutation.as_deref(), Some("POST /invoices"));
    assert_eq!(row.idempotency_key.as_deref(), Some("req-approved-1"));
    assert_eq!(
        (row.decision.as_str(), row.outcome.as_str(), row.mode.as_str()),
        ("approved", "not_applied", "enforce")
    );
    assert_eq!(row.caller.as_deref(), Some("local"));
    assert_eq!((row.workspace.as_str(), row.principal.as_str()), ("ws_gateway", "usr_42"));
    assert_eq!(row.request["principal"]["type"], "user", "{}", row.request);
    assert_eq!(row.request["payload"], serde_json::json!({"amount": 250, "currency": "USD"}));
    assert_eq!(f.count("SELECT count(*) FROM invoices").await, 0, "the sidecar itself writes nothing");
}

/// Many checks at once, approved and denied: each answer's row is there, on
/// a connection of its own, the moment the answer arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_of_many_at_once_follows_its_committed_row() {
    let f = sidecar().await;
    let checks = (0..16).map(|i| {
        let (address, url) = (f.server.address, f.url.clone());
        async move {
            let id = format!("req-many-{i}");
            let amount = if i % 4 == 0 { 5000 } else { 100 + i };
            let answer = check_at(address, create(&id, amount)).await;
            let db = connect(&url).await;
            let found = db
                .query("SELECT id, decision FROM governance_events WHERE idempotency_key = $1", &[&id])
                .await
                .unwrap();
            (i, answer, found.iter().map(|r| (r.get::<_, i64>(0), r.get::<_, String>(1))).collect::<Vec<_>>())
        }
    });
    for (i, answer, found) in futures_util::future::join_all(checks).await {
        let decision = if i % 4 == 0 { "denied" } else { "approved" };
        assert_eq!(answer.passes, decision == "approved", "{i}: {answer:#?}");
        assert_eq!(found.len(), 1, "{i}: the row was not there when the answer came: {found:?}");
        assert_eq!(found[0].1, decision, "{i}");
        assert_eq!(answer.must("x-governance-evidence-id"), found[0].0.to_string(), "{i}");
    }
    assert_eq!(row_count(&f.db).await, 16);
}

/// The query's parameters join the body's; a body Envoy packs as bytes
/// (`pack_as_bytes`) reads as the same body.
#[tokio::test]
async fn query_parameters_and_a_raw_body_make_the_payload() {
    let f = sidecar().await;
    let mut request = envoy("POST", "/invoices?draft=yes&tag=a&tag=b", &client("req-raw-1", "ws_gateway"), "");
    http_of(&mut request).raw_body = br#"{"amount": 40, "currency": "EUR"}"#.to_vec();
    let answer = check(&f, request).await;
    assert!(answer.passes, "{answer:#?}");
    assert_eq!(answer.must("x-governance-decision"), "approved");
    let row = only_row(&f.db).await;
    assert_names_row(&answer, &row);
    assert_eq!(
        row.request["payload"],
        serde_json::json!({"amount": 40, "currency": "EUR", "draft": "yes", "tag": ["a", "b"]}),
        "{}",
        row.request
    );

    // The query decides too: a currency the bundle refuses, given in the query only.
    let answer =
        check(&f, envoy("POST", "/invoices?currency=GBP&amount=10", &client("req-raw-2", "ws_gateway"), "")).await;
    answer.assert_denied(Code::PermissionDenied, 403, "denied");
    assert_eq!(row_count(&f.db).await, 2);
}

// ---- 2. denied ---------------------------------------------------------------------

#[tokio::test]
async fn a_denied_request_is_answered_403_with_kernites_reasons_after_its_row_is_committed() {
    let f = sidecar().await;
    let answer = check(&f, create("req-denied-1", 5000)).await;

    answer.assert_denied(Code::PermissionDenied, 403, "denied");
    let row = only_row(&f.db).await;
    assert_names_row(&answer, &row);
    assert_eq!((row.decision.as_str(), row.outcome.as_str()), ("denied", "not_applied"));
    assert_eq!(row.mutation.as_deref(), Some("POST /invoices"));
    assert_eq!(row.idempotency_key.as_deref(), Some("req-denied-1"));
    let codes: Vec<String> =
        row.reason_codes.as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect();
    assert!(!codes.is_empty(), "{row:?}");
    assert_eq!(answer.must("x-governance-reason-codes"), codes.join(","));

    // The body is Kernite's response, as recorded.
    let body = answer.json();
    assert_eq!(body["ctx_id"], row.ctx_id.as_str(), "{body}");
    assert!(body["message"].is_string(), "{body}");
    assert_eq!(body["data"]["decision"], "denied", "{body}");
    assert_eq!(body["data"]["reason_codes"], row.reason_codes, "{body}");
    assert_eq!(body["data"]["trace_hash"], row.trace_hash.as_str(), "{body}");
    let reasons = body["data"]["reasons"].as_array().expect("reasons");
    assert!(reasons.iter().any(|r| r.to_string().contains("max_amount")), "the failing rule is named: {body}");
    for (_, _, action) in &answer.headers {
        assert_eq!(*action, HeaderAppendAction::OverwriteIfExistsOrAdd as i32, "{answer:#?}");
    }
}

// ---- 3. retries --------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_with_the_same_request_id_replays_the_decision_and_another_request_with_it_is_409() {
    let f = sidecar().await;
    let first = check(&f, create("req-retry-1", 250)).await;
    assert!(first.passes, "{first:#?}");
    for _ in 0..3 {
        let again = check(&f, create("req-retry-1", 250)).await;
        assert!(again.passes, "{again:#?}");
        assert_eq!(again.must("x-governance-decision"), "approved");
        assert_eq!(again.must("x-governance-ctx-id"), first.must("x-governance-ctx-id"));
        assert_eq!(again.must("x-governance-trace-hash"), first.must("x-governance-trace-hash"));
        assert_eq!(again.must("x-governance-evidence-id"), first.must("x-governance-evidence-id"));
    }
    // Envoy's retries may race: all of them replay the one row.
    let racing = (0..8).map(|_| check_at(f.server.address, create("req-retry-1", 250)));
    for again in futures_util::future::join_all(racing).await {
        assert!(again.passes, "{again:#?}");
        assert_eq!(again.must("x-governance-evidence-id"), first.must("x-governance-evidence-id"));
        assert_eq!(again.must("x-governance-ctx-id"), first.must("x-governance-ctx-id"));
    }
    let row = only_row(&f.db).await;
    assert_names_row(&first, &row);

    // A denial replays as the same denial.
    let denied = check(&f, create("req-retry-2", 5000)).await;
    denied.assert_denied(Code::PermissionDenied, 403, "denied");
    let replayed = check(&f, create("req-retry-2", 5000)).await;
    replayed.assert_denied(Code::PermissionDenied, 403, "denied");
    assert_eq!(replayed.must("x-governance-evidence-id"), denied.must("x-governance-evidence-id"));
    assert_eq!(replayed.must("x-governance-ctx-id"), denied.must("x-governance-ctx-id"));
    assert_eq!(replayed.must("x-governance-reason-codes"), denied.must("x-governance-reason-codes"));
    assert_eq!(replayed.json(), denied.json());
    assert_eq!(row_count(&f.db).await, 2);

    // Another request under an id already used: 409, no row.
    let other = check(&f, create("req-retry-1", 300)).await;
    other.assert_refused(Code::AlreadyExists, 409);
    assert_eq!(other.json()["code"], "ALREADY_EXISTS", "{}", other.body);
    // The denial reaches the proxy's client: it names no other request's row.
    assert!(!other.body.contains("evidence id"), "{}", other.body);
    assert_eq!(row_count(&f.db).await, 2, "a reused id wrote a row");

    // Without an x-request-id, every check is a request of its own.
    let anonymous =
        client("unused", "ws_gateway").into_iter().filter(|(k, _)| *k != "x-request-id").collect::<Vec<_>>();
    for _ in 0..2 {
        let answer = check(&f, envoy("POST", "/invoices", &anonymous, &invoice(10, "USD"))).await;
        assert!(answer.passes, "{answer:#?}");
    }
    let all = rows(&f.db).await;
    assert_eq!(all.len(), 4);
    assert!(all[2..].iter().all(|row| row.idempotency_key.is_none()), "{all:#?}");

    // A first request whose retries race from the start: one row, one answer for all.
    let racing = (0..8).map(|_| check_at(f.server.address, create("req-retry-race", 300)));
    let answers = futures_util::future::join_all(racing).await;
    for answer in &answers {
        assert!(answer.passes, "{answer:#?}");
        assert_eq!(answer.must("x-governance-evidence-id"), answers[0].must("x-governance-evidence-id"));
        assert_eq!(answer.must("x-governance-ctx-id"), answers[0].must("x-governance-ctx-id"));
    }
    assert_eq!(row_count(&f.db).await, 5, "racing retries wrote more than one row");
}

// ---- 4. unmapped -------------------------------------------------------------------

#[tokio::test]
async fn an_unmapped_route_is_denied_403_without_a_row() {
    let f = sidecar().await;
    for (method, path) in [("DELETE", "/invoices/7"), ("GET", "/invoices"), ("POST", "/payments"), ("PUT", "/invoices")]
    {
        let answer = check(&f, envoy(method, path, &client("req-unmapped", "ws_gateway"), "")).await;
        answer.assert_denied(Code::PermissionDenied, 403, "unmapped");
        let body = answer.json();
        assert!(body["message"].as_str().unwrap().contains(path), "{method} {path}: {body}");
    }
    assert_eq!(row_count(&f.db).await, 0, "an unmapped route wrote evidence");
}

#[tokio::test]
async fn an_unmapped_route_passes_when_the_operator_allows_it_without_a_row() {
    let settings = GatewaySettings { unmapped: Unmapped::Allow, ..gateway_settings() };
    let f = sidecar_with(&example_bundle(), gateway(settings, MAP), ServerSettings::default(), None).await;
    let answer = check(&f, envoy("GET", "/invoices?page=2", &client("req-allow-1", "ws_gateway"), "")).await;
    assert!(answer.passes, "{answer:#?}");
    assert_eq!(answer.code, Code::Ok as i32);
    assert_eq!(answer.must("x-governance-decision"), "unmapped");
    // No decision: a client's forged decision headers must not reach the upstream.
    for name in ["x-governance-ctx-id", "x-governance-trace-hash", "x-governance-evidence-id"] {
        assert!(answer.header(name).is_none(), "{answer:#?}");
        assert!(answer.headers_to_remove.iter().any(|h| h == name), "{name} not removed: {answer:#?}");
    }
    assert_eq!(row_count(&f.db).await, 0);
    // A governed route is still decided.
    let governed = check(&f, create("req-allow-2", 5000)).await;
    governed.assert_denied(Code::PermissionDenied, 403, "denied");
    assert_eq!(row_count(&f.db).await, 1);
}

/// A route of the map whose scope the bundle does not mention is not decided:
/// the spec answers 403, without a row.
#[tokio::test]
async fn a_mapped_route_whose_scope_the_bundle_does_not_govern_is_denied_403_without_a_row() {
    let f = sidecar().await;
    let answer = check(&f, envoy("POST", "/invoices/7/void", &client("req-void-1", "ws_gateway"), "")).await;
    assert!(!answer.passes, "{answer:#?}");
    assert_eq!(answer.must("x-governance-decision"), "refused");
    assert_eq!(row_count(&f.db).await, 0);
    assert_eq!(answer.http_status, Some(403), "gateway spec: `scope not governed by bundle: 403`: {answer:#?}");
}

// ---- observe and skip ----------------------------------------------------------------

#[tokio::test]
async fn observe_and_skip_scopes_pass_with_their_row() {
    let map = r#"{"operations": [
      {"operation_id": "createInvoice", "method": "post", "path": "/invoices", "object_type": "invoice", "operation": "create"},
      {"operation_id": "deleteInvoice", "method": "delete", "path": "/invoices/{invoiceId}", "object_type": "invoice", "operation": "delete"}
    ]}"#;
    let bundle = bundle_file("modes", MODES_BUNDLE);
    let f = sidecar_with(&bundle, gateway(gateway_settings(), map), ServerSettings::default(), None).await;

    // Observe: a denial is recorded and the request passes, saying so.
    let observed = check(&f, create("req-observe-1", 5000)).await;
    assert!(observed.passes, "{observed:#?}");
    assert_eq!(observed.code, Code::Ok as i32);
    assert_eq!(observed.must("x-governance-decision"), "denied");
    let row = only_row(&f.db).await;
    assert_names_row(&observed, &row);
    assert_eq!((row.decision.as_str(), row.mode.as_str()), ("denied", "observe"));

    // Skip: nothing is decided, the row says so, the request passes.
    let skipped = check(&f, envoy("DELETE", "/invoices/9", &client("req-skip-1", "ws_gateway"), "")).await;
    assert!(skipped.passes, "{skipped:#?}");
    assert_eq!(skipped.must("x-governance-decision"), "skipped");
    let all = rows(&f.db).await;
    assert_eq!(all.len(), 2, "{all:#?}");
    let row = &all[1];
    assert_eq!(skipped.must("x-governance-evidence-id"), row.id.to_string());
    assert_eq!(row.mode, "skip");
    assert_eq!(row.mutation.as_deref(), Some("DELETE /invoices/{invoiceId}"));
    assert_eq!(row.request["payload"], serde_json::json!({"invoiceId": "9"}), "{}", row.request);
}

// ---- principals from what Envoy verified -----------------------------------------------

#[tokio::test]
async fn the_principal_may_come_from_jwt_authn_metadata() {
    let settings = GatewaySettings { principal: PrincipalSource::parse("jwt:sub").unwrap(), ..gateway_settings() };
    let f = sidecar_with(&example_bundle(), gateway(settings, MAP), ServerSettings::default(), None).await;
    let payload = |fields: &[(&str, &str)]| prost_types::Value {
        kind: Some(prost_types::value::Kind::StructValue(prost_types::Struct {
            fields: fields
                .iter()
                .map(|(k, v)| {
                    (
                        (*k).to_owned(),
                        prost_types::Value { kind: Some(prost_types::value::Kind::StringValue((*v).into())) },
                    )
                })
                .collect(),
        })),
    };
    let headers = [
        ("content-type", "application/json"),
        ("x-request-id", "req-jwt-1"),
        ("x-workspace-id", "ws_gateway"),
        ("authorization", "Bearer eyJhbGciOiJSUzI1NiJ9.e30.sig"),
    ];
    let mut request = envoy("POST", "/invoices", &headers, &invoice(99, "EUR"));
    // jwt_authn's `payload_in_metadata`, one entry per provider: the first by key holding the claim wins.
    let jwt = prost_types::Struct {
        fields: [
            ("b_provider".to_owned(), payload(&[("sub", "usr-from-b")])),
            ("a_provider".to_owned(), payload(&[("iss", "https://issuer.example.com"), ("sub", "usr-from-jwt")])),
            ("0_no_sub".to_owned(), payload(&[("iss", "https://other.example.com")])),
        ]
        .into_iter()
        .collect(),
    };
    request.attributes.as_mut().unwrap().metadata_context = Some(Metadata {
        filter_metadata: [("envoy.filters.http.jwt_authn".to_owned(), jwt)].into_iter().collect(),
        ..Metadata::default()
    });
    let answer = check(&f, request).await;
    assert!(answer.passes, "{answer:#?}");
    let row = only_row(&f.db).await;
    assert_names_row(&answer, &row);
    assert_eq!(row.principal, "usr-from-jwt");
    assert_eq!(row.request["principal"]["type"], "user", "{}", row.request);
    assert_eq!(row.request["principal"]["id"], "usr-from-jwt", "{}", row.request);

    // Without the filter's metadata there is no principal: 401, no row.
    let answer = check(&f, envoy("POST", "/invoices", &headers, &invoice(99, "EUR"))).await;
    answer.assert_refused(Code::Unauthenticated, 401);
    assert_eq!(row_count(&f.db).await, 1);
}

#[tokio::test]
async fn the_principal_may_come_from_the_forwarded_client_certificate() {
    let settings = GatewaySettings { principal: PrincipalSource::ClientCertificate, ..gateway_settings() };
    let f = sidecar_with(&example_bundle(), gateway(settings, MAP), ServerSettings::default(), None).await;
    let xfcc = concat!(
        r#"By=spiffe://cluster.local/ns/edge/sa/gateway;Hash=4f2a;Subject="CN=edge,O=Example, Inc.";URI=spiffe://cluster.local/ns/edge/sa/client,"#,
        r#"By=spiffe://cluster.local/ns/billing/sa/api;Hash=9c1e;Subject="CN=web";URI=spiffe://cluster.local/ns/web/sa/frontend"#
    );
    let headers = [
        ("content-type", "application/json"),
        ("x-request-id", "req-xfcc-1"),
        ("x-workspace-id", "ws_gateway"),
        ("x-forwarded-client-cert", xfcc),
    ];
    let answer = check(&f, envoy("POST", "/invoices", &headers, &invoice(5, "USD"))).await;
    assert!(answer.passes, "{answer:#?}");
    let row = only_row(&f.db).await;
    assert_eq!(row.principal, "spiffe://cluster.local/ns/web/sa/frontend");
    assert_eq!(row.request["principal"]["type"], "service", "{}", row.request);

    // Istio's sidecars append their element to the client's header: a client
    // leaving a quote open would fold it into its own forged one. Refused, 401, no row.
    let forged = concat!(
        r#"URI=spiffe://cluster.local/ns/prod/sa/admin;X=""#,
        r#",By=spiffe://cluster.local/ns/billing/sa/api;Hash=9c1e;Subject="";URI=spiffe://cluster.local/ns/web/sa/frontend"#
    );
    let headers = [
        ("content-type", "application/json"),
        ("x-request-id", "req-xfcc-2"),
        ("x-workspace-id", "ws_gateway"),
        ("x-forwarded-client-cert", forged),
    ];
    let answer = check(&f, envoy("POST", "/invoices", &headers, &invoice(5, "USD"))).await;
    answer.assert_refused(Code::Unauthenticated, 401);
    assert_eq!(row_count(&f.db).await, 1, "a forged certificate header wrote a row");
}

// ---- 5. the database away -------------------------------------------------------------

/// A sidecar with the gateway failing `failure`, on `postgres`.
async fn on_own_postgres(postgres: &OwnedPostgres, failure: FailureMode) -> TestServer {
    let database = DatabaseSettings {
        target: DatabaseTarget::new(postgres.url("postgres")),
        pool_size: 4,
        wait_timeout: Duration::from_secs(1),
        statement_timeout: Duration::from_secs(5),
    };
    let registry = Registry::parse("mutations = []").unwrap().with_default_mode(Mode::Enforce);
    let store =
        EvidenceStore::connect(&database, WriteSettings::default(), registry, Redactor::default()).await.unwrap();
    let policies = Arc::new(policies::load(&example_bundle()).unwrap());
    let settings = GatewaySettings { failure, ..gateway_settings() };
    let api = GovernanceApi::with_evidence(store).with_policies(policies, false).with_gateway(gateway(settings, MAP));
    TestServer::start(ServerSettings::default(), api).await
}

/// `governance_gateway_fail_open_total`, from `GET /metrics` on the sidecar's port.
async fn fail_open_total(address: std::net::SocketAddr) -> f64 {
    let response = common::http::request(address, "GET", "/metrics", &[], b"").await;
    assert_eq!(response.status, 200, "{}", response.body);
    let line = response
        .body
        .lines()
        .find(|line| line.starts_with("governance_gateway_fail_open_total "))
        .unwrap_or_else(|| panic!("no governance_gateway_fail_open_total in\n{}", response.body));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn without_the_database_an_approved_request_is_denied_503_closed_or_passed_open_and_counted() {
    let postgres = OwnedPostgres::start("ext-authz-outage");
    let mut admin = connect(&postgres.url("postgres")).await;
    migrate::migrate(&mut admin).await.unwrap();
    drop(admin);
    let closed = on_own_postgres(&postgres, FailureMode::Closed).await;
    let open = on_own_postgres(&postgres, FailureMode::Open).await;
    let count = async || {
        connect(&postgres.url("postgres"))
            .await
            .query_one("SELECT count(*) FROM governance_events", &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
    };

    // Up: both pass an approved request, with its row.
    assert!(check_at(closed.address, create("req-up-closed", 250)).await.passes);
    assert!(check_at(open.address, create("req-up-open", 250)).await.passes);
    assert_eq!(count().await, 2);

    postgres.set_running(false);
    // Fail-closed: 503, UNAVAILABLE.
    let started = std::time::Instant::now();
    let answer = check_at(closed.address, create("req-down-closed", 250)).await;
    answer.assert_refused(Code::Unavailable, 503);
    assert!(started.elapsed() < Duration::from_secs(5), "fails fast: {:?}", started.elapsed());

    // Fail-open: passes, saying so, and counted.
    let before = fail_open_total(open.address).await;
    let answer = check_at(open.address, create("req-down-open", 250)).await;
    assert!(answer.passes, "{answer:#?}");
    assert_eq!(answer.code, Code::Ok as i32);
    assert_eq!(answer.must("x-governance-fail-open"), "true");
    assert_eq!(answer.must("x-governance-decision"), "approved");
    assert!(answer.must("x-governance-ctx-id").starts_with("ctx_"), "{answer:#?}");
    assert!(answer.header("x-governance-evidence-id").is_none(), "no row, no evidence id: {answer:#?}");
    assert!(answer.headers_to_remove.iter().any(|h| h == "x-governance-evidence-id"), "{answer:#?}");
    assert!(fail_open_total(open.address).await >= before + 1.0, "governance_gateway_fail_open_total did not go up");

    // A denied decision stays denied under fail-open (it cannot be recorded: 503).
    let before = fail_open_total(open.address).await;
    let denied = check_at(open.address, create("req-down-denied", 5000)).await;
    assert!(!denied.passes, "a denial passed under fail-open: {denied:#?}");
    assert!(denied.header("x-governance-fail-open").is_none(), "{denied:#?}");
    denied.assert_refused(Code::Unavailable, 503);
    // Fail-closed denies it as well.
    let denied = check_at(closed.address, create("req-down-denied-closed", 5000)).await;
    assert!(!denied.passes, "{denied:#?}");
    assert_eq!(fail_open_total(open.address).await, before, "a denial was counted as passed fail-open");

    postgres.set_running(true);
    // Back: nothing was written while away; the pool recovers by itself.
    let started = std::time::Instant::now();
    loop {
        let answer = check_at(closed.address, create("req-back", 250)).await;
        if answer.passes {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "never recovered: {answer:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(count().await, 3, "only the two before and the one after the outage");
}

// ---- 6. bodies over the limit ---------------------------------------------------------

#[tokio::test]
async fn a_body_over_the_message_limit_fails_the_call_and_a_partial_body_is_denied_400() {
    const LIMIT: usize = 64 * 1024;
    let server = ServerSettings {
        limits: Limits { max_message_bytes: LIMIT, ..ServerSettings::default().limits },
        ..ServerSettings::default()
    };
    let f = sidecar_with(&example_bundle(), gateway(gateway_settings(), MAP), server, None).await;

    // Over the limit: tonic refuses the message before the handler reads it.
    let big = format!(r#"{{"amount": 10, "currency": "USD", "note": "{}"}}"#, "x".repeat(LIMIT + 1024));
    let request = envoy("POST", "/invoices", &client("req-big-1", "ws_gateway"), &big);
    let status = authorization(f.server.address).await.check(request).await.unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert_eq!(row_count(&f.db).await, 0, "a refused message wrote evidence");

    // Under it, the same shape is decided.
    let fits = format!(r#"{{"amount": 10, "currency": "USD", "note": "{}"}}"#, "x".repeat(LIMIT / 2));
    let answer = check(&f, envoy("POST", "/invoices", &client("req-big-2", "ws_gateway"), &fits)).await;
    assert!(answer.passes, "{answer:#?}");
    assert_eq!(row_count(&f.db).await, 1);

    // Envoy sent only the first part of the body (allow_partial_message): it cannot be decided.
    let mut headers = client("req-partial-1", "ws_gateway");
    headers.push(("x-envoy-auth-partial-body", "true"));
    let answer = check(&f, envoy("POST", "/invoices", &headers, r#"{"amount": 10, "currency": "USD", "no"#)).await;
    answer.assert_refused(Code::InvalidArgument, 400);
    assert!(answer.json()["message"].as_str().unwrap().contains("part of the body"), "{}", answer.body);
    assert_eq!(row_count(&f.db).await, 1, "a partial body wrote evidence");
}

// ---- 7. malformed requests --------------------------------------------------------------

#[tokio::test]
async fn a_request_that_cannot_be_read_one_way_is_denied_with_its_status_and_no_row() {
    let f = sidecar().await;
    let good = invoice(10, "USD");
    let anonymous: Vec<(&str, &str)> =
        client("req-bad-principal", "ws_gateway").into_iter().filter(|(k, _)| *k != "x-user-id").collect();
    let no_workspace: Vec<(&str, &str)> =
        client("req-bad-workspace", "ws_gateway").into_iter().filter(|(k, _)| *k != "x-workspace-id").collect();
    let cases: Vec<(&str, CheckRequest, Code, i32)> = vec![
        (
            "a `..` segment",
            envoy("POST", "/reports/../invoices", &client("req-bad-1", "ws_gateway"), &good),
            Code::InvalidArgument,
            400,
        ),
        (
            "an encoded `..` segment",
            envoy("POST", "/x/%2e%2e/invoices", &client("req-bad-2", "ws_gateway"), &good),
            Code::InvalidArgument,
            400,
        ),
        (
            "an encoded / in a segment",
            envoy("POST", "/invoices%2Fx", &client("req-bad-3", "ws_gateway"), &good),
            Code::InvalidArgument,
            400,
        ),
        (
            "bad percent-encoding in the path",
            envoy("POST", "/invoices%zz", &client("req-bad-4", "ws_gateway"), &good),
            Code::InvalidArgument,
            400,
        ),
        (
            "bad percent-encoding in the query",
            envoy("POST", "/invoices?note=%e2%28", &client("req-bad-5", "ws_gateway"), &good),
            Code::InvalidArgument,
            400,
        ),
        (
            "a JSON array body",
            envoy("POST", "/invoices", &client("req-bad-6", "ws_gateway"), "[1, 2]"),
            Code::InvalidArgument,
            400,
        ),
        (
            "a JSON string body",
            envoy("POST", "/invoices", &client("req-bad-7", "ws_gateway"), r#""amount""#),
            Code::InvalidArgument,
            400,
        ),
        (
            "a form body",
            envoy("POST", "/invoices", &client("req-bad-8", "ws_gateway"), "amount=10&currency=USD"),
            Code::InvalidArgument,
            400,
        ),
        (
            "unparsable JSON",
            envoy("POST", "/invoices", &client("req-bad-9", "ws_gateway"), r#"{"amount": 10,"#),
            Code::InvalidArgument,
            400,
        ),
        (
            "body and query disagree",
            envoy("POST", "/invoices?amount=5", &client("req-bad-10", "ws_gateway"), &good),
            Code::InvalidArgument,
            400,
        ),
        (
            "an empty segment",
            envoy("POST", "//invoices", &client("req-bad-11", "ws_gateway"), &good),
            Code::InvalidArgument,
            400,
        ),
        (
            "a path parameter (`;`), which some servers strip",
            envoy("POST", "/invoices;jsessionid=1", &client("req-bad-12", "ws_gateway"), &good),
            Code::InvalidArgument,
            400,
        ),
        (
            "a sign before a percent-encoding's digits",
            envoy("POST", "/invoices?note=%+5", &client("req-bad-13", "ws_gateway"), &good),
            Code::InvalidArgument,
            400,
        ),
        ("no principal", envoy("POST", "/invoices", &anonymous, &good), Code::Unauthenticated, 401),
        ("no workspace", envoy("POST", "/invoices", &no_workspace, &good), Code::InvalidArgument, 400),
    ];
    for (what, request, code, status) in cases {
        let answer = check(&f, request).await;
        assert!(!answer.passes, "{what}: passed: {answer:#?}");
        assert_eq!((answer.code, answer.http_status), (code as i32, Some(status)), "{what}: {answer:#?}");
        answer.assert_refused(code, status);
        assert_eq!(row_count(&f.db).await, 0, "{what}: wrote evidence");
    }
    // The same name with the same value in body and query is no ambiguity.
    let answer = check(&f, envoy("POST", "/invoices?amount=10", &client("req-ok-1", "ws_gateway"), &good)).await;
    assert!(answer.passes, "{answer:#?}");
    assert_eq!(row_count(&f.db).await, 1);
}

/// A CheckRequest without `attributes.request.http` names no request: 400, no row.
#[tokio::test]
async fn a_check_without_the_http_request_is_denied_400() {
    let f = sidecar().await;
    let answer = check(&f, CheckRequest { attributes: Some(AttributeContext::default()) }).await;
    answer.assert_refused(Code::InvalidArgument, 400);
    assert_eq!(row_count(&f.db).await, 0);
}

// ---- 8. discovery ---------------------------------------------------------------------

#[tokio::test]
async fn reflection_lists_the_authorization_service_and_serves_its_descriptors_as_grpcurl_asks() {
    use prost::Message as _;
    use tokio_stream::StreamExt as _;
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let f = sidecar().await;
    let mut reflection = ServerReflectionClient::new(f.server.channel().await);
    let mut ask = async |request: MessageRequest| {
        let request = ServerReflectionRequest { host: String::new(), message_request: Some(request) };
        let mut stream = reflection.server_reflection_info(tokio_stream::iter([request])).await.unwrap().into_inner();
        stream.next().await.unwrap().unwrap().message_response.unwrap()
    };

    // `grpcurl list`
    let MessageResponse::ListServicesResponse(list) = ask(MessageRequest::ListServices(String::new())).await else {
        panic!("expected a service list")
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"envoy.service.auth.v3.Authorization"), "{names:?}");
    assert!(names.contains(&"governance.v1.Governance"), "{names:?}");

    // `grpcurl describe envoy.service.auth.v3.Authorization`: the file declaring it, then each
    // dependency by name until every import is known.
    let symbol = MessageRequest::FileContainingSymbol("envoy.service.auth.v3.Authorization".into());
    let MessageResponse::FileDescriptorResponse(files) = ask(symbol).await else { panic!("expected descriptors") };
    let mut known: HashMap<String, prost_types::FileDescriptorProto> = HashMap::new();
    for bytes in &files.file_descriptor_proto {
        let file = prost_types::FileDescriptorProto::decode(bytes.as_slice()).unwrap();
        known.insert(file.name().to_owned(), file);
    }
    let declaring = known
        .values()
        .find(|file| file.service.iter().any(|s| s.name() == "Authorization"))
        .expect("the file declaring Authorization");
    assert_eq!(declaring.package(), "envoy.service.auth.v3");
    let service = declaring.service.iter().find(|s| s.name() == "Authorization").unwrap();
    let method = service.method.iter().find(|m| m.name() == "Check").expect("Check");
    assert_eq!(method.input_type(), ".envoy.service.auth.v3.CheckRequest");
    assert_eq!(method.output_type(), ".envoy.service.auth.v3.CheckResponse");
    let mut pending: Vec<String> = known.values().flat_map(|f| f.dependency.clone()).collect();
    while let Some(name) = pending.pop() {
        if known.contains_key(&name) {
            continue;
        }
        let response = ask(MessageRequest::FileByFilename(name.clone())).await;
        let MessageResponse::FileDescriptorResponse(files) = response else {
            panic!("{name}: the server does not know a file its descriptors import: {response:?}")
        };
        for bytes in &files.file_descriptor_proto {
            let file = prost_types::FileDescriptorProto::decode(bytes.as_slice()).unwrap();
            pending.extend(file.dependency.clone());
            known.insert(file.name().to_owned(), file);
        }
        assert!(known.contains_key(&name), "{name} was not served");
    }
}

// ---- 9. the proxy's own credentials ------------------------------------------------------

fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// `envoy` may execute in `acme-*`; `decider` may only decide, everywhere.
fn callers_text() -> String {
    let caller = |name: &str, token: &str, grants: &str| {
        format!("[[callers]]\nname = \"{name}\"\ntoken_sha256 = \"{}\"\n{grants}\n", digest(token))
    };
    [
        caller("envoy", "envoy-token", "workspaces = [\"acme-*\"]\noperations = [\"execute\"]"),
        caller("decider", "decider-token", "workspaces = [\"*\"]\noperations = [\"decide\"]"),
    ]
    .concat()
}

fn as_caller(request: CheckRequest, token: Option<&str>) -> tonic::Request<CheckRequest> {
    let mut request = tonic::Request::new(request);
    if let Some(token) = token {
        request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    request
}

#[tokio::test]
async fn the_proxy_must_prove_itself_and_act_only_in_its_workspaces() {
    use std::os::unix::fs::PermissionsExt as _;
    let file = common::scratch("ext-authz-callers").join("callers.toml");
    std::fs::write(&file, callers_text()).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let gate = Gate::with_callers(Arc::new(callers::load(&file).unwrap()));
    let f =
        sidecar_with(&example_bundle(), gateway(gateway_settings(), MAP), ServerSettings::default(), Some(gate)).await;
    let mut proxy = authorization(f.server.address).await;
    let acme = || envoy("POST", "/invoices", &client("req-sec-1", "acme-eu"), &invoice(10, "USD"));

    // No token, or a wrong one: the call fails, nothing is decided.
    for token in [None, Some("envoy-tokenx"), Some("")] {
        let status = proxy.check(as_caller(acme(), token)).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{token:?}: {status:?}");
    }
    // A caller granted `decide` only may not ask a check, which writes evidence.
    let status = proxy.check(as_caller(acme(), Some("decider-token"))).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_eq!(row_count(&f.db).await, 0);

    // The proxy, for a request in another workspace: a denial, no row.
    let other = envoy("POST", "/invoices", &client("req-sec-2", "other"), &invoice(10, "USD"));
    let answer = flatten(proxy.check(as_caller(other, Some("envoy-token"))).await.unwrap().into_inner());
    answer.assert_refused(Code::PermissionDenied, 403);
    assert_eq!(row_count(&f.db).await, 0, "a check outside the proxy's workspaces wrote evidence");

    // The proxy, in its own: decided, its name recorded as the caller.
    let answer = flatten(proxy.check(as_caller(acme(), Some("envoy-token"))).await.unwrap().into_inner());
    assert!(answer.passes, "{answer:#?}");
    let row = only_row(&f.db).await;
    assert_names_row(&answer, &row);
    assert_eq!(row.caller.as_deref(), Some("envoy"));
    assert_eq!(row.workspace, "acme-eu");
}
