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
    #[error("the idempotency key was already used with a different request{}", .evidence_id.map_or_else(String::new, |id| format!(" (evidence id {id})")))]
    KeyReused { evidence_id: Option<i64> },
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
            EvidenceError::Database(e) => {
                e.code().and_then(|code| by_class(code.code())).unwrap_or(ServiceErrorCode::Internal)
            }
            EvidenceError::Schema(_)
            | EvidenceError::UnknownStoredWord { .. }
            | EvidenceError::Log(_)
            | EvidenceError::Unexpected(_) => ServiceErrorCode::Internal,
            EvidenceError::NotInLog(_) => ServiceErrorCode::NotFound,
            EvidenceError::Bind(_)
            | EvidenceError::KeyTooLong { .. }
            | EvidenceError::Unstorable { .. }
            | EvidenceError::BadLogRange(_) => ServiceErrorCode::BadRequest,
            EvidenceError::KeyReused { .. } => ServiceErrorCode::AlreadyExists,
            EvidenceError::MutationFailed { sqlstate, .. } => by_class(sqlstate).unwrap_or(ServiceErrorCode::Aborted),
            EvidenceError::KeyExpired => ServiceErrorCode::Aborted,
            EvidenceError::NotConfigured => ServiceErrorCode::FailedPrecondition,
        }
    }
}

/// What a PostgreSQL error means for the caller, by its SQLSTATE's class
/// (the table in docs/evidence.md). `None`: the class says nothing of the
/// caller; a failed mutation is then ABORTED (rolled back, its error
/// recorded), and any other statement's failure is INTERNAL, a bug.
fn by_class(sqlstate: &str) -> Option<ServiceErrorCode> {
    if sqlstate == SqlState::QUERY_CANCELED.code() {
        return Some(ServiceErrorCode::DeadlineExceeded); // statement_timeout
    }
    match sqlstate.get(..2)? {
        // Data exception, program limit exceeded: the caller's values do not fit the columns.
        "22" | "54" => Some(ServiceErrorCode::BadRequest),
        // Integrity constraint, transaction rollback (a serialization failure
        // after its retries), object in use or locked, an exception a trigger raised.
        "23" | "40" | "55" | "P0" => Some(ServiceErrorCode::Aborted),
        // Connection exception, insufficient resources, operator intervention,
        // system error: the database, not the request; a retry may succeed.
        "08" | "53" | "57" | "58" => Some(ServiceErrorCode::Unavailable),
        // Read-only transaction (a standby), in class 25 with states that are bugs.
        "25" if sqlstate == SqlState::READ_ONLY_SQL_TRANSACTION.code() => Some(ServiceErrorCode::Unavailable),
        // Syntax or access rule (a table dropped, a grant revoked), internal error: the operator's to mend.
        _ => None,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_mutation_is_answered_by_its_sqlstate_class() {
        let failed = |sqlstate: &str| EvidenceError::MutationFailed {
            sqlstate: sqlstate.into(),
            ctx_id: String::new(),
            trace_hash: String::new(),
            evidence_id: 1,
        };
        let table = [
            ("22001", ServiceErrorCode::BadRequest),       // value too long for the column
            ("22P02", ServiceErrorCode::BadRequest),       // invalid text representation
            ("54000", ServiceErrorCode::BadRequest),       // index row too large
            ("23505", ServiceErrorCode::Aborted),          // unique violation
            ("23514", ServiceErrorCode::Aborted),          // check violation
            ("40001", ServiceErrorCode::Aborted),          // serialization failure
            ("55P03", ServiceErrorCode::Aborted),          // lock not available
            ("P0001", ServiceErrorCode::Aborted),          // raised by a trigger
            ("57014", ServiceErrorCode::DeadlineExceeded), // statement_timeout
            ("53100", ServiceErrorCode::Unavailable),      // disk full
            ("25006", ServiceErrorCode::Unavailable),      // read-only
            ("42501", ServiceErrorCode::Aborted),          // privilege revoked: recorded, rolled back
        ];
        for (sqlstate, expected) in table {
            assert_eq!(failed(sqlstate).error_code(), expected, "{sqlstate}");
        }
    }
}
