//! The one rule for when an epoch is complete on a worker, shared by the operators that wait
//! for it.

use std::collections::BTreeMap;

use timely::progress::frontier::MutableAntichain;

use crate::Epoch;

/// Takes out of `stash`, oldest first, every epoch the input `frontier` has passed.
///
/// An epoch is complete on this worker when the frontier is no longer `<=` it: every source has
/// advanced beyond it and everything sent at it, over the exchange too, has been delivered.
/// Epochs complete in order, so the scan stops at the first one the frontier still covers.
pub(crate) fn take_complete<'a, T>(
    stash: &'a mut BTreeMap<Epoch, T>,
    frontier: &'a MutableAntichain<Epoch>,
) -> impl Iterator<Item = (Epoch, T)> + 'a {
    std::iter::from_fn(move || {
        let entry = stash.first_entry()?;
        if frontier.less_equal(entry.key()) {
            return None;
        }
        let epoch = *entry.key();
        Some((epoch, entry.remove()))
    })
}
