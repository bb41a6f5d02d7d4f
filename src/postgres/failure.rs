//! What a database failure means for the call that met it: worth a retry on
//! the same connection, a sign that the server is no longer the primary, or
//! the connection gone; and a database error's message without the values
//! it may quote.

use tokio_postgres::error::SqlState;

/// A serialization failure or deadlock: the same transaction may succeed again.
pub fn is_retryable(error: &tokio_postgres::Error) -> bool {
    matches!(error.code(), Some(code) if *code == SqlState::T_R_SERIALIZATION_FAILURE || *code == SqlState::T_R_DEADLOCK_DETECTED)
}

/// The server answers read-only (25006): a standby, or a primary demoted
/// since the connection was opened. Nothing was written; another server may
/// be the primary now.
pub fn is_read_only(error: &tokio_postgres::Error) -> bool {
    error.code() == Some(&SqlState::READ_ONLY_SQL_TRANSACTION)
}

/// The server went away (connection exception, or an operator/crash
/// shutdown of the backend): nothing committed, and the request is not at fault.
pub fn is_connection_loss(error: &tokio_postgres::Error) -> bool {
    match error.code() {
        None => error.is_closed(),
        Some(code) => {
            code.code().starts_with("08")
                || [SqlState::ADMIN_SHUTDOWN, SqlState::CRASH_SHUTDOWN, SqlState::CANNOT_CONNECT_NOW].contains(code)
        }
    }
}

/// A database error's own message, without the statement or its parameters.
pub fn db_message(error: &tokio_postgres::Error) -> String {
    error.as_db_error().map_or_else(|| error.to_string(), |db| db.message().to_owned())
}
