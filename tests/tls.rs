//! TLS and mutual TLS on the service port, with certificates made at test
//! time, and their replacement on disk while the server runs.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::TestServer;
use common::certificates::Authority;
use governance_sidecar::api::GovernanceApi;
use governance_sidecar::config::TlsFiles;
use governance_sidecar::config::{ListenSettings, ServerSettings, TlsSettings};
use governance_sidecar::proto::governance_client::GovernanceClient;
use governance_sidecar::proto::{EvaluateRequest, evaluate_request::Body};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

fn scratch(name: &str) -> PathBuf {
    common::scratch(&format!("tls-{name}"))
}

/// Writes the server's certificate and key (and client CA) into `dir`.
fn server_files(dir: &Path, server: &Authority, client_ca: Option<&Authority>) -> TlsFiles {
    let (cert, key) = server.issue(&["localhost", "127.0.0.1"]);
    std::fs::write(dir.join("tls.crt"), cert).unwrap();
    std::fs::write(dir.join("tls.key"), key).unwrap();
    let client_ca = client_ca.map(|ca| {
        std::fs::write(dir.join("client-ca.crt"), &ca.pem).unwrap();
        dir.join("client-ca.crt")
    });
    TlsFiles { cert: dir.join("tls.crt"), key: dir.join("tls.key"), client_ca }
}

async fn start(files: TlsFiles, reload: Duration) -> TestServer {
    let settings = ServerSettings {
        listen: ListenSettings { tls: Some(TlsSettings { files, reload }), ..ServerSettings::default().listen },
        ..ServerSettings::default()
    };
    TestServer::start(settings, GovernanceApi::new()).await
}

fn evaluate_request() -> EvaluateRequest {
    let body = r#"{"workspace_id": "w", "principal": {"type": "user", "id": "u"}, "object_type": "invoice", "operation": "create", "payload": {}}"#;
    EvaluateRequest { body: Some(Body::RequestJson(body.into())), idempotency_key: None, answer_form: 0 }
}

/// Whether an Evaluate call succeeds over TLS trusting `ca`, presenting `identity`.
async fn evaluate_over_tls(server: &TestServer, ca: &str, identity: Option<(String, String)>) -> bool {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)).domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let endpoint = Channel::from_shared(format!("https://{}", server.address)).unwrap().tls_config(tls).unwrap();
    let Ok(channel) = endpoint.connect().await else { return false };
    GovernanceClient::new(channel).evaluate(evaluate_request()).await.is_ok()
}

async fn evaluate_in_plaintext(server: &TestServer) -> bool {
    let channel = Channel::from_shared(format!("http://{}", server.address)).unwrap().connect().await;
    match channel {
        Ok(channel) => GovernanceClient::new(channel).evaluate(evaluate_request()).await.is_ok(),
        Err(_) => false,
    }
}

#[tokio::test]
async fn tls_serves_grpc_and_http_and_refuses_plaintext_and_strangers() {
    let ca = Authority::new();
    let server = start(server_files(&scratch("plain"), &ca, None), Duration::from_secs(60)).await;
    assert!(evaluate_over_tls(&server, &ca.pem, None).await, "a client trusting our CA is served");
    assert!(!evaluate_in_plaintext(&server).await, "plaintext is refused");
    assert!(!evaluate_over_tls(&server, &Authority::new().pem, None).await, "a client trusting another CA refuses us");

    // Kernite's HTTP API over TLS (HTTP/1.1, ALPN http/1.1).
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls::pki_types::CertificateDer::from(pem_to_der(&ca.pem))).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(server.address).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut stream = connector.connect(name, tcp).await.unwrap();
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap_or_default();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with(r#"{"status": "ok"}"#), "{response}");
}

fn pem_to_der(pem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject as _;
    rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap().to_vec()
}

#[tokio::test]
async fn mutual_tls_serves_only_clients_with_a_certificate_from_the_client_ca() {
    let (server_ca, client_ca) = (Authority::new(), Authority::new());
    let server = start(server_files(&scratch("mutual"), &server_ca, Some(&client_ca)), Duration::from_secs(60)).await;
    let trusted = client_ca.issue(&["billing-service"]);
    assert!(evaluate_over_tls(&server, &server_ca.pem, Some(trusted)).await, "a client certificate from the CA");
    assert!(!evaluate_over_tls(&server, &server_ca.pem, None).await, "no client certificate: refused");
    let stranger = Authority::new().issue(&["billing-service"]);
    assert!(!evaluate_over_tls(&server, &server_ca.pem, Some(stranger)).await, "another CA's certificate: refused");
}

#[tokio::test]
async fn replaced_certificates_serve_new_connections_and_a_broken_replacement_is_refused() {
    let dir = scratch("reload");
    let (first, second) = (Authority::new(), Authority::new());
    let server = start(server_files(&dir, &first, None), Duration::from_millis(100)).await;
    assert!(evaluate_over_tls(&server, &first.pem, None).await);

    server_files(&dir, &second, None);
    let started = Instant::now();
    while !evaluate_over_tls(&server, &second.pem, None).await {
        assert!(started.elapsed() < Duration::from_secs(5), "the new certificate was not picked up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("new certificate served after {:?}", started.elapsed());
    assert!(!evaluate_over_tls(&server, &first.pem, None).await, "the old certificate is gone");

    // A key that does not match the certificate: refused, the second stays.
    let (_, other_key) = second.issue(&["localhost"]);
    std::fs::write(dir.join("tls.key"), other_key).unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(evaluate_over_tls(&server, &second.pem, None).await, "a broken replacement keeps the last good one");
}

#[test]
fn settings_need_both_certificate_and_key() {
    let only_cert = governance_sidecar::config::ServeArgs {
        tls_cert: Some("/tmp/cert.pem".into()),
        ..governance_sidecar::config::ServeArgs::default()
    };
    assert!(only_cert.resolve().unwrap_err().to_string().contains("tls_key"));
}
