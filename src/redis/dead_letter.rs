//! Dead letters: a refused entry is copied to the dead-letter stream and acknowledged in one
//! MULTI/EXEC, so it is never both lost and acknowledged, nor dead-lettered and left pending.

use redis::aio::ConnectionLike;

use super::RedisError;
use dataflow::operators::BadEntry;

/// Moves `entries` to `dead_letter_stream`: each keeps its original fields and gains `error`
/// (the reason, naming the field), `source_id`, `consumer` and `failed_at` (RFC 3339); all are
/// acknowledged in `stream`/`group` in the same transaction.
pub async fn dead_letter<C: ConnectionLike + Send>(
    conn: &mut C,
    stream: &str,
    group: &str,
    dead_letter_stream: &str,
    consumer: &str,
    entries: &[BadEntry],
) -> Result<(), RedisError> {
    if entries.is_empty() {
        return Ok(());
    }
    let failed_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut pipe = redis::pipe();
    pipe.atomic();
    for bad in entries {
        let xadd = pipe.cmd("XADD").arg(dead_letter_stream).arg("*");
        for (field, value) in &bad.entry.fields {
            xadd.arg(field).arg(value.as_slice());
        }
        xadd.arg("error")
            .arg(bad.error.to_string())
            .arg("source_id")
            .arg(&bad.entry.id)
            .arg("consumer")
            .arg(consumer)
            .arg("failed_at")
            .arg(&failed_at)
            .ignore();
    }
    let ids: Vec<&str> = entries.iter().map(|bad| bad.entry.id.as_str()).collect();
    pipe.cmd("XACK").arg(stream).arg(group).arg(&ids).ignore();
    pipe.query_async::<()>(conn)
        .await
        .map_err(|e| RedisError::command("dead_letter", &e))
}
