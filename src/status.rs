//! What the probes report: liveness of the workers and readiness of the whole service.
//!
//! Written by the pipeline (workers, start-up, the monitor task), read by `/healthz` and
//! `/readyz`. Checks of Redis and PostgreSQL run in the background (see `monitor`), so a probe
//! request only reads these flags and never waits on a database.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dataflow::Epoch;
use serde::Serialize;

use crate::operation::Operation;

/// Shared service status.
#[derive(Debug)]
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
    /// The commit frontier: the first epoch not yet committed everywhere (`u64::MAX` once the
    /// input is closed and everything is committed).
    frontier: AtomicU64,
    /// When the frontier last advanced, in microseconds since `origin` plus one (0: never). A
    /// monotonic measure: a step of the wall clock neither fakes nor hides a stall.
    frontier_advanced: AtomicU64,
    origin: Instant,
    stall: Duration,
    /// Why an entry of this process's consumers does not move, if one does not (see `monitor`).
    backlog: Mutex<Option<String>>,
    /// Operations failing right now, per worker, with the latest reason (see `retry`).
    failures: Mutex<BTreeMap<(usize, usize), (Operation, String)>>,
    /// Wakes the monitor when the group is joined.
    joined: tokio::sync::Notify,
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
    /// `redis`, `postgres`, `migrations`, `group`, `operations`, `commits`, `backlog`,
    /// `shutdown`.
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

impl Status {
    /// A status with the given stall threshold.
    pub fn new(stall: Duration) -> Self {
        Status {
            redis: Mutex::default(),
            postgres: Mutex::default(),
            migrated: AtomicBool::default(),
            group_joined: AtomicBool::default(),
            draining: AtomicBool::default(),
            workers_started: AtomicUsize::default(),
            workers_alive: AtomicUsize::default(),
            worker_died: AtomicBool::default(),
            dataflow_running: AtomicBool::default(),
            frontier: AtomicU64::default(),
            frontier_advanced: AtomicU64::default(),
            origin: Instant::now(),
            stall,
            backlog: Mutex::default(),
            failures: Mutex::default(),
            joined: tokio::sync::Notify::new(),
        }
    }

    /// Resolves once after the consumer group is joined (for the monitor's first round).
    pub async fn group_joined_signal(&self) {
        self.joined.notified().await;
    }

    /// `operation` on worker `instance` just failed for `reason` (it is being retried).
    pub fn failing(&self, operation: Operation, instance: usize, reason: &str) {
        let key = (operation as usize, instance);
        match self.failures.lock() {
            Ok(mut failures) => failures.insert(key, (operation, reason.to_owned())),
            Err(poisoned) => poisoned
                .into_inner()
                .insert(key, (operation, reason.to_owned())),
        };
    }

    /// `operation` on worker `instance` succeeded after failing.
    pub fn recovered(&self, operation: Operation, instance: usize) {
        let key = (operation as usize, instance);
        match self.failures.lock() {
            Ok(mut failures) => failures.remove(&key),
            Err(poisoned) => poisoned.into_inner().remove(&key),
        };
    }

    /// The reasons of `operation`'s current failures (`None` when it is not failing), and those
    /// of every other failing operation, as `what (worker n): reason`.
    fn failure_reasons(&self, only: Option<Operation>) -> Vec<String> {
        let failures = match self.failures.lock() {
            Ok(failures) => failures.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        failures
            .into_iter()
            .filter(|(_, (operation, _))| match only {
                Some(only) => *operation == only,
                None => !matches!(operation, Operation::Migrate | Operation::JoinGroup),
            })
            .map(|((_, instance), (operation, reason))| match only {
                Some(_) => reason,
                None => format!("{} (worker {instance}): {reason}", operation.what()),
            })
            .collect()
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

    /// Records the latest look at the backlog: why an entry is stuck, or `None`.
    pub fn backlog_checked(&self, stuck: Option<String>) {
        set(&self.backlog, stuck);
    }

    /// Migrations are applied.
    pub fn set_migrated(&self) {
        self.migrated.store(true, Ordering::Relaxed);
    }

    /// The consumer group exists and this service reads from it.
    pub fn set_group_joined(&self) {
        self.group_joined.store(true, Ordering::Relaxed);
        // a stored permit: the monitor wakes even if it is busy with a round right now
        self.joined.notify_one();
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

    /// The commit frontier as a worker's probe sees it: every epoch before `frontier` is
    /// committed everywhere; `None` once the input is closed and everything is committed.
    pub fn commit_frontier(&self, frontier: Option<Epoch>) {
        let frontier = frontier.unwrap_or(u64::MAX);
        if self.frontier.fetch_max(frontier, Ordering::Relaxed) < frontier
            || self.frontier_advanced.load(Ordering::Relaxed) == 0
        {
            let since = u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX);
            self.frontier_advanced
                .store(since.saturating_add(1), Ordering::Relaxed);
        }
    }

    /// How long ago the commit frontier last advanced (`None` before the first report).
    pub fn commit_frontier_age(&self) -> Option<Duration> {
        let advanced = self.frontier_advanced.load(Ordering::Relaxed);
        (advanced > 0).then(|| {
            self.origin
                .elapsed()
                .saturating_sub(Duration::from_micros(advanced - 1))
        })
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
        let with_reason = |state: &str, operation: Operation| {
            let reasons = self.failure_reasons(Some(operation));
            match reasons.first() {
                Some(reason) => format!("{state}: {reason}"),
                None => state.to_owned(),
            }
        };
        let migrated = self.migrated.load(Ordering::Relaxed);
        checks.push(CheckReport {
            name: "migrations",
            ok: migrated,
            state: if migrated {
                "applied".to_owned()
            } else {
                with_reason("not applied yet", Operation::Migrate)
            },
        });
        let joined = self.group_joined.load(Ordering::Relaxed)
            && self.dataflow_running.load(Ordering::Relaxed);
        checks.push(CheckReport {
            name: "group",
            ok: joined,
            state: if joined {
                "joined".to_owned()
            } else {
                with_reason("not joined", Operation::JoinGroup)
            },
        });
        let failing = self.failure_reasons(None);
        checks.push(CheckReport {
            name: "operations",
            ok: failing.is_empty(),
            state: match (failing.is_empty(), joined) {
                (true, true) => "ok".to_owned(),
                // nothing has run yet that could fail: "ok" would claim more than is known
                (true, false) => "none failing yet: starting".to_owned(),
                (false, _) => format!("failing: {}", failing.join("; ")),
            },
        });
        let (ok, state) = match self.commit_frontier_age() {
            Some(age) if age > self.stall => (
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
        let stuck = lock_ok(&self.backlog);
        let (ok, state) = match (stuck, joined) {
            (Some(stuck), _) => (false, stuck),
            (None, true) => (true, "moving".to_owned()),
            // no reader yet: whether the backlog moves is not known
            (None, false) => (false, "not read yet: the group is not joined".to_owned()),
        };
        checks.push(CheckReport {
            name: "backlog",
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
        status.commit_frontier(Some(7));
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
        let commits = |status: &Status| {
            status
                .readiness()
                .checks
                .into_iter()
                .find(|c| c.name == "commits")
                .expect("check")
        };
        let status = Status::new(Duration::from_millis(100));
        status.commit_frontier(Some(5));
        assert!(commits(&status).ok);
        std::thread::sleep(Duration::from_millis(150));
        // the same frontier again is no progress
        status.commit_frontier(Some(5));
        assert!(!commits(&status).ok, "{:?}", commits(&status));
        status.commit_frontier(Some(6));
        assert!(commits(&status).ok);
        status.commit_frontier(None);
        assert!(commits(&status).ok, "closed and all committed");
    }

    #[test]
    fn before_the_group_is_joined_nothing_claims_to_be_fine() {
        let status = Status::new(Duration::from_secs(60));
        let check = |status: &Status, name: &str| {
            status
                .readiness()
                .checks
                .into_iter()
                .find(|c| c.name == name)
                .expect("check")
        };
        assert_eq!(
            check(&status, "operations").state,
            "none failing yet: starting"
        );
        let backlog = check(&status, "backlog");
        assert!(
            !backlog.ok && backlog.state.contains("not joined"),
            "{backlog:?}"
        );
        status.set_group_joined();
        status.set_dataflow_running(true);
        assert_eq!(check(&status, "operations").state, "ok");
        let backlog = check(&status, "backlog");
        assert!(backlog.ok && backlog.state == "moving", "{backlog:?}");
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
