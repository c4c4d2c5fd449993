//! The dead-letter stream, read back, sent back, and trimmed: the Redis side of
//! `processor dead-letters`.

use std::sync::LazyLock;

use bytes::Bytes;
use dataflow::StreamId;
use redis::aio::ConnectionLike;
use redis::Value;

use super::reply::{parse_entries, stream_id};
use super::{ReadBatch, RedisError};

static SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("redrive.lua")));

/// One dead letter: its id in the dead-letter stream and all its fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// Its id in the dead-letter stream (when it was dead-lettered).
    pub id: StreamId,
    /// The entry's fields and the dead-letter writer's (`error`, `source_id`, `consumer`,
    /// `failed_at`).
    pub fields: Vec<(Bytes, Bytes)>,
}

impl DeadLetter {
    /// The value of field `name`, as text.
    pub fn field(&self, name: &str) -> Option<String> {
        self.fields
            .iter()
            .find(|(key, _)| key.as_ref() == name.as_bytes())
            .map(|(_, value)| String::from_utf8_lossy(value).into_owned())
    }
}

/// Up to `count` dead letters of `key` after `after` (from the start when `None`), oldest first.
pub async fn read_dead_letters<C: ConnectionLike + Send>(
    conn: &mut C,
    key: &str,
    after: Option<StreamId>,
    count: usize,
) -> Result<Vec<DeadLetter>, RedisError> {
    let start = after.map_or_else(|| "-".to_owned(), |id| format!("({id}"));
    let reply: Value = redis::cmd("XRANGE")
        .arg(key)
        .arg(start)
        .arg("+")
        .arg("COUNT")
        .arg(count)
        .query_async(conn)
        .await
        .map_err(|e| RedisError::command("xrange", &e))?;
    let Value::Array(entries) = reply else {
        return Err(RedisError::Reply {
            operation: "xrange",
            detail: "not an array".to_owned(),
        });
    };
    let mut batch = ReadBatch::default();
    parse_entries(entries, &mut batch, "xrange")?;
    Ok(batch
        .entries
        .into_iter()
        .map(|entry| DeadLetter {
            id: entry.id,
            fields: entry.fields,
        })
        .collect())
}

/// The id of the newest entry of stream `key` (`None` when it is empty or missing).
pub async fn newest_id<C: ConnectionLike + Send>(
    conn: &mut C,
    key: &str,
) -> Result<Option<StreamId>, RedisError> {
    let reply: Value = redis::cmd("XREVRANGE")
        .arg(key)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(conn)
        .await
        .map_err(|e| RedisError::command("xrevrange", &e))?;
    let Value::Array(entries) = reply else {
        return Ok(None);
    };
    let mut batch = ReadBatch::default();
    parse_entries(entries, &mut batch, "xrevrange")?;
    Ok(batch
        .entries
        .first()
        .map(|entry| entry.id)
        .or_else(|| batch.deleted.first().copied()))
}

/// Puts each `(dead-letter id, fields)` on `stream` with those fields and removes it from `dead`,
/// atomically per call; returns the new ids, `None` for a letter no longer there (skipped).
pub async fn redrive<C: ConnectionLike + Send>(
    conn: &mut C,
    dead: &str,
    stream: &str,
    letters: &[(StreamId, Vec<(Bytes, Bytes)>)],
) -> Result<Vec<Option<StreamId>>, RedisError> {
    if letters.is_empty() {
        return Ok(Vec::new());
    }
    let mut invocation = SCRIPT.key(dead);
    invocation.key(stream);
    for (id, fields) in letters {
        invocation.arg(id.to_string()).arg(2 * fields.len());
        for (name, value) in fields {
            invocation.arg(name.as_ref()).arg(value.as_ref());
        }
    }
    let reply: Value = invocation
        .invoke_async(conn)
        .await
        .map_err(|e| RedisError::command("redrive", &e))?;
    let Value::Array(ids) = reply else {
        return Err(RedisError::Reply {
            operation: "redrive",
            detail: "not an array".to_owned(),
        });
    };
    ids.into_iter()
        .map(|id| match id {
            Value::Nil | Value::Boolean(false) | Value::Int(0) => Ok(None),
            id => stream_id(id, "redrive").map(Some),
        })
        .collect()
}

/// Removes the entries of `key` older than `minid` (`XTRIM MINID`); returns how many.
pub async fn trim_before<C: ConnectionLike + Send>(
    conn: &mut C,
    key: &str,
    minid: StreamId,
) -> Result<u64, RedisError> {
    redis::cmd("XTRIM")
        .arg(key)
        .arg("MINID")
        .arg(minid.to_string())
        .query_async(conn)
        .await
        .map_err(|e| RedisError::command("xtrim", &e))
}

/// The number of entries in stream `key` (0 when it does not exist).
pub async fn length<C: ConnectionLike + Send>(conn: &mut C, key: &str) -> Result<u64, RedisError> {
    redis::cmd("XLEN")
        .arg(key)
        .query_async(conn)
        .await
        .map_err(|e| RedisError::command("xlen", &e))
}
