//! Redis: the consumer group, reading, acknowledging and dead-lettering.
//!
//! Narrow wrappers whose methods say what they do; the dataflow never holds a connection.
//! Two kinds of connection, because a blocking `XREADGROUP ... BLOCK` holds up every other
//! command on a multiplexed connection: each reader has its own ([`connect::reader_connection`],
//! with a response timeout above `BLOCK`), and acknowledgements and dead letters share a
//! [`redis::aio::ConnectionManager`] that reconnects by itself.

mod claim;
pub mod connect;
mod dead_letter;
mod group;
mod reader;
mod reply;

pub use claim::PoisonSweep;
pub use dead_letter::{check_dead_letter_stream, dead_letter};
pub use group::{ack, adopt_retired_workers, ensure_group};
pub use reader::{ReadBatch, StreamReader};

/// An infrastructure failure talking to Redis (bad entries are not errors: see `DecodeError`).
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// A command failed (connection lost, timeout, server error).
    #[error("redis {operation}: {message}")]
    Command {
        /// The operation, e.g. `xreadgroup`, `xack` (also the metric label).
        operation: &'static str,
        /// The client's message, credentials removed.
        message: String,
        /// Whether the consumer group does not exist (Redis restarted without persistence).
        no_group: bool,
    },
    /// The server answered something this client does not understand.
    #[error("redis {operation}: unexpected reply: {detail}")]
    Reply {
        /// The operation.
        operation: &'static str,
        /// What was unexpected.
        detail: String,
    },
}

impl RedisError {
    pub(crate) fn command(operation: &'static str, error: &redis::RedisError) -> Self {
        RedisError::Command {
            operation,
            message: crate::logging::redact_error(error),
            no_group: error.code() == Some("NOGROUP"),
        }
    }

    /// The operation that failed (metric label).
    pub fn operation(&self) -> &'static str {
        match self {
            RedisError::Command { operation, .. } | RedisError::Reply { operation, .. } => {
                operation
            }
        }
    }

    /// Whether the group is missing and must be created again.
    pub fn is_no_group(&self) -> bool {
        matches!(self, RedisError::Command { no_group: true, .. })
    }
}
