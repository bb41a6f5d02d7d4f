//! TLS to Postgres (rustls with the `ring` provider: no C toolchain needed).
//!
//! Used whenever the URL's `sslmode` is not `disable`. The server's
//! certificate is checked against the CA file if one is configured, else
//! against the system's roots.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use tokio_postgres_rustls::MakeRustlsConnect;

pub fn connector(ca_file: Option<&Path>) -> anyhow::Result<MakeRustlsConnect> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for certificate in
                CertificateDer::pem_file_iter(path).with_context(|| format!("reading {}", path.display()))?
            {
                roots.add(certificate.with_context(|| format!("parsing {}", path.display()))?)?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            for certificate in native.certs {
                // A system store may hold certificates rustls cannot use; skip those.
                let _ = roots.add(certificate);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}
