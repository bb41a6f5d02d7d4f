//! How a governed write or an evidence read can fail, and which database
//! failures are worth a retry.

use tokio_postgres::error::SqlState;

use crate::error::{ServiceError, ServiceErrorCode};
use crate::mutations::BindError;
use crate::schema::SchemaError;

#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// Shown with its SQLSTATE only: PostgreSQL's messages may quote values.
    #[error("database error: {}", .0.code().map_or_else(|| .0.to_string(), |c| format!("SQLSTATE {}", c.code())))]
    Database(#[from] tokio_postgres::Error),
    /// The database's schema is not the one this binary needs.
    #[error("{0}")]
    Schema(String),
    /// A stored value is none of the words the sidecar writes.
    #[error("evidence row {evidence_id}: {word}")]
    UnknownStoredWord { evidence_id: i64, word: crate::vocabulary::UnknownWord },
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error("the idempotency key is longer than {max_bytes} bytes")]
    KeyTooLong { max_bytes: usize },
    /// Text PostgreSQL cannot store, refused before the database sees it.
    #[error("`{field}` holds a NUL character (U+0000), which PostgreSQL cannot store")]
    Unstorable { field: &'static str },
    #[error("the idempotency key was already used with a different request (evidence id {evidence_id})")]
    KeyReused { evidence_id: i64 },
    /// The key's lifetime ended and its claim was released: the write goes
    /// again as a new request (`write.rs` retries it; a caller sees this only
    /// if the key was claimed again and expired again in between).
    #[error("the idempotency key's lifetime ended while the call was retried; call again")]
    KeyExpired,
    #[error(
        "the mutation failed with SQLSTATE {sqlstate} and was rolled back (ctx_id {ctx_id}, trace_hash {trace_hash}, error evidence id {evidence_id})"
    )]
    MutationFailed { sqlstate: String, ctx_id: String, trace_hash: String, evidence_id: i64 },
    /// The verifiable log's stored tree is not what it should be.
    #[error("verifiable log: {0}")]
    Log(String),
    /// No checkpoint, or no leaf, answers the question yet.
    #[error("{0}")]
    NotInLog(String),
    /// A proof between sizes that cannot have one.
    #[error("{0}")]
    BadLogRange(String),
    /// PostgreSQL answered what the statement cannot answer.
    #[error("unexpected answer from the database: {0}")]
    Unexpected(&'static str),
    #[error("ExecuteWithEvidence needs a database: start with --database-url or use `governance-sidecar dev`")]
    NotConfigured,
}

impl ServiceError for EvidenceError {
    fn error_code(&self) -> ServiceErrorCode {
        match self {
            EvidenceError::Unavailable(_) => ServiceErrorCode::Unavailable,
            EvidenceError::Database(e) if e.is_closed() || e.as_db_error().is_none() => ServiceErrorCode::Unavailable,
            EvidenceError::Database(_)
            | EvidenceError::Schema(_)
            | EvidenceError::UnknownStoredWord { .. }
            | EvidenceError::Log(_)
            | EvidenceError::Unexpected(_) => ServiceErrorCode::Internal,
            EvidenceError::NotInLog(_) => ServiceErrorCode::NotFound,
            EvidenceError::Bind(_)
            | EvidenceError::KeyTooLong { .. }
            | EvidenceError::Unstorable { .. }
            | EvidenceError::BadLogRange(_) => ServiceErrorCode::BadRequest,
            EvidenceError::KeyReused { .. } => ServiceErrorCode::AlreadyExists,
            EvidenceError::MutationFailed { sqlstate, .. } if sqlstate == SqlState::QUERY_CANCELED.code() => {
                ServiceErrorCode::DeadlineExceeded
            }
            EvidenceError::MutationFailed { .. } | EvidenceError::KeyExpired => ServiceErrorCode::Aborted,
            EvidenceError::NotConfigured => ServiceErrorCode::FailedPrecondition,
        }
    }
}

impl From<SchemaError> for EvidenceError {
    fn from(error: SchemaError) -> EvidenceError {
        match error {
            SchemaError::Database(e) => EvidenceError::Database(e),
            SchemaError::Incompatible(why) => EvidenceError::Schema(why),
        }
    }
}

impl From<deadpool_postgres::PoolError> for EvidenceError {
    fn from(error: deadpool_postgres::PoolError) -> EvidenceError {
        EvidenceError::Unavailable(error.to_string())
    }
}

/// Of two failures of one pipeline, the one that caused the other. Once a
/// statement fails, the transaction's later statements only report 25P02
/// (in failed transaction); which one ran first depends on timing.
pub(super) fn cause(a: EvidenceError, b: EvidenceError) -> EvidenceError {
    let aborted_by_another = |e: &EvidenceError| matches!(e, EvidenceError::Database(db) if db.code() == Some(&SqlState::IN_FAILED_SQL_TRANSACTION));
    if aborted_by_another(&a) && !aborted_by_another(&b) { b } else { a }
}
