//! Who is calling, and what it may do: the operator's callers and their
//! grants.
//!
//! A call's caller is established once, before its message is decided
//! ([`Gate::identify`], called from the API's common call path):
//! - with a callers file ([`callers`]), every call must prove who it is:
//!   a bearer token the file lists, or a client certificate (under mutual
//!   TLS) whose identity the file lists;
//! - without one, a client certificate's identity is the caller, with every
//!   grant (the CA is the boundary), and a call without one is the
//!   listener's anonymous caller: `local` on loopback, the sidecar pattern.
//!
//! What the caller may then do is its [`Grants`], checked by the call path
//! through [`Caller`]'s methods. A certificate's identity is its URI SAN (a
//! SPIFFE ID, as Istio and Linkerd issue them), else its first DNS SAN.

pub mod callers;
pub mod grants;

use std::sync::Arc;

use rustls::pki_types::CertificateDer;

pub use callers::{Callers, CallersSource};
pub use grants::{Grants, Operation, WorkspacePattern};

use crate::error::{ServiceError, ServiceErrorCode};

/// The name evidence records for calls on a loopback listener without a callers file.
pub const LOCAL_CALLER: &str = "local";
/// The name evidence records for calls on a listener opened with `--insecure-listen`.
pub const ANONYMOUS_CALLER: &str = "anonymous";

/// An identified caller, for the length of one call.
#[derive(Debug, Clone)]
pub struct Caller {
    name: Arc<str>,
    /// `None`: everything (no callers file restricts it).
    grants: Option<Arc<Grants>>,
}

/// Why a call may not go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No credentials, or credentials no caller holds.
    #[error("{0}: send `authorization: Bearer <token>` with a token this sidecar's callers file lists")]
    Unauthenticated(&'static str),
    /// A client certificate the CA signed, whose identity the callers file
    /// does not list (or no longer lists): authenticated, granted nothing.
    #[error("the client certificate's identity `{0}` is not in this sidecar's callers file")]
    NotListed(Arc<str>),
    #[error("caller `{caller}` may not {operation} {scope}")]
    NotGranted { caller: Arc<str>, operation: Operation, scope: String },
}

impl ServiceError for Refusal {
    fn error_code(&self) -> ServiceErrorCode {
        match self {
            Refusal::Unauthenticated(_) => ServiceErrorCode::Unauthenticated,
            Refusal::NotListed(_) | Refusal::NotGranted { .. } => ServiceErrorCode::PermissionDenied,
        }
    }
}

impl Caller {
    /// A caller with every grant.
    pub fn unrestricted(name: impl Into<Arc<str>>) -> Caller {
        Caller { name: name.into(), grants: None }
    }

    /// The name evidence records and logs show; never a credential.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the caller may use `operation` at all (in some workspace).
    pub fn may(&self, operation: Operation) -> Result<(), Refusal> {
        match &self.grants {
            Some(grants) if !grants.has(operation) => Err(self.refuse(operation, "anything".into())),
            _ => Ok(()),
        }
    }

    /// Whether the caller may use `operation` in `workspace`.
    pub fn may_in(&self, operation: Operation, workspace: &str) -> Result<(), Refusal> {
        match &self.grants {
            Some(grants) if !(grants.has(operation) && grants.covers(workspace)) => {
                Err(self.refuse(operation, format!("in workspace `{workspace}`")))
            }
            _ => Ok(()),
        }
    }

    /// Whether the caller may run `mutation` in `workspace`.
    pub fn may_run(&self, mutation: &str, workspace: &str) -> Result<(), Refusal> {
        self.may_in(Operation::Execute, workspace)?;
        match &self.grants {
            Some(grants) if !grants.may_run(mutation) => {
                Err(self.refuse(Operation::Execute, format!("with mutation `{mutation}`")))
            }
            _ => Ok(()),
        }
    }

    /// Whether the caller may read `workspace`'s evidence. Evidence it may
    /// not read is answered as if it did not exist.
    pub fn can_read(&self, workspace: &str) -> bool {
        self.may_in(Operation::Read, workspace).is_ok()
    }

    fn refuse(&self, operation: Operation, scope: String) -> Refusal {
        Refusal::NotGranted { caller: Arc::clone(&self.name), operation, scope }
    }
}

/// The one place a call's caller is established.
#[derive(Clone)]
pub enum Gate {
    /// Every call must prove who it is with a token or certificate the file lists.
    Callers(Arc<CallersSource>),
    /// No callers file: a call is its client certificate's identity, else this caller.
    Open(Caller),
}

impl Default for Gate {
    fn default() -> Gate {
        Gate::open(LOCAL_CALLER)
    }
}

impl Gate {
    /// Every call proves who it is with a token or certificate `callers` lists.
    pub fn with_callers(callers: Arc<CallersSource>) -> Gate {
        Gate::Callers(callers)
    }

    /// No callers file: a call is its client certificate's identity, else `anonymous`.
    pub fn open(anonymous: &str) -> Gate {
        Gate::Open(Caller::unrestricted(anonymous))
    }

    /// Who is calling: `authorization` is the header's value, `certificate`
    /// the client's leaf certificate under mutual TLS. A bearer token wins
    /// over a certificate: it names a caller explicitly.
    pub fn identify(
        &self,
        authorization: Option<&[u8]>,
        certificate: Option<&CertificateDer<'_>>,
    ) -> Result<Caller, Refusal> {
        let callers = match self {
            Gate::Callers(callers) => callers,
            Gate::Open(anonymous) => {
                return Ok(match certificate.and_then(certificate_identity) {
                    Some(identity) => Caller::unrestricted(identity),
                    None => anonymous.clone(),
                });
            }
        };
        let callers = callers.current();
        if let Some(authorization) = authorization {
            let token = bearer_token(authorization).ok_or(Refusal::Unauthenticated("malformed authorization"))?;
            let known = callers.by_token(token).ok_or(Refusal::Unauthenticated("unknown token"))?;
            return Ok(Caller { name: Arc::clone(&known.name), grants: Some(Arc::clone(&known.grants)) });
        }
        let Some(certificate) = certificate else { return Err(Refusal::Unauthenticated("no credentials")) };
        let identity = certificate_identity(certificate)
            .ok_or(Refusal::Unauthenticated("the client certificate names no URI or DNS identity"))?;
        match callers.by_certificate(&identity) {
            Some(known) => Ok(Caller { name: Arc::clone(&known.name), grants: Some(Arc::clone(&known.grants)) }),
            None => Err(Refusal::NotListed(identity.into())),
        }
    }
}

/// The token of `Bearer <token>` (the scheme in any case, RFC 9110).
fn bearer_token(authorization: &[u8]) -> Option<&[u8]> {
    let (scheme, token) = authorization.split_at_checked(7)?;
    let token = token.trim_ascii();
    (scheme.eq_ignore_ascii_case(b"bearer ") && !token.is_empty()).then_some(token)
}

/// A client certificate's identity: its first URI SAN, else its first DNS SAN.
fn certificate_identity(certificate: &CertificateDer<'_>) -> Option<String> {
    let certificate = webpki::EndEntityCert::try_from(certificate).ok()?;
    let name = certificate.valid_uri_names().next().or_else(|| certificate.valid_dns_names().next())?;
    (!name.is_empty() && !name.contains('\0')).then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bearer_token_is_read_from_its_header() {
        assert_eq!(bearer_token(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"bearer  abc "), Some(&b"abc"[..]));
        for bad in [&b"Basic abc"[..], b"Bearer", b"Bearer ", b"Bearerabc", b"abc"] {
            assert_eq!(bearer_token(bad), None, "{bad:?}");
        }
    }

    fn certificate(names: Vec<rcgen::SanType>) -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = names;
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn a_certificate_is_its_uri_san_else_its_first_dns_san() {
        use rcgen::SanType::{DnsName, URI};
        let both = certificate(vec![
            DnsName("api.payments.svc".try_into().unwrap()),
            URI("spiffe://cluster.local/ns/payments/sa/api".try_into().unwrap()),
        ]);
        assert_eq!(certificate_identity(&both).as_deref(), Some("spiffe://cluster.local/ns/payments/sa/api"));
        let dns = certificate(vec![
            DnsName("first.example".try_into().unwrap()),
            DnsName("second.example".try_into().unwrap()),
        ]);
        assert_eq!(certificate_identity(&dns).as_deref(), Some("first.example"));
        assert_eq!(certificate_identity(&certificate(Vec::new())), None);
        // Without a callers file, the identity is the caller, with every grant.
        let caller = Gate::open(LOCAL_CALLER).identify(None, Some(&dns)).unwrap();
        assert_eq!(caller.name(), "first.example");
        assert_eq!(Gate::open(LOCAL_CALLER).identify(Some(b"Bearer ignored"), None).unwrap().name(), "local");
    }

    #[test]
    fn a_restricted_caller_is_refused_outside_its_grants() {
        let grants = Grants {
            workspaces: vec![WorkspacePattern::parse("acme-*").unwrap()],
            operations: [Operation::Execute].into(),
            mutations: Some(["create_invoice".to_owned()].into()),
        };
        let caller = Caller { name: "billing".into(), grants: Some(Arc::new(grants)) };
        assert!(caller.may_run("create_invoice", "acme-eu").is_ok());
        assert!(caller.may_run("delete_invoice", "acme-eu").is_err());
        assert!(caller.may_run("create_invoice", "acme").is_err());
        assert!(caller.may(Operation::Decide).is_err());
        assert!(!caller.can_read("acme-eu"));
        let unrestricted = Caller::unrestricted(LOCAL_CALLER);
        assert!(unrestricted.may_run("anything", "anywhere").is_ok() && unrestricted.can_read("anywhere"));
    }
}
