//! The Kernite-compatible HTTP/JSON routes, on the gRPC port of the real server.

mod common;

use std::path::PathBuf;

use common::TestServer;
use common::http::{post_json, request};
use common::postgres::{connect, fresh_database};
use governance_sidecar::api::GovernanceApi;
use governance_sidecar::config::ServerSettings;
use governance_sidecar::decision::json::{self, Layout};
use governance_sidecar::decision::{Value, value::object};
use governance_sidecar::evidence::redact::Redactor;
use governance_sidecar::evidence::{EvidenceStore, WriteSettings};
use governance_sidecar::mutations::Registry;
use governance_sidecar::postgres::{DatabaseSettings, DatabaseTarget};
use governance_sidecar::schema::migrate;
use governance_sidecar::vocabulary::Mode;

fn corpus() -> Vec<Value> {
    let path = std::env::var_os("GOVERNANCE_CONFORMANCE_CORPUS").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance/kernite-0.1.6-execute.jsonl")
    });
    std::fs::read_to_string(path).unwrap().lines().map(|line| json::parse(line).unwrap()).collect()
}

fn canonical(value: &Value) -> String {
    json::to_string(value, Layout::Canonical)
}

fn without_ctx_id(mut value: Value) -> Value {
    value.as_object_mut().unwrap().shift_remove("ctx_id");
    value
}

#[tokio::test]
async fn every_corpus_case_posted_to_v1_execute_gets_kernites_status_and_body() {
    let server = TestServer::start(ServerSettings::default(), GovernanceApi::new()).await;
    let (mut compared, mut skipped) = (0, 0);
    for case in corpus() {
        let case = case.as_object().unwrap();
        let key = case["idempotency_key"].as_str();
        // HTTP drops a header value's surrounding whitespace and forbids control
        // characters: such keys cannot travel in an Idempotency-Key header.
        if key.is_some_and(|k| k.trim() != k || k.chars().any(char::is_control)) {
            skipped += 1;
            continue;
        }
        let response = post_json(server.address, "/v1/execute", key, case["request_json"].as_str().unwrap()).await;
        let want_status = match case["status"] {
            Value::Int(status) => status as u16,
            _ => unreachable!(),
        };
        assert_eq!(response.status, want_status, "{:?}: {}", case["name"], response.body);
        assert_eq!(response.header("content-type"), Some("application/json; charset=utf-8"));
        let got = json::parse(&response.body).unwrap();
        let want = case["response"].clone();
        if want_status == 200 {
            assert_eq!(canonical(&got), canonical(&want), "{:?}", case["name"]);
            // Byte for byte what Kernite's json.dumps(…, ensure_ascii=False) writes.
            assert_eq!(response.body, json::to_string(&want, Layout::Response), "{:?}", case["name"]);
        } else {
            assert_eq!(canonical(&without_ctx_id(got)), canonical(&without_ctx_id(want)), "{:?}", case["name"]);
        }
        compared += 1;
    }
    println!("HTTP: {compared} corpus cases answered like Kernite; {skipped} skipped (keys HTTP cannot carry)");
    assert!(compared >= 1_500, "only {compared} compared");
}

#[tokio::test]
async fn the_routes_and_their_refusals_are_kernites() {
    let server = TestServer::start(ServerSettings::default(), GovernanceApi::new()).await;
    let address = server.address;
    let health = request(address, "GET", "/health", &[], b"").await;
    assert_eq!((health.status, health.body.as_str()), (200, r#"{"status": "ok"}"#));

    let body = r#"{"workspace_id": "ws", "principal": {"type": "user", "id": "u"}, "object_type": "invoice", "operation": "create", "payload": {}}"#;
    let short = post_json(address, "/execute", Some("k"), body).await;
    let long = post_json(address, "/v1/execute", Some("k"), body).await;
    assert_eq!((short.status, &short.body), (200, &long.body), "/execute is /v1/execute");
    let ctx_id = json::parse(&long.body).unwrap().as_object().unwrap()["ctx_id"].clone();
    assert_eq!(long.header("x-ctx-id").map(Value::str), Some(ctx_id), "X-Ctx-Id names the answer's ctx_id");

    let metrics = request(address, "GET", "/metrics", &[], b"").await;
    assert_eq!(metrics.status, 200);
    assert!(metrics.header("content-type").unwrap().starts_with("application/openmetrics-text"));
    assert!(metrics.body.contains(r#"governance_rpc_duration_seconds_count{method="POST /v1/execute",status="200"}"#));

    for path in ["/validate/execute", "/v1/validate/execute"] {
        let valid = post_json(address, path, None, body).await;
        let valid = json::parse(&valid.body).unwrap();
        assert_eq!(valid.as_object().unwrap()["message"], Value::str("Execute payload is valid."));
        let invalid = post_json(address, path, None, r#"{"workspace_id": "ws"}"#).await;
        assert_eq!(invalid.status, 200, "validation answers 200 either way");
        assert!(invalid.body.contains(r#""valid": false"#));
    }

    let not_json = post_json(address, "/v1/execute", None, r#"{"workspace_id": "#).await;
    assert_eq!((not_json.status, not_json.body.as_str()), (400, r#"{"message": "Invalid JSON payload"}"#));
    let empty = post_json(address, "/v1/execute", None, "").await;
    assert_eq!(empty.status, 400, "an empty body is {{}}, which is invalid");
    assert!(empty.body.contains(r#""field": "workspace_id""#));
    for (method, path) in [("GET", "/v1/execute"), ("POST", "/health"), ("GET", "/nowhere"), ("POST", "/v2/execute")] {
        let response = request(address, method, path, &[], b"").await;
        assert_eq!((response.status, response.body.as_str()), (404, r#"{"message": "Not found"}"#), "{method} {path}");
    }
    let huge = format!(r#"{{"workspace_id": "{}"}}"#, "x".repeat(5 * 1024 * 1024));
    let too_large = post_json(address, "/v1/execute", None, &huge).await;
    assert_eq!(too_large.status, 413);
    assert!(json::parse(&too_large.body).is_ok(), "errors are JSON: {}", too_large.body);
    // A body cut short, or badly chunked, is no body too large: 400 with a message of its own.
    for (name, head, sent) in [
        ("cut short", "Content-Length: 100", &b"{\"workspace_id\": "[..]),
        ("broken chunking", "Transfer-Encoding: chunked", &b"zz\r\nnot a chunk\r\n0\r\n\r\n"[..]),
    ] {
        let answer = raw_post(address, head, sent).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{name}: {answer}");
        assert!(answer.contains("could not be read"), "{name}: {answer}");
    }
    let no_database = post_json(address, "/v1/execute-with-evidence", None, &governed_write(1)).await;
    assert_eq!(no_database.status, 400);
    assert!(no_database.body.contains(r#""code": "FAILED_PRECONDITION""#), "{}", no_database.body);
}

const INVOICES: &str =
    "CREATE TABLE invoices (id bigserial PRIMARY KEY, workspace_id text NOT NULL, amount bigint NOT NULL)";
const REGISTRY: &str = r#"
[[mutations]]
name = "create_invoice"
object_type = "invoice"
operation = "create"
statements = ["INSERT INTO invoices (workspace_id, amount) VALUES (:workspace_id, :amount) RETURNING id"]
[mutations.params]
workspace_id = { type = "text", builtin = "workspace_id" }
amount = { type = "bigint", request = "payload.amount" }
"#;

fn governed_write(amount: i64) -> String {
    let request = format!(
        r#"{{"workspace_id": "ws_http", "principal": {{"type": "user", "id": "u"}}, "object_type": "invoice", "operation": "create", "payload": {{"amount": {amount}}}, "policy_context": {{"selected_policies": [{{"policy_key": "limit", "rules": [{{"rule_key": "max", "rule_definition": {{"type": "max_value", "field": "amount", "max": 1000}}}}]}}]}}}}"#
    );
    format!(r#"{{"request": {request}, "mutation": {{"name": "create_invoice"}}}}"#)
}

/// A sidecar on loopback that governs invoices, and an admin connection to its database.
async fn governing_server(settings: ServerSettings) -> (TestServer, tokio_postgres::Client) {
    let url = fresh_database().await;
    let mut admin = connect(&url).await;
    migrate::migrate(&mut admin).await.unwrap();
    admin.batch_execute(INVOICES).await.unwrap();
    let database = DatabaseSettings {
        target: DatabaseTarget::new(url),
        pool_size: 4,
        wait_timeout: std::time::Duration::from_secs(2),
        statement_timeout: std::time::Duration::from_secs(5),
    };
    let redactor = Redactor::new(&[], &[]).unwrap();
    let registry = Registry::parse(REGISTRY).unwrap().with_default_mode(Mode::Enforce);
    let store = EvidenceStore::connect(&database, WriteSettings::default(), registry, redactor).await;
    (
        TestServer::start(settings, GovernanceApi::with_evidence(store.unwrap()).allowing_request_policies(true)).await,
        admin,
    )
}

#[tokio::test]
async fn execute_with_evidence_over_http_writes_replays_and_refuses_like_grpc() {
    let (server, admin) = governing_server(ServerSettings::default()).await;
    let path = "/v1/execute-with-evidence";

    let first = post_json(server.address, path, Some("http-1"), &governed_write(250)).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let answer = json::parse(&first.body).unwrap();
    let answer = answer.as_object().unwrap();
    assert_eq!(answer["mutation_applied"], Value::Bool(true));
    assert_eq!(answer["mode"], Value::str("enforce"));
    let decision = answer["decision"].as_object().unwrap()["data"].as_object().unwrap();
    assert_eq!(decision["decision"], Value::str("approved"));
    let returning = &answer["mutation_result"].as_object().unwrap()["returning"];
    assert_eq!(canonical(returning), canonical(&Value::Array(vec![object([("id", Value::Int(1))])])));

    let again = post_json(server.address, path, Some("http-1"), &governed_write(250)).await;
    let again_answer = json::parse(&again.body).unwrap();
    assert_eq!(again_answer.as_object().unwrap()["replayed"], Value::Bool(true));
    assert_eq!(again_answer.as_object().unwrap()["evidence_id"], answer["evidence_id"]);

    let reused = post_json(server.address, path, Some("http-1"), &governed_write(5000)).await;
    assert_eq!(reused.status, 409, "{}", reused.body);
    assert!(reused.body.contains(r#""code": "ALREADY_EXISTS""#));

    let denied = post_json(server.address, path, Some("http-2"), &governed_write(5000)).await;
    assert!(denied.body.contains(r#""mutation_applied": false"#), "{}", denied.body);
    let invalid = post_json(
        server.address,
        path,
        None,
        r#"{"request": {"workspace_id": "w"}, "mutation": {"name": "create_invoice"}}"#,
    )
    .await;
    assert_eq!(invalid.status, 400);
    assert!(
        invalid.body.contains(r#""message": "Execute payload is invalid.""#),
        "Kernite's 400 body: {}",
        invalid.body
    );
    let unnamed =
        post_json(server.address, path, None, &governed_write(1).replace("create_invoice", "drop_tables")).await;
    assert_eq!(unnamed.status, 404, "{}", unnamed.body);

    let invoices: i64 = admin.query_one("SELECT count(*) FROM invoices", &[]).await.unwrap().get(0);
    let evidence: i64 = admin.query_one("SELECT count(*) FROM governance_events", &[]).await.unwrap().get(0);
    assert_eq!((invoices, evidence), (1, 2), "one invoice; evidence of the approval and the denial");
}

/// A POST to `/v1/execute` with `head` as its body's header, `body` sent,
/// then the sending side closed; what the server answers, as text.
async fn raw_post(address: std::net::SocketAddr, head: &str, body: &[u8]) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!(
        "POST /v1/execute HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Type: application/json\r\n{head}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// A web page cannot drive a governed write: a cross-site form or `text/plain`
/// POST (which a browser sends without asking first) gets 415, and a page
/// whose name was rebound to 127.0.0.1 gets 421, on every route; nothing is
/// written. An operator-named host is answered.
#[tokio::test]
async fn browsers_cannot_drive_the_http_routes() {
    let mut settings = ServerSettings::default();
    settings.listen.allowed_hosts = vec!["governance.internal".into()];
    let (server, admin) = governing_server(settings).await;
    let path = "/v1/execute-with-evidence";
    let body = governed_write(250);
    let port = server.address.port();

    for content_type in
        ["text/plain;charset=UTF-8", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"]
    {
        let headers: Vec<(&str, &[u8])> =
            vec![("Content-Type", content_type.as_bytes()), ("Origin", b"http://evil.example")];
        let answer = request(server.address, "POST", path, &headers, body.as_bytes()).await;
        assert_eq!(answer.status, 415, "{content_type}: {}", answer.body);
        assert!(answer.body.contains("Content-Type: application/json"), "{}", answer.body);
    }
    let untyped = request(server.address, "POST", "/v1/execute", &[], b"{}").await;
    assert_eq!(untyped.status, 415, "a body of no declared type: {}", untyped.body);

    // DNS rebinding: the request reaches 127.0.0.1 but names the attacker's host.
    let rebound = format!("evil.example:{port}");
    for (method, route) in [("POST", path), ("POST", "/v1/execute"), ("GET", "/metrics"), ("GET", "/health")] {
        let headers: Vec<(&str, &[u8])> = vec![("Host", rebound.as_bytes()), ("Content-Type", b"application/json")];
        let answer = common::http::exchange(server.address, method, route, &headers, body.as_bytes()).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 421"), "{method} {route}: {answer}");
        assert!(answer.contains("loopback host names and addresses only"), "{answer}");
    }
    for host in [format!("localhost:{port}"), format!("governance.internal:{port}"), format!("[::1]:{port}")] {
        let headers: Vec<(&str, &[u8])> = vec![("Host", host.as_bytes()), ("Content-Type", b"application/json")];
        let answer = common::http::exchange(server.address, "POST", "/v1/validate/execute", &headers, b"{}").await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 200"), "{host}: {answer}");
    }

    // The gRPC method itself, posted as a page could: any bytes, as text/plain.
    let grpc_path = "/governance.v1.Governance/ExecuteWithEvidence";
    let parsed = json::parse(&body).unwrap();
    let request_json = json::to_string(&parsed.as_object().unwrap()["request"], Layout::Response);
    let message = grpc_frame(&governance_sidecar::proto::ExecuteWithEvidenceRequest {
        body: Some(governance_sidecar::proto::execute_with_evidence_request::Body::RequestJson(request_json)),
        idempotency_key: Some("page".into()),
        mutation: Some(governance_sidecar::proto::MutationCall { name: "create_invoice".into(), params: None }),
        answer_form: 0,
    });
    let as_text: Vec<(&str, &[u8])> = vec![("Content-Type", b"text/plain")];
    let answer = request(server.address, "POST", grpc_path, &as_text, &message).await;
    assert_eq!(answer.status, 415, "{}", answer.body);
    // A rebound name over gRPC: PERMISSION_DENIED.
    let rebound_channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.address))
        .unwrap()
        .origin(format!("http://evil.example:{port}").parse().unwrap())
        .connect()
        .await
        .unwrap();
    let mut rebound_client = governance_sidecar::proto::governance_client::GovernanceClient::new(rebound_channel);
    let evaluate = governance_sidecar::proto::EvaluateRequest {
        body: Some(governance_sidecar::proto::evaluate_request::Body::RequestJson("{}".into())),
        idempotency_key: None,
        answer_form: 0,
    };
    let refused = rebound_client.evaluate(evaluate).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");

    let invoices: i64 = admin.query_one("SELECT count(*) FROM invoices", &[]).await.unwrap().get(0);
    let evidence: i64 = admin.query_one("SELECT count(*) FROM governance_events", &[]).await.unwrap().get(0);
    assert_eq!((invoices, evidence), (0, 0), "nothing written");
    let allowed = post_json(server.address, path, Some("typed"), &body).await;
    assert_eq!(allowed.status, 200, "{}", allowed.body);
}

/// A message as gRPC frames it: no compression, its length, its bytes.
fn grpc_frame(message: &impl prost::Message) -> Vec<u8> {
    let bytes = message.encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    frame.extend_from_slice(&bytes);
    frame
}
