//! PostgreSQL/TimescaleDB: connecting, migrating, and writing an epoch's rows.
//!
//! - `connect.rs`, `config.rs`: the connection (TLS, redaction) and its settings;
//! - `migrate.rs`, `timescale.rs`: the schema, and `positions` as a hypertable;
//! - `epoch_writer.rs`: an epoch's transaction, which calls each table's writer in turn;
//! - `tables/`: one file per output table (its columns, statements, share of isolating refused
//!   rows); `columns.rs`, `timestamp.rs`: what their statements share;
//! - `refusals.rs`: rows the database refuses, and the rule that tells bad rows from a
//!   database that refuses every row;
//! - `offsets.rs`: the stored resume point;
//! - `privileges.rs`: the rights the service's role needs on its tables, checked at start-up.

mod columns;
mod config;
mod connect;
mod epoch_writer;
mod migrate;
mod offsets;
pub mod privileges;
mod refusals;
mod tables;
pub mod timescale;
mod timestamp;

pub use config::{DatabaseLink, Migrate, PostgresConfig, TimescaleArgs};
pub use connect::connect;
pub use epoch_writer::{EpochWriter, IsolateError, Isolated, WriteOutcome, WritePath};
pub use migrate::{migrate, prepare, MigrationReport, MIGRATE_REMEDY};
pub use offsets::{load_resume_point, store_resume_point};
pub use refusals::{Refusal, Streak, Systematic};
pub use tables::{
    devices_with_positions, rebuild_device, Changes, Outputs, Rebuilt, TableChanges, DEVICE_LATEST,
    POSITIONS, TRIPS,
};
pub use timescale::Storage;

use crate::retry::{Class, Failure, System};

/// An infrastructure failure talking to PostgreSQL, or the database refusing data.
#[derive(Debug, thiserror::Error)]
#[error("postgres {operation}: {message}{}", code.as_deref().map(|c| format!(" (SQLSTATE {c})")).unwrap_or_default())]
pub struct PostgresError {
    /// The operation (`connect`, `migrate`, `write`), also the metric label.
    pub operation: &'static str,
    /// The server's or client's message, credentials removed.
    pub message: String,
    /// The SQLSTATE, when the server sent one.
    pub code: Option<String>,
    /// The constraint the server named, if any.
    pub constraint: Option<String>,
}

impl PostgresError {
    pub(crate) fn query(operation: &'static str, error: &tokio_postgres::Error) -> Self {
        let db = error.as_db_error();
        PostgresError {
            operation,
            message: match db {
                // the server's own words, without the client's "db error: " prefix
                Some(db) => crate::redact::redact_url(db.message()),
                None => crate::redact::redact_error(error),
            },
            code: error.code().map(|code| code.code().to_owned()),
            constraint: db.and_then(|db| db.constraint()).map(str::to_owned),
        }
    }

    /// A failure of `operation` described by `message` (no server involved).
    pub(crate) fn other(operation: &'static str, message: impl Into<String>) -> Self {
        PostgresError {
            operation,
            message: message.into(),
            code: None,
            constraint: None,
        }
    }

    /// Something only an operator can fix (a right not granted, a migration not applied),
    /// found by the service itself: `code` is the SQLSTATE the server would give for it, so it
    /// is classified, counted and shown as the server's own would be.
    pub(crate) fn needs_operator(
        operation: &'static str,
        code: &str,
        message: impl Into<String>,
    ) -> Self {
        PostgresError {
            operation,
            message: message.into(),
            code: Some(code.to_owned()),
            constraint: None,
        }
    }

    /// The same failure, its message followed by what fixes it.
    pub(crate) fn with_remedy(self, remedy: &str) -> Self {
        PostgresError {
            message: format!("{}: {remedy}", self.message),
            ..self
        }
    }

    /// The SQLSTATE, when the server sent one.
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// Whether the server refused the data of the statement rather than the statement itself:
    /// a value (SQLSTATE class 22), a constraint (class 23: the primary key's unique violation
    /// is handled by the write path before this is asked), or a trigger raising (`P0001`, and
    /// the classes of errors raised in routines, 38 and 39). Such a failure can hit some rows of
    /// a batch and not others. A schema error (class 42: a table or column gone, a type changed),
    /// a permission, a missing schema hits every row alike and is not a data error.
    pub fn is_data_error(&self) -> bool {
        self.code().is_some_and(|code| {
            ["22", "23", "38", "39"]
                .iter()
                .any(|class| code.starts_with(class))
                || code == "P0001"
        })
    }
}

impl Failure for PostgresError {
    /// No SQLSTATE (the connection, a timeout), connection exceptions (08), serialization
    /// failures and deadlocks (40), a lock or statement timeout (55P03, 57014), the server
    /// shutting down or starting (57P01-57P03), a read-only transaction during a failover
    /// (25006), insufficient resources (53) and system errors (58): transient. A write's data
    /// error: permanent, the row sink isolates the rows. Anything else (schema, permissions,
    /// authentication, a missing database): stalled until an operator fixes it.
    fn class(&self) -> Class {
        let Some(code) = self.code() else {
            return Class::Transient;
        };
        let transient_classes = ["08", "40", "53", "57", "58"];
        if transient_classes
            .iter()
            .any(|class| code.starts_with(class))
            || ["55P03", "25006"].contains(&code)
        {
            Class::Transient
        } else if self.operation == "write" && self.is_data_error() {
            Class::Permanent
        } else {
            Class::Stalled
        }
    }

    fn system(&self) -> System {
        System::Postgres
    }

    fn command(&self) -> &'static str {
        self.operation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(operation: &'static str, code: Option<&str>) -> PostgresError {
        PostgresError {
            operation,
            message: "m".to_owned(),
            code: code.map(str::to_owned),
            constraint: None,
        }
    }

    #[test]
    fn failures_are_classified_by_sqlstate() {
        for code in [
            None,
            Some("08006"),
            Some("40001"),
            Some("40P01"),
            Some("57P01"),
            Some("57014"),
            Some("55P03"),
            Some("25006"),
            Some("53100"),
        ] {
            assert_eq!(error("write", code).class(), Class::Transient, "{code:?}");
        }
        for code in ["23514", "23502", "22003", "P0001", "23505"] {
            assert_eq!(
                error("write", Some(code)).class(),
                Class::Permanent,
                "{code}"
            );
            assert_eq!(
                error("migrate", Some(code)).class(),
                Class::Stalled,
                "{code}"
            );
        }
        for code in [
            "42P01", "42703", "42501", "3F000", "28P01", "42804", "0A000",
        ] {
            assert_eq!(error("write", Some(code)).class(), Class::Stalled, "{code}");
        }
    }
}
