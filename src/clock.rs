//! Time: the wall clock for what people read, and the slewing clock that epochs are cut from.
//!
//! # Why epochs do not come from the wall clock
//! Epochs must never move back (a timely input cannot), and every worker must keep advancing its
//! epoch, or no epoch completes and nothing is committed or acknowledged. The wall clock does
//! neither reliably: NTP steps it back after a VM resumes, a wrong RTC puts it hours off at
//! boot. An epoch held at its old value until a stepped-back wall clock catches up is an outage
//! as long as the step.
//!
//! [`SlewingClock`] reads the monotonic clock instead, which never steps (NTP only tunes its
//! rate, and it tunes the wall clock's rate the same way), anchored to the wall clock at start-up.
//! It follows the wall clock by *slewing*: its rate stays within `1 ± 1/SLEW_DIVISOR` of real
//! time (5%), so it never stops, never runs backwards, and absorbs a wall-clock step of `Δ` in
//! `Δ × SLEW_DIVISOR` (two minutes back: 40 minutes of epochs 5% longer; an hour forward: 20
//! hours of epochs 5% shorter). A step is recognised as a change in the difference between the
//! two clocks, which nothing else moves.
//!
//! The model here is pure (it is handed both clocks' readings), so it is tested without
//! touching the system clock; `pipeline::epoch_clock` drives it with the real clocks.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The clock's rate stays within `1 ± 1/SLEW_DIVISOR` of real time.
pub const SLEW_DIVISOR: i64 = 20;

/// A change of the wall clock against the monotonic clock at least this large is a step (smaller
/// ones are the jitter of reading two clocks one after the other, or NTP's own slewing).
pub const STEP_THRESHOLD: Duration = Duration::from_millis(100);

/// The wall clock is consulted at most this often; in between the clock runs free.
pub const SYNC_EVERY: Duration = Duration::from_millis(1);

/// Milliseconds since the Unix epoch by the wall clock (0 if it reads before 1970).
pub fn unix_ms() -> u64 {
    u64::try_from(unix_micros() / 1000).unwrap_or(0)
}

/// Microseconds since the Unix epoch by the wall clock, negative before 1970.
pub fn unix_micros() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_micros()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_micros()).unwrap_or(i64::MAX),
    }
}

fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

/// A clock in microseconds since the Unix epoch that follows the wall clock without stepping.
///
/// Driven by two readings: `mono`, the monotonic clock (a `Duration` since any fixed origin), and
/// `wall`, the wall clock in microseconds since the Unix epoch.
#[derive(Debug, Clone)]
pub struct SlewingClock {
    /// The reading as of monotonic time `at`.
    reading: i64,
    at: Duration,
    /// `wall - mono` at the last sync: constant unless the wall clock steps.
    wall_minus_mono: i64,
}

impl SlewingClock {
    /// A clock that reads `wall` at monotonic time `mono`.
    pub fn new(mono: Duration, wall: i64) -> Self {
        SlewingClock {
            reading: wall,
            at: mono,
            wall_minus_mono: wall.saturating_sub(micros(mono)),
        }
    }

    /// The reading at monotonic time `mono`, running free (at real time's rate) since the last
    /// sync. Never less than an earlier reading.
    pub fn read(&self, mono: Duration) -> i64 {
        self.reading
            .saturating_add(micros(mono.saturating_sub(self.at)))
    }

    /// Whether the wall clock is due to be consulted at monotonic time `mono`.
    pub fn sync_due(&self, mono: Duration) -> bool {
        mono.saturating_sub(self.at) >= SYNC_EVERY
    }

    /// Moves the clock to monotonic time `mono`, slewing toward `wall` by at most
    /// `1/SLEW_DIVISOR` of the time passed. Returns the wall clock's step since the last sync in
    /// microseconds (negative: back) when it is at least [`STEP_THRESHOLD`].
    pub fn sync(&mut self, mono: Duration, wall: i64) -> Option<i64> {
        let elapsed = micros(mono.saturating_sub(self.at));
        let free = self.reading.saturating_add(elapsed);
        let limit = elapsed / SLEW_DIVISOR;
        self.reading = free.saturating_add(wall.saturating_sub(free).clamp(-limit, limit));
        self.at = self.at.max(mono);
        let wall_minus_mono = wall.saturating_sub(micros(mono));
        let step = wall_minus_mono.saturating_sub(self.wall_minus_mono);
        self.wall_minus_mono = wall_minus_mono;
        (step.unsigned_abs() >= STEP_THRESHOLD.as_micros() as u64).then_some(step)
    }

    /// Moves the reading forward to at least `reading` (another clock of the cluster is ahead);
    /// never back.
    pub fn catch_up(&mut self, mono: Duration, reading: i64) {
        let now = self.read(mono);
        self.reading = now.max(reading);
        self.at = self.at.max(mono);
    }

    /// How far the reading at `mono` is ahead of `wall` (negative: behind), in microseconds.
    pub fn offset(&self, mono: Duration, wall: i64) -> i64 {
        self.read(mono).saturating_sub(wall)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1000;
    const T0: i64 = 1_790_000_000_000 * MS;

    /// Drives a clock for `span` in steps of `tick`, with the wall clock at `wall(mono)`;
    /// returns the readings.
    fn run(
        clock: &mut SlewingClock,
        from: Duration,
        span: Duration,
        tick: Duration,
        wall: impl Fn(Duration) -> i64,
    ) -> Vec<i64> {
        let mut readings = Vec::new();
        let mut mono = from;
        while mono < from + span {
            mono += tick;
            if clock.sync_due(mono) {
                clock.sync(mono, wall(mono));
            }
            readings.push(clock.read(mono));
        }
        readings
    }

    #[test]
    fn follows_a_steady_wall_clock_exactly() {
        let mut clock = SlewingClock::new(Duration::ZERO, T0);
        let readings = run(
            &mut clock,
            Duration::ZERO,
            Duration::from_secs(2),
            Duration::from_millis(3),
            |mono| T0 + micros(mono),
        );
        assert_eq!(readings.last(), Some(&(T0 + 2_001 * MS)));
    }

    #[test]
    fn a_step_back_slows_the_clock_but_never_stops_it() {
        let mut clock = SlewingClock::new(Duration::ZERO, T0);
        let start = Duration::from_secs(1);
        assert_eq!(clock.sync(start, T0 + 1_000 * MS), None);
        let step = clock.sync(
            start + Duration::from_millis(10),
            T0 + 1_010 * MS - 120_000 * MS,
        );
        assert_eq!(
            step,
            Some(-120_000 * MS),
            "the step is reported once, with its size"
        );
        let wall = |mono: Duration| T0 + micros(mono) - 120_000 * MS;
        let before = clock.read(start + Duration::from_millis(10));
        let readings = run(
            &mut clock,
            start + Duration::from_millis(10),
            Duration::from_secs(10),
            Duration::from_micros(300),
            wall,
        );
        // rate within [0.95, 1] of real time: never a stall, never backwards
        for pair in readings.windows(2) {
            assert!(pair[1] > pair[0], "the clock stood still or went back");
        }
        let advanced = readings.last().copied().unwrap_or(before) - before;
        assert!(
            (9_500 * MS - 1_000..=9_500 * MS + 1_000).contains(&advanced),
            "10 s of real time advanced the clock {advanced} µs: it should slew at 5%"
        );
        // no second report while the clock slews toward the new wall time
        assert_eq!(
            clock.sync(
                start + Duration::from_secs(11),
                wall(start + Duration::from_secs(11))
            ),
            None
        );
    }

    #[test]
    fn converges_to_the_stepped_wall_clock_and_then_runs_at_its_pace() {
        let mut clock = SlewingClock::new(Duration::ZERO, T0);
        let wall = |mono: Duration| T0 + micros(mono) + 3_000 * MS; // 3 s ahead from the start
        clock.sync(Duration::from_millis(1), T0 + MS);
        let readings = run(
            &mut clock,
            Duration::from_millis(1),
            Duration::from_secs(70),
            Duration::from_millis(2),
            wall,
        );
        let end = Duration::from_millis(1) + Duration::from_secs(70);
        // 3 s at 5% takes 60 s; after 70 s the clock reads the wall clock again
        assert_eq!(clock.offset(end, wall(end)), 0);
        assert_eq!(readings.last(), Some(&wall(end)));
    }

    #[test]
    fn a_step_forward_speeds_the_clock_by_at_most_five_percent() {
        let mut clock = SlewingClock::new(Duration::ZERO, T0);
        let hour = 3_600_000 * MS;
        assert_eq!(
            clock.sync(Duration::from_millis(5), T0 + 5 * MS + hour),
            Some(hour)
        );
        let before = clock.read(Duration::from_millis(5));
        run(
            &mut clock,
            Duration::from_millis(5),
            Duration::from_secs(20),
            Duration::from_millis(1),
            |mono| T0 + micros(mono) + hour,
        );
        let advanced = clock.read(Duration::from_millis(5) + Duration::from_secs(20)) - before;
        assert!(
            (21_000 * MS - 1_000..=21_000 * MS + 1_000).contains(&advanced),
            "20 s advanced the clock {advanced} µs"
        );
    }

    #[test]
    fn catching_up_moves_forward_only() {
        let mut clock = SlewingClock::new(Duration::ZERO, T0);
        let mono = Duration::from_millis(100);
        clock.catch_up(mono, T0 + 500 * MS);
        assert_eq!(clock.read(mono), T0 + 500 * MS);
        clock.catch_up(mono, T0);
        assert_eq!(clock.read(mono), T0 + 500 * MS, "never back");
        assert_eq!(clock.read(mono + Duration::from_millis(1)), T0 + 501 * MS);
    }

    #[test]
    fn jitter_below_the_threshold_is_no_step() {
        let mut clock = SlewingClock::new(Duration::ZERO, T0);
        assert_eq!(
            clock.sync(Duration::from_millis(10), T0 + 10 * MS + 40 * MS),
            None
        );
        assert_eq!(
            clock.sync(Duration::from_millis(20), T0 + 20 * MS - 30 * MS),
            None
        );
    }
}
