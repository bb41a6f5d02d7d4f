//! ExecuteWithEvidence: decide a write, then commit it with its evidence
//! (or commit the evidence alone), over gRPC and as JSON over HTTP
//! (`POST /v1/execute-with-evidence`).
//!
//! The story of one call, in [`govern`]: fingerprint the request as sent,
//! pick the policies (the operator's bundle), validate, check the caller may
//! run the mutation in the request's workspace, find the operator's mutation
//! for the request's scope (which the bundle must govern), take the
//! operator's mode, decide (unless skip), check the caller is still waiting,
//! and hand the write to the evidence store with the caller's name.

use super::call::Call;
use super::decide::{decide, resolve, validate};
use super::{ApiError, GovernanceApi, convert};
use crate::decision::json::{self, Layout};
use crate::decision::value::object;
use crate::decision::{DecisionRecord, Map, Value};
use crate::evidence::{EvidenceError, Execution, Fingerprint, GovernedWrite, MutationResult};
use crate::metrics::metrics;
use crate::proto::{self, ExecuteWithEvidenceRequest, ExecuteWithEvidenceResponse};
use crate::vocabulary::{Mode, Outcome};

/// A governed write as either transport hands it over.
pub(super) struct WriteCall {
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

/// gRPC `ExecuteWithEvidence`.
pub(super) async fn execute_with_evidence(
    api: &GovernanceApi,
    request: ExecuteWithEvidenceRequest,
    call: &Call,
) -> Result<ExecuteWithEvidenceResponse, ApiError> {
    let body = convert::request_body(request.body.map(convert::evaluate_body))?;
    let mutation = request.mutation.ok_or(ApiError::MissingMutation)?;
    let caller_params = match mutation.params {
        Some(params) => convert::map_from_struct(params, "mutation.params")?,
        None => Map::default(),
    };
    let write = WriteCall { body, idempotency_key: request.idempotency_key, mutation: mutation.name, caller_params };
    Ok(govern(api, write, call).await?.into_proto(request.answer_form))
}

/// `POST /v1/execute-with-evidence`: `{"request": {Kernite's body},
/// "mutation": {"name": …, "params": {…}}}`, the key in `Idempotency-Key`.
pub(super) async fn execute_with_evidence_json(
    api: &GovernanceApi,
    body: Value,
    idempotency_key: Option<String>,
    call: &Call,
) -> Result<String, ApiError> {
    let write = write_call(body, idempotency_key)?;
    Ok(json::to_string(&govern(api, write, call).await?.to_json(), Layout::Response))
}

/// Decides a write and commits it with its evidence (or only the evidence).
async fn govern(api: &GovernanceApi, write: WriteCall, call: &Call) -> Result<Governed, ApiError> {
    let store = api.store()?;
    let fingerprint = Fingerprint::of(&write.body, &write.mutation, &write.caller_params);
    let bundle = api.decider.bundle_for_write(&write.body)?;
    let validation = validate(write.body, write.idempotency_key.as_deref())?;
    let workspace = &validation.request.workspace_id;
    call.may_run(&write.mutation, workspace)?;
    let registry = store.registry();
    let mutation = registry.mutation_for(&write.mutation, &validation.request)?;
    let bundle_mode = match &bundle {
        Some(bundle) => match resolve(bundle, &validation).mode {
            None if !mutation.ungoverned => return Err(ApiError::NotGoverned(mutation.name.clone())),
            mode => mode,
        },
        None => None,
    };
    let mode = registry.mode_for(mutation, bundle_mode);
    let record = match mode {
        Mode::Skip => None,
        Mode::Enforce | Mode::Observe => Some(decide(&validation, bundle.as_deref())?),
    };
    if let Some(record) = &record {
        call.record_decision(record, &validation.request, mode);
    }
    // Past its deadline, nothing is written.
    call.deadline().check()?;
    let execution = store
        .execute(GovernedWrite {
            request: &validation.request,
            decision: record.as_ref(),
            mode,
            mutation,
            caller_params: &write.caller_params,
            fingerprint,
            policy_bundle: bundle.as_ref().map(|b| b.sha256.as_str()),
            trace_id: call.trace_id(),
            caller: call.caller().name(),
        })
        .await;
    count(&execution);
    let execution = execution.map_err(|error| match error {
        // The earlier row's id, only to a caller that may read it.
        EvidenceError::KeyReused { .. } if !call.caller().can_read(workspace) => {
            EvidenceError::KeyReused { evidence_id: None }
        }
        error => error,
    });
    let execution = execution?;
    // A replay answers with the decision made now, which under the bundle
    // that decided the row is the recorded one. Under another bundle it may
    // differ, and an answer joining today's decision to the write the row
    // recorded would say what did not happen.
    if let (true, Some(recorded), Some(record)) = (execution.replayed, &execution.recorded, &record)
        && recorded.trace_hash != record.trace_hash
    {
        return Err(ApiError::DecidedOtherwiseSince);
    }
    Ok(Governed { record, mode, execution })
}

/// The JSON body's parts: `request` is Kernite's body, `mutation.params` optional.
fn write_call(body: Value, idempotency_key: Option<String>) -> Result<WriteCall, ApiError> {
    let Value::Object(mut body) = body else { return Err(ApiError::BadBody("the body must be an object".into())) };
    let request = body.shift_remove("request").ok_or(ApiError::MissingBody)?;
    let Some(Value::Object(mut mutation)) = body.shift_remove("mutation") else {
        return Err(ApiError::MissingMutation);
    };
    let Some(Value::Str(name)) = mutation.shift_remove("name") else { return Err(ApiError::MissingMutation) };
    let caller_params = match mutation.shift_remove("params") {
        None | Some(Value::Null) => Map::default(),
        Some(Value::Object(params)) => params,
        Some(_) => return Err(ApiError::BadBody("mutation.params must be an object".into())),
    };
    Ok(WriteCall { body: request, idempotency_key, mutation: name.into_string(), caller_params })
}

/// Counts what a governed write (or a gateway's check) did to the evidence table.
pub(super) fn count(result: &Result<Execution, EvidenceError>) {
    match result {
        Ok(execution) if execution.replayed => metrics().replay(),
        Ok(execution) if execution.mutation_applied => metrics().evidence_row(Outcome::Applied),
        Ok(_) => metrics().evidence_row(Outcome::NotApplied),
        Err(EvidenceError::KeyReused { .. }) => metrics().key_conflict(),
        Err(EvidenceError::MutationFailed { sqlstate, .. }) => {
            metrics().mutation_failure(sqlstate);
            metrics().evidence_row(Outcome::Error);
        }
        Err(_) => {}
    }
}

impl Governed {
    /// The answer, its decision in the caller's `answer_form`.
    fn into_proto(self, answer_form: i32) -> ExecuteWithEvidenceResponse {
        let execution = &self.execution;
        ExecuteWithEvidenceResponse {
            decision: self.record.map(|record| convert::evaluate_response(record, answer_form)),
            evidence_id: execution.evidence_id,
            mutation_applied: execution.mutation_applied,
            mutation_result: execution.result.as_ref().map(convert::mutation_result),
            replayed: execution.replayed,
            mode: proto::Mode::from(self.mode).into(),
        }
    }

    /// The same answer as JSON, the decision as Kernite's response body.
    fn to_json(&self) -> Value {
        let execution = &self.execution;
        object([
            ("decision", self.record.as_ref().map_or(Value::Null, DecisionRecord::to_value)),
            ("evidence_id", Value::Int(execution.evidence_id)),
            ("mutation_applied", Value::Bool(execution.mutation_applied)),
            ("mutation_result", execution.result.as_ref().map_or(Value::Null, result_json)),
            ("replayed", Value::Bool(execution.replayed)),
            ("mode", Value::str(self.mode.as_str())),
        ])
    }
}

fn result_json(result: &MutationResult) -> Value {
    object([
        ("rows_affected", Value::Int(result.rows_affected as i64)),
        ("returning", Value::Array(result.returning.iter().cloned().map(Value::Object).collect())),
    ])
}
