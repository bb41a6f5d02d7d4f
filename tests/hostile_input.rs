//! The hostile-input table of docs/contract.md: each row, through the real server.

mod common;

use std::time::Duration;

use bytes::{Buf as _, BufMut as _};
use common::TestServer;
use governance_sidecar::api::GovernanceApi;
use governance_sidecar::config::ServerSettings;
use governance_sidecar::proto::{Decision, EvaluateRequest, evaluate_request::Body};
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

const VALID: &str = r#"{"workspace_id": "w", "principal": {"type": "user", "id": "u"}, "object_type": "invoice", "operation": "create", "payload": PAYLOAD}"#;

fn with_payload(payload: &str) -> String {
    VALID.replace("PAYLOAD", payload)
}

async fn evaluate(server: &TestServer, json: String, timeout: Option<Duration>) -> Result<Decision, tonic::Status> {
    let mut request = tonic::Request::new(EvaluateRequest {
        body: Some(Body::RequestJson(json)),
        idempotency_key: None,
        answer_form: 0,
    });
    if let Some(timeout) = timeout {
        request.set_timeout(timeout);
    }
    server.client().await.evaluate(request).await.map(|r| r.into_inner().decision())
}

#[tokio::test]
async fn each_hostile_input_gets_its_documented_answer_and_the_server_keeps_serving() {
    let server = TestServer::start(ServerSettings::default(), GovernanceApi::new()).await;
    let million = format!("[{}0]", "0,".repeat(999_999));
    let rows: Vec<(&str, String, Result<Decision, Code>)> = vec![
        ("invalid JSON", "{\"workspace_id\": ".into(), Err(Code::InvalidArgument)),
        ("nested 100,000 levels", "[".repeat(100_000), Err(Code::InvalidArgument)),
        ("array of a million elements", with_payload(&format!(r#"{{"items": {million}}}"#)), Ok(Decision::Approved)),
        ("lone surrogate", with_payload(r#"{"x": "\ud800"}"#), Err(Code::InvalidArgument)),
        ("NaN", with_payload(r#"{"x": NaN}"#), Err(Code::InvalidArgument)),
        ("Infinity", with_payload(r#"{"x": -Infinity}"#), Err(Code::InvalidArgument)),
        ("1e400", with_payload(r#"{"x": 1e400}"#), Err(Code::InvalidArgument)),
        ("duplicate keys (the last wins, as in Kernite)", with_payload(r#"{"x": 1, "x": 2}"#), Ok(Decision::Approved)),
        ("10 MB string", with_payload(&format!(r#"{{"x": "{}"}}"#, "a".repeat(10 << 20))), Err(Code::OutOfRange)),
        (
            "empty workspace",
            VALID.replace(r#""workspace_id": "w""#, r#""workspace_id": "  ""#).replace("PAYLOAD", "{}"),
            Err(Code::InvalidArgument),
        ),
        ("body not an object", "[1, 2]".into(), Err(Code::InvalidArgument)),
    ];
    for (name, json, expected) in rows {
        let got = evaluate(&server, json, None).await.map_err(|status| status.code());
        assert_eq!(got, expected, "{name}");
    }
    // An expired deadline is never answered with a decision.
    let expired = evaluate(&server, with_payload("{}"), Some(Duration::from_nanos(1))).await.unwrap_err();
    assert!(matches!(expired.code(), Code::DeadlineExceeded | Code::Cancelled), "{expired:?}");
    assert_eq!(evaluate(&server, with_payload("{}"), None).await.unwrap(), Decision::Approved, "still serving");
}

/// Sends bytes as they are, to feed the server protobuf that is not protobuf.
#[derive(Clone, Default)]
struct RawCodec;
struct Raw;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let bytes = src.chunk().to_vec();
        src.advance(bytes.len());
        Ok(Some(bytes))
    }
}

#[tokio::test]
async fn malformed_protobuf_is_internal_by_grpc_convention_and_harmless() {
    let server = TestServer::start(ServerSettings::default(), GovernanceApi::new()).await;
    let mut grpc = tonic::client::Grpc::new(server.channel().await);
    // Field 2 (request_json) claims 200 bytes of a string but carries 3.
    for garbage in [vec![0x12, 0xc8, 0x01, b'a', b'b', b'c'], vec![0xff; 64]] {
        grpc.ready().await.unwrap();
        let path = http::uri::PathAndQuery::from_static("/governance.v1.Governance/Evaluate");
        let status = grpc.unary(tonic::Request::new(garbage), path, RawCodec).await.unwrap_err();
        assert_eq!(status.code(), Code::Internal, "{status:?}");
    }
    assert_eq!(evaluate(&server, with_payload("{}"), None).await.unwrap(), Decision::Approved, "still serving");
}

/// Hundreds of connections that send nothing, or half an HTTP/2 preface,
/// hold no resource a real caller needs: every call made meanwhile is
/// answered, promptly, on a connection of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_idle_and_half_open_connections_leaves_every_call_answered() {
    use tokio::io::AsyncWriteExt as _;
    let server = TestServer::start(ServerSettings::default(), GovernanceApi::new()).await;
    let mut flood = Vec::new();
    for n in 0..400 {
        let mut connection = tokio::net::TcpStream::connect(server.address).await.unwrap();
        if n % 2 == 1 {
            connection.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
        }
        flood.push(connection);
    }
    let (calls, mut slowest) = (200, Duration::ZERO);
    let mut client = server.client().await;
    for _ in 0..calls {
        let started = std::time::Instant::now();
        let answer = client
            .evaluate(EvaluateRequest {
                body: Some(Body::RequestJson(with_payload("{}"))),
                idempotency_key: None,
                answer_form: 0,
            })
            .await;
        assert!(answer.is_ok(), "{answer:?}");
        slowest = slowest.max(started.elapsed());
    }
    assert!(slowest < Duration::from_secs(1), "the slowest call took {slowest:?} during the flood");
    drop(flood);
    assert_eq!(evaluate(&server, with_payload("{}"), None).await.unwrap(), Decision::Approved, "still serving");
    eprintln!("connection flood: 400 idle or half-open connections; {calls} calls, 0 failed, the slowest {slowest:?}");
}

/// Text PostgreSQL cannot store (U+0000) is refused before the database,
/// with INVALID_ARGUMENT (HTTP 400) naming the field, and nothing is written;
/// a lookup by such text is refused the same way.
#[tokio::test]
async fn a_nul_character_bound_for_the_database_is_refused_naming_its_field() {
    use common::evidence::{call, fixture, invoice_request};
    use governance_sidecar::proto::{GetEvidenceRequest, ListEvidenceRequest, get_evidence_request::Key};
    let f = fixture().await;
    let base = invoice_request(250, "USD");
    let rows = [
        ("workspace_id", base.replace(r#""ws_1""#, r#""ws\u00001""#), None),
        ("principal.id", base.replace(r#""usr_42""#, r#""usr\u000042""#), None),
        ("payload", invoice_request(250, r"U\u0000SD"), None),
        ("idempotency_key", base.clone(), Some("key\0one")),
    ];
    for (field, json, key) in rows {
        for mutation in common::evidence::BOTH_PATHS {
            let mut request = call(json.clone(), Some("nul"), mutation);
            request.idempotency_key = Some(key.unwrap_or("nul").to_owned());
            let status = f.execute(request).await.unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument, "{field}, {mutation}: {status:?}");
            assert!(status.message().contains(&format!("`{field}` holds a NUL")), "{field}: {}", status.message());
        }
        let body = format!(r#"{{"request": {json}, "mutation": {{"name": "create_invoice"}}}}"#);
        let answer = common::http::post_json(f.server.address, "/v1/execute-with-evidence", key, &body).await;
        if key.is_none() {
            assert_eq!(answer.status, 400, "{field}: {}", answer.body);
            assert!(answer.body.contains("INVALID_ARGUMENT") && answer.body.contains(field), "{}", answer.body);
        }
    }
    let mut client = f.server.client().await;
    let by_ctx_id = GetEvidenceRequest { key: Some(Key::CtxId("ctx_\0".into())) };
    assert_eq!(client.get_evidence(by_ctx_id).await.unwrap_err().code(), Code::InvalidArgument);
    let listing = ListEvidenceRequest { workspace_id: "ws\0".into(), ..Default::default() };
    assert_eq!(client.list_evidence(listing).await.unwrap_err().code(), Code::InvalidArgument);

    assert_eq!(f.count("SELECT count(*) FROM governance_events").await, 0, "no evidence written");
    assert_eq!(f.count("SELECT count(*) FROM invoices").await, 0, "no invoice written");
}

/// An identifier over the sidecar's bound (far above any Kernite uses) is
/// refused with INVALID_ARGUMENT naming the field and the limit, over both
/// transports, and nothing is written.
#[tokio::test]
async fn an_identifier_over_its_bound_is_refused_with_the_limit_in_the_message() {
    use common::evidence::{call, fixture, invoice_request};
    use governance_sidecar::defaults::MAX_IDENTIFIER_BYTES;
    let f = fixture().await;
    let long = "x".repeat(MAX_IDENTIFIER_BYTES + 1);
    let base = invoice_request(250, "USD");
    let rows = [
        ("workspace_id", base.replace(r#""ws_1""#, &format!(r#""{long}""#))),
        ("principal.id", base.replace(r#""usr_42""#, &format!(r#""{long}""#))),
        ("object_type", with_payload("{}").replace(r#""invoice""#, &format!(r#""{long}""#))),
    ];
    let limit = format!("longer than {MAX_IDENTIFIER_BYTES} bytes");
    for (field, json) in rows {
        let status = f.execute(call(json.clone(), Some("long"), "create_invoice")).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert!(status.message().contains(&format!("`{field}` is {limit}")), "{field}: {}", status.message());
        let status = evaluate(&f.server, json.clone(), None).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "Evaluate, {field}: {status:?}");
        let answer = common::http::post_json(f.server.address, "/v1/execute", None, &json).await;
        assert_eq!(answer.status, 400, "{field}: {}", answer.body);
        assert!(answer.body.contains(&limit), "{}", answer.body);
    }
    let at_the_bound = base.replace(r#""ws_1""#, &format!(r#""{}""#, "x".repeat(MAX_IDENTIFIER_BYTES)));
    assert!(f.execute(call(at_the_bound, Some("at-bound"), "create_invoice")).await.is_ok());
    assert_eq!(f.count("SELECT count(*) FROM invoices").await, 1, "only the call within the bound wrote");
}

/// Values the operator's columns refuse are the caller's to fix or a
/// conflict, never an internal error: each gets the status of its SQLSTATE
/// class (docs/evidence.md), the write is rolled back, and its error evidence kept.
#[tokio::test]
async fn values_the_database_refuses_get_the_status_of_their_sqlstate_class() {
    use common::evidence::{call, fixture, invoice_request, store};
    let f = fixture().await;
    let admin = common::postgres::connect(&f.url).await;
    admin
        .batch_execute(
            "CREATE TABLE strict_notes (code varchar(8) NOT NULL UNIQUE CHECK (code <> 'banned'), body text);
             CREATE INDEX ON strict_notes (body);
             GRANT ALL ON strict_notes TO PUBLIC",
        )
        .await
        .unwrap();
    let registry = r#"
[[mutations]]
name = "strict_note"
object_type = "invoice"
operation = "create"
statements = ["INSERT INTO strict_notes (code, body) VALUES (:code, :body)"]
[mutations.params]
code = { type = "text", request = "payload.code" }
body = { type = "text", request = "payload.body" }

[[mutations]]
name = "numbered_note"
object_type = "invoice"
operation = "create"
statements = ["INSERT INTO strict_notes (code) VALUES ((:code)::int::text)"]
[mutations.params]
code = { type = "text", request = "payload.code" }
"#;
    let server = TestServer::start(
        ServerSettings::default(),
        GovernanceApi::with_evidence(store(&f.url, registry).await).allowing_request_policies(true),
    )
    .await;
    let mut client = server.client().await;
    // Text that no compression shrinks below the b-tree's 2,704-byte row limit.
    let mut seed = 7u64;
    let incompressible: String = (0..6000)
        .map(|_| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            char::from(b'!' + (seed >> 58) as u8 + (seed >> 40) as u8 % 30)
        })
        .filter(|c| *c != '"' && *c != '\\')
        .collect();
    let note = |code: &str, body: &str| {
        invoice_request(1, "USD")
            .replace(r#""currency": "USD"}"#, &format!(r#""currency": "USD", "code": "{code}", "body": "{body}"}}"#))
    };
    let rows = [
        ("value too long (22001)", note("123456789", "b"), "strict_note", Code::InvalidArgument),
        ("not a number (22P02)", note("twelve", "b"), "numbered_note", Code::InvalidArgument),
        ("index row too large (54000)", note("big", &incompressible), "strict_note", Code::InvalidArgument),
        ("check constraint (23514)", note("banned", "b"), "strict_note", Code::Aborted),
        ("first write", note("taken", "b"), "strict_note", Code::Ok),
        ("unique violation (23505)", note("taken", "b"), "strict_note", Code::Aborted),
    ];
    for (case, json, mutation, expected) in rows {
        let answer = client.execute_with_evidence(call(json, None, mutation)).await;
        let code = answer.as_ref().map_or_else(tonic::Status::code, |_| Code::Ok);
        assert_eq!(code, expected, "{case}: {answer:?}");
    }
    let stored: i64 = admin.query_one("SELECT count(*) FROM strict_notes", &[]).await.unwrap().get(0);
    assert_eq!(stored, 1, "only the first write is stored");
    let errors = f.count("SELECT count(*) FROM governance_events WHERE outcome = 'error'").await;
    assert_eq!(errors, 5, "each refused write left its error evidence");
}
