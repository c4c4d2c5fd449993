//! One retry policy for every operation that talks to Redis or PostgreSQL.
//!
//! Call sites name an [`Operation`] in a [`Policy`] and hand over an attempt; the error type says
//! what kind of failure it is ([`Failure::class`]), and [`Retry::run_with`] (or [`Retry::run`],
//! when the attempt needs no state of the caller's) decides, in the one retry loop of the service,
//! with one log line and one metric:
//! - [`Class::Transient`] (a connection lost, a timeout, a failover, a lock or serialization
//!   conflict, Redis `LOADING`/`TRYAGAIN`): retried with capped, jittered backoff, quietly
//!   (`WARN ... failed; retrying`), until it succeeds;
//! - [`Class::Stalled`] (something only an operator can fix: a table gone, a permission, a
//!   password, a key of the wrong type): retried the same way, but logged at `ERROR` and shown by
//!   `/readyz`, because it will not fix itself. Nothing is lost meanwhile, and the service resumes
//!   by itself once it is fixed;
//! - [`Class::Permanent`] (the data itself is refused, e.g. a row breaking a `CHECK`): returned to
//!   the caller, which knows what to do with that data (the row sink isolates and dead-letters the
//!   rows); retrying the same request cannot succeed.
//!
//! Jitter spreads the retries of many workers and replicas after a shared outage, so a database
//! that comes back is not hit by all of them in the same millisecond. A retry loop stops when
//! shutdown reaches the stage the operation lives until: start-up steps stop when the drain
//! begins, commits and acknowledgements only when it is abandoned.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

use crate::metrics::Metrics;
pub use crate::operation::Operation;
use crate::shutdown::Shutdown;
use crate::status::Status;

/// What kind of failure an error is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Retry: it goes away by itself.
    Transient,
    /// Retry, loudly: an operator has to fix something first.
    Stalled,
    /// Do not retry: the request itself is refused.
    Permanent,
}

/// The external system an error comes from (which error counter it goes to).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum System {
    /// Redis.
    Redis,
    /// PostgreSQL.
    Postgres,
}

/// An error that knows how it should be handled.
pub trait Failure: std::fmt::Display {
    /// What kind of failure it is.
    fn class(&self) -> Class;
    /// The system that failed.
    fn system(&self) -> System;
    /// The failed command (the metric's `operation` label, e.g. `xack`, `write`).
    fn command(&self) -> &'static str;
}

/// Until which shutdown stage an operation keeps retrying.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Until {
    /// Start-up: there is no point once the drain has begun.
    Drain,
    /// Commits, dead letters, acknowledgements: they finish the drain; only an abandoned drain
    /// stops them.
    Abandon,
}

/// The failures of one retried operation so far, and its backoff.
#[derive(Debug)]
struct Attempts {
    backoff: Backoff,
    failures: u32,
}

/// Why [`Retry::run`] gave up.
#[derive(Debug)]
pub enum GaveUp<E> {
    /// A [`Class::Permanent`] failure: the caller decides.
    Permanent(E),
    /// Shutdown reached the operation's stage.
    Shutdown,
}

/// What one retried operation is, and how it backs off.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// What is retried (its log lines and its `/readyz` entry).
    pub operation: Operation,
    /// The worker (or 0): readiness tracks each worker's failures apart.
    pub instance: usize,
    /// The shutdown stage that ends the retries.
    pub until: Until,
    /// The first pause.
    pub first: Duration,
    /// The longest pause.
    pub max: Duration,
}

/// What every retried operation of a process reports to and stops by.
#[derive(Clone)]
pub struct Reporting {
    /// Ends the retries at the operation's stage.
    pub shutdown: Shutdown,
    /// The error counters.
    pub metrics: Arc<Metrics>,
    /// `/readyz`, which shows a failing operation until it succeeds again.
    pub status: Arc<Status>,
}

/// The retry policy of one operation on one worker (or of a start-up step).
#[derive(Clone)]
pub struct Retry {
    policy: Policy,
    reporting: Reporting,
}

impl Retry {
    /// The policy `policy`, reporting to `reporting`.
    pub fn new(policy: Policy, reporting: &Reporting) -> Self {
        Retry {
            policy,
            reporting: reporting.clone(),
        }
    }

    /// Sleeps for `delay`; `false` when shutdown reached this operation's stage meanwhile.
    async fn pause(&self, delay: Duration) -> bool {
        if self.stopped() {
            return false;
        }
        let shutdown = &self.reporting.shutdown;
        match self.policy.until {
            Until::Drain => tokio::select! {
                () = tokio::time::sleep(delay) => true,
                () = shutdown.triggered() => false,
            },
            Until::Abandon => tokio::select! {
                () = tokio::time::sleep(delay) => true,
                () = shutdown.forced() => false,
            },
        }
    }

    /// Runs `attempt` until it succeeds, retrying transient and stalled failures.
    pub async fn run<T, E, F, Fut>(&self, mut attempt: F) -> Result<T, GaveUp<E>>
    where
        E: Failure,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let ((), result) = self
            .run_with((), |()| {
                let attempt = attempt();
                async move { ((), attempt.await) }
            })
            .await;
        result
    }

    /// Runs `attempt` until it succeeds, as [`Retry::run`] does, passing `state` through every
    /// attempt and back: an attempt that needs the caller's connection, writer or cursor takes
    /// it, uses it and hands it on, so such call sites use this one loop too. The state comes
    /// back whatever the outcome.
    ///
    /// This is the only retry loop of the service: every failure is counted here, logged here by
    /// its class, shown in `/readyz` until the operation succeeds again (a permanent answer counts
    /// as one: the system is reachable, and the caller now handles the data), and paused for by
    /// the backoff here.
    pub async fn run_with<S, T, E, F, Fut>(
        &self,
        mut state: S,
        mut attempt: F,
    ) -> (S, Result<T, GaveUp<E>>)
    where
        E: Failure,
        F: FnMut(S) -> Fut,
        Fut: Future<Output = (S, Result<T, E>)>,
    {
        let mut attempts = Attempts {
            backoff: Backoff::new(self.policy.first, self.policy.max),
            failures: 0,
        };
        loop {
            if self.stopped() {
                return (state, Err(GaveUp::Shutdown));
            }
            let (back, result) = attempt(state).await;
            state = back;
            match result {
                Ok(value) => {
                    self.recovered(&attempts);
                    return (state, Ok(value));
                }
                Err(error) if error.class() == Class::Permanent => {
                    self.count(&error);
                    self.recovered(&attempts);
                    return (state, Err(GaveUp::Permanent(error)));
                }
                Err(error) => {
                    if !self.failed(&error, &mut attempts).await {
                        return (state, Err(GaveUp::Shutdown));
                    }
                }
            }
        }
    }

    /// One failure of a retried attempt: counted, logged by its class, shown in `/readyz`, then
    /// the backoff's pause. `false` when shutdown reached the operation's stage (stop retrying).
    async fn failed<E: Failure>(&self, error: &E, attempts: &mut Attempts) -> bool {
        attempts.failures += 1;
        self.count(error);
        let delay = attempts.backoff.next_delay();
        let reason = error.to_string();
        let Policy {
            operation,
            instance,
            ..
        } = self.policy;
        self.reporting.status.failing(operation, instance, &reason);
        let retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        if error.class() == Class::Transient {
            tracing::warn!(
                operation = operation.what(),
                worker = instance,
                attempt = attempts.failures,
                retry_in_ms,
                error = %reason,
                "{}",
                operation.retry_message(false)
            );
        } else {
            tracing::error!(
                operation = operation.what(),
                worker = instance,
                attempt = attempts.failures,
                retry_in_ms,
                error = %reason,
                "{}",
                operation.retry_message(true)
            );
        }
        self.pause(delay).await
    }

    /// The operation got an answer after `attempts`: after failures, `/readyz` forgets them and
    /// one line says so.
    fn recovered(&self, attempts: &Attempts) {
        if attempts.failures > 0 {
            let Policy {
                operation,
                instance,
                ..
            } = self.policy;
            self.reporting.status.recovered(operation, instance);
            tracing::info!(
                operation = operation.what(),
                worker = instance,
                failures = attempts.failures,
                "{} succeeded again",
                operation.what()
            );
        }
    }

    /// Whether shutdown has reached this operation's stage.
    pub fn stopped(&self) -> bool {
        match self.policy.until {
            Until::Drain => self.reporting.shutdown.is_triggered(),
            Until::Abandon => self.reporting.shutdown.is_forced(),
        }
    }

    /// Counts a failure in its system's error counter.
    fn count<E: Failure>(&self, error: &E) {
        let metrics = &self.reporting.metrics;
        let counter = match error.system() {
            System::Redis => &metrics.redis_errors,
            System::Postgres => &metrics.postgres_errors,
        };
        counter.with_label_values(&[error.command()]).inc();
    }
}

/// Capped exponential backoff with full jitter: doubles from `initial` up to `max`, each pause
/// randomised in `[d/2, d]`.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Starts at `initial`, never waits more than `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            next: initial.min(max),
        }
    }

    /// The pause to take now; the following one will be twice as long (up to the cap).
    pub fn next_delay(&mut self) -> Duration {
        let current = self.next;
        self.next = (current * 2).min(self.max);
        let half = current / 2;
        let jitter_ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        half + Duration::from_millis(rand::rng().random_range(0..=jitter_ms))
    }

    /// Back to the initial pause after a success.
    pub fn reset(&mut self) {
        self.next = self.initial.min(self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        let delays: Vec<Duration> = (0..8).map(|_| backoff.next_delay()).collect();
        assert!(delays[0] >= Duration::from_millis(50) && delays[0] <= Duration::from_millis(100));
        assert!(delays.iter().all(|d| *d <= Duration::from_millis(1000)));
        assert!(delays[7] >= Duration::from_millis(500));
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(100));
    }

    #[derive(Debug)]
    struct Flaky(Class);

    impl std::fmt::Display for Flaky {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "flaky {:?}", self.0)
        }
    }

    impl Failure for Flaky {
        fn class(&self) -> Class {
            self.0
        }
        fn system(&self) -> System {
            System::Postgres
        }
        fn command(&self) -> &'static str {
            "write"
        }
    }

    fn retry(shutdown: &Shutdown) -> (Retry, Arc<Metrics>, Arc<Status>) {
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let status = Arc::new(Status::new(Duration::from_secs(60)));
        let retry = Retry::new(
            Policy {
                operation: Operation::Write,
                instance: 3,
                until: Until::Abandon,
                first: Duration::from_millis(1),
                max: Duration::from_millis(4),
            },
            &Reporting {
                shutdown: shutdown.clone(),
                metrics: Arc::clone(&metrics),
                status: Arc::clone(&status),
            },
        );
        (retry, metrics, status)
    }

    #[tokio::test]
    async fn transient_and_stalled_failures_are_retried_counted_and_shown() {
        let shutdown = Shutdown::new();
        let (retry, metrics, status) = retry(&shutdown);
        let mut outcomes = vec![
            Err(Flaky(Class::Transient)),
            Err(Flaky(Class::Stalled)),
            Ok(7),
        ]
        .into_iter();
        let seen = Arc::clone(&status);
        let result = retry
            .run(|| {
                let next = outcomes.next().unwrap_or(Ok(0));
                let failing = seen.readiness();
                async move {
                    // while it fails, /readyz names the operation and the reason
                    if next.is_ok() {
                        let ops = failing
                            .checks
                            .iter()
                            .find(|c| c.name == "operations")
                            .map(|c| c.state.clone())
                            .unwrap_or_default();
                        assert!(ops.contains("epoch write"), "{ops}");
                        assert!(ops.contains("flaky Stalled"), "{ops}");
                    }
                    next
                }
            })
            .await;
        assert!(matches!(result, Ok(7)));
        assert_eq!(
            metrics.postgres_errors.with_label_values(&["write"]).get(),
            2
        );
        let ops = status.readiness();
        let check = ops.checks.iter().find(|c| c.name == "operations");
        assert!(check.is_some_and(|c| c.ok), "recovered: {ops:?}");
    }

    #[tokio::test]
    async fn state_goes_through_every_attempt_and_comes_back() {
        let shutdown = Shutdown::new();
        let (retry, metrics, _) = retry(&shutdown);
        // the state counts the attempts; the third one succeeds
        let (tries, result) = retry
            .run_with(0u32, |tries| async move {
                let tries = tries + 1;
                let outcome = if tries < 3 {
                    Err(Flaky(Class::Transient))
                } else {
                    Ok(tries * 10)
                };
                (tries, outcome)
            })
            .await;
        assert_eq!(tries, 3);
        assert!(matches!(result, Ok(30)));
        assert_eq!(
            metrics.postgres_errors.with_label_values(&["write"]).get(),
            2
        );
        // a permanent failure hands the state back too
        let (tries, result) = retry
            .run_with(7u32, |tries| async move {
                (tries + 1, Err::<(), _>(Flaky(Class::Permanent)))
            })
            .await;
        assert_eq!(tries, 8);
        assert!(matches!(result, Err(GaveUp::Permanent(_))));
    }

    #[tokio::test]
    async fn a_permanent_failure_is_returned_at_once() {
        let shutdown = Shutdown::new();
        let (retry, _, _) = retry(&shutdown);
        let mut calls = 0;
        let result: Result<(), _> = retry
            .run(|| {
                calls += 1;
                async { Err(Flaky(Class::Permanent)) }
            })
            .await;
        assert!(matches!(
            result,
            Err(GaveUp::Permanent(Flaky(Class::Permanent)))
        ));
        assert_eq!(calls, 1);
    }

    #[tokio::test]
    async fn shutdown_at_the_operations_stage_stops_the_retries() {
        let shutdown = Shutdown::new();
        let (retry, _, _) = retry(&shutdown);
        shutdown.trigger(); // the drain: commits go on
        let mut calls = 0;
        let result: Result<(), _> = retry
            .run(|| {
                calls += 1;
                let stop = calls == 3;
                let shutdown = shutdown.clone();
                async move {
                    if stop {
                        shutdown.force();
                    }
                    Err(Flaky(Class::Transient))
                }
            })
            .await;
        assert!(matches!(result, Err(GaveUp::Shutdown)));
        assert_eq!(
            calls, 3,
            "retried through the drain, stopped when it was abandoned"
        );
    }
}
