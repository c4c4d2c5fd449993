//! Redis: the consumer group, reading, acknowledging and dead-lettering.
//!
//! Narrow wrappers whose methods say what they do; the dataflow never holds a connection.
//! Two kinds of connection, because a blocking `XREADGROUP ... BLOCK` holds up every other
//! command on a multiplexed connection: each reader has its own (`read_connection.rs`, with a
//! response timeout above `BLOCK`, its replies sliced into entries by `resp.rs` rather than
//! parsed by redis-rs), and claims, acknowledgements and dead letters share a
//! [`redis::aio::ConnectionManager`] that reconnects by itself.

mod backlog;
mod claim;
mod config;
pub mod connect;
mod consumers;
mod dead_letter;
mod group;
mod read_connection;
mod reader;
mod redrive;
mod reply;
mod resp;
mod resume;

pub use backlog::{backlog, Backlog, DELIVERIES_SCAN};
pub use claim::PoisonSweep;
pub use config::{DeadLetterKey, RedisConfig, RedisLink, StreamKey, StreamTrim};
pub use consumers::delete_idle_consumers;
pub use dead_letter::{
    check_dead_letter_stream, dead_letter, Letter, METADATA_FIELDS, REDRIVEN_FROM, REDRIVE_COUNT,
};
pub use group::{ack, adopt_retired_workers, ensure_group, ensure_group_resuming};
pub use reader::{ReadBatch, StreamReader};
pub use redrive::{length, newest_id, read_dead_letters, redrive, trim_before, DeadLetter};
pub use resume::{
    ack_and_locate, group_start, stream_bounds, trim_acknowledged, GroupPosition, ResumePoint,
    StartCase,
};

use crate::retry::{Class, Failure, System};

/// An infrastructure failure talking to Redis (bad entries are not errors: see `DecodeError`).
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// A command failed (connection lost, timeout, server error).
    #[error("redis {operation}: {message}")]
    Command {
        /// The command, e.g. `xreadgroup`, `xack` (also the metric label).
        operation: &'static str,
        /// The client's message, credentials removed.
        message: String,
        /// What kind of failure it is.
        kind: Kind,
    },
    /// The server answered something this client does not understand.
    #[error("redis {operation}: unexpected reply: {detail}")]
    Reply {
        /// The command.
        operation: &'static str,
        /// What was unexpected.
        detail: String,
    },
    /// `REDIS_CA_FILE` cannot be read.
    #[error("REDIS_CA_FILE {path}: {reason}")]
    CaFile {
        /// The file.
        path: String,
        /// Why it cannot be read.
        reason: String,
    },
}

/// What a failed command says about the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The connection, a timeout, or the server busy (`LOADING`, `TRYAGAIN`, `BUSY`, a failover's
    /// `READONLY` or `MASTERDOWN`): it passes.
    Unavailable,
    /// `NOGROUP`: the consumer group is gone (Redis restarted without persistence).
    NoGroup,
    /// Anything else the server refused (`WRONGTYPE`, `NOPERM`, a wrong password): an operator
    /// has to act.
    Refused,
}

impl RedisError {
    pub(crate) fn command(operation: &'static str, error: &redis::RedisError) -> Self {
        RedisError::Command {
            operation,
            message: crate::redact::redact_error(error),
            kind: kind_of(error),
        }
    }

    /// Whether the group is missing and must be created again.
    pub fn is_no_group(&self) -> bool {
        matches!(
            self,
            RedisError::Command {
                kind: Kind::NoGroup,
                ..
            }
        )
    }
}

fn kind_of(error: &redis::RedisError) -> Kind {
    const BUSY: [&str; 7] = [
        "LOADING",
        "TRYAGAIN",
        "BUSY",
        "MASTERDOWN",
        "READONLY",
        "CLUSTERDOWN",
        "NOREPLICAS",
    ];
    match error.code() {
        Some("NOGROUP") => Kind::NoGroup,
        Some(code) if BUSY.contains(&code) => Kind::Unavailable,
        _ if error.is_io_error()
            || error.is_timeout()
            || error.is_connection_dropped()
            || error.is_connection_refusal() =>
        {
            Kind::Unavailable
        }
        _ => Kind::Refused,
    }
}

impl Failure for RedisError {
    fn class(&self) -> Class {
        match self {
            RedisError::Command {
                kind: Kind::Unavailable | Kind::NoGroup,
                ..
            } => Class::Transient,
            RedisError::Command {
                kind: Kind::Refused,
                ..
            }
            | RedisError::Reply { .. }
            | RedisError::CaFile { .. } => Class::Stalled,
        }
    }

    fn system(&self) -> System {
        System::Redis
    }

    fn command(&self) -> &'static str {
        match self {
            RedisError::Command { operation, .. } | RedisError::Reply { operation, .. } => {
                operation
            }
            RedisError::CaFile { .. } => "connect",
        }
    }
}
