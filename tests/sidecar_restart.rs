//! The sidecar itself killed (SIGKILL) under load and started again: no
//! acknowledged write is lost and no key is applied twice, because a write
//! and its evidence commit together or not at all and callers retry with
//! their idempotency keys.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::dev::{BINARY, wait_for_line};
use common::load::KeyedLoad;
use common::postgres::{connect, scratch_dir};
use governance_sidecar::proto::{ExecuteWithEvidenceRequest, MutationCall, execute_with_evidence_request::Body};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `dev` on fixed ports and data, so that a restart finds both again.
fn start_dev(data_dir: &std::path::Path, listen: u16, postgres: u16) -> Child {
    let mut child = Command::new(BINARY)
        .args(["dev", "--example-policies=false", "--log-format", "json", "--listen", &format!("127.0.0.1:{listen}")])
        .args(["--postgres-port", &postgres.to_string(), "--data-dir"])
        .arg(data_dir)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    wait_for_line(&mut stderr, "serving gRPC");
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    child
}

fn invoice_call(key: &str) -> ExecuteWithEvidenceRequest {
    let body = r#"{"workspace_id": "ws_restart", "principal": {"type": "user", "id": "u"}, "object_type": "invoice", "operation": "create", "payload": {"amount": 250, "currency": "USD"}}"#;
    ExecuteWithEvidenceRequest {
        body: Some(Body::RequestJson(body.into())),
        idempotency_key: Some(key.into()),
        mutation: Some(MutationCall { name: "create_invoice".into(), params: None }),
        answer_form: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_killed_under_load_loses_no_acknowledged_write_and_applies_no_key_twice() {
    let data_dir = scratch_dir("sidecar-restart");
    let (listen, postgres) = (free_port(), free_port());
    let mut sidecar = start_dev(&data_dir, listen, postgres);

    let load = KeyedLoad::start(&format!("127.0.0.1:{listen}"), 8, "restart", invoice_call);
    tokio::time::sleep(Duration::from_millis(1500)).await;

    sidecar.kill().unwrap();
    sidecar.wait().unwrap();
    let killed_at = Instant::now();
    // Its PostgreSQL stops with it (fast shutdown); wait until the port is free.
    while std::net::TcpStream::connect(("127.0.0.1", postgres)).is_ok() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut sidecar = tokio::task::spawn_blocking(move || start_dev(&data_dir, listen, postgres)).await.unwrap();
    let restarted = killed_at.elapsed();
    let recovered = loop {
        let acknowledged = load.last_acknowledged();
        if acknowledged > killed_at {
            break acknowledged - killed_at;
        }
        assert!(killed_at.elapsed() < Duration::from_secs(60), "no write acknowledged after the restart");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (acknowledged, failed_attempts) = load.stop().await;

    let db = connect(&format!("postgresql://postgres@127.0.0.1:{postgres}/postgres")).await;
    let count = |sql: &'static str| {
        let db = &db;
        async move { db.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    let keys = acknowledged.len() as i64;
    let rows = db
        .query(
            "SELECT idempotency_key FROM governance_events WHERE outcome = 'applied' AND workspace_id = 'ws_restart'",
            &[],
        )
        .await
        .unwrap();
    let stored: std::collections::HashSet<String> = rows.iter().map(|row| row.get(0)).collect();
    let lost: Vec<&String> = acknowledged.iter().filter(|key| !stored.contains(*key)).collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    let applied =
        count("SELECT count(*) FROM governance_events WHERE outcome = 'applied' AND workspace_id = 'ws_restart'").await;
    let invoices = count("SELECT count(*) FROM invoices WHERE workspace_id = 'ws_restart'").await;
    // A key is claimed by one row at most (the unique index); an applied row
    // and its invoice commit together, so as many invoices as applied rows.
    assert_eq!(invoices, applied, "every invoice has its evidence and every applied row its invoice");
    assert!(applied >= keys, "{applied} applied rows for {keys} acknowledged keys");
    assert_eq!(count("SELECT count(*) FROM governance_events WHERE outcome = 'error'").await, 0);
    eprintln!(
        "sidecar SIGKILL: {keys} writes acknowledged, {failed_attempts} failed attempts, 0 lost, 0 applied twice; \
         serving again {restarted:?} after the kill (dev restarts its PostgreSQL too), writes acknowledged again \
         after {recovered:?}"
    );
    sidecar.kill().unwrap();
    sidecar.wait().unwrap();
}
