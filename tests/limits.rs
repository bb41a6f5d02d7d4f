//! Server limits around ExecuteWithEvidence: the concurrency limit queues
//! governance calls but never health checks, an exhausted pool refuses
//! within its wait timeout and loses nothing, and a call whose deadline is
//! already spent writes nothing, and abandoned calls never take more
//! backends than the pool.

mod common;

use std::time::Duration;

use common::TestServer;
use common::evidence::{REGISTRY, call, database, fixture, invoice_request, store, store_with};
use governance_sidecar::api::GovernanceApi;
use governance_sidecar::config::{Limits, ServerSettings};
use governance_sidecar::postgres::DatabaseSettings;
use governance_sidecar::proto::governance_client::GovernanceClient;
use tonic::Code;

#[tokio::test]
async fn the_concurrency_limit_queues_governance_calls_but_never_health_checks() {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
    let f = fixture().await;
    let url = f.url.clone();
    let settings =
        ServerSettings { limits: Limits { concurrency_limit: 1, ..Limits::default() }, ..ServerSettings::default() };
    let server = TestServer::start(
        settings,
        GovernanceApi::with_evidence(store(&url, REGISTRY).await).allowing_request_policies(true),
    )
    .await;

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
        answer_form: 0,
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
        // At 1 ns tonic's client may give up by itself (CANCELLED) before any answer.
        assert!(matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled), "{status:?}");
    }
    assert_eq!(f.count("SELECT count(*) FROM governance_events").await, 0);
    assert_eq!(f.count("SELECT count(*) FROM invoices").await, 0);
}

/// A call whose deadline passes while its write waits on a locked table is
/// answered DEADLINE_EXCEEDED (504 over HTTP), not CANCELLED, which clients
/// do not retry; a retry with the same key then writes once.
#[tokio::test]
async fn a_deadline_that_passes_inside_a_locked_write_is_deadline_exceeded_over_both_transports() {
    let f = fixture().await;
    let settings = ServerSettings {
        limits: Limits { request_timeout: Duration::from_millis(400), ..Limits::default() },
        ..ServerSettings::default()
    };
    let server = TestServer::start(
        settings,
        GovernanceApi::with_evidence(store(&f.url, REGISTRY).await).allowing_request_policies(true),
    )
    .await;
    let locker = common::postgres::connect(&f.url).await;
    locker.batch_execute("BEGIN; LOCK TABLE invoices IN ACCESS EXCLUSIVE MODE").await.unwrap();

    for (n, mutation) in common::evidence::BOTH_PATHS.into_iter().enumerate() {
        // gRPC, the caller's deadline shorter than the server's bound.
        let mut request = tonic::Request::new(call(invoice_request(250, "USD"), Some(&format!("dl-{n}")), mutation));
        request.set_timeout(Duration::from_millis(200));
        let started = std::time::Instant::now();
        let status = server.client().await.execute_with_evidence(request).await.unwrap_err();
        assert_eq!(status.code(), Code::DeadlineExceeded, "{mutation}: {status:?}");
        assert!(started.elapsed() < Duration::from_secs(2), "{mutation}: answered after {:?}", started.elapsed());
        // gRPC without a deadline of its own: the server's bound.
        let request = call(invoice_request(250, "USD"), Some(&format!("dl-bound-{n}")), mutation);
        let status = server.client().await.execute_with_evidence(request).await.unwrap_err();
        assert_eq!(status.code(), Code::DeadlineExceeded, "{mutation}: {status:?}");
        // HTTP, bounded by the server.
        let body = format!(r#"{{"request": {}, "mutation": {{"name": "{mutation}"}}}}"#, invoice_request(250, "USD"));
        let answer =
            common::http::post_json(server.address, "/v1/execute-with-evidence", Some(&format!("dl-http-{n}")), &body)
                .await;
        assert_eq!(answer.status, 504, "{mutation}: {}", answer.body);
        assert!(answer.body.contains("DEADLINE_EXCEEDED"), "{}", answer.body);
    }
    locker.batch_execute("COMMIT").await.unwrap();

    // Nothing was written while the table was locked; a retry with a key writes once.
    for (n, mutation) in common::evidence::BOTH_PATHS.into_iter().enumerate() {
        for _ in 0..2 {
            let retry = call(invoice_request(250, "USD"), Some(&format!("dl-{n}")), mutation);
            server.client().await.execute_with_evidence(retry).await.unwrap();
        }
    }
    assert_eq!(f.count("SELECT count(*) FROM invoices").await, 2, "one invoice per retried key");
}

/// One HTTP/2 connection has at most `--max-concurrent-streams` calls open
/// at once: the client queues the rest, and PostgreSQL never sees more of
/// its calls at a time.
#[tokio::test]
async fn one_connection_has_at_most_its_stream_limit_of_calls_open_at_once() {
    let f = fixture().await;
    let settings = ServerSettings {
        limits: Limits { max_concurrent_streams: 2, ..Limits::default() },
        ..ServerSettings::default()
    };
    let server = TestServer::start(
        settings,
        GovernanceApi::with_evidence(store(&f.url, REGISTRY).await).allowing_request_policies(true),
    )
    .await;
    let mut client = server.client().await;
    // Once the connection's settings are known, the client queues what is over the limit
    // (before, a burst may see streams refused, which HTTP/2 allows).
    let evaluate = governance_sidecar::proto::EvaluateRequest {
        body: Some(governance_sidecar::proto::evaluate_request::Body::RequestJson(invoice_request(1, "USD"))),
        idempotency_key: None,
        answer_form: 0,
    };
    client.evaluate(evaluate).await.unwrap();
    let started = std::time::Instant::now();
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let mut client = client.clone();
            tokio::spawn(async move {
                client.execute_with_evidence(call(invoice_request(250, "USD"), None, "slow_insert")).await
            })
        })
        .collect();
    let watcher = common::postgres::connect(&f.url).await;
    let mut most = 0;
    while !calls.iter().all(|c| c.is_finished()) {
        let sleeping =
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'SELECT pg_sleep(1)%'";
        most = most.max(watcher.query_one(sleeping, &[]).await.unwrap().get::<_, i64>(0));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for call in calls {
        assert!(call.await.unwrap().unwrap().into_inner().mutation_applied);
    }
    // Six one-second calls, two at a time, take three rounds (the pool of
    // eight would run them in one). A call may start as another's stream
    // closes, so a sample can catch a third at the handover.
    assert!(started.elapsed() >= Duration::from_millis(2_500), "the calls ran in {:?}", started.elapsed());
    assert!((2..=3).contains(&most), "at most two calls of the connection ran at once (+1 at a handover): {most}");
}

/// Calls abandoned by their deadline while a locked table holds their
/// statements cancel those statements, and their connections count against
/// the pool until their backends are idle: however many callers there are
/// and however long the lock lasts (beyond `statement_timeout` here), the
/// sidecar's backends never outnumber its pool, others can still connect,
/// and nothing is left idle in a transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_calls_never_take_more_backends_than_the_pool() {
    let f = fixture().await;
    let application = "bounded-pool";
    let settings = DatabaseSettings {
        target: governance_sidecar::postgres::DatabaseTarget::new(format!("{}?application_name={application}", f.url)),
        pool_size: 4,
        statement_timeout: Duration::from_secs(2),
        ..database(&f.url)
    };
    let limits = Limits { request_timeout: Duration::from_millis(300), ..Limits::default() };
    let server = TestServer::start(
        ServerSettings { limits, ..ServerSettings::default() },
        GovernanceApi::with_evidence(store_with(settings, REGISTRY).await).allowing_request_policies(true),
    )
    .await;
    let locker = common::postgres::connect(&f.url).await;
    locker.batch_execute("BEGIN; LOCK TABLE invoices IN ACCESS EXCLUSIVE MODE").await.unwrap();
    let locked_until = std::time::Instant::now() + Duration::from_secs(5);

    // Twelve callers, three times the pool, on both write paths, until the lock ends.
    let callers: Vec<_> = (0..12)
        .map(|caller| {
            let address = format!("http://{}", server.address);
            let mutation = common::evidence::BOTH_PATHS[caller % 2];
            async move {
                let mut client = GovernanceClient::connect(address).await.unwrap();
                let mut answers = Vec::new();
                while std::time::Instant::now() < locked_until {
                    let answer = client.execute_with_evidence(call(invoice_request(250, "USD"), None, mutation)).await;
                    answers.push(answer.map(|_| Code::Ok).unwrap_or_else(|status| status.code()));
                }
                answers
            }
        })
        .map(tokio::spawn)
        .collect();
    let watcher = common::postgres::connect(&f.url).await;
    let backends = "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1";
    let mut most = 0;
    while std::time::Instant::now() < locked_until {
        most = most.max(watcher.query_one(backends, &[&application]).await.unwrap().get::<_, i64>(0));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Another client of the cluster still connects.
    common::postgres::connect(&f.url).await.query_one("SELECT 1", &[]).await.unwrap();
    locker.batch_execute("COMMIT").await.unwrap();
    let mut answers = Vec::new();
    for caller in callers {
        answers.extend(caller.await.unwrap());
    }
    assert!(most <= 4, "the sidecar had {most} backends on a pool of 4");
    assert!(answers.contains(&Code::DeadlineExceeded), "the lock should have outlasted calls: {answers:?}");
    assert!(answers.iter().all(|code| matches!(code, Code::Ok | Code::DeadlineExceeded)), "{answers:?}");

    // Once the abandoned statements are over, no backend is left in a transaction.
    let lingering = "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND state <> 'idle'";
    let started = std::time::Instant::now();
    while watcher.query_one(lingering, &[&application]).await.unwrap().get::<_, i64>(0) > 0 {
        assert!(started.elapsed() < Duration::from_secs(5), "a backend is still busy or idle in transaction");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let written =
        server.client().await.execute_with_evidence(call(invoice_request(250, "USD"), None, "create_invoice")).await;
    assert!(written.unwrap().into_inner().mutation_applied);
}

/// The request-bytes budget admits calls by the size their messages
/// declare, before reading them: two one-second writes of 700 KB each under a
/// 1 MiB budget run one after the other, while two small ones run together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_bytes_budget_runs_large_calls_one_at_a_time() {
    let f = fixture().await;
    let limits = Limits { max_message_bytes: 1 << 20, max_request_bytes_in_flight: 1 << 20, ..Limits::default() };
    let server = TestServer::start(
        ServerSettings { limits, ..ServerSettings::default() },
        GovernanceApi::with_evidence(store(&f.url, REGISTRY).await).allowing_request_policies(true),
    )
    .await;
    for (size, rounds) in [(700_000, 2), (1_000, 1)] {
        let body = invoice_request(250, "USD")
            .replace(r#""currency": "USD"}"#, &format!(r#""currency": "USD", "note": "{}"}}"#, "n".repeat(size)));
        let started = std::time::Instant::now();
        let calls: Vec<_> = (0..2)
            .map(|_| {
                let (address, body) = (format!("http://{}", server.address), body.clone());
                tokio::spawn(async move {
                    let mut client =
                        GovernanceClient::connect(address).await.unwrap().max_encoding_message_size(2 << 20);
                    client.execute_with_evidence(call(body, None, "slow_insert")).await
                })
            })
            .collect();
        for call in calls {
            assert!(call.await.unwrap().unwrap().into_inner().mutation_applied);
        }
        let took = started.elapsed();
        let expected = Duration::from_secs(rounds);
        assert!(took >= expected && took < expected + Duration::from_millis(900), "{size} bytes twice took {took:?}");
    }
}

/// A client that declares a large message and then sends it drop by drop
/// holds its admission only until its deadline: it is answered
/// DEADLINE_EXCEEDED, and the budget it held serves the next call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_drop_by_drop_holds_its_admission_only_until_its_deadline() {
    let f = fixture().await;
    let limits = Limits {
        max_message_bytes: 1 << 20,
        max_request_bytes_in_flight: 1 << 20,
        request_timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let server = TestServer::start(
        ServerSettings { limits, ..ServerSettings::default() },
        GovernanceApi::with_evidence(store(&f.url, REGISTRY).await).allowing_request_policies(true),
    )
    .await;
    let tcp = tokio::net::TcpStream::connect(server.address).await.unwrap();
    let (h2, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut h2 = h2.ready().await.unwrap();
    let request = http::Request::post(format!("http://{}/governance.v1.Governance/Evaluate", server.address))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (answer, mut sending) = h2.send_request(request, false).unwrap();
    // A message of 1 MiB declared (the whole budget), 10 bytes of it sent.
    let mut start = vec![0u8, 0, 0x10, 0, 0];
    start.extend_from_slice(&[0; 10]);
    sending.send_data(start.into(), false).unwrap();
    let started = std::time::Instant::now();
    let answer = answer.await.unwrap();
    let status = match answer.headers().get("grpc-status") {
        Some(status) => status.to_str().unwrap().to_owned(),
        None => {
            let mut body = answer.into_body();
            while body.data().await.is_some() {}
            body.trailers().await.unwrap().unwrap()["grpc-status"].to_str().unwrap().to_owned()
        }
    };
    assert_eq!(status, (Code::DeadlineExceeded as i32).to_string());
    assert!(started.elapsed() < Duration::from_secs(2), "answered after {:?}", started.elapsed());
    // The budget is free again.
    let mut client = server.client().await;
    let body = invoice_request(250, "USD")
        .replace(r#""currency": "USD"}"#, &format!(r#""currency": "USD", "note": "{}"}}"#, "n".repeat(700_000)));
    assert!(
        client.execute_with_evidence(call(body, None, "create_invoice")).await.unwrap().into_inner().mutation_applied
    );
}

/// A write that holds its connection for 100 ms.
const SLOW_WRITE: &str = r#"
[[mutations]]
name = "slow_write"
object_type = "invoice"
operation = "create"
statements = ["SELECT pg_sleep(0.1)::text AS slept", "INSERT INTO invoices (workspace_id, amount, currency, evidence_id) VALUES (:workspace_id, :amount, :currency, :evidence_id)"]
[mutations.params]
workspace_id = { type = "text", builtin = "workspace_id" }
amount = { type = "bigint", request = "payload.amount" }
currency = { type = "text", request = "payload.currency" }
evidence_id = { type = "bigint", builtin = "evidence_id" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_pool_refuses_within_its_wait_timeout_and_every_retried_key_writes_once() {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
    let f = fixture().await;
    // Two connections for 16 callers whose writes hold one for 100 ms each.
    let settings = DatabaseSettings { pool_size: 2, wait_timeout: Duration::from_millis(200), ..database(&f.url) };
    let store = store_with(settings, &format!("{REGISTRY}{SLOW_WRITE}")).await;
    let server = TestServer::start(
        ServerSettings::default(),
        GovernanceApi::with_evidence(store).allowing_request_policies(true),
    )
    .await;
    let (callers, keys_each) = (16, 5);
    let started = std::time::Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|caller| {
            let address = format!("http://{}", server.address);
            tokio::spawn(async move {
                let mut client = GovernanceClient::connect(address).await.unwrap();
                let (mut refused, mut slowest_refusal) = (0, Duration::ZERO);
                for n in 0..keys_each {
                    let key = format!("pool-{caller}-{n}");
                    loop {
                        let attempt = std::time::Instant::now();
                        match client
                            .execute_with_evidence(call(invoice_request(250, "USD"), Some(&key), "slow_write"))
                            .await
                        {
                            Ok(answer) => {
                                assert!(answer.into_inner().mutation_applied);
                                break;
                            }
                            Err(status) => {
                                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                                refused += 1;
                                slowest_refusal = slowest_refusal.max(attempt.elapsed());
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                        }
                    }
                }
                (refused, slowest_refusal)
            })
        })
        .collect();
    // Health answers while the pool is exhausted.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut health = HealthClient::new(server.channel().await);
    let status = health.check(HealthCheckRequest { service: String::new() }).await.unwrap().into_inner();
    assert_eq!(status.status(), ServingStatus::Serving);
    let (mut refused, mut slowest_refusal) = (0, Duration::ZERO);
    for task in tasks {
        let (r, s) = task.await.unwrap();
        refused += r;
        slowest_refusal = slowest_refusal.max(s);
    }
    let keys = (callers * keys_each) as i64;
    assert!(refused > 0, "the pool should have been exhausted");
    assert!(slowest_refusal < Duration::from_secs(1), "a refusal took {slowest_refusal:?}: the wait is bounded");
    let applied = f
        .count("SELECT count(*) FROM governance_events WHERE outcome = 'applied' AND idempotency_key LIKE 'pool-%'")
        .await;
    let distinct = f
        .count("SELECT count(DISTINCT idempotency_key) FROM governance_events WHERE idempotency_key LIKE 'pool-%'")
        .await;
    let written = f.count("SELECT count(*) FROM invoices i JOIN governance_events e ON e.id = i.evidence_id WHERE e.idempotency_key LIKE 'pool-%'").await;
    assert_eq!((applied, distinct, written), (keys, keys, keys), "each key applied and written once");
    eprintln!(
        "pool exhaustion: {keys} writes by {callers} callers over 2 connections in {:?}; {refused} attempts refused \
         UNAVAILABLE, the slowest after {slowest_refusal:?}; 0 lost, 0 applied twice",
        started.elapsed()
    );
}
