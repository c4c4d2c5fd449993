//! Reading the group as one consumer: first its own pending entries, then new ones.
//!
//! After a crash the consumer's pending entries list (PEL) holds what it had read but not
//! acknowledged. Reading with id `0` returns exactly those, so a restart under the same consumer
//! name resumes them before it takes new entries with `>`. Entries deleted from the stream while
//! pending come back as an id with no fields: they cannot be processed, so they are reported in
//! [`ReadBatch::deleted`] for the caller to acknowledge away and count.

use std::time::Duration;

use dataflow::{Entry, StreamId};
use redis::aio::MultiplexedConnection;
use redis::Value;

use super::reply::parse_reply;
use super::{connect, ensure_group, RedisConfig, RedisError};

/// Where the next read starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cursor {
    /// Re-reading this consumer's own pending entries after this id (XREADGROUP with an id
    /// returns the pending entries with greater ids).
    Pending(StreamId),
    /// Reading entries never delivered to any consumer (`>`).
    New,
}

/// What one read returned.
#[derive(Debug, Default)]
pub struct ReadBatch {
    /// Entries to process, in stream order.
    pub entries: Vec<Entry>,
    /// Pending ids whose entries no longer exist in the stream.
    pub deleted: Vec<StreamId>,
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
    last_received: Option<StreamId>,
    recreate_group: bool,
}

impl StreamReader {
    /// A reader for `consumer` of the stream and group `config` names; it connects on the first
    /// read.
    pub fn new(client: redis::Client, config: &RedisConfig, consumer: String) -> Self {
        StreamReader {
            client,
            conn: None,
            stream: config.stream_key.clone(),
            group: config.consumer_group.clone(),
            consumer,
            start_id: config.group_start_id.clone(),
            count: config.read_count,
            block: config.read_block,
            cursor: Cursor::Pending(StreamId::default()),
            last_received: None,
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
                self.cursor = Cursor::Pending(self.last_received.unwrap_or_default());
            }
        }
        result
    }

    /// The reader's connection, opened if needed.
    pub(super) async fn connection(&mut self) -> Result<&mut MultiplexedConnection, RedisError> {
        let conn = match self.conn.take() {
            Some(conn) => conn,
            None => connect::reader_connection(&self.client, self.block, &self.consumer).await?,
        };
        Ok(self.conn.insert(conn))
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
        let (stream, group, start_id) = (
            self.stream.clone(),
            self.group.clone(),
            self.start_id.clone(),
        );
        let recreate = self.recreate_group;
        let conn = self.connection().await?;
        if recreate {
            let created = ensure_group(conn, &stream, &group, &start_id).await?;
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
        let from = match self.cursor {
            Cursor::Pending(after) => after.to_string(),
            Cursor::New => ">".to_owned(),
        };
        cmd.arg("STREAMS").arg(&self.stream).arg(from);
        let conn = self.connection().await?;
        let reply: Value = cmd
            .query_async(conn)
            .await
            .map_err(|e| RedisError::command("xreadgroup", &e))?;
        let batch = parse_reply(reply)?;
        let newest = batch
            .entries
            .last()
            .map(|e| e.id)
            .into_iter()
            .chain(batch.deleted.last().copied())
            .max();
        if newest > self.last_received {
            self.last_received = newest;
        }
        if let Cursor::Pending(after) = &mut self.cursor {
            match newest {
                Some(id) => *after = id,
                // the pending list is exhausted: from now on, new entries
                None => self.cursor = Cursor::New,
            }
        }
        Ok(batch)
    }
}
