//! The gRPC handlers: decode the call, ask the engine (and the evidence
//! store), encode the answer. No business rules live here.

mod convert;
pub mod error;
mod telemetry;

use tonic::{Request, Response, Status};

use crate::decision::{self, Answer, Decided, Value};
use crate::proto::{self, EvaluateRequest, EvaluateResponse, ExecuteWithEvidenceRequest, ExecuteWithEvidenceResponse};
pub use error::ApiError;
use telemetry::RpcSpan;

/// The `governance.v1.Governance` service.
#[derive(Clone, Default)]
pub struct GovernanceApi {}

impl GovernanceApi {
    pub fn new() -> GovernanceApi {
        GovernanceApi {}
    }
}

#[tonic::async_trait]
impl proto::governance_server::Governance for GovernanceApi {
    async fn evaluate(&self, request: Request<EvaluateRequest>) -> Result<Response<EvaluateResponse>, Status> {
        let rpc = RpcSpan::start("Evaluate");
        let result = evaluate(request.into_inner(), &rpc);
        rpc.finish(result).map(Response::new)
    }

    async fn execute_with_evidence(
        &self,
        _request: Request<ExecuteWithEvidenceRequest>,
    ) -> Result<Response<ExecuteWithEvidenceResponse>, Status> {
        Err(Status::unimplemented("ExecuteWithEvidence needs a database; see the README"))
    }
}

fn evaluate(request: EvaluateRequest, rpc: &RpcSpan) -> Result<EvaluateResponse, ApiError> {
    let body = convert::request_body(request.body)?;
    let decided = decide(&body, request.idempotency_key.as_deref())?;
    rpc.record_decision(&decided.record);
    Ok(convert::evaluate_response(&decided.record))
}

/// Kernite's answer for a body, with its 400 turned into an error.
pub fn decide(body: &Value, idempotency_key: Option<&str>) -> Result<Decided, ApiError> {
    match decision::execute(body, idempotency_key)? {
        Answer::Decided(decided) => Ok(*decided),
        Answer::Invalid(invalid) => Err(ApiError::Invalid { invalid, ctx_id: random_ctx_id() }),
    }
}

/// Kernite gives each rejected request a fresh `ctx_<12 hex>`.
fn random_ctx_id() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("ctx_{}", &id[..12])
}
