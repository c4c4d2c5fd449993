//! `fold_state`: route each position to the worker that owns its device, fold it into that
//! worker's [`StateTable`], pass it on, and when an epoch is complete, emit the newest fix of
//! each device it moved forward.
//!
//! The exchange by [`Position::device_hash`] is what makes per-device state exact: a device's
//! records meet on one worker, in one process or across a timely cluster, so no two workers ever
//! hold diverging state for the same device.
//!
//! # Why the fixes wait for the frontier
//! Positions leave at once, in their containers. The fixes of epoch `e` are gathered while `e`'s
//! records arrive and emitted when the input frontier has passed `e`: only then is the newest of
//! them known. The operator holds a capability for `e` until then, so the row sink downstream
//! cannot see `e` as complete before the fixes are in, and commits them in the same transaction
//! as `e`'s positions. A fix is the newest record *of its epoch* that moved the state forward, not
//! the state's latest (which may already come from a later epoch, still uncommitted), so the
//! table never shows a fix whose position is not yet durable.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::StreamVec;

use super::complete::take_complete;
use crate::latest::EpochLatest;
use crate::state::Folded;
use crate::{ActiveDevices, Epoch, Position, Rows, StateTable};

/// Exchanges positions by device, folds them into per-device state and emits [`Rows`].
pub trait FoldState<'scope> {
    /// Folds every position into `table` (this worker's share of the devices) and marks its
    /// device active at the record's epoch, before passing it downstream, so the state always
    /// covers what the sink is about to write. With `latest`, also emits, per complete epoch,
    /// each changed device's newest fix ([`Rows::Latest`]).
    fn fold_state(
        self,
        table: Rc<RefCell<StateTable>>,
        active: Rc<RefCell<ActiveDevices>>,
        latest: bool,
    ) -> StreamVec<'scope, Epoch, Rows>;
}

impl<'scope> FoldState<'scope> for StreamVec<'scope, Epoch, Position> {
    fn fold_state(
        self,
        table: Rc<RefCell<StateTable>>,
        active: Rc<RefCell<ActiveDevices>>,
        latest: bool,
    ) -> StreamVec<'scope, Epoch, Rows> {
        let route = Exchange::new(|position: &Position| position.device_hash());
        self.unary_frontier::<CapacityContainerBuilder<Vec<Rows>>, _, _, _>(
            route,
            "FoldState",
            move |_initial, _info| {
                let mut pending: BTreeMap<Epoch, (Capability<Epoch>, EpochLatest)> =
                    BTreeMap::new();
                move |(input, frontier), output| {
                    input.for_each_stamp(|capability, batches| {
                        let epoch = capability.least().copied().unwrap_or_default();
                        // Fixes are gathered under a capability held for the epoch (messages
                        // with an empty stamp claim no time, and cannot be waited for).
                        let mut changes = match (latest, capability.least()) {
                            (true, Some(&time)) => {
                                let (_, changes) = pending.entry(time).or_insert_with(|| {
                                    (capability.delayed(&time, 0), EpochLatest::default())
                                });
                                Some(changes)
                            }
                            _ => None,
                        };
                        let mut session = output.session(&capability);
                        let mut table = table.borrow_mut();
                        let mut active = active.borrow_mut();
                        for batch in batches {
                            for position in batch.iter() {
                                let folded = table.fold(position);
                                if let (Folded::Newest, Some(changes)) = (folded, changes.as_mut())
                                {
                                    changes.offer(position);
                                }
                                active.observe(position.device_hash(), epoch);
                            }
                            session.give(Rows::Positions(std::mem::take(batch)));
                        }
                    });
                    for (_, (capability, changes)) in take_complete(&mut pending, frontier) {
                        if !changes.is_empty() {
                            output
                                .session(&capability)
                                .give(Rows::Latest(changes.into_fixes()));
                        }
                    }
                }
            },
        )
    }
}
