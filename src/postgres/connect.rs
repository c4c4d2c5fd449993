//! Opening a PostgreSQL connection; the connection's I/O runs as a task of its own.

use super::PostgresError;

/// Connects and spawns the connection driver. When the server goes away the driver ends and the
/// client's next statement fails with a closed-connection error, which writers answer by
/// reconnecting (see `RowWriter`).
pub async fn connect(database_url: &str) -> Result<tokio_postgres::Client, PostgresError> {
    let (client, connection) = tokio_postgres::connect(database_url, tokio_postgres::NoTls)
        .await
        .map_err(|e| PostgresError::query("connect", &e))?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(error = %crate::logging::redact_error(&error), "postgres connection ended");
        }
    });
    Ok(client)
}
