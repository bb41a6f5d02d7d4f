//! The service's faces: gRPC ([`grpc`]) and Kernite's HTTP/JSON routes
//! ([`http`]). A handler decodes the call, asks the engine (and the evidence
//! store), and encodes the answer; no business rule lives here.
//!
//! One file per operation, holding its decoding, its story and its encoding
//! for both transports, as functions of the file (`evaluate::evaluate`,
//! `execute::govern`, …) that the transports call with the service: `evaluate.rs` (Evaluate, `POST /v1/execute`,
//! `POST /v1/validate/execute`), `execute.rs` (ExecuteWithEvidence) and
//! `audit.rs` (GetEvidence, ListEvidence), `log.rs` (GetCheckpoint,
//! GetInclusionProof, GetConsistencyProof), `replay.rs` (ReplayEvidence),
//! `check.rs` (Envoy's Check and forward-auth, for proxies). Operations never call each
//! other: the decision steps they share (policies, validation, decision) are
//! `decide.rs`. What every call goes through, span, metrics and ctx_id,
//! is `call.rs`; how many calls and request bytes run at once, decided
//! before a message is read, is `admission.rs`; how errors are written is `error.rs`; what keeps
//! web pages from driving the HTTP routes is `browsers.rs`.

mod admission;
mod audit;
mod authoring;
pub(crate) mod browsers;
mod call;
mod check;
mod convert;
mod deadline;
mod decide;
mod error;
mod evaluate;
mod execute;
mod gate;
mod grpc;
pub(crate) mod http;
mod log;
mod replay;

use std::sync::Arc;
use std::time::Duration;

pub use error::ApiError;

use admission::Admission;
pub(crate) use admission::AdmittedGrpc;
use browsers::HostGate;
use decide::Decider;

use crate::access::Gate;
use crate::defaults::{
    DEFAULT_CONCURRENCY_LIMIT, DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_MAX_REQUEST_BYTES_IN_FLIGHT,
    DEFAULT_REQUEST_TIMEOUT_MS, MAX_RESPONSE_BYTES,
};
use crate::evidence::{EvidenceError, EvidenceStore};
use crate::gateway::Gateway;
use crate::log::LogReader;
use crate::log::sequencer::LogState;
use crate::policies::PolicySource;
use crate::proto::envoy::service::auth::v3::authorization_server::AuthorizationServer;
use crate::proto::governance_server::GovernanceServer;

/// The `governance.v1.Governance` service, over gRPC and HTTP.
#[derive(Clone)]
pub struct GovernanceApi {
    /// Absent when no database is configured: Evaluate still works.
    evidence: Option<Arc<EvidenceStore>>,
    /// The verifiable log's checkpoints and proofs, read from the store's database.
    log: Option<LogReader>,
    /// What this sidecar's log sequencer reports, when it keeps the log.
    log_state: Option<tokio::sync::watch::Receiver<LogState>>,
    /// Calls, and request bytes, processed at once; more wait. Health checks
    /// and reflection are not counted, so probes answer even when saturated.
    admission: Arc<Admission>,
    /// The longest any call may take, whatever its caller's deadline.
    request_timeout: Duration,
    /// Which policies decide: the operator's bundle, or the request's own.
    decider: Decider,
    /// Who may call, and what each caller may do (`gate.rs`).
    gate: Gate,
    /// One ReplayEvidence at a time (`replay.rs`).
    replays: Arc<tokio::sync::Semaphore>,
    /// The proxies' checks (`check.rs`), when the operator configured them.
    gateway: Option<Arc<Gateway>>,
}

impl Default for GovernanceApi {
    fn default() -> GovernanceApi {
        GovernanceApi {
            evidence: None,
            log: None,
            log_state: None,
            admission: Arc::new(Admission::new(
                DEFAULT_CONCURRENCY_LIMIT,
                DEFAULT_MAX_REQUEST_BYTES_IN_FLIGHT,
                DEFAULT_MAX_MESSAGE_BYTES,
            )),
            request_timeout: Duration::from_millis(DEFAULT_REQUEST_TIMEOUT_MS),
            decider: Decider::default(),
            gate: Gate::default(),
            replays: Arc::new(tokio::sync::Semaphore::new(1)),
            gateway: None,
        }
    }
}

impl GovernanceApi {
    pub fn new() -> GovernanceApi {
        GovernanceApi::default()
    }

    pub fn with_evidence(store: EvidenceStore) -> GovernanceApi {
        let log = Some(LogReader::new(&store));
        GovernanceApi { evidence: Some(Arc::new(store)), log, ..GovernanceApi::default() }
    }

    /// Health reports the log this sidecar's sequencer keeps.
    pub fn with_log_state(self, log_state: tokio::sync::watch::Receiver<LogState>) -> GovernanceApi {
        GovernanceApi { log_state: Some(log_state), ..self }
    }

    /// No call takes longer than `timeout`: past it, it is answered
    /// DEADLINE_EXCEEDED (HTTP 504).
    pub fn with_request_timeout(self, timeout: Duration) -> GovernanceApi {
        GovernanceApi { request_timeout: timeout, ..self }
    }

    /// At most `calls` Governance calls, holding at most `bytes` of requests
    /// (never less than one message of `max_message_bytes`), are processed at once.
    pub fn with_admission(self, calls: usize, bytes: usize, max_message_bytes: usize) -> GovernanceApi {
        GovernanceApi { admission: Arc::new(Admission::new(calls, bytes, max_message_bytes)), ..self }
    }

    /// The Governance gRPC service, behind the admission it shares with the
    /// HTTP routes, reading messages of up to `max_message_bytes` and writing
    /// up to [`MAX_RESPONSE_BYTES`].
    pub(crate) fn grpc_service(
        self,
        max_message_bytes: usize,
        hosts: HostGate,
    ) -> AdmittedGrpc<GovernanceServer<GovernanceApi>> {
        let (admission, gate, request_timeout) = (Arc::clone(&self.admission), self.gate.clone(), self.request_timeout);
        let server = GovernanceServer::new(self)
            .max_decoding_message_size(max_message_bytes)
            .max_encoding_message_size(MAX_RESPONSE_BYTES);
        AdmittedGrpc::new(server, admission, hosts, gate, request_timeout)
    }

    /// Decide with the operator's bundle; a request's own `policy_context` is
    /// refused unless `allow_request_policies`, and then used instead.
    pub fn with_policies(self, policies: Arc<PolicySource>, allow_request_policies: bool) -> GovernanceApi {
        GovernanceApi { decider: Decider { policies: Some(policies), allow_request_policies }, ..self }
    }

    /// Answer proxies' checks (Envoy's ext_authz, forward-auth) through `gateway`.
    pub fn with_gateway(self, gateway: Gateway) -> GovernanceApi {
        GovernanceApi { gateway: Some(Arc::new(gateway)), ..self }
    }

    /// Envoy's `Authorization` service, behind the same admission and gate as Governance.
    pub(crate) fn authorization_service(
        self,
        max_message_bytes: usize,
        hosts: HostGate,
    ) -> AdmittedGrpc<AuthorizationServer<GovernanceApi>> {
        let (admission, gate, request_timeout) = (Arc::clone(&self.admission), self.gate.clone(), self.request_timeout);
        let server = AuthorizationServer::new(self)
            .max_decoding_message_size(max_message_bytes)
            .max_encoding_message_size(MAX_RESPONSE_BYTES);
        AdmittedGrpc::new(server, admission, hosts, gate, request_timeout)
    }

    /// Callers are identified, and their grants enforced, by `gate`.
    pub fn with_gate(self, gate: Gate) -> GovernanceApi {
        GovernanceApi { gate, ..self }
    }

    /// Without a bundle: whether a request's own `policy_context` may decide a
    /// write (the operator's explicit opt-in); otherwise writes are refused.
    pub fn allowing_request_policies(self, allow: bool) -> GovernanceApi {
        GovernanceApi { decider: Decider { allow_request_policies: allow, ..self.decider }, ..self }
    }

    /// The evidence store, for the server's health monitor.
    pub fn evidence(&self) -> Option<Arc<EvidenceStore>> {
        self.evidence.clone()
    }

    /// What the log's sequencer reports, for the server's health monitor.
    pub fn log_state(&self) -> Option<tokio::sync::watch::Receiver<LogState>> {
        self.log_state.clone()
    }

    /// The evidence store, which calls that write or read evidence need.
    fn store(&self) -> Result<&EvidenceStore, ApiError> {
        Ok(self.evidence.as_deref().ok_or(EvidenceError::NotConfigured)?)
    }

    /// The verifiable log's reader, which the log's calls need.
    fn log(&self) -> Result<&LogReader, ApiError> {
        Ok(self.log.as_ref().ok_or(EvidenceError::NotConfigured)?)
    }
}
