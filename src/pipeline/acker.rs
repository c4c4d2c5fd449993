//! A worker's acknowledgement task: XACK of ids whose epoch is committed everywhere.
//!
//! Requests are coalesced (everything queued goes into one XACK). A failed XACK is retried with
//! backoff, never dropped: an id left unacknowledged would be redelivered and written again,
//! harmlessly (`ON CONFLICT DO NOTHING`), but counted as a duplicate. XACK of an id that is no
//! longer pending (or of a group that no longer exists) counts 0 and succeeds.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::sync::mpsc;

use super::sinks::pause;
use crate::metrics::Metrics;
use crate::retry::Backoff;
use crate::shutdown::Shutdown;

/// Ids to acknowledge, and why.
#[derive(Debug)]
pub enum AckRequest {
    /// Their epoch is committed on every worker.
    Committed(Vec<String>),
    /// They were pending but their entries no longer exist in the stream.
    Deleted(Vec<String>),
}

/// Acknowledges until every sender is dropped and the queue is empty; `true` when everything
/// queued was acknowledged, `false` when the drain was abandoned first.
pub async fn ack_loop(
    mut requests: mpsc::UnboundedReceiver<AckRequest>,
    mut conn: ConnectionManager,
    stream: String,
    group: String,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
    retry_max: Duration,
) -> bool {
    let mut backoff = Backoff::new(Duration::from_millis(50), retry_max);
    while let Some(first) = requests.recv().await {
        let (mut committed, mut deleted) = (Vec::new(), Vec::new());
        let mut take = |request| match request {
            AckRequest::Committed(mut ids) => committed.append(&mut ids),
            AckRequest::Deleted(mut ids) => deleted.append(&mut ids),
        };
        take(first);
        while let Ok(more) = requests.try_recv() {
            take(more);
        }
        // One XACK for both kinds: the committed ids first, then the deleted ones.
        let committed_count = committed.len();
        let deleted_count = deleted.len() as u64;
        let mut ids = committed;
        ids.append(&mut deleted);
        loop {
            match crate::redis::ack(&mut conn, &stream, &group, &ids).await {
                Ok(_) => {
                    backoff.reset();
                    metrics.entries_acked.inc_by(committed_count as u64);
                    observe_latency(&metrics, &ids[..committed_count]);
                    metrics.deleted_pending.inc_by(deleted_count);
                    break;
                }
                Err(error) => {
                    metrics
                        .redis_errors
                        .with_label_values(&[error.operation()])
                        .inc();
                    tracing::warn!(count = ids.len(), error = %error, "acknowledgement failed; retrying");
                    if !pause(&mut backoff, &shutdown).await {
                        return false;
                    }
                }
            }
        }
    }
    true
}

/// Observes, for each acknowledged id, the time from its stream id (when Redis appended the
/// entry) to now (its acknowledgement after commit).
fn observe_latency(metrics: &Metrics, ids: &[String]) {
    let now = crate::clock::unix_ms();
    for id in ids {
        if let Some(appended) = dataflow::stream_id_millis(id) {
            let millis = now.saturating_sub(appended);
            metrics.end_to_end_seconds.observe(millis as f64 / 1000.0);
        }
    }
}
