//! The bridge between a sink operator (on a timely worker thread) and its async writer task.
//!
//! The operator must never block, so `submit` only queues the batch; a tokio task commits it
//! (retrying as long as it takes) and reports the epoch back through a channel, then wakes the
//! operator with its `SyncActivator`. The operator releases the epoch's capability when it
//! reads that report: the epoch is durable.
//!
//! # Group commit
//! Epochs that queued up while a commit was running are committed together, in one transaction,
//! and then all reported. Each epoch is still all-or-nothing (it is wholly inside that
//! transaction), so nothing about acknowledgement changes; what changes is that a busy writer
//! pays one transaction's fixed cost (its round trips and its WAL flush) per group instead of per
//! epoch. Under light load every epoch commits alone, so short epochs keep latency low; under
//! heavy load the transactions grow by themselves to what the database can absorb. The group is
//! bounded by the worker's backpressure (`MAX_INFLIGHT_EPOCHS`, and that times `READ_COUNT`
//! entries), which also bounds what the queue can hold.
//!
//! # Where a batch is freed
//! The committed batch goes back with the group's report and is dropped by the operator, on the
//! worker thread that decoded (and so allocated) its records. Dropped by the task instead, every
//! record's strings were freed from another thread than the one that allocated them, which the
//! allocator (mimalloc) handles through a cross-thread queue the worker then has to collect: 6-7%
//! of the processor's CPU in a profile, for nothing.

use std::future::Future;
use std::sync::mpsc;

use dataflow::operators::Committer;
use dataflow::{Batch, Epoch};
use timely::scheduling::SyncActivator;
use tokio::runtime::Handle;

/// Makes a batch durable; implemented by the row writer and the dead-letter writer.
pub trait EpochSink<D>: Send + 'static {
    /// Commits `batch`, all the data of one or more epochs (`epoch` is the latest of them, for
    /// logs), atomically, retrying transient failures. Returns `false` only when it gave up
    /// because the shutdown drain was abandoned; the epochs are then never reported committed.
    /// The batch stays the caller's (see "Where a batch is freed"); a sink may take what it needs
    /// out of it.
    fn commit(&mut self, epoch: Epoch, batch: &mut Batch<D>) -> impl Future<Output = bool> + Send;
}

/// The [`Committer`] a sink operator holds: a queue to the task and a queue back.
pub struct TaskCommitter<D> {
    requests: tokio::sync::mpsc::UnboundedSender<(Epoch, Batch<D>)>,
    /// Committed groups: their epochs, and their batch, to be dropped here.
    committed: mpsc::Receiver<(Vec<Epoch>, Batch<D>)>,
}

/// Starts the task that runs `sink`; commits happen one at a time, in submission order, each
/// taking every epoch queued by then (group commit).
pub fn spawn_committer<D, S>(
    runtime: &Handle,
    mut sink: S,
    activator: SyncActivator,
) -> TaskCommitter<D>
where
    D: Send + 'static,
    S: EpochSink<D>,
{
    let (requests, mut queue) = tokio::sync::mpsc::unbounded_channel::<(Epoch, Batch<D>)>();
    let (done, committed) = mpsc::channel();
    runtime.spawn(async move {
        while let Some(first) = queue.recv().await {
            let (epochs, mut batch) = take_group(first, &mut queue);
            let latest = epochs.iter().copied().max().unwrap_or_default();
            if !sink.commit(latest, &mut batch).await {
                break;
            }
            if done.send((epochs, batch)).is_err() {
                break; // the worker is gone
            }
            // Wake the operator so it releases the capabilities without waiting for other work.
            let _ = activator.activate();
        }
    });
    TaskCommitter {
        requests,
        committed,
    }
}

/// `first` and every request already queued behind it: their epochs, in order, and their data as
/// one batch (the containers move; the records are not copied).
fn take_group<D>(
    first: (Epoch, Batch<D>),
    queue: &mut tokio::sync::mpsc::UnboundedReceiver<(Epoch, Batch<D>)>,
) -> (Vec<Epoch>, Batch<D>) {
    let (epoch, mut batch) = first;
    let mut epochs = vec![epoch];
    while let Ok((epoch, more)) = queue.try_recv() {
        epochs.push(epoch);
        batch.append(more);
    }
    (epochs, batch)
}

impl<D> Committer<D> for TaskCommitter<D> {
    fn submit(&mut self, epoch: Epoch, batch: Batch<D>) {
        // Fails only when the task has ended (abandoned shutdown): the epoch then stays
        // uncommitted and its entries stay pending in Redis, which is the safe outcome.
        let _ = self.requests.send((epoch, batch));
    }

    fn poll_committed(&mut self, committed: &mut Vec<Epoch>) {
        for (epochs, spent) in self.committed.try_iter() {
            committed.extend(epochs);
            drop(spent); // here, on the worker thread
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_takes_every_queued_epoch_in_order() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        tx.send((8, Batch::from(vec!["c"]))).expect("open");
        tx.send((9, Batch::from(vec!["d", "e"]))).expect("open");
        let (epochs, batch) = take_group((7, Batch::from(vec!["a", "b"])), &mut rx);
        assert_eq!(epochs, vec![7, 8, 9]);
        assert_eq!(
            batch.into_iter().collect::<Vec<_>>(),
            vec!["a", "b", "c", "d", "e"]
        );
        // nothing queued: the group is the first request alone
        let (epochs, batch) = take_group((10, Batch::from(vec!["f"])), &mut rx);
        assert_eq!(epochs, vec![10]);
        assert_eq!(batch.into_iter().collect::<Vec<_>>(), vec!["f"]);
    }

    /// Records its drop's thread.
    struct Traced(std::sync::Arc<std::sync::Mutex<Vec<std::thread::ThreadId>>>);

    impl Drop for Traced {
        fn drop(&mut self) {
            if let Ok(mut threads) = self.0.lock() {
                threads.push(std::thread::current().id());
            }
        }
    }

    /// Commits everything at once.
    struct Accept;

    impl EpochSink<Traced> for Accept {
        async fn commit(&mut self, _epoch: Epoch, _batch: &mut Batch<Traced>) -> bool {
            true
        }
    }

    #[test]
    fn a_committed_batch_is_dropped_on_the_worker_thread() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .expect("runtime");
        let dropped = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let traced = dropped.clone();
        timely::execute_directly(move |worker| {
            let activator = worker.sync_activator_for(vec![0]);
            let mut committer = spawn_committer(runtime.handle(), Accept, activator);
            let records = vec![Traced(traced.clone()), Traced(traced.clone())];
            committer.submit(3, Batch::from(records));
            let mut committed = Vec::new();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while committed.is_empty() && std::time::Instant::now() < deadline {
                committer.poll_committed(&mut committed);
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            assert_eq!(committed, vec![3]);
        });
        let threads = dropped.lock().expect("lock").clone();
        assert_eq!(
            threads,
            vec![std::thread::current().id(); 2],
            "both records were dropped by the operator's thread, not the commit task's"
        );
    }
}
