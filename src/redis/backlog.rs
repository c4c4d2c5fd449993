//! What the stream and the group look like from outside: length, lag, pending entries and how
//! old and how often delivered they are. Read by the monitor for the backlog metrics and for
//! readiness; one pipelined round trip.

use std::time::Duration;

use dataflow::StreamId;
use redis::aio::ConnectionLike;
use redis::streams::{StreamInfoGroupsReply, StreamPendingCountReply, StreamPendingReply};
use redis::Value;

use super::RedisError;

/// How many of the oldest pending entries are looked at for their delivery counts.
pub const DELIVERIES_SCAN: usize = 1000;

/// One look at the stream and one group on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backlog {
    /// Entries in the stream.
    pub length: u64,
    /// Entries not yet delivered to the group, and whether that is exact (Redis's own lag)
    /// or an upper bound (Redis reports no lag after deletions).
    pub lag: u64,
    /// Whether `lag` is exact.
    pub lag_exact: bool,
    /// Entries delivered and not acknowledged.
    pub pending: u64,
    /// The oldest pending entry's id.
    pub oldest_pending: Option<StreamId>,
    /// The highest delivery count among the [`DELIVERIES_SCAN`] oldest pending entries.
    pub max_deliveries: u64,
    /// Pending entries idle (not delivered again) for at least the `stuck_after` asked for:
    /// (id, consumer, idle).
    pub stuck: Vec<(StreamId, String, Duration)>,
}

/// Reads the [`Backlog`] of `group` on `stream`; `None` when the stream or the group is missing.
pub async fn backlog<C: ConnectionLike + Send>(
    conn: &mut C,
    stream: &str,
    group: &str,
    stuck_after: Duration,
) -> Result<Option<Backlog>, RedisError> {
    let exists: bool = redis::cmd("EXISTS")
        .arg(stream)
        .query_async(conn)
        .await
        .map_err(|e| RedisError::command("backlog", &e))?;
    if !exists {
        return Ok(None);
    }
    let groups: StreamInfoGroupsReply = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(stream)
        .query_async(conn)
        .await
        .map_err(|e| RedisError::command("backlog", &e))?;
    let Some(info) = groups.groups.into_iter().find(|g| g.name == group) else {
        return Ok(None);
    };
    let idle = u64::try_from(stuck_after.as_millis()).unwrap_or(u64::MAX);
    let (length, stream_info, summary, oldest, stuck): (
        u64,
        Value,
        StreamPendingReply,
        StreamPendingCountReply,
        StreamPendingCountReply,
    ) = redis::pipe()
        .cmd("XLEN")
        .arg(stream)
        .cmd("XINFO")
        .arg("STREAM")
        .arg(stream)
        .cmd("XPENDING")
        .arg(stream)
        .arg(group)
        .cmd("XPENDING")
        .arg(stream)
        .arg(group)
        .arg("-")
        .arg("+")
        .arg(DELIVERIES_SCAN)
        .cmd("XPENDING")
        .arg(stream)
        .arg(group)
        .arg("IDLE")
        .arg(idle)
        .arg("-")
        .arg("+")
        .arg(100)
        .query_async(conn)
        .await
        .map_err(|e| RedisError::command("backlog", &e))?;
    let entries_added = field(&stream_info, "entries-added");
    let (lag, lag_exact) = match (info.lag, info.entries_read, entries_added) {
        (Some(lag), _, _) => (lag as u64, true),
        // Deleted entries still count in entries-added: an upper bound, as is the length.
        (None, Some(read), Some(added)) => (added.saturating_sub(read as u64).min(length), false),
        (None, _, _) => (length, false),
    };
    let oldest_pending = match &summary {
        StreamPendingReply::Data(data) => data.start_id.parse().ok(),
        _ => None,
    };
    Ok(Some(Backlog {
        length,
        lag,
        lag_exact,
        pending: summary.count() as u64,
        oldest_pending,
        max_deliveries: oldest
            .ids
            .iter()
            .map(|p| p.times_delivered as u64)
            .max()
            .unwrap_or(0),
        stuck: stuck
            .ids
            .into_iter()
            .filter_map(|p| {
                let id = p.id.parse().ok()?;
                Some((
                    id,
                    p.consumer,
                    Duration::from_millis(p.last_delivered_ms as u64),
                ))
            })
            .collect(),
    }))
}

/// An integer field of an `XINFO STREAM` reply (a flat list of names and values, or a map).
fn field(reply: &Value, name: &str) -> Option<u64> {
    let is_name = |v: &Value| match v {
        Value::BulkString(bytes) => bytes == name.as_bytes(),
        Value::SimpleString(text) => text == name,
        _ => false,
    };
    let value = match reply {
        Value::Array(items) => items
            .chunks(2)
            .find(|pair| pair.first().is_some_and(is_name))
            .and_then(|pair| pair.get(1)),
        Value::Map(pairs) => pairs.iter().find(|(k, _)| is_name(k)).map(|(_, v)| v),
        _ => None,
    }?;
    match value {
        Value::Int(number) => u64::try_from(*number).ok(),
        _ => None,
    }
}
