//! The rights the service's role needs on the tables it reads and writes, checked once at
//! start-up: a role that lacks one is told which (`INSERT on positions`) before it reads a single
//! entry, instead of every epoch's commit failing on it later. Each table's module declares what
//! its statements need ([`Grant`]); `docs/operating.md` gives the `GRANT` lines.

use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use super::PostgresError;

/// The privileges one table's statements need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The table (resolved through `search_path`, as the statements resolve it).
    pub table: &'static str,
    /// `SELECT`, `INSERT`, `UPDATE`, `DELETE`.
    pub privileges: &'static [&'static str],
}

/// `schema_migrations`: read at every start.
pub const SCHEMA_MIGRATIONS: Grant = Grant {
    table: "schema_migrations",
    privileges: &["SELECT"],
};

/// The privileges in `grants` this role lacks, as `INSERT on positions` (or `positions (no such
/// table)`).
pub async fn missing(client: &Client, grants: &[Grant]) -> Result<Vec<String>, PostgresError> {
    let (mut tables, mut privileges) = (Vec::new(), Vec::new());
    for grant in grants {
        for privilege in grant.privileges {
            tables.push(grant.table);
            privileges.push(*privilege);
        }
    }
    let rows = client
        .query(
            "SELECT t, p, to_regclass(t) IS NULL
             FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS n(t, p, i)
             WHERE to_regclass(t) IS NULL OR NOT has_table_privilege(to_regclass(t), p)
             ORDER BY i",
            &[&tables, &privileges],
        )
        .await
        .map_err(|e| PostgresError::query("migrate", &e))?;
    let mut lacking: Vec<String> = Vec::new();
    for row in rows {
        let (table, privilege, absent): (String, String, bool) =
            (row.get(0), row.get(1), row.get(2));
        let said = if absent {
            format!("{table} (no such table in search_path)")
        } else {
            format!("{privilege} on {table}")
        };
        if !lacking.contains(&said) {
            lacking.push(said);
        }
    }
    Ok(lacking)
}

/// Fails, naming every privilege of `grants` this role lacks and the fix, unless it has them
/// all.
pub async fn check(client: &Client, grants: &[Grant]) -> Result<(), PostgresError> {
    let lacking = missing(client, grants).await?;
    if lacking.is_empty() {
        return Ok(());
    }
    Err(PostgresError::needs_operator(
        "migrate",
        SqlState::INSUFFICIENT_PRIVILEGE.code(),
        format!(
            "this role lacks {}: grant them (docs/operating.md, \"Privileges\"); this service \
             continues by itself once they are",
            lacking.join(", ")
        ),
    ))
}
