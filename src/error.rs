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
    /// The thing asked for (a mutation, an evidence row) does not exist.
    NotFound,
    /// The idempotency key already names another request.
    AlreadyExists,
    /// The write was tried and rolled back.
    Aborted,
    /// The request asks for something outside what the operator allows.
    PermissionDenied,
    /// The sidecar is not set up for this call (no database).
    FailedPrecondition,
    /// The call's deadline passed, or the mutation was cancelled by the
    /// statement timeout.
    DeadlineExceeded,
    /// PostgreSQL cannot be reached now; a retry may succeed.
    Unavailable,
    /// A fault of the sidecar or its database that a retry will not mend.
    Internal,
}

impl ServiceErrorCode {
    /// The table: each code as a gRPC code and as an HTTP status (the
    /// statuses grpc-gateway gives the same gRPC codes).
    const fn wire(self) -> (Code, StatusCode) {
        use ServiceErrorCode::*;
        match self {
            BadRequest => (Code::InvalidArgument, StatusCode::BAD_REQUEST),
            PayloadTooLarge => (Code::OutOfRange, StatusCode::PAYLOAD_TOO_LARGE),
            NotFound => (Code::NotFound, StatusCode::NOT_FOUND),
            AlreadyExists => (Code::AlreadyExists, StatusCode::CONFLICT),
            Aborted => (Code::Aborted, StatusCode::CONFLICT),
            PermissionDenied => (Code::PermissionDenied, StatusCode::FORBIDDEN),
            FailedPrecondition => (Code::FailedPrecondition, StatusCode::BAD_REQUEST),
            DeadlineExceeded => (Code::DeadlineExceeded, StatusCode::GATEWAY_TIMEOUT),
            Unavailable => (Code::Unavailable, StatusCode::SERVICE_UNAVAILABLE),
            Internal => (Code::Internal, StatusCode::INTERNAL_SERVER_ERROR),
        }
    }

    pub const fn grpc(self) -> Code {
        self.wire().0
    }

    pub const fn http(self) -> StatusCode {
        self.wire().1
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
