//! The gate, attacked: one test per attack, against the real server and
//! PostgreSQL. Each says who calls, what it attempts, the status it gets, and
//! that nothing was written or revealed.
//!
//! The callers (`CALLERS`): `billing` may decide, execute `create_invoice`
//! and read in `ws_a`; `other` may do everything in `ws_b`; `writer` may only
//! execute in `ws_a`; `tenants` may decide in `acme-*`; `logger` may read the
//! log; `author` may use the authoring routes only; and a workload certificate
//! may read everywhere.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::TestServer;
use common::certificates::Authority;
use common::dev::BINARY;
use common::evidence::{Fixture, fixture_serving};
use common::http::request;
use governance_sidecar::access::{Gate, callers};
use governance_sidecar::api::GovernanceApi;
use governance_sidecar::config::{ListenSettings, ServerSettings, TlsFiles, TlsSettings};
use governance_sidecar::proto::governance_client::GovernanceClient;
use governance_sidecar::proto::{
    EvaluateRequest, ExecuteWithEvidenceRequest, GetCheckpointRequest, GetEvidenceRequest, GetInclusionProofRequest,
    IdempotencyRef, ListEvidenceRequest, MutationCall, ReplayEvidenceRequest, evaluate_request,
    execute_with_evidence_request, get_evidence_request, get_inclusion_proof_request, replay_evidence_response,
};
use governance_sidecar::schema::layout::EvidenceLayout;
use governance_sidecar::upkeep::Upkeep;
use sha2::{Digest as _, Sha256};
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

const AUDITOR: &str = "spiffe://cluster.local/ns/audit/sa/auditor";

fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn callers_file(billing_token: &str, auditor_listed: bool) -> String {
    let token = |name: &str, token: &str, grants: &str| {
        format!("[[callers]]\nname = \"{name}\"\ntoken_sha256 = \"{}\"\n{grants}\n", digest(token))
    };
    let mut file = [
        token(
            "billing",
            billing_token,
            "workspaces = [\"ws_a\"]\noperations = [\"decide\", \"execute\", \"read\"]\nmutations = [\"create_invoice\"]",
        ),
        token("other", "other-token", "workspaces = [\"ws_b\"]\noperations = [\"decide\", \"execute\", \"read\", \"log\"]"),
        token("writer", "writer-token", "workspaces = [\"ws_a\"]\noperations = [\"execute\"]"),
        token("tenants", "tenants-token", "workspaces = [\"acme-*\"]\noperations = [\"decide\"]"),
        token("logger", "logger-token", "workspaces = [\"*\"]\noperations = [\"log\"]"),
        token("author", "author-token", "workspaces = [\"*\"]\noperations = [\"author\"]"),
    ]
    .concat();
    if auditor_listed {
        file += &format!(
            "[[callers]]\nname = \"{AUDITOR}\"\ncertificate = true\nworkspaces = [\"*\"]\noperations = [\"read\"]\n"
        );
    }
    file
}

/// Writes `text` as a file only its owner may read, as the sidecar requires.
fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    let partial = path.with_extension("partial");
    std::fs::write(&partial, text).unwrap();
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::rename(&partial, path).unwrap();
}

fn bundle() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/examples/invoice/policy-bundle.json")
}

/// The fixture as `serve` wires it with a callers file and the invoice bundle.
async fn secured(name: &str, settings: ServerSettings) -> (Fixture, PathBuf) {
    let file = common::scratch(&format!("security-{name}")).join("callers.toml");
    write_private(&file, &callers_file("billing-token", true));
    let source = Arc::new(callers::load(&file).unwrap());
    Arc::clone(&source).watch(Duration::from_millis(20));
    let policies = Arc::new(governance_sidecar::policies::load(&bundle()).unwrap());
    let f = fixture_serving(EvidenceLayout::Reference, Upkeep::default(), None, settings, |api| {
        api.with_gate(Gate::with_callers(source)).with_policies(policies, false)
    })
    .await;
    (f, file)
}

fn body(workspace: &str, amount: i64) -> String {
    format!(
        r#"{{"workspace_id": "{workspace}", "principal": {{"type": "user", "id": "usr_1"}}, "object_type": "invoice", "operation": "create", "payload": {{"amount": {amount}, "currency": "USD"}}}}"#
    )
}

fn as_caller<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = token {
        request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    request
}

fn write(workspace: &str, key: &str, mutation: &str) -> ExecuteWithEvidenceRequest {
    ExecuteWithEvidenceRequest {
        body: Some(execute_with_evidence_request::Body::RequestJson(body(workspace, 10))),
        idempotency_key: Some(key.to_owned()),
        mutation: Some(MutationCall { name: mutation.into(), params: None }),
        answer_form: 0,
    }
}

fn evaluate(workspace: &str) -> EvaluateRequest {
    EvaluateRequest {
        body: Some(evaluate_request::Body::RequestJson(body(workspace, 10))),
        idempotency_key: None,
        answer_form: 0,
    }
}

fn get(key: get_evidence_request::Key) -> GetEvidenceRequest {
    GetEvidenceRequest { key: Some(key) }
}

async fn rows(f: &Fixture) -> i64 {
    f.count("SELECT count(*) FROM governance_events").await + f.count("SELECT count(*) FROM invoices").await
}

async fn client(f: &Fixture) -> GovernanceClient<Channel> {
    f.server.client().await
}

#[tokio::test]
async fn a_call_without_a_token_or_with_an_unknown_one_is_unauthenticated_and_writes_nothing() {
    let (f, _) = secured("unauthenticated", ServerSettings::default()).await;
    let mut client = client(&f).await;
    for token in [None, Some("billing-tokenx"), Some(digest("billing-token").as_str()), Some("")] {
        let status = client.execute_with_evidence(as_caller(write("ws_a", "k1", "create_invoice"), token)).await;
        assert_eq!(status.unwrap_err().code(), Code::Unauthenticated, "{token:?}");
        let status = client.evaluate(as_caller(evaluate("ws_a"), token)).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{token:?}");
        assert!(!status.message().contains("billing-token"), "{}", status.message());
    }
    let mut basic = tonic::Request::new(evaluate("ws_a"));
    basic.metadata_mut().insert("authorization", "Basic YmlsbGluZzp4".parse().unwrap());
    assert_eq!(client.evaluate(basic).await.unwrap_err().code(), Code::Unauthenticated);
    // Kernite's HTTP route too: 401, with the scheme to use.
    let answer =
        request(f.server.address, "POST", "/v1/execute", &[("Content-Type", b"application/json")], b"{}").await;
    assert_eq!(answer.status, 401, "{}", answer.body);
    assert_eq!(answer.header("www-authenticate"), Some("Bearer"));
    assert_eq!(rows(&f).await, 0);
}

#[tokio::test]
async fn the_authenticated_caller_is_recorded_beside_the_claimed_principal_and_returned() {
    let (f, _) = secured("recorded", ServerSettings::default()).await;
    let mut client = client(&f).await;
    let written = client
        .execute_with_evidence(as_caller(write("ws_a", "k-recorded", "create_invoice"), Some("billing-token")))
        .await
        .unwrap()
        .into_inner();
    assert!(written.mutation_applied);
    let stored: (String, String) = {
        let row =
            f.db.query_one("SELECT caller, principal_id FROM governance_events WHERE id = $1", &[&written.evidence_id])
                .await
                .unwrap();
        (row.get("caller"), row.get("principal_id"))
    };
    assert_eq!(stored, ("billing".to_owned(), "usr_1".to_owned()));
    let record = client
        .get_evidence(as_caller(get(get_evidence_request::Key::EvidenceId(written.evidence_id)), Some("billing-token")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(record.caller.as_deref(), Some("billing"));
    assert_eq!(record.principal_id, "usr_1");
}

#[tokio::test]
async fn a_write_in_another_workspace_or_with_a_mutation_outside_the_grant_is_denied_and_writes_nothing() {
    let (f, _) = secured("outside", ServerSettings::default()).await;
    let mut client = client(&f).await;
    let attempts = [
        ("another workspace", write("ws_b", "k2", "create_invoice"), "billing-token"),
        ("another mutation", write("ws_a", "k3", "create_invoice_plain"), "billing-token"),
        ("no execute grant", write("ws_a", "k4", "create_invoice"), "tenants-token"),
    ];
    for (attack, call, token) in attempts {
        let status = client.execute_with_evidence(as_caller(call, Some(token))).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{attack}: {status:?}");
    }
    assert_eq!(
        client.evaluate(as_caller(evaluate("ws_b"), Some("billing-token"))).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    // Kernite's validation route names a workspace too.
    let headers: [(&str, &[u8]); 2] =
        [("Content-Type", b"application/json"), ("Authorization", b"Bearer billing-token")];
    let validated =
        request(f.server.address, "POST", "/v1/validate/execute", &headers, body("ws_b", 1).as_bytes()).await;
    assert_eq!(validated.status, 403, "{}", validated.body);
    let validated =
        request(f.server.address, "POST", "/v1/validate/execute", &headers, body("ws_a", 1).as_bytes()).await;
    assert_eq!(validated.status, 200, "{}", validated.body);
    assert_eq!(rows(&f).await, 0);
}

#[tokio::test]
async fn a_call_that_proves_no_caller_is_refused_before_admission_and_its_message_is_never_read() {
    // One call at a time: a slow write holds the only permit.
    let mut settings = ServerSettings::default();
    settings.limits.concurrency_limit = 1;
    let (f, _) = secured("admission", settings).await;
    let slow = {
        let mut client = client(&f).await;
        tokio::spawn(async move {
            client.execute_with_evidence(as_caller(write("ws_b", "k-slow", "slow_insert"), Some("other-token"))).await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    // 3 MB that would wait for the permit, and then be read, if the caller were not identified first.
    let mut large = evaluate("ws_a");
    large.body = Some(evaluate_request::Body::RequestJson(format!("{{\"pad\": \"{}\"}}", "x".repeat(3 << 20))));
    let started = std::time::Instant::now();
    let mut refused = as_caller(large, Some("not-a-token"));
    refused.set_timeout(Duration::from_millis(800));
    let status = client(&f).await.evaluate(refused).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(started.elapsed() < Duration::from_millis(700), "it waited for admission: {:?}", started.elapsed());
    // Authenticated, but not granted the method: refused before admission as well.
    let mut large = evaluate("ws_a");
    large.body = Some(evaluate_request::Body::RequestJson(format!("{{\"pad\": \"{}\"}}", "x".repeat(3 << 20))));
    let mut excluded = as_caller(large, Some("logger-token"));
    excluded.set_timeout(Duration::from_millis(800));
    let started = std::time::Instant::now();
    let status = client(&f).await.evaluate(excluded).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(started.elapsed() < Duration::from_millis(700), "it waited for admission: {:?}", started.elapsed());
    assert!(slow.await.unwrap().unwrap().into_inner().mutation_applied, "the permit's holder finished");
}

#[tokio::test]
async fn a_wildcard_grant_matches_its_prefix_and_no_shorter_or_different_one() {
    let (f, _) = secured("wildcard", ServerSettings::default()).await;
    let mut client = client(&f).await;
    for (workspace, allowed) in
        [("acme-eu", true), ("acme-", true), ("acme", false), ("acmecorp", false), ("xacme-eu", false)]
    {
        let answer = client.evaluate(as_caller(evaluate(workspace), Some("tenants-token"))).await;
        assert_eq!(answer.is_ok(), allowed, "{workspace}: {answer:?}");
        if !allowed {
            assert_eq!(answer.unwrap_err().code(), Code::PermissionDenied);
        }
    }
}

#[tokio::test]
async fn another_tenants_evidence_is_not_found_by_any_key_and_cannot_be_listed() {
    let (f, _) = secured("isolation", ServerSettings::default()).await;
    let mut client = client(&f).await;
    let written = client
        .execute_with_evidence(as_caller(write("ws_a", "k-secret", "create_invoice"), Some("billing-token")))
        .await
        .unwrap()
        .into_inner();
    let record = client
        .get_evidence(as_caller(get(get_evidence_request::Key::EvidenceId(written.evidence_id)), Some("billing-token")))
        .await
        .unwrap()
        .into_inner();
    let absent = client
        .get_evidence(as_caller(
            get(get_evidence_request::Key::EvidenceId(written.evidence_id + 1000)),
            Some("other-token"),
        ))
        .await
        .unwrap_err();
    let reference = || IdempotencyRef { workspace_id: "ws_a".into(), idempotency_key: "k-secret".into() };
    for key in [
        get_evidence_request::Key::EvidenceId(written.evidence_id),
        get_evidence_request::Key::CtxId(record.ctx_id.clone()),
        get_evidence_request::Key::TraceHash(record.trace_hash.clone()),
        get_evidence_request::Key::Idempotency(reference()),
    ] {
        let status = client.get_evidence(as_caller(get(key.clone()), Some("other-token"))).await.unwrap_err();
        assert_eq!((status.code(), status.message()), (absent.code(), absent.message()), "{key:?}");
    }
    // A proof's entry names the workspace and principal: the same answer as for no row.
    let proof = |key| GetInclusionProofRequest { key: Some(key), tree_size: None };
    let no_row = client
        .get_inclusion_proof(as_caller(
            proof(get_inclusion_proof_request::Key::EvidenceId(written.evidence_id + 1000)),
            Some("other-token"),
        ))
        .await
        .unwrap_err();
    for key in [
        get_inclusion_proof_request::Key::EvidenceId(written.evidence_id),
        get_inclusion_proof_request::Key::Idempotency(reference()),
    ] {
        let status = client.get_inclusion_proof(as_caller(proof(key), Some("other-token"))).await.unwrap_err();
        assert_eq!((status.code(), status.message()), (no_row.code(), no_row.message()));
        assert_eq!(status.code(), Code::NotFound);
    }
    let listing = ListEvidenceRequest { workspace_id: "ws_a".into(), ..ListEvidenceRequest::default() };
    let status = client.list_evidence(as_caller(listing.clone(), Some("other-token"))).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(
        client.list_evidence(as_caller(listing, Some("billing-token"))).await.unwrap().into_inner().records.len(),
        1
    );
    // The log's checkpoints need the `log` grant, which billing lacks.
    let checkpoint = client.get_checkpoint(as_caller(GetCheckpointRequest::default(), Some("billing-token"))).await;
    assert_eq!(checkpoint.unwrap_err().code(), Code::PermissionDenied);
    let checkpoint = client.get_checkpoint(as_caller(GetCheckpointRequest::default(), Some("logger-token"))).await;
    assert_eq!(checkpoint.unwrap_err().code(), Code::NotFound, "no checkpoint yet, but the call was let through");
}

#[tokio::test]
async fn a_replay_is_a_read_in_the_callers_own_workspace_and_nothing_else() {
    let (f, _) = secured("replay", ServerSettings::default()).await;
    let mut client = client(&f).await;
    client
        .execute_with_evidence(as_caller(write("ws_a", "k-replayed", "create_invoice"), Some("billing-token")))
        .await
        .unwrap();
    let replay = |workspace: &str| ReplayEvidenceRequest { workspace_id: workspace.into(), ..Default::default() };
    // No token, another tenant's workspace, a caller without `read`, a workspace left out.
    for (request, token, code) in [
        (replay("ws_a"), None, Code::Unauthenticated),
        (replay("ws_a"), Some("other-token"), Code::PermissionDenied),
        (replay("ws_a"), Some("writer-token"), Code::PermissionDenied),
        (replay("ws_a"), Some("logger-token"), Code::PermissionDenied),
        (replay(""), Some("billing-token"), Code::InvalidArgument),
    ] {
        let status = client.replay_evidence(as_caller(request, token)).await.unwrap_err();
        assert_eq!(status.code(), code, "{token:?}: {}", status.message());
    }
    // Billing reads its own workspace's evidence, re-decided under the sidecar's bundle.
    let mut stream =
        client.replay_evidence(as_caller(replay("ws_a"), Some("billing-token"))).await.unwrap().into_inner();
    let mut total = None;
    while let Some(message) = stream.message().await.unwrap() {
        if let Some(replay_evidence_response::Event::Summary(summary)) = message.event {
            total = summary.total;
        }
    }
    let total = total.expect("a summary");
    assert_eq!((total.rows, total.same_bundle, total.reproduced), (1, 1, 1));
}

#[tokio::test]
async fn key_reuse_names_the_earlier_evidence_only_to_a_caller_that_may_read_it() {
    let (f, _) = secured("key-reuse", ServerSettings::default()).await;
    let mut client = client(&f).await;
    let first = client
        .execute_with_evidence(as_caller(write("ws_a", "k-reused", "create_invoice"), Some("billing-token")))
        .await
        .unwrap()
        .into_inner();
    let mut changed = write("ws_a", "k-reused", "create_invoice");
    changed.body = Some(execute_with_evidence_request::Body::RequestJson(body("ws_a", 11)));
    let to_reader = client.execute_with_evidence(as_caller(changed.clone(), Some("billing-token"))).await.unwrap_err();
    assert_eq!(to_reader.code(), Code::AlreadyExists);
    assert!(to_reader.message().contains(&first.evidence_id.to_string()), "{}", to_reader.message());
    let to_writer = client.execute_with_evidence(as_caller(changed, Some("writer-token"))).await.unwrap_err();
    assert_eq!(to_writer.code(), Code::AlreadyExists);
    assert!(!to_writer.message().contains(&first.evidence_id.to_string()), "{}", to_writer.message());
    // The very same request and key from another caller is not a replay of billing's write.
    let same = write("ws_a", "k-reused", "create_invoice");
    let status = client.execute_with_evidence(as_caller(same.clone(), Some("writer-token"))).await.unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
    let replayed = client.execute_with_evidence(as_caller(same, Some("billing-token"))).await.unwrap().into_inner();
    assert!(replayed.replayed && replayed.evidence_id == first.evidence_id);
    // The same key in another workspace is another key.
    let elsewhere =
        client.execute_with_evidence(as_caller(write("ws_b", "k-reused", "create_invoice"), Some("other-token"))).await;
    assert!(elsewhere.unwrap().into_inner().mutation_applied);
}

#[tokio::test]
async fn a_callers_own_policy_context_on_a_write_is_refused_and_writes_nothing() {
    let (f, _) = secured("own-policy", ServerSettings::default()).await;
    let mut client = client(&f).await;
    // A policy that approves anything, brought by the caller: 5,000,000 is over the bundle's limit.
    let own = body("ws_a", 5_000_000).replacen(
        '}',
        "}, \"policy_context\": {\"governed\": true, \"selected_policies\": []}",
        1,
    );
    let mut call = write("ws_a", "k-own", "create_invoice");
    call.body = Some(execute_with_evidence_request::Body::RequestJson(own));
    let status = client.execute_with_evidence(as_caller(call, Some("billing-token"))).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("policy_context"), "{}", status.message());
    assert_eq!(rows(&f).await, 0);

    // Without a bundle, and without the operator's opt-in, no write is decided at all.
    let unbundled = TestServer::start(
        ServerSettings::default(),
        GovernanceApi::with_evidence(common::evidence::store(&f.sidecar_url, common::evidence::REGISTRY).await),
    )
    .await;
    let status =
        unbundled.client().await.execute_with_evidence(write("ws_a", "k-none", "create_invoice")).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("--policy-bundle"), "{}", status.message());
    assert_eq!(rows(&f).await, 0);
}

#[tokio::test]
async fn a_mutation_whose_scope_the_bundle_does_not_govern_is_refused() {
    let (f, _) = secured("ungoverned", ServerSettings::default()).await;
    let archive = r#"{"workspace_id": "ws_b", "principal": {"type": "user", "id": "usr_1"}, "object_type": "invoice", "operation": "archive", "payload": {}, "resource": {"id": 1}}"#;
    let call = ExecuteWithEvidenceRequest {
        body: Some(execute_with_evidence_request::Body::RequestJson(archive.into())),
        idempotency_key: None,
        mutation: Some(MutationCall { name: "archive_invoice".into(), params: None }),
        answer_form: 0,
    };
    let status = client(&f).await.execute_with_evidence(as_caller(call, Some("other-token"))).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("archive_invoice"), "{}", status.message());
    assert_eq!(rows(&f).await, 0);
}

#[tokio::test]
async fn a_token_replaced_while_calls_run_takes_over_without_failing_a_call() {
    let (f, file) = secured("rotation", ServerSettings::default()).await;
    let address = f.server.address;
    let caller = move |token: &'static str| async move {
        let channel = Channel::from_shared(format!("http://{address}")).unwrap().connect().await.unwrap();
        GovernanceClient::new(channel).evaluate(as_caller(evaluate("ws_a"), Some(token))).await
    };
    // Calls with the old token run throughout; each is answered, OK or UNAUTHENTICATED, nothing else.
    let running = tokio::spawn(async move {
        let mut codes = Vec::new();
        for _ in 0..200 {
            codes.push(caller("billing-token").await.map_or_else(|s| s.code(), |_| Code::Ok));
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        codes
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    write_private(&file, &callers_file("billing-token-2", true));
    let started = std::time::Instant::now();
    while caller("billing-token-2").await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(5), "the new token is never accepted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(caller("billing-token").await.unwrap_err().code(), Code::Unauthenticated);
    let codes = running.await.unwrap();
    assert!(codes.iter().all(|c| matches!(c, Code::Ok | Code::Unauthenticated)), "{codes:?}");
    let first_refused = codes.iter().position(|c| *c == Code::Unauthenticated).expect("the old token was refused");
    assert!(codes[first_refused..].iter().all(|c| *c == Code::Unauthenticated), "the old token came back: {codes:?}");
}

#[tokio::test]
async fn a_certificate_identity_is_the_caller_and_removing_it_from_the_file_revokes_it() {
    let scratch = common::scratch("security-mtls-certificates");
    let (server_ca, client_ca) = (Authority::new(), Authority::new());
    let (cert, key) = server_ca.issue(&["localhost"]);
    std::fs::write(scratch.join("tls.crt"), cert).unwrap();
    std::fs::write(scratch.join("tls.key"), key).unwrap();
    std::fs::write(scratch.join("client-ca.crt"), &client_ca.pem).unwrap();
    let files = TlsFiles {
        cert: scratch.join("tls.crt"),
        key: scratch.join("tls.key"),
        client_ca: Some(scratch.join("client-ca.crt")),
    };
    let tls = TlsSettings { files, reload: Duration::from_secs(5) };
    let settings = ServerSettings {
        listen: ListenSettings { tls: Some(tls), ..ServerSettings::default().listen },
        ..ServerSettings::default()
    };
    let (f, file) = secured("mtls", settings).await;
    // The workload's certificate names the auditor; billing's token, sent over the same
    // connection, names billing instead.
    let (workload_cert, workload_key) = client_ca.issue_workload(AUDITOR);
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&server_ca.pem))
        .domain_name("localhost")
        .identity(Identity::from_pem(workload_cert, workload_key));
    let channel = Channel::from_shared(format!("https://{}", f.server.address)).unwrap().tls_config(tls).unwrap();
    let mut writer = GovernanceClient::new(channel.connect().await.unwrap());
    let written = writer
        .execute_with_evidence(as_caller(write("ws_a", "k-mtls", "create_invoice"), Some("billing-token")))
        .await
        .unwrap()
        .into_inner();
    let by_id = || get(get_evidence_request::Key::EvidenceId(written.evidence_id));
    let record = writer.get_evidence(by_id()).await.unwrap().into_inner();
    assert_eq!(record.caller.as_deref(), Some("billing"), "the token named the writer");
    // The certificate alone: the auditor, who may read but not write.
    let status = writer.execute_with_evidence(write("ws_a", "k-mtls-2", "create_invoice")).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(status.message().contains(AUDITOR), "{}", status.message());
    // Revoked: the file no longer lists the identity.
    write_private(&file, &callers_file("billing-token", false));
    let started = std::time::Instant::now();
    loop {
        match writer.get_evidence(by_id()).await {
            Ok(_) => assert!(started.elapsed() < Duration::from_secs(5), "the identity is never revoked"),
            Err(status) => {
                assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn refusals_are_counted_by_caller_and_operation_and_never_show_a_token() {
    let (f, _) = secured("metrics", ServerSettings::default()).await;
    let mut client = client(&f).await;
    let _ =
        client.execute_with_evidence(as_caller(write("ws_b", "k-m", "create_invoice"), Some("billing-token"))).await;
    let _ = client.evaluate(as_caller(evaluate("ws_a"), Some("not-a-token"))).await;
    let metrics = request(f.server.address, "GET", "/metrics", &[], b"").await.body;
    assert!(
        metrics
            .contains(r#"governance_refused_calls_total{caller="billing",operation="execute",reason="not_granted"}"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"caller="",operation="decide",reason="unauthenticated"}"#), "{metrics}");
    assert!(!metrics.contains("not-a-token") && !metrics.contains("billing-token"));
}

#[tokio::test]
async fn the_authoring_routes_answer_only_callers_granted_author() {
    let (f, _) = secured("author", ServerSettings::default()).await;
    let document = br#"{"openapi": {"openapi": "3.0.3", "paths": {"/invoices": {"post": {}}}}}"#;
    let post = async |route: &str, token: Option<&str>| {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let mut headers: Vec<(&str, &[u8])> = vec![("Content-Type", b"application/json")];
        headers.extend(bearer.as_deref().map(|b| ("Authorization", b.as_bytes())));
        request(f.server.address, "POST", route, &headers, document).await
    };
    for route in ["/policy/generate", "/v1/policy/generate", "/policy/check", "/v1/policy/check"] {
        let answer = post(route, None).await;
        assert_eq!((answer.status, answer.header("www-authenticate")), (401, Some("Bearer")), "{route}");
        assert_eq!(post(route, Some("billing-token")).await.status, 403, "{route}: billing may not author");
        let answer = post(route, Some("author-token")).await;
        assert!(answer.body.contains(r#""write_operations": 1"#), "{route}: {}", answer.body);
    }
    // And an author may do nothing else.
    let answer = request(
        f.server.address,
        "POST",
        "/v1/execute",
        &[("Content-Type", b"application/json"), ("Authorization", b"Bearer author-token")],
        body("ws_a", 10).as_bytes(),
    )
    .await;
    assert_eq!(answer.status, 403, "{}", answer.body);
}

#[tokio::test]
async fn on_loopback_without_a_callers_file_every_call_is_the_local_caller() {
    let f = common::evidence::fixture().await;
    let written = f
        .execute(common::evidence::call(common::evidence::invoice_request(10, "USD"), None, "create_invoice"))
        .await
        .unwrap();
    let caller: String =
        f.db.query_one("SELECT caller FROM governance_events WHERE id = $1", &[&written.evidence_id])
            .await
            .unwrap()
            .get(0);
    assert_eq!(caller, "local");
}

#[tokio::test]
async fn reflection_and_metrics_can_be_turned_off() {
    let mut settings = ServerSettings::default();
    settings.listen.reflection = false;
    settings.listen.metrics = false;
    let server = TestServer::start(settings, GovernanceApi::new()).await;
    assert_eq!(request(server.address, "GET", "/metrics", &[], b"").await.status, 404);
    let mut reflection =
        tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(server.channel().await);
    let asked = tokio_stream::iter([tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    }]);
    assert_eq!(reflection.server_reflection_info(asked).await.unwrap_err().code(), Code::Unimplemented);
}

/// `serve` run to its start-up error, with `arguments`.
fn serve_refuses(arguments: &[&str]) -> String {
    let output = Command::new(BINARY).arg("serve").args(arguments).env("RUST_LOG", "info").output().unwrap();
    assert!(!output.status.success(), "serve started with {arguments:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn serve_refuses_to_start_open_to_the_network_or_with_an_ungoverned_mutation() {
    // Refused before the listener is bound, so no test binds beyond loopback.
    let error = serve_refuses(&["--listen", "0.0.0.0:0"]);
    assert!(error.contains("refusing to listen on 0.0.0.0:0 without authentication"), "{error}");
    assert!(error.contains("--insecure-listen"), "{error}");

    let scratch = common::scratch("security-startup");
    let registry = scratch.join("mutations.toml");
    std::fs::write(&registry, common::evidence::REGISTRY).unwrap();
    let registry = registry.to_str().unwrap();
    let url = "postgresql://nobody@127.0.0.1:1/none";
    let error = serve_refuses(&["--listen", "127.0.0.1:0", "--mutations", registry, "--database-url", url]);
    assert!(error.contains("no policy bundle governs mutation(s) archive_invoice, create_invoice"), "{error}");
}

#[test]
fn secrets_in_files_others_may_read_are_refused_and_a_password_is_never_echoed() {
    use std::os::unix::fs::PermissionsExt as _;
    let scratch = common::scratch("security-files");
    let callers = scratch.join("callers.toml");
    std::fs::write(&callers, callers_file("billing-token", true)).unwrap();
    std::fs::set_permissions(&callers, std::fs::Permissions::from_mode(0o644)).unwrap();
    let error = serve_refuses(&["--listen", "127.0.0.1:0", "--callers", callers.to_str().unwrap()]);
    assert!(error.contains("group or world access"), "{error}");

    let (key, _) = common::log_key_pair("security-files-key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let error = serve_refuses(&[
        "--listen",
        "127.0.0.1:0",
        "--database-url",
        "postgresql://nobody@127.0.0.1:1/none",
        "--log-signing-key-file",
        key.to_str().unwrap(),
    ]);
    assert!(error.contains("group or world access"), "{error}");

    let error =
        serve_refuses(&["--listen", "127.0.0.1:0", "--database-url", "postgresql://app:s3cr%zzet@127.0.0.1:1/app"]);
    assert!(error.contains("the password has a broken %-escape") && !error.contains("s3cr"), "{error}");
}

#[test]
fn bound_values_never_reach_the_log_whatever_rust_log_says() {
    let sidecar = common::dev::DevSidecar::start_with_env(
        "security-log",
        &[],
        // Everything; the bound values' own target by name, within the call's span, and by field.
        &[("RUST_LOG", "trace,tokio_postgres::query=trace,[rpc]=trace,tokio_postgres::query[message]=trace")],
    );
    let marker = "marker-7d1c0e";
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let channel = Channel::from_shared(format!("http://{}", sidecar.address)).unwrap().connect().await.unwrap();
        let mut call = write("ws_log", marker, "create_invoice");
        call.body = Some(execute_with_evidence_request::Body::RequestJson(body(marker, 10)));
        let mut client = GovernanceClient::new(channel);
        client.execute_with_evidence(call).await.unwrap();
        // A read inside the call's span, by the marker as key.
        let key = IdempotencyRef { workspace_id: marker.into(), idempotency_key: marker.into() };
        client.get_evidence(get(get_evidence_request::Key::Idempotency(key))).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    });
    let log = sidecar.stop_and_read_log();
    assert!(log.contains("tokio_postgres"), "the test must see tokio-postgres's own lines");
    assert!(!log.contains(marker), "a bound value was logged");
}
