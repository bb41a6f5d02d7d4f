//! Evaluate: Kernite's decision on a request, over gRPC (`Evaluate`) and
//! HTTP (`POST /v1/execute`, and `POST /v1/validate/execute` for validation
//! alone).

use super::call::Call;
use super::decide::{decide, validate};
use super::{ApiError, GovernanceApi, convert};
use crate::ctx_id;
use crate::decision::json::{self, Layout};
use crate::decision::{self, DecisionRecord, Value};
use crate::proto::{EvaluateRequest, EvaluateResponse};
use crate::vocabulary::Mode;

/// gRPC `Evaluate`, answered only if the caller is still waiting for it.
pub(super) fn evaluate(
    api: &GovernanceApi,
    request: EvaluateRequest,
    call: &Call,
) -> Result<EvaluateResponse, ApiError> {
    let body = convert::request_body(request.body)?;
    let record = decide_body(api, body, request.idempotency_key.as_deref(), call)?;
    call.deadline().check()?;
    Ok(convert::evaluate_response(record, request.answer_form))
}

/// `POST /v1/execute`: Kernite's response body.
pub(super) fn execute_json(
    api: &GovernanceApi,
    body: Value,
    idempotency_key: Option<&str>,
    call: &Call,
) -> Result<String, ApiError> {
    Ok(decide_body(api, body, idempotency_key, call)?.into_response_json())
}

/// `POST /v1/validate/execute`: Kernite's validation body, `valid` true or false.
pub(super) fn validate_json(body: Value, idempotency_key: Option<&str>, call: &Call) -> Result<String, ApiError> {
    let ctx_id = ctx_id::random();
    call.record_ctx_id(&ctx_id);
    let answer = match decision::validate(body, idempotency_key)? {
        Ok(validation) => {
            call.may_in(&validation.request.workspace_id)?;
            decision::valid_body(&validation, &ctx_id)
        }
        Err(invalid) => invalid.to_value(&ctx_id),
    };
    Ok(json::to_string(&answer, Layout::Response))
}

/// Kernite's decision for a request body, under the policies that apply to it.
fn decide_body(
    api: &GovernanceApi,
    body: Value,
    idempotency_key: Option<&str>,
    call: &Call,
) -> Result<DecisionRecord, ApiError> {
    let bundle = api.decider.bundle_for(&body)?;
    let validation = validate(body, idempotency_key)?;
    call.may_in(&validation.request.workspace_id)?;
    let record = decide(&validation, bundle.as_deref())?;
    call.record_decision(&record, &validation.request, Mode::Enforce);
    Ok(record)
}
