//! The evidence tables' schema: the migrations this binary embeds
//! ([`migrate`]), and the two layouts the tables can have ([`layout`]).

pub mod layout;
pub mod migrate;

/// How a schema step can fail.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// Shown with its SQLSTATE only: PostgreSQL's messages may quote values.
    #[error("database error: {}", .0.code().map_or_else(|| .0.to_string(), |c| format!("SQLSTATE {}", c.code())))]
    Database(#[from] tokio_postgres::Error),
    /// The database's schema is not the one this binary needs, or cannot become it.
    #[error("{0}")]
    Incompatible(String),
}
