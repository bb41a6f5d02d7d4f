//! The one table that turns every error into a gRPC code and an HTTP status.
//!
//! Errors are domain errors ([`crate::api::ApiError`],
//! [`crate::evidence::EvidenceError`]) that know nothing of transports: each
//! names a transport-neutral [`ServiceErrorCode`] through [`ServiceError`],
//! and only this table says what that code is on the wire.

use http::StatusCode;
use tonic::Code;

/// What kind of failure an error is, independent of the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceErrorCode {
    /// The request is malformed or breaks a rule of the contract.
    BadRequest,
    /// The request body is over the configured limit (HTTP only: gRPC
    /// refuses oversized messages before a handler sees them).
    PayloadTooLarge,
    /// The request body is not declared JSON (HTTP only).
    UnsupportedMediaType,
    /// The request names a host this listener does not answer (HTTP only).
    MisdirectedRequest,
    /// The thing asked for (a mutation, an evidence row) does not exist.
    NotFound,
    /// The idempotency key already names another request.
    AlreadyExists,
    /// The write was tried and rolled back.
    Aborted,
    /// The call proves no caller, where the operator requires one.
    Unauthenticated,
    /// The request asks for something outside what the operator allows.
    PermissionDenied,
    /// The sidecar is not set up for this call (no database).
    FailedPrecondition,
    /// The call's deadline passed, or the mutation was cancelled by the
    /// statement timeout.
    DeadlineExceeded,
    /// As much of this kind of work as the sidecar allows is running (a
    /// replay); a retry once it ends may succeed.
    Busy,
    /// PostgreSQL cannot be reached now; a retry may succeed.
    Unavailable,
    /// A fault of the sidecar or its database that a retry will not mend.
    Internal,
}

impl ServiceErrorCode {
    /// The table: each code as a gRPC code and as an HTTP status (the
    /// statuses grpc-gateway gives the same gRPC codes), and whether the call
    /// failed on the sidecar's side (logged as a warning, with its message,
    /// whatever the transport) rather than being refused or cut short.
    const fn wire(self) -> (Code, StatusCode, bool) {
        use ServiceErrorCode::*;
        match self {
            BadRequest => (Code::InvalidArgument, StatusCode::BAD_REQUEST, false),
            PayloadTooLarge => (Code::OutOfRange, StatusCode::PAYLOAD_TOO_LARGE, false),
            UnsupportedMediaType => (Code::InvalidArgument, StatusCode::UNSUPPORTED_MEDIA_TYPE, false),
            MisdirectedRequest => (Code::PermissionDenied, StatusCode::MISDIRECTED_REQUEST, false),
            NotFound => (Code::NotFound, StatusCode::NOT_FOUND, false),
            AlreadyExists => (Code::AlreadyExists, StatusCode::CONFLICT, false),
            Aborted => (Code::Aborted, StatusCode::CONFLICT, false),
            Unauthenticated => (Code::Unauthenticated, StatusCode::UNAUTHORIZED, false),
            PermissionDenied => (Code::PermissionDenied, StatusCode::FORBIDDEN, false),
            FailedPrecondition => (Code::FailedPrecondition, StatusCode::BAD_REQUEST, false),
            DeadlineExceeded => (Code::DeadlineExceeded, StatusCode::GATEWAY_TIMEOUT, false),
            Busy => (Code::ResourceExhausted, StatusCode::TOO_MANY_REQUESTS, false),
            Unavailable => (Code::Unavailable, StatusCode::SERVICE_UNAVAILABLE, true),
            Internal => (Code::Internal, StatusCode::INTERNAL_SERVER_ERROR, true),
        }
    }

    pub const fn grpc(self) -> Code {
        self.wire().0
    }

    pub const fn http(self) -> StatusCode {
        self.wire().1
    }

    /// Whether the call failed on the sidecar's side (see [`Self::wire`]).
    pub const fn is_failure(self) -> bool {
        self.wire().2
    }
}

/// An error that knows its [`ServiceErrorCode`].
pub trait ServiceError: std::error::Error {
    fn error_code(&self) -> ServiceErrorCode;
}

/// The canonical name of a gRPC code, e.g. `ALREADY_EXISTS`: the `code` of
/// an HTTP error body and the `status` label of a gRPC call's metrics.
pub const fn grpc_code_name(code: Code) -> &'static str {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_failed_on_the_sidecars_side_exactly_when_it_answers_unavailable_or_internal() {
        use ServiceErrorCode::*;
        let all = [
            BadRequest,
            PayloadTooLarge,
            UnsupportedMediaType,
            MisdirectedRequest,
            NotFound,
            AlreadyExists,
            Aborted,
            Unauthenticated,
            PermissionDenied,
            FailedPrecondition,
            DeadlineExceeded,
            Unavailable,
            Internal,
        ];
        for code in all {
            // One rule for both transports: the HTTP status is a 5xx for the
            // failures and for a passed deadline (504), which is not one.
            let expected = matches!(code, Unavailable | Internal);
            assert_eq!(code.is_failure(), expected, "{code:?}");
            assert_eq!(code.http().is_server_error(), expected || code == DeadlineExceeded, "{code:?}");
        }
    }
}
