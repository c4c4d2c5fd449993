//! The region refold over one device's data held in memory: its fixes (the first of each time),
//! its runs and its trips, changed by each commit exactly as the trips table's writer changes the
//! tables (find the region the commit's fixes can change, refold it, replace what it held, close
//! the trip before it if the newest fix closed it; or, for fixes filling gaps of the latest run,
//! take them in from their neighbours as a writer that remembers the device does). The property
//! tests hold it to the rules in
//! any arrival order; `benches/trips-differential` measures it against differential-dataflow.

use std::collections::BTreeMap;

use super::{inside, region, Fix, Run, RunFold, Trip, TripRules};

/// One device's fixes, runs and trips.
#[derive(Debug, Default)]
pub struct DeviceStore {
    fixes: BTreeMap<i64, Fix>,
    runs: BTreeMap<i64, Run>,
    trips: BTreeMap<i64, Trip>,
}

impl DeviceStore {
    /// One commit of `batch` (fixes of this device in any order; a time stored already keeps
    /// its first fix).
    pub fn commit(&mut self, rules: &TripRules, batch: &[Fix]) {
        // as the writer's COPY: fresh when no fix of the batch was stored before
        let fresh = batch
            .iter()
            .all(|fix| !self.fixes.contains_key(&fix.ts_micros));
        let newest_before = self.fixes.keys().next_back().copied();
        let mut taken: Vec<Fix> = Vec::with_capacity(batch.len());
        for fix in batch {
            if let std::collections::btree_map::Entry::Vacant(entry) =
                self.fixes.entry(fix.ts_micros)
            {
                entry.insert(*fix);
                taken.push(*fix);
            }
        }
        taken.sort_by_key(|fix| fix.ts_micros);
        if let (true, Some(newest)) = (fresh, newest_before) {
            if self.fill_current(rules, &taken, newest) {
                return;
            }
        }
        let Some(a) = batch.iter().map(|fix| fix.ts_micros).min() else {
            return;
        };
        let b = batch.iter().map(|fix| fix.ts_micros).max().unwrap_or(a);
        let left = self.runs.range(..a).next_back().map(|(_, run)| *run);
        let mut right = self
            .runs
            .range(a..=region::right_probe_end(rules, b))
            .map(|(_, run)| *run);
        let first = right.next();
        let right = region::Right {
            first,
            last_end: right.next_back().or(first).map(|run| run.end.ts_micros),
        };
        let region = region::region(rules, a, b, left, right);
        let fixes: Vec<Fix> = self
            .fixes
            .range(region.read_from()..=region.read_to())
            .map(|(_, fix)| *fix)
            .collect();
        let runs = region.runs(rules, &fixes);
        let replaced: Vec<i64> = self
            .runs
            .range(region.replaces_from()..=region.end_micros)
            .map(|(start, _)| *start)
            .collect();
        for start in replaced {
            self.runs.remove(&start);
            self.trips.remove(&start);
        }
        let newest = self.fixes.keys().next_back().copied().unwrap_or(i64::MIN);
        for run in runs {
            self.runs.insert(run.start.ts_micros, run);
            if let Some(trip) = run.trip(rules, newest) {
                self.trips.insert(run.start.ts_micros, trip);
            }
        }
        // the device's newest fix closes an open trip before the region
        if let Some((_, trip)) = self.trips.range_mut(..region.replaces_from()).next_back() {
            trip.open = trip.open && newest - trip.run.end.ts_micros < rules.stop_micros;
        }
    }

    /// The writer's shortcut for a device it remembers (`filling` in its table writer): when the
    /// batch's fixes older than the device's newest (`newest`, before the batch) all fall
    /// strictly inside its latest run, and that run could still be extended, they fill gaps of
    /// it ([`inside::fill_and_continue`], from the stored fixes around them) and the newer ones
    /// continue it. Applied when it holds; `false` (nothing changed) when it does not.
    fn fill_current(&mut self, rules: &TripRules, taken: &[Fix], newest: i64) -> bool {
        let Some((&start, &latest)) = self.runs.iter().next_back() else {
            return false;
        };
        let Some(older) = inside::older_inside(&latest, taken, newest) else {
            return false;
        };
        let (older, newer) = taken.split_at(older);
        let (Some(first), Some(last)) = (older.first(), older.last()) else {
            return false;
        };
        // the fold's state after the newest fix: the latest run over the fixes after it (none of
        // the batch's: they are inside the run or after the newest)
        let mut fold = RunFold::resuming(*rules, latest);
        if latest.end.ts_micros < newest {
            for (_, fix) in self.fixes.range(latest.end.ts_micros + 1..=newest) {
                fold.push(fix);
            }
        }
        let (_, Some(state)) = fold.finish_with_state() else {
            return false;
        };
        let (Some((&before, _)), Some((&after, _))) = (
            self.fixes.range(..first.ts_micros).next_back(),
            self.fixes.range(last.ts_micros + 1..).next(),
        ) else {
            return false;
        };
        let around: Vec<Fix> = self
            .fixes
            .range(before..=after)
            .map(|(_, fix)| *fix)
            .collect();
        let Some((runs, _)) = inside::fill_and_continue(rules, state, older, &around, newer) else {
            return false;
        };
        let newest = newer.last().map_or(newest, |fix| fix.ts_micros.max(newest));
        self.runs.remove(&start);
        self.trips.remove(&start);
        for run in runs {
            self.runs.insert(run.start.ts_micros, run);
            if let Some(trip) = run.trip(rules, newest) {
                self.trips.insert(run.start.ts_micros, trip);
            }
        }
        true
    }

    /// The stored fixes, by time.
    pub fn fixes(&self) -> impl Iterator<Item = &Fix> {
        self.fixes.values()
    }

    /// Every run (trips and short runs), by start.
    pub fn runs(&self) -> impl Iterator<Item = &Run> {
        self.runs.values()
    }

    /// The trips, by start.
    pub fn trips(&self) -> impl Iterator<Item = &Trip> {
        self.trips.values()
    }
}
