//! Each device's newest fix, per epoch: what the `device_latest` table is written from.
//!
//! The fold knows, for every record, whether it moved its device's state forward
//! ([`Folded::Newest`](crate::state::Folded)). Of the records of one epoch that did, only the
//! newest per device matters for "where is each vehicle now", so the epoch's changes are gathered
//! here and leave the fold once, when the epoch is complete: one row per changed device and
//! epoch, not one upsert per record. Records that did not move the state (late data, replays) are
//! never offered, so most late data costs nothing here.
//!
//! What keeps the table right is not this gathering but the upsert's condition (a stored newer
//! `ts` wins): a replica, a restarted process or another worker of a cluster may offer an older
//! fix for the same device at any time, and it loses.

use crate::hashing::KeyMap;
use crate::{LastFix, Position};

/// A device's newest fix in one epoch.
#[derive(Clone, Debug, PartialEq)]
pub struct LatestFix {
    /// The device.
    pub device_id: String,
    /// The fix time, microseconds since the Unix epoch (as [`Position::ts_micros`]).
    pub ts_micros: i64,
    /// The fix's scalar columns.
    pub fix: LastFix,
}

impl From<&Position> for LatestFix {
    fn from(position: &Position) -> Self {
        LatestFix {
            device_id: position.device_id.clone(),
            ts_micros: position.ts_micros,
            fix: LastFix::from(position),
        }
    }
}

/// The newest fix of each device offered during one epoch.
#[derive(Debug, Default)]
pub struct EpochLatest {
    fixes: KeyMap<String, LatestFix>,
}

impl EpochLatest {
    /// Keeps `position` if it is newer than what its device has in this epoch so far. The device
    /// id is copied only the first time the device is offered in the epoch.
    pub fn offer(&mut self, position: &Position) {
        match self.fixes.get_mut(position.device_id.as_str()) {
            Some(held) => {
                if position.ts_micros > held.ts_micros {
                    held.ts_micros = position.ts_micros;
                    held.fix = LastFix::from(position);
                }
            }
            None => {
                self.fixes
                    .insert(position.device_id.clone(), LatestFix::from(position));
            }
        }
    }

    /// Whether no device was offered.
    pub fn is_empty(&self) -> bool {
        self.fixes.is_empty()
    }

    /// One fix per device, in no particular order.
    pub fn into_fixes(self) -> Vec<LatestFix> {
        self.fixes.into_values().collect()
    }
}

/// Keeps, of several fixes per device (epochs committed together), the newest of each, sorted by
/// device id: an upsert may touch a row once per statement, and two writers locking rows in the
/// same order cannot deadlock.
pub fn newest_per_device<'a>(fixes: impl IntoIterator<Item = &'a LatestFix>) -> Vec<&'a LatestFix> {
    let mut newest: KeyMap<&str, &LatestFix> = KeyMap::default();
    for fix in fixes {
        let held = newest.entry(fix.device_id.as_str()).or_insert(fix);
        if fix.ts_micros > held.ts_micros {
            *held = fix;
        }
    }
    let mut sorted: Vec<&LatestFix> = newest.into_values().collect();
    sorted.sort_unstable_by(|a, b| a.device_id.cmp(&b.device_id));
    sorted
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::position::test_position as at;

    #[test]
    fn one_fix_per_device_the_newest() {
        let mut epoch = EpochLatest::default();
        assert!(epoch.is_empty());
        epoch.offer(&at("a", 5));
        epoch.offer(&at("b", 1));
        epoch.offer(&at("a", 7));
        epoch.offer(&at("a", 6));
        let mut fixes = epoch.into_fixes();
        fixes.sort_by(|x, y| x.device_id.cmp(&y.device_id));
        assert_eq!(fixes.len(), 2);
        assert_eq!((fixes[0].ts_micros, fixes[0].fix.latitude), (7, 0.007));
        assert_eq!(fixes[1].ts_micros, 1);
    }

    #[test]
    fn across_epochs_the_newest_wins_sorted_by_device() {
        let fixes = [
            LatestFix::from(&at("b", 3)),
            LatestFix::from(&at("a", 9)),
            LatestFix::from(&at("b", 8)),
            LatestFix::from(&at("a", 2)),
        ];
        let newest = newest_per_device(&fixes);
        let got: Vec<(&str, i64)> = newest
            .iter()
            .map(|f| (f.device_id.as_str(), f.ts_micros))
            .collect();
        assert_eq!(got, vec![("a", 9), ("b", 8)]);
    }
}
