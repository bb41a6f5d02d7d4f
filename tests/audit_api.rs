//! The audit API: GetEvidence by each key, ListEvidence in pages and filters,
//! and a caller's traceparent joined to the evidence row.

mod common;

use common::evidence::{call, fixture, invoice_request};
use tonic::Code;

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

/// A ListEvidence page ends before its answer would pass 16 MiB, and says
/// where the next begins: 20 records of about 1 MB each come in two pages.
#[tokio::test]
async fn a_page_of_large_records_ends_before_the_answer_limit() {
    use governance_sidecar::api::GovernanceApi;
    use governance_sidecar::config::ServerSettings;
    use governance_sidecar::proto::ListEvidenceRequest;
    let f = fixture().await;
    let registry = r#"
[[mutations]]
name = "large_result"
object_type = "invoice"
operation = "create"
statements = ["SELECT repeat('x', 900000) AS filler"]
"#;
    let server = common::TestServer::start(
        ServerSettings::default(),
        GovernanceApi::with_evidence(common::evidence::store(&f.url, registry).await).allowing_request_policies(true),
    )
    .await;
    let mut client = server.client().await.max_decoding_message_size(64 << 20);
    for n in 0..20 {
        let written =
            client.execute_with_evidence(call(invoice_request(1, "USD"), Some(&format!("big-{n}")), "large_result"));
        assert!(written.await.unwrap().into_inner().mutation_applied);
    }
    let listing = || ListEvidenceRequest { workspace_id: "ws_1".into(), page_size: 50, ..Default::default() };
    let first = client.list_evidence(listing()).await.unwrap().into_inner();
    assert!(first.records.len() < 20 && !first.next_page_token.is_empty(), "{} records", first.records.len());
    assert!(prost::Message::encoded_len(&first) <= 16 << 20);
    let rest = ListEvidenceRequest { page_token: first.next_page_token.clone(), ..listing() };
    let second = client.list_evidence(rest).await.unwrap().into_inner();
    assert_eq!(first.records.len() + second.records.len(), 20, "every record once, in two pages");
    assert!(second.next_page_token.is_empty());
}
