//! The two epoch sinks: rows to PostgreSQL, refused entries to the dead-letter stream.
//!
//! Both retry until they succeed (or the drain is abandoned), under the one retry policy
//! (`crate::retry`): an epoch is reported committed only when its side effect is durable, because
//! that report lets the epoch's stream ids be acknowledged. Rows the database refuses for their
//! data are the one exception to "retry": they are found ([`RowWriter::isolate`]) and
//! dead-lettered, and the rest is written, so one bad row never stalls the stream.

use std::sync::Arc;
use std::time::Instant;

use dataflow::codec::encode_payload;
use dataflow::operators::BadEntry;
use dataflow::{Batch, Epoch, Position, Rows};
use redis::aio::ConnectionManager;

use super::committer::EpochSink;
use crate::metrics::Metrics;
use crate::postgres::{PostgresError, RowWriter, WriteOutcome};
use crate::redis::{Letter, REDRIVE_COUNT};
use crate::retry::{Class, Failure, Retry};

/// Where and as whom refused entries are dead-lettered, with the retry policy of doing so.
pub struct DeadLetters {
    pub(crate) conn: ConnectionManager,
    pub(crate) stream: String,
    pub(crate) group: String,
    pub(crate) dead_letter_stream: String,
    pub(crate) consumer: String,
    pub(crate) retry: Retry,
    pub(crate) metrics: Arc<Metrics>,
}

impl DeadLetters {
    /// Moves `letters` to the dead-letter stream (and acknowledges them, atomically), retrying
    /// until it succeeds; `false` when the drain was abandoned first.
    async fn send(&mut self, letters: &[Letter]) -> bool {
        if letters.is_empty() {
            return true;
        }
        let mut attempts = self.retry.attempts();
        loop {
            if self.retry.stopped() {
                return false;
            }
            let moved = crate::redis::dead_letter(
                &mut self.conn,
                &self.stream,
                &self.group,
                &self.dead_letter_stream,
                &self.consumer,
                letters,
            )
            .await;
            match moved {
                Ok(()) => {
                    self.retry.succeeded(&mut attempts);
                    self.metrics.dead_lettered.inc_by(letters.len() as u64);
                    return true;
                }
                Err(error) => {
                    if !self.retry.failed(&error, &mut attempts).await {
                        return false;
                    }
                }
            }
        }
    }
}

/// Writes a worker's rows of an epoch (or of a group of epochs) in one transaction.
pub struct RowSink {
    pub(crate) writer: RowWriter,
    pub(crate) worker: usize,
    pub(crate) retry: Retry,
    pub(crate) refused: DeadLetters,
    /// Fix times further ahead of the wall clock than this are counted as future timestamps.
    pub(crate) future_margin_micros: i64,
    pub(crate) metrics: Arc<Metrics>,
}

impl EpochSink<Rows> for RowSink {
    async fn commit(&mut self, epoch: Epoch, batch: &mut Batch<Rows>) -> bool {
        let started = Instant::now();
        let mut attempts = self.retry.attempts();
        let outcome = loop {
            if self.retry.stopped() {
                return false;
            }
            match self.writer.write(batch).await {
                Ok(outcome) => {
                    self.retry.succeeded(&mut attempts);
                    break outcome;
                }
                Err(error) if error.class() == Class::Permanent => {
                    let rows: Vec<&Position> = batch.positions().collect();
                    match self.isolate(epoch, &rows, &error).await {
                        Some(outcome) => {
                            self.retry.succeeded(&mut attempts);
                            break outcome;
                        }
                        None => return false,
                    }
                }
                Err(error) => {
                    if !self.retry.failed(&error, &mut attempts).await {
                        return false;
                    }
                }
            }
        };
        self.metrics.positions_written.inc_by(outcome.inserted);
        self.metrics.duplicates.inc_by(outcome.duplicates);
        self.metrics.device_latest_rows.inc_by(outcome.latest);
        let rows = self.observe_ages(batch);
        self.metrics
            .write_transactions
            .with_label_values(&[outcome.path.label()])
            .inc();
        self.metrics
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        self.metrics.batch_rows.observe(rows as f64);
        if outcome.duplicates > 0 {
            tracing::debug!(
                worker = self.worker,
                epoch,
                duplicates = outcome.duplicates,
                "positions already stored were skipped"
            );
        }
        tracing::trace!(worker = self.worker, epoch, rows, "epoch committed");
        true
    }
}

impl RowSink {
    /// Records each committed position's age (commit time minus fix time) and counts fix times
    /// in the future beyond the margin; returns how many positions there were.
    fn observe_ages(&self, batch: &Batch<Rows>) -> usize {
        let now = crate::clock::unix_micros();
        let ages = self.metrics.record_age_seconds.local();
        let mut future = 0;
        let mut rows = 0;
        for position in batch.positions() {
            let age = now.saturating_sub(position.ts_micros);
            ages.observe(age as f64 / 1e6);
            if age < -self.future_margin_micros {
                future += 1;
            }
            rows += 1;
        }
        ages.flush();
        self.metrics.future_timestamps.inc_by(future);
        rows
    }

    /// The database refused some of `batch` for its data: writes the rest, dead-letters the
    /// refused rows (each with the server's reason), and returns what was written; `None` when
    /// the drain was abandoned first.
    async fn isolate(
        &mut self,
        epoch: Epoch,
        batch: &[&Position],
        first: &PostgresError,
    ) -> Option<WriteOutcome> {
        tracing::warn!(
            worker = self.worker,
            epoch,
            rows = batch.len(),
            error = %first,
            "the database refused rows of an epoch; writing the others and dead-lettering those"
        );
        let mut attempts = self.retry.attempts();
        let isolated = loop {
            if self.retry.stopped() {
                return None;
            }
            match self.writer.isolate(batch).await {
                Ok(isolated) => break isolated,
                Err(error) => {
                    if !self.retry.failed(&error, &mut attempts).await {
                        return None;
                    }
                }
            }
        };
        if let Some(error) = &isolated.latest_refused {
            tracing::warn!(
                worker = self.worker,
                epoch,
                error = %error,
                "device_latest refused the fixes of an epoch whose positions were written; \
                 skipping them (the devices' next fixes will try again)"
            );
        }
        let letters: Vec<Letter> = isolated
            .refused
            .iter()
            .filter_map(|refusal| {
                let row = *batch.get(refusal.index)?;
                self.metrics
                    .refused_rows
                    .with_label_values(&[refusal.code.as_str()])
                    .inc();
                tracing::warn!(
                    stream_id = %row.source,
                    device_id = %row.device_id,
                    consumer = %self.refused.consumer,
                    sqlstate = %refusal.code,
                    reason = %refusal.message,
                    "row refused by the database; moving its entry to the dead-letter stream"
                );
                let mut fields = vec![("payload".into(), encode_payload(row).into())];
                if row.redrives > 0 {
                    // a redriven entry refused again shows how often it went around
                    fields.push((REDRIVE_COUNT.into(), row.redrives.to_string().into()));
                }
                Some(Letter {
                    id: row.source,
                    fields,
                    reason: refusal.reason(),
                })
            })
            .collect();
        self.refused
            .send(&letters)
            .await
            .then_some(isolated.outcome)
    }
}

/// Moves a worker's entries the codec refused, of an epoch, to the dead-letter stream.
pub struct DeadLetterSink {
    pub(crate) letters: DeadLetters,
    pub(crate) metrics: Arc<Metrics>,
}

impl EpochSink<BadEntry> for DeadLetterSink {
    async fn commit(&mut self, _epoch: Epoch, batch: &mut Batch<BadEntry>) -> bool {
        let letters: Vec<Letter> = std::mem::take(batch)
            .into_iter()
            .map(|bad| {
                self.metrics
                    .decode_errors
                    .with_label_values(&[bad.error.metric_label()])
                    .inc();
                tracing::warn!(
                    stream_id = %bad.entry.id,
                    consumer = %self.letters.consumer,
                    field = %bad.error.field,
                    reason = %bad.error.reason,
                    "entry refused; moving it to the dead-letter stream"
                );
                Letter {
                    id: bad.entry.id,
                    reason: bad.error.to_string(),
                    fields: bad.entry.fields,
                }
            })
            .collect();
        self.letters.send(&letters).await
    }
}
