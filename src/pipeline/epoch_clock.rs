//! The process's epoch clock: one [`SlewingClock`] shared by every worker of the process.
//!
//! Every worker advances its input to this clock's epoch on every turn of its loop, whether or not
//! it read anything, so an idle worker never holds back the frontier (and so never holds back the
//! commit and acknowledgement of the busy ones). The clock never stops and never moves back, even
//! when the system clock steps (see [`crate::clock`]): epochs keep completing.
//!
//! # Across a timely cluster
//! The processes of a cluster must agree on the epoch closely: a process behind holds back the
//! frontier, and the data of the processes ahead waits for it before it commits. Each process
//! follows its own host's wall clock (by slewing), and the first worker of each process shares
//! its epoch with every worker of the cluster once per tick (`dataflow::operators::ShareTicks`).
//! A process that learns of a later epoch catches up at once ([`EpochClock::catch_up`]), so the
//! cluster runs at the pace of its fastest clock and no process waits on another for more than
//! about one tick and a network hop, whatever the hosts' clocks do.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dataflow::Epoch;

use crate::clock::{unix_micros, SlewingClock, SLEW_DIVISOR};
use crate::metrics::Metrics;

/// Epochs of `EPOCH_MS` cut from the process's slewing clock.
pub struct EpochClock {
    epoch_micros: i64,
    origin: Instant,
    clock: Mutex<SlewingClock>,
    metrics: Arc<Metrics>,
}

impl EpochClock {
    /// A clock ticking every `epoch`, reading the wall clock now.
    pub fn new(epoch: Duration, metrics: Arc<Metrics>) -> Self {
        EpochClock {
            epoch_micros: i64::try_from(epoch.as_micros()).unwrap_or(i64::MAX).max(1),
            origin: Instant::now(),
            clock: Mutex::new(SlewingClock::new(Duration::ZERO, unix_micros())),
            metrics,
        }
    }

    fn with_clock<T>(&self, f: impl FnOnce(&mut SlewingClock, Duration) -> T) -> T {
        let mono = self.origin.elapsed();
        let mut clock = match self.clock.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut clock, mono)
    }

    /// The current epoch (never less than one returned before).
    pub fn now(&self) -> Epoch {
        let reading = self.with_clock(|clock, mono| {
            if clock.sync_due(mono) {
                let wall = unix_micros();
                if let Some(step) = clock.sync(mono, wall) {
                    self.stepped(step);
                }
                self.metrics
                    .epoch_clock_offset_seconds
                    .set(clock.offset(mono, wall) as f64 / 1e6);
            }
            clock.read(mono)
        });
        self.epoch_of(reading)
    }

    /// Another process of the cluster is at `epoch`: move to it if this clock is behind.
    pub fn catch_up(&self, epoch: Epoch) {
        let reading = i64::try_from(epoch)
            .unwrap_or(i64::MAX)
            .saturating_mul(self.epoch_micros);
        self.with_clock(|clock, mono| clock.catch_up(mono, reading));
    }

    /// Time until the next epoch begins (how long an idle worker may sleep). Computed at the
    /// clock's fastest rate, so a worker never sleeps past a tick.
    pub fn until_next_tick(&self) -> Duration {
        let reading = self.with_clock(|clock, mono| clock.read(mono));
        let next = (reading.div_euclid(self.epoch_micros) + 1).saturating_mul(self.epoch_micros);
        let real = (next - reading) * SLEW_DIVISOR / (SLEW_DIVISOR + 1);
        Duration::from_micros(u64::try_from(real.clamp(0, self.epoch_micros)).unwrap_or(0))
    }

    fn epoch_of(&self, reading: i64) -> Epoch {
        u64::try_from(reading.div_euclid(self.epoch_micros)).unwrap_or(0)
    }

    /// One event, one place: the log line and the counter of a wall-clock step.
    fn stepped(&self, step_micros: i64) {
        let seconds = step_micros.unsigned_abs() as f64 / 1e6;
        let direction = if step_micros < 0 { "back" } else { "forward" };
        self.metrics
            .clock_step_seconds
            .with_label_values(&[direction])
            .inc_by(seconds);
        tracing::warn!(
            direction,
            step_seconds = seconds,
            absorbed_within_seconds = seconds * SLEW_DIVISOR as f64,
            "the wall clock stepped; epochs keep going and follow it by slewing"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock(epoch_ms: u64) -> EpochClock {
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        EpochClock::new(Duration::from_millis(epoch_ms), metrics)
    }

    #[test]
    fn ticks_forward_and_bounds_the_sleep() {
        let clock = clock(20);
        let first = clock.now();
        assert!(clock.until_next_tick() <= Duration::from_millis(20));
        std::thread::sleep(Duration::from_millis(45));
        assert!(clock.now() >= first + 2);
    }

    #[test]
    fn catches_up_with_a_later_epoch_and_keeps_ticking_from_there() {
        let clock = clock(20);
        let now = clock.now();
        clock.catch_up(now + 1_000);
        assert!(clock.now() >= now + 1_000);
        clock.catch_up(now);
        assert!(clock.now() >= now + 1_000, "an earlier epoch moves nothing");
        std::thread::sleep(Duration::from_millis(45));
        assert!(clock.now() >= now + 1_002);
    }
}
