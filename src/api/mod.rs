//! The service's faces: gRPC ([`grpc`]) and Kernite's HTTP/JSON routes
//! ([`http`]). A handler decodes the call, asks the engine (and the evidence
//! store), and encodes the answer; no business rule lives here.
//!
//! One file per operation, holding its decoding, its story and its encoding
//! for both transports: `evaluate.rs` (Evaluate, `POST /v1/execute`,
//! `POST /v1/validate/execute`), `execute.rs` (ExecuteWithEvidence) and
//! `audit.rs` (GetEvidence, ListEvidence), `log.rs` (GetCheckpoint,
//! GetInclusionProof, GetConsistencyProof). What every call goes through,
//! permit, span, metrics and ctx_id, is `call.rs`; how errors are written is
//! `error.rs`.

mod audit;
mod call;
mod convert;
mod deadline;
mod error;
mod evaluate;
mod execute;
mod grpc;
pub(crate) mod http;
mod log;

use std::sync::Arc;

use tokio::sync::Semaphore;

pub use error::ApiError;

use crate::evidence::{EvidenceError, EvidenceStore};
use crate::policies::PolicySource;

/// The `governance.v1.Governance` service, over gRPC and HTTP.
#[derive(Clone)]
pub struct GovernanceApi {
    /// Absent when no database is configured: Evaluate still works.
    evidence: Option<Arc<EvidenceStore>>,
    /// Calls being processed at once; more wait for a permit. Health checks
    /// and reflection are not counted, so probes answer even when saturated.
    permits: Arc<Semaphore>,
    /// The operator's policy bundle; without one, requests bring their own policies.
    policies: Option<Arc<PolicySource>>,
    /// With a bundle: whether a request's own `policy_context` is used instead of refused.
    allow_request_policies: bool,
}

impl Default for GovernanceApi {
    fn default() -> GovernanceApi {
        GovernanceApi {
            evidence: None,
            permits: Arc::new(Semaphore::new(Semaphore::MAX_PERMITS)),
            policies: None,
            allow_request_policies: false,
        }
    }
}

impl GovernanceApi {
    pub fn new() -> GovernanceApi {
        GovernanceApi::default()
    }

    pub fn with_evidence(store: EvidenceStore) -> GovernanceApi {
        GovernanceApi { evidence: Some(Arc::new(store)), ..GovernanceApi::default() }
    }

    /// At most `limit` Governance calls are processed at once.
    pub fn with_concurrency_limit(self, limit: usize) -> GovernanceApi {
        GovernanceApi { permits: Arc::new(Semaphore::new(limit.clamp(1, Semaphore::MAX_PERMITS))), ..self }
    }

    /// Decide with the operator's bundle; a request's own `policy_context` is
    /// refused unless `allow_request_policies`, and then used instead.
    pub fn with_policies(self, policies: Arc<PolicySource>, allow_request_policies: bool) -> GovernanceApi {
        GovernanceApi { policies: Some(policies), allow_request_policies, ..self }
    }

    /// The evidence store, for the server's health monitor.
    pub fn evidence(&self) -> Option<Arc<EvidenceStore>> {
        self.evidence.clone()
    }

    /// The evidence store, which calls that write or read evidence need.
    fn store(&self) -> Result<&EvidenceStore, ApiError> {
        Ok(self.evidence.as_deref().ok_or(EvidenceError::NotConfigured)?)
    }
}
