//! Reading the group as one consumer: first its own pending entries, then new ones.
//!
//! After a crash the consumer's pending entries list (PEL) holds what it had read but not
//! acknowledged. Reading with id `0` returns exactly those, so a restart under the same consumer
//! name resumes them before it takes new entries with `>`. Entries deleted from the stream while
//! pending come back as an id with no fields: they cannot be processed, so they are reported in
//! [`ReadBatch::deleted`] for the caller to acknowledge away and count.
//!
//! Reads go over the reader's own connection ([`ReadConnection`]: a blocking `XREADGROUP` holds
//! up every other command on a connection); claims and the group's re-creation over the shared
//! command connection.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use dataflow::{Entry, StreamId};
use redis::aio::ConnectionManager;

use super::read_connection::ReadConnection;
use super::{ensure_group_resuming, RedisConfig, RedisError, ResumePoint};

/// A reply may take this much longer than the read's `BLOCK`.
const REPLY_MARGIN: Duration = Duration::from_secs(10);

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

/// One consumer of the group.
pub struct StreamReader {
    client: redis::Client,
    ca_file: Option<PathBuf>,
    read: Option<ReadConnection>,
    /// The shared connection, for claims and for re-creating the group.
    pub(super) commands: ConnectionManager,
    pub(super) stream: String,
    pub(super) group: String,
    consumer: String,
    start_id: String,
    count: u32,
    block: Duration,
    cursor: Cursor,
    /// The highest id this reader has been handed (entries or deleted ids) in this run.
    last_received: Option<StreamId>,
    recreate_group: bool,
    /// Where the group resumes if it has to be created again.
    resume: Arc<ResumePoint>,
}

impl StreamReader {
    /// A reader for `consumer` of the stream and group `config` names; it opens its own
    /// connection on the first read and uses `commands` for everything else.
    pub fn new(
        client: redis::Client,
        commands: ConnectionManager,
        config: &RedisConfig,
        consumer: String,
        resume: Arc<ResumePoint>,
    ) -> Self {
        StreamReader {
            client,
            ca_file: config.link.ca_file.clone(),
            read: None,
            commands,
            stream: config.stream.key.clone(),
            group: config.consumer_group.clone(),
            consumer,
            start_id: config.group_start_id.clone(),
            count: config.read_count,
            block: config.read_block,
            cursor: Cursor::Pending(StreamId::default()),
            last_received: None,
            recreate_group: false,
            resume,
        }
    }

    /// This reader's consumer name.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// The entry count of one read (also the page size of claims).
    pub(super) fn count(&self) -> u32 {
        self.count
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
                self.read = None;
                self.cursor = Cursor::Pending(self.last_received.unwrap_or_default());
            }
        }
        result
    }

    async fn try_read(&mut self) -> Result<ReadBatch, RedisError> {
        if self.recreate_group {
            let created = ensure_group_resuming(
                &mut self.commands,
                &self.stream,
                &self.group,
                self.resume.get(),
                &self.start_id,
            )
            .await?;
            self.recreate_group = false;
            // A recreated group has an empty PEL: nothing of ours is pending any more.
            self.cursor = Cursor::New;
            if let Some((start_id, case)) = created {
                tracing::warn!(
                    stream = %self.stream,
                    group = %self.group,
                    start_id = %start_id,
                    from = case.describe(),
                    "consumer group was missing and has been created again"
                );
            }
        }
        let count = self.count.to_string();
        let block = u64::try_from(self.block.as_millis())
            .unwrap_or(u64::MAX)
            .to_string();
        let from = match self.cursor {
            Cursor::Pending(after) => after.to_string(),
            Cursor::New => ">".to_owned(),
        };
        let mut args: Vec<&[u8]> = vec![
            b"XREADGROUP",
            b"GROUP",
            self.group.as_bytes(),
            self.consumer.as_bytes(),
            b"COUNT",
            count.as_bytes(),
        ];
        if self.cursor == Cursor::New {
            args.extend([b"BLOCK".as_slice(), block.as_bytes()]);
        }
        args.extend([
            b"STREAMS".as_slice(),
            self.stream.as_bytes(),
            from.as_bytes(),
        ]);
        let read = match self.read.take() {
            Some(read) => read,
            None => {
                ReadConnection::open(
                    &self.client,
                    self.ca_file.as_deref(),
                    &self.consumer,
                    self.block + REPLY_MARGIN,
                )
                .await?
            }
        };
        let batch = self.read.insert(read).read_group(&args).await?;
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
