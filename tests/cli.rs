//! The `governance-sidecar` binary itself: offline evaluation, SIGTERM, and
//! the help text docs/configuration.md repeats (checked by tests/docs.rs).

use std::io::{BufReader, Write as _};
use std::process::{Command, Stdio};
use std::time::Duration;

mod common;

use common::dev::{BINARY, DevSidecar, logged_address, terminate_and_wait, wait_for_line};

fn evaluate(body: &str, key: &str) -> (Option<i32>, String) {
    let mut child = Command::new(BINARY)
        .args(["evaluate", "--idempotency-key", key])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    (output.status.code(), String::from_utf8(output.stdout).unwrap())
}

#[test]
fn evaluate_prints_the_kernite_response_for_stdin() {
    let vector = r#"{"workspace_id": "workspace-demo", "principal": {"type": "token", "id": "api:ops-bot"}, "object_type": "document", "operation": "create", "payload": {"title": "Quarterly Plan"}, "policy_context": {"governed": true, "selected_policies": []}}"#;
    let (code, stdout) = evaluate(vector, "vector-001");
    assert_eq!(code, Some(0));
    assert!(
        stdout.starts_with(r#"{"ctx_id": "ctx_8f97889f5781", "message": "Denied by governance policy.""#),
        "{stdout}"
    );

    let (code, stdout) = evaluate(r#"{"workspace_id": "w"}"#, "k");
    assert_eq!(code, Some(2));
    assert!(stdout.contains(r#""valid": false"#));
}

#[test]
fn dev_serves_the_invoice_example_with_its_own_postgres() {
    let mut sidecar = DevSidecar::start("cli-dev");
    let address = sidecar.address.clone();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let response = runtime.block_on(async {
        use governance_sidecar::proto::{
            ExecuteWithEvidenceRequest, MutationCall, execute_with_evidence_request::Body,
            governance_client::GovernanceClient,
        };
        let mut client = GovernanceClient::connect(format!("http://{address}")).await.unwrap();
        let body = r#"{"workspace_id": "ws_1", "principal": {"type": "user", "id": "usr_42"}, "object_type": "invoice", "operation": "create", "payload": {"amount": 250, "currency": "USD"}}"#;
        client
            .execute_with_evidence(ExecuteWithEvidenceRequest {
                body: Some(Body::RequestJson(body.into())),
                idempotency_key: Some("cli-dev-1".into()),
                mutation: Some(MutationCall { name: "create_invoice".into(), params: None }), answer_form: 0,
            })
            .await
            .unwrap()
            .into_inner()
    });
    assert!(response.mutation_applied && response.evidence_id > 0);
    assert_eq!(response.mutation_result.unwrap().rows_affected, 1);

    assert!(sidecar.terminate().success());
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", sidecar.postgres_port)).is_err(),
        "the private PostgreSQL stopped with us"
    );
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let mut child = Command::new(BINARY)
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let serving = wait_for_line(&mut stderr, "serving gRPC");
    let address = logged_address(&serving);
    let (code, printed) = health(&address);
    assert_eq!((code, printed.as_str()), (Some(0), "SERVING\n"));

    let status = terminate_and_wait(&mut child);
    assert!(status.success(), "{status:?}");
    assert_eq!(health(&address).0, Some(1), "nobody answers once it stopped");
}

/// The `health` command, as a container health check runs it.
fn health(address: &str) -> (Option<i32>, String) {
    let output = Command::new(BINARY).args(["health", "--address", address, "--timeout-ms", "1000"]).output().unwrap();
    (output.status.code(), String::from_utf8(output.stdout).unwrap())
}

#[test]
fn the_probe_listener_serves_health_and_nothing_else() {
    let mut child = Command::new(BINARY)
        .args(["serve", "--listen", "127.0.0.1:0", "--health-listen", "127.0.0.1:0", "--log-format", "json"])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let probes = logged_address(&wait_for_line(&mut stderr, "serving gRPC health probes"));
    let governance = logged_address(&wait_for_line(&mut stderr, "serving gRPC"));
    assert_ne!(probes, governance);
    assert_eq!(health(&probes), (Some(0), "SERVING\n".to_owned()));

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let on_probes = runtime.block_on(async {
        use governance_sidecar::proto::{EvaluateRequest, evaluate_request::Body, governance_client::GovernanceClient};
        let mut client = GovernanceClient::connect(format!("http://{probes}")).await.unwrap();
        client
            .evaluate(EvaluateRequest {
                body: Some(Body::RequestJson("{}".into())),
                idempotency_key: None,
                answer_form: 0,
            })
            .await
    });
    assert_eq!(on_probes.unwrap_err().code(), tonic::Code::Unimplemented, "Governance is not on the probe port");

    assert!(terminate_and_wait(&mut child).success());
    assert_eq!(health(&probes).0, Some(1), "the probe listener stops with the server");
}
