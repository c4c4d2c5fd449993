//! PostgreSQL/TimescaleDB: connecting, migrating, and writing an epoch's rows.

mod connect;
mod migrate;
pub mod timescale;
mod timestamp;
mod writer;

pub use connect::connect;
pub use migrate::{migrate, MigrationReport};
pub use timescale::Storage;
pub use writer::{RowWriter, WriteOutcome, WritePath};

/// An infrastructure failure talking to PostgreSQL.
#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    /// A statement or the connection failed.
    #[error("postgres {operation}: {message}")]
    Query {
        /// The operation (`connect`, `migrate`, `write`), also the metric label.
        operation: &'static str,
        /// The server's or client's message, credentials removed.
        message: String,
        /// The SQLSTATE, when the server sent one.
        code: Option<String>,
    },
}

impl PostgresError {
    pub(crate) fn query(operation: &'static str, error: &tokio_postgres::Error) -> Self {
        PostgresError::Query {
            operation,
            message: crate::logging::redact_error(error),
            code: error.code().map(|code| code.code().to_owned()),
        }
    }

    /// The operation that failed (metric label).
    pub fn operation(&self) -> &'static str {
        match self {
            PostgresError::Query { operation, .. } => operation,
        }
    }

    /// The SQLSTATE, when the server sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            PostgresError::Query { code, .. } => code.as_deref(),
        }
    }

    /// Whether the failure says something about the data rather than the service's health
    /// (SQLSTATE class 22, data exception): retrying the same rows cannot succeed.
    pub fn is_data_error(&self) -> bool {
        match self {
            PostgresError::Query { code, .. } => {
                code.as_deref().is_some_and(|code| code.starts_with("22"))
            }
        }
    }
}
