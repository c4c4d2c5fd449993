//! Background checks: Redis PING, PostgreSQL `SELECT 1`, the group's lag and pending entries.
//!
//! Run on an interval with a timeout each, so `/readyz` answers from the last result at once
//! and a hung database turns readiness false within one interval plus the timeout. A round also
//! runs the moment the consumer group is joined, so lag and pending are on `/metrics` from the
//! first commit on, not one interval later.

use std::sync::Arc;
use std::time::Duration;

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
    loop {
        check_redis(&config, &mut redis, &status, &metrics).await;
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

async fn check_redis(
    config: &Config,
    conn: &mut Option<ConnectionManager>,
    status: &Status,
    metrics: &Metrics,
) {
    if conn.is_none() {
        let opened = async {
            let client =
                crate::redis::connect::client(&config.redis.url, config.redis.ca_file.as_deref())?;
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
    let groups = tokio::time::timeout(
        CHECK_TIMEOUT,
        redis::AsyncCommands::xinfo_groups::<_, redis::streams::StreamInfoGroupsReply>(
            conn,
            &config.redis.stream_key,
        ),
    )
    .await;
    if let Ok(Ok(reply)) = groups {
        let group = &config.redis.consumer_group;
        match reply.groups.iter().find(|g| &g.name == group) {
            Some(info) => {
                metrics
                    .pending
                    .with_label_values(&[group])
                    .set(i64::try_from(info.pending).unwrap_or(i64::MAX));
                match info.lag {
                    // Redis cannot always compute the lag (e.g. after deletions): then the
                    // series is removed rather than showing a number that is not true.
                    Some(lag) => metrics
                        .consumer_lag
                        .with_label_values(&[group])
                        .set(i64::try_from(lag).unwrap_or(i64::MAX)),
                    None => {
                        let _ = metrics.consumer_lag.remove_label_values(&[group]);
                    }
                }
            }
            None => {
                let _ = metrics.consumer_lag.remove_label_values(&[group]);
                let _ = metrics.pending.remove_label_values(&[group]);
            }
        }
    }
}

async fn check_postgres(
    config: &Config,
    client: &mut Option<tokio_postgres::Client>,
    status: &Status,
) {
    if client.as_ref().is_none_or(|c| c.is_closed()) {
        *client = None;
        match tokio::time::timeout(
            CHECK_TIMEOUT,
            crate::postgres::connect(&config.postgres.url, config.postgres.ca_file.as_deref()),
        )
        .await
        {
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
