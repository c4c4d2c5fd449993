//! Dead letters: a refused entry is copied to the dead-letter stream and only then acknowledged,
//! atomically on the server (one Lua script), so it is never acknowledged without its dead
//! letter, nor dead-lettered and left pending.
//!
//! A script rather than MULTI/EXEC: EXEC does not roll back, so an XADD failing at run time
//! (e.g. the key holds another type) would still let the XACK in the same transaction run.
//!
//! # Why an entry refused inside the dataflow is acknowledged twice
//! Entries refused by the codec or by the database are dead-lettered by the sinks, and the same
//! ids are acknowledged again by their reader once their epoch commits, like every entry it read.
//! The script's XACK is what makes the dead letter and the acknowledgement one step: a crash
//! between two separate steps would leave the entry pending, redelivered, and dead-lettered a
//! second time. The reader's later XACK of the id is a no-op on the server (it is no longer
//! pending), and it keeps `processor_entries_acked_total` equal to what was read.

use std::sync::LazyLock;

use bytes::Bytes;
use dataflow::StreamId;
use redis::aio::ConnectionLike;

use super::RedisError;

/// Fields the dead-letter writer adds to an entry's own: why, which entry, who, when.
pub const METADATA_FIELDS: [&str; 4] = ["error", "source_id", "consumer", "failed_at"];

/// Field added to an entry sent back from the dead-letter stream: how many times it was.
pub const REDRIVE_COUNT: &str = "redrive_count";

/// Field added to an entry sent back from the dead-letter stream: the dead letter it came from.
pub const REDRIVEN_FROM: &str = "redriven_from";

/// One entry for the dead-letter stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Letter {
    /// The entry's id in the source stream (acknowledged with the dead letter).
    pub id: StreamId,
    /// The fields to keep: the entry's own, or the refused row re-encoded as `payload`.
    pub fields: Vec<(Bytes, Bytes)>,
    /// Why it was refused (the dead letter's `error`).
    pub reason: String,
}

static SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("dead_letter.lua")));

/// Moves each letter to `dead_letter_stream`: its fields, plus `error` (the reason), `source_id`,
/// `consumer` and `failed_at` (RFC 3339); then all are acknowledged in `stream`/`group`.
pub async fn dead_letter<C: ConnectionLike + Send>(
    conn: &mut C,
    stream: &str,
    group: &str,
    dead_letter_stream: &str,
    consumer: &str,
    letters: &[Letter],
) -> Result<(), RedisError> {
    if letters.is_empty() {
        return Ok(());
    }
    let failed_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut invocation = SCRIPT.key(dead_letter_stream);
    invocation.key(stream).arg(group);
    for letter in letters {
        let id = letter.id.to_string();
        let [error, source_id, consumer_field, failed_at_field] = METADATA_FIELDS;
        let extra = [
            (error, letter.reason.clone()),
            (source_id, id.clone()),
            (consumer_field, consumer.to_owned()),
            (failed_at_field, failed_at.clone()),
        ];
        invocation
            .arg(&id)
            .arg(2 * (letter.fields.len() + extra.len()));
        for (field, value) in &letter.fields {
            invocation.arg(field.as_ref()).arg(value.as_ref());
        }
        for (field, value) in extra {
            invocation.arg(field).arg(value);
        }
    }
    invocation
        .invoke_async::<i64>(conn)
        .await
        .map(|_| ())
        .map_err(|e| RedisError::command("dead_letter", &e))
}

/// Fails when `key` exists and is not a stream: the dead letters could never be written there.
pub async fn check_dead_letter_stream<C: ConnectionLike + Send>(
    conn: &mut C,
    key: &str,
) -> Result<(), RedisError> {
    let kind: String = redis::cmd("TYPE")
        .arg(key)
        .query_async(conn)
        .await
        .map_err(|e| RedisError::command("type", &e))?;
    match kind.as_str() {
        "none" | "stream" => Ok(()),
        other => Err(RedisError::Command {
            operation: "type",
            message: format!("DEAD_LETTER_STREAM {key:?} holds a {other}, not a stream"),
            kind: super::Kind::Refused,
        }),
    }
}
