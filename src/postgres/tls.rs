//! TLS to PostgreSQL with libpq's `sslmode` meanings (rustls with the `ring`
//! provider: no C toolchain needed).
//!
//! | sslmode | encrypted | certificate checked |
//! | --- | --- | --- |
//! | `disable` | never | — |
//! | `allow` | if the server insists (plaintext is tried first) | as `require` when encrypted |
//! | `prefer` (libpq's default) | if the server can (plaintext if TLS fails) | as `require` when encrypted |
//! | `require` | always | the chain, if a root certificate is given; else nothing |
//! | `verify-ca` | always | the chain, against the root certificate (required) |
//! | `verify-full` | always | the chain and the host name |
//!
//! The root certificate is `sslrootcert` (or `--database-ca-file`), else
//! `~/.postgresql/root.crt` if it exists; `sslrootcert=system` means the
//! system's trusted roots and, as in libpq 16, full verification. A client
//! certificate is `sslcert` and `sslkey`, else `~/.postgresql/postgresql.crt`
//! and `.key` if they exist. A connection that is encrypted but whose server
//! is not verified is logged once, as a warning.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Once};

use anyhow::{Context as _, bail};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode`, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl FromStr for SslMode {
    type Err = anyhow::Error;

    fn from_str(mode: &str) -> anyhow::Result<SslMode> {
        const ALL: [SslMode; 6] = [
            SslMode::Disable,
            SslMode::Allow,
            SslMode::Prefer,
            SslMode::Require,
            SslMode::VerifyCa,
            SslMode::VerifyFull,
        ];
        match ALL.into_iter().find(|known| known.as_str() == mode) {
            Some(known) => Ok(known),
            None => {
                bail!("invalid sslmode {mode:?}: expected disable, allow, prefer, require, verify-ca or verify-full")
            }
        }
    }
}

impl SslMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// What tokio-postgres is told for one attempt: it knows only whether to
    /// ask for TLS and whether to insist. (`allow` first tries without.)
    pub fn transport(self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as Transport;
        match self {
            SslMode::Disable | SslMode::Allow => Transport::Disable,
            SslMode::Prefer => Transport::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => Transport::Require,
        }
    }
}

/// Which roots the server's certificate chain is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCertificates {
    /// Nothing is checked.
    None,
    File(PathBuf),
    /// The system's trusted roots (`sslrootcert=system`).
    System,
}

/// How far the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    Nothing,
    /// The chain up to a trusted root, whatever name it is for.
    Chain,
    /// The chain, and that it names the host connected to.
    ChainAndHostName,
}

/// The TLS a connection uses, as libpq would choose it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    pub mode: SslMode,
    pub roots: RootCertificates,
    /// Client certificate chain and key, for servers that ask for one.
    pub client: Option<(PathBuf, PathBuf)>,
}

impl TlsOptions {
    /// libpq's rules for the TLS keywords; `home` is where `~/.postgresql` is.
    pub fn from_keywords(
        mode: Option<SslMode>,
        root_cert: Option<&str>,
        client_cert: Option<&str>,
        client_key: Option<&str>,
        home: Option<&Path>,
    ) -> anyhow::Result<TlsOptions> {
        let dot_postgresql = |file: &str| home.map(|home| home.join(".postgresql").join(file));
        let (mode, roots) = match root_cert {
            Some("system") => {
                let mode = mode.unwrap_or(SslMode::VerifyFull);
                if mode != SslMode::VerifyFull {
                    bail!("sslmode {} may not be used with sslrootcert=system: only verify-full", mode.as_str());
                }
                (mode, RootCertificates::System)
            }
            Some(path) => (mode.unwrap_or(SslMode::Prefer), RootCertificates::File(path.into())),
            None => match dot_postgresql("root.crt").filter(|path| path.exists()) {
                Some(default) => (mode.unwrap_or(SslMode::Prefer), RootCertificates::File(default)),
                None => (mode.unwrap_or(SslMode::Prefer), RootCertificates::None),
            },
        };
        if mode >= SslMode::VerifyCa && roots == RootCertificates::None {
            bail!(
                "sslmode {} needs a root certificate to verify the server with: set sslrootcert (or \
                 --database-ca-file), put it in ~/.postgresql/root.crt, or use sslrootcert=system",
                mode.as_str()
            );
        }
        let client = match (client_cert, client_key) {
            (Some(cert), key) => {
                let key = key.map(PathBuf::from).or_else(|| dot_postgresql("postgresql.key"));
                Some((PathBuf::from(cert), key.context("sslcert is set but no sslkey")?))
            }
            (None, key) => dot_postgresql("postgresql.crt").filter(|path| path.exists()).map(|cert| {
                let key = key.map(PathBuf::from).or_else(|| dot_postgresql("postgresql.key"));
                (cert, key.unwrap_or_default())
            }),
        };
        Ok(TlsOptions { mode, roots, client })
    }

    /// What an encrypted connection checks of the server's certificate.
    pub fn verification(&self) -> Verification {
        match (&self.roots, self.mode) {
            (RootCertificates::None, _) => Verification::Nothing,
            (_, SslMode::VerifyFull) => Verification::ChainAndHostName,
            _ => Verification::Chain,
        }
    }

    /// The rustls connector for these options (unused when `disable`).
    pub fn connector(&self) -> anyhow::Result<MakeRustlsConnect> {
        static WARNED: Once = Once::new();
        if self.mode > SslMode::Disable && self.verification() == Verification::Nothing {
            WARNED.call_once(|| {
                tracing::warn!(
                    sslmode = self.mode.as_str(),
                    "connections to PostgreSQL may be encrypted, but the server's certificate is not verified; \
                     set sslmode=verify-full and sslrootcert to verify whom the sidecar talks to"
                );
            });
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder =
            rustls::ClientConfig::builder_with_provider(Arc::clone(&provider)).with_safe_default_protocol_versions()?;
        let verifier: Arc<dyn ServerCertVerifier> = match (self.verification(), &self.roots) {
            (Verification::Nothing, _) | (_, RootCertificates::None) => Arc::new(AnyCertificate(provider)),
            (verification, roots) => {
                let web_pki = WebPkiServerVerifier::builder_with_provider(Arc::new(root_store(roots)?), provider)
                    .build()
                    .context("building the server certificate verifier")?;
                match verification {
                    Verification::ChainAndHostName => web_pki,
                    _ => Arc::new(AnyHostName(web_pki)),
                }
            }
        };
        let builder = builder.dangerous().with_custom_certificate_verifier(verifier);
        let config = match &self.client {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let (chain, key) = client_identity(cert, key)?;
                builder.with_client_auth_cert(chain, key).context("the client certificate does not match its key")?
            }
        };
        Ok(MakeRustlsConnect::new(config))
    }
}

fn root_store(roots: &RootCertificates) -> anyhow::Result<rustls::RootCertStore> {
    let mut store = rustls::RootCertStore::empty();
    match roots {
        RootCertificates::None => {}
        RootCertificates::File(path) => {
            let certificates = CertificateDer::pem_file_iter(path)
                .with_context(|| format!("reading the root certificate file {}", path.display()))?;
            for certificate in certificates {
                store.add(certificate.with_context(|| format!("parsing {}", path.display()))?)?;
            }
        }
        RootCertificates::System => {
            for certificate in rustls_native_certs::load_native_certs().certs {
                // A system store may hold certificates rustls cannot use; skip those.
                let _ = store.add(certificate);
            }
        }
    }
    Ok(store)
}

/// The client certificate chain and its key. As libpq, a key that group or
/// others may read is refused (0640 is allowed when root owns it).
fn client_identity(cert: &Path, key: &Path) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading the client certificate {}", cert.display()))?;
    let pem = crate::secret_file::read(key, "the client key")?;
    let key =
        PrivateKeyDer::from_pem_slice(&pem).with_context(|| format!("reading the client key {}", key.display()))?;
    Ok((chain, key))
}

/// Accepts any certificate (`require` without a root certificate): the
/// connection is encrypted, and the handshake is still signed by the
/// certificate's key, but who holds it is not checked.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Checks the chain and ignores the name (`verify-ca`, and `require` with a
/// root certificate): webpki checks the chain before the name, so a name
/// error means the chain was good.
#[derive(Debug)]
struct AnyHostName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyHostName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            verified => verified,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn require_verifies_the_chain_only_when_a_root_certificate_is_given() {
        let options = |mode, root| TlsOptions::from_keywords(Some(mode), root, None, None, None).unwrap();
        assert_eq!(options(SslMode::Require, None).verification(), Verification::Nothing);
        assert_eq!(options(SslMode::Require, Some("/ca.pem")).verification(), Verification::Chain);
        assert_eq!(options(SslMode::VerifyCa, Some("/ca.pem")).verification(), Verification::Chain);
        assert_eq!(options(SslMode::VerifyFull, Some("/ca.pem")).verification(), Verification::ChainAndHostName);
        assert_eq!(options(SslMode::VerifyFull, Some("system")).roots, RootCertificates::System);
    }

    #[test]
    fn verifying_modes_need_a_root_certificate_and_system_roots_need_verify_full() {
        for mode in [SslMode::VerifyCa, SslMode::VerifyFull] {
            let error = TlsOptions::from_keywords(Some(mode), None, None, None, None).unwrap_err();
            assert!(error.to_string().contains("needs a root certificate"), "{error}");
        }
        assert!(TlsOptions::from_keywords(Some(SslMode::Require), Some("system"), None, None, None).is_err());
        let system = TlsOptions::from_keywords(None, Some("system"), None, None, None).unwrap();
        assert_eq!(system.mode, SslMode::VerifyFull);
    }

    #[test]
    fn the_default_root_certificate_is_used_when_it_exists() {
        let home = tempfile::tempdir().unwrap();
        let none = TlsOptions::from_keywords(Some(SslMode::Require), None, None, None, Some(home.path())).unwrap();
        assert_eq!(none.roots, RootCertificates::None);
        std::fs::create_dir(home.path().join(".postgresql")).unwrap();
        let root = home.path().join(".postgresql/root.crt");
        std::fs::write(&root, "").unwrap();
        let found = TlsOptions::from_keywords(Some(SslMode::Require), None, None, None, Some(home.path())).unwrap();
        assert_eq!(found.roots, RootCertificates::File(root));
        assert_eq!(found.verification(), Verification::Chain);
    }

    #[test]
    fn modes_are_spelled_as_libpq_spells_them() {
        assert_eq!("verify-full".parse::<SslMode>().unwrap(), SslMode::VerifyFull);
        assert_eq!("allow".parse::<SslMode>().unwrap().transport(), tokio_postgres::config::SslMode::Disable);
        assert!("verify_full".parse::<SslMode>().is_err());
    }
}
