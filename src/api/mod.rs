//! The service's handlers: decode the call, ask the engine (and the evidence
//! store), encode the answer. No business rules live here. The gRPC methods
//! are below; the HTTP/JSON routes are in [`http`]; both call the same
//! transport-neutral core (`decide_body`, `govern`).

mod convert;
mod deadline;
pub mod error;
pub mod http;
mod telemetry;

use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio::sync::{Semaphore, SemaphorePermit};
use tonic::{Request, Response, Status};

use crate::ctx_id;
use crate::decision::json::{Layout, write_value};
use crate::decision::{self, DecisionRecord, Map, Validation, Value};
use crate::evidence::{EvidenceError, EvidenceStore, Execution, GovernedWrite};
use crate::mutations::Mode;
use crate::policies::{PolicyBundle, PolicySource};
use crate::proto::{self, EvaluateRequest, EvaluateResponse, ExecuteWithEvidenceRequest, ExecuteWithEvidenceResponse};
use deadline::Deadline;
pub use error::ApiError;
use telemetry::RpcSpan;

/// The `governance.v1.Governance` service.
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

    async fn permit(&self) -> Result<SemaphorePermit<'_>, Status> {
        self.permits.acquire().await.map_err(|_| Status::unavailable("shutting down"))
    }

    /// The evidence store, for the server's health monitor.
    pub fn evidence(&self) -> Option<Arc<EvidenceStore>> {
        self.evidence.clone()
    }
}

#[tonic::async_trait]
impl proto::governance_server::Governance for GovernanceApi {
    async fn evaluate(&self, request: Request<EvaluateRequest>) -> Result<Response<EvaluateResponse>, Status> {
        let deadline = Deadline::from_metadata(request.metadata());
        let _permit = self.permit().await?;
        let rpc = RpcSpan::start("Evaluate", traceparent(request.metadata()));
        // Answered only if the caller is still waiting for it.
        let result = self
            .evaluate(request.into_inner(), &rpc)
            .and_then(|response| deadline.check().map(|()| response).map_err(ApiError::DeadlinePassed));
        rpc.respond(result)
    }

    async fn execute_with_evidence(
        &self,
        request: Request<ExecuteWithEvidenceRequest>,
    ) -> Result<Response<ExecuteWithEvidenceResponse>, Status> {
        let deadline = Deadline::from_metadata(request.metadata());
        let _permit = self.permit().await?;
        let rpc = RpcSpan::start("ExecuteWithEvidence", traceparent(request.metadata()));
        let result = self.execute_with_evidence(request.into_inner(), &deadline, &rpc).await;
        rpc.respond(result)
    }

    async fn get_evidence(
        &self,
        request: Request<proto::GetEvidenceRequest>,
    ) -> Result<Response<proto::EvidenceRecord>, Status> {
        let _permit = self.permit().await?;
        let rpc = RpcSpan::start("GetEvidence", traceparent(request.metadata()));
        let result = self.read_evidence(request.into_inner()).await;
        rpc.respond(result)
    }

    async fn list_evidence(
        &self,
        request: Request<proto::ListEvidenceRequest>,
    ) -> Result<Response<proto::ListEvidenceResponse>, Status> {
        let _permit = self.permit().await?;
        let rpc = RpcSpan::start("ListEvidence", traceparent(request.metadata()));
        let result = self.list_evidence_page(request.into_inner()).await;
        rpc.respond(result)
    }
}

/// A governed write as any transport hands it over.
struct WriteCall {
    body: Value,
    idempotency_key: Option<String>,
    mutation: String,
    caller_params: Map,
}

/// What a governed write came to: the decision (none in skip mode), the mode
/// it ran in, and what the evidence store did.
struct Governed {
    record: Option<DecisionRecord>,
    mode: Mode,
    execution: Execution,
}

impl GovernanceApi {
    async fn execute_with_evidence(
        &self,
        request: ExecuteWithEvidenceRequest,
        deadline: &Deadline,
        rpc: &RpcSpan,
    ) -> Result<ExecuteWithEvidenceResponse, ApiError> {
        let body = convert::request_body(request.body.map(convert::evaluate_body))?;
        let call = request.mutation.ok_or(ApiError::MissingMutation)?;
        let caller_params = match call.params {
            Some(params) => convert::map_from_struct(params, "mutation.params")?,
            None => Map::default(),
        };
        let call = WriteCall { body, idempotency_key: request.idempotency_key, mutation: call.name, caller_params };
        let governed = self.govern(call, deadline, rpc).await?;
        Ok(convert::execute_response(governed.record.as_ref(), governed.mode, &governed.execution))
    }

    /// Decides a write and commits it with its evidence (or only the evidence).
    async fn govern(&self, call: WriteCall, deadline: &Deadline, rpc: &RpcSpan) -> Result<Governed, ApiError> {
        let store = self.evidence.as_ref().ok_or(EvidenceError::NotConfigured)?;
        let fingerprint = fingerprint(&call.body, &call.mutation, &call.caller_params);
        let bundle = self.bundle_for(&call.body)?;
        let validation = validate(call.body, call.idempotency_key.as_deref())?;
        let mutation = store.mutation_for(&call.mutation, &validation.request)?;
        let bundle_mode = bundle.as_ref().and_then(|b| resolve(b, &validation).mode);
        let mode = store.mode_for(mutation, bundle_mode);
        let record = match mode {
            Mode::Skip => None,
            Mode::Enforce | Mode::Observe => Some(decide(&validation, bundle.as_deref())?),
        };
        if let Some(record) = &record {
            rpc.record_decision(record, &validation.request, mode);
        }
        // Past its deadline, nothing is written.
        deadline.check().map_err(ApiError::DeadlinePassed)?;
        let write = GovernedWrite {
            request: &validation.request,
            decision: record.as_ref(),
            mode,
            mutation,
            caller_params: &call.caller_params,
            fingerprint,
            policy_bundle: bundle.as_ref().map(|b| b.sha256.as_str()),
            trace_id: rpc.trace_id(),
        };
        let execution = store.execute(write).await;
        telemetry::record_execution(&execution);
        Ok(Governed { record, mode, execution: execution? })
    }
}

impl GovernanceApi {
    async fn read_evidence(&self, request: proto::GetEvidenceRequest) -> Result<proto::EvidenceRecord, ApiError> {
        let store = self.evidence.as_ref().ok_or(EvidenceError::NotConfigured)?;
        let key = convert::evidence_key(request)?;
        let stored = store.get_evidence(&key).await?.ok_or(ApiError::EvidenceNotFound)?;
        Ok(convert::evidence_record(stored))
    }

    async fn list_evidence_page(
        &self,
        request: proto::ListEvidenceRequest,
    ) -> Result<proto::ListEvidenceResponse, ApiError> {
        let store = self.evidence.as_ref().ok_or(EvidenceError::NotConfigured)?;
        let (filter, after, page_size) = convert::evidence_listing(request)?;
        let (records, next) = store.list_evidence(&filter, after, page_size).await?;
        Ok(proto::ListEvidenceResponse {
            records: records.into_iter().map(convert::evidence_record).collect(),
            next_page_token: next.map(|token| token.encode()).unwrap_or_default(),
        })
    }
}

/// The caller's W3C `traceparent`, from gRPC metadata.
fn traceparent(metadata: &tonic::metadata::MetadataMap) -> Option<&str> {
    metadata.get("traceparent").and_then(|v| v.to_str().ok())
}

/// What makes two calls "the same request" for idempotency: the whole body
/// as canonical JSON, the mutation name and the caller's parameters.
fn fingerprint(body: &Value, mutation: &str, caller_params: &Map) -> String {
    let mut canonical = String::new();
    write_value(&mut canonical, body, Layout::Canonical);
    canonical.push('\n');
    canonical.push_str(mutation);
    canonical.push('\n');
    write_value(&mut canonical, &Value::Object(caller_params.clone()), Layout::Canonical);
    format!("sha256:{}", hex::encode(Sha256::digest(canonical.as_bytes())))
}

impl GovernanceApi {
    fn evaluate(&self, request: EvaluateRequest, rpc: &RpcSpan) -> Result<EvaluateResponse, ApiError> {
        let body = convert::request_body(request.body)?;
        let record = self.decide_body(body, request.idempotency_key.as_deref(), rpc)?;
        Ok(convert::evaluate_response(&record))
    }

    /// Kernite's decision for a request body, under the policies that apply to it.
    fn decide_body(
        &self,
        body: Value,
        idempotency_key: Option<&str>,
        rpc: &RpcSpan,
    ) -> Result<DecisionRecord, ApiError> {
        let bundle = self.bundle_for(&body)?;
        let validation = validate(body, idempotency_key)?;
        let record = decide(&validation, bundle.as_deref())?;
        rpc.record_decision(&record, &validation.request, Mode::Enforce);
        Ok(record)
    }

    /// The bundle this call is decided with: the operator's, unless there is
    /// none or the request brings its own `policy_context` and may.
    fn bundle_for(&self, body: &Value) -> Result<Option<Arc<PolicyBundle>>, ApiError> {
        let Some(policies) = &self.policies else { return Ok(None) };
        let brings_its_own = body.as_object().and_then(|b| b.get("policy_context")).is_some_and(|c| !c.is_null());
        match (brings_its_own, self.allow_request_policies) {
            (false, _) => Ok(Some(policies.current())),
            (true, true) => Ok(None),
            (true, false) => Err(ApiError::RequestPoliciesRefused),
        }
    }
}

/// Kernite's validation, with its 400 turned into an error.
fn validate(body: Value, idempotency_key: Option<&str>) -> Result<Validation, ApiError> {
    decision::validate(body, idempotency_key)?
        .map_err(|invalid| ApiError::Invalid { invalid, ctx_id: ctx_id::random() })
}

/// Decides under the bundle's policies for the request's scope, or the request's own.
fn decide(validation: &Validation, bundle: Option<&PolicyBundle>) -> Result<DecisionRecord, ApiError> {
    Ok(match bundle {
        Some(bundle) => decision::evaluate_under(&validation.request, resolve(bundle, validation).context)?,
        None => decision::evaluate(validation)?,
    })
}

fn resolve<'b>(bundle: &'b PolicyBundle, validation: &Validation) -> crate::policies::Resolution<'b> {
    bundle.resolve(&validation.request.object_type, &validation.request.operation)
}
