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

use crate::decision::Value;
use crate::decision::value::object;

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

/// The body of Kernite's authoring answers: `ctx_id`, `message`, `data`.
fn body(ctx_id: String, message: &str, data: Value) -> Value {
    object([("ctx_id", Value::str(ctx_id)), ("message", Value::str(message)), ("data", data)])
}
