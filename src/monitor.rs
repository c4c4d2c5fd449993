//! Background checks: Redis PING, PostgreSQL `SELECT 1`, the stream's and the group's backlog
//! (length, lag, pending entries, their age and deliveries, entries stuck in this process).
//!
//! Run on an interval with a timeout each, so `/readyz` answers from the last result at once
//! and a hung database turns readiness false within one interval plus the timeout. A round also
//! runs the moment the consumer group is joined, so lag and pending are on `/metrics` from the
//! first commit on, not one interval later.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::status::Status;

/// How long one check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// Checks until shutdown is forced (readiness keeps being reported during the drain).
pub async fn run(config: Config, status: Arc<Status>, metrics: Arc<Metrics>, shutdown: Shutdown) {
    let interval = config.ops.monitor_interval;
    let mut redis: Option<ConnectionManager> = None;
    let mut postgres: Option<tokio_postgres::Client> = None;
    let mut swept: Option<Instant> = None;
    loop {
        check_redis(&config, &mut redis, &status, &metrics).await;
        if let Some(conn) = redis.as_mut() {
            sweep_consumers(&config, conn, &metrics, &mut swept).await;
        }
        check_postgres(&config, &mut postgres, &status).await;
        if let Some(age) = status.commit_frontier_age() {
            metrics.commit_frontier_age_seconds.set(age.as_secs_f64());
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = status.group_joined_signal() => {}
            _ = shutdown.forced() => return,
        }
    }
}

/// Deletes the group's consumers idle longer than `CONSUMER_SWEEP_IDLE_SECS` with nothing
/// pending (see `redis::consumers`), at most once a minute (or once per that idle time, when it
/// is shorter).
async fn sweep_consumers(
    config: &Config,
    conn: &mut ConnectionManager,
    metrics: &Metrics,
    swept: &mut Option<Instant>,
) {
    let idle = config.redis.consumer_sweep_idle;
    if swept.is_some_and(|at| at.elapsed() < idle.min(Duration::from_secs(60))) {
        return;
    }
    *swept = Some(Instant::now());
    let deleted = tokio::time::timeout(
        CHECK_TIMEOUT,
        crate::redis::delete_idle_consumers(
            conn,
            &config.redis.stream.key,
            &config.redis.consumer_group,
            idle,
            &[],
        ),
    )
    .await;
    match deleted {
        Ok(Ok(deleted)) if !deleted.is_empty() => {
            metrics
                .consumers_deleted
                .with_label_values(&["swept"])
                .inc_by(deleted.len() as u64);
            tracing::info!(
                consumers = ?deleted,
                idle_secs = idle.as_secs(),
                "consumers idle with nothing pending deleted from the group"
            );
        }
        Ok(Ok(_)) => {}
        Ok(Err(error)) => {
            tracing::debug!(error = %error, "consumer sweep failed; trying again later")
        }
        Err(_) => tracing::debug!("consumer sweep timed out; trying again later"),
    }
}

async fn check_redis(
    config: &Config,
    conn: &mut Option<ConnectionManager>,
    status: &Status,
    metrics: &Metrics,
) {
    if conn.is_none() {
        let opened = async {
            let client = config.redis.link.client()?;
            crate::redis::connect::command_connection(&client).await
        };
        match tokio::time::timeout(CHECK_TIMEOUT, opened).await {
            Ok(Ok(opened)) => *conn = Some(opened),
            Ok(Err(error)) => return status.redis_checked(Err(error.to_string())),
            Err(_) => return status.redis_checked(Err("connect timed out".to_owned())),
        }
    }
    let Some(conn) = conn.as_mut() else { return };
    let ping = tokio::time::timeout(
        CHECK_TIMEOUT,
        redis::cmd("PING").query_async::<String>(conn),
    )
    .await;
    match ping {
        Ok(Ok(_)) => status.redis_checked(Ok(())),
        Ok(Err(error)) => {
            return status.redis_checked(Err(crate::redact::redact_error(&error)));
        }
        Err(_) => return status.redis_checked(Err("PING timed out".to_owned())),
    }
    let dead_letters = tokio::time::timeout(
        CHECK_TIMEOUT,
        crate::redis::length(conn, &config.redis.dead_letter_stream()),
    )
    .await;
    if let Ok(Ok(entries)) = dead_letters {
        metrics
            .dead_letter_entries
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
    }
    let backlog = tokio::time::timeout(
        CHECK_TIMEOUT,
        crate::redis::backlog(
            conn,
            &config.redis.stream.key,
            &config.redis.consumer_group,
            config.ops.stall,
        ),
    )
    .await;
    let group = config.redis.consumer_group.as_str();
    match backlog {
        Ok(Ok(Some(backlog))) => {
            let set = |gauge: &prometheus::IntGaugeVec, value: u64| {
                gauge
                    .with_label_values(&[group])
                    .set(i64::try_from(value).unwrap_or(i64::MAX));
            };
            metrics
                .stream_length
                .set(i64::try_from(backlog.length).unwrap_or(i64::MAX));
            set(&metrics.pending, backlog.pending);
            // Redis cannot always tell the lag (after deletions): then an upper bound stands in,
            // flagged by processor_consumer_lag_exact, rather than the series going away.
            set(&metrics.consumer_lag, backlog.lag);
            set(&metrics.consumer_lag_exact, u64::from(backlog.lag_exact));
            set(&metrics.pending_max_deliveries, backlog.max_deliveries);
            let age = backlog.oldest_pending.map_or(0.0, |id| {
                crate::clock::unix_ms().saturating_sub(id.ms) as f64 / 1000.0
            });
            metrics
                .oldest_pending_age_seconds
                .with_label_values(&[group])
                .set(age);
            status.backlog_checked(stuck_reason(config, status, &backlog));
        }
        Ok(Ok(None)) => {
            for gauge in [
                &metrics.consumer_lag,
                &metrics.pending,
                &metrics.consumer_lag_exact,
                &metrics.pending_max_deliveries,
            ] {
                let _ = gauge.remove_label_values(&[group]);
            }
            let _ = metrics
                .oldest_pending_age_seconds
                .remove_label_values(&[group]);
            status.backlog_checked(None);
        }
        // a failed or slow look says nothing new: the PING above reports Redis's health
        Ok(Err(_)) | Err(_) => {}
    }
}

/// Why readiness fails for the backlog: an entry pending in one of this process's consumers has
/// not moved for `STALL_SECS` while the dataflow runs (its reader or worker is stuck, even if
/// the commit frontier advances with empty epochs). `None`: nothing is stuck.
fn stuck_reason(
    config: &Config,
    status: &Status,
    backlog: &crate::redis::Backlog,
) -> Option<String> {
    // Before the workers run, this process's consumers have not re-read their pending entries
    // yet: an entry idle since the last run is not stuck.
    status.commit_frontier_age()?;
    let base = config.redis.consumer_name();
    let ours = config.cluster.worker_indices();
    let (id, consumer, idle) = backlog.stuck.iter().find(|(_, consumer, _)| {
        consumer
            .strip_prefix(base.as_str())
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|index| index.parse::<usize>().ok())
            .is_some_and(|index| ours.contains(&index))
    })?;
    Some(format!(
        "entry {id} has been pending in {consumer} for {}s: its reader or worker is stuck",
        idle.as_secs()
    ))
}

async fn check_postgres(
    config: &Config,
    client: &mut Option<tokio_postgres::Client>,
    status: &Status,
) {
    if client.as_ref().is_none_or(|c| c.is_closed()) {
        *client = None;
        match tokio::time::timeout(CHECK_TIMEOUT, config.postgres.link.connect()).await {
            Ok(Ok(opened)) => *client = Some(opened),
            Ok(Err(error)) => return status.postgres_checked(Err(error.to_string())),
            Err(_) => return status.postgres_checked(Err("connect timed out".to_owned())),
        }
    }
    let Some(conn) = client.as_ref() else { return };
    match tokio::time::timeout(CHECK_TIMEOUT, conn.simple_query("SELECT 1")).await {
        Ok(Ok(_)) => status.postgres_checked(Ok(())),
        Ok(Err(error)) => {
            status.postgres_checked(Err(crate::redact::redact_error(&error)));
            *client = None;
        }
        Err(_) => {
            status.postgres_checked(Err("SELECT 1 timed out".to_owned()));
            *client = None;
        }
    }
}
