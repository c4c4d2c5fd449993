//! The stream ids a worker has read, by epoch, until their epoch is committed everywhere.

use std::collections::BTreeMap;

use dataflow::{Epoch, StreamId};

/// Ids read per epoch, waiting for the commit frontier to pass their epoch.
#[derive(Debug, Default)]
pub struct InFlight {
    epochs: BTreeMap<Epoch, Vec<StreamId>>,
    entries: usize,
}

impl InFlight {
    /// Records ids read and stamped with `epoch`.
    pub fn record(&mut self, epoch: Epoch, ids: impl IntoIterator<Item = StreamId>) {
        let held = self.epochs.entry(epoch).or_default();
        let before = held.len();
        held.extend(ids);
        self.entries += held.len() - before;
    }

    /// Entries not yet acknowledged.
    pub fn entries(&self) -> usize {
        self.entries
    }

    /// Epochs holding ids that are not yet acknowledged (what backpressure counts).
    pub fn epochs(&self) -> usize {
        self.epochs.len()
    }

    /// Whether nothing waits for acknowledgement.
    pub fn is_empty(&self) -> bool {
        self.epochs.is_empty()
    }

    /// Removes and returns the ids of every epoch for which `committed(epoch)` holds, oldest
    /// first, stopping at the first epoch that is not committed (a later epoch is never
    /// acknowledged before an earlier one).
    pub fn take_committed(&mut self, committed: impl Fn(Epoch) -> bool) -> Vec<StreamId> {
        let mut ids = Vec::new();
        while let Some(entry) = self.epochs.first_entry() {
            if !committed(*entry.key()) {
                break;
            }
            ids.append(&mut entry.remove());
        }
        self.entries -= ids.len();
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ms: u64) -> StreamId {
        StreamId::new(ms, 0)
    }

    #[test]
    fn releases_only_a_committed_prefix() {
        let mut inflight = InFlight::default();
        inflight.record(3, [id(1)]);
        inflight.record(5, [id(2), id(3)]);
        inflight.record(3, [id(4)]);
        assert_eq!(inflight.epochs(), 2);
        assert_eq!(inflight.entries(), 4);
        assert!(inflight.take_committed(|e| e < 3).is_empty());
        assert_eq!(inflight.take_committed(|e| e < 5), vec![id(1), id(4)]);
        assert_eq!(inflight.take_committed(|e| e < 6), vec![id(2), id(3)]);
        assert!(inflight.is_empty());
        assert_eq!(inflight.entries(), 0);
    }
}
