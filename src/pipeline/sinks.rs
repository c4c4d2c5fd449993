//! The two epoch sinks: rows to PostgreSQL, refused entries to the dead-letter stream.
//!
//! Both retry until they succeed (or the drain is abandoned), under the one retry policy
//! (`crate::retry`): an epoch is reported committed only when its side effect is durable, because
//! that report lets the epoch's stream ids be acknowledged. Rows the database refuses for their
//! data are the one exception to "retry": they are found ([`EpochWriter::isolate`]) and
//! dead-lettered, and the rest is written, so one bad row never stalls the stream.

use std::sync::Arc;
use std::time::Instant;

use dataflow::codec::encode_payload;
use dataflow::operators::BadEntry;
use dataflow::{Batch, Epoch, Rows};
use redis::aio::ConnectionManager;

use super::committer::EpochSink;
use crate::metrics::Metrics;
use crate::postgres::{EpochWriter, PostgresError, TableChanges, WriteOutcome};
use crate::redis::{Letter, REDRIVE_COUNT};
use crate::retry::{Class, Failure, GaveUp, Retry, System};

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
        let (stream, group, dead, consumer) = (
            &self.stream,
            &self.group,
            &self.dead_letter_stream,
            &self.consumer,
        );
        let (_, moved) = self
            .retry
            .run_with(&mut self.conn, |conn| async move {
                let moved =
                    crate::redis::dead_letter(conn, stream, group, dead, consumer, letters).await;
                (conn, moved)
            })
            .await;
        match moved {
            Ok(()) => {
                self.metrics.dead_lettered.inc_by(letters.len() as u64);
                true
            }
            // (a Redis failure is never permanent: only the abandoned drain stops this)
            Err(GaveUp::Shutdown | GaveUp::Permanent(_)) => false,
        }
    }
}

/// Writes a worker's rows of an epoch (or of a group of epochs) in one transaction.
pub struct RowSink {
    pub(crate) writer: EpochWriter,
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
        let batch: &Batch<Rows> = batch;
        let (_, written) = self
            .retry
            .run_with(&mut self.writer, |writer| async move {
                let written = writer.write(batch).await;
                (writer, written)
            })
            .await;
        let outcome = match written {
            Ok(outcome) => outcome,
            Err(GaveUp::Permanent(error)) => match self.isolate(epoch, batch, &error).await {
                Some(outcome) => outcome,
                None => return false,
            },
            Err(GaveUp::Shutdown) => return false,
        };
        let duplicates = self.count(&outcome);
        let rows = self.observe_ages(batch);
        self.metrics
            .write_transactions
            .with_label_values(&[outcome.path.label()])
            .inc();
        self.metrics
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        self.metrics.batch_rows.observe(rows as f64);
        if duplicates > 0 {
            tracing::debug!(
                worker = self.worker,
                epoch,
                duplicates,
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

    /// Counts what `outcome` changed, table by table; returns the positions that were
    /// duplicates.
    fn count(&self, outcome: &WriteOutcome) -> u64 {
        let mut duplicates = 0;
        for TableChanges { table, changes } in &outcome.tables {
            for (change, rows) in changes.by_kind() {
                if rows > 0 {
                    self.metrics
                        .table_rows
                        .with_label_values(&[table, change])
                        .inc_by(rows);
                }
            }
            // the per-table counters that came first, kept for the dashboards that use them
            match *table {
                "positions" => {
                    self.metrics.positions_written.inc_by(changes.inserted);
                    self.metrics.duplicates.inc_by(changes.duplicates);
                    duplicates = changes.duplicates;
                }
                "device_latest" => self
                    .metrics
                    .device_latest_rows
                    .inc_by(changes.inserted + changes.updated),
                _ => {}
            }
        }
        duplicates
    }

    /// The database refused some of `batch` for its data: writes the rest, dead-letters the
    /// refused rows (each with the server's reason), and returns what was written; `None` when
    /// the drain was abandoned first.
    async fn isolate(
        &mut self,
        epoch: Epoch,
        batch: &Batch<Rows>,
        first: &PostgresError,
    ) -> Option<WriteOutcome> {
        tracing::warn!(
            worker = self.worker,
            epoch,
            rows = batch.len(),
            error = %first,
            "the database refused rows of an epoch; writing the others and dead-lettering those"
        );
        let (_, isolated) = self
            .retry
            .run_with(&mut self.writer, |writer| async move {
                let isolated = writer.isolate(batch).await.map_err(Unisolated);
                (writer, isolated)
            })
            .await;
        // (never permanent: see Unisolated)
        let isolated = isolated.ok()?;
        for (table, error) in &isolated.derived_refused {
            tracing::warn!(
                worker = self.worker,
                epoch,
                table,
                error = %error,
                "a derived table refused the rows of an epoch whose positions were written; \
                 skipping them (the devices' next fixes will try again)"
            );
        }
        let letters: Vec<Letter> = isolated
            .refused
            .iter()
            .map(|(row, refusal)| {
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
                Letter {
                    id: row.source,
                    fields,
                    reason: refusal.reason(),
                }
            })
            .collect();
        let outcome = isolated.outcome;
        self.refused.send(&letters).await.then_some(outcome)
    }
}

/// A failure of isolating refused rows that is not about one row's data (a connection lost, a
/// deferred constraint at commit): retried, never permanent, since the rows' own data errors were
/// already handled one by one and retrying is the only way on.
struct Unisolated(PostgresError);

impl std::fmt::Display for Unisolated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl Failure for Unisolated {
    fn class(&self) -> Class {
        match self.0.class() {
            Class::Permanent => Class::Stalled,
            class => class,
        }
    }

    fn system(&self) -> System {
        self.0.system()
    }

    fn command(&self) -> &'static str {
        self.0.command()
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
