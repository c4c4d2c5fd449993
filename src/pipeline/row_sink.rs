//! The row sink: a worker's rows of an epoch (or of a group of epochs) to PostgreSQL, in one
//! transaction.
//!
//! It retries until the write succeeds (or the drain is abandoned), under the one retry policy
//! (`crate::retry`): an epoch is reported committed only when its rows are durable, because that
//! report lets the epoch's stream ids be acknowledged. Rows the database refuses for their data
//! are the one exception to "retry": they are found ([`EpochWriter::isolate`]) and
//! dead-lettered, and the rest is written, so one bad row never stalls the stream.

use std::sync::Arc;
use std::time::Instant;

use dataflow::codec::encode_payload;
use dataflow::{Batch, Epoch, Rows};

use super::committer::EpochSink;
use super::dead_letter_sink::DeadLetters;
use crate::metrics::Metrics;
use crate::postgres::{
    EpochWriter, IsolateError, PostgresError, TableChanges, WriteOutcome, DEVICE_LATEST, POSITIONS,
    TRIPS,
};
use crate::redis::{Letter, REDRIVE_COUNT};
use crate::retry::{Class, Failure, GaveUp, Retry, System};

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
                POSITIONS => {
                    self.metrics.positions_written.inc_by(changes.inserted);
                    self.metrics.duplicates.inc_by(changes.duplicates);
                    duplicates = changes.duplicates;
                }
                DEVICE_LATEST => self
                    .metrics
                    .device_latest_rows
                    .inc_by(changes.inserted + changes.updated),
                TRIPS => {
                    self.metrics.trips_late_changes.inc_by(changes.late);
                    self.metrics.trips_devices_read.inc_by(changes.read_back);
                }
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
        let rows = batch.positions().count();
        tracing::warn!(
            worker = self.worker,
            epoch,
            rows,
            error = %first,
            "the database refused rows of an epoch; writing the others and dead-lettering those"
        );
        // While the database refuses every row, the epoch is held: its rows are counted in
        // processor_refused_rows_held until it lands (or the drain is abandoned).
        let held_rows = i64::try_from(rows).unwrap_or(i64::MAX);
        let held = &self.metrics.refused_rows_held;
        let ((_, holding), isolated) = self
            .retry
            .run_with((&mut self.writer, false), |(writer, holding)| async move {
                let isolated = writer.isolate(batch).await.map_err(Unisolated);
                let holds = matches!(&isolated, Err(Unisolated(IsolateError::Systematic(_))));
                if holds && !holding {
                    held.add(held_rows);
                }
                ((writer, holding || holds), isolated)
            })
            .await;
        if holding {
            held.sub(held_rows);
        }
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

/// A failure of isolating refused rows that is not about one row's data: a connection lost, a
/// deferred constraint at commit, or the database refusing every row. Retried, never permanent:
/// the rows' own data errors were already handled one by one, and retrying is the only way on.
/// A database refusing every row is stalled (an `ERROR`, `/readyz` failing) until it is fixed.
struct Unisolated(IsolateError);

impl std::fmt::Display for Unisolated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl Failure for Unisolated {
    fn class(&self) -> Class {
        match &self.0 {
            IsolateError::Postgres(error) => match error.class() {
                Class::Permanent => Class::Stalled,
                class => class,
            },
            IsolateError::Systematic(_) => Class::Stalled,
        }
    }

    fn system(&self) -> System {
        System::Postgres
    }

    fn command(&self) -> &'static str {
        "write"
    }
}
