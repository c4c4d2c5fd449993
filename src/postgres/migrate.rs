//! Schema migrations: numbered SQL files embedded in the binary, applied at start-up.
//!
//! Several replicas may start at once, so the whole run holds a session-level advisory lock:
//! the first applies what is missing, the others wait and then find nothing to do. Each file runs
//! in its own transaction together with its row in `schema_migrations`, so a crash mid-way leaves
//! either all of a migration or none of it. Unqualified names resolve through `search_path`,
//! which lets tests (and multi-tenant deployments) keep separate schemas.

use tokio_postgres::Client;

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
        2,
        "0002_hypertable",
        include_str!("../../migrations/0002_hypertable.sql"),
    ),
];

/// What `migrate` found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// Versions applied by this call.
    pub applied: Vec<i32>,
    /// Whether `positions` is a TimescaleDB hypertable (else a plain table).
    pub hypertable: bool,
}

/// Applies every migration not yet applied, under the advisory lock.
pub async fn migrate(client: &mut Client) -> Result<MigrationReport, PostgresError> {
    let failed = |e: &tokio_postgres::Error| PostgresError::query("migrate", e);
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(|e| failed(&e))?;
    let result = apply_missing(client).await;
    // Unlock even after a failure; a lost connection releases the lock anyway.
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    let applied = result?;
    unlocked.map_err(|e| failed(&e))?;
    let hypertable = is_hypertable(client).await?;
    Ok(MigrationReport {
        applied,
        hypertable,
    })
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

/// Whether `positions` (as `search_path` resolves it) is a hypertable.
async fn is_hypertable(client: &Client) -> Result<bool, PostgresError> {
    let failed = |e: &tokio_postgres::Error| PostgresError::query("migrate", e);
    let installed: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')",
            &[],
        )
        .await
        .map_err(|e| failed(&e))?
        .get(0);
    if !installed {
        return Ok(false);
    }
    let row = client
        .query_one(
            "SELECT EXISTS (
                SELECT 1 FROM timescaledb_information.hypertables h
                WHERE h.hypertable_name = 'positions'
                  AND h.hypertable_schema = (
                      SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                      WHERE c.oid = 'positions'::regclass))",
            &[],
        )
        .await
        .map_err(|e| failed(&e))?;
    Ok(row.get(0))
}
