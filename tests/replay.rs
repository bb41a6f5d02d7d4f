//! Replay: recorded evidence re-decided under a candidate bundle, through
//! the command line and the gRPC call, against the real server and
//! PostgreSQL. Each test writes its evidence through ExecuteWithEvidence
//! (or, for rows from before migration 11, as an older sidecar would), then
//! replays it and reads the report.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use common::TestServer;
use common::dev::BINARY;
use common::evidence::{call, database, store_writing};
use common::postgres::{connect, fresh_database};
use governance_sidecar::api::GovernanceApi;
use governance_sidecar::config::{Limits, ServerSettings};
use governance_sidecar::evidence::WriteSettings;
use governance_sidecar::policies;
use governance_sidecar::proto::{ReplayEvidenceRequest, replay_evidence_response::Event};
use governance_sidecar::schema::migrate;
use serde_json::Value as Json;
use tonic::Code;

const REGISTRY: &str = r#"
[[mutations]]
name = "create_invoice"
object_type = "invoice"
operation = "create"
statements = ["INSERT INTO replay_invoices (workspace_id, amount) VALUES (:workspace_id, :amount)"]
[mutations.params]
workspace_id = { type = "text", builtin = "workspace_id" }
amount = { type = "bigint", request = "payload.amount" }

[[mutations]]
name = "create_invoice_observed"
object_type = "invoice"
operation = "create"
mode = "observe"
statements = ["INSERT INTO replay_invoices (workspace_id, amount) VALUES (:workspace_id, :amount)"]
[mutations.params]
workspace_id = { type = "text", builtin = "workspace_id" }
amount = { type = "bigint", request = "payload.amount" }
"#;

/// The invoice example's bundle: up to 1000, in USD or EUR.
fn recorded_bundle() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/examples/invoice/policy-bundle.json")
}

/// The example's bundle with its limit moved to `max`, as a file of the test's.
fn bundle_with_limit(name: &str, max: &str) -> PathBuf {
    let text =
        std::fs::read_to_string(recorded_bundle()).unwrap().replace(r#""max": 1000"#, &format!(r#""max": {max}"#));
    let path = common::scratch(name).join("candidate.json");
    std::fs::write(&path, text).unwrap();
    path
}

struct Recorded {
    server: TestServer,
    url: String,
    db: tokio_postgres::Client,
}

/// A sidecar deciding writes with the example's bundle (and, for requests
/// that bring their own, the caller's policies), its evidence in a fresh database.
async fn recorded() -> Recorded {
    recorded_with(ServerSettings::default()).await
}

async fn recorded_with(settings: ServerSettings) -> Recorded {
    let url = fresh_database().await;
    let mut db = connect(&url).await;
    migrate::migrate(&mut db).await.unwrap();
    db.batch_execute("CREATE TABLE replay_invoices (id bigserial PRIMARY KEY, workspace_id text, amount bigint)")
        .await
        .unwrap();
    let store = store_writing(database(&url), WriteSettings::default(), REGISTRY).await;
    let policies = Arc::new(policies::load(&recorded_bundle()).unwrap());
    let api = GovernanceApi::with_evidence(store).with_policies(policies, true);
    let server = TestServer::start(settings, api).await;
    Recorded { server, url, db }
}

fn invoice(workspace: &str, payload: &str) -> String {
    format!(
        r#"{{"workspace_id": "{workspace}", "principal": {{"type": "user", "id": "usr_1"}}, "object_type": "invoice",
            "operation": "create", "payload": {payload}}}"#
    )
}

impl Recorded {
    /// Writes one governed invoice; its evidence id.
    async fn write(&self, workspace: &str, payload: &str, mutation: &str) -> i64 {
        let mut client = self.server.client().await;
        let written = client.execute_with_evidence(call(invoice(workspace, payload), None, mutation)).await;
        written.unwrap().into_inner().evidence_id
    }
}

/// What `replay` printed and wrote.
struct Replayed {
    code: i32,
    stdout: String,
    stderr: String,
    /// The JSON Lines: each row not unchanged, then the summary.
    lines: Vec<Json>,
}

impl Replayed {
    fn summary(&self) -> &Json {
        &self.lines.last().expect("a summary line")["summary"]["total"]
    }

    fn row(&self, evidence_id: i64) -> &Json {
        self.lines
            .iter()
            .find(|line| line["evidence_id"] == evidence_id)
            .unwrap_or_else(|| panic!("{evidence_id} in {:#?}", self.lines))
    }
}

fn replay(url: &str, candidate: &Path, arguments: &[&str]) -> Replayed {
    let jsonl = common::scratch(&format!("replay-{}", uuid::Uuid::new_v4())).join("replayed.jsonl");
    let output = Command::new(BINARY)
        .args(["replay", "--database-url", url, "--policy-bundle"])
        .arg(candidate)
        .arg("--jsonl")
        .arg(&jsonl)
        .args(arguments)
        .output()
        .unwrap();
    let lines = std::fs::read_to_string(&jsonl)
        .map(|text| text.lines().map(|line| serde_json::from_str(line).unwrap()).collect())
        .unwrap_or_default();
    Replayed {
        code: output.status.code().unwrap(),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
        lines,
    }
}

#[tokio::test]
async fn a_candidate_that_moves_a_limit_flips_the_rows_it_touches_and_names_the_rule() {
    let r = recorded().await;
    let approved_500 = r.write("ws_a", r#"{"amount": 500, "currency": "USD"}"#, "create_invoice").await;
    let denied_5000 = r.write("ws_a", r#"{"amount": 5000, "currency": "USD"}"#, "create_invoice").await;
    let approved_50 = r.write("ws_a", r#"{"amount": 50, "currency": "EUR"}"#, "create_invoice").await;
    let denied_gbp = r.write("ws_a", r#"{"amount": 50, "currency": "GBP"}"#, "create_invoice").await;

    let stricter = replay(&r.url, &bundle_with_limit("replay-stricter", "100"), &[]);
    assert_eq!(stricter.code, 0, "{}", stricter.stderr);
    let flipped = stricter.row(approved_500);
    assert_eq!(flipped["class"], "approved_to_denied");
    assert_eq!(flipped["recorded"]["decision"], "approved");
    assert_eq!(flipped["candidate"]["reason_codes"], serde_json::json!(["max_amount_denied"]));
    assert_eq!(
        flipped["candidate"]["decided_by"],
        serde_json::json!(["invoice_create/max_amount (max_amount_denied)"])
    );
    assert!(
        stricter.stdout.contains(&format!("evidence {approved_500} invoice/create approved_to_denied")),
        "{}",
        stricter.stdout
    );
    assert!(
        stricter.stdout.contains("invoice/create     4          3                1                0"),
        "{}",
        stricter.stdout
    );
    let total = stricter.summary();
    assert_eq!(
        (total["rows"].as_u64(), total["unchanged"].as_u64(), total["approved_to_denied"].as_u64()),
        (Some(4), Some(3), Some(1))
    );
    assert_eq!(stricter.lines.len(), 2, "only the flip and the summary: {:#?}", stricter.lines);

    let looser = replay(&r.url, &bundle_with_limit("replay-looser", "10000"), &["--fail-on", "denials-lost"]);
    assert_eq!(looser.code, 1, "denials lost fail the gate: {}", looser.stderr);
    assert_eq!(looser.row(denied_5000)["class"], "denied_to_approved");
    assert_eq!(looser.row(denied_5000)["candidate"]["decided_by"], serde_json::json!(["invoice_create"]));
    assert_eq!(looser.summary()["denied_to_approved"], 1, "the GBP invoice stays denied");
    assert_eq!(
        replay(&r.url, &bundle_with_limit("replay-looser-2", "10000"), &["--fail-on", "approvals-lost"]).code,
        0
    );
    assert_eq!(replay(&r.url, &bundle_with_limit("replay-stricter-2", "100"), &["--fail-on", "flips"]).code, 1);

    // Under the bundle that decided them, every row comes out exactly as recorded.
    let same = replay(&r.url, &recorded_bundle(), &["--fail-on", "flips"]);
    assert_eq!(same.code, 0, "{}", same.stderr);
    assert_eq!((same.summary()["same_bundle"].as_u64(), same.summary()["reproduced"].as_u64()), (Some(4), Some(4)));
    assert!(
        same.stdout.contains("4 rows were replayed under the bundle that decided them: 4 reproduced exactly"),
        "{}",
        same.stdout
    );

    // A row whose recorded trace_hash was rewritten is named: replay is an audit too.
    r.db.batch_execute("SET session_replication_role = replica").await.unwrap();
    let forged = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    r.db.execute("UPDATE governance_events SET trace_hash = $2 WHERE id = $1", &[&approved_50, &forged]).await.unwrap();
    let audited = replay(&r.url, &recorded_bundle(), &[]);
    assert_eq!(
        (audited.summary()["same_bundle"].as_u64(), audited.summary()["reproduced"].as_u64()),
        (Some(4), Some(3))
    );
    assert_eq!(audited.row(approved_50)["reproduced"], false);
    assert!(audited.stdout.contains(&format!("evidence {approved_50} invoice/create unchanged")), "{}", audited.stdout);
    let _ = denied_gbp;
}

#[tokio::test]
async fn the_selection_narrows_by_workspace_scope_time_and_sample() {
    let r = recorded().await;
    let mut in_a = Vec::new();
    for amount in [100, 200, 300, 400, 500, 600] {
        in_a.push(r.write("ws_a", &format!(r#"{{"amount": {amount}, "currency": "USD"}}"#), "create_invoice").await);
    }
    let in_b = r.write("ws_b", r#"{"amount": 700, "currency": "USD"}"#, "create_invoice").await;
    let stricter = bundle_with_limit("replay-selection", "1");
    let rows = |replayed: &Replayed| replayed.summary()["rows"].as_u64().unwrap();

    assert_eq!(rows(&replay(&r.url, &stricter, &[])), 7);
    let only_b = replay(&r.url, &stricter, &["--workspace", "ws_b"]);
    assert_eq!((rows(&only_b), only_b.lines[0]["evidence_id"].as_i64()), (1, Some(in_b)));
    assert_eq!(rows(&replay(&r.url, &stricter, &["--object-type", "invoice", "--operation", "create"])), 7);
    assert_eq!(rows(&replay(&r.url, &stricter, &["--operation", "delete"])), 0);
    assert_eq!(rows(&replay(&r.url, &stricter, &["--since", "1h"])), 7);
    assert_eq!(rows(&replay(&r.url, &stricter, &["--until", "1h"])), 0);
    assert_eq!(rows(&replay(&r.url, &stricter, &["--since", "2000-01-01T00:00:00Z", "--until", "2100-01-01"])), 7);

    let sample = |seed: &str| {
        let replayed = replay(&r.url, &stricter, &["--workspace", "ws_a", "--sample", "3", "--seed", seed]);
        assert_eq!(rows(&replayed), 3);
        replayed.lines.iter().filter_map(|line| line["evidence_id"].as_i64()).collect::<Vec<_>>()
    };
    let drawn = sample("7");
    assert_eq!(drawn, sample("7"), "the same seed draws the same rows");
    assert!(drawn.iter().all(|id| in_a.contains(id)), "{drawn:?} are ws_a's");
    assert_eq!(
        rows(&replay(&r.url, &stricter, &["--sample", "100"])),
        7,
        "a sample larger than the selection is all of it"
    );
}

#[tokio::test]
async fn an_empty_selection_replays_nothing_and_passes_every_gate() {
    let r = recorded().await;
    let replayed = replay(&r.url, &bundle_with_limit("replay-empty", "1"), &["--fail-on", "flips"]);
    assert_eq!(replayed.code, 0, "{}", replayed.stderr);
    assert!(replayed.stdout.contains("no evidence matches the selection"), "{}", replayed.stdout);
    assert_eq!(replayed.lines.len(), 1);
    assert_eq!(replayed.summary()["rows"], 0);
}

#[tokio::test]
async fn a_request_masked_where_the_candidate_reads_is_undecidable_and_names_the_path() {
    let r = recorded().await;
    // The test store masks payload.card_number and keys such as api_token.
    let masked = r
        .write(
            "ws_a",
            r#"{"amount": 10, "currency": "USD", "card_number": "4111", "api_token": "t"}"#,
            "create_invoice",
        )
        .await;
    let (stored, paths): (String, String) = {
        let row =
            r.db.query_one(
                "SELECT request_json, request_redacted_paths::text FROM governance_events WHERE id = $1",
                &[&masked],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert!(!stored.contains("4111") && stored.contains(r#""card_number":"[REDACTED]""#), "{stored}");
    assert_eq!(paths, r#"["payload.api_token", "payload.card_number"]"#);

    // A candidate that reads neither decides the row (it cannot reproduce the trace_hash: the input was masked).
    let untouched = replay(&r.url, &bundle_with_limit("replay-masked-unread", "5"), &[]);
    assert_eq!(untouched.row(masked)["class"], "approved_to_denied");
    assert_eq!(untouched.row(masked)["reproduced"], Json::Null);

    // One that requires a card number reads a masked value: never guessed.
    let text = std::fs::read_to_string(recorded_bundle()).unwrap().replace(
        r#"{"rule_key": "max_amount","#,
        r#"{"rule_key": "card", "rule_definition": {"type": "required_fields", "fields": ["card_number"]}}, {"rule_key": "max_amount","#,
    );
    let reads_card = common::scratch("replay-masked-read").join("candidate.json");
    std::fs::write(&reads_card, text).unwrap();
    let replayed = replay(&r.url, &reads_card, &["--fail-on", "flips"]);
    assert_eq!(replayed.code, 0, "{}", replayed.stderr);
    let row = replayed.row(masked);
    assert_eq!(row["class"], "undecidable");
    assert_eq!(row["detail"], "payload.card_number was masked when stored, and the candidate reads it");
    assert_eq!(row["candidate"], Json::Null);
    assert!(
        replayed.stdout.contains(&format!("evidence {masked} invoice/create undecidable: payload.card_number")),
        "{}",
        replayed.stdout
    );
}

#[tokio::test]
async fn caller_policy_rows_rows_not_enforced_and_rows_without_a_kept_request_have_classes_of_their_own() {
    let r = recorded().await;
    // The fixture's requests carry their own policy_context, which this sidecar allows.
    let own_policies = call(common::evidence::invoice_request(5000, "USD"), None, "create_invoice");
    let caller_policy =
        r.server.client().await.execute_with_evidence(own_policies).await.unwrap().into_inner().evidence_id;
    let observed = r.write("ws_a", r#"{"amount": 5000, "currency": "USD"}"#, "create_invoice_observed").await;
    let enforced = r.write("ws_a", r#"{"amount": 5000, "currency": "USD"}"#, "create_invoice").await;
    // As a sidecar from before migration 11 wrote: no request.
    let older = "INSERT INTO governance_events (workspace_id, principal_id, object_type, operation, decision, \
                 reason_codes, ctx_id, trace_hash, response_json, policy_bundle_sha256) \
                 SELECT workspace_id, principal_id, object_type, operation, decision, reason_codes, ctx_id, \
                 trace_hash, response_json, policy_bundle_sha256 FROM governance_events WHERE id = $1 RETURNING id";
    let unrecorded: i64 = r.db.query_one(older, &[&enforced]).await.unwrap().get(0);
    // A request over --max-recorded-request-bytes (64 KiB by default) is decided and evidenced, not kept.
    let padding = "x".repeat(70_000);
    let too_large = r
        .write("ws_a", &format!(r#"{{"amount": 10, "currency": "USD", "memo": "{padding}"}}"#), "create_invoice")
        .await;
    let kept: Option<String> =
        r.db.query_one("SELECT request_json FROM governance_events WHERE id = $1", &[&too_large]).await.unwrap().get(0);
    assert_eq!(kept, None);

    let replayed = replay(&r.url, &bundle_with_limit("replay-classes", "10000"), &[]);
    assert_eq!(replayed.code, 0, "{}", replayed.stderr);
    assert_eq!(replayed.row(caller_policy)["class"], "caller_policy");
    assert_eq!(replayed.row(observed)["class"], "not_enforced");
    assert_eq!(replayed.row(observed)["detail"], "recorded in observe mode");
    assert_eq!(replayed.row(unrecorded)["class"], "unrecorded");
    assert_eq!(replayed.row(too_large)["class"], "unrecorded");
    assert!(replayed.row(too_large)["detail"].as_str().unwrap().contains("--max-recorded-request-bytes"));
    assert_eq!(replayed.row(enforced)["class"], "denied_to_approved");
    let total = replayed.summary();
    for (class, count) in
        [("caller_policy", 1), ("not_enforced", 1), ("unrecorded", 2), ("denied_to_approved", 1), ("rows", 5)]
    {
        assert_eq!(total[class], count, "{class}: {total}");
    }
    assert!(replayed.stdout.contains("caller policy") && replayed.stdout.contains("unrecorded"), "{}", replayed.stdout);

    // A candidate that does not govern the scope: its writes would be refused.
    let elsewhere = std::fs::read_to_string(recorded_bundle())
        .unwrap()
        .replace(r#""operation": "create""#, r#""operation": "submit""#);
    let path = common::scratch("replay-ungoverned").join("candidate.json");
    std::fs::write(&path, elsewhere).unwrap();
    let replayed = replay(&r.url, &path, &[]);
    assert_eq!(replayed.row(enforced)["class"], "ungoverned");
    assert_eq!(replayed.row(enforced)["detail"], "the candidate does not govern invoice/create");
}

#[tokio::test]
async fn a_candidate_that_is_no_bundle_or_a_time_postgresql_cannot_read_exits_2_naming_it() {
    let r = recorded().await;
    let path = common::scratch("replay-malformed").join("candidate.json");
    std::fs::write(&path, r#"{"schema_version": "kernite.policy.bundle.v1", "policies": [{"policy_key": 3}]}"#)
        .unwrap();
    let replayed = replay(&r.url, &path, &[]);
    assert_eq!(replayed.code, 2);
    assert!(
        replayed.stderr.contains("the candidate bundle") && replayed.stderr.contains("candidate.json"),
        "{}",
        replayed.stderr
    );
    let missing = replay(&r.url, Path::new("/nonexistent/candidate.json"), &[]);
    assert_eq!(missing.code, 2);
    assert!(missing.stderr.contains("/nonexistent/candidate.json"), "{}", missing.stderr);
    let bad_time = replay(&r.url, &recorded_bundle(), &["--since", "next tuesday-ish"]);
    assert_eq!(bad_time.code, 2);
    assert!(bad_time.stderr.contains("--since: PostgreSQL cannot read it as a time"), "{}", bad_time.stderr);
    let bad_gate = replay(&r.url, &recorded_bundle(), &["--fail-on", "everything"]);
    assert_eq!(bad_gate.code, 2, "{}", bad_gate.stderr);
    assert!(bad_gate.lines.is_empty());
    // A sample of nothing would pass every gate having tested nothing.
    let no_sample = replay(&r.url, &recorded_bundle(), &["--sample", "0"]);
    assert_eq!(no_sample.code, 2, "{}", no_sample.stderr);
    assert!(no_sample.lines.is_empty());
}

#[tokio::test]
async fn the_grpc_call_streams_the_rows_and_the_summary_and_refuses_bad_requests() {
    let r = recorded().await;
    let approved = r.write("ws_a", r#"{"amount": 500, "currency": "USD"}"#, "create_invoice").await;
    r.write("ws_a", r#"{"amount": 50, "currency": "USD"}"#, "create_invoice").await;
    r.write("ws_b", r#"{"amount": 500, "currency": "USD"}"#, "create_invoice").await;
    let candidate = std::fs::read(bundle_with_limit("replay-grpc", "100")).unwrap();
    let mut client = r.server.client().await;
    let request = ReplayEvidenceRequest {
        candidate_bundle: Some(candidate.clone()),
        workspace_id: "ws_a".into(),
        ..ReplayEvidenceRequest::default()
    };
    let mut stream = client.replay_evidence(request.clone()).await.unwrap().into_inner();
    let (mut rows, mut summary, mut progress) = (Vec::new(), None, 0);
    while let Some(message) = stream.message().await.unwrap() {
        match message.event.unwrap() {
            Event::Row(row) => rows.push(row),
            Event::Progress(_) => progress += 1,
            Event::Summary(s) => summary = Some(s),
        }
    }
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!((rows[0].evidence_id, rows[0].verdict.as_str()), (approved, "approved_to_denied"));
    assert_eq!(rows[0].new_reason_codes, ["max_amount_denied"]);
    let summary = summary.expect("the summary comes last");
    let total = summary.total.unwrap();
    assert_eq!((total.rows, total.unchanged, total.approved_to_denied), (2, 1, 1));
    assert!(progress >= 1 && summary.candidate_sha256.starts_with("sha256:"));

    // Every row, with include_unchanged; the sidecar's own bundle when no candidate is sent.
    let own = ReplayEvidenceRequest { candidate_bundle: None, include_unchanged: true, ..request.clone() };
    let mut stream = client.replay_evidence(own).await.unwrap().into_inner();
    let mut reproduced = Vec::new();
    while let Some(message) = stream.message().await.unwrap() {
        if let Some(Event::Row(row)) = message.event {
            reproduced.push((row.verdict, row.reproduced));
        }
    }
    assert_eq!(reproduced, vec![("unchanged".to_owned(), Some(true)); 2]);

    let no_workspace = ReplayEvidenceRequest { workspace_id: String::new(), ..request.clone() };
    assert_eq!(client.replay_evidence(no_workspace).await.unwrap_err().code(), Code::InvalidArgument);
    for (workspace, object_type) in [("ws\0a", ""), ("ws_a", "invoice\0")] {
        let nul = ReplayEvidenceRequest {
            workspace_id: workspace.into(),
            object_type: object_type.into(),
            ..request.clone()
        };
        let status = client.replay_evidence(nul).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("NUL character"), "{}", status.message());
    }
    // A bound beyond PostgreSQL's years selects what the edge selects: nothing after the end of time.
    let far = prost_types::Timestamp { seconds: i64::MAX, nanos: 999_999_999 };
    let beyond = ReplayEvidenceRequest { since: Some(far), ..request.clone() };
    let mut stream = client.replay_evidence(beyond).await.unwrap().into_inner();
    let mut rows_after_the_end = None;
    while let Some(message) = stream.message().await.unwrap() {
        if let Some(Event::Summary(summary)) = message.event {
            rows_after_the_end = summary.total.map(|total| total.rows);
        }
    }
    assert_eq!(rows_after_the_end, Some(0));
    let too_large = ReplayEvidenceRequest { sample: 100_001, ..request.clone() };
    let status = client.replay_evidence(too_large).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("sample must be at most 100000"), "{}", status.message());
    let not_a_bundle = ReplayEvidenceRequest { candidate_bundle: Some(b"{}".to_vec()), ..request };
    let status = client.replay_evidence(not_a_bundle).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("the candidate bundle is not a valid policy bundle"), "{}", status.message());
}

/// Copies of a written row, as many as `copies`: rows enough to keep a
/// replay's stream busy, written in one statement.
async fn copies_of(r: &Recorded, evidence_id: i64, copies: i32) {
    let columns = "workspace_id, principal_id, object_type, operation, decision, reason_codes, ctx_id, trace_hash, \
                   response_json, outcome, mutation_name, mode, policy_bundle_sha256, caller, request_json, \
                   request_redacted_paths";
    let copy = format!(
        "INSERT INTO governance_events ({columns}) SELECT {columns} FROM governance_events, generate_series(1, $2) \
         WHERE id = $1"
    );
    r.db.execute(&copy, &[&evidence_id, &copies]).await.unwrap();
}

#[tokio::test]
async fn a_replay_holding_its_snapshot_blocks_no_writer_and_sees_none_of_their_rows() {
    let r = recorded().await;
    let first = r.write("ws_a", r#"{"amount": 5, "currency": "USD"}"#, "create_invoice").await;
    copies_of(&r, first, 2_999).await;
    let mut client = r.server.client().await;
    let request = ReplayEvidenceRequest { workspace_id: "ws_a".into(), include_unchanged: true, ..Default::default() };
    let mut stream = client.replay_evidence(request).await.unwrap().into_inner();
    // The first message means the snapshot is open; unread, the rest hold the replay in it.
    assert!(matches!(stream.message().await.unwrap().unwrap().event, Some(Event::Row(_))));
    let started = std::time::Instant::now();
    for amount in 0..5 {
        r.write("ws_a", &format!(r#"{{"amount": {amount}, "currency": "EUR"}}"#), "create_invoice").await;
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "writes waited {:?}", started.elapsed());
    let second = ReplayEvidenceRequest { workspace_id: "ws_a".into(), ..Default::default() };
    assert_eq!(client.replay_evidence(second).await.unwrap_err().code(), Code::ResourceExhausted, "one at a time");
    let mut total = None;
    while let Some(message) = stream.message().await.unwrap() {
        if let Some(Event::Summary(summary)) = message.event {
            total = summary.total;
        }
    }
    assert_eq!(total.unwrap().rows, 3_000, "the rows written after the snapshot are not in it");
    assert_eq!(r.db.query_one("SELECT count(*) FROM governance_events", &[]).await.unwrap().get::<_, i64>(0), 3_005);
}

/// A caller that starts a replay and never reads it, its connection alive,
/// keeps the slot only until the call's deadline (the sidecar's
/// `--request-timeout-ms`) ends the replay: then another caller may replay.
#[tokio::test]
async fn a_caller_that_stops_reading_frees_the_replay_slot_at_its_deadline() {
    let limits = Limits { request_timeout: std::time::Duration::from_secs(3), ..Limits::default() };
    let settings = ServerSettings { limits, ..ServerSettings::default() };
    let r = recorded_with(settings).await;
    let first = r.write("ws_a", r#"{"amount": 5, "currency": "USD"}"#, "create_invoice").await;
    // Megabytes of rows: more than HTTP/2's windows and the stream's buffer hold unread.
    copies_of(&r, first, 20_000).await;
    r.write("ws_b", r#"{"amount": 5, "currency": "USD"}"#, "create_invoice").await;
    // HTTP/2's smallest windows, so that the stream's buffer fills while the caller does not read.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", r.server.address))
        .unwrap()
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(65_535)
        .connect()
        .await
        .unwrap();
    let mut client = governance_sidecar::proto::governance_client::GovernanceClient::new(channel);
    let request = ReplayEvidenceRequest { workspace_id: "ws_a".into(), include_unchanged: true, ..Default::default() };
    let unread = client.replay_evidence(request).await.unwrap().into_inner();

    // Another caller, on a connection of its own (the unread stream holds the first one's window).
    let mut another = r.server.client().await;
    let other = ReplayEvidenceRequest { workspace_id: "ws_b".into(), ..Default::default() };
    let started = std::time::Instant::now();
    let mut stream = loop {
        match another.replay_evidence(other.clone()).await {
            Ok(stream) => break stream.into_inner(),
            Err(status) if status.code() == Code::ResourceExhausted => {
                assert!(started.elapsed() < std::time::Duration::from_secs(15), "the unread replay kept the slot");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(status) => panic!("{status:?}"),
        }
    };
    let mut rows = None;
    while let Some(message) = stream.message().await.unwrap() {
        if let Some(Event::Summary(summary)) = message.event {
            rows = summary.total.map(|total| total.rows);
        }
    }
    assert_eq!(rows, Some(1));
    drop(unread);
}

/// The conformance corpus's decided requests, each with its Kernite name,
/// its idempotency key, and its body without its own `policy_context`.
fn corpus_requests() -> Vec<(String, Option<String>, governance_sidecar::decision::Map)> {
    use governance_sidecar::decision::json;
    let path = std::env::var_os("GOVERNANCE_CONFORMANCE_CORPUS").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance/kernite-0.1.6-execute.jsonl")
    });
    let mut requests = Vec::new();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        let case: Json = serde_json::from_str(line).unwrap();
        if case["status"] != 200 {
            continue;
        }
        let Ok(governance_sidecar::decision::Value::Object(request)) =
            json::parse(case["request_json"].as_str().unwrap())
        else {
            continue;
        };
        let key = case["idempotency_key"].as_str().map(str::to_owned);
        requests.push((case["name"].as_str().unwrap().to_owned(), key, request));
    }
    requests
}

/// One bundle governing every scope of `requests`: a scope's policies are
/// those the first request in it selected (when a bundle can say what its
/// `policy_context` said), else a generic set; keys are made unique per scope.
/// Also the registry, one mutation per scope. Scopes by normalised name.
fn corpus_bundle_and_registry(
    requests: &[(String, Option<String>, governance_sidecar::decision::Map)],
) -> (String, String, std::collections::HashMap<(String, String), String>) {
    use governance_sidecar::decision::json::{self, Layout};
    use governance_sidecar::decision::{Map, Value};
    let generic = json::parse(
        r#"[{"policy_key": "generic", "policy_version": 1, "effect": "allow", "rules": [
            {"rule_key": "amount", "rule_definition": {"type": "max_value", "field": "amount", "max": 1000}},
            {"rule_key": "currency", "rule_definition": {"type": "allowed_values", "field": "currency", "values": ["USD", "EUR"]}}]}]"#,
    )
    .unwrap();
    let mut scopes: Vec<((String, String), Vec<Value>)> = Vec::new();
    for (_, key, request) in requests {
        let mut bare = request.clone();
        let context = bare.shift_remove("policy_context");
        let Ok(Ok(validation)) = governance_sidecar::decision::validate(Value::Object(bare), key.as_deref()) else {
            continue;
        };
        let scope = (validation.request.object_type.to_string(), validation.request.operation.to_string());
        let expressible = context
            .as_ref()
            .and_then(Value::as_object)
            .filter(|c| c.keys().all(|k| k == "selected_policies" || k == "governed"));
        let policies =
            expressible.and_then(|c| c.get("selected_policies")).and_then(Value::as_sequence).filter(|p| !p.is_empty());
        match scopes.iter_mut().find(|(s, _)| *s == scope) {
            Some((_, chosen)) if chosen.is_empty() => *chosen = policies.map(<[Value]>::to_vec).unwrap_or_default(),
            Some(_) => {}
            None => scopes.push((scope, policies.map(<[Value]>::to_vec).unwrap_or_default())),
        }
    }
    let (mut policies, mut entries, mut mutations, mut names) =
        (Vec::new(), Vec::new(), toml::Table::new(), std::collections::HashMap::new());
    let mut registry = Vec::new();
    for (index, ((object_type, operation), chosen)) in scopes.into_iter().enumerate() {
        let chosen = if chosen.is_empty() { generic.as_sequence().unwrap().to_vec() } else { chosen };
        for (n, policy) in chosen.into_iter().enumerate() {
            let Value::Object(mut policy) = policy else { continue };
            let key = format!("scope{index}_policy{n}");
            policy.insert("policy_key".into(), Value::str(&key));
            policies.push(Value::Object(policy));
            let mut entry = Map::default();
            entry.insert("object_type".into(), Value::str(&object_type));
            entry.insert("operation".into(), Value::str(&operation));
            entry.insert("policy_key".into(), Value::str(&key));
            entries.push(Value::Object(entry));
        }
        let name = format!("scope{index}");
        let mut mutation = toml::Table::new();
        mutation.insert("name".into(), name.clone().into());
        mutation.insert("object_type".into(), object_type.clone().into());
        mutation.insert("operation".into(), operation.clone().into());
        mutation
            .insert("statements".into(), vec![toml::Value::from("INSERT INTO replay_corpus DEFAULT VALUES")].into());
        registry.push(toml::Value::Table(mutation));
        names.insert((object_type, operation), name);
    }
    mutations.insert("mutations".into(), toml::Value::Array(registry));
    let mut bundle = Map::default();
    bundle.insert("schema_version".into(), Value::str("kernite.policy.bundle.v1"));
    bundle.insert("policies".into(), Value::Array(policies));
    bundle.insert("operation_map".into(), Value::Array(entries));
    (json::to_string(&Value::Object(bundle), Layout::Response), toml::to_string(&mutations).unwrap(), names)
}

#[tokio::test]
async fn replaying_the_conformance_corpus_under_the_bundle_that_decided_it_reproduces_every_decision_and_trace_hash() {
    use governance_sidecar::decision::Value;
    let requests = corpus_requests();
    let (bundle, registry, mutations) = corpus_bundle_and_registry(&requests);
    let bundle_path = common::scratch("replay-corpus").join("bundle.json");
    std::fs::write(&bundle_path, &bundle).unwrap();

    let url = fresh_database().await;
    let mut db = connect(&url).await;
    migrate::migrate(&mut db).await.unwrap();
    db.batch_execute("CREATE TABLE replay_corpus (id bigserial PRIMARY KEY)").await.unwrap();
    let store = store_writing(database(&url), WriteSettings::default(), &registry).await;
    let policies = Arc::new(policies::load(&bundle_path).unwrap());
    let server = TestServer::start(
        ServerSettings::default(),
        GovernanceApi::with_evidence(store).with_policies(policies, false),
    )
    .await;
    let mut client = server.client().await;

    let (mut written, mut refused) = (Vec::new(), Vec::new());
    for (name, key, mut request) in requests {
        request.shift_remove("policy_context");
        let Ok(Ok(validation)) = governance_sidecar::decision::validate(Value::Object(request.clone()), key.as_deref())
        else {
            continue;
        };
        let scope = (validation.request.object_type.to_string(), validation.request.operation.to_string());
        let body = governance_sidecar::decision::json::to_string(
            &Value::Object(request),
            governance_sidecar::decision::json::Layout::Response,
        );
        let mut attempt = call(body, key.as_deref(), &mutations[&scope]);
        let mut answer = client.execute_with_evidence(attempt.clone()).await.map(tonic::Response::into_inner);
        if matches!(&answer, Err(status) if status.code() == Code::AlreadyExists) {
            // Another case of the corpus claimed the key in the workspace first.
            attempt.idempotency_key = attempt.idempotency_key.map(|k| format!("{k}#{name}"));
            answer = client.execute_with_evidence(attempt).await.map(tonic::Response::into_inner);
        }
        match answer {
            Ok(answer) if !answer.replayed => written.push((answer.evidence_id, answer.decision.unwrap().trace_hash)),
            Ok(_) => {}
            Err(status) => refused.push(format!("{name}: {:?} {}", status.code(), status.message())),
        }
    }
    assert_eq!(written.len(), 1_283, "every decided case is written; refused: {refused:#?}");
    assert!(refused.is_empty(), "refused: {refused:#?}");

    let masked: i64 = db
        .query_one("SELECT count(*) FROM governance_events WHERE request_redacted_paths <> '[]'", &[])
        .await
        .unwrap()
        .get(0);
    let replayed = replay(&url, &bundle_path, &["--fail-on", "flips"]);
    assert_eq!(replayed.code, 0, "{}\n{}", replayed.stdout, replayed.stderr);
    let total = replayed.summary();
    assert_eq!(total["rows"].as_u64(), Some(written.len() as u64), "{total}");
    assert_eq!(total["same_bundle"].as_u64(), Some(written.len() as u64 - masked as u64), "{total}");
    assert_eq!(total["reproduced"], total["same_bundle"], "{total}\n{:#?}", replayed.lines);
    assert_eq!(total["unanswerable"], 0, "{:#?}", replayed.lines);
    eprintln!("corpus replay: {} written, {} refused, {masked} masked: {total}", written.len(), refused.len());
    let stored_hashes: Vec<(i64, String)> = db
        .query("SELECT id, trace_hash FROM governance_events ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(stored_hashes, written, "the rows hold the trace hashes the callers were answered with");
}
