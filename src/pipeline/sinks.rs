//! The two epoch sinks: rows to PostgreSQL, refused entries to the dead-letter stream.
//!
//! Both retry until they succeed (or the drain is abandoned): an epoch is reported committed
//! only when its side effect is durable, because that report lets the epoch's stream ids be
//! acknowledged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dataflow::operators::BadEntry;
use dataflow::{Epoch, Position};
use redis::aio::ConnectionManager;

use super::committer::EpochSink;
use crate::metrics::Metrics;
use crate::postgres::RowWriter;
use crate::retry::Backoff;
use crate::shutdown::Shutdown;

/// Pause before the first retry.
const FIRST_RETRY: Duration = Duration::from_millis(50);

/// Sleeps for the backoff's next delay; `false` when the drain was abandoned meanwhile.
pub(crate) async fn pause(backoff: &mut Backoff, shutdown: &Shutdown) -> bool {
    if shutdown.is_forced() {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep(backoff.next_delay()) => true,
        _ = shutdown.forced() => false,
    }
}

/// Writes a worker's rows of an epoch in one transaction.
pub struct RowSink {
    pub(crate) writer: RowWriter,
    pub(crate) worker: usize,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) shutdown: Shutdown,
    pub(crate) retry_max: Duration,
}

impl EpochSink<Position> for RowSink {
    async fn commit(&mut self, epoch: Epoch, batch: Vec<Position>) -> bool {
        let started = Instant::now();
        let mut backoff = Backoff::new(FIRST_RETRY, self.retry_max);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match self.writer.write_epoch(&batch).await {
                Ok(outcome) => {
                    self.metrics.positions_written.inc_by(outcome.inserted);
                    self.metrics.duplicates.inc_by(outcome.duplicates);
                    self.metrics
                        .write_transactions
                        .with_label_values(&[outcome.path.label()])
                        .inc();
                    self.metrics
                        .commit_seconds
                        .observe(started.elapsed().as_secs_f64());
                    self.metrics.batch_rows.observe(batch.len() as f64);
                    if outcome.duplicates > 0 {
                        tracing::debug!(
                            worker = self.worker,
                            epoch,
                            duplicates = outcome.duplicates,
                            "positions already stored were skipped"
                        );
                    }
                    tracing::trace!(
                        worker = self.worker,
                        epoch,
                        rows = batch.len(),
                        "epoch committed"
                    );
                    return true;
                }
                Err(error) => {
                    self.metrics
                        .postgres_errors
                        .with_label_values(&[error.operation()])
                        .inc();
                    tracing::warn!(
                        worker = self.worker,
                        epoch,
                        rows = batch.len(),
                        attempt,
                        data_error = error.is_data_error(),
                        error = %error,
                        "epoch write failed; nothing is acknowledged, retrying"
                    );
                    if !pause(&mut backoff, &self.shutdown).await {
                        return false;
                    }
                }
            }
        }
    }
}

/// Moves a worker's refused entries of an epoch to the dead-letter stream.
pub struct DeadLetterSink {
    pub(crate) conn: ConnectionManager,
    pub(crate) stream: String,
    pub(crate) group: String,
    pub(crate) dead_letter_stream: String,
    pub(crate) consumer: String,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) shutdown: Shutdown,
    pub(crate) retry_max: Duration,
}

impl EpochSink<BadEntry> for DeadLetterSink {
    async fn commit(&mut self, epoch: Epoch, batch: Vec<BadEntry>) -> bool {
        for bad in &batch {
            self.metrics
                .decode_errors
                .with_label_values(&[bad.error.metric_label()])
                .inc();
            tracing::warn!(
                stream_id = %bad.entry.id,
                consumer = %self.consumer,
                field = bad.error.field,
                reason = %bad.error.reason,
                "entry refused; moving it to the dead-letter stream"
            );
        }
        let letters: Vec<(&dataflow::Entry, String)> = batch
            .iter()
            .map(|bad| (&bad.entry, bad.error.to_string()))
            .collect();
        let mut backoff = Backoff::new(FIRST_RETRY, self.retry_max);
        loop {
            let moved = crate::redis::dead_letter(
                &mut self.conn,
                &self.stream,
                &self.group,
                &self.dead_letter_stream,
                &self.consumer,
                &letters,
            )
            .await;
            match moved {
                Ok(()) => {
                    self.metrics.dead_lettered.inc_by(batch.len() as u64);
                    return true;
                }
                Err(error) => {
                    self.metrics
                        .redis_errors
                        .with_label_values(&[error.operation()])
                        .inc();
                    tracing::warn!(epoch, entries = batch.len(), error = %error, "dead letter failed; retrying");
                    if !pause(&mut backoff, &self.shutdown).await {
                        return false;
                    }
                }
            }
        }
    }
}
