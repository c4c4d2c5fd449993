//! A worker's acknowledgement task: XACK of ids whose epoch is committed everywhere.
//!
//! Requests are coalesced (everything queued goes into one XACK). A failed XACK is retried under
//! the retry policy, never dropped: an id left unacknowledged would be redelivered and written
//! again, harmlessly (`ON CONFLICT DO NOTHING`), but counted as a duplicate. XACK of an id that is
//! no longer pending (or of a group that no longer exists) counts 0 and succeeds.
//!
//! The XACK runs in a script that also reads where the group stands, atomically, and the
//! process's resume point advances with it (see `redis::resume`): when the group vanishes, it is
//! created again right after what the last acknowledgement left committed.

use std::sync::Arc;

use dataflow::StreamId;
use redis::aio::ConnectionManager;
use tokio::sync::mpsc;

use crate::metrics::Metrics;
use crate::redis::ResumePoint;
use crate::retry::{GaveUp, Retry};

/// Ids to acknowledge, and why.
#[derive(Debug)]
pub enum AckRequest {
    /// Their epoch is committed on every worker.
    Committed(Vec<StreamId>),
    /// They were pending but their entries no longer exist in the stream.
    Deleted(Vec<StreamId>),
}

/// What the acknowledger works with.
pub struct Acker {
    pub(crate) conn: ConnectionManager,
    pub(crate) stream: String,
    pub(crate) group: String,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) retry: Retry,
    /// The process's resume point, advanced after every acknowledgement.
    pub(crate) resume: Arc<ResumePoint>,
}

/// Acknowledges until every sender is dropped and the queue is empty; `true` when everything
/// queued was acknowledged, `false` when the drain was abandoned first.
pub async fn ack_loop(mut requests: mpsc::UnboundedReceiver<AckRequest>, mut acker: Acker) -> bool {
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
        let (stream, group, ids) = (&acker.stream, &acker.group, &ids);
        let (_, acked) = acker
            .retry
            .run_with(&mut acker.conn, |conn| async move {
                let acked = crate::redis::ack_and_locate(conn, stream, group, ids).await;
                (conn, acked)
            })
            .await;
        match acked {
            Ok((_, position)) => {
                if let Some(position) = position {
                    acker.resume.advance(position.resume_point());
                }
                acker.metrics.entries_acked.inc_by(committed_count as u64);
                observe_latency(&acker.metrics, &ids[..committed_count]);
                acker.metrics.deleted_pending.inc_by(deleted_count);
            }
            // (a Redis failure is never permanent: only the abandoned drain stops this)
            Err(GaveUp::Shutdown | GaveUp::Permanent(_)) => return false,
        }
    }
    true
}

/// Observes, for each acknowledged id, the time from its stream id (when Redis appended the
/// entry) to now (its acknowledgement after commit). Into a local copy of the histogram, added to
/// the shared one once: the shared one's atomic updates, per row, were a cost of their own.
fn observe_latency(metrics: &Metrics, ids: &[StreamId]) {
    let now = crate::clock::unix_ms();
    let local = metrics.end_to_end_seconds.local();
    for id in ids {
        let millis = now.saturating_sub(id.ms);
        local.observe(millis as f64 / 1000.0);
    }
    local.flush();
}
