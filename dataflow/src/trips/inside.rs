//! New fixes strictly inside a stored run: a gap of a trip filled in.
//!
//! Fixes strictly between a run's first and last moving fix cannot move either of them, widen
//! a gap between moving fixes (they only add fixes), or reach another run (the neighbours are
//! more than the stop time away from the run's ends, which stay): the run stays one run with the
//! same ends. What changes is its fix count, its top speed and its distance, and the distance
//! changes only between the new fixes' stored neighbours: the legs through the old fixes from
//! the last stored fix before the first new one to the first stored fix after the last new one
//! give way to the legs through all of them. So a fix landing in a gap of its trip (a
//! newest-first backlog filling in behind the part of the trip that came first, a fix a minute
//! late) costs its neighbours, not the trip's history.

use super::{haversine_m, Fix, Folded, Run, RunFold, Tail, TripRules};

/// `run` with `new` taken in: `new` sorted by time, none at a time the device had stored before,
/// each strictly between the run's first and last fix; `around`, sorted by time, holds every
/// stored fix from the last one before `new`'s first through the first one after `new`'s last,
/// `new` included (all within the run). `None` when `new` is empty or not inside the run, or
/// `around` does not hold it so (the caller reads the run back instead).
pub fn fill(run: Run, new: &[Fix], around: &[Fix]) -> Option<Run> {
    let (first, last) = (new.first()?, new.last()?);
    if first.ts_micros <= run.start.ts_micros || last.ts_micros >= run.end.ts_micros {
        return None;
    }
    let (before, rest) = around.split_first()?;
    let after = around.last()?;
    if before.ts_micros < run.start.ts_micros
        || before.ts_micros >= first.ts_micros
        || after.ts_micros <= last.ts_micros
        || after.ts_micros > run.end.ts_micros
    {
        return None;
    }
    let leg = |from: &Fix, to: &Fix| {
        haversine_m(from.latitude, from.longitude, to.latitude, to.longitude)
    };
    let mut pending = new.iter().peekable();
    let (mut taken, mut max_speed) = (0usize, run.max_speed);
    let (mut through_all, mut through_old) = (0.0, 0.0);
    let (mut previous, mut previous_old) = (before, before);
    for fix in rest {
        if fix.ts_micros <= previous.ts_micros {
            return None;
        }
        through_all += leg(previous, fix);
        previous = fix;
        while pending
            .next_if(|new| new.ts_micros < fix.ts_micros)
            .is_some()
        {}
        if pending
            .next_if(|new| new.ts_micros == fix.ts_micros)
            .is_some()
        {
            // the stored row (the first of its time) is what counts
            taken += 1;
            max_speed = max_speed.max(fix.speed.unwrap_or(0.0));
        } else {
            through_old += leg(previous_old, fix);
            previous_old = fix;
        }
    }
    if taken != new.len() {
        return None;
    }
    Some(Run {
        distance_m: run.distance_m - through_old + through_all,
        max_speed,
        fixes: run.fixes + u32::try_from(taken).ok()?,
        ..run
    })
}

/// How many of `fixes` (sorted by time, none stored before) are older than `newest`, the
/// device's newest fix before them, when those all fall strictly inside `run` and there is at
/// least one: the fixes [`fill`] can take into it (the others are newer than everything stored).
/// `None` otherwise.
pub fn older_inside(run: &Run, fixes: &[Fix], newest: i64) -> Option<usize> {
    let older = fixes.partition_point(|fix| fix.ts_micros <= newest);
    let (first, last) = (fixes.first()?, fixes.get(older.checked_sub(1)?)?);
    (first.ts_micros > run.start.ts_micros && last.ts_micros < run.end.ts_micros).then_some(older)
}

/// The device's current run and the fold's state after its newest fix (`state`, as
/// [`RunFold::finish_with_state`] left it) with `older` filled into the run ([`fill`]: `older`
/// and `around` as there) and `newer`, every one after that newest fix, folded on: the runs from
/// the current run's start on (the first keeps its start, so its key), and the fold's state
/// after. `None` where [`fill`] refuses.
pub fn fill_and_continue(
    rules: &TripRules,
    state: (Run, Tail),
    older: &[Fix],
    around: &[Fix],
    newer: &[Fix],
) -> Option<Folded> {
    let (run, tail) = state;
    let mut fold = RunFold::resuming_state(*rules, (fill(run, older, around)?, tail));
    for fix in newer {
        fold.push(fix);
    }
    Some(fold.finish_with_state())
}

#[cfg(test)]
mod tests {
    use super::super::{reference, TripRules};
    use super::*;

    fn fix(seconds: i64, latitude: f64, speed: f32) -> Fix {
        Fix {
            ts_micros: seconds * 1_000_000,
            latitude,
            longitude: 25.0,
            speed: Some(speed),
        }
    }

    #[test]
    fn a_filled_gap_gives_the_run_of_all_its_fixes() {
        let rules = TripRules::default();
        let all = [
            fix(0, 54.000, 30.0),
            fix(10, 54.001, 0.0),
            fix(20, 54.003, 40.0),
            fix(30, 54.002, 60.0),
            fix(40, 54.004, 30.0),
        ];
        let old: Vec<Fix> = [0, 2, 4].iter().map(|&i| all[i]).collect();
        let run = reference::runs(&old, &rules)[0];
        let new = [all[1], all[3]];
        let filled = fill(run, &new, &all).expect("inside");
        let want = reference::runs(&all, &rules)[0];
        assert_eq!(filled.fixes, want.fixes);
        assert_eq!(filled.max_speed, 60.0);
        assert!((filled.distance_m - want.distance_m).abs() < 1e-9 * want.distance_m);
        assert_eq!((filled.start, filled.end), (want.start, want.end));
    }

    #[test]
    fn fixes_not_strictly_inside_or_not_bracketed_are_refused() {
        let rules = TripRules::default();
        let all = [
            fix(0, 54.0, 30.0),
            fix(10, 54.001, 30.0),
            fix(20, 54.002, 30.0),
        ];
        let run = reference::runs(&[all[0], all[2]], &rules)[0];
        // at the run's end, or around missing the neighbour after
        assert_eq!(fill(run, &[all[2]], &all), None);
        assert_eq!(fill(run, &[all[1]], &all[..2]), None);
        // a new fix the read did not return
        assert_eq!(fill(run, &[all[1]], &[all[0], all[2]]), None);
        assert_eq!(fill(run, &[], &all), None);
    }
}
