//! Schema migrations: numbered SQL files embedded in the binary, applied by `processor migrate`
//! (and at the service's start under `MIGRATE=auto`), then the TimescaleDB set-up (see
//! `timescale`).
//!
//! Whatever is already applied is only read: with nothing missing no DDL runs, so a service
//! whose role holds only DML rights starts (least privilege: the schema's owner runs
//! `processor migrate`, the service writes). Under `MIGRATE=off` the service never changes the
//! schema; it checks that every migration is applied and waits, with one ERROR naming what is
//! missing and the command that fixes it, until it is. Either way it then checks its role's
//! rights on the tables it writes ([`super::privileges`]), so a missing `GRANT` is named at
//! start-up, not by the first write.
//!
//! Several replicas may start at once, so the whole run holds a session-level advisory lock:
//! the first applies what is missing, the others wait and then find nothing to do. Each file runs
//! in its own transaction together with its row in `schema_migrations`, so a crash mid-way leaves
//! either all of a migration or none of it. Unqualified names resolve through `search_path`,
//! which lets tests (and multi-tenant deployments) keep separate schemas.
//!
//! Version 2 (`0002_hypertable`) is retired: it made `positions` a hypertable from a PL/pgSQL
//! block, which could not survive a server where the extension is installed but not preloaded
//! (a FATAL error ends the session). Servers that applied it keep its row; the hypertable is now
//! the start-up step's business, which also applies the settings on every start.

use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use super::config::{Migrate, PostgresConfig};
use super::offsets;
use super::privileges;
use super::tables::{self, Outputs};
use super::timescale::{self, Apply, HypertableConfig, Storage};
use super::PostgresError;

/// What fixes a schema the service may not change: the one command to run.
pub const MIGRATE_REMEDY: &str =
    "run `processor migrate` with a role that may change the schema (its owner); this service \
     continues by itself once it has";

/// Arbitrary constant identifying this service's migration lock (`pg_advisory_lock` key).
const MIGRATION_LOCK: i64 = 0x7072_6f63_6573_736f; // "processo"

/// A migration: (version, name, SQL).
type Migration = (i32, &'static str, &'static str);

/// The migrations, in order.
const MIGRATIONS: &[Migration] = &[
    (
        1,
        "0001_positions",
        include_str!("../../migrations/0001_positions.sql"),
    ),
    (
        3,
        "0003_device_latest",
        include_str!("../../migrations/0003_device_latest.sql"),
    ),
    (
        4,
        "0004_stream_offsets",
        include_str!("../../migrations/0004_stream_offsets.sql"),
    ),
    (
        5,
        "0005_trips",
        include_str!("../../migrations/0005_trips.sql"),
    ),
    (
        6,
        "0006_device_collation",
        include_str!("../../migrations/0006_device_collation.sql"),
    ),
    (
        7,
        "0007_trip_writer",
        include_str!("../../migrations/0007_trip_writer.sql"),
    ),
];

/// What `migrate` found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// Versions applied by this call.
    pub applied: Vec<i32>,
    /// What `positions` is: a hypertable (with its policies) or a plain table, and why.
    pub storage: Storage,
}

/// Applies every migration not yet applied, then the TimescaleDB settings, under the advisory
/// lock (two runs at once are safe: the second finds nothing to do). `processor migrate`.
pub async fn migrate(
    client: &mut Client,
    timescale: &HypertableConfig,
) -> Result<MigrationReport, PostgresError> {
    let failed = |e: &tokio_postgres::Error| PostgresError::query("migrate", e);
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(|e| failed(&e))?;
    let result = apply(client, timescale).await;
    // Unlock even after a failure; a lost connection releases the lock anyway.
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    let report = result?;
    unlocked.map_err(|e| failed(&e))?;
    Ok(report)
}

async fn apply(
    client: &mut Client,
    timescale: &HypertableConfig,
) -> Result<MigrationReport, PostgresError> {
    ensure_schema(client).await?;
    let missing = missing(client).await?;
    let applied = apply_missing(client, &missing)
        .await
        .map_err(|error| not_applied(&missing, error))?;
    let storage = timescale::setup(client, timescale, Apply::Changes).await?;
    Ok(MigrationReport { applied, storage })
}

/// The service's start: by `config.migrate`, apply what is missing (as [`migrate`]) or only
/// check that nothing is; then check that the role holds what the service's statements need on
/// the tables `outputs` turns on. A schema this role may not change, a migration not applied, a
/// right not granted: one error naming it and the remedy.
pub async fn prepare(
    client: &mut Client,
    config: &PostgresConfig,
    outputs: Outputs,
) -> Result<MigrationReport, PostgresError> {
    let report = match config.migrate {
        Migrate::Auto => migrate(client, &config.timescale())
            .await
            .map_err(|error| {
                if error.code() == Some(SqlState::INSUFFICIENT_PRIVILEGE.code()) {
                    error.with_remedy(MIGRATE_REMEDY)
                } else {
                    error
                }
            })?,
        Migrate::Off => check(client, &config.timescale()).await?,
    };
    let mut grants = tables::grants(outputs);
    grants.extend([privileges::SCHEMA_MIGRATIONS, offsets::GRANT]);
    privileges::check(client, &grants).await?;
    Ok(report)
}

/// `MIGRATE=off`: every migration must be applied already; the TimescaleDB settings are read
/// and any difference is logged, not changed.
async fn check(
    client: &Client,
    timescale: &HypertableConfig,
) -> Result<MigrationReport, PostgresError> {
    if !schema_selected(client).await?.0 {
        return Err(PostgresError::needs_operator(
            "migrate",
            SqlState::INSUFFICIENT_PRIVILEGE.code(),
            format!(
                "search_path names no schema this role may use (MIGRATE=off): {MIGRATE_REMEDY}, \
                 and GRANT USAGE ON SCHEMA to this role"
            ),
        ));
    }
    let missing = missing(client).await?;
    if !missing.is_empty() {
        return Err(PostgresError::needs_operator(
            "migrate",
            SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE.code(),
            format!(
                "{} not applied (MIGRATE=off): {MIGRATE_REMEDY}",
                describe(&missing)
            ),
        ));
    }
    let storage = timescale::setup(client, timescale, Apply::Nothing).await?;
    Ok(MigrationReport {
        applied: Vec::new(),
        storage,
    })
}

/// The migrations `schema_migrations` does not list (all of them when it does not exist).
async fn missing(client: &Client) -> Result<Vec<Migration>, PostgresError> {
    let failed = |e: &tokio_postgres::Error| PostgresError::query("migrate", e);
    let exists: bool = client
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
        .await
        .map_err(|e| failed(&e))?
        .get(0);
    let done: Vec<i32> = if exists {
        client
            .query("SELECT version FROM schema_migrations", &[])
            .await
            .map_err(|e| failed(&e))?
            .iter()
            .map(|row| row.get(0))
            .collect()
    } else {
        Vec::new()
    };
    Ok(MIGRATIONS
        .iter()
        .filter(|(version, _, _)| !done.contains(version))
        .copied()
        .collect())
}

/// `migrations 3 (0003_device_latest), 4 (0004_stream_offsets) are` / `migration 3 (...) is`.
fn describe(missing: &[Migration]) -> String {
    let names: Vec<String> = missing
        .iter()
        .map(|(version, name, _)| format!("{version} ({name})"))
        .collect();
    match names.as_slice() {
        [one] => format!("migration {one} is"),
        _ => format!("migrations {} are", names.join(", ")),
    }
}

/// A failure while applying `missing`, said as what is not applied.
fn not_applied(missing: &[Migration], error: PostgresError) -> PostgresError {
    PostgresError {
        message: format!(
            "{} not applied, and applying failed: {}",
            describe(missing),
            error.message
        ),
        ..error
    }
}

/// Creates the schema `search_path` selects when it does not exist yet (e.g. one chosen with
/// `options=-csearch_path%3D<schema>` in `DATABASE_URL`): otherwise every `CREATE` would fail
/// with "no schema has been selected to create in", which names no schema.
async fn ensure_schema(client: &Client) -> Result<(), PostgresError> {
    let failed = |e: &tokio_postgres::Error| PostgresError::query("migrate", e);
    let (selected, search_path) = schema_selected(client).await?;
    if selected {
        return Ok(());
    }
    let Some(schema) = first_schema(&search_path) else {
        return Err(PostgresError::other(
            "migrate",
            format!(
                "search_path ({search_path}) names no schema to create the tables in:                  set one in DATABASE_URL (options=-csearch_path%3D<schema>)"
            ),
        ));
    };
    let quoted = format!("\"{}\"", schema.replace('"', "\"\""));
    client
        .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {quoted}"))
        .await
        .map_err(|e| failed(&e))?;
    tracing::info!(schema = %schema, "the schema named by search_path did not exist; created it");
    Ok(())
}

/// Whether `search_path` selects a schema this role may use, and `search_path`.
async fn schema_selected(client: &Client) -> Result<(bool, String), PostgresError> {
    let row = client
        .query_one(
            "SELECT current_schema() IS NOT NULL, current_setting('search_path')",
            &[],
        )
        .await
        .map_err(|e| PostgresError::query("migrate", &e))?;
    Ok((row.get(0), row.get(1)))
}

/// The first schema `search_path` names, other than `$user`.
fn first_schema(search_path: &str) -> Option<String> {
    search_path
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty() && *name != "\"$user\"" && *name != "$user")
        .map(|name| {
            name.strip_prefix('"')
                .and_then(|inner| inner.strip_suffix('"'))
                .map(|inner| inner.replace("\"\"", "\""))
                .unwrap_or_else(|| name.to_lowercase())
        })
        .next()
}

async fn apply_missing(
    client: &mut Client,
    missing: &[Migration],
) -> Result<Vec<i32>, PostgresError> {
    let failed = |e: &tokio_postgres::Error| PostgresError::query("migrate", e);
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version    integer     PRIMARY KEY,
                name       text        NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )",
        )
        .await
        .map_err(|e| failed(&e))?;
    let mut applied = Vec::new();
    for (version, name, sql) in missing {
        let tx = client.transaction().await.map_err(|e| failed(&e))?;
        tx.batch_execute(sql).await.map_err(|e| failed(&e))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[version, name],
        )
        .await
        .map_err(|e| failed(&e))?;
        tx.commit().await.map_err(|e| failed(&e))?;
        tracing::info!(version, name, "migration applied");
        applied.push(*version);
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::first_schema;

    #[test]
    fn the_schema_to_create_is_the_first_one_search_path_names() {
        assert_eq!(first_schema("tenant_a"), Some("tenant_a".to_owned()));
        assert_eq!(first_schema("\"$user\", Fleet"), Some("fleet".to_owned()));
        assert_eq!(
            first_schema("\"My \"\"Odd\"\" One\", public"),
            Some("My \"Odd\" One".to_owned())
        );
        assert_eq!(first_schema("\"$user\""), None);
        assert_eq!(first_schema(""), None);
    }
}
