//! The consumer group: created when missing, and the acknowledgement that ends an entry's life.

use redis::aio::ConnectionLike;

use super::RedisError;

/// Creates the group (and the stream, MKSTREAM) unless it exists. `start_id` is where a new
/// group begins: `0` takes the whole backlog, so entries published before the first start are
/// not skipped. An existing group (BUSYGROUP) is left as it is.
pub async fn ensure_group<C: ConnectionLike + Send>(
    conn: &mut C,
    stream: &str,
    group: &str,
    start_id: &str,
) -> Result<bool, RedisError> {
    let created: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg(group)
        .arg(start_id)
        .arg("MKSTREAM")
        .query_async(conn)
        .await;
    match created {
        Ok(()) => Ok(true),
        Err(error) if error.code() == Some("BUSYGROUP") => Ok(false),
        Err(error) => Err(RedisError::command("xgroup_create", &error)),
    }
}

/// Acknowledges `ids` in the group; returns how many were still pending. Acknowledging an id
/// twice is harmless (the second XACK counts 0), which is what makes retries safe.
pub async fn ack<C: ConnectionLike + Send>(
    conn: &mut C,
    stream: &str,
    group: &str,
    ids: &[String],
) -> Result<u64, RedisError> {
    if ids.is_empty() {
        return Ok(0);
    }
    redis::cmd("XACK")
        .arg(stream)
        .arg(group)
        .arg(ids)
        .query_async(conn)
        .await
        .map_err(|e| RedisError::command("xack", &e))
}
