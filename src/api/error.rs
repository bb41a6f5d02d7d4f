//! Every way a call can fail, and how each is written on the wire: the
//! gRPC status (with bounded details) and the HTTP body. Which gRPC code and
//! HTTP status an error gets is [`crate::error`]'s table, not this file's.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

use crate::access::Refusal;
use crate::decision::json::{self, JsonError, Layout};
use crate::decision::value::object;
use crate::decision::{InvalidRequest, Unanswerable, Value};
use crate::error::{ServiceError, ServiceErrorCode, grpc_code_name};
use crate::evidence::EvidenceError;
use crate::mutations::MutationRefused;

/// The error domain named in `google.rpc.ErrorInfo`.
const DOMAIN: &str = "governance.v1";

/// Status details travel in HTTP/2 trailers. gRPC's C-core clients (Python,
/// Ruby, C++, PHP) start refusing metadata at random above 8 KiB and always
/// above 16 KiB, so an error must stay well under 8 KiB whatever the request
/// held: at most this many errors, a message of at most this many bytes,
/// and details (`grpc-status-details-bin`, base64: a third larger) of at most
/// this many bytes. Kernite's 400 body is echoed only if it fits.
const MAX_LISTED_ERRORS: usize = 50;
const MAX_MESSAGE_BYTES: usize = 1024;
const MAX_DETAILS_BYTES: usize = 3 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the request has no body: set `request` or `request_json`")]
    MissingBody,
    #[error("request_json is not valid JSON: {0}")]
    BadJson(JsonError),
    /// A `google.protobuf.Struct` that JSON cannot hold (NaN, infinities).
    #[error("{0}")]
    BadStruct(String),
    /// HTTP only: a JSON body of the wrong shape.
    #[error("{0}")]
    BadBody(String),
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
    #[error(
        "writes are decided by the operator's policy bundle, and this sidecar has none \
         (the operator may start it with --policy-bundle, or allow request policies with --allow-request-policies)"
    )]
    NoPolicyBundle,
    #[error(
        "mutation `{0}` is not governed: the policy bundle does not mention its scope \
         (the operator may add the scope to the bundle, or mark the mutation `ungoverned = true`)"
    )]
    NotGoverned(String),
    #[error("{0}")]
    BadAuditRequest(String),
    #[error("`{field}` is longer than {max_bytes} bytes, the most this sidecar accepts in an identifier")]
    IdentifierTooLong { field: &'static str, max_bytes: usize },
    #[error("no evidence matches")]
    EvidenceNotFound,
    /// HTTP only: gRPC bounds messages before they reach a handler.
    #[error("the request body is over {0} bytes")]
    BodyTooLarge(usize),
    /// HTTP only: the body ended early or its chunked encoding is broken.
    #[error("the request body could not be read: it ended early or its encoding is broken")]
    BodyUnreadable,
    /// HTTP only, with Kernite's message.
    #[error("Invalid JSON payload")]
    NotJson,
    /// HTTP only: a POST must declare its body JSON (`browsers.rs`).
    #[error("the request body must be sent with Content-Type: application/json")]
    NotJsonContentType,
    /// A call to the gRPC service that is not sent as gRPC (`browsers.rs`).
    #[error("a gRPC call must be sent with content-type application/grpc")]
    NotGrpcContentType,
    /// A guarded listener answers loopback host names and addresses (`browsers.rs`).
    #[error(
        "this listener answers requests for loopback host names and addresses only, not `{0}` \
         (the operator may allow more with --allowed-hosts)"
    )]
    HostNotAllowed(String),
    #[error("the call's deadline has passed")]
    DeadlinePassed,
    /// A bug: the authoring tool panicked (the panic is in the log).
    #[error("the policy tool failed before answering")]
    AuthoringPanicked,
    #[error("the candidate bundle is not a valid policy bundle: {0}")]
    BadCandidate(String),
    #[error("another replay is running on this sidecar: try again when it ends, or run `governance-sidecar replay`")]
    ReplayRunning,
    #[error(
        "the idempotency key's write was decided under another policy bundle, which this one decides otherwise: \
         its row is what happened (GetEvidence by the key reads it)"
    )]
    DecidedOtherwiseSince,
    #[error("the replay failed: {0}")]
    ReplayFailed(String),
    #[error(
        "this sidecar's gateway is not configured (the operator may start it with --gateway-workspace, \
         --gateway-principal and --operation-map)"
    )]
    GatewayNotConfigured,
    /// A route of the operation map whose scope the bundle in force does
    /// not mention (the bundle was replaced since start-up).
    #[error("the route `{0}` is not governed: the policy bundle in force does not mention its scope")]
    RouteNotGoverned(String),
    /// A proxy's request that cannot be read as a Kernite request (`crate::gateway`).
    #[error(transparent)]
    Untranslatable(#[from] crate::gateway::Untranslatable),
    /// Not authenticated, or outside the caller's grants (`gate.rs`).
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Mutation(#[from] MutationRefused),
    #[error(transparent)]
    Evidence(#[from] EvidenceError),
}

impl ServiceError for ApiError {
    fn error_code(&self) -> ServiceErrorCode {
        match self {
            ApiError::MissingBody
            | ApiError::BadJson(_)
            | ApiError::BadStruct(_)
            | ApiError::BadBody(_)
            | ApiError::Invalid { .. }
            | ApiError::Unanswerable(_)
            | ApiError::MissingMutation
            | ApiError::RequestPoliciesRefused
            | ApiError::BadAuditRequest(_)
            | ApiError::IdentifierTooLong { .. }
            | ApiError::BodyUnreadable
            | ApiError::BadCandidate(_)
            | ApiError::NotJson => ServiceErrorCode::BadRequest,
            ApiError::ReplayRunning => ServiceErrorCode::Busy,
            ApiError::DecidedOtherwiseSince => ServiceErrorCode::AlreadyExists,
            ApiError::ReplayFailed(_) => ServiceErrorCode::Internal,
            ApiError::EvidenceNotFound => ServiceErrorCode::NotFound,
            ApiError::NoPolicyBundle | ApiError::NotGoverned(_) | ApiError::GatewayNotConfigured => {
                ServiceErrorCode::FailedPrecondition
            }
            ApiError::Untranslatable(error) => error.error_code(),
            ApiError::RouteNotGoverned(_) => ServiceErrorCode::PermissionDenied,
            ApiError::BodyTooLarge(_) => ServiceErrorCode::PayloadTooLarge,
            ApiError::NotJsonContentType | ApiError::NotGrpcContentType => ServiceErrorCode::UnsupportedMediaType,
            ApiError::HostNotAllowed(_) => ServiceErrorCode::MisdirectedRequest,
            ApiError::DeadlinePassed => ServiceErrorCode::DeadlineExceeded,
            ApiError::AuthoringPanicked => ServiceErrorCode::Internal,
            ApiError::Refused(refusal) => refusal.error_code(),
            ApiError::Mutation(error) => error.error_code(),
            ApiError::Evidence(error) => error.error_code(),
        }
    }
}

impl From<ApiError> for Status {
    /// Every gRPC answer's status comes through here, so here its message is
    /// bounded: messages can quote what the caller sent (a mutation's name).
    fn from(error: ApiError) -> Status {
        let code = error.error_code().grpc();
        let message = error.message();
        bounded(match error {
            ApiError::RequestPoliciesRefused => {
                let violation = FieldViolation::new("policy_context", "set by the operator's policy bundle");
                let details = ErrorDetails::with_bad_request(vec![violation]);
                Status::with_error_details(code, message, details)
            }
            ApiError::Invalid { invalid, ctx_id } => invalid_request_status(&invalid, &ctx_id),
            _ => Status::new(code, message),
        })
    }
}

/// The status with its message cut to [`MAX_MESSAGE_BYTES`]. The details
/// repeat the message (clients check that they agree), so they are written
/// again around the shorter one.
fn bounded(status: Status) -> Status {
    if status.message().len() <= MAX_MESSAGE_BYTES {
        return status;
    }
    let message = truncate(status.message().to_owned(), MAX_MESSAGE_BYTES);
    let details = status.get_error_details_vec();
    Status::with_error_details_vec_and_metadata(status.code(), message, details, status.metadata().clone())
}

/// INVALID_ARGUMENT listing Kernite's errors three ways: in the message for
/// people, as `google.rpc.BadRequest` for programs, and as Kernite's own
/// 400 body in `google.rpc.ErrorInfo` metadata, within the bounds above.
fn invalid_request_status(invalid: &InvalidRequest, ctx_id: &str) -> Status {
    let body = json::to_string(&invalid.to_value(ctx_id), Layout::Response);
    let mut listed = invalid.errors.len().min(MAX_LISTED_ERRORS);
    let mut echo_body = true;
    loop {
        let status = invalid_request_status_with(invalid, ctx_id, listed, echo_body.then_some(body.as_str()));
        if status.details().len() <= MAX_DETAILS_BYTES || listed <= 1 {
            return status;
        }
        // Too large for a trailer: first the body goes, then half the list at a time.
        if echo_body {
            echo_body = false;
        } else {
            listed /= 2;
        }
    }
}

fn invalid_request_status_with(invalid: &InvalidRequest, ctx_id: &str, listed: usize, body: Option<&str>) -> Status {
    let shown = &invalid.errors[..listed];
    let mut summary: Vec<String> =
        shown.iter().map(|e| format!("{} ({}): {}", e.field, e.code.as_str(), e.message)).collect();
    if listed < invalid.errors.len() {
        summary.push(format!("and {} more", invalid.errors.len() - listed));
    }
    // Cut here, not later, so that the size measured is the size sent.
    let message = truncate(format!("Execute payload is invalid. {}", summary.join("; ")), MAX_MESSAGE_BYTES);
    let violations: Vec<FieldViolation> = shown
        .iter()
        .map(|e| {
            let mut violation = FieldViolation::new(&e.field, &e.message);
            violation.reason = e.code.as_str().to_ascii_uppercase();
            violation
        })
        .collect();
    let mut details = ErrorDetails::with_bad_request(violations);
    let mut metadata = HashMap::from([("ctx_id".to_owned(), ctx_id.to_owned())]);
    if let Some(body) = body {
        metadata.insert("kernite_response".to_owned(), body.to_owned());
    }
    details.set_error_info("INVALID_EXECUTE_REQUEST", DOMAIN, metadata);
    Status::with_error_details(Code::InvalidArgument, message, details)
}

/// At most `max` bytes of `text`, cut at a character boundary and marked with "…".
fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max - '…'.len_utf8();
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

impl ApiError {
    /// What the caller is told, and a failure's log line says: bounded to
    /// [`MAX_MESSAGE_BYTES`], since messages can quote what the caller sent.
    pub(crate) fn message(&self) -> String {
        match self {
            // Why the database cannot be reached names hosts, users and
            // databases: the operator's to read, in the call's log line.
            ApiError::Evidence(EvidenceError::Unavailable(_)) => "the database is unavailable: try again".to_owned(),
            _ => truncate(self.to_string(), MAX_MESSAGE_BYTES),
        }
    }

    /// A failure on the sidecar's side: the whole of it, for the call's log line.
    pub(crate) fn failure(&self) -> Option<String> {
        self.error_code().is_failure().then(|| truncate(self.to_string(), MAX_MESSAGE_BYTES))
    }
}

/// The HTTP status and JSON body of an error. Kernite's own failures keep
/// Kernite's bodies (a 400 with its errors, `Invalid JSON payload`, and a
/// bare message for an oversized body); the sidecar's own carry the gRPC
/// code's name beside the message.
pub(crate) fn http_error(error: ApiError) -> (http::StatusCode, Value) {
    let code = error.error_code();
    let body = match error {
        ApiError::Invalid { invalid, ctx_id } => invalid.to_value(&ctx_id),
        ApiError::NotJson | ApiError::BodyTooLarge(_) => object([("message", Value::str(error.to_string()))]),
        other => object([("message", Value::str(other.message())), ("code", Value::str(grpc_code_name(code.grpc())))]),
    };
    (code.http(), body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_message_is_cut_and_its_details_repeat_the_cut_message() {
        let long = format!("{}é", "x".repeat(2000));
        let details = ErrorDetails::with_bad_request(vec![FieldViolation::new("field", "reason")]);
        let status = bounded(Status::with_error_details(Code::DeadlineExceeded, long, details));
        assert_eq!(status.code(), Code::DeadlineExceeded);
        assert!(status.message().len() <= MAX_MESSAGE_BYTES && status.message().ends_with('…'));
        let repeated = <tonic_types::pb::Status as prost::Message>::decode(status.details()).unwrap();
        assert_eq!(repeated.message, status.message());
        assert_eq!(status.get_error_details().bad_request().unwrap().field_violations[0].field, "field");
    }

    #[test]
    fn truncation_cuts_at_a_character_boundary() {
        assert_eq!(truncate("short".into(), 10), "short");
        let cut = truncate("ééééé".into(), 6); // 10 bytes; "…" takes 3
        assert_eq!(cut, "é…");
    }
}
