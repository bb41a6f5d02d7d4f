//! Evaluate: Kernite's decision on a request, over gRPC (`Evaluate`) and
//! HTTP (`POST /v1/execute`, and `POST /v1/validate/execute` for validation
//! alone).

use std::sync::Arc;

use super::call::Call;
use super::{ApiError, GovernanceApi, convert};
use crate::ctx_id;
use crate::decision::json::{self, Layout};
use crate::decision::{self, DecisionRecord, Validation, Value};
use crate::policies::{PolicyBundle, Resolution};
use crate::proto::{EvaluateRequest, EvaluateResponse};
use crate::vocabulary::Mode;

impl GovernanceApi {
    /// gRPC `Evaluate`, answered only if the caller is still waiting for it.
    pub(super) fn evaluate(&self, request: EvaluateRequest, call: &Call) -> Result<EvaluateResponse, ApiError> {
        let body = convert::request_body(request.body)?;
        let record = self.decide_body(body, request.idempotency_key.as_deref(), call)?;
        call.deadline().check()?;
        Ok(convert::evaluate_response(record))
    }

    /// `POST /v1/execute`: Kernite's response body.
    pub(super) fn execute_json(
        &self,
        body: Value,
        idempotency_key: Option<&str>,
        call: &Call,
    ) -> Result<String, ApiError> {
        Ok(self.decide_body(body, idempotency_key, call)?.into_response_json())
    }

    /// `POST /v1/validate/execute`: Kernite's validation body, `valid` true or false.
    pub(super) fn validate_json(
        &self,
        body: Value,
        idempotency_key: Option<&str>,
        call: &Call,
    ) -> Result<String, ApiError> {
        let ctx_id = ctx_id::random();
        call.record_ctx_id(&ctx_id);
        let answer = match decision::validate(body, idempotency_key)? {
            Ok(validation) => decision::valid_body(&validation, &ctx_id),
            Err(invalid) => invalid.to_value(&ctx_id),
        };
        Ok(json::to_string(&answer, Layout::Response))
    }

    /// Kernite's decision for a request body, under the policies that apply to it.
    fn decide_body(&self, body: Value, idempotency_key: Option<&str>, call: &Call) -> Result<DecisionRecord, ApiError> {
        let bundle = self.bundle_for(&body)?;
        let validation = validate(body, idempotency_key)?;
        let record = decide(&validation, bundle.as_deref())?;
        call.record_decision(&record, &validation.request, Mode::Enforce);
        Ok(record)
    }

    /// The bundle this call is decided with: the operator's, unless there is
    /// none or the request brings its own `policy_context` and may.
    pub(super) fn bundle_for(&self, body: &Value) -> Result<Option<Arc<PolicyBundle>>, ApiError> {
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
pub(super) fn validate(body: Value, idempotency_key: Option<&str>) -> Result<Validation, ApiError> {
    decision::validate(body, idempotency_key)?
        .map_err(|invalid| ApiError::Invalid { invalid, ctx_id: ctx_id::random() })
}

/// Decides under the bundle's policies for the request's scope, or the request's own.
pub(super) fn decide(validation: &Validation, bundle: Option<&PolicyBundle>) -> Result<DecisionRecord, ApiError> {
    Ok(match bundle {
        Some(bundle) => decision::evaluate_under(&validation.request, resolve(bundle, validation).context)?,
        None => decision::evaluate(validation)?,
    })
}

/// The bundle's policies and mode for the request's scope.
pub(super) fn resolve<'b>(bundle: &'b PolicyBundle, validation: &Validation) -> Resolution<'b> {
    bundle.resolve(&validation.request.object_type, &validation.request.operation)
}
