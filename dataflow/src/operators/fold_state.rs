//! `fold_state`: route each position to the worker that owns its device, fold it into that
//! worker's [`StateTable`], and pass it on unchanged.
//!
//! The exchange by [`Position::device_hash`] is what makes per-device state exact: a device's
//! records meet on one worker, in one process or across a timely cluster, so no two workers ever
//! hold diverging state for the same device.

use std::cell::RefCell;
use std::rc::Rc;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::StreamVec;

use crate::{ActiveDevices, Epoch, Position, StateTable};

/// Exchanges positions by device and folds them into per-device state.
pub trait FoldState<'scope> {
    /// Folds every position into `table` (this worker's share of the devices) and marks its
    /// device active at the record's epoch, before passing it downstream, so the state always
    /// covers what the sink is about to write.
    fn fold_state(
        self,
        table: Rc<RefCell<StateTable>>,
        active: Rc<RefCell<ActiveDevices>>,
    ) -> StreamVec<'scope, Epoch, Position>;
}

impl<'scope> FoldState<'scope> for StreamVec<'scope, Epoch, Position> {
    fn fold_state(
        self,
        table: Rc<RefCell<StateTable>>,
        active: Rc<RefCell<ActiveDevices>>,
    ) -> StreamVec<'scope, Epoch, Position> {
        let route = Exchange::new(|position: &Position| position.device_hash());
        self.unary::<CapacityContainerBuilder<Vec<Position>>, _, _, _>(
            route,
            "FoldState",
            move |_capability, _info| {
                move |input, output| {
                    input.for_each_stamp(|capability, batches| {
                        let epoch = capability.least().copied().unwrap_or_default();
                        let mut session = output.session(&capability);
                        let mut table = table.borrow_mut();
                        let mut active = active.borrow_mut();
                        for batch in batches {
                            for position in batch.iter() {
                                table.fold(position);
                                active.observe(position.device_hash(), epoch);
                            }
                            session.give_container(batch);
                        }
                    });
                }
            },
        )
    }
}
