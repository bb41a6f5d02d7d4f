//! The gRPC face: each method is the common path of [`GovernanceApi::grpc`]
//! around its operation's handler.

use std::borrow::Cow;

use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use super::call::{CTX_ID_HEADER, Call};
use super::deadline::Deadline;
use super::gate::{Credentials, Identification};
use super::{ApiError, GovernanceApi, audit, check, evaluate, execute, log, replay};
use crate::access::Operation;
use crate::error::grpc_code_name;
use crate::proto::envoy::service::auth::v3::authorization_server::Authorization;
use crate::proto::envoy::service::auth::v3::{CheckRequest, CheckResponse};
use crate::proto::{self, EvaluateRequest, EvaluateResponse, ExecuteWithEvidenceRequest, ExecuteWithEvidenceResponse};

#[tonic::async_trait]
impl proto::governance_server::Governance for GovernanceApi {
    async fn evaluate(&self, request: Request<EvaluateRequest>) -> Result<Response<EvaluateResponse>, Status> {
        self.grpc("Evaluate", request, async |call, request| evaluate::evaluate(self, request, call)).await
    }

    async fn execute_with_evidence(
        &self,
        request: Request<ExecuteWithEvidenceRequest>,
    ) -> Result<Response<ExecuteWithEvidenceResponse>, Status> {
        self.grpc("ExecuteWithEvidence", request, async |call, request| {
            execute::execute_with_evidence(self, request, call).await
        })
        .await
    }

    async fn get_evidence(
        &self,
        request: Request<proto::GetEvidenceRequest>,
    ) -> Result<Response<proto::EvidenceRecord>, Status> {
        self.grpc("GetEvidence", request, async |call, request| audit::get_evidence(self, request, call).await).await
    }

    async fn list_evidence(
        &self,
        request: Request<proto::ListEvidenceRequest>,
    ) -> Result<Response<proto::ListEvidenceResponse>, Status> {
        self.grpc("ListEvidence", request, async |call, request| audit::list_evidence(self, request, call).await).await
    }

    async fn get_checkpoint(
        &self,
        request: Request<proto::GetCheckpointRequest>,
    ) -> Result<Response<proto::Checkpoint>, Status> {
        self.grpc("GetCheckpoint", request, async |_, request| log::get_checkpoint(self, request).await).await
    }

    async fn get_inclusion_proof(
        &self,
        request: Request<proto::GetInclusionProofRequest>,
    ) -> Result<Response<proto::InclusionProof>, Status> {
        self.grpc("GetInclusionProof", request, async |call, request| {
            log::get_inclusion_proof(self, request, call).await
        })
        .await
    }

    async fn get_consistency_proof(
        &self,
        request: Request<proto::GetConsistencyProofRequest>,
    ) -> Result<Response<proto::ConsistencyProof>, Status> {
        self.grpc("GetConsistencyProof", request, async |_, request| log::get_consistency_proof(self, request).await)
            .await
    }

    type ReplayEvidenceStream = replay::ReplayStream;

    async fn replay_evidence(
        &self,
        request: Request<proto::ReplayEvidenceRequest>,
    ) -> Result<Response<Self::ReplayEvidenceStream>, Status> {
        self.grpc("ReplayEvidence", request, async |call, request| replay::replay_evidence(self, request, call).await)
            .await
    }
}

#[tonic::async_trait]
impl Authorization for GovernanceApi {
    async fn check(&self, request: Request<CheckRequest>) -> Result<Response<CheckResponse>, Status> {
        self.grpc("Check", request, async |call, request| check::check(self, request, call).await).await
    }
}

/// Each method of `governance.v1.Governance` (and Envoy's
/// `envoy.service.auth.v3.Authorization/Check`) and the operation a caller
/// must be granted to call it: the common path reads it, and so does
/// admission, which refuses a caller its grants exclude before reading the
/// message. A check writes evidence: it is an `execute`.
const METHODS: [(&str, Operation); 9] = [
    ("Evaluate", Operation::Decide),
    ("ExecuteWithEvidence", Operation::Execute),
    ("GetEvidence", Operation::Read),
    ("ListEvidence", Operation::Read),
    ("GetInclusionProof", Operation::Read),
    ("GetCheckpoint", Operation::Log),
    ("GetConsistencyProof", Operation::Log),
    ("ReplayEvidence", Operation::Read),
    ("Check", Operation::Execute),
];

/// The operation a method (`Evaluate`, or its path `/governance.v1.Governance/Evaluate`) needs.
pub(super) fn operation_of(method_or_path: &str) -> Option<Operation> {
    let method = method_or_path.rsplit('/').next().unwrap_or(method_or_path);
    METHODS.iter().find(|(name, _)| *name == method).map(|(_, operation)| *operation)
}

impl GovernanceApi {
    /// What every gRPC call goes through, once admitted (`admission.rs`): its
    /// deadline, its span, its caller (`gate.rs`), the handler, and the answer (the
    /// response, or the error's status) carrying `x-ctx-id` when known.
    async fn grpc<Req, Resp>(
        &self,
        method: &'static str,
        request: Request<Req>,
        handler: impl AsyncFnOnce(&Call, Req) -> Result<Resp, ApiError>,
    ) -> Result<Response<Resp>, Status> {
        let metadata = request.metadata();
        // Admitted calls carry the deadline measured on their arrival (`admission.rs`).
        let deadline = request.extensions().get::<Deadline>().copied();
        let deadline = deadline.unwrap_or_else(|| Deadline::from_metadata(metadata, self.request_timeout));
        let operation = operation_of(method).expect("every method has its operation in METHODS");
        let call = Call::start(method, operation, traceparent(metadata), deadline);
        // Admitted calls carry their caller, identified before admission (`gate.rs`).
        let identification = request.extensions().get::<Identification>().cloned();
        let identified = match identification {
            Some(identification) => call.identified_as(identification),
            None => call.identify(&self.gate, Credentials::of(metadata.as_ref(), request.extensions())),
        };
        let work = async {
            identified?;
            handler(&call, request.into_inner()).instrument(call.span().clone()).await
        };
        let result = call.deadline().bound(work).await;
        let ctx_id = call.answered_ctx_id(&result).and_then(|c| MetadataValue::try_from(c).ok());
        let failure = result.as_ref().err().and_then(ApiError::failure);
        let result = result.map_err(Status::from);
        let code = result.as_ref().map_or_else(Status::code, |_| tonic::Code::Ok);
        call.finish(Cow::Borrowed(grpc_code_name(code)), failure.as_deref());
        let mut result = result.map(Response::new);
        if let Some(ctx_id) = ctx_id {
            match &mut result {
                Ok(response) => response.metadata_mut().insert(CTX_ID_HEADER, ctx_id),
                Err(status) => status.metadata_mut().insert(CTX_ID_HEADER, ctx_id),
            };
        }
        result
    }
}

/// The caller's W3C `traceparent`, from gRPC metadata.
fn traceparent(metadata: &MetadataMap) -> Option<&str> {
    metadata.get("traceparent").and_then(|v| v.to_str().ok())
}
