//! Dead letters: a refused entry is copied to the dead-letter stream and only then acknowledged,
//! atomically on the server (one Lua script), so it is never acknowledged without its dead
//! letter, nor dead-lettered and left pending.
//!
//! A script rather than MULTI/EXEC: EXEC does not roll back, so an XADD failing at run time
//! (e.g. the key holds another type) would still let the XACK in the same transaction run.

use std::sync::LazyLock;

use redis::aio::ConnectionLike;

use super::RedisError;
use dataflow::Entry;

static SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("dead_letter.lua")));

/// Moves each `(entry, reason)` to `dead_letter_stream`: the entry keeps its original fields and
/// gains `error` (the reason), `source_id`, `consumer` and `failed_at` (RFC 3339); then all are
/// acknowledged in `stream`/`group`.
pub async fn dead_letter<C: ConnectionLike + Send>(
    conn: &mut C,
    stream: &str,
    group: &str,
    dead_letter_stream: &str,
    consumer: &str,
    letters: &[(&Entry, String)],
) -> Result<(), RedisError> {
    if letters.is_empty() {
        return Ok(());
    }
    let failed_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut invocation = SCRIPT.key(dead_letter_stream);
    invocation.key(stream).arg(group);
    for (entry, reason) in letters {
        let extra = [
            ("error", reason.clone()),
            ("source_id", entry.id.clone()),
            ("consumer", consumer.to_owned()),
            ("failed_at", failed_at.clone()),
        ];
        invocation
            .arg(&entry.id)
            .arg(2 * (entry.fields.len() + extra.len()));
        for (field, value) in &entry.fields {
            invocation.arg(field).arg(value.as_slice());
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
        other => Err(RedisError::Reply {
            operation: "type",
            detail: format!("DEAD_LETTER_STREAM {key:?} holds a {other}, not a stream"),
        }),
    }
}
