//! Reading the group as one consumer: first its own pending entries, then new ones.
//!
//! After a crash the consumer's pending entries list (PEL) holds what it had read but not
//! acknowledged. Reading with id `0` returns exactly those, so a restart under the same consumer
//! name resumes them before it takes new entries with `>`. Entries deleted from the stream while
//! pending come back as an id with no fields: they cannot be processed, so they are reported in
//! [`ReadBatch::deleted`] for the caller to acknowledge away and count.

use std::time::Duration;

use dataflow::Entry;
use redis::aio::MultiplexedConnection;
use redis::Value;

use super::{connect, ensure_group, RedisError};

/// Where the next read starts.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Cursor {
    /// Re-reading this consumer's own pending entries after this id.
    Pending(String),
    /// Reading entries never delivered to any consumer (`>`).
    New,
}

/// What one read returned.
#[derive(Debug, Default)]
pub struct ReadBatch {
    /// Entries to process, in stream order.
    pub entries: Vec<Entry>,
    /// Pending ids whose entries no longer exist in the stream.
    pub deleted: Vec<String>,
}

/// One consumer of the group, with its own connection.
pub struct StreamReader {
    client: redis::Client,
    conn: Option<MultiplexedConnection>,
    stream: String,
    group: String,
    consumer: String,
    start_id: String,
    count: u32,
    block: Duration,
    cursor: Cursor,
    /// The highest id this reader has been handed (entries or deleted ids) in this run.
    last_received: String,
    recreate_group: bool,
}

impl StreamReader {
    /// A reader for `consumer`; it connects on the first read.
    pub fn new(
        client: redis::Client,
        stream: &str,
        group: &str,
        consumer: &str,
        start_id: &str,
        count: u32,
        block: Duration,
    ) -> Self {
        StreamReader {
            client,
            conn: None,
            stream: stream.to_owned(),
            group: group.to_owned(),
            consumer: consumer.to_owned(),
            start_id: start_id.to_owned(),
            count,
            block,
            cursor: Cursor::Pending("0".to_owned()),
            last_received: "0".to_owned(),
            recreate_group: false,
        }
    }

    /// This reader's consumer name.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// Reads the next batch: pending entries while there are any (without blocking), then new
    /// entries (blocking up to the block time; an empty batch means none arrived).
    ///
    /// On failure the reader prepares its own recovery for the next call: a lost connection is
    /// reopened and the pending list re-read after the last id this reader was handed (a reply
    /// lost in transit left its entries pending for this consumer, and they all have higher ids
    /// than anything received before; what was received is already in the dataflow and must not
    /// be fed twice); a vanished group is created again.
    pub async fn read_group(&mut self) -> Result<ReadBatch, RedisError> {
        let result = self.try_read().await;
        if let Err(error) = &result {
            if error.is_no_group() {
                self.recreate_group = true;
            } else {
                self.conn = None;
                self.cursor = Cursor::Pending(self.last_received.clone());
            }
        }
        result
    }

    async fn try_read(&mut self) -> Result<ReadBatch, RedisError> {
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => self.conn.insert(
                connect::reader_connection(&self.client, self.block, &self.consumer).await?,
            ),
        };
        if self.recreate_group {
            let created = ensure_group(conn, &self.stream, &self.group, &self.start_id).await?;
            self.recreate_group = false;
            // A recreated group has an empty PEL: nothing of ours is pending any more.
            self.cursor = Cursor::New;
            if created {
                tracing::warn!(
                    stream = %self.stream,
                    group = %self.group,
                    start_id = %self.start_id,
                    "consumer group was missing and has been created again"
                );
            }
        }
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.group)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(self.count);
        if self.cursor == Cursor::New {
            let block_ms = u64::try_from(self.block.as_millis()).unwrap_or(u64::MAX);
            cmd.arg("BLOCK").arg(block_ms);
        }
        let from = match &self.cursor {
            Cursor::Pending(after) => after.as_str(),
            Cursor::New => ">",
        };
        cmd.arg("STREAMS").arg(&self.stream).arg(from);
        let reply: Value = cmd
            .query_async(conn)
            .await
            .map_err(|e| RedisError::command("xreadgroup", &e))?;
        let batch = parse_reply(reply)?;
        let newest = batch
            .entries
            .last()
            .map(|e| &e.id)
            .into_iter()
            .chain(batch.deleted.last())
            .max_by(|a, b| compare_ids(a, b));
        if let Some(newest) = newest {
            if compare_ids(newest, &self.last_received).is_gt() {
                self.last_received = newest.clone();
            }
        }
        if let Cursor::Pending(after) = &mut self.cursor {
            match newest {
                Some(id) => *after = id.clone(),
                // the pending list is exhausted: from now on, new entries
                None => self.cursor = Cursor::New,
            }
        }
        Ok(batch)
    }
}

/// Orders two stream ids (`<ms>-<seq>`) numerically.
fn compare_ids(a: &str, b: &str) -> std::cmp::Ordering {
    fn parts(id: &str) -> (u64, u64) {
        let mut split = id.splitn(2, '-');
        let ms = split.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let seq = split.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        (ms, seq)
    }
    parts(a).cmp(&parts(b))
}

/// Parses `XREADGROUP`'s reply: nil, or `[[stream, [[id, [field, value, ...]], ...]]]`
/// (a deleted pending entry has a nil or empty field list).
fn parse_reply(reply: Value) -> Result<ReadBatch, RedisError> {
    let unexpected = |detail: &str| RedisError::Reply {
        operation: "xreadgroup",
        detail: detail.to_owned(),
    };
    let mut batch = ReadBatch::default();
    let streams = match reply {
        Value::Nil => return Ok(batch),
        Value::Array(streams) => streams,
        Value::Map(streams) => streams
            .into_iter()
            .map(|(key, entries)| Value::Array(vec![key, entries]))
            .collect(),
        _ => return Err(unexpected("not an array of streams")),
    };
    for stream in streams {
        let Value::Array(mut pair) = stream else {
            return Err(unexpected("stream is not a [key, entries] pair"));
        };
        let entries = match pair.pop() {
            Some(Value::Array(entries)) => entries,
            Some(Value::Nil) => continue,
            _ => return Err(unexpected("stream entries are not an array")),
        };
        for entry in entries {
            let Value::Array(mut parts) = entry else {
                return Err(unexpected("entry is not an [id, fields] pair"));
            };
            let fields = if parts.len() == 2 { parts.pop() } else { None };
            let id = match parts.pop() {
                Some(Value::BulkString(id)) => {
                    String::from_utf8(id).map_err(|_| unexpected("entry id is not UTF-8"))?
                }
                Some(Value::SimpleString(id)) => id,
                _ => return Err(unexpected("entry has no id")),
            };
            let fields = match fields {
                Some(Value::Array(values)) => {
                    pairs(values).ok_or_else(|| unexpected("odd field list"))?
                }
                Some(Value::Map(map)) => map
                    .into_iter()
                    .map(|(k, v)| Some((bulk_to_string(k)?, bulk_to_bytes(v)?)))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| unexpected("field is not a string"))?,
                Some(Value::Nil) | None => Vec::new(),
                Some(_) => return Err(unexpected("entry fields are not an array")),
            };
            if fields.is_empty() {
                batch.deleted.push(id);
            } else {
                batch.entries.push(Entry { id, fields });
            }
        }
    }
    Ok(batch)
}

fn pairs(values: Vec<Value>) -> Option<Vec<(String, Vec<u8>)>> {
    if values.len() % 2 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(values.len() / 2);
    let mut iter = values.into_iter();
    while let (Some(key), Some(value)) = (iter.next(), iter.next()) {
        out.push((bulk_to_string(key)?, bulk_to_bytes(value)?));
    }
    Some(out)
}

fn bulk_to_bytes(value: Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(text) => Some(text.into_bytes()),
        Value::Int(number) => Some(number.to_string().into_bytes()),
        _ => None,
    }
}

/// A field name as text. Names are not interpreted except for `payload`, so a name that is not
/// UTF-8 is kept lossily rather than failing the read (which would block the consumer on that
/// entry forever); the entry then has no usable payload and is dead-lettered.
fn bulk_to_string(value: Value) -> Option<String> {
    let bytes = bulk_to_bytes(value)?;
    Some(match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) => String::from_utf8_lossy(error.as_bytes()).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn parses_entries_and_deleted_ids() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("telemetry:t"),
            Value::Array(vec![
                Value::Array(vec![
                    bulk("1-0"),
                    Value::Array(vec![bulk("payload"), bulk("{}")]),
                ]),
                Value::Array(vec![bulk("2-0"), Value::Nil]),
                Value::Array(vec![bulk("3-0"), Value::Array(vec![])]),
            ]),
        ])]);
        let batch = parse_reply(reply).expect("parses");
        assert_eq!(batch.entries.len(), 1);
        assert_eq!(batch.entries[0].id, "1-0");
        assert_eq!(batch.entries[0].field("payload"), Some(&b"{}"[..]));
        assert_eq!(batch.deleted, vec!["2-0".to_owned(), "3-0".to_owned()]);
        assert!(parse_reply(Value::Nil).expect("nil").entries.is_empty());
        assert!(parse_reply(Value::Int(3)).is_err());
    }

    #[test]
    fn a_field_name_that_is_not_utf8_does_not_fail_the_batch() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("s"),
            Value::Array(vec![
                Value::Array(vec![
                    bulk("1-0"),
                    Value::Array(vec![Value::BulkString(vec![0xff, 0xfe]), bulk("x")]),
                ]),
                Value::Array(vec![
                    bulk("2-0"),
                    Value::Array(vec![bulk("payload"), bulk("{}")]),
                ]),
            ]),
        ])]);
        let batch = parse_reply(reply).expect("parses");
        assert_eq!(batch.entries.len(), 2);
        assert_eq!(batch.entries[0].field("payload"), None);
    }

    #[test]
    fn ids_compare_numerically() {
        assert_eq!(compare_ids("10-0", "9-5"), std::cmp::Ordering::Greater);
        assert_eq!(compare_ids("9-10", "9-9"), std::cmp::Ordering::Greater);
    }
}
