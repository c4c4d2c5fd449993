//! Schema migrations: numbered SQL files embedded in the binary, applied at start-up, then the
//! TimescaleDB set-up (see `timescale`).
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

use tokio_postgres::Client;

use super::timescale::{self, Settings, Storage};
use super::PostgresError;

/// Arbitrary constant identifying this service's migration lock (`pg_advisory_lock` key).
const MIGRATION_LOCK: i64 = 0x7072_6f63_6573_736f; // "processo"

/// The migrations, in order: (version, name, SQL).
const MIGRATIONS: &[(i32, &str, &str)] = &[
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
/// lock.
pub async fn migrate(
    client: &mut Client,
    timescale: &Settings,
) -> Result<MigrationReport, PostgresError> {
    let failed = |e: &tokio_postgres::Error| PostgresError::query("migrate", e);
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(|e| failed(&e))?;
    let result = match apply_missing(client).await {
        Ok(applied) => timescale::setup(client, timescale)
            .await
            .map(|storage| MigrationReport { applied, storage }),
        Err(error) => Err(error),
    };
    // Unlock even after a failure; a lost connection releases the lock anyway.
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    let report = result?;
    unlocked.map_err(|e| failed(&e))?;
    Ok(report)
}

async fn apply_missing(client: &mut Client) -> Result<Vec<i32>, PostgresError> {
    let failed = |e: &tokio_postgres::Error| PostgresError::query("migrate", e);
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
    let rows = client
        .query("SELECT version FROM schema_migrations", &[])
        .await
        .map_err(|e| failed(&e))?;
    let done: Vec<i32> = rows.iter().map(|row| row.get(0)).collect();
    let mut applied = Vec::new();
    for (version, name, sql) in MIGRATIONS {
        if done.contains(version) {
            continue;
        }
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
