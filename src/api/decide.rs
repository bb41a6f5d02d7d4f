//! The decision steps every operation shares: which policies decide a
//! request (the operator's bundle, or the request's own where allowed; a
//! write only by the bundle unless the operator opts in),
//! Kernite's validation, and the decision itself. Evaluate and
//! ExecuteWithEvidence both call these; neither calls the other.

use std::sync::Arc;

use super::ApiError;
use crate::ctx_id;
use crate::decision::{self, DecisionRecord, Validation, Value};
use crate::defaults::MAX_IDENTIFIER_BYTES;
use crate::policies::{PolicyBundle, PolicySource, Resolution};

/// Which policies decide: the operator's bundle, if any, and whether a
/// request's own `policy_context` is used instead of refused.
#[derive(Clone, Default)]
pub(super) struct Decider {
    /// Without a bundle, Evaluate decides with the request's own policies
    /// (Kernite's contract), and a write is refused unless allowed below.
    pub policies: Option<Arc<PolicySource>>,
    /// The operator's explicit opt-in: a request's own `policy_context`
    /// decides it, writes included.
    pub allow_request_policies: bool,
}

impl Decider {
    /// The bundle a decision is made with: the operator's, unless there is
    /// none or the request brings its own `policy_context` and may.
    pub fn bundle_for(&self, body: &Value) -> Result<Option<Arc<PolicyBundle>>, ApiError> {
        let Some(policies) = &self.policies else { return Ok(None) };
        let brings_its_own = body.as_object().and_then(|b| b.get("policy_context")).is_some_and(|c| !c.is_null());
        match (brings_its_own, self.allow_request_policies) {
            (false, _) => Ok(Some(policies.current())),
            (true, true) => Ok(None),
            (true, false) => Err(ApiError::RequestPoliciesRefused),
        }
    }
}

impl Decider {
    /// The bundle a write is decided with. Without one, a write is refused
    /// unless the operator let requests bring their own policies: otherwise
    /// the caller would pick the policy that approves its own write.
    pub fn bundle_for_write(&self, body: &Value) -> Result<Option<Arc<PolicyBundle>>, ApiError> {
        if self.policies.is_none() && !self.allow_request_policies {
            return Err(ApiError::NoPolicyBundle);
        }
        self.bundle_for(body)
    }
}

/// Kernite's validation, with its 400 turned into an error; then the
/// sidecar's bound on identifiers, which Kernite does not have.
pub(super) fn validate(body: Value, idempotency_key: Option<&str>) -> Result<Validation, ApiError> {
    let validation = decision::validate(body, idempotency_key)?
        .map_err(|invalid| ApiError::Invalid { invalid, ctx_id: ctx_id::random() })?;
    let request = &validation.request;
    let identifiers = [
        ("workspace_id", &request.workspace_id),
        ("principal.type", &request.principal.kind),
        ("principal.id", &request.principal.id),
        ("object_type", &request.object_type),
        ("operation", &request.operation),
    ];
    if let Some((field, _)) = identifiers.iter().find(|(_, value)| value.len() > MAX_IDENTIFIER_BYTES) {
        return Err(ApiError::IdentifierTooLong { field, max_bytes: MAX_IDENTIFIER_BYTES });
    }
    Ok(validation)
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
