//! One retry policy for every operation that talks to Redis or PostgreSQL.
//!
//! Call sites name an [`Operation`] and hand over an attempt; the error type says what kind of
//! failure it is ([`Failure::class`]), and [`Retry::run`] decides, in one place, with one log line
//! and one metric:
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
pub struct Attempts {
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

/// The retry policy of one operation on one worker (or of a start-up step).
#[derive(Clone)]
pub struct Retry {
    operation: Operation,
    /// The worker (or 0): readiness tracks each worker's failures apart.
    instance: usize,
    until: Until,
    first: Duration,
    max: Duration,
    shutdown: Shutdown,
    metrics: Arc<Metrics>,
    status: Arc<Status>,
}

impl Retry {
    /// The policy for `operation` on worker `instance`: backoff from `first` up to `max`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        operation: Operation,
        instance: usize,
        until: Until,
        first: Duration,
        max: Duration,
        shutdown: Shutdown,
        metrics: Arc<Metrics>,
        status: Arc<Status>,
    ) -> Self {
        Retry {
            operation,
            instance,
            until,
            first,
            max,
            shutdown,
            metrics,
            status,
        }
    }

    /// The same policy for another operation.
    pub fn for_operation(&self, operation: Operation) -> Self {
        Retry {
            operation,
            ..self.clone()
        }
    }

    /// Sleeps for `delay`; `false` when shutdown reached this operation's stage meanwhile.
    async fn pause(&self, delay: Duration) -> bool {
        if self.stopped() {
            return false;
        }
        match self.until {
            Until::Drain => tokio::select! {
                () = tokio::time::sleep(delay) => true,
                () = self.shutdown.triggered() => false,
            },
            Until::Abandon => tokio::select! {
                () = tokio::time::sleep(delay) => true,
                () = self.shutdown.forced() => false,
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
        let mut attempts = self.attempts();
        loop {
            if self.stopped() {
                return Err(GaveUp::Shutdown);
            }
            match attempt().await {
                Ok(value) => {
                    self.succeeded(&mut attempts);
                    return Ok(value);
                }
                Err(error) if error.class() == Class::Permanent => {
                    self.count(&error);
                    return Err(GaveUp::Permanent(error));
                }
                Err(error) => {
                    if !self.failed(&error, &mut attempts).await {
                        return Err(GaveUp::Shutdown);
                    }
                }
            }
        }
    }

    /// A fresh count of attempts, for a loop that calls [`Retry::failed`] and
    /// [`Retry::succeeded`] itself (when each attempt needs state the loop keeps).
    pub fn attempts(&self) -> Attempts {
        Attempts {
            backoff: Backoff::new(self.first, self.max),
            failures: 0,
        }
    }

    /// One failure of a retried attempt: counted, logged by its class, shown in `/readyz`, then
    /// the backoff's pause. `false` when shutdown reached the operation's stage (stop retrying).
    pub async fn failed<E: Failure>(&self, error: &E, attempts: &mut Attempts) -> bool {
        attempts.failures += 1;
        self.count(error);
        let delay = attempts.backoff.next_delay();
        let reason = error.to_string();
        self.status.failing(self.operation, self.instance, &reason);
        let retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        if error.class() == Class::Transient {
            tracing::warn!(
                operation = self.operation.what(),
                worker = self.instance,
                attempt = attempts.failures,
                retry_in_ms,
                error = %reason,
                "{}",
                self.operation.retry_message(false)
            );
        } else {
            tracing::error!(
                operation = self.operation.what(),
                worker = self.instance,
                attempt = attempts.failures,
                retry_in_ms,
                error = %reason,
                "{}",
                self.operation.retry_message(true)
            );
        }
        self.pause(delay).await
    }

    /// The attempt succeeded: after failures, `/readyz` forgets them and one line says so.
    pub fn succeeded(&self, attempts: &mut Attempts) {
        if attempts.failures > 0 {
            self.status.recovered(self.operation, self.instance);
            tracing::info!(
                operation = self.operation.what(),
                worker = self.instance,
                failures = attempts.failures,
                "{} succeeded again",
                self.operation.what()
            );
        }
        attempts.failures = 0;
        attempts.backoff.reset();
    }

    /// Whether shutdown has reached this operation's stage.
    pub fn stopped(&self) -> bool {
        match self.until {
            Until::Drain => self.shutdown.is_triggered(),
            Until::Abandon => self.shutdown.is_forced(),
        }
    }

    /// Counts a failure in its system's error counter.
    fn count<E: Failure>(&self, error: &E) {
        let counter = match error.system() {
            System::Redis => &self.metrics.redis_errors,
            System::Postgres => &self.metrics.postgres_errors,
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
            Operation::Write,
            3,
            Until::Abandon,
            Duration::from_millis(1),
            Duration::from_millis(4),
            shutdown.clone(),
            Arc::clone(&metrics),
            Arc::clone(&status),
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
