//! The PostgreSQL side's settings: where the database is, how rows are written, and what
//! TimescaleDB should make of `positions`.

use std::path::PathBuf;
use std::str::FromStr;

use super::timescale::{self, Interval, Mode, Optional};
use crate::config_values::ConfigError;

/// Where the database is: every command that talks to PostgreSQL takes these.
#[derive(Clone, Debug, clap::Args)]
pub struct DatabaseLink {
    /// PostgreSQL/TimescaleDB connection (URL or key=value form).
    #[arg(
        id = "database_url",
        long = "database-url",
        env = "DATABASE_URL",
        value_name = "URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub url: String,

    /// PEM file of the CA(s) trusted for PostgreSQL's certificate (`sslmode=require`), instead of
    /// the system's roots.
    #[arg(
        id = "database_ca_file",
        long = "database-ca-file",
        env = "DATABASE_CA_FILE",
        value_name = "FILE"
    )]
    pub ca_file: Option<PathBuf>,
}

impl DatabaseLink {
    /// The connection string must parse, the CA file must hold certificates.
    pub fn validate(&self) -> Result<(), ConfigError> {
        tokio_postgres::Config::from_str(&crate::tls::normalize_sslmode(&self.url)).map_err(
            |e| {
                ConfigError::new(
                    "DATABASE_URL",
                    format!(
                        "not a PostgreSQL connection string ({})",
                        crate::redact::redact_error(&e)
                    ),
                )
            },
        )?;
        if let Some(path) = &self.ca_file {
            crate::tls::read_ca_file(path)
                .map_err(|e| ConfigError::new("DATABASE_CA_FILE", e.to_string()))?;
        }
        Ok(())
    }

    /// A connection (see [`super::connect`]).
    pub async fn connect(&self) -> Result<tokio_postgres::Client, super::PostgresError> {
        super::connect(&self.url, self.ca_file.as_deref()).await
    }
}

/// What TimescaleDB should make of `positions` (applied by `processor migrate`, and at start-up
/// under `MIGRATE=auto`).
#[derive(Clone, Debug, clap::Args)]
pub struct TimescaleArgs {
    /// Whether `positions` is a TimescaleDB hypertable: `auto` (when the server can load the
    /// extension; a plain table otherwise), `require` (start-up waits until it can), `off`.
    #[arg(long, env = "TIMESCALEDB", value_enum, default_value_t = Mode::Auto)]
    pub timescaledb: Mode,

    /// Time span of one hypertable chunk (`12h`, `1d`, `1w`); a change applies to new chunks.
    #[arg(long, env = "TIMESCALEDB_CHUNK_INTERVAL", default_value = "1d")]
    pub chunk_interval: Interval,

    /// Compress chunks older than this (segmented by device_id, ordered by ts DESC), or `off`.
    #[arg(long, env = "TIMESCALEDB_COMPRESS_AFTER", default_value = "7d")]
    pub compress_after: Optional,

    /// Drop chunks older than this, or `off` to keep every row.
    #[arg(long, env = "TIMESCALEDB_RETENTION", default_value = "off")]
    pub retention: Optional,
}

impl TimescaleArgs {
    /// The TimescaleDB settings of `positions`.
    pub fn config(&self) -> timescale::HypertableConfig {
        timescale::HypertableConfig {
            mode: self.timescaledb,
            chunk_interval: self.chunk_interval,
            compress_after: self.compress_after.0,
            retention: self.retention.0,
        }
    }
}

/// Whether the service changes the schema at start-up (`MIGRATE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Migrate {
    /// Apply what is missing (migrations, TimescaleDB settings), as `processor migrate` does;
    /// with nothing missing, no DDL runs, so a role without DDL rights starts too.
    Auto,
    /// Never: check that every migration is applied and the role's rights, and wait (one ERROR,
    /// `/readyz` failing) until `processor migrate` has run.
    Off,
}

/// PostgreSQL/TimescaleDB.
#[derive(Clone, Debug, clap::Args)]
pub struct PostgresConfig {
    /// The server.
    #[command(flatten)]
    pub link: DatabaseLink,

    /// TimescaleDB's settings of `positions`.
    #[command(flatten)]
    pub hypertable: TimescaleArgs,

    /// `auto`: apply missing migrations and TimescaleDB settings at start-up (no DDL when
    /// nothing is missing); `off`: never change the schema, wait for `processor migrate`.
    #[arg(long, env = "MIGRATE", value_enum, default_value_t = Migrate::Auto)]
    pub migrate: Migrate,

    /// Rows per INSERT statement on the idempotent write path.
    #[arg(long, env = "WRITE_BATCH_SIZE", default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub write_batch_size: u32,
}

impl PostgresConfig {
    /// The connection settings must be usable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.link.validate()
    }

    /// The TimescaleDB settings of `positions`.
    pub fn timescale(&self) -> timescale::HypertableConfig {
        self.hypertable.config()
    }
}
