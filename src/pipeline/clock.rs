//! The shared clock that makes epochs advance together on every worker.
//!
//! Every worker (in every process of a cluster) derives its epoch from wall-clock time divided by
//! `EPOCH_MS`, and advances its input to the current tick whether or not it read anything. An
//! idle worker therefore never holds back the frontier, and so never holds back the commit and
//! acknowledgement of the busy ones. Clocks of different hosts need not agree exactly: a worker
//! that runs behind only delays the frontier by its skew, it never breaks correctness.

use std::time::Duration;

use crate::status::unix_ms;

use dataflow::Epoch;

/// Wall-clock ticks as epochs; never moves back, even when the system clock does.
#[derive(Debug)]
pub struct EpochClock {
    epoch_ms: u64,
    last: Epoch,
}

impl EpochClock {
    /// A clock ticking every `epoch`.
    pub fn new(epoch: Duration) -> Self {
        EpochClock {
            epoch_ms: u64::try_from(epoch.as_millis()).unwrap_or(u64::MAX).max(1),
            last: 0,
        }
    }

    /// The current epoch.
    pub fn now(&mut self) -> Epoch {
        self.last = self.last.max(unix_ms() / self.epoch_ms);
        self.last
    }

    /// Time until the next tick (how long an idle worker may sleep).
    pub fn until_next_tick(&self) -> Duration {
        let next_ms = self.last.saturating_add(1).saturating_mul(self.epoch_ms);
        Duration::from_millis(next_ms.saturating_sub(unix_ms()).min(self.epoch_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_forward_and_bounds_the_sleep() {
        let mut clock = EpochClock::new(Duration::from_millis(20));
        let first = clock.now();
        assert!(clock.until_next_tick() <= Duration::from_millis(20));
        std::thread::sleep(Duration::from_millis(45));
        assert!(clock.now() >= first + 2);
    }
}
