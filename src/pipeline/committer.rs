//! The bridge between a sink operator (on a timely worker thread) and its async writer task.
//!
//! The operator must never block, so `submit` only queues the batch; a tokio task commits it
//! (retrying as long as it takes) and reports the epoch back through a channel, then wakes the
//! operator with its `SyncActivator`. The operator releases the epoch's capability when it
//! reads that report: the epoch is durable.

use std::future::Future;
use std::sync::mpsc;

use dataflow::operators::Committer;
use dataflow::Epoch;
use timely::scheduling::SyncActivator;
use tokio::runtime::Handle;

/// Makes one epoch's batch durable; implemented by the row writer and the dead-letter writer.
pub trait EpochSink<D>: Send + 'static {
    /// Commits `batch`, retrying transient failures. Returns `false` only when it gave up because
    /// the shutdown drain was abandoned; the epoch is then never reported committed.
    fn commit(&mut self, epoch: Epoch, batch: Vec<D>) -> impl Future<Output = bool> + Send;
}

/// The [`Committer`] a sink operator holds: a queue to the task and a queue back.
pub struct TaskCommitter<D> {
    requests: tokio::sync::mpsc::UnboundedSender<(Epoch, Vec<D>)>,
    committed: mpsc::Receiver<Epoch>,
}

/// Starts the task that runs `sink`; commits happen one at a time, in submission order.
pub fn spawn_committer<D, S>(
    runtime: &Handle,
    mut sink: S,
    activator: SyncActivator,
) -> TaskCommitter<D>
where
    D: Send + 'static,
    S: EpochSink<D>,
{
    let (requests, mut queue) = tokio::sync::mpsc::unbounded_channel::<(Epoch, Vec<D>)>();
    let (done, committed) = mpsc::channel();
    runtime.spawn(async move {
        while let Some((epoch, batch)) = queue.recv().await {
            if !sink.commit(epoch, batch).await {
                break;
            }
            if done.send(epoch).is_err() {
                break; // the worker is gone
            }
            // Wake the operator so it releases the capability without waiting for other work.
            let _ = activator.activate();
        }
    });
    TaskCommitter {
        requests,
        committed,
    }
}

impl<D> Committer<D> for TaskCommitter<D> {
    fn submit(&mut self, epoch: Epoch, batch: Vec<D>) {
        // Fails only when the task has ended (abandoned shutdown): the epoch then stays
        // uncommitted and its entries stay pending in Redis, which is the safe outcome.
        let _ = self.requests.send((epoch, batch));
    }

    fn poll_committed(&mut self, committed: &mut Vec<Epoch>) {
        committed.extend(self.committed.try_iter());
    }
}
