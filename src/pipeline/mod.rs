//! The service's run: connect, migrate, join the group, start the timely workers, drain.

mod acker;
mod clock;
mod committer;
mod inflight;
mod sinks;
mod source;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;

use crate::config::Config;
use crate::logging::redact_url;
use crate::metrics::Metrics;
use crate::postgres::{self, PostgresError};
use crate::redis::{self as redis_io, RedisError};
use crate::retry::Backoff;
use crate::shutdown::Shutdown;
use crate::status::Status;

pub use worker::WorkerReport;

/// What a finished run reports.
#[derive(Debug, Clone, Default)]
pub struct RunReport {
    /// One report per worker of this process, by index.
    pub workers: Vec<WorkerReport>,
}

/// Why the service could not run to a clean stop.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// PostgreSQL failed in a way start-up cannot get past.
    #[error(transparent)]
    Postgres(#[from] PostgresError),
    /// Redis failed in a way start-up cannot get past.
    #[error(transparent)]
    Redis(#[from] RedisError),
    /// The timely computation could not start or a worker panicked.
    #[error("dataflow: {0}")]
    Dataflow(String),
    /// The shutdown drain did not finish in time; unacknowledged entries stay pending.
    #[error("shutdown drain did not finish within {0:?}; unacknowledged entries stay pending for the next start")]
    DrainTimeout(Duration),
}

/// What every worker shares.
pub struct Context {
    pub(crate) config: Config,
    pub(crate) consumer_name: String,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) status: Arc<Status>,
    pub(crate) shutdown: Shutdown,
    pub(crate) runtime: Handle,
    pub(crate) redis_client: redis::Client,
    pub(crate) redis_commands: redis::aio::ConnectionManager,
    /// The process's epoch clock, shared by its workers.
    pub(crate) clock: Arc<clock::EpochClock>,
}

/// Runs the service until `shutdown` is triggered and the drain completes.
///
/// Start-up waits (with backoff) for PostgreSQL and Redis rather than failing, so a service
/// started before its databases comes up by itself. Returns early with an empty report when
/// shutdown is triggered during start-up.
pub async fn run(
    config: Config,
    metrics: Arc<Metrics>,
    status: Arc<Status>,
    shutdown: Shutdown,
) -> Result<RunReport, RunError> {
    let consumer_name = config.consumer_name();
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        redis_url = %redact_url(&config.redis_url),
        database_url = %redact_url(&config.database_url),
        stream = %config.stream_key,
        group = %config.consumer_group,
        consumer = %consumer_name,
        workers = config.workers,
        epoch_ms = config.epoch_ms,
        "starting"
    );
    let retry_max = config.retry_max();

    // PostgreSQL: schema first, so no row is read before there is a table to write it to.
    let Some(migrated) = until_ok(&shutdown, retry_max, "postgres migrate", || async {
        let mut client =
            postgres::connect(&config.database_url, config.database_ca_file.as_deref()).await?;
        postgres::migrate(&mut client, &config.timescale()).await
    })
    .await
    else {
        return Ok(RunReport::default());
    };
    status.set_migrated();
    match &migrated.storage {
        postgres::Storage::Hypertable {
            version,
            compress_after,
            retention,
        } => tracing::info!(
            applied = ?migrated.applied,
            timescaledb = %version,
            chunk_interval = %config.chunk_interval,
            compress_after = %postgres::timescale::Optional(*compress_after),
            retention = %postgres::timescale::Optional(*retention),
            "schema ready: positions is a TimescaleDB hypertable"
        ),
        postgres::Storage::Plain(reason) => tracing::info!(
            applied = ?migrated.applied,
            reason = %reason,
            "schema ready: positions is a plain table"
        ),
    }

    // Redis: the group exists, and retired workers' pending entries have heirs, before any
    // worker reads.
    let redis_client =
        redis_io::connect::client(&config.redis_url, config.redis_ca_file.as_deref())?;
    let dead_letter_stream = config.dead_letter_stream();
    let Some((redis_commands, created, adopted)) =
        until_ok(&shutdown, retry_max, "redis join", || async {
            let mut conn = redis_io::connect::command_connection(&redis_client).await?;
            redis_io::check_dead_letter_stream(&mut conn, &dead_letter_stream).await?;
            let created = redis_io::ensure_group(
                &mut conn,
                &config.stream_key,
                &config.consumer_group,
                &config.group_start_id,
            )
            .await?;
            let adopted = redis_io::adopt_retired_workers(
                &mut conn,
                &config.stream_key,
                &config.consumer_group,
                &consumer_name,
                config.worker_indices(),
            )
            .await?;
            Ok::<_, RedisError>((conn, created, adopted))
        })
        .await
    else {
        return Ok(RunReport::default());
    };
    tracing::info!(created, adopted, group = %config.consumer_group, "consumer group joined");
    status.set_group_joined();

    let shutdown_timeout = config.shutdown_timeout();
    let timely_config = timely_config(&config)?;
    let clock = Arc::new(clock::EpochClock::new(config.epoch(), Arc::clone(&metrics)));
    let context = Arc::new(Context {
        clock,
        config,
        consumer_name,
        metrics,
        status: Arc::clone(&status),
        shutdown: shutdown.clone(),
        runtime: Handle::current(),
        redis_client,
        redis_commands,
    });

    // After SHUTDOWN_TIMEOUT_SECS of draining, give up: what is unacknowledged stays pending.
    let deadline = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            shutdown.triggered().await;
            tokio::time::sleep(shutdown_timeout).await;
            tracing::error!(?shutdown_timeout, "drain is taking too long; stopping now");
            shutdown.force();
        })
    };
    status.set_dataflow_running(true);
    let joined = tokio::task::spawn_blocking(move || {
        let guards = timely::execute(timely_config, move |worker| worker::run(worker, &context))
            .map_err(RunError::Dataflow)?;
        guards
            .join()
            .into_iter()
            .map(|result| result.map_err(RunError::Dataflow))
            .collect::<Result<Vec<_>, _>>()
    })
    .await;
    deadline.abort();
    status.set_dataflow_running(false);
    let mut reports = joined.map_err(|e| RunError::Dataflow(e.to_string()))??;
    reports.sort_by_key(|report| report.index);
    if reports.iter().any(|report| !report.drained) {
        return Err(RunError::DrainTimeout(shutdown_timeout));
    }
    tracing::info!("stopped: everything read was committed and acknowledged");
    Ok(RunReport { workers: reports })
}

/// Retries `attempt` with backoff until it succeeds; `None` if shutdown begins first.
async fn until_ok<T, E, F, Fut>(
    shutdown: &Shutdown,
    retry_max: Duration,
    what: &str,
    mut attempt: F,
) -> Option<T>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut backoff = Backoff::new(Duration::from_millis(200), retry_max);
    loop {
        if shutdown.is_triggered() {
            return None;
        }
        match attempt().await {
            Ok(value) => return Some(value),
            Err(error) => {
                tracing::warn!(error = %error, "{what} failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                    _ = shutdown.triggered() => return None,
                }
            }
        }
    }
}

/// One process (`WORKERS` threads), or one process of a cluster (`PROCESSES`, `PROCESS_INDEX`,
/// `TIMELY_HOSTS`): the exchange by device then spans every worker of every process.
fn timely_config(config: &Config) -> Result<timely::Config, RunError> {
    let workers = usize::from(config.workers);
    let hosts = config
        .cluster_hosts()
        .map_err(|e| RunError::Dataflow(e.to_string()))?;
    if hosts.is_empty() {
        return Ok(timely::Config::process(workers));
    }
    tracing::info!(
        processes = config.processes,
        process_index = config.process_index,
        hosts = ?hosts,
        "joining the timely cluster"
    );
    Ok(timely::Config {
        communication: timely::CommunicationConfig::Cluster {
            threads: workers,
            process: usize::from(config.process_index),
            addresses: hosts,
            report: false,
            zerocopy: false,
        },
        worker: timely::WorkerConfig::default(),
    })
}
