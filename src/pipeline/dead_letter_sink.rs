//! The dead-letter sink: entries the codec refused, of an epoch, moved to the dead-letter stream;
//! and [`DeadLetters`], the move itself, which the row sink uses too for rows the database
//! refuses.
//!
//! The move retries until it succeeds (or the drain is abandoned), under the one retry policy
//! (`crate::retry`): an epoch is reported committed only when its dead letters are durable,
//! because that report lets the epoch's stream ids be acknowledged.

use std::sync::Arc;

use dataflow::operators::BadEntry;
use dataflow::{Batch, Epoch};
use redis::aio::ConnectionManager;

use super::committer::EpochSink;
use crate::metrics::Metrics;
use crate::redis::Letter;
use crate::retry::{GaveUp, Retry};

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
    pub(crate) async fn send(&mut self, letters: &[Letter]) -> bool {
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
