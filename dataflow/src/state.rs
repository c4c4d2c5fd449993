//! Per-device state, folded in the dataflow and bounded by an LRU.
//!
//! Each device's records reach exactly one worker (the exchange by `device_id`), so the worker's
//! table is the only place that device's state lives and no locking is needed. The table is a
//! cache, not a source of truth: the database holds every row, and a restart begins a new
//! *session* (hence `position_count_session`). Capacity is capped so that a fleet of millions of
//! trackers cannot grow memory without bound; the least recently seen device is evicted first.

use std::hash::BuildHasherDefault;
use std::num::NonZeroUsize;

use lru::LruCache;

use crate::{KeyHasher, Position};

/// What the processor remembers about one device.
///
/// Deliberately small (80 bytes, plus the key and the LRU's links): a fleet of a million trackers
/// must fit in a few hundred megabytes. It keeps the scalar columns of the latest fix but not its
/// `attributes` text, which is often larger than everything else together, is already in the
/// database, and would cost a copy per record to keep.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DeviceState {
    /// The scalar columns of the position with the latest fix time seen this session.
    pub last_position: LastFix,
    /// The latest fix time (`ts_micros`) seen. It never moves back: a replayed or out-of-order
    /// record older than this leaves it alone, so redelivery after a crash cannot rewind it.
    pub last_seen: i64,
    /// Records folded for this device since it entered the table (this process's session).
    pub position_count_session: u64,
}

/// The scalar columns of a device's latest position (its fix time is [`DeviceState::last_seen`]);
/// units and ranges are those of the [`Position`] fields of the same names.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LastFix {
    /// [`Position::latitude`].
    pub latitude: f64,
    /// [`Position::longitude`].
    pub longitude: f64,
    /// [`Position::altitude`].
    pub altitude: Option<f32>,
    /// [`Position::angle`].
    pub angle: Option<f32>,
    /// [`Position::speed`].
    pub speed: Option<f32>,
    /// [`Position::satellites`].
    pub satellites: Option<i16>,
    /// [`Position::priority`].
    pub priority: Option<i16>,
    /// [`Position::event_id`].
    pub event_id: Option<i32>,
}

impl From<&Position> for LastFix {
    fn from(position: &Position) -> Self {
        LastFix {
            latitude: position.latitude,
            longitude: position.longitude,
            altitude: position.altitude,
            angle: position.angle,
            speed: position.speed,
            satellites: position.satellites,
            priority: position.priority,
            event_id: position.event_id,
        }
    }
}

/// The LRU-bounded table of device states held by one worker.
pub struct StateTable {
    /// Hashed with [`KeyHasher`]: with SipHash, the default, its lookups were about 3% of the
    /// service's CPU.
    devices: LruCache<String, DeviceState, BuildHasherDefault<KeyHasher>>,
    capacity: usize,
    evictions: u64,
    out_of_order: u64,
}

/// What folding one record did to its device's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Folded {
    /// The record is the device's newest fix this session (or its first): the state moved to it.
    Newest,
    /// The record is older than the device's `last_seen` (late data: a tracker sending what it
    /// buffered offline, or a redelivery after newer records): counted, the state stays.
    Older,
    /// The record has the device's `last_seen` itself: most likely the same record again.
    Same,
}

impl StateTable {
    /// A table holding at most `capacity` devices.
    ///
    /// The capacity is enforced here rather than by `LruCache::new(capacity)`, which would
    /// allocate the hash table for all of it up front: 35 MB for the default million devices,
    /// touched page by page as devices scatter over it. The table grows with the devices seen.
    pub fn new(capacity: NonZeroUsize) -> Self {
        StateTable {
            devices: LruCache::unbounded_with_hasher(BuildHasherDefault::default()),
            capacity: capacity.get(),
            evictions: 0,
            out_of_order: 0,
        }
    }

    /// Folds one position into its device's state. Called before the position is written, so the
    /// state reflects everything handed to the sink; folding the same record twice (redelivery)
    /// leaves `last_seen` and `last_position` as they were and only counts it again.
    pub fn fold(&mut self, position: &Position) -> Folded {
        if let Some(state) = self.devices.get_mut(&position.device_id) {
            state.position_count_session += 1;
            return match position.ts_micros.cmp(&state.last_seen) {
                std::cmp::Ordering::Greater => {
                    state.last_seen = position.ts_micros;
                    state.last_position = LastFix::from(position);
                    Folded::Newest
                }
                std::cmp::Ordering::Less => {
                    self.out_of_order += 1;
                    Folded::Older
                }
                std::cmp::Ordering::Equal => Folded::Same,
            };
        }
        let state = DeviceState {
            last_position: LastFix::from(position),
            last_seen: position.ts_micros,
            position_count_session: 1,
        };
        if self.devices.len() >= self.capacity && self.devices.pop_lru().is_some() {
            self.evictions += 1;
        }
        self.devices.put(position.device_id.clone(), state);
        Folded::Newest
    }

    /// The state of `device_id`, without touching its recency.
    pub fn get(&self, device_id: &str) -> Option<&DeviceState> {
        self.devices.peek(device_id)
    }

    /// Devices currently held.
    pub fn len(&self) -> usize {
        self.devices.len()
    }

    /// Whether no device is held.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// Devices evicted to respect the capacity since the table was created.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Records older than their device's `last_seen` since the table was created ([`Folded::Older`]).
    /// A device that was evicted (or not seen this session) has no `last_seen`, so its late
    /// records are not counted: this counts what the state can tell, a lower bound.
    pub fn out_of_order(&self) -> u64 {
        self.out_of_order
    }

    /// Every held device and its state, most recently seen first.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &DeviceState)> {
        self.devices.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::position::test_position as at;

    fn table(capacity: usize) -> StateTable {
        StateTable::new(NonZeroUsize::new(capacity).expect("capacity > 0"))
    }

    #[test]
    fn last_seen_never_moves_back() {
        let mut t = table(10);
        assert_eq!(t.fold(&at("a", 200)), Folded::Newest);
        assert_eq!(t.fold(&at("a", 100)), Folded::Older);
        assert_eq!(t.fold(&at("a", 200)), Folded::Same);
        assert_eq!(t.out_of_order(), 1, "only the older record is out of order");
        let s = t.get("a").expect("held");
        assert_eq!(s.last_seen, 200);
        assert_eq!(
            s.last_position.latitude, 0.2,
            "the fix of the latest record"
        );
        assert_eq!(s.position_count_session, 3);
        assert_eq!(t.fold(&at("a", 300)), Folded::Newest);
        assert_eq!(t.get("a").expect("held").last_seen, 300);
    }

    #[test]
    fn capacity_evicts_least_recent_and_counts() {
        let mut t = table(2);
        t.fold(&at("a", 1));
        t.fold(&at("b", 1));
        t.fold(&at("a", 2)); // a is now the most recent
        t.fold(&at("c", 1)); // evicts b
        assert_eq!(t.len(), 2);
        assert_eq!(t.evictions(), 1);
        assert!(t.get("b").is_none());
        assert_eq!(t.get("a").expect("held").position_count_session, 2);
        // an evicted device starts a fresh count when it comes back
        t.fold(&at("b", 5));
        assert_eq!(t.get("b").expect("held").position_count_session, 1);
        assert_eq!(t.evictions(), 2);
    }
}
