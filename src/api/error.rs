//! Every way a call can fail, and the one place each becomes a gRPC status.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

use crate::decision::json::{self, JsonError, Layout};
use crate::decision::{InvalidRequest, Unanswerable};
use crate::evidence::EvidenceError;

/// The error domain named in `google.rpc.ErrorInfo`.
const DOMAIN: &str = "governance.v1";

/// Status details travel in HTTP/2 trailers, which clients cap (often at
/// 16 KiB): these bounds keep an error deliverable whatever the request held.
const MAX_LISTED_ERRORS: usize = 50;
const MAX_ECHOED_BODY_BYTES: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the request has no body: set `request` or `request_json`")]
    MissingBody,
    #[error("request_json is not valid JSON: {0}")]
    BadJson(JsonError),
    #[error("{0}")]
    BadStruct(String),
    /// Kernite's status 400, with the ctx_id given to this rejection.
    #[error("Execute payload is invalid.")]
    Invalid { invalid: InvalidRequest, ctx_id: String },
    #[error("Kernite 0.1.6 cannot answer this request ({0})")]
    Unanswerable(#[from] Unanswerable),
    #[error("the request names no mutation: set `mutation.name`")]
    MissingMutation,
    #[error(
        "policy_context is not accepted: this sidecar decides with the operator's policy bundle \
         (the operator may allow request policies with --allow-request-policies)"
    )]
    RequestPoliciesRefused,
    #[error("{0}")]
    BadAuditRequest(String),
    #[error("no evidence matches")]
    EvidenceNotFound,
    /// HTTP only: gRPC bounds messages before they reach a handler.
    #[error("the request body is over {0} bytes")]
    BodyTooLarge(usize),
    /// HTTP only, with Kernite's message.
    #[error("Invalid JSON payload")]
    NotJson,
    #[error("{}", .0.message())]
    DeadlinePassed(Status),
    #[error(transparent)]
    Evidence(#[from] EvidenceError),
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Status {
        let message = error.to_string();
        match error {
            ApiError::MissingBody
            | ApiError::BadJson(_)
            | ApiError::BadStruct(_)
            | ApiError::Unanswerable(_)
            | ApiError::MissingMutation
            | ApiError::BadAuditRequest(_) => Status::invalid_argument(message),
            ApiError::EvidenceNotFound => Status::not_found(message),
            ApiError::BodyTooLarge(_) => Status::out_of_range(message),
            ApiError::NotJson => Status::invalid_argument(message),
            ApiError::RequestPoliciesRefused => {
                let violation = FieldViolation::new("policy_context", "set by the operator's policy bundle");
                let details = ErrorDetails::with_bad_request(vec![violation]);
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            ApiError::Invalid { invalid, ctx_id } => invalid_request_status(&invalid, &ctx_id),
            ApiError::Evidence(error) => error.into(),
            ApiError::DeadlinePassed(status) => status,
        }
    }
}

/// INVALID_ARGUMENT listing Kernite's errors three ways: in the message for
/// people, as `google.rpc.BadRequest` for programs, and as Kernite's own
/// 400 body in `google.rpc.ErrorInfo` metadata.
fn invalid_request_status(invalid: &InvalidRequest, ctx_id: &str) -> Status {
    let listed = &invalid.errors[..invalid.errors.len().min(MAX_LISTED_ERRORS)];
    let mut summary: Vec<String> =
        listed.iter().map(|e| format!("{} ({}): {}", e.field, e.code.as_str(), e.message)).collect();
    if listed.len() < invalid.errors.len() {
        summary.push(format!("and {} more", invalid.errors.len() - listed.len()));
    }
    let message = format!("Execute payload is invalid. {}", summary.join("; "));
    let violations: Vec<FieldViolation> = listed
        .iter()
        .map(|e| {
            let mut violation = FieldViolation::new(&e.field, &e.message);
            violation.reason = e.code.as_str().to_ascii_uppercase();
            violation
        })
        .collect();
    let mut details = ErrorDetails::with_bad_request(violations);
    let mut metadata = HashMap::from([("ctx_id".to_owned(), ctx_id.to_owned())]);
    let body = json::to_string(&invalid.to_value(ctx_id), Layout::Response);
    if body.len() <= MAX_ECHOED_BODY_BYTES {
        metadata.insert("kernite_response".to_owned(), body);
    }
    details.set_error_info("INVALID_EXECUTE_REQUEST", DOMAIN, metadata);
    Status::with_error_details(Code::InvalidArgument, message, details)
}

/// The HTTP status and JSON body of an error. Kernite's own failures keep
/// Kernite's bodies (a 400 with its errors, `Invalid JSON payload`); the
/// sidecar's own carry the gRPC code's name, with the status grpc-gateway uses.
pub fn http_error(error: ApiError) -> (http::StatusCode, crate::decision::Value) {
    use crate::decision::Value;
    use crate::decision::record::object;
    use http::StatusCode;
    match error {
        ApiError::Invalid { invalid, ctx_id } => (StatusCode::BAD_REQUEST, invalid.to_value(&ctx_id)),
        ApiError::NotJson => (StatusCode::BAD_REQUEST, object([("message", Value::str("Invalid JSON payload"))])),
        ApiError::BodyTooLarge(_) => {
            (StatusCode::PAYLOAD_TOO_LARGE, object([("message", Value::str(error.to_string()))]))
        }
        other => {
            let status = Status::from(other);
            let http = match status.code() {
                Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => StatusCode::BAD_REQUEST,
                Code::NotFound => StatusCode::NOT_FOUND,
                Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
                Code::PermissionDenied => StatusCode::FORBIDDEN,
                Code::Unauthenticated => StatusCode::UNAUTHORIZED,
                Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
                Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
                Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            let body = object([
                ("message", Value::str(status.message())),
                ("code", Value::str(grpc_code_name(status.code()))),
            ]);
            (http, body)
        }
    }
}

/// The canonical name of a gRPC code, e.g. `ALREADY_EXISTS`.
pub fn grpc_code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}
