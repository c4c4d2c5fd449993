//! A worker's reader task: XREADGROUP in a loop, batches handed to the worker thread.
//!
//! The channel to the worker is bounded, and the worker takes from it only while it has fewer
//! than `MAX_INFLIGHT_EPOCHS` unacknowledged epochs: when PostgreSQL is slow or down, the channel
//! fills, this task waits in `send`, and nothing more is read. Memory stays bounded; unread
//! entries wait in Redis.

use std::sync::Arc;
use std::thread::Thread;
use std::time::{Duration, Instant};

use dataflow::{Entry, StreamId};
use tokio::sync::mpsc;

use super::acker::AckRequest;
use crate::metrics::Metrics;
use crate::redis::{ReadBatch, RedisError, StreamReader};
use crate::retry::{GaveUp, Retry};
use crate::shutdown::Shutdown;

/// When and how this reader takes over other consumers' entries.
#[derive(Debug, Clone)]
pub struct ClaimSettings {
    /// Between two claim rounds.
    pub interval: Duration,
    /// Only entries idle this long are taken.
    pub min_idle: Duration,
    /// Deliveries after which an entry is dead-lettered.
    pub max_deliveries: u64,
    /// Where poison entries go.
    pub dead_letter_stream: String,
}

/// Where the reader's entries come from and go to.
pub struct Source {
    pub reader: StreamReader,
    pub batches: mpsc::Sender<Vec<Entry>>,
    pub acks: mpsc::UnboundedSender<AckRequest>,
    pub worker_thread: Thread,
    pub metrics: Arc<Metrics>,
    pub shutdown: Shutdown,
    pub retry: Retry,
    pub claim: ClaimSettings,
    /// Test fault: after its first entries, the reader hangs (until shutdown) without handing
    /// them over.
    pub stuck: bool,
}

/// Reads until shutdown begins; the read in progress is finished and delivered first, so every
/// entry this consumer was handed is processed in this run. First its own poison entries are
/// dead-lettered (a crash loop ends there), then, between reads, every `CLAIM_INTERVAL_MS`, it
/// takes over idle entries of other consumers.
pub async fn read_loop(source: Source) {
    let Source {
        reader,
        batches,
        acks,
        worker_thread,
        metrics,
        shutdown,
        retry,
        claim,
        stuck,
    } = source;
    let mut cursor = ReadCursor {
        reader,
        own_poison_checked: false,
        // The first round waits one interval: this consumer's own pending entries are read
        // first (claiming them too would feed them twice).
        next_claim: Instant::now() + claim.interval,
        claim_cursor: StreamId::default(),
    };
    while !shutdown.is_triggered() {
        // (the policy stops at the drain: it waits for the read in progress only)
        let (back, step) = retry
            .run_with(cursor, |mut cursor| {
                let (claim, metrics) = (&claim, &metrics);
                async move {
                    let step = cursor.step(claim, metrics).await;
                    (cursor, step)
                }
            })
            .await;
        cursor = back;
        let reader = &cursor.reader;
        let batch = match step {
            Ok(batch) => batch,
            // (a Redis failure is never permanent: only shutdown stops this)
            Err(GaveUp::Shutdown | GaveUp::Permanent(_)) => break,
        };
        if !batch.deleted.is_empty() {
            tracing::warn!(
                consumer = reader.consumer(),
                count = batch.deleted.len(),
                "pending entries were deleted from the stream; acknowledging them away"
            );
            let _ = acks.send(AckRequest::Deleted(batch.deleted));
        }
        if batch.entries.is_empty() {
            continue;
        }
        if stuck {
            tracing::warn!(consumer = reader.consumer(), "test fault: the reader hangs");
            shutdown.triggered().await;
            break;
        }
        metrics.entries_read.inc_by(batch.entries.len() as u64);
        tracing::trace!(
            consumer = reader.consumer(),
            count = batch.entries.len(),
            "read"
        );
        if batches.send(batch.entries).await.is_err() {
            break; // the worker is gone
        }
        worker_thread.unpark();
    }
    tracing::debug!(consumer = cursor.reader.consumer(), "reader stopped");
    // Dropping `batches` tells the worker that nothing more will come: it closes its input.
    drop(batches);
    worker_thread.unpark();
}

/// Where a reader stands: its connection, and what it has yet to do besides reading.
struct ReadCursor {
    reader: StreamReader,
    /// Whether this consumer's own poison entries were dead-lettered (done once, first).
    own_poison_checked: bool,
    /// When the next claim round begins.
    next_claim: Instant,
    /// Where the claim round in progress stands.
    claim_cursor: StreamId,
}

impl ReadCursor {
    /// One step: the own poison sweep first, then reads, with a claim round's page every
    /// `CLAIM_INTERVAL_MS`.
    async fn step(
        &mut self,
        claim: &ClaimSettings,
        metrics: &Metrics,
    ) -> Result<ReadBatch, RedisError> {
        if !self.own_poison_checked {
            poison(&mut self.reader, claim, None, metrics).await?;
            self.own_poison_checked = true;
            Ok(ReadBatch::default())
        } else if Instant::now() >= self.next_claim {
            let (batch, done) =
                claim_round(&mut self.reader, claim, &mut self.claim_cursor, metrics).await?;
            if done {
                self.next_claim = Instant::now() + claim.interval;
            }
            Ok(batch)
        } else {
            self.reader.read_group().await
        }
    }
}

/// Dead-letters poison entries (own ones when `idle` is `None`), counting and logging them.
async fn poison(
    reader: &mut StreamReader,
    claim: &ClaimSettings,
    idle: Option<Duration>,
    metrics: &Metrics,
) -> Result<(), RedisError> {
    let sweep = reader
        .dead_letter_poison(claim.max_deliveries, idle, &claim.dead_letter_stream)
        .await?;
    if sweep.dead_lettered > 0 {
        metrics.dead_lettered.inc_by(sweep.dead_lettered);
        for id in &sweep.ids {
            tracing::warn!(
                stream_id = %id,
                consumer = reader.consumer(),
                max_deliveries = claim.max_deliveries,
                "entry delivered too often without success; moved to the dead-letter stream"
            );
        }
    }
    Ok(())
}

/// One page of a claim round: at the start of a round poison entries are dead-lettered, then
/// XAUTOCLAIM takes a page of idle entries; `true` when the cursor went around.
async fn claim_round(
    reader: &mut StreamReader,
    claim: &ClaimSettings,
    cursor: &mut StreamId,
    metrics: &Metrics,
) -> Result<(ReadBatch, bool), RedisError> {
    if *cursor == StreamId::default() {
        poison(reader, claim, Some(claim.min_idle), metrics).await?;
    }
    let (batch, done) = reader.claim_idle(claim.min_idle, cursor).await?;
    if !batch.entries.is_empty() {
        metrics.entries_claimed.inc_by(batch.entries.len() as u64);
        tracing::info!(
            consumer = reader.consumer(),
            count = batch.entries.len(),
            "took over entries idle in other consumers"
        );
    }
    Ok((batch, done))
}
