//! The service's run: connect, migrate, join the group, start the timely workers, drain.
//!
//! - `worker.rs`: one timely worker's dataflow and loop (epochs, backpressure, acknowledgement);
//! - `source.rs`: its reader task (XREADGROUP, claims, poison entries);
//! - `committer.rs`: the bridge from a sink operator to its async writer task (group commit);
//! - `row_sink.rs`, `dead_letter_sink.rs`: what the two sinks' commit tasks do (rows to
//!   PostgreSQL, refused entries to the dead-letter stream);
//! - `acker.rs`: the acknowledgement task; `inflight.rs`: ids waiting for their commit;
//! - `epoch_clock.rs`: the process's epoch clock;
//! - `keeper.rs`: the resume point stored in PostgreSQL, and trimming the stream.

mod acker;
mod committer;
mod dead_letter_sink;
mod epoch_clock;
mod inflight;
mod keeper;
mod row_sink;
mod source;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;

pub use worker::WorkerReport;

use crate::config::{Config, RefusedRows};
use crate::metrics::Metrics;
use crate::postgres::{self, PostgresError};
use crate::redact::redact_url;
use crate::redis::{self as redis_io, RedisError};
use crate::retry::{GaveUp, Operation, Policy, Reporting, Retry, Until};
use crate::shutdown::Shutdown;
use crate::status::Status;

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

/// Faults a test injects into a run; never configured, and empty in the service.
#[doc(hidden)]
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// The worker with this index panics once it has started.
    pub panic_worker: Option<usize>,
    /// The reader of the worker with this index hangs after its first entries, without handing
    /// them to the dataflow (the worker commits empty epochs on).
    pub stuck_reader: Option<usize>,
}

/// What every worker shares.
pub(crate) struct Context {
    pub(crate) config: Config,
    pub(crate) consumer_name: String,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) status: Arc<Status>,
    pub(crate) shutdown: Shutdown,
    /// What every retry reports to and stops by.
    pub(crate) reporting: Reporting,
    /// The process's streak of rows the database refused (`REFUSED_ROWS=auto`).
    pub(crate) refusals: Option<Arc<std::sync::Mutex<postgres::Streak>>>,
    pub(crate) runtime: Handle,
    pub(crate) redis_client: redis::Client,
    pub(crate) redis_commands: redis::aio::ConnectionManager,
    /// The process's epoch clock, shared by its workers.
    pub(crate) clock: Arc<epoch_clock::EpochClock>,
    /// Where the group resumes if it vanishes, advanced by every acknowledgement.
    pub(crate) resume: Arc<redis_io::ResumePoint>,
    pub(crate) faults: Faults,
}

/// Pause before the first retry of a start-up step.
const FIRST_STARTUP_RETRY: Duration = Duration::from_millis(200);

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
    faults: Faults,
) -> Result<RunReport, RunError> {
    let consumer_name = config.redis.consumer_name();
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        redis_url = %redact_url(&config.redis.link.url),
        database_url = %redact_url(&config.postgres.link.url),
        stream = %config.redis.stream.key,
        group = %config.redis.consumer_group,
        consumer = %consumer_name,
        workers = config.cluster.workers(),
        epoch_ms = u64::try_from(config.pipeline.epoch.as_millis()).unwrap_or(u64::MAX),
        "starting"
    );
    let reporting = Reporting {
        shutdown: shutdown.clone(),
        metrics: Arc::clone(&metrics),
        status: Arc::clone(&status),
    };
    let startup = |operation| {
        Retry::new(
            Policy {
                operation,
                instance: 0,
                until: Until::Drain,
                first: FIRST_STARTUP_RETRY,
                max: config.pipeline.retry_max,
            },
            &reporting,
        )
    };

    // PostgreSQL: schema first, so no row is read before there is a table to write it to.
    let migrated = startup(Operation::Migrate)
        .run(|| async {
            let mut client = config.postgres.link.connect().await?;
            let report = postgres::prepare(&mut client, &config.postgres, config.outputs()).await?;
            let point = postgres::load_resume_point(
                &client,
                &config.redis.stream.key,
                &config.redis.consumer_group,
            )
            .await?;
            Ok::<_, PostgresError>((report, point))
        })
        .await;
    let (migrated, stored_point) = match migrated {
        Ok(migrated) => migrated,
        Err(GaveUp::Shutdown) => return Ok(RunReport::default()),
        Err(GaveUp::Permanent(error)) => return Err(error.into()),
    };
    status.set_migrated();
    log_storage(&config, &migrated);

    // Redis: the group exists, and retired workers' pending entries have heirs, before any
    // worker reads.
    let redis_client = config.redis.link.client()?;
    let dead_letter_stream = config.redis.dead_letter_stream();
    let joined = startup(Operation::JoinGroup)
        .run(|| async {
            let mut conn = redis_io::connect::command_connection(&redis_client).await?;
            redis_io::check_dead_letter_stream(&mut conn, &dead_letter_stream).await?;
            let created = redis_io::ensure_group_resuming(
                &mut conn,
                &config.redis.stream.key,
                &config.redis.consumer_group,
                stored_point,
                &config.redis.group_start_id,
            )
            .await?;
            let adopted = redis_io::adopt_retired_workers(
                &mut conn,
                &config.redis.stream.key,
                &config.redis.consumer_group,
                &consumer_name,
                config.cluster.worker_indices(),
            )
            .await?;
            Ok::<_, RedisError>((conn, created, adopted))
        })
        .await;
    let (redis_commands, created, adopted) = match joined {
        Ok(joined) => joined,
        Err(GaveUp::Shutdown) => return Ok(RunReport::default()),
        Err(GaveUp::Permanent(error)) => return Err(error.into()),
    };
    match &created {
        Some((start_id, case)) => tracing::info!(
            group = %config.redis.consumer_group,
            start_id = %start_id,
            from = case.describe(),
            adopted,
            "consumer group created"
        ),
        None => {
            tracing::info!(adopted, group = %config.redis.consumer_group, "consumer group joined")
        }
    }
    status.set_group_joined();
    if shutdown.is_triggered() {
        // Stopped during start-up: nothing was read. (In a cluster, starting the computation now
        // would wait for peers that are stopping too.)
        return Ok(RunReport::default());
    }

    let shutdown_timeout = config.pipeline.shutdown_timeout;
    let timely_config = timely_config(&config)?;
    let clock = Arc::new(epoch_clock::EpochClock::new(
        config.pipeline.epoch,
        Arc::clone(&metrics),
    ));
    let resume = Arc::new(redis_io::ResumePoint::default());
    if let Some(point) = stored_point {
        resume.advance(point);
    }
    let (stop_keeper, keeper_stopped) = tokio::sync::oneshot::channel();
    let keeper = tokio::spawn(
        keeper::Keeper {
            config: config.clone(),
            resume: Arc::clone(&resume),
            redis: redis_commands.clone(),
            metrics: Arc::clone(&metrics),
            stored: stored_point,
            postgres: None,
            store_failing: false,
            trim_failing: false,
        }
        .run(keeper_stopped),
    );
    let refusals = (config.pipeline.refused_rows == RefusedRows::Auto)
        .then(|| Arc::new(std::sync::Mutex::new(postgres::Streak::default())));
    let context = Arc::new(Context {
        config,
        consumer_name,
        metrics,
        status: Arc::clone(&status),
        shutdown: shutdown.clone(),
        reporting: reporting.clone(),
        refusals,
        runtime: Handle::current(),
        redis_client,
        redis_commands,
        clock,
        resume,
        faults,
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
    let workers = Arc::clone(&context);
    let joined = tokio::task::spawn_blocking(move || {
        let guards = timely::execute(timely_config, move |worker| worker::run(worker, &workers))
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
    // the point the drain's last acknowledgements left, stored before the process ends
    let _ = stop_keeper.send(());
    let _ = tokio::time::timeout(Duration::from_secs(3), keeper).await;
    let mut reports = joined.map_err(|e| RunError::Dataflow(e.to_string()))??;
    reports.sort_by_key(|report| report.index);
    if reports.iter().any(|report| !report.drained) {
        return Err(RunError::DrainTimeout(shutdown_timeout));
    }
    delete_own_consumers(&context, &reports).await;
    tracing::info!("stopped: everything read was committed and acknowledged");
    Ok(RunReport { workers: reports })
}

/// After a clean drain nothing is pending in this process's consumers (one per worker): they go,
/// or every deploy that renames the process would leave them in the group for good (see
/// `redis::consumers`). A drain that was not clean never gets here: its consumers stay, for
/// another replica to claim from.
async fn delete_own_consumers(ctx: &Context, reports: &[WorkerReport]) {
    let own: Vec<String> = reports
        .iter()
        .map(|report| report.consumer.clone())
        .collect();
    let redis = &ctx.config.redis;
    let mut conn = ctx.redis_commands.clone();
    let deleted = redis_io::delete_idle_consumers(
        &mut conn,
        &redis.stream.key,
        &redis.consumer_group,
        Duration::ZERO,
        &own,
    )
    .await;
    match deleted {
        Ok(deleted) if deleted.is_empty() => {}
        Ok(deleted) => {
            ctx.metrics
                .consumers_deleted
                .with_label_values(&["drain"])
                .inc_by(deleted.len() as u64);
            tracing::info!(
                consumers = ?deleted,
                "consumers of this process deleted from the group after a clean drain"
            );
        }
        Err(error) => tracing::warn!(
            error = %error,
            "could not delete this process's consumers after the drain; the sweep of another replica will"
        ),
    }
}

/// The start-up line that says what `positions` is.
fn log_storage(config: &Config, migrated: &postgres::MigrationReport) {
    match &migrated.storage {
        postgres::Storage::Hypertable {
            version,
            compress_after,
            retention,
        } => tracing::info!(
            applied = ?migrated.applied,
            timescaledb = %version,
            chunk_interval = %config.postgres.hypertable.chunk_interval,
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
}

/// One process (`WORKERS` threads), or one process of a cluster (`PROCESSES`, `PROCESS_INDEX`,
/// `TIMELY_HOSTS`): the exchange by device then spans every worker of every process.
fn timely_config(config: &Config) -> Result<timely::Config, RunError> {
    let workers = usize::from(config.cluster.workers());
    let hosts = config
        .cluster
        .hosts()
        .map_err(|e| RunError::Dataflow(e.to_string()))?;
    if hosts.is_empty() {
        return Ok(timely::Config::process(workers));
    }
    tracing::info!(
        processes = config.cluster.processes,
        process_index = config.cluster.process_index,
        hosts = ?hosts,
        "joining the timely cluster"
    );
    Ok(timely::Config {
        communication: timely::CommunicationConfig::Cluster {
            threads: workers,
            process: usize::from(config.cluster.process_index),
            addresses: hosts,
            report: false,
            zerocopy: false,
        },
        worker: timely::WorkerConfig::default(),
    })
}
