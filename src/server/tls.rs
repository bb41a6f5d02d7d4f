//! TLS (and mutual TLS) for the service port, with certificates that can be
//! replaced on disk while the sidecar runs.
//!
//! rustls with the `ring` provider. The certificate, key and client CA files
//! are read again every `--tls-reload-ms`; when their bytes changed and the new
//! set makes a valid configuration, new connections use it (connections already
//! open keep theirs). A broken set is refused, logged once, and the previous
//! configuration stays. Handshakes run off the accept loop, bounded in time, so
//! a slow or hostile client cannot hold up the others.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

use crate::config::TlsFiles;
use crate::reload::{Reloadable, Reloading};

/// How long a client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The service port's TLS configuration in force, re-read every interval.
pub(crate) type ServerTls = Reloading<rustls::ServerConfig>;

impl Reloadable for rustls::ServerConfig {
    const WHAT: &'static str = "TLS certificates";
    type Files = TlsFiles;
    type Contents = TlsBytes;

    fn read(files: &TlsFiles) -> anyhow::Result<(TlsBytes, String)> {
        read(files)
    }

    fn build(bytes: TlsBytes) -> anyhow::Result<rustls::ServerConfig> {
        configuration(&bytes)
    }
}

impl ServerTls {
    /// Accepted connections, TLS established, for tonic to serve. The accept
    /// loop ends when the server stops listening (drops the stream).
    pub fn incoming(
        self: Arc<Self>,
        listener: TcpListener,
    ) -> ReceiverStream<Result<TlsStream<TcpStream>, std::io::Error>> {
        let (sender, receiver) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    () = sender.closed() => return,
                };
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: pause rather than spin.
                        tracing::warn!(%error, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let acceptor = TlsAcceptor::from(self.current());
                let sender = sender.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = sender.send(Ok(tls)).await;
                        }
                        Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake refused"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        ReceiverStream::new(receiver)
    }
}

/// The files' contents: certificate chain, key, client CA.
pub struct TlsBytes {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

fn read(files: &TlsFiles) -> anyhow::Result<(TlsBytes, String)> {
    let read = |path: &PathBuf| std::fs::read(path).with_context(|| format!("reading {}", path.display()));
    let bytes = TlsBytes {
        cert: read(&files.cert)?,
        key: read(&files.key)?,
        client_ca: files.client_ca.as_ref().map(read).transpose()?,
    };
    let mut hash = Sha256::new();
    for part in [Some(&bytes.cert), Some(&bytes.key), bytes.client_ca.as_ref()].into_iter().flatten() {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    Ok((bytes, hex::encode(hash.finalize())))
}

fn configuration(bytes: &TlsBytes) -> anyhow::Result<rustls::ServerConfig> {
    let chain = CertificateDer::pem_slice_iter(&bytes.cert)
        .collect::<Result<Vec<_>, _>>()
        .context("parsing the certificate chain")?;
    anyhow::ensure!(!chain.is_empty(), "the certificate file holds no certificate");
    let key = PrivateKeyDer::from_pem_slice(&bytes.key).context("parsing the private key")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder =
        rustls::ServerConfig::builder_with_provider(Arc::clone(&provider)).with_safe_default_protocol_versions()?;
    let builder = match &bytes.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for certificate in CertificateDer::pem_slice_iter(ca) {
                roots.add(certificate.context("parsing the client CA")?)?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .context("building the client certificate verifier")?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key).context("the key does not match the certificate")?;
    // gRPC needs HTTP/2; Kernite's HTTP clients may speak HTTP/1.1.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
