//! Opening Redis connections with timeouts that fit their use.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::RedisError;

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Response timeout for short commands (XACK, the dead-letter script, claims).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// The client for `url` (validated at start-up). A `rediss://` URL verifies the server's
/// certificate against the system's roots, or against `ca_file` when given.
pub fn client(url: &str, ca_file: Option<&std::path::Path>) -> Result<redis::Client, RedisError> {
    crate::tls::install_provider();
    match ca_file {
        Some(path) if url.starts_with("rediss://") => {
            let root_cert = std::fs::read(path).map_err(|e| RedisError::CaFile {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            redis::Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root_cert),
                },
            )
            .map_err(|e| RedisError::command("connect", &e))
        }
        _ => redis::Client::open(url).map_err(|e| RedisError::command("connect", &e)),
    }
}

/// The shared connection for acknowledgements and dead letters; it reconnects in the
/// background after a drop (the failed command itself returns an error: callers retry).
pub async fn command_connection(client: &redis::Client) -> Result<ConnectionManager, RedisError> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(COMMAND_TIMEOUT))
        .set_number_of_retries(2);
    client
        .get_connection_manager_with_config(config)
        .await
        .map_err(|e| {
            let mut error = RedisError::command("connect", &e);
            if let RedisError::Command { message, .. } = &mut error {
                // the address, so that the line says where it tried (never credentials: the
                // address holds none)
                message.push_str(&format!(
                    " (connecting to {})",
                    client.get_connection_info().addr()
                ));
            }
            error
        })
}
