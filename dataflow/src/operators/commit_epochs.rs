//! `commit_epochs`: the sink that makes an epoch durable and only then lets time move on.
//!
//! # Frontiers and commits
//! Records of epoch `e` are stashed together with a capability for `e`. The stash is handed to
//! the [`Committer`] once the operator's *input* frontier has passed `e`: from then on no record
//! of `e` can still arrive on this worker (every source has advanced beyond `e` and everything
//! sent at `e`, including over the exchange, has been delivered). The capability for `e` is kept
//! while the commit runs and dropped only when the committer reports `e` durable. So this
//! operator's *output* frontier passing `e` means "this worker has committed all of `e`", and a
//! probe downstream of every worker's sink passing `e` means "all of `e` is committed everywhere".
//! That probe is what the sources consult before acknowledging the stream ids of `e`.
//!
//! The commit itself runs outside the worker thread (on an async runtime): the operator must not
//! block, or it would stall every other operator on the worker. The committer wakes the operator
//! through the [`SyncActivator`] it was built with when a commit finishes.

use std::collections::BTreeMap;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::StreamVec;
use timely::scheduling::SyncActivator;

use super::complete::take_complete;
use crate::{Batch, Epoch};

/// The I/O edge of [`CommitEpochs`]: makes batches durable, asynchronously.
pub trait Committer<D> {
    /// Starts making `batch` durable: every record this worker holds for `epoch`, handed over
    /// once, after the epoch is complete on this worker. Must not block.
    fn submit(&mut self, epoch: Epoch, batch: Batch<D>);
    /// Appends to `committed` the epochs whose batches became durable since the last call. An
    /// epoch is reported once; a failed commit is retried by the committer, never reported.
    fn poll_committed(&mut self, committed: &mut Vec<Epoch>);
}

/// Commits each epoch's records and holds the epoch open until the commit succeeded.
pub trait CommitEpochs<'scope, D> {
    /// Sinks the stream into a committer built by `make` (which receives the activator that wakes
    /// this operator). The returned stream carries no data; its frontier is the commit frontier.
    fn commit_epochs<C, F>(self, name: &str, make: F) -> StreamVec<'scope, Epoch, ()>
    where
        C: Committer<D> + 'static,
        F: FnOnce(SyncActivator) -> C;
}

impl<'scope, D: Clone + 'static> CommitEpochs<'scope, D> for StreamVec<'scope, Epoch, D> {
    fn commit_epochs<C, F>(self, name: &str, make: F) -> StreamVec<'scope, Epoch, ()>
    where
        C: Committer<D> + 'static,
        F: FnOnce(SyncActivator) -> C,
    {
        let worker = self.scope().worker();
        self.unary_frontier::<CapacityContainerBuilder<Vec<()>>, _, _, _>(
            Pipeline,
            name,
            move |_initial, info| {
                // `_initial` (for time 0) is dropped here: only epochs holding records keep the
                // output frontier back.
                let mut committer = make(worker.sync_activator_for(info.address.to_vec()));
                let mut stash: BTreeMap<Epoch, (Capability<Epoch>, Batch<D>)> = BTreeMap::new();
                let mut committing: BTreeMap<Epoch, Capability<Epoch>> = BTreeMap::new();
                let mut committed = Vec::new();
                move |(input, frontier), _output| {
                    input.for_each_stamp(|capability, batches| {
                        if let Some(capability) = capability.retain_least(0) {
                            let (_, records) = stash
                                .entry(*capability.time())
                                .or_insert_with(|| (capability, Batch::new()));
                            // the containers move into the stash; their records are not copied
                            for batch in batches {
                                records.push(std::mem::take(batch));
                            }
                        }
                    });
                    // Complete epochs: nothing at their time can arrive here any more.
                    for (epoch, (capability, records)) in take_complete(&mut stash, frontier) {
                        committer.submit(epoch, records);
                        committing.insert(epoch, capability);
                    }
                    // Durable: release the capability, letting the output frontier (and so the
                    // acknowledgement probe) pass the epoch once no earlier epoch is still held.
                    committer.poll_committed(&mut committed);
                    for epoch in committed.drain(..) {
                        committing.remove(&epoch);
                    }
                }
            },
        )
    }
}
