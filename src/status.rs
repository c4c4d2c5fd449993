//! What the probes report: liveness of the workers and readiness of the whole service.
//!
//! Written by the pipeline (workers, start-up, the monitor task), read by `/healthz` and
//! `/readyz`. Checks of Redis and PostgreSQL run in the background (see `monitor`), so a probe
//! request only reads these flags and never waits on a database.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Shared service status.
#[derive(Debug, Default)]
pub struct Status {
    redis: Mutex<Check>,
    postgres: Mutex<Check>,
    migrated: AtomicBool,
    group_joined: AtomicBool,
    draining: AtomicBool,
    workers_started: AtomicUsize,
    workers_alive: AtomicUsize,
    worker_died: AtomicBool,
    dataflow_running: AtomicBool,
    /// Wall-clock milliseconds up to which everything is committed (the commit frontier).
    frontier_ms: AtomicU64,
    stall_ms: AtomicU64,
}

/// The state of one background check.
#[derive(Debug, Clone, Default)]
enum Check {
    #[default]
    Unknown,
    Ok,
    Failing(String),
}

impl Check {
    fn describe(&self) -> (bool, String) {
        match self {
            Check::Unknown => (false, "not checked yet".to_owned()),
            Check::Ok => (true, "ok".to_owned()),
            Check::Failing(reason) => (false, format!("failing: {reason}")),
        }
    }
}

/// `/readyz`'s answer.
#[derive(Debug, Clone, Serialize)]
pub struct Readiness {
    /// Whether every check passes.
    pub ready: bool,
    /// Each check's state, in words.
    pub checks: Vec<CheckReport>,
}

/// One named check.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// `redis`, `postgres`, `migrations`, `group`, `commits`, `shutdown`.
    pub name: &'static str,
    /// Whether it passes.
    pub ok: bool,
    /// Its state.
    pub state: String,
}

/// `/healthz`'s answer.
#[derive(Debug, Clone, Serialize)]
pub struct Liveness {
    /// Whether the process and every worker are alive.
    pub alive: bool,
    /// Workers running.
    pub workers_alive: usize,
    /// Why not, when not.
    pub reason: Option<String>,
}

fn lock_ok<T: Clone>(mutex: &Mutex<T>) -> T {
    match mutex.lock() {
        Ok(guard) => guard.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

fn set<T>(mutex: &Mutex<T>, value: T) {
    match mutex.lock() {
        Ok(mut guard) => *guard = value,
        Err(poisoned) => *poisoned.into_inner() = value,
    }
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Status {
    /// A status with the given stall threshold.
    pub fn new(stall: Duration) -> Self {
        let status = Status::default();
        status.stall_ms.store(
            u64::try_from(stall.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        status
    }

    /// Records the latest Redis PING.
    pub fn redis_checked(&self, result: Result<(), String>) {
        set(
            &self.redis,
            result.map_or_else(Check::Failing, |()| Check::Ok),
        );
    }

    /// Records the latest PostgreSQL `SELECT 1`.
    pub fn postgres_checked(&self, result: Result<(), String>) {
        set(
            &self.postgres,
            result.map_or_else(Check::Failing, |()| Check::Ok),
        );
    }

    /// Migrations are applied.
    pub fn set_migrated(&self) {
        self.migrated.store(true, Ordering::Relaxed);
    }

    /// The consumer group exists and this service reads from it.
    pub fn set_group_joined(&self) {
        self.group_joined.store(true, Ordering::Relaxed);
    }

    /// The shutdown drain has begun.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// The timely computation has started (or ended).
    pub fn set_dataflow_running(&self, running: bool) {
        self.dataflow_running.store(running, Ordering::Relaxed);
    }

    /// A worker has started; the returned guard marks it gone when dropped, also by a panic.
    pub fn worker_started(&self) -> WorkerGuard<'_> {
        self.workers_started.fetch_add(1, Ordering::Relaxed);
        self.workers_alive.fetch_add(1, Ordering::Relaxed);
        WorkerGuard {
            status: self,
            finished: false,
        }
    }

    /// The commit frontier: everything before this wall-clock time is committed everywhere.
    pub fn commit_frontier(&self, ms: u64) {
        self.frontier_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// How far the commit frontier lags behind the wall clock.
    pub fn commit_frontier_age(&self) -> Option<Duration> {
        let frontier = self.frontier_ms.load(Ordering::Relaxed);
        (frontier > 0).then(|| Duration::from_millis(unix_ms().saturating_sub(frontier)))
    }

    /// `/healthz`.
    pub fn liveness(&self) -> Liveness {
        let workers_alive = self.workers_alive.load(Ordering::Relaxed);
        let reason = if self.worker_died.load(Ordering::Relaxed) {
            Some("a dataflow worker stopped unexpectedly (panic)".to_owned())
        } else {
            None
        };
        Liveness {
            alive: reason.is_none(),
            workers_alive,
            reason,
        }
    }

    /// `/readyz`.
    pub fn readiness(&self) -> Readiness {
        let mut checks = Vec::with_capacity(6);
        let (ok, state) = lock_ok(&self.redis).describe();
        checks.push(CheckReport {
            name: "redis",
            ok,
            state,
        });
        let (ok, state) = lock_ok(&self.postgres).describe();
        checks.push(CheckReport {
            name: "postgres",
            ok,
            state,
        });
        let migrated = self.migrated.load(Ordering::Relaxed);
        checks.push(CheckReport {
            name: "migrations",
            ok: migrated,
            state: if migrated {
                "applied"
            } else {
                "not applied yet"
            }
            .to_owned(),
        });
        let joined = self.group_joined.load(Ordering::Relaxed)
            && self.dataflow_running.load(Ordering::Relaxed);
        checks.push(CheckReport {
            name: "group",
            ok: joined,
            state: if joined { "joined" } else { "not joined" }.to_owned(),
        });
        let stall = Duration::from_millis(self.stall_ms.load(Ordering::Relaxed));
        let (ok, state) = match self.commit_frontier_age() {
            Some(age) if age > stall => (
                false,
                format!("stalled: nothing committed for {}s", age.as_secs()),
            ),
            Some(_) => (true, "advancing".to_owned()),
            None => (false, "not started".to_owned()),
        };
        checks.push(CheckReport {
            name: "commits",
            ok,
            state,
        });
        let draining = self.draining.load(Ordering::Relaxed);
        checks.push(CheckReport {
            name: "shutdown",
            ok: !draining,
            state: if draining { "draining" } else { "running" }.to_owned(),
        });
        Readiness {
            ready: checks.iter().all(|check| check.ok),
            checks,
        }
    }
}

/// Marks a worker gone when dropped; a worker that did not `finish` died (a panic).
pub struct WorkerGuard<'a> {
    status: &'a Status,
    finished: bool,
}

impl WorkerGuard<'_> {
    /// The worker returned normally.
    pub fn finish(mut self) {
        self.finished = true;
    }
}

impl Drop for WorkerGuard<'_> {
    fn drop(&mut self) {
        self.status.workers_alive.fetch_sub(1, Ordering::Relaxed);
        if !self.finished {
            self.status.worker_died.store(true, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_check_passes() {
        let status = Status::new(Duration::from_secs(60));
        assert!(!status.readiness().ready);
        status.redis_checked(Ok(()));
        status.postgres_checked(Ok(()));
        status.set_migrated();
        status.set_group_joined();
        status.set_dataflow_running(true);
        status.commit_frontier(unix_ms());
        assert!(status.readiness().ready, "{:?}", status.readiness());
        status.postgres_checked(Err("connection refused".to_owned()));
        let readiness = status.readiness();
        assert!(!readiness.ready);
        let postgres = readiness
            .checks
            .iter()
            .find(|c| c.name == "postgres")
            .expect("check");
        assert!(postgres.state.contains("connection refused"));
        status.postgres_checked(Ok(()));
        status.set_draining();
        assert!(!status.readiness().ready);
    }

    #[test]
    fn a_stalled_frontier_is_not_ready() {
        let status = Status::new(Duration::from_secs(1));
        status.commit_frontier(unix_ms() - 5_000);
        let commits = status
            .readiness()
            .checks
            .into_iter()
            .find(|c| c.name == "commits");
        assert!(!commits.expect("check").ok);
    }

    #[test]
    fn a_worker_that_does_not_finish_is_a_death() {
        let status = Status::new(Duration::from_secs(1));
        status.worker_started().finish();
        assert!(status.liveness().alive);
        let guard = status.worker_started();
        drop(guard);
        assert!(!status.liveness().alive);
    }
}
