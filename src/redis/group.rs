//! The consumer group: created when missing, and the acknowledgement that ends an entry's life.

use dataflow::StreamId;
use redis::aio::ConnectionLike;

use super::resume::{group_start, stream_bounds, StartCase};
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

/// Creates the group unless it exists, where [`group_start`] says given the resume `point` and
/// the stream's entries; returns the start and why, when it created the group.
pub async fn ensure_group_resuming<C: ConnectionLike + Send>(
    conn: &mut C,
    stream: &str,
    group: &str,
    point: Option<StreamId>,
    configured: &str,
) -> Result<Option<(String, StartCase)>, RedisError> {
    let bounds = stream_bounds(conn, stream).await?;
    let (start, case) = group_start(point, bounds, configured);
    Ok(ensure_group(conn, stream, group, &start)
        .await?
        .then_some((start, case)))
}

/// Acknowledges `ids` in the group; returns how many were still pending. Acknowledging an id
/// twice is harmless (the second XACK counts 0), which is what makes retries safe.
pub async fn ack<C: ConnectionLike + Send>(
    conn: &mut C,
    stream: &str,
    group: &str,
    ids: &[StreamId],
) -> Result<u64, RedisError> {
    if ids.is_empty() {
        return Ok(0);
    }
    let mut xack = redis::cmd("XACK");
    xack.arg(stream).arg(group);
    for id in ids {
        xack.arg(id.text().as_bytes());
    }
    xack.query_async(conn)
        .await
        .map_err(|e| RedisError::command("xack", &e))
}

/// Hands the pending entries of this replica's retired workers to the current ones.
///
/// Worker `k` (its global index in the timely computation) reads as `<base>-<k>`, and this
/// process runs the workers in `current`. When a replica restarts with fewer workers, consumers
/// `<base>-<k>` for `k` outside `current` would keep their pending entries forever: no one reads
/// as them any more. Their entries are claimed (XCLAIM ... JUSTID, which does not count a
/// delivery) by the current worker `current.start + k mod len`, which reads its own pending
/// entries first, and the emptied consumers are deleted. Consumers of other replicas (other
/// base names) are never touched. Returns how many entries moved.
pub async fn adopt_retired_workers<C: ConnectionLike + Send>(
    conn: &mut C,
    stream: &str,
    group: &str,
    base: &str,
    current: std::ops::Range<usize>,
) -> Result<u64, RedisError> {
    let consumers: redis::streams::StreamInfoConsumersReply = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(stream)
        .arg(group)
        .query_async(conn)
        .await
        .map_err(|e| RedisError::command("xinfo_consumers", &e))?;
    let mut moved = 0u64;
    for consumer in consumers.consumers {
        let Some(index) = consumer
            .name
            .strip_prefix(base)
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|index| index.parse::<usize>().ok())
        else {
            continue;
        };
        if current.contains(&index) || current.is_empty() {
            continue;
        }
        let heir = format!("{base}-{}", current.start + index % current.len());
        loop {
            let pending: redis::streams::StreamPendingCountReply = redis::cmd("XPENDING")
                .arg(stream)
                .arg(group)
                .arg("-")
                .arg("+")
                .arg(1000)
                .arg(&consumer.name)
                .query_async(conn)
                .await
                .map_err(|e| RedisError::command("xpending", &e))?;
            if pending.ids.is_empty() {
                break;
            }
            let ids: Vec<&str> = pending.ids.iter().map(|p| p.id.as_str()).collect();
            let claimed: Vec<String> = redis::cmd("XCLAIM")
                .arg(stream)
                .arg(group)
                .arg(&heir)
                .arg(0)
                .arg(&ids)
                .arg("JUSTID")
                .query_async(conn)
                .await
                .map_err(|e| RedisError::command("xclaim", &e))?;
            moved += claimed.len() as u64;
            if claimed.len() < ids.len() {
                // ids whose entries were deleted are not claimed: acknowledge them away
                let gone: Vec<StreamId> = ids
                    .iter()
                    .copied()
                    .filter(|id| !claimed.iter().any(|c| c == id))
                    .filter_map(|id| id.parse().ok())
                    .collect();
                ack(conn, stream, group, &gone).await?;
            }
        }
        let _: i64 = redis::cmd("XGROUP")
            .arg("DELCONSUMER")
            .arg(stream)
            .arg(group)
            .arg(&consumer.name)
            .query_async(conn)
            .await
            .map_err(|e| RedisError::command("xgroup_delconsumer", &e))?;
        tracing::info!(retired = %consumer.name, heir = %heir, "pending entries of a retired worker adopted");
    }
    Ok(moved)
}
