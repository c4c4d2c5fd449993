//! Devices active in a sliding window of epochs, maintained incrementally in the fold.
//!
//! A plain structure rather than a differential-dataflow collection: the question asked of it is
//! only "how many devices sent something in the last W", each device lives on exactly one worker
//! (the exchange by device), so the per-worker counts add up to the exact total, and a hash map
//! of `device hash -> last epoch` answers it with one map write per record. Expired devices are
//! swept out in bulk every `W/16`, so the count may include devices up to `W/16` past the window.
//! docs/design.md records the measured cost and why differential-dataflow was not needed here.

use crate::hashing::KeyMap;
use crate::Epoch;

/// Devices seen per worker within the last `window` epochs.
#[derive(Debug)]
pub struct ActiveDevices {
    window: Epoch,
    sweep_every: Epoch,
    swept_at: Epoch,
    last_seen: KeyMap<u64, Epoch>,
}

impl ActiveDevices {
    /// A window of `window` epochs (at least 1).
    pub fn new(window: Epoch) -> Self {
        let window = window.max(1);
        ActiveDevices {
            window,
            sweep_every: (window / 16).max(1),
            swept_at: 0,
            last_seen: KeyMap::default(),
        }
    }

    /// Records that the device with this hash sent a record at `epoch`.
    pub fn observe(&mut self, device_hash: u64, epoch: Epoch) {
        let last = self.last_seen.entry(device_hash).or_insert(epoch);
        *last = (*last).max(epoch);
    }

    /// Devices seen within the window ending at `now` (sweeping out expired ones when due).
    pub fn count(&mut self, now: Epoch) -> usize {
        if now >= self.swept_at.saturating_add(self.sweep_every) {
            let window = self.window;
            self.last_seen
                .retain(|_, last| last.saturating_add(window) > now);
            self.swept_at = now;
        }
        self.last_seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_leave_the_window() {
        let mut active = ActiveDevices::new(16);
        active.observe(1, 100);
        active.observe(2, 105);
        active.observe(1, 103);
        assert_eq!(active.count(105), 2);
        // device 1 was last seen at 103: gone once 103 + 16 <= now
        assert_eq!(active.count(119), 1);
        assert_eq!(active.count(121), 0);
        // a replayed old record does not move a device back in time
        active.observe(3, 130);
        active.observe(3, 120);
        assert_eq!(active.count(145), 1);
        assert_eq!(active.count(146), 0);
    }
}
