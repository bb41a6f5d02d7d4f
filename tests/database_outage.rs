//! The database going away and coming back, and TLS to Postgres, each on a
//! private PostgreSQL of its own that the test stops, starts and reconfigures.

mod common;

use std::time::{Duration, Instant};

use common::TestServer;
use common::postgres::{OwnedPostgres, connect};
use governance_sidecar::api::GovernanceApi;
use governance_sidecar::config::ServerSettings;
use governance_sidecar::evidence::redact::Redactor;
use governance_sidecar::evidence::{EvidenceStore, WriteSettings};
use governance_sidecar::mutations::Registry;
use governance_sidecar::postgres::{DatabaseSettings, DatabaseTarget};
use governance_sidecar::proto::{
    EvaluateRequest, ExecuteWithEvidenceRequest, MutationCall, evaluate_request, execute_with_evidence_request,
};
use governance_sidecar::schema::migrate;
use governance_sidecar::vocabulary::Mode;
use tonic::Code;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

const REGISTRY: &str = r#"
[[mutations]]
name = "create_note"
object_type = "note"
operation = "create"
statements = ["INSERT INTO notes (workspace_id) VALUES (:workspace_id)"]
[mutations.params]
workspace_id = { type = "text", builtin = "workspace_id" }
"#;

const NOTE: &str = r#"{"workspace_id": "ws", "principal": {"type": "user", "id": "u"}, "object_type": "note", "operation": "create", "payload": {}}"#;

fn note_call() -> ExecuteWithEvidenceRequest {
    ExecuteWithEvidenceRequest {
        body: Some(execute_with_evidence_request::Body::RequestJson(NOTE.into())),
        idempotency_key: None,
        mutation: Some(MutationCall { name: "create_note".into(), params: None }),
        answer_form: 0,
    }
}

async fn prepare_schema(url: &str) {
    let mut client = connect(url).await;
    migrate::migrate(&mut client).await.unwrap();
    client.batch_execute("CREATE TABLE notes (id bigserial PRIMARY KEY, workspace_id text NOT NULL)").await.unwrap();
}

fn settings(url: String, ca_file: Option<std::path::PathBuf>) -> DatabaseSettings {
    DatabaseSettings {
        target: DatabaseTarget { url, ca_file },
        pool_size: 4,
        wait_timeout: Duration::from_secs(1),
        statement_timeout: Duration::from_secs(5),
    }
}

async fn connect_store(settings: &DatabaseSettings) -> anyhow::Result<EvidenceStore> {
    let registry = Registry::parse(REGISTRY).unwrap().with_default_mode(Mode::Enforce);
    EvidenceStore::connect(settings, WriteSettings::default(), registry, Redactor::default()).await
}

async fn governance_health(health: &mut HealthClient<tonic::transport::Channel>, service: &str) -> ServingStatus {
    health.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner().status()
}

async fn wait_for_health(health: &mut HealthClient<tonic::transport::Channel>, want: ServingStatus) -> Duration {
    let started = Instant::now();
    while governance_health(health, "governance.v1.Governance").await != want {
        assert!(started.elapsed() < Duration::from_secs(15), "health never became {want:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed()
}

#[tokio::test]
async fn an_outage_fails_fast_flips_health_and_recovers_without_a_restart() {
    let postgres = OwnedPostgres::start("outage");
    prepare_schema(&postgres.url("postgres")).await;
    let store = connect_store(&settings(postgres.url("postgres"), None)).await.unwrap();
    let server = TestServer::start(
        ServerSettings::default(),
        GovernanceApi::with_evidence(store).allowing_request_policies(true),
    )
    .await;
    let mut client = server.client().await;
    let mut health = HealthClient::new(server.channel().await);
    assert!(client.execute_with_evidence(note_call()).await.is_ok());
    assert_eq!(governance_health(&mut health, "governance.v1.Governance").await, ServingStatus::Serving);

    postgres.set_running(false);
    let started = Instant::now();
    let status = client.execute_with_evidence(note_call()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{}", status.message());
    // Why (hosts, users, databases) is the operator's, in the log: the caller is told only this.
    assert_eq!(status.message(), "the database is unavailable: try again");
    assert!(started.elapsed() < Duration::from_secs(3), "fails fast: {:?}", started.elapsed());
    wait_for_health(&mut health, ServingStatus::NotServing).await;
    assert_eq!(governance_health(&mut health, "").await, ServingStatus::Serving, "the server as a whole still serves");
    let evaluate = EvaluateRequest {
        body: Some(evaluate_request::Body::RequestJson(NOTE.into())),
        idempotency_key: None,
        answer_form: 0,
    };
    assert!(client.evaluate(evaluate).await.is_ok(), "Evaluate needs no database");

    postgres.set_running(true);
    wait_for_health(&mut health, ServingStatus::Serving).await;
    assert!(client.execute_with_evidence(note_call()).await.is_ok(), "the pool recovered by itself");
    let notes: i64 =
        connect(&postgres.url("postgres")).await.query_one("SELECT count(*) FROM notes", &[]).await.unwrap().get(0);
    assert_eq!(notes, 2, "the call during the outage wrote nothing");
}

#[tokio::test]
async fn postgres_over_tls_is_verified_against_the_configured_ca() {
    use std::os::unix::fs::MetadataExt as _;
    let postgres = OwnedPostgres::start("tls");
    prepare_schema(&postgres.url("postgres")).await;
    postgres.set_running(false);

    // A CA and a server certificate for 127.0.0.1, made now.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server_params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    let server_cert = server_params.signed_by(&server_key, &issuer).unwrap();

    let dir = &postgres.data_dir;
    let owner = std::fs::metadata(dir).unwrap();
    for (name, contents) in [("server.crt", server_cert.pem()), ("server.key", server_key.serialize_pem())] {
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        std::os::unix::fs::chown(&path, Some(owner.uid()), Some(owner.gid())).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    }
    // TLS only: a plain connection is rejected, so success proves TLS.
    std::fs::write(
        dir.join("pg_hba.conf"),
        "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("postgresql.auto.conf"),
        "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n",
    )
    .unwrap();
    postgres.set_running(true);

    let certificates = common::scratch("outage-ca");
    let ca_file = certificates.join("ca.pem");
    std::fs::write(&ca_file, ca_cert.pem()).unwrap();
    let tls_url = format!("{}?sslmode=require", postgres.url("postgres"));

    let store =
        connect_store(&settings(tls_url.clone(), Some(ca_file.clone()))).await.expect("TLS with the right CA connects");
    let server = TestServer::start(
        ServerSettings::default(),
        GovernanceApi::with_evidence(store).allowing_request_policies(true),
    )
    .await;
    assert!(server.client().await.execute_with_evidence(note_call()).await.is_ok());

    // The `migrate` command (a Kubernetes Job's init step) connects the same way.
    let migrate_command = |ca: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_governance-sidecar"))
            .args(["migrate", "--database-url", &tls_url, "--database-ca-file"])
            .arg(ca)
            .output()
            .unwrap()
    };
    let migrated = migrate_command(&ca_file);
    assert!(migrated.status.success(), "{}", String::from_utf8_lossy(&migrated.stderr));

    let plain = connect_store(&settings(format!("{}?sslmode=disable", postgres.url("postgres")), None)).await;
    assert!(plain.is_err(), "without TLS the server refuses us");
    let other_ca = certificates.join("other-ca.pem");
    let other_key = rcgen::KeyPair::generate().unwrap();
    let mut other_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    other_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    std::fs::write(&other_ca, other_params.self_signed(&other_key).unwrap().pem()).unwrap();
    assert!(
        connect_store(&settings(tls_url.clone(), Some(other_ca.clone()))).await.is_err(),
        "a certificate from another CA is refused"
    );
    assert!(!migrate_command(&other_ca).status.success(), "`migrate` refuses it too");
}

/// Mutations that record which evidence row they belong to.
const FAULT_REGISTRY: &str = r#"
[[mutations]]
name = "create_note"
object_type = "note"
operation = "create"
statements = ["INSERT INTO notes (workspace_id, evidence_id) VALUES (:workspace_id, :evidence_id)"]
[mutations.params]
workspace_id = { type = "text", builtin = "workspace_id" }
evidence_id = { type = "bigint", builtin = "evidence_id" }
"#;

#[tokio::test]
async fn a_postgres_restart_under_load_loses_nothing_acknowledged_and_writes_nothing_twice() {
    let postgres = OwnedPostgres::start("restart");
    let url = postgres.url("postgres");
    {
        let mut client = connect(&url).await;
        migrate::migrate(&mut client).await.unwrap();
        client
            .batch_execute("CREATE TABLE notes (id bigserial PRIMARY KEY, workspace_id text NOT NULL, evidence_id bigint NOT NULL)")
            .await
            .unwrap();
    }
    let store = EvidenceStore::connect(
        &settings(url.clone(), None),
        WriteSettings::default(),
        Registry::parse(FAULT_REGISTRY).unwrap(),
        Redactor::default(),
    )
    .await
    .unwrap();
    let server = TestServer::start(
        ServerSettings::default(),
        GovernanceApi::with_evidence(store).allowing_request_policies(true),
    )
    .await;

    // 16 callers, 30 keys each; a failed call is retried with the same key, as a client would.
    let (callers, keys_per_caller) = (16, 30);
    let mut tasks = Vec::new();
    for caller in 0..callers {
        let mut client = server.client().await;
        tasks.push(tokio::spawn(async move {
            let (mut failures, mut replays) = (0u32, 0u32);
            for n in 0..keys_per_caller {
                let key = format!("k-{caller}-{n}");
                let mut attempts = 0;
                loop {
                    attempts += 1;
                    let mut request = note_call();
                    request.idempotency_key = Some(key.clone());
                    match client.execute_with_evidence(request).await {
                        Ok(response) => {
                            let response = response.into_inner();
                            assert!(response.mutation_applied, "{key}");
                            replays += u32::from(response.replayed);
                            break;
                        }
                        Err(status) => {
                            assert!(
                                matches!(status.code(), Code::Unavailable | Code::Aborted | Code::Internal),
                                "{key}: {status:?}"
                            );
                            failures += 1;
                            assert!(attempts < 400, "{key} never succeeded");
                            tokio::time::sleep(Duration::from_millis(25)).await;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (failures, replays)
        }));
    }

    tokio::time::sleep(Duration::from_millis(400)).await;
    let restart = tokio::task::spawn_blocking(move || {
        postgres.set_running(false);
        std::thread::sleep(Duration::from_millis(800));
        postgres.set_running(true);
        postgres
    });
    let postgres = restart.await.unwrap();

    let (mut failures, mut replays) = (0, 0);
    for task in tasks {
        let (f, r) = task.await.unwrap();
        failures += f;
        replays += r;
    }

    let db = connect(&url).await;
    let count = |sql: &'static str| {
        let db = &db;
        async move { db.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    let keys = (callers * keys_per_caller) as i64;
    // Every key: exactly one applied evidence row, and exactly one note, tied to it.
    assert_eq!(count("SELECT count(*) FROM governance_events WHERE idempotency_key IS NOT NULL").await, keys);
    assert_eq!(count("SELECT count(DISTINCT idempotency_key) FROM governance_events").await, keys);
    assert_eq!(
        count("SELECT count(*) FROM governance_events WHERE idempotency_key IS NOT NULL AND outcome <> 'applied'")
            .await,
        0
    );
    assert_eq!(count("SELECT count(*) FROM notes").await, keys, "one write per key, none twice");
    assert_eq!(
        count(
            "SELECT count(*) FROM notes n JOIN governance_events e ON e.id = n.evidence_id WHERE e.outcome = 'applied'"
        )
        .await,
        keys,
        "every write has its evidence"
    );
    let error_rows = count("SELECT count(*) FROM governance_events WHERE outcome = 'error'").await;
    println!(
        "restart under load: {keys} keys committed once each; {failures} failed attempts retried; \
         {replays} answers were replays of a commit whose reply was lost or raced; {error_rows} error rows"
    );
    assert!(failures > 0, "the restart should have been felt");
    drop(postgres);
}
