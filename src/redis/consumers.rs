//! Consumers that are gone: deleted from the group once nothing is pending in them.
//!
//! Every consumer name that ever read stays in the group until it is deleted, and with a pod's
//! name as `CONSUMER_NAME` every rolling deploy adds new ones: a year of them makes
//! `XINFO CONSUMERS` useless to an operator, and every claim pass walks past them. So a process
//! that drained cleanly (everything it read committed and acknowledged) deletes its own consumers,
//! and every replica sweeps consumers idle longer than `CONSUMER_SWEEP_IDLE_SECS` with nothing
//! pending. Both go through one script that checks "nothing pending" and deletes atomically: a
//! consumer holding entries is never deleted, only claimed from. Deleting a live consumer that
//! was merely idle is harmless: its next `XREADGROUP` creates it again.

use std::sync::LazyLock;
use std::time::Duration;

use redis::aio::ConnectionLike;

use super::RedisError;

static SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("consumers.lua")));

/// Deletes the consumers of `group` on `stream` that have nothing pending and have been idle at
/// least `min_idle`, of `only` (every consumer when `only` is empty); returns their names.
pub async fn delete_idle_consumers<C: ConnectionLike + Send>(
    conn: &mut C,
    stream: &str,
    group: &str,
    min_idle: Duration,
    only: &[String],
) -> Result<Vec<String>, RedisError> {
    let mut invocation = SCRIPT.key(stream);
    invocation
        .arg(group)
        .arg(u64::try_from(min_idle.as_millis()).unwrap_or(u64::MAX));
    for name in only {
        invocation.arg(name);
    }
    invocation
        .invoke_async(conn)
        .await
        .map_err(|e| RedisError::command("delete_consumers", &e))
}
