//! A PostgreSQL failover under load, as managed services and Kubernetes
//! operators do it: the primary stops (immediate mode) and its streaming
//! standby is promoted. The sidecar is given both hosts in one URL with
//! `target_session_attrs=read-write`, as libpq accepts it. Callers retry
//! with their idempotency keys until acknowledged.
//!
//! With synchronous replication no acknowledged write may be lost; with
//! asynchronous replication the writes the standby had not received are
//! lost, and re-sending each key says which (it is done again, not replayed).
//! In both, no key is ever applied twice, the Governance service reports
//! NOT_SERVING while no writable primary is reachable, and a server that
//! answers read-only is never written to.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::TestServer;
use common::load::KeyedLoad;
use common::postgres::{ServerThread, connect, scratch_dir};
use governance_sidecar::api::GovernanceApi;
use governance_sidecar::config::ServerSettings;
use governance_sidecar::evidence::redact::Redactor;
use governance_sidecar::evidence::{EvidenceStore, WriteSettings};
use governance_sidecar::mutations::Registry;
use governance_sidecar::postgres::local_postgres::LocalPostgres;
use governance_sidecar::postgres::{DatabaseSettings, DatabaseTarget};
use governance_sidecar::proto::{ExecuteWithEvidenceRequest, MutationCall, execute_with_evidence_request::Body};
use governance_sidecar::schema::migrate;
use governance_sidecar::vocabulary::Mode;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// Each write records its key, so that a key applied twice shows as two rows.
const REGISTRY: &str = r#"
[[mutations]]
name = "create_note"
object_type = "note"
operation = "create"
statements = ["INSERT INTO notes (idempotency_key, evidence_id) VALUES (:key, :evidence_id)"]
[mutations.params]
key = { type = "text", builtin = "idempotency_key" }
evidence_id = { type = "bigint", builtin = "evidence_id" }
"#;

/// How replication waits for the standby.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Replication {
    Synchronous,
    Asynchronous,
}

/// A primary and its streaming standby, on a thread that outlives both.
struct Cluster {
    _thread: ServerThread,
    primary: Option<LocalPostgres>,
    standby: LocalPostgres,
    primary_port: u16,
}

impl Cluster {
    async fn start(name: &str, replication: Replication) -> Cluster {
        let thread = ServerThread::new();
        let (primary_dir, standby_dir) =
            (scratch_dir(&format!("{name}-primary")), scratch_dir(&format!("{name}-standby")));
        let primary =
            thread.run(move || LocalPostgres::start_with(&primary_dir, 0, false, &["synchronous_commit=on"]).unwrap());
        let primary_port = primary.port;
        let mut admin = connect(&primary.url("postgres")).await;
        migrate::migrate(&mut admin).await.unwrap();
        admin
            .batch_execute("CREATE TABLE notes (id bigserial PRIMARY KEY, idempotency_key text NOT NULL, evidence_id bigint NOT NULL)")
            .await
            .unwrap();
        let standby = thread.run(move || {
            let standby_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            LocalPostgres::start_standby(primary_port, &standby_dir, standby_port).unwrap()
        });
        if replication == Replication::Synchronous {
            // Only now: until a standby streams, every commit would wait for one.
            admin.batch_execute("ALTER SYSTEM SET synchronous_standby_names = '*'").await.unwrap();
            admin.query_one("SELECT pg_reload_conf()", &[]).await.unwrap();
        }
        // Streaming, and (synchronous) acknowledging commits, before any load.
        let wanted = if replication == Replication::Synchronous { "sync" } else { "async" };
        let started = Instant::now();
        loop {
            let states = admin.query("SELECT sync_state FROM pg_stat_replication", &[]).await.unwrap();
            if states.iter().any(|row| row.get::<_, String>("sync_state") == wanted) {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "the standby did not start streaming");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Cluster { _thread: thread, primary: Some(primary), standby, primary_port }
    }

    /// Both hosts, the primary first, as a libpq client is given a cluster.
    fn url(&self) -> String {
        format!(
            "postgresql://postgres@127.0.0.1:{},127.0.0.1:{}/postgres?target_session_attrs=read-write",
            self.primary_port, self.standby.port
        )
    }

    async fn promote_standby(&self) {
        let standby = connect(&self.standby.url("postgres")).await;
        assert!(standby.query_one("SELECT pg_promote(true, 30)", &[]).await.unwrap().get::<_, bool>(0));
    }
}

async fn store(url: &str) -> EvidenceStore {
    let settings = DatabaseSettings {
        target: DatabaseTarget::new(url),
        pool_size: 8,
        wait_timeout: Duration::from_secs(2),
        statement_timeout: Duration::from_secs(5),
    };
    let registry = Registry::parse(REGISTRY).unwrap().with_default_mode(Mode::Enforce);
    EvidenceStore::connect(&settings, WriteSettings::default(), registry, Redactor::default()).await.unwrap()
}

fn note_call(key: &str) -> ExecuteWithEvidenceRequest {
    let body = r#"{"workspace_id": "ws_failover", "principal": {"type": "user", "id": "u"}, "object_type": "note", "operation": "create", "payload": {}}"#;
    ExecuteWithEvidenceRequest {
        body: Some(Body::RequestJson(body.into())),
        idempotency_key: Some(key.into()),
        mutation: Some(MutationCall { name: "create_note".into(), params: None }),
        answer_form: 0,
    }
}

async fn governance_health(server: &TestServer) -> Option<ServingStatus> {
    let mut health = HealthClient::new(server.channel().await);
    let request = HealthCheckRequest { service: "governance.v1.Governance".into() };
    let answer = tokio::time::timeout(Duration::from_secs(2), health.check(request)).await.ok()?.ok()?;
    Some(answer.into_inner().status())
}

async fn wait_for_health(server: &TestServer, wanted: ServingStatus, within: Duration) -> Duration {
    let started = Instant::now();
    while governance_health(server).await != Some(wanted) {
        assert!(started.elapsed() < within, "Governance did not report {wanted:?} within {within:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    started.elapsed()
}

/// Notes per acknowledged key on `url`: (missing, applied twice).
async fn count_writes(url: &str, acknowledged: &[String]) -> (Vec<String>, Vec<String>) {
    let client = connect(url).await;
    let rows = client.query("SELECT idempotency_key, count(*) AS writes FROM notes GROUP BY 1", &[]).await.unwrap();
    let writes: BTreeMap<String, i64> =
        rows.iter().map(|row| (row.get("idempotency_key"), row.get("writes"))).collect();
    let missing = acknowledged.iter().filter(|key| !writes.contains_key(*key)).cloned().collect();
    let twice = writes.iter().filter(|(_, n)| **n > 1).map(|(key, _)| key.clone()).collect();
    (missing, twice)
}

async fn count_notes(client: &tokio_postgres::Client) -> i64 {
    client.query_one("SELECT count(*) FROM notes", &[]).await.unwrap().get(0)
}

/// The failover itself, as the tests of both replication modes run it.
async fn fail_over_under_load(name: &str, replication: Replication) {
    let mut cluster = Cluster::start(name, replication).await;
    let server = TestServer::start(
        ServerSettings::default(),
        GovernanceApi::with_evidence(store(&cluster.url()).await).allowing_request_policies(true),
    )
    .await;
    wait_for_health(&server, ServingStatus::Serving, Duration::from_secs(5)).await;
    let load = KeyedLoad::start(&server.address.to_string(), 8, "caller", note_call);
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let failed_at = Instant::now();
    cluster.primary.take().unwrap().stop_immediately();
    let noticed = wait_for_health(&server, ServingStatus::NotServing, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.promote_standby().await;
    wait_for_health(&server, ServingStatus::Serving, Duration::from_secs(15)).await;
    let recovered = failed_at.elapsed();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (acknowledged, failed_attempts) = load.stop().await;

    let new_primary = cluster.standby.url("postgres");
    let (missing, twice) = count_writes(&new_primary, &acknowledged).await;
    assert!(twice.is_empty(), "{replication:?}: keys applied twice: {twice:?}");
    // Re-sending each acknowledged key: one the new primary holds replays; a
    // lost one is done again, which is how a caller detects the loss.
    let mut client = server.client().await;
    let mut redone = Vec::new();
    for key in &acknowledged {
        let answer = client.execute_with_evidence(note_call(key)).await.unwrap().into_inner();
        if !answer.replayed {
            redone.push(key.clone());
        }
    }
    assert_eq!(redone, missing, "{replication:?}: the keys done again are exactly the lost ones");
    let (still_missing, twice) = count_writes(&new_primary, &acknowledged).await;
    assert!(still_missing.is_empty() && twice.is_empty(), "{replication:?}: after re-sending, each key once");
    if replication == Replication::Synchronous {
        assert!(missing.is_empty(), "synchronous replication lost acknowledged writes: {missing:?}");
    }
    eprintln!(
        "failover ({replication:?} replication): {} writes acknowledged, {failed_attempts} failed attempts, \
         {} acknowledged writes lost, 0 applied twice; NOT_SERVING after {noticed:?}; writes again {recovered:?} \
         after the primary stopped (of which 500 ms before the promotion was started)",
        acknowledged.len(),
        missing.len(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_synchronous_standby_takes_over_with_no_acknowledged_write_lost_and_no_key_applied_twice() {
    fail_over_under_load("failover-sync", Replication::Synchronous).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_asynchronous_standby_takes_over_and_idempotency_keys_reveal_what_was_lost() {
    fail_over_under_load("failover-async", Replication::Asynchronous).await;
}

/// The old primary stays up but read-only (demoted, or back as a standby)
/// while the sidecar holds connections to it: they are dropped, nothing is
/// written there, and writes go on at the new primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demoted_primary_still_answering_read_only_is_never_written_to() {
    let cluster = Cluster::start("failover-demoted", Replication::Asynchronous).await;
    let old_primary = cluster.primary.as_ref().unwrap().url("postgres");
    let server = TestServer::start(
        ServerSettings::default(),
        GovernanceApi::with_evidence(store(&cluster.url()).await).allowing_request_policies(true),
    )
    .await;
    let mut client = server.client().await;
    // The pool holds connections to the old primary.
    for n in 0..8 {
        client.execute_with_evidence(note_call(&format!("before-{n}"))).await.unwrap();
    }

    cluster.promote_standby().await;
    let admin = connect(&old_primary).await;
    admin.batch_execute("ALTER SYSTEM SET default_transaction_read_only = on").await.unwrap();
    admin.query_one("SELECT pg_reload_conf()", &[]).await.unwrap();
    let read_only = || async {
        let probe = connect(&old_primary).await;
        probe.query_one("SHOW transaction_read_only", &[]).await.unwrap().get::<_, String>(0) == "on"
    };
    let started = Instant::now();
    while !read_only().await {
        assert!(started.elapsed() < Duration::from_secs(5), "the old primary did not turn read-only");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = count_notes(&admin).await;

    for n in 0..32 {
        let answer = client.execute_with_evidence(note_call(&format!("after-{n}"))).await;
        assert!(answer.is_ok(), "write {n} after the demotion: {answer:?}");
    }
    assert_eq!(count_notes(&admin).await, before, "nothing was written to the read-only server");
    let (missing, twice) =
        count_writes(&cluster.standby.url("postgres"), &(0..32).map(|n| format!("after-{n}")).collect::<Vec<_>>())
            .await;
    assert!(missing.is_empty() && twice.is_empty(), "every write landed once on the new primary");
    wait_for_health(&server, ServingStatus::Serving, Duration::from_secs(5)).await;
}

/// Sets whether `server` answers read-only, by a reload as an operator or a
/// failover manager does it, and waits until new sessions see it.
async fn set_read_only(server: &LocalPostgres, read_only: bool) {
    let admin = connect(&server.url("postgres")).await;
    let setting = if read_only { "on" } else { "off" };
    admin.batch_execute(&format!("ALTER SYSTEM SET default_transaction_read_only = {setting}")).await.unwrap();
    admin.query_one("SELECT pg_reload_conf()", &[]).await.unwrap();
    let started = Instant::now();
    loop {
        let probe = connect(&server.url("postgres")).await;
        if probe.query_one("SHOW transaction_read_only", &[]).await.unwrap().get::<_, String>(0) == setting {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "the server did not turn read_only={setting}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Two primaries in one URL; the one the pool uses turns read-only (by a
/// reload, after the other was made writable), six times under eight keyed
/// callers. Every connection to it is retired, busy ones and the group
/// committer's included, and each call is retried on the writable one: no
/// attempt fails, and each key is written once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_turning_read_only_under_load_fails_no_call() {
    let thread = ServerThread::new();
    let mut servers = Vec::new();
    for name in ["read-only-a", "read-only-b"] {
        let dir = scratch_dir(name);
        let server = thread.run(move || LocalPostgres::start(&dir, 0, false).unwrap());
        let mut admin = connect(&server.url("postgres")).await;
        migrate::migrate(&mut admin).await.unwrap();
        admin
            .batch_execute("CREATE TABLE notes (id bigserial PRIMARY KEY, idempotency_key text NOT NULL, evidence_id bigint NOT NULL)")
            .await
            .unwrap();
        servers.push(server);
    }
    set_read_only(&servers[1], true).await;
    let url = format!(
        "postgresql://postgres@127.0.0.1:{},127.0.0.1:{}/postgres?target_session_attrs=read-write",
        servers[0].port, servers[1].port
    );
    let server = TestServer::start(
        ServerSettings::default(),
        GovernanceApi::with_evidence(store(&url).await).allowing_request_policies(true),
    )
    .await;
    let load = KeyedLoad::start(&server.address.to_string(), 8, "switch", note_call);
    tokio::time::sleep(Duration::from_millis(500)).await;
    for round in 0..6 {
        let (writable, demoted) = if round % 2 == 0 { (1, 0) } else { (0, 1) };
        set_read_only(&servers[writable], false).await;
        set_read_only(&servers[demoted], true).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let (acknowledged, failed_attempts) = load.stop().await;

    let mut writes: BTreeMap<String, i64> = BTreeMap::new();
    let mut on_each = Vec::new();
    for server in &servers {
        let client = connect(&server.url("postgres")).await;
        let rows = client.query("SELECT idempotency_key, count(*) AS writes FROM notes GROUP BY 1", &[]).await.unwrap();
        on_each.push(rows.len());
        for row in rows {
            *writes.entry(row.get("idempotency_key")).or_default() += row.get::<_, i64>("writes");
        }
    }
    eprintln!(
        "read-only switches: {} writes acknowledged ({} and {} on each server), {failed_attempts} failed attempts",
        acknowledged.len(),
        on_each[0],
        on_each[1]
    );
    assert_eq!(failed_attempts, 0, "calls failed while the primary turned read-only");
    assert!(on_each.iter().all(|&n| n > 0), "writes went to both servers in turn: {on_each:?}");
    for key in &acknowledged {
        assert_eq!(writes.get(key), Some(&1), "{key} written once");
    }
    assert_eq!(writes.len(), acknowledged.len(), "nothing written that was not acknowledged");
}

/// What a read-only answer leads to, connection by connection: retiring the
/// pool closes its idle connections at once and its busy ones (a call's, the
/// group committer's) when they come back, so no later call meets them.
#[tokio::test]
async fn retiring_the_pool_closes_busy_connections_as_they_come_back() {
    let url = common::postgres::fresh_database().await;
    let settings = DatabaseSettings {
        target: DatabaseTarget::new(url.as_str()),
        pool_size: 4,
        wait_timeout: Duration::from_secs(2),
        statement_timeout: Duration::from_secs(5),
    };
    let pool = governance_sidecar::postgres::Pool::new(&settings).unwrap();
    let backend = async |lease: &governance_sidecar::postgres::Lease| -> i32 {
        lease.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0)
    };
    let (busy, idle) = (pool.get().await.unwrap(), pool.get().await.unwrap());
    let retired = [backend(&busy).await, backend(&idle).await];
    drop(idle);
    pool.retire("the test says so");
    drop(busy);
    let (first, second) = (pool.get().await.unwrap(), pool.get().await.unwrap());
    for lease in [&first, &second] {
        assert!(!retired.contains(&backend(lease).await), "a retired connection was lent again");
    }
    let watcher = connect(&url).await;
    let started = Instant::now();
    let alive = "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)";
    while watcher.query_one(alive, &[&retired.to_vec()]).await.unwrap().get::<_, i64>(0) > 0 {
        assert!(started.elapsed() < Duration::from_secs(5), "the retired backends did not go");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
