//! What a device's recomputed region changes: its stored runs (trips and short runs) against the
//! runs the fold gave, as the rows to upsert and delete and the changes to count. Unchanged rows
//! are not written at all (a parked device's fixes write nothing), and a trip that stays a trip
//! is updated in place (its key does not change), not deleted and inserted.

use std::collections::HashMap;

use dataflow::trips::{Region, Run, TripRules};

use super::super::Changes;
use super::rows::RunArrays;
use crate::postgres::timestamp::Timestamp;

/// A run as stored: a trip (with its `open`) or a short run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Stored {
    /// In `trips` (else in `trip_runs`).
    pub(super) trip: bool,
    /// Its values.
    pub(super) run: Run,
    /// `trips.open` (false for a short run).
    pub(super) open: bool,
}

impl Stored {
    /// `run` as it is stored after a write: a trip (with `open` for a device whose newest fix is
    /// `newest`) or a short run.
    pub(super) fn new(run: Run, rules: &TripRules, newest: i64) -> Self {
        let trip = run.trip(rules, newest);
        Stored {
            trip: trip.is_some(),
            run,
            open: trip.is_some_and(|trip| trip.open),
        }
    }
}

/// Whether `new` differs from `stored` beyond the rounding of its distance: a region that chains
/// into a stored run adds the run's distance as a whole, a later refold adds its legs one by one,
/// and the two sums can differ in their last bits (rewriting the row then would count a late
/// change that is none).
fn changed(stored: &Run, new: &Run) -> bool {
    let same_distance =
        (stored.distance_m - new.distance_m).abs() <= 1e-12 * stored.distance_m.abs().max(1.0);
    !same_distance
        || Run {
            distance_m: stored.distance_m,
            ..*new
        } != *stored
}

/// Keys of rows to delete.
#[derive(Default)]
pub(super) struct Keys<'a> {
    pub(super) device: Vec<&'a str>,
    pub(super) start: Vec<Timestamp>,
}

impl<'a> Keys<'a> {
    fn push(&mut self, device: &'a str, start: i64) {
        self.device.push(device);
        self.start.push(Timestamp(start));
    }

    pub(super) fn is_empty(&self) -> bool {
        self.device.is_empty()
    }
}

/// The writes of one epoch, over all its devices.
#[derive(Default)]
pub(super) struct Writes<'a> {
    pub(super) upsert_trips: RunArrays<'a>,
    pub(super) upsert_runs: RunArrays<'a>,
    pub(super) delete_trips: Keys<'a>,
    pub(super) delete_runs: Keys<'a>,
    pub(super) close: Keys<'a>,
    pub(super) changes: Changes,
}

impl<'a> Writes<'a> {
    /// Adds what replacing `old` (the stored runs starting in the region) with `new` (the
    /// region's runs) writes for `device`, whose newest fix is `newest`.
    pub(super) fn replace(
        &mut self,
        device: &'a str,
        old: &[Stored],
        new: &[Run],
        rules: &TripRules,
        newest: i64,
    ) {
        let mut old: HashMap<i64, &Stored> = old
            .iter()
            .map(|stored| (stored.run.start.ts_micros, stored))
            .collect();
        for run in new {
            let key = run.start.ts_micros;
            let trip = run.trip(rules, newest);
            match (old.remove(&key), trip) {
                (Some(stored), Some(trip)) if stored.trip => {
                    let moved = changed(&stored.run, run);
                    if moved || stored.open != trip.open {
                        self.upsert_trips.push(device, run, trip.open);
                        self.changes.updated += 1;
                        if !stored.open && moved {
                            self.changes.late += 1;
                        }
                    }
                }
                (Some(_short), Some(trip)) => {
                    self.delete_runs.push(device, key);
                    self.upsert_trips.push(device, run, trip.open);
                    self.changes.inserted += 1;
                }
                (Some(stored), None) if !stored.trip => {
                    if changed(&stored.run, run) {
                        self.upsert_runs.push(device, run, false);
                    }
                }
                (Some(stored), None) => {
                    self.remove_trip(device, stored);
                    self.upsert_runs.push(device, run, false);
                }
                (None, Some(trip)) => {
                    self.upsert_trips.push(device, run, trip.open);
                    self.changes.inserted += 1;
                }
                (None, None) => self.upsert_runs.push(device, run, false),
            }
        }
        for stored in old.into_values() {
            if stored.trip {
                self.remove_trip(device, stored);
            } else {
                self.delete_runs.push(device, stored.run.start.ts_micros);
            }
        }
    }

    /// [`Writes::replace`] for a region, and closing `left` (the latest stored run before the
    /// epoch's fixes) when it lies before the region and the newest fix has closed it.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn replace_region(
        &mut self,
        device: &'a str,
        region: &Region,
        left: Option<Stored>,
        old: &[Stored],
        new: &[Run],
        rules: &TripRules,
        newest: i64,
    ) {
        self.replace(device, old, new, rules, newest);
        if let Some(left) = left.filter(|left| left.run.start.ts_micros < region.replaces_from()) {
            self.close_if_stopped(device, &left, rules, newest);
        }
    }

    fn remove_trip(&mut self, device: &'a str, stored: &Stored) {
        self.delete_trips.push(device, stored.run.start.ts_micros);
        self.changes.deleted += 1;
        if !stored.open {
            self.changes.late += 1;
        }
    }

    /// `stored`, a trip before the region, is closed by the device's newest fix.
    fn close_if_stopped(
        &mut self,
        device: &'a str,
        stored: &Stored,
        rules: &TripRules,
        newest: i64,
    ) {
        if stored.trip && stored.open && newest - stored.run.end.ts_micros >= rules.stop_micros {
            self.close.push(device, stored.run.start.ts_micros);
            self.changes.updated += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use dataflow::trips::Point;

    use super::*;

    fn run(start: i64, end: i64, distance_m: f64) -> Run {
        let point = |ts| Point {
            ts_micros: ts,
            latitude: 54.0,
            longitude: 25.0,
        };
        Run {
            start: point(start),
            end: point(end),
            distance_m,
            max_speed: 40.0,
            fixes: 3,
        }
    }

    const S: i64 = 1_000_000;

    #[test]
    fn unchanged_rows_are_not_written_and_a_growing_trip_is_updated_in_place() {
        let rules = TripRules::default();
        let trip = Stored::new(run(0, 10 * S, 500.0), &rules, 10 * S);
        assert!(trip.trip && trip.open);
        let mut writes = Writes::default();
        writes.replace("d", &[trip], &[trip.run], &rules, 10 * S);
        assert_eq!(writes.changes, Changes::default());
        assert!(writes.delete_trips.is_empty());
        let longer = run(0, 20 * S, 700.0);
        writes.replace("d", &[trip], &[longer], &rules, 20 * S);
        assert_eq!(writes.changes.updated, 1);
        assert_eq!(
            writes.changes.late, 0,
            "extending the open trip is not late"
        );
        assert!(writes.delete_trips.is_empty());
    }

    #[test]
    fn a_distance_that_differs_only_by_rounding_is_not_a_change() {
        let rules = TripRules::default();
        let trip = Stored::new(run(0, 10 * S, 300.3), &rules, 1_000 * S);
        assert!(trip.trip && !trip.open);
        let mut writes = Writes::default();
        // the next float up: the same sum taken in another order
        let rounded = f64::from_bits(300.3_f64.to_bits() + 1);
        writes.replace("d", &[trip], &[run(0, 10 * S, rounded)], &rules, 1_000 * S);
        assert_eq!(writes.changes, Changes::default());
        writes.replace("d", &[trip], &[run(0, 10 * S, 300.31)], &rules, 1_000 * S);
        assert_eq!(writes.changes.updated, 1);
        assert_eq!(writes.changes.late, 1);
    }

    #[test]
    fn a_short_run_that_grows_becomes_a_trip_and_a_merge_deletes() {
        let rules = TripRules::default();
        let short = Stored::new(run(0, 5 * S, 50.0), &rules, 5 * S);
        assert!(!short.trip);
        let mut writes = Writes::default();
        writes.replace("d", &[short], &[run(0, 30 * S, 250.0)], &rules, 30 * S);
        assert_eq!(writes.changes.inserted, 1);
        assert_eq!(writes.delete_runs.device.len(), 1);
        // two closed trips merged by a late fix: one updated, one deleted, both late
        let (a, b) = (
            Stored::new(run(0, 100 * S, 900.0), &rules, 2_000 * S),
            Stored::new(run(500 * S, 600 * S, 900.0), &rules, 2_000 * S),
        );
        let mut writes = Writes::default();
        writes.replace("d", &[a, b], &[run(0, 600 * S, 2_000.0)], &rules, 2_000 * S);
        assert_eq!(writes.changes.updated, 1);
        assert_eq!(writes.changes.deleted, 1);
        assert_eq!(writes.changes.late, 2);
    }
}
