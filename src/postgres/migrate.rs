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

use super::timescale::{self, HypertableConfig, Storage};
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
    timescale: &HypertableConfig,
) -> Result<MigrationReport, PostgresError> {
    let failed = |e: &tokio_postgres::Error| PostgresError::query("migrate", e);
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(|e| failed(&e))?;
    let result = match ensure_schema(client).await {
        Ok(()) => apply_missing(client).await,
        Err(error) => Err(error),
    };
    let result = match result {
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

/// Creates the schema `search_path` selects when it does not exist yet (e.g. one chosen with
/// `options=-csearch_path%3D<schema>` in `DATABASE_URL`): otherwise every `CREATE` would fail
/// with "no schema has been selected to create in", which names no schema.
async fn ensure_schema(client: &Client) -> Result<(), PostgresError> {
    let failed = |e: &tokio_postgres::Error| PostgresError::query("migrate", e);
    let row = client
        .query_one(
            "SELECT current_schema() IS NOT NULL, current_setting('search_path')",
            &[],
        )
        .await
        .map_err(|e| failed(&e))?;
    let (selected, search_path): (bool, String) = (row.get(0), row.get(1));
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
