//! A worker's reader task: XREADGROUP in a loop, batches handed to the worker thread.
//!
//! The channel to the worker is bounded, and the worker takes from it only while it has fewer
//! than `MAX_INFLIGHT_EPOCHS` unacknowledged epochs: when PostgreSQL is slow or down, the channel
//! fills, this task waits in `send`, and nothing more is read. Memory stays bounded; unread
//! entries wait in Redis.

use std::sync::Arc;
use std::thread::Thread;
use std::time::Duration;

use dataflow::Entry;
use tokio::sync::mpsc;

use super::acker::AckRequest;
use super::sinks::pause;
use crate::metrics::Metrics;
use crate::redis::StreamReader;
use crate::retry::Backoff;
use crate::shutdown::Shutdown;

/// Reads until shutdown begins; the read in progress is finished and delivered first, so every
/// entry this consumer was handed is processed in this run.
pub async fn read_loop(
    mut reader: StreamReader,
    batches: mpsc::Sender<Vec<Entry>>,
    acks: mpsc::UnboundedSender<AckRequest>,
    worker_thread: Thread,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
    retry_max: Duration,
) {
    let mut backoff = Backoff::new(Duration::from_millis(100), retry_max);
    let mut failing = false;
    while !shutdown.is_triggered() {
        match reader.read_group().await {
            Ok(batch) => {
                backoff.reset();
                if failing {
                    tracing::info!(consumer = reader.consumer(), "reading again");
                    failing = false;
                }
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
            Err(error) => {
                metrics
                    .redis_errors
                    .with_label_values(&[error.operation()])
                    .inc();
                tracing::warn!(consumer = reader.consumer(), error = %error, "read failed; retrying");
                failing = true;
                tokio::select! {
                    resumed = pause(&mut backoff, &shutdown) => if !resumed { break },
                    _ = shutdown.triggered() => break,
                }
            }
        }
    }
    tracing::debug!(consumer = reader.consumer(), "reader stopped");
    // Dropping `batches` tells the worker that nothing more will come: it closes its input.
    drop(batches);
    worker_thread.unpark();
}
