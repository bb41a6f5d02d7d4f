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
