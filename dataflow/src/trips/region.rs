//! Which part of a device's history new fixes can change, and its runs recomputed.
//!
//! The store keeps every run of a device (`trip_runs`, short ones included) beside its trips, so
//! the runs around new fixes are found by two index probes instead of a walk over fixes. Runs are
//! maximal: the next run starts more than the stop time after the previous one ends. So for new
//! fixes spanning `[a, b]`:
//! - on the left, only the latest run starting before `a` can be touched. If it ends before
//!   `a - stop`, nothing left of `a` can chain: the region starts at `a`. If it ends before `a`
//!   (but within the stop time), it can only be extended: the region resumes it from its row
//!   (a stored run is exactly the fold's state at its end), so in-order data costs the new fixes,
//!   not the trip's history. If it reaches `a`, the new fixes fall inside it: it is recomputed
//!   from its start.
//! - on the right, runs starting up to `b + stop` can chain with a new moving fix; the region
//!   ends at the last end among them (none can chain further: they are maximal).
//!
//! - when no stored run starts among the new fixes and one starts after them within the stop
//!   time (a newest-first backlog arriving in front of the trip it belongs to), that run is
//!   `next`: its row is its state, so the region reads the fixes only up to its start and chains
//!   into it, instead of reading the whole trip again for every batch of older fixes.
//!
//! Recomputing the region's fixes gives its runs, which replace the stored runs starting in it.
//! The cost of a late fix is the runs it touches, never the device's history.

use super::{Fix, Run, RunFold, Tail, TripRules};

/// Where a region's recomputation starts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Start {
    /// From the fixes at or after this time.
    From(i64),
    /// Resuming this stored run with the fixes after its end.
    Resume(Run),
}

/// The part of a device's history to recompute.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Region {
    /// Where the fold starts.
    pub start: Start,
    /// The last time it covers (inclusive): the stored runs starting up to here are replaced.
    pub end_micros: i64,
    /// The stored run the region chains into, whose fixes it does not read (see the module's
    /// notes).
    pub next: Option<Run>,
}

impl Region {
    /// The stored runs (and trips) starting at or after this time, up to `end_micros`, are the
    /// ones the recomputed runs replace.
    pub fn replaces_from(&self) -> i64 {
        match self.start {
            Start::From(at) => at,
            Start::Resume(run) => run.start.ts_micros,
        }
    }

    /// The first time whose fixes the fold reads (inclusive).
    pub fn read_from(&self) -> i64 {
        match self.start {
            Start::From(at) => at,
            Start::Resume(run) => run.end.ts_micros + 1,
        }
    }

    /// The last time whose fixes the fold reads (inclusive): `next`'s are not read.
    pub fn read_to(&self) -> i64 {
        self.next
            .map_or(self.end_micros, |next| next.start.ts_micros - 1)
    }

    /// The region's runs from its fixes (those in `read_from()..=read_to()`, sorted by time).
    pub fn runs(&self, rules: &TripRules, fixes: &[Fix]) -> Vec<Run> {
        self.runs_with_state(rules, fixes).0
    }

    /// [`Region::runs`], and the fold's state after the last fix (see
    /// [`RunFold::finish_with_state`]).
    pub fn runs_with_state(
        &self,
        rules: &TripRules,
        fixes: &[Fix],
    ) -> (Vec<Run>, Option<(Run, Tail)>) {
        let mut fold = match self.start {
            Start::From(_) => RunFold::new(*rules),
            Start::Resume(run) => RunFold::resuming(*rules, run),
        };
        for fix in fixes {
            fold.push(fix);
        }
        match self.next {
            Some(next) => fold.finish_into(next),
            None => fold.finish_with_state(),
        }
    }
}

/// The region for new fixes spanning `a..=b`, given `left`, the latest stored run starting
/// before `a`, and `right`, the stored runs starting in `a..=b + stop` (see [`Right`]).
pub fn region(rules: &TripRules, a: i64, b: i64, left: Option<Run>, right: Right) -> Region {
    let start = match left {
        Some(run) if run.end.ts_micros >= a => Start::From(run.start.ts_micros),
        Some(run) if run.end.ts_micros >= a - rules.stop_micros => Start::Resume(run),
        _ => Start::From(a),
    };
    let mut end = b;
    if let Some(run) = left.filter(|run| run.end.ts_micros >= a) {
        end = end.max(run.end.ts_micros);
    }
    if let Some(right) = right.last_end {
        end = end.max(right);
    }
    Region {
        start,
        end_micros: end,
        next: right.first.filter(|first| first.start.ts_micros > b),
    }
}

/// What the right-hand probe found: the stored runs starting in `a..=b + stop`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Right {
    /// The first of them.
    pub first: Option<Run>,
    /// The latest end among them.
    pub last_end: Option<i64>,
}

/// The latest time the right-hand probe looks at for new fixes ending at `b`: runs starting up
/// to here can chain with them.
pub fn right_probe_end(rules: &TripRules, b: i64) -> i64 {
    b.saturating_add(rules.stop_micros)
}
