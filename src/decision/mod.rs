//! The Kernite 0.1.6 decision engine: pure functions, no I/O, no clock, no randomness.
//!
//! [`execute`] answers what Kernite's `execute_request` answers: a decision
//! (status 200) or the list of validation errors (status 400). The one thing
//! Kernite does that is not a function of its input, the random `ctx_id` of a
//! 400 body, is left to the caller ([`InvalidRequest::to_value`]).
//!
//! `../shared/conformance` holds 2,007 answers of Kernite itself; the
//! `conformance` integration test requires every one of them to match.

mod evaluate;
pub mod json;
mod map;
pub(crate) mod python;
pub mod reads;
pub mod record;
pub mod request;
mod rules;
mod trace;
pub mod validate;
pub mod value;

pub use reads::Reads;
pub use record::{Decision, DecisionRecord, Reason};
pub use request::{ErrorCode, FieldError, NormalizedRequest, PolicyContextInput, Validation};
pub use trace::ctx_id_of;
pub use value::{Map, Text, Value};

use value::object;

/// Inputs Kernite 0.1.6 itself cannot answer: it raises an exception (an
/// HTTP 500 from `kernite serve`). The sidecar refuses them with a clear error
/// instead, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Unanswerable {
    pub field: String,
    pub reason: String,
}

impl Unanswerable {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Unanswerable {
        Unanswerable { field: field.into(), reason: reason.into() }
    }
}

/// A decision together with the normalised request it was made on.
#[derive(Debug, Clone)]
pub struct Decided {
    pub request: NormalizedRequest,
    pub record: DecisionRecord,
}

/// A request Kernite rejects with status 400.
#[derive(Debug, Clone)]
pub struct InvalidRequest {
    pub errors: Vec<FieldError>,
    /// The `normalized` object Kernite echoes back.
    pub normalized: Value,
}

pub const INVALID_MESSAGE: &str = "Execute payload is invalid.";
pub const VALID_MESSAGE: &str = "Execute payload is valid.";

/// Kernite's `validate_execute_request` body for a valid request (its status
/// 200 answer to `/v1/validate/execute`), with the caller's `ctx_id`.
pub fn valid_body(validation: &Validation, ctx_id: &str) -> Value {
    object([
        ("ctx_id", Value::str(ctx_id)),
        ("message", Value::str(VALID_MESSAGE)),
        (
            "data",
            object([
                ("valid", Value::Bool(true)),
                ("errors", Value::Array(Vec::new())),
                ("normalized", validation.normalized_value()),
            ]),
        ),
    ])
}

impl InvalidRequest {
    /// Kernite's 400 body, with the caller's `ctx_id` (Kernite draws a random one).
    pub fn to_value(&self, ctx_id: &str) -> Value {
        let errors = self
            .errors
            .iter()
            .map(|e| {
                object([
                    ("field", Value::str(&e.field)),
                    ("code", Value::str(e.code.as_str())),
                    ("message", Value::str(&e.message)),
                ])
            })
            .collect();
        object([
            ("ctx_id", Value::str(ctx_id)),
            ("message", Value::str(INVALID_MESSAGE)),
            (
                "data",
                object([
                    ("valid", Value::Bool(false)),
                    ("errors", Value::Array(errors)),
                    ("normalized", self.normalized.clone()),
                ]),
            ),
        ])
    }
}

#[derive(Debug, Clone)]
pub enum Answer {
    Decided(Box<Decided>),
    Invalid(InvalidRequest),
}

/// Validates a Kernite execute request body: the normalised request, or Kernite's 400.
pub fn validate(
    body: Value,
    idempotency_key: Option<&str>,
) -> Result<Result<Validation, InvalidRequest>, Unanswerable> {
    let validation = validate::validate(body, idempotency_key)?;
    if validation.errors.is_empty() {
        return Ok(Ok(validation));
    }
    let normalized = validation.normalized_value();
    Ok(Err(InvalidRequest { errors: validation.errors, normalized }))
}

/// Decides a validated request.
pub fn evaluate(validation: &Validation) -> Result<DecisionRecord, Unanswerable> {
    evaluate::evaluate(&validation.request, validation.policy_context.as_ref())
}

/// Decides a validated request under `policy_context` instead of its own:
/// exactly what Kernite answers for the request with that `policy_context` in it.
pub fn evaluate_under(
    request: &NormalizedRequest,
    policy_context: &PolicyContextInput,
) -> Result<DecisionRecord, Unanswerable> {
    evaluate::evaluate(request, Some(policy_context))
}

/// Validates and decides a Kernite execute request body, as Kernite's `execute_request`.
pub fn execute(body: Value, idempotency_key: Option<&str>) -> Result<Answer, Unanswerable> {
    match validate(body, idempotency_key)? {
        Err(invalid) => Ok(Answer::Invalid(invalid)),
        Ok(validation) => {
            let record = evaluate(&validation)?;
            Ok(Answer::Decided(Box::new(Decided { request: validation.request, record })))
        }
    }
}
