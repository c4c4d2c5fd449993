//! `share_ticks`: every worker learns the latest epoch any worker of the cluster has reached.
//!
//! The epoch is a shared clock tick, but each process of a timely cluster reads its own host's
//! clock. A process whose clock runs behind holds back the frontier of the whole computation, and
//! the other processes' records wait for it before they commit. So the first worker of each
//! process sends its epoch here once per tick; the stream is broadcast to every worker, which
//! hands the largest epoch it sees to `observe` (the service moves its clock forward to it, never
//! back). The cluster then advances at the pace of its fastest clock.
//!
//! These records are not upstream of the commit sinks, so their own progress never holds back a
//! commit; they cost one small message per process and tick to each worker.

use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::StreamVec;

use crate::Epoch;

/// Broadcasts epochs and reports the largest each worker receives.
pub trait ShareTicks {
    /// Sends every epoch in the stream to every worker; on each, `observe` is called with the
    /// largest epoch received in a scheduling round (only when it is larger than any before).
    fn share_ticks(self, observe: impl FnMut(Epoch) + 'static);
}

impl ShareTicks for StreamVec<'_, Epoch, Epoch> {
    fn share_ticks(self, mut observe: impl FnMut(Epoch) + 'static) {
        let mut latest: Option<Epoch> = None;
        self.broadcast()
            .sink(Pipeline, "ShareTicks", move |(input, _frontier)| {
                let mut round = None;
                input.for_each(|_capability, epochs| {
                    round = epochs.iter().copied().chain(round).max();
                });
                if let Some(epoch) = round {
                    if latest.is_none_or(|latest| epoch > latest) {
                        latest = Some(epoch);
                        observe(epoch);
                    }
                }
            });
    }
}
