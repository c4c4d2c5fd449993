//! Folding a device's fixes, in time order, into runs.

use super::{haversine_m, Fix, Point, Run, TripRules};

/// The fixes after the current run's last moving fix, not moving, that the run takes in if a
/// moving fix follows within the stop time.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Tail {
    /// How many.
    fixes: u32,
    /// The legs from the run's end through them.
    distance_m: f64,
    /// The newest of them.
    last: Option<Point>,
}

/// A fold's runs, in time order, and its state after the last fix
/// ([`RunFold::finish_with_state`]).
pub type Folded = (Vec<Run>, Option<(Run, Tail)>);

/// Runs from fixes pushed in increasing time order; the last run stays extendable until
/// [`RunFold::finish`].
#[derive(Debug)]
pub struct RunFold {
    rules: TripRules,
    current: Option<(Run, Tail)>,
    done: Vec<Run>,
}

impl RunFold {
    /// A fold with no run yet.
    pub fn new(rules: TripRules) -> Self {
        RunFold {
            rules,
            current: None,
            done: Vec::new(),
        }
    }

    /// A fold that continues `run` (a stored trip's row is its state at its end): push only the
    /// fixes after `run.end`.
    pub fn resuming(rules: TripRules, run: Run) -> Self {
        RunFold {
            rules,
            current: Some((run, Tail::default())),
            done: Vec::new(),
        }
    }

    /// Takes the next fix; each must be later than the one before (one row per device and
    /// time).
    pub fn push(&mut self, fix: &Fix) {
        let moving = self.rules.is_moving(fix.speed);
        let Some((run, tail)) = &mut self.current else {
            if moving {
                self.current = Some((start(fix), Tail::default()));
            }
            return;
        };
        debug_assert!(fix.ts_micros > tail.last.unwrap_or(run.end).ts_micros);
        let within = fix.ts_micros - run.end.ts_micros <= self.rules.stop_micros;
        if !within {
            // the run cannot be extended any more: it is complete
            self.done.push(*run);
            self.current = moving.then(|| (start(fix), Tail::default()));
            return;
        }
        let from = tail.last.unwrap_or(run.end);
        let leg = haversine_m(from.latitude, from.longitude, fix.latitude, fix.longitude);
        if moving {
            run.distance_m += tail.distance_m + leg;
            run.fixes += tail.fixes + 1;
            run.max_speed = run.max_speed.max(fix.speed.unwrap_or(0.0));
            run.end = Point::from(fix);
            *tail = Tail::default();
        } else {
            tail.fixes += 1;
            tail.distance_m += leg;
            tail.last = Some(Point::from(fix));
        }
    }

    /// A fold that continues from `state` ([`RunFold::finish_with_state`]'s): push only fixes
    /// after the newest one that fold saw.
    pub fn resuming_state(rules: TripRules, state: (Run, Tail)) -> Self {
        RunFold {
            rules,
            current: Some(state),
            done: Vec::new(),
        }
    }

    /// Every run, in time order, and the fold's state: the last run with the fixes after it,
    /// while a later fix could still extend it (it is also the last of the runs).
    pub fn finish_with_state(mut self) -> (Vec<Run>, Option<(Run, Tail)>) {
        let state = self.current.take();
        if let Some((run, _)) = state {
            self.done.push(run);
        }
        (self.done, state)
    }

    /// [`RunFold::finish_with_state`] for a fold that stopped short of `next`, a stored run
    /// starting after every fix pushed (whose own fixes were not pushed): the current run takes
    /// `next` in when `next`'s first fix is within the stop time of the run's end (its fixes,
    /// the tail between them and the leg to `next`'s start are its span's), else `next` stays as
    /// it is. The state is the last run with nothing after it: it holds only when nothing
    /// follows `next`'s end.
    pub fn finish_into(self, next: Run) -> (Vec<Run>, Option<(Run, Tail)>) {
        let stop_micros = self.rules.stop_micros;
        let (mut runs, state) = self.finish_with_state();
        debug_assert!(state.is_none_or(|(_, tail)| {
            tail.last
                .is_none_or(|last| last.ts_micros < next.start.ts_micros)
        }));
        let last = match state {
            Some((run, tail)) if next.start.ts_micros - run.end.ts_micros <= stop_micros => {
                runs.pop();
                let from = tail.last.unwrap_or(run.end);
                let leg = haversine_m(
                    from.latitude,
                    from.longitude,
                    next.start.latitude,
                    next.start.longitude,
                );
                Run {
                    start: run.start,
                    end: next.end,
                    distance_m: run.distance_m + tail.distance_m + leg + next.distance_m,
                    max_speed: run.max_speed.max(next.max_speed),
                    fixes: run.fixes + tail.fixes + next.fixes,
                }
            }
            _ => next,
        };
        runs.push(last);
        (runs, Some((last, Tail::default())))
    }

    /// Every run, in time order; the last one is as far as the pushed fixes take it.
    pub fn finish(mut self) -> Vec<Run> {
        if let Some((run, _)) = self.current.take() {
            self.done.push(run);
        }
        self.done
    }
}

fn start(fix: &Fix) -> Run {
    let point = Point::from(fix);
    Run {
        start: point,
        end: point,
        distance_m: 0.0,
        max_speed: fix.speed.unwrap_or(0.0),
        fixes: 1,
    }
}
