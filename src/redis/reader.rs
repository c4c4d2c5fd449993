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

use super::reply::{compare_ids, parse_reply};
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

    /// The reader's connection, opened if needed.
    pub(super) async fn connection(&mut self) -> Result<&mut MultiplexedConnection, RedisError> {
        if self.conn.is_none() {
            let opened =
                connect::reader_connection(&self.client, self.block, &self.consumer).await?;
            self.conn = Some(opened);
        }
        self.conn.as_mut().ok_or_else(|| RedisError::Reply {
            operation: "connect",
            detail: "no connection".to_owned(),
        })
    }

    /// Drops the connection after a failure (the next use reopens it).
    pub(super) fn reset_connection(&mut self) {
        self.conn = None;
    }

    /// The stream and group this reader belongs to.
    pub(super) fn stream_and_group(&self) -> (String, String) {
        (self.stream.clone(), self.group.clone())
    }

    /// The entry count of one read (also the page size of claims).
    pub(super) fn count(&self) -> u32 {
        self.count
    }

    async fn try_read(&mut self) -> Result<ReadBatch, RedisError> {
        self.connection().await?;
        let Some(conn) = self.conn.as_mut() else {
            return Ok(ReadBatch::default());
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
