//! Kernite 0.1.6's authoring tools, answering byte for byte as Kernite does:
//! from an OpenAPI document to a policy bundle and an operation map
//! ([`generate`]), a coverage check of the document's write operations
//! against them ([`check`]), and the starter bundle ([`starter`]).
//!
//! Pure like [`crate::decision`], whose Python-compatible values, JSON
//! reader and writers and `str()` they share: no I/O, no clock, and the
//! `ctx_id` of an answer comes from the caller. Their faces are the HTTP
//! routes (`src/api/authoring.rs`) and the command line ([`command_line`]).

pub mod check;
pub mod command_line;
pub mod generate;
mod openapi;
mod refs;
pub mod starter;

use crate::decision::value::object;
use crate::decision::{Map, Value};

/// Why a document cannot be read: Kernite's `OpenApiValidationError`, its
/// message as Kernite words it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct OpenApiError(String);

impl OpenApiError {
    fn new(message: impl Into<String>) -> OpenApiError {
        OpenApiError(message.into())
    }
}

/// Whether a generation or check report says `"valid": true`.
fn report_is_valid(report: &Value) -> bool {
    matches!(report.as_object().and_then(|r| r.get("valid")), Some(Value::Bool(true)))
}

/// The body of Kernite's authoring answers: `ctx_id`, `message`, `data`.
fn body(ctx_id: String, message: &str, data: Value) -> Value {
    object([("ctx_id", Value::str(ctx_id)), ("message", Value::str(message)), ("data", data)])
}

/// A request body's object and its `options` (an absent or `null` one is
/// empty), or which of the two is not an object, in Kernite's words.
fn payload_and_options(payload: &Value) -> Result<(&Map, &Map), &'static str> {
    static NO_OPTIONS: std::sync::LazyLock<Map> = std::sync::LazyLock::new(Map::default);
    let Value::Object(payload) = payload else { return Err("Request body must be an object.") };
    match payload.get("options") {
        None | Some(Value::Null) => Ok((payload, &NO_OPTIONS)),
        Some(Value::Object(options)) => Ok((payload, options)),
        Some(_) => Err("options must be an object when provided."),
    }
}

/// Kernite's answer to a body it cannot read: 400, with the error.
fn invalid_payload(ctx_id: String, message: &str, error: &str) -> (u16, Value) {
    (400, body(ctx_id, message, object([("error", Value::str(error))])))
}
