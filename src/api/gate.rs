//! The one place a call's caller is identified and authorised, whatever its
//! transport: the credentials it carries (`authorization`, the client
//! certificate under mutual TLS) are read here, handed to the operator's
//! [`Gate`], and every operation asks the call whether its caller may go
//! on. A refusal is counted and logged with the caller's name and the
//! operation, never with a credential.
//!
//! What each operation checks, and when (`docs/security.md`):
//! - before its message is read: who the caller is, and (gRPC) that it may
//!   call the method at all. A gRPC call is identified before its admission
//!   (`admission.rs`), so that a call that proves no caller, or one its
//!   grants exclude from the method, takes no share of the request-bytes
//!   budget and its message is never read ([`Identification`]); an HTTP call
//!   is identified before its body is read;
//! - before its message is decided: that the caller may use the call's
//!   operation at all ([`Call::identify`]);
//! - once the message names a workspace: that the caller may use the
//!   operation there ([`Call::may_in`], [`Call::may_run`] for a mutation);
//! - for evidence found by a key that names no workspace: that the caller
//!   may read the row's workspace, else the row is answered as missing
//!   ([`Call::can_read`]).

use std::sync::Arc;

use http::{Extensions, HeaderMap};
use rustls::pki_types::CertificateDer;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

use super::call::Call;
use super::error::ApiError;
use crate::access::{Caller, Gate, Operation, Refusal};
use crate::metrics::metrics;

/// Who a gRPC call's caller is, as established before its admission, for
/// the common call path to record (or refuse) with the call.
#[derive(Clone)]
pub(super) struct Identification(pub Result<Caller, Refusal>);

impl Identification {
    /// Identifies the caller of `request` from its headers and connection.
    pub fn of<B>(gate: &Gate, request: &http::Request<B>) -> Identification {
        let credentials = Credentials::of(request.headers(), request.extensions());
        let leaf = credentials.certificates.as_ref().and_then(|chain| chain.first());
        Identification(gate.identify(credentials.authorization, leaf))
    }
}

/// What a call carries to prove who it is.
pub(super) struct Credentials<'a> {
    authorization: Option<&'a [u8]>,
    certificates: Option<Arc<Vec<CertificateDer<'static>>>>,
}

impl<'a> Credentials<'a> {
    /// From an HTTP request's headers and its connection's details (which
    /// tonic puts in every request's extensions, gRPC or not).
    pub fn of(headers: &'a HeaderMap, extensions: &Extensions) -> Credentials<'a> {
        Credentials {
            authorization: headers.get(http::header::AUTHORIZATION).map(|value| value.as_bytes()),
            certificates: extensions.get::<TlsConnectInfo<TcpConnectInfo>>().and_then(TlsConnectInfo::peer_certs),
        }
    }
}

impl Call {
    /// Establishes the call's caller from its credentials, and that it may
    /// use the call's operation at all; or refuses the call.
    pub(super) fn identify(&self, gate: &Gate, credentials: Credentials<'_>) -> Result<(), ApiError> {
        let leaf = credentials.certificates.as_ref().and_then(|chain| chain.first());
        self.identified_as(Identification(gate.identify(credentials.authorization, leaf)))
    }

    /// [`Call::identify`], with the caller already identified.
    pub(super) fn identified_as(&self, identification: Identification) -> Result<(), ApiError> {
        let caller = identification.0.map_err(|refusal| self.refused(refusal))?;
        self.span().record("caller", caller.name());
        caller.may(self.operation()).map_err(|refusal| self.refused(refusal))?;
        self.set_caller(caller);
        Ok(())
    }

    /// The caller, established before any operation runs.
    pub(super) fn caller(&self) -> &Caller {
        self.identified().expect("the common call path identifies the caller before the operation runs")
    }

    /// The caller may use the call's operation in `workspace`.
    pub(super) fn may_in(&self, workspace: &str) -> Result<(), ApiError> {
        self.caller().may_in(self.operation(), workspace).map_err(|refusal| self.refused(refusal))
    }

    /// The caller may run `mutation` in `workspace`.
    pub(super) fn may_run(&self, mutation: &str, workspace: &str) -> Result<(), ApiError> {
        self.caller().may_run(mutation, workspace).map_err(|refusal| self.refused(refusal))
    }

    /// The caller may read `workspace`'s evidence; if not, the evidence is
    /// answered as missing, and the hidden row counted as a refusal.
    pub(super) fn can_read(&self, workspace: &str) -> bool {
        let readable = self.caller().can_read(workspace);
        if !readable {
            self.count_refusal(self.caller().name(), Operation::Read, "hidden");
        }
        readable
    }

    fn refused(&self, refusal: Refusal) -> ApiError {
        let (caller, operation, reason) = match &refusal {
            Refusal::Unauthenticated(_) => ("", self.operation(), "unauthenticated"),
            // The identity is the CA's to mint: logged with the refusal, never a label.
            Refusal::NotListed(_) => ("(unlisted)", self.operation(), "not_listed"),
            Refusal::NotGranted { caller, operation, .. } => (&**caller, *operation, "not_granted"),
        };
        self.count_refusal(caller, operation, reason);
        ApiError::Refused(refusal)
    }

    fn count_refusal(&self, caller: &str, operation: Operation, reason: &'static str) {
        metrics().refusal(caller, operation, reason);
        tracing::warn!(parent: self.span(), caller, operation = operation.as_str(), reason, "call refused");
    }
}
