//! The region refold over one device's data held in memory: its fixes (the first of each time),
//! its runs and its trips, changed by each commit exactly as the trips table's writer changes the
//! tables (find the region the commit's fixes can change, refold it, replace what it held, close
//! the trip before it if the newest fix closed it). The property tests hold it to the rules in
//! any arrival order; `benches/trips-differential` measures it against differential-dataflow.

use std::collections::BTreeMap;

use super::{inside, region, Fix, Run, Trip, TripRules};

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
        // new fixes strictly inside the left run fill a gap of it: only their neighbours count
        // (the region is then exactly that run: it replaces it and nothing else)
        let filled = left
            .filter(|run| {
                region.replaces_from() == run.start.ts_micros
                    && region.end_micros == run.end.ts_micros
            })
            .and_then(|run| {
                let (first, last) = (taken.first()?, taken.last()?);
                let before = self.fixes.range(..first.ts_micros).next_back()?.0;
                let after = self.fixes.range(last.ts_micros + 1..).next()?.0;
                let around: Vec<Fix> = self
                    .fixes
                    .range(before..=after)
                    .map(|(_, fix)| *fix)
                    .collect();
                inside::fill(run, &taken, &around)
            });
        let runs = match filled {
            Some(run) => vec![run],
            None => {
                let fixes: Vec<Fix> = self
                    .fixes
                    .range(region.read_from()..=region.read_to())
                    .map(|(_, fix)| *fix)
                    .collect();
                region.runs(rules, &fixes)
            }
        };
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
