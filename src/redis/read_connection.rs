//! A reader's own connection, for `XREADGROUP` only: plain TCP or TLS, authenticated, its
//! database selected and its name set as redis-rs would, and its replies read by `resp.rs`
//! straight from the socket buffer (see there for why).
//!
//! Everything else (claims, acknowledgements, dead letters, the group) goes through redis-rs.
//! A reader's connection must be its own anyway: a blocking read holds up every other command on
//! a connection.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use redis::ConnectionAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::blocks::Blocks;

use super::resp::{command, parse_read_reply, Frame, ReplyError};
use super::{Kind, ReadBatch, RedisError};

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes per read block: about two replies of `READ_COUNT=1000` entries of 500 bytes. A reply is
/// split off the front of the block and the next one is read into the rest, so a reply is copied
/// only when it straddles two blocks.
const BLOCK: usize = 1024 * 1024;
/// A read needs at least this much room; below it, the next block is taken.
const LOW_WATER: usize = 64 * 1024;

enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// One reader's connection.
pub struct ReadConnection {
    io: Io,
    /// Replies are read into blocks of [`BLOCK`] bytes, reused once their entries are gone.
    buf: Blocks,
    /// Longest wait for a reply (above the read's `BLOCK`).
    timeout: Duration,
}

fn unavailable(operation: &'static str, message: impl Into<String>) -> RedisError {
    RedisError::Command {
        operation,
        message: message.into(),
        kind: Kind::Unavailable,
    }
}

fn server(operation: &'static str, error: ReplyError) -> RedisError {
    match error {
        ReplyError::Server(text) => RedisError::Command {
            operation,
            kind: if text.starts_with("NOGROUP") {
                Kind::NoGroup
            } else if ["LOADING", "TRYAGAIN", "BUSY", "MASTERDOWN", "READONLY"]
                .iter()
                .any(|code| text.starts_with(code))
            {
                Kind::Unavailable
            } else {
                Kind::Refused
            },
            message: text,
        },
        ReplyError::Unexpected(detail) => RedisError::Reply { operation, detail },
    }
}

impl ReadConnection {
    /// Connects as `client` would (address, TLS, user, password, database), trusting `ca_file`
    /// for TLS when given, and names the connection `name`; replies may take up to `timeout`.
    pub async fn open(
        client: &redis::Client,
        ca_file: Option<&Path>,
        name: &str,
        timeout: Duration,
    ) -> Result<Self, RedisError> {
        let info = client.get_connection_info();
        let (host, port, tls) = match info.addr() {
            ConnectionAddr::Tcp(host, port) => (host.as_str(), *port, false),
            ConnectionAddr::TcpTls { host, port, .. } => (host.as_str(), *port, true),
            other => {
                return Err(RedisError::Reply {
                    operation: "connect",
                    detail: format!("{other:?}: a reader connects over TCP or TLS only"),
                })
            }
        };
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host, port)))
            .await
            .map_err(|_| unavailable("connect", "connection attempt timed out"))?
            .map_err(|e| unavailable("connect", crate::redact::redact_error(&e)))?;
        let _ = tcp.set_nodelay(true);
        let io = if tls {
            let config = crate::tls::client_config(ca_file).map_err(|e| RedisError::CaFile {
                path: ca_file.map(|p| p.display().to_string()).unwrap_or_default(),
                reason: e.to_string(),
            })?;
            let server_name =
                rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| {
                    RedisError::Reply {
                        operation: "connect",
                        detail: format!("{host:?} is not a host name for TLS: {e}"),
                    }
                })?;
            let stream = tokio::time::timeout(
                CONNECT_TIMEOUT,
                tokio_rustls::TlsConnector::from(Arc::new(config)).connect(server_name, tcp),
            )
            .await
            .map_err(|_| unavailable("connect", "TLS handshake timed out"))?
            .map_err(|e| RedisError::Command {
                operation: "connect",
                message: format!("TLS: {e}"),
                kind: Kind::Refused,
            })?;
            Io::Tls(Box::new(stream))
        } else {
            Io::Plain(tcp)
        };
        let mut conn = ReadConnection {
            io,
            buf: Blocks::new(BLOCK, LOW_WATER),
            timeout,
        };
        let settings = info.redis_settings();
        if let Some(password) = settings.password() {
            let mut auth: Vec<&[u8]> = vec![b"AUTH"];
            if let Some(user) = settings.username() {
                auth.push(user.as_bytes());
            }
            auth.push(password.as_bytes());
            conn.expect_ok("auth", &auth).await?;
        }
        if settings.db() != 0 {
            let db = settings.db().to_string();
            conn.expect_ok("select", &[b"SELECT", db.as_bytes()])
                .await?;
        }
        conn.expect_ok("connect", &[b"CLIENT", b"SETNAME", name.as_bytes()])
            .await?;
        Ok(conn)
    }

    async fn write(&mut self, operation: &'static str, bytes: &[u8]) -> Result<(), RedisError> {
        let written = match &mut self.io {
            Io::Plain(stream) => stream.write_all(bytes).await,
            Io::Tls(stream) => stream.write_all(bytes).await,
        };
        written.map_err(|e| unavailable(operation, crate::redact::redact_error(&e)))
    }

    /// The next complete reply, taken out of the buffer.
    async fn reply(&mut self, operation: &'static str) -> Result<Bytes, RedisError> {
        let mut frame = Frame::new();
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            if let Some(length) = frame
                .complete(self.buf.filled())
                .map_err(|e| server(operation, e))?
            {
                return Ok(self.buf.split_to(length));
            }
            let buf = self.buf.writable();
            let io = &mut self.io;
            let read = async {
                match io {
                    Io::Plain(stream) => stream.read_buf(buf).await,
                    Io::Tls(stream) => stream.read_buf(buf).await,
                }
            };
            match tokio::time::timeout_at(deadline, read).await {
                Err(_) => return Err(unavailable(operation, "no reply in time")),
                Ok(Err(e)) => return Err(unavailable(operation, crate::redact::redact_error(&e))),
                Ok(Ok(0)) => {
                    return Err(unavailable(operation, "the server closed the connection"))
                }
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Sends a command whose reply must be `+OK`.
    async fn expect_ok(
        &mut self,
        operation: &'static str,
        args: &[&[u8]],
    ) -> Result<(), RedisError> {
        self.write(operation, &command(args)).await?;
        let reply = self.reply(operation).await?;
        match reply.first() {
            Some(b'+') => Ok(()),
            Some(b'-') => Err(server(
                operation,
                ReplyError::Server(
                    String::from_utf8_lossy(
                        reply
                            .get(1..reply.len().saturating_sub(2))
                            .unwrap_or_default(),
                    )
                    .into_owned(),
                ),
            )),
            _ => Err(RedisError::Reply {
                operation,
                detail: format!("{:?} instead of OK", String::from_utf8_lossy(&reply)),
            }),
        }
    }

    /// Sends `XREADGROUP` with `args` and reads its entries.
    pub async fn read_group(&mut self, args: &[&[u8]]) -> Result<ReadBatch, RedisError> {
        self.write("xreadgroup", &command(args)).await?;
        let reply = self.reply("xreadgroup").await?;
        parse_read_reply(reply).map_err(|e| server("xreadgroup", e))
    }
}
