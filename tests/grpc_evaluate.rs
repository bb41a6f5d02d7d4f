//! `governance.v1.Governance/Evaluate`, health and reflection, through a real
//! tonic client talking to the real server on loopback.

mod common;

use std::time::Duration;

use common::TestServer;
use governance_sidecar::api::GovernanceApi;
use governance_sidecar::config::{Limits, ServerSettings};
use governance_sidecar::proto::{Decision, EvaluateRequest, ExecuteRequest, Principal, evaluate_request::Body};
use prost_types::{Struct, Value as ProtoValue, value::Kind};
use tonic::Code;
use tonic_types::StatusExt;

fn number(n: f64) -> ProtoValue {
    ProtoValue { kind: Some(Kind::NumberValue(n)) }
}
fn text(s: &str) -> ProtoValue {
    ProtoValue { kind: Some(Kind::StringValue(s.into())) }
}
fn list(items: Vec<ProtoValue>) -> ProtoValue {
    ProtoValue { kind: Some(Kind::ListValue(prost_types::ListValue { values: items })) }
}
fn structure(entries: Vec<(&str, ProtoValue)>) -> Struct {
    Struct { fields: entries.into_iter().map(|(k, v)| (k.to_owned(), v)).collect() }
}
fn nested(entries: Vec<(&str, ProtoValue)>) -> ProtoValue {
    ProtoValue { kind: Some(Kind::StructValue(structure(entries))) }
}

/// The invoice example's policy: amount at most 1000, currency USD or EUR.
const INVOICE_POLICY_JSON: &str = r#"{"governed": true, "selected_policies": [{"policy_key": "invoice_create", "policy_version": 3, "effect": "allow", "rules": [{"rule_key": "amount_limit", "rule_definition": {"type": "max_value", "field": "amount", "max": 1000}, "reason_code": "amount_too_high"}, {"rule_key": "currency", "rule_definition": {"type": "allowed_values", "field": "currency", "values": ["USD", "EUR"]}}]}]}"#;

fn invoice_request_json(amount: &str) -> String {
    format!(
        r#"{{"workspace_id": "ws_1", "principal": {{"type": "user", "id": "usr_42"}}, "object_type": "invoice", "operation": "create", "payload": {{"amount": {amount}, "currency": "USD"}}, "policy_context": {INVOICE_POLICY_JSON}}}"#
    )
}

fn invoice_policy_struct() -> Struct {
    let rule =
        |key: &str, definition: ProtoValue| nested(vec![("rule_key", text(key)), ("rule_definition", definition)]);
    let mut amount_rule = rule(
        "amount_limit",
        nested(vec![("type", text("max_value")), ("field", text("amount")), ("max", number(1000.0))]),
    );
    if let Some(Kind::StructValue(s)) = &mut amount_rule.kind {
        s.fields.insert("reason_code".into(), text("amount_too_high"));
    }
    let currency_rule = rule(
        "currency",
        nested(vec![
            ("type", text("allowed_values")),
            ("field", text("currency")),
            ("values", list(vec![text("USD"), text("EUR")])),
        ]),
    );
    let policy = nested(vec![
        ("policy_key", text("invoice_create")),
        ("policy_version", number(3.0)),
        ("effect", text("allow")),
        ("rules", list(vec![amount_rule, currency_rule])),
    ]);
    structure(vec![
        ("governed", ProtoValue { kind: Some(Kind::BoolValue(true)) }),
        ("selected_policies", list(vec![policy])),
    ])
}

fn typed_invoice(amount: f64) -> EvaluateRequest {
    EvaluateRequest {
        body: Some(Body::Request(ExecuteRequest {
            workspace_id: "ws_1".into(),
            principal: Some(Principal { r#type: "user".into(), id: "usr_42".into(), attributes: None }),
            object_type: "invoice".into(),
            operation: "create".into(),
            payload: Some(structure(vec![("amount", number(amount)), ("currency", text("USD"))])),
            resource: None,
            context: None,
            policy_context: Some(invoice_policy_struct()),
        })),
        idempotency_key: Some("key-1".into()),
        answer_form: 0,
    }
}

fn json_request(json: String, idempotency_key: Option<&str>) -> EvaluateRequest {
    EvaluateRequest {
        body: Some(Body::RequestJson(json)),
        idempotency_key: idempotency_key.map(str::to_owned),
        answer_form: 0,
    }
}

async fn server() -> TestServer {
    TestServer::start(ServerSettings::default(), GovernanceApi::new()).await
}

#[tokio::test]
async fn typed_request_is_approved_with_kernite_contract_fields() {
    let server = server().await;
    let response = server.client().await.evaluate(typed_invoice(250.0)).await.unwrap().into_inner();
    assert_eq!(response.decision(), Decision::Approved);
    assert!(response.reason_codes.is_empty());
    assert_eq!(response.message, "Approved by governance policy.");
    assert!(response.trace_hash.starts_with("sha256:") && response.trace_hash.len() == 71);
    assert_eq!(response.ctx_id, format!("ctx_{}", &response.trace_hash[7..19]));
    assert_eq!(response.policy_selection_reason_code, "policy_selected_workspace_default");
    let policy = response.policy.unwrap();
    assert_eq!((policy.policy_key.as_str(), policy.policy_version), ("invoice_create", Some(3)));
    assert_eq!(response.idempotency_key.as_deref(), Some("key-1"));
    assert!(response.response_json.contains(r#""decision": "approved""#));
}

#[tokio::test]
async fn typed_and_json_requests_hash_identically_when_struct_numbers_are_whole() {
    let server = server().await;
    let mut client = server.client().await;
    let typed = client.evaluate(typed_invoice(250.0)).await.unwrap().into_inner();
    let json = client.evaluate(json_request(invoice_request_json("250"), Some("key-1"))).await.unwrap().into_inner();
    assert_eq!(typed.trace_hash, json.trace_hash);

    // A float in JSON is a different input: 250.0 is not the integer 250.
    let float = client.evaluate(json_request(invoice_request_json("250.0"), Some("key-1"))).await.unwrap().into_inner();
    assert_ne!(float.trace_hash, typed.trace_hash);
    // ...and a fractional Struct number stays a float, like JSON's 250.5.
    let typed_fraction = client.evaluate(typed_invoice(250.5)).await.unwrap().into_inner();
    let json_fraction =
        client.evaluate(json_request(invoice_request_json("250.5"), Some("key-1"))).await.unwrap().into_inner();
    assert_eq!(typed_fraction.trace_hash, json_fraction.trace_hash);
}

#[tokio::test]
async fn denied_request_carries_reasons_with_details() {
    let server = server().await;
    let response =
        server.client().await.evaluate(json_request(invoice_request_json("5000"), None)).await.unwrap().into_inner();
    assert_eq!(response.decision(), Decision::Denied);
    assert_eq!(response.reason_codes, ["amount_too_high"]);
    let reason = &response.reasons[0];
    assert_eq!(reason.rule_key.as_deref(), Some("amount_limit"));
    assert_eq!(reason.field_path.as_deref(), Some("amount"));
    let details = reason.details.as_ref().unwrap();
    assert_eq!(details.fields["current"], number(5000.0));
    assert_eq!(details.fields["policy_key"], text("invoice_create"));
    assert!(response.idempotency_key.is_none());
}

#[tokio::test]
async fn response_json_is_the_kernite_corpus_answer() {
    // The first conformance vector, with Kernite's own answer.
    let request = r#"{"workspace_id": "workspace-demo", "principal": {"type": "token", "id": "api:ops-bot"}, "object_type": "document", "operation": "create", "payload": {"title": "Quarterly Plan"}, "policy_context": {"governed": true, "selected_policies": []}}"#;
    let server = server().await;
    let response =
        server.client().await.evaluate(json_request(request.into(), Some("vector-001"))).await.unwrap().into_inner();
    assert_eq!(response.trace_hash, "sha256:8f97889f5781a3864e9acb3e0f876101f1e20977076bf8d4e750b1cb1b9ca7c3");
    assert_eq!(response.ctx_id, "ctx_8f97889f5781");
    assert_eq!(response.reason_codes, ["no_matching_policy"]);
    assert!(response.response_json.starts_with(
        r#"{"ctx_id": "ctx_8f97889f5781", "message": "Denied by governance policy.", "data": {"decision": "denied""#
    ));
}

#[tokio::test]
async fn invalid_request_lists_kernite_errors_in_bad_request_details() {
    let server = server().await;
    let request = json_request(r#"{"workspace_id": "", "operation": "explode", "payload": []}"#.into(), None);
    let status = server.client().await.evaluate(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().starts_with("Execute payload is invalid."), "{}", status.message());
    assert!(status.message().contains("workspace_id (required): workspace_id is required."));
    let details = status.get_error_details();
    let violations = &details.bad_request().expect("BadRequest details").field_violations;
    let fields: Vec<_> = violations.iter().map(|v| (v.field.as_str(), v.reason.as_str())).collect();
    assert_eq!(
        fields,
        [
            ("workspace_id", "REQUIRED"),
            ("object_type", "REQUIRED"),
            ("operation", "INVALID_VALUE"),
            ("payload", "INVALID_TYPE"),
            ("principal", "INVALID_TYPE")
        ]
    );
    let info = details.error_info().expect("ErrorInfo details");
    assert!(info.metadata["ctx_id"].starts_with("ctx_"));
    assert!(info.metadata["kernite_response"].contains(r#""valid": false"#));
}

/// gRPC C-core clients (Python, Ruby, C++) refuse trailers above 8 KiB at
/// random, and a conformance case once crossed that line (8,221 bytes): any
/// refusal must stay under it however many errors the request has.
#[tokio::test]
async fn a_refusal_of_any_size_fits_in_the_trailers_every_client_accepts() {
    let server = server().await;
    let mut client = server.client().await;
    let corpus = std::fs::read_to_string("../shared/conformance/kernite-0.1.6-execute.jsonl").unwrap();
    let near_the_line = corpus.lines().find(|l| l.contains(r#""name": "random-1-800""#)).expect("the case");
    let near_the_line: serde_json::Value = serde_json::from_str(near_the_line).unwrap();
    let many_policies = (0..400).map(|i| format!(r#""not a policy {i} ü""#)).collect::<Vec<_>>().join(", ");
    let many_errors = format!(r#"{{"policy_context": {{"selected_policies": [{many_policies}]}}}}"#);
    for body in [near_the_line["request_json"].as_str().unwrap().to_owned(), many_errors] {
        let status = client.evaluate(json_request(body, None)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        // On the wire: grpc-message percent-encoded, grpc-status-details-bin in base64.
        let message_bytes: usize =
            status.message().bytes().map(|b| if (0x20..0x7f).contains(&b) && b != b'%' { 1 } else { 3 }).sum();
        let details_bytes = status.details().len().div_ceil(3) * 4;
        assert!(message_bytes + details_bytes < 7 * 1024 + 512, "{message_bytes} + {details_bytes} bytes of trailers");
        // Clients check that the details repeat the message exactly.
        let repeated = <tonic_types::pb::Status as prost::Message>::decode(status.details()).unwrap();
        assert_eq!(repeated.message, status.message());
        let details = status.get_error_details();
        assert!(!details.bad_request().expect("BadRequest details").field_violations.is_empty());
        assert!(details.error_info().expect("ErrorInfo details").metadata["ctx_id"].starts_with("ctx_"));
    }
}

#[tokio::test]
async fn malformed_bodies_are_invalid_argument_and_the_server_keeps_serving() {
    let server = server().await;
    let mut client = server.client().await;
    let deep = "[".repeat(100_000);
    let lone_surrogate = r#"{"workspace_id": "\ud800"}"#.to_owned();
    for body in [
        Some(Body::RequestJson("{not json".into())),
        Some(Body::RequestJson(deep)),
        Some(Body::RequestJson(lone_surrogate)),
        Some(Body::RequestJson(r#"{"payload": {"x": NaN}}"#.into())),
        Some(Body::RequestJson(format!(r#"{{"payload": {{"x": 1{}}}}}"#, "0".repeat(5000)))),
        None,
    ] {
        let status =
            client.evaluate(EvaluateRequest { body, idempotency_key: None, answer_form: 0 }).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
    }
    let mut nan_payload = typed_invoice(1.0);
    if let Some(Body::Request(request)) = &mut nan_payload.body {
        request.payload = Some(structure(vec![("amount", number(f64::NAN))]));
    }
    assert_eq!(client.evaluate(nan_payload).await.unwrap_err().code(), Code::InvalidArgument);
    // A request Kernite itself would crash on is refused, not answered with a guess.
    let crash = r#"{"workspace_id": "w", "principal": {"type": "u", "id": "1"}, "object_type": "o", "operation": "create", "payload": {}, "policy_context": {"selected_policies": [{"rules": [{"rule_definition": {"type": "required_fields", "fields": 7}}]}]}}"#;
    let status = client.evaluate(json_request(crash.into(), None)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("rule_definition.fields"), "{}", status.message());
    assert!(client.evaluate(typed_invoice(1.0)).await.is_ok());
}

#[tokio::test]
async fn messages_over_the_size_limit_are_refused() {
    let settings = ServerSettings {
        limits: Limits { max_message_bytes: 64 * 1024, ..Limits::default() },
        ..ServerSettings::default()
    };
    let server = TestServer::start(settings, GovernanceApi::new()).await;
    let mut client = server.client().await;
    let big = invoice_request_json(&format!("1, \"note\": \"{}\"", "x".repeat(100 * 1024)));
    let status = client.evaluate(json_request(big, None)).await.unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{}", status.message());
    assert!(client.evaluate(typed_invoice(1.0)).await.is_ok());
}

#[tokio::test]
async fn health_reports_serving_overall_and_per_service() {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
    let server = server().await;
    let mut health = HealthClient::new(server.channel().await);
    for service in ["", "governance.v1.Governance"] {
        let response = health.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();
        assert_eq!(response.status(), ServingStatus::Serving, "service {service:?}");
    }
    let unknown = health.check(HealthCheckRequest { service: "nope.Service".into() }).await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
}

#[tokio::test]
async fn reflection_lists_services_in_v1_and_v1alpha() {
    use tokio_stream::StreamExt as _;
    let server = server().await;

    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let mut v1 = ServerReflectionClient::new(server.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = v1.server_reflection_info(tokio_stream::iter([request])).await.unwrap().into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) = stream.next().await.unwrap().unwrap().message_response
    else {
        panic!("expected a service list")
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    for expected in ["governance.v1.Governance", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"] {
        assert!(names.contains(&expected), "{names:?} lacks {expected}");
    }

    use tonic_reflection::pb::v1alpha::{
        ServerReflectionRequest as AlphaRequest, server_reflection_client::ServerReflectionClient as AlphaClient,
        server_reflection_request::MessageRequest as AlphaMessage,
        server_reflection_response::MessageResponse as AlphaResponse,
    };
    let mut alpha = AlphaClient::new(server.channel().await);
    let request = AlphaRequest {
        host: String::new(),
        message_request: Some(AlphaMessage::FileContainingSymbol("governance.v1.Governance".into())),
    };
    let mut stream = alpha.server_reflection_info(tokio_stream::iter([request])).await.unwrap().into_inner();
    let Some(AlphaResponse::FileDescriptorResponse(files)) = stream.next().await.unwrap().unwrap().message_response
    else {
        panic!("expected file descriptors")
    };
    assert!(!files.file_descriptor_proto.is_empty());
}

#[tokio::test]
async fn shutdown_reports_not_serving_then_finishes() {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
    let settings = ServerSettings {
        limits: Limits { shutdown_delay: Duration::from_millis(500), ..Limits::default() },
        ..ServerSettings::default()
    };
    let mut server = TestServer::start(settings, GovernanceApi::new()).await;
    let mut health = HealthClient::new(server.channel().await);
    let mut client = server.client().await;

    server.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let status = health.check(HealthCheckRequest { service: String::new() }).await.unwrap().into_inner();
    assert_eq!(status.status(), ServingStatus::NotServing);
    // Calls during the drain delay are still answered.
    assert!(client.evaluate(typed_invoice(1.0)).await.is_ok());
    tokio::time::timeout(Duration::from_secs(10), server.stop()).await.expect("server stops").unwrap();
}

#[tokio::test]
async fn an_expired_deadline_is_not_answered_with_a_decision() {
    let server = server().await;
    let mut client = server.client().await;
    let mut request = tonic::Request::new(typed_invoice(1.0));
    request.set_timeout(Duration::from_nanos(1));
    let status = client.evaluate(request).await.unwrap_err();
    assert!(matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled), "{status:?}");
}

#[tokio::test]
async fn typed_structs_nested_past_protobufs_limit_are_refused_by_the_decoder() {
    let server = server().await;
    let mut client = server.client().await;
    let mut value = number(1.0);
    for _ in 0..200 {
        value = nested(vec![("a", value)]);
    }
    let mut request = typed_invoice(1.0);
    if let Some(Body::Request(typed)) = &mut request.body {
        typed.payload = Some(structure(vec![("deep", value)]));
    }
    // Unparseable protobuf is INTERNAL by gRPC's status-code guide (tonic's decoder says so).
    let status = client.evaluate(request).await.unwrap_err();
    assert_eq!(status.code(), Code::Internal, "{}", status.message());
    assert!(client.evaluate(typed_invoice(1.0)).await.is_ok(), "the server keeps serving");
}

#[tokio::test]
async fn the_answer_carries_the_forms_of_the_decision_the_caller_asks_for() {
    use governance_sidecar::proto::AnswerForm;
    let server = server().await;
    let mut client = server.client().await;
    let mut ask = async |amount: &str, form: AnswerForm| {
        let request = EvaluateRequest { answer_form: form.into(), ..json_request(invoice_request_json(amount), None) };
        client.evaluate(request).await.unwrap().into_inner()
    };
    // The default is both forms, as before the field existed, and so is BOTH.
    let default = ask("5000", AnswerForm::Unspecified).await;
    let both = ask("5000", AnswerForm::Both).await;
    for answer in [&default, &both] {
        assert_eq!(answer.decision(), Decision::Denied);
        assert_eq!(answer.reason_codes, ["amount_too_high"]);
        assert!(answer.response_json.contains(r#""decision": "denied""#), "{}", answer.response_json);
    }
    // Typed: every typed field, no JSON.
    let typed = ask("5000", AnswerForm::Typed).await;
    assert_eq!(
        (typed.decision(), typed.reason_codes.as_slice()),
        (Decision::Denied, &["amount_too_high".to_owned()][..])
    );
    assert!(!typed.reasons.is_empty() && typed.policy.is_some() && !typed.message.is_empty());
    assert!(typed.response_json.is_empty());
    // Kernite's JSON: the response, with the decision, ctx_id and trace_hash beside it.
    let kernite = ask("5000", AnswerForm::KerniteJson).await;
    assert_eq!(kernite.decision(), Decision::Denied);
    assert!(kernite.ctx_id.starts_with("ctx_") && kernite.trace_hash.starts_with("sha256:"));
    assert!(kernite.response_json.contains(&kernite.ctx_id) && kernite.response_json.contains(&kernite.trace_hash));
    assert!(kernite.reason_codes.is_empty() && kernite.reasons.is_empty() && kernite.policy.is_none());
    // Each form is smaller on the wire than both.
    use prost::Message as _;
    assert!(typed.encoded_len() < both.encoded_len() && kernite.encoded_len() < both.encoded_len());
    // An unknown form is read as both.
    let unknown = EvaluateRequest { answer_form: 99, ..json_request(invoice_request_json("5000"), None) };
    let answer = client.evaluate(unknown).await.unwrap().into_inner();
    assert!(!answer.reason_codes.is_empty() && !answer.response_json.is_empty(), "{answer:?}");
}
