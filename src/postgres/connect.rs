//! Opening a PostgreSQL connection; the connection's I/O runs as a task of its own.

use std::str::FromStr;
use std::time::Duration;

use super::PostgresError;

/// Connects and spawns the connection driver. When the server goes away the driver ends and the
/// client's next statement fails with a closed-connection error, which writers answer by
/// reconnecting (see `RowWriter`).
///
/// Unless the connection string says otherwise, a connection attempt gives up after 5 s and a
/// connection whose peer stops answering (a half-open TCP connection after a network failure)
/// is declared dead after 30 s, so a commit never waits on a dead socket for the kernel's
/// default quarter of an hour.
pub async fn connect(database_url: &str) -> Result<tokio_postgres::Client, PostgresError> {
    let mut config = tokio_postgres::Config::from_str(database_url)
        .map_err(|e| PostgresError::query("connect", &e))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(5));
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(Duration::from_secs(30));
    }
    config.keepalives(true);
    config.keepalives_idle(Duration::from_secs(30));
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| PostgresError::query("connect", &e))?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(error = %crate::logging::redact_error(&error), "postgres connection ended");
        }
    });
    Ok(client)
}
