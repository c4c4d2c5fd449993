//! TimescaleDB: what the server offers, and `positions` as the hypertable a fleet operator
//! expects, with the settings applied idempotently at every start.
//!
//! # What happens on each kind of server
//! - **The extension's files are not installed**: `positions` stays a plain table.
//! - **Installed but not preloaded** (the state a fresh package install leaves): `CREATE
//!   EXTENSION` would end the session with a FATAL error that no `EXCEPTION` block can catch, so
//!   the state is detected first, from the catalog: the loader defines its settings (e.g.
//!   `timescaledb.max_background_workers`) only when it is in `shared_preload_libraries`. The table
//!   stays plain and one WARN gives the remedy.
//! - **Preloaded**: the extension is created in schema `public` (where it is found by every
//!   schema's users, and where dropping an application schema cannot take it and every chunk
//!   with it), `positions` becomes a hypertable on `ts` (existing rows are migrated), and the
//!   chunk interval, compression and retention are brought to the configured values.
//!
//! Each setting is read back from TimescaleDB's information views and changed only when it
//! differs, so a restart with the same configuration changes nothing and a restart with a new
//! value applies it. Compression and retention need the community edition; on an Apache-only
//! server they are logged once as unavailable and skipped.

use std::fmt;

use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use super::PostgresError;
pub use crate::config_values::{Interval, Optional};

/// Whether to use TimescaleDB (`TIMESCALEDB`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Use it when the server can load it; otherwise a plain table (with a WARN when it is
    /// installed but not loadable).
    Auto,
    /// Refuse to run without it: start-up retries until the server can load it.
    Require,
    /// Never: `positions` stays a plain table.
    Off,
}

/// `interval` as a PostgreSQL `interval` literal (digits and a unit word only, safe to inline).
fn sql(interval: Interval) -> String {
    format!("'{interval}'::interval")
}

/// The TimescaleDB settings of `positions`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HypertableConfig {
    /// Whether to use TimescaleDB at all.
    pub mode: Mode,
    /// The time span of one chunk (applies to chunks created from now on).
    pub chunk_interval: Interval,
    /// Chunks whose data is older than this are compressed by a policy; `None`: no policy.
    pub compress_after: Option<Interval>,
    /// Chunks whose data is older than this are dropped by a policy; `None`: kept for ever.
    pub retention: Option<Interval>,
}

/// What `positions` is after start-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Storage {
    /// A hypertable on `ts`.
    Hypertable {
        /// The extension's version.
        version: String,
        /// The compression policy in force, if any.
        compress_after: Option<Interval>,
        /// The retention policy in force, if any.
        retention: Option<Interval>,
    },
    /// A plain table, and why.
    Plain(PlainReason),
}

/// Why `positions` is a plain table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlainReason {
    /// `TIMESCALEDB=off`.
    Disabled,
    /// The server has no TimescaleDB files.
    NotInstalled,
    /// Installed, but not in `shared_preload_libraries`.
    NotPreloaded,
    /// Loadable, but `processor migrate` has not made `positions` a hypertable yet
    /// (`MIGRATE=off`).
    NotMigrated,
}

impl fmt::Display for PlainReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PlainReason::Disabled => "TIMESCALEDB=off",
            PlainReason::NotInstalled => "the server has no timescaledb extension",
            PlainReason::NotPreloaded => {
                "timescaledb is installed but not in shared_preload_libraries"
            }
            PlainReason::NotMigrated => {
                "MIGRATE=off and processor migrate has not made positions a hypertable yet"
            }
        })
    }
}

/// The remedy logged when the extension is installed but cannot be loaded.
pub const NOT_PRELOADED_REMEDY: &str = "add timescaledb to shared_preload_libraries in \
postgresql.conf (shared_preload_libraries = 'timescaledb'), restart PostgreSQL, then restart the \
processor: positions is converted to a hypertable, its rows migrated";

/// What the catalog says about TimescaleDB, read without loading anything.
struct ServerState {
    available: bool,
    preloaded: bool,
    /// `CREATE EXTENSION` has run in this database.
    created: bool,
}

fn failed(error: &tokio_postgres::Error) -> PostgresError {
    PostgresError::query("migrate", error)
}

async fn server_state(client: &Client) -> Result<ServerState, PostgresError> {
    // Any role can read these: `shared_preload_libraries` itself needs pg_read_all_settings, but
    // the loader's own settings exist only when it was preloaded.
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'),
                    current_setting('timescaledb.max_background_workers', true) IS NOT NULL,
                    EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')",
            &[],
        )
        .await
        .map_err(|e| failed(&e))?;
    Ok(ServerState {
        available: row.get(0),
        preloaded: row.get(1),
        created: row.get(2),
    })
}

/// Whether [`setup`] changes what differs, or only says what it would change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Apply {
    /// Change it (`processor migrate`, and the service under `MIGRATE=auto`).
    Changes,
    /// Change nothing: one WARN per difference (the service under `MIGRATE=off`).
    Nothing,
}

/// Makes `positions` what `settings` ask for, as far as the server allows: reads each setting
/// first and runs DDL only for what differs (so with nothing to change, a role without DDL
/// rights passes). Runs under the migration lock, after the migrations.
pub async fn setup(
    client: &Client,
    settings: &HypertableConfig,
    apply: Apply,
) -> Result<Storage, PostgresError> {
    let plain = |reason| Ok(Storage::Plain(reason));
    if settings.mode == Mode::Off {
        return plain(PlainReason::Disabled);
    }
    let state = server_state(client).await?;
    let refuse = |reason: PlainReason, remedy: &str| {
        if settings.mode == Mode::Require {
            Err(PostgresError::other(
                "migrate",
                format!("TIMESCALEDB=require, but {reason}: {remedy}"),
            ))
        } else {
            Ok(Storage::Plain(reason))
        }
    };
    if !state.available {
        return refuse(
            PlainReason::NotInstalled,
            "install TimescaleDB on the server",
        );
    }
    if !state.preloaded {
        if settings.mode == Mode::Auto {
            // INFO, not WARN: with TIMESCALEDB=auto a plain table is a supported outcome (and a
            // fresh package install leaves the files unloaded); the line says how to get the
            // hypertable for whoever wants it. TIMESCALEDB=require makes it an error below.
            tracing::info!(
                remedy = NOT_PRELOADED_REMEDY,
                "timescaledb is installed but not preloaded; positions stays a plain table"
            );
        }
        return refuse(PlainReason::NotPreloaded, NOT_PRELOADED_REMEDY);
    }
    if !state.created {
        if apply == Apply::Nothing {
            tracing::warn!(
                "timescaledb is loadable but not created in this database; MIGRATE=off leaves \
                 positions a plain table: run processor migrate to make it a hypertable"
            );
            return Ok(Storage::Plain(PlainReason::NotMigrated));
        }
        client
            .batch_execute("CREATE EXTENSION IF NOT EXISTS timescaledb WITH SCHEMA public")
            .await
            .map_err(|e| failed(&e))?;
    }
    let row = client
        .query_one(
            "SELECT quote_ident(n.nspname), e.extversion,
                    coalesce(current_setting('timescaledb.license', true), 'timescale'),
                    (SELECT quote_ident(t.nspname) FROM pg_class c
                       JOIN pg_namespace t ON t.oid = c.relnamespace
                      WHERE c.oid = 'positions'::regclass),
                    (SELECT t.nspname::text FROM pg_class c
                       JOIN pg_namespace t ON t.oid = c.relnamespace
                      WHERE c.oid = 'positions'::regclass)
             FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
             WHERE e.extname = 'timescaledb'",
            &[],
        )
        .await
        .map_err(|e| failed(&e))?;
    let hypertable = Hypertable {
        client,
        apply,
        api: row.get(0),
        table: format!("{}.positions", row.get::<_, String>(3)),
        schema: row.get(4),
    };
    let version: String = row.get(1);
    let license: String = row.get(2);
    if !hypertable.ensure(settings.chunk_interval).await? {
        return Ok(Storage::Plain(PlainReason::NotMigrated));
    }
    let community = license != "apache";
    if !community && (settings.compress_after.is_some() || settings.retention.is_some()) {
        tracing::warn!(
            license,
            "this TimescaleDB is the Apache-only edition: compression and retention policies need \
             the community edition; they are skipped"
        );
    }
    let compress_after = if community {
        unsupported_is_none(hypertable.compression(settings.compress_after).await)?
    } else {
        None
    };
    let retention = if community {
        unsupported_is_none(hypertable.retention(settings.retention).await)?
    } else {
        None
    };
    Ok(Storage::Hypertable {
        version,
        compress_after,
        retention,
    })
}

/// `positions` on a server with the extension created.
struct Hypertable<'a> {
    client: &'a Client,
    /// Whether differences are changed or only reported.
    apply: Apply,
    /// The extension's schema, quoted: its functions are called qualified (the service's own
    /// schema comes first on its search path, and need not hold them).
    api: String,
    /// `schema.positions`, quoted.
    table: String,
    /// The table's schema, unquoted (for the information views).
    schema: String,
}

impl Hypertable<'_> {
    async fn query_opt_bool(&self, sql: &str) -> Result<Option<bool>, PostgresError> {
        let row = self
            .client
            .query_opt(sql, &[&self.schema])
            .await
            .map_err(|e| failed(&e))?;
        Ok(row.map(|row| row.get(0)))
    }

    /// Runs `sql`, which does `what` (logged at INFO); under [`Apply::Nothing`], only says
    /// (WARN) that it differs. `true` when it ran.
    async fn execute(&self, what: &str, sql: &str) -> Result<bool, PostgresError> {
        if self.apply == Apply::Nothing {
            tracing::warn!(
                change = what,
                "a TimescaleDB setting of positions differs from the configuration; MIGRATE=off \
                 leaves it: run processor migrate to apply it"
            );
            return Ok(false);
        }
        tracing::info!("{what}");
        self.client
            .batch_execute(sql)
            .await
            .map_err(|e| failed(&e))?;
        Ok(true)
    }

    /// A hypertable on `ts` with chunks of `interval` from now on; `false` when it is not a
    /// hypertable (and [`Apply::Nothing`] left it so).
    async fn ensure(&self, interval: Interval) -> Result<bool, PostgresError> {
        // `time_interval = wanted` compares intervals as values ('1 day' = '24 hours').
        let same = self
            .query_opt_bool(&format!(
                "SELECT time_interval = {} FROM timescaledb_information.dimensions
                 WHERE hypertable_schema = $1 AND hypertable_name = 'positions'
                   AND column_name = 'ts'",
                sql(interval)
            ))
            .await?;
        match same {
            None => {
                self.execute(
                    &format!("making positions a hypertable with chunks of {interval} (existing rows are moved into chunks)"),
                    &format!(
                    // no default index on ts: the primary key serves the per-device queries, and a
                    // second btree would cost every row about a fifth of its database CPU
                    // (docs/operating.md, "Indexes")
                    "SELECT {api}.create_hypertable('{table}', {api}.by_range('ts', {interval}), \
                     migrate_data => true, if_not_exists => true, create_default_indexes => false)",
                    api = self.api,
                    table = self.table.replace('\'', "''"),
                    interval = sql(interval)
                ))
                .await
            }
            Some(false) => {
                self.execute(
                    &format!("chunk interval set to {interval}; it applies to chunks created from now on"),
                    &format!(
                    "SELECT {api}.set_chunk_time_interval('{table}', {interval})",
                    api = self.api,
                    table = self.table.replace('\'', "''"),
                    interval = sql(interval)
                ))
                .await
                .map(|_| true)
            }
            Some(true) => Ok(true),
        }
    }

    /// Compression segmented by device and ordered by time, with a compress-after policy; returns
    /// the policy in force.
    async fn compression(
        &self,
        after: Option<Interval>,
    ) -> Result<Option<Interval>, PostgresError> {
        let table = self.table.replace('\'', "''");
        if after.is_some() {
            // From TimescaleDB's catalog, not from timescaledb_information's
            // hypertable_columnstore_settings: that view casts every hypertable's name to
            // regclass, which needs USAGE on every schema that has one, so a role with rights on
            // its own schema only failed there with "permission denied for schema <another>".
            let configured = self
                .query_opt_bool(&format!(
                    "SELECT s.segmentby = ARRAY['device_id'] AND s.orderby = ARRAY['ts']
                            AND s.orderby_desc = ARRAY[true]
                     FROM _timescaledb_catalog.compression_settings s
                     WHERE s.relid = '{table}'::regclass
                       AND EXISTS (SELECT 1 FROM timescaledb_information.hypertables h
                                    WHERE h.hypertable_schema = $1
                                      AND h.hypertable_name = 'positions'
                                      AND h.compression_enabled)"
                ))
                .await?;
            if configured != Some(true) {
                self.execute(
                    "enabling compression of positions, segmented by device_id, ordered by ts DESC",
                    &format!(
                        "ALTER TABLE {} SET (timescaledb.enable_columnstore = true, \
                     timescaledb.segmentby = 'device_id', timescaledb.orderby = 'ts DESC')",
                        self.table
                    ),
                )
                .await?;
            }
        }
        let policy = self
            .policy("policy_compression", "compress_after", after)
            .await?;
        if policy == Change::Remove {
            self.execute(
                "compression policy removed (TIMESCALEDB_COMPRESS_AFTER=off); compressed chunks stay compressed",
                &format!(
                    "CALL {}.remove_columnstore_policy('{table}', if_exists => true)",
                    self.api
                ),
            )
            .await?;
        }
        if let (Some(after), Change::Add | Change::Replace) = (after, policy) {
            let remove = if policy == Change::Replace {
                format!(
                    "CALL {}.remove_columnstore_policy('{table}', if_exists => true); ",
                    self.api
                )
            } else {
                String::new()
            };
            self.execute(
                &format!("compression policy set: chunks older than {after} are compressed"),
                &format!(
                    "{remove}CALL {}.add_columnstore_policy('{table}', after => {})",
                    self.api,
                    sql(after)
                ),
            )
            .await?;
        }
        Ok(after)
    }

    /// A retention policy dropping chunks older than `after`; returns the policy in force.
    async fn retention(&self, after: Option<Interval>) -> Result<Option<Interval>, PostgresError> {
        let table = self.table.replace('\'', "''");
        let policy = self.policy("policy_retention", "drop_after", after).await?;
        let remove = format!(
            "SELECT {}.remove_retention_policy('{table}', if_exists => true)",
            self.api
        );
        if policy == Change::Remove {
            self.execute(
                "retention policy removed (TIMESCALEDB_RETENTION=off): chunks are kept",
                &remove,
            )
            .await?;
        }
        if let (Some(after), Change::Add | Change::Replace) = (after, policy) {
            let remove = if policy == Change::Replace {
                format!("{remove}; ")
            } else {
                String::new()
            };
            self.execute(
                &format!("retention policy set: chunks older than {after} are dropped"),
                &format!(
                    "{remove}SELECT {}.add_retention_policy('{table}', drop_after => {})",
                    self.api,
                    sql(after)
                ),
            )
            .await?;
        }
        Ok(after)
    }

    /// How the job `proc` (its `key` in the config) must change to be `wanted`.
    async fn policy(
        &self,
        proc: &str,
        key: &str,
        wanted: Option<Interval>,
    ) -> Result<Change, PostgresError> {
        let wanted_sql = wanted.map_or_else(|| "NULL::interval".to_owned(), sql);
        let same = self
            .client
            .query_opt(
                &format!(
                    "SELECT (config->>'{key}')::interval = {wanted_sql}
                     FROM timescaledb_information.jobs
                     WHERE proc_name = '{proc}' AND hypertable_schema = $1
                       AND hypertable_name = 'positions'
                     LIMIT 1"
                ),
                &[&self.schema],
            )
            .await
            .map_err(|e| failed(&e))?
            .map(|row| row.get::<_, Option<bool>>(0));
        Ok(match (same, wanted) {
            (None, None) => Change::Keep,
            (None, Some(_)) => Change::Add,
            (Some(_), None) => Change::Remove,
            (Some(Some(true)), Some(_)) => Change::Keep,
            (Some(_), Some(_)) => Change::Replace,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    Keep,
    Add,
    Remove,
    Replace,
}

/// A feature the server's edition lacks (SQLSTATE 0A000, e.g. a license that does not match
/// what `timescaledb.license` said) is logged and skipped; other errors stay errors.
fn unsupported_is_none(
    result: Result<Option<Interval>, PostgresError>,
) -> Result<Option<Interval>, PostgresError> {
    match result {
        Err(error) if error.code() == Some(SqlState::FEATURE_NOT_SUPPORTED.code()) => {
            tracing::warn!(error = %error, "this TimescaleDB lacks the feature; skipped");
            Ok(None)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_parse_and_render_as_sql() {
        assert_eq!("7d".parse::<Interval>(), Ok(Interval::days(7)));
        assert_eq!(
            "12h".parse::<Interval>().map(sql),
            Ok("'12 hours'::interval".to_owned())
        );
        assert_eq!(
            "2w".parse::<Interval>().map(|i| i.to_string()),
            Ok("2 weeks".to_owned())
        );
        for bad in [
            "",
            "d",
            "0d",
            "7",
            "7 days",
            "7y",
            "-1d",
            "1.5d",
            "7d'; DROP",
        ] {
            assert!(bad.parse::<Interval>().is_err(), "{bad:?}");
        }
        assert_eq!("off".parse::<Optional>(), Ok(Optional(None)));
        assert_eq!(
            "90d".parse::<Optional>(),
            Ok(Optional(Some(Interval::days(90))))
        );
    }
}
