//! Opening a PostgreSQL connection; the connection's I/O runs as a task of its own.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use tokio_postgres::config::SslMode;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{Client, Socket};

use super::PostgresError;

/// How long a connection attempt may take unless the connection string says otherwise.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects and spawns the connection driver. When the server goes away the driver ends and the
/// client's next statement fails with a closed-connection error, which writers answer by
/// reconnecting (see `EpochWriter`).
///
/// Unless the connection string says otherwise, a connection attempt gives up after 5 s and a
/// connection whose peer stops answering (a half-open TCP connection after a network failure)
/// is declared dead after 30 s, so a commit never waits on a dead socket for the kernel's
/// default quarter of an hour.
///
/// `sslmode=require` (or libpq's `verify-ca`/`verify-full`) connects over TLS verified by rustls
/// against the system's roots and `ca_file`; otherwise the connection is plain.
pub async fn connect(database_url: &str, ca_file: Option<&Path>) -> Result<Client, PostgresError> {
    let mut config = tokio_postgres::Config::from_str(&crate::tls::normalize_sslmode(database_url))
        .map_err(|e| PostgresError::query("connect", &e))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(Duration::from_secs(30));
    }
    config.keepalives(true);
    config.keepalives_idle(Duration::from_secs(30));
    if config.get_ssl_mode() == SslMode::Require {
        let tls = crate::tls::postgres_connector(ca_file)
            .map_err(|e| PostgresError::other("connect", e.to_string()))?;
        open(&config, tls).await
    } else {
        open(&config, tokio_postgres::NoTls).await
    }
}

/// Whether the connection string's `options` set `jit` (`-c jit=...`, `-cjit=...`,
/// `--jit=...`; parameter names are case-insensitive).
fn sets_jit(config: &tokio_postgres::Config) -> bool {
    config
        .get_options()
        .unwrap_or_default()
        .split_whitespace()
        .map(|token| token.to_ascii_lowercase())
        .any(|token| {
            let token = token.strip_prefix("--").unwrap_or(&token);
            let token = token.strip_prefix("-c").unwrap_or(token);
            token.starts_with("jit=")
        })
}

/// Where `config` connects: `host:port` for each host (a socket directory for a Unix socket),
/// without user or password.
fn address(config: &tokio_postgres::Config) -> String {
    let ports = config.get_ports();
    config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match host {
                tokio_postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
                tokio_postgres::config::Host::Unix(path) => {
                    format!("{}/.s.PGSQL.{port}", path.display())
                }
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Connects with `tls` and drives the connection on a task of its own.
async fn open<T>(config: &tokio_postgres::Config, tls: T) -> Result<Client, PostgresError>
where
    T: MakeTlsConnect<Socket> + 'static,
    T::Stream: Send + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    let (client, connection) = config.connect(tls).await.map_err(|e| {
        let mut error = PostgresError::query("connect", &e);
        error.message = format!("{} (connecting to {})", error.message, address(config));
        error
    })?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(error = %crate::redact::redact_error(&error), "postgres connection ended");
        }
    });
    if !sets_jit(config) {
        without_jit(&client, config).await;
    }
    Ok(client)
}

/// Turns JIT compilation off for the session. Every statement of the service touches a few rows
/// per device, but its arrays of thousands of devices give the planner's first (custom) plans
/// cost estimates above `jit_above_cost`, and compiling one costs PostgreSQL tens to hundreds of
/// milliseconds that the statement never wins back: a newest-first backlog of 500,000 records
/// spent about 1 s of the database's CPU in JIT for the trips writer's reads
/// (`docs/performance.md`). A `SET` after connecting, not a startup option: a pooler may refuse
/// startup options it does not know (PgBouncer's `ignore_startup_parameters`). Where the `SET`
/// fails, or a server that accepted the connection does not answer it within the connect
/// timeout, the session keeps the server's setting: this is a saving, not a requirement, and
/// connecting never waits on it longer than on the connection itself.
async fn without_jit(client: &Client, config: &tokio_postgres::Config) {
    let limit = config
        .get_connect_timeout()
        .copied()
        .unwrap_or(CONNECT_TIMEOUT);
    match tokio::time::timeout(limit, client.batch_execute("SET jit = off")).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::debug!(error = %crate::redact::redact_error(&error), "jit stays as the server sets it");
        }
        Err(_) => tracing::debug!("jit stays as the server sets it: SET jit timed out"),
    }
}
