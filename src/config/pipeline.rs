//! The pipeline's settings: epochs, state, backpressure, retries, the drain; and the timely
//! computation's shape (workers, and the processes of a cluster).

use std::num::NonZeroUsize;
use std::ops::Range;
use std::time::Duration;

use crate::config_values::{millis, seconds, ConfigError, Switch};

/// Epochs, state, backpressure, retries and the drain.
#[derive(Clone, Debug, clap::Args)]
pub struct PipelineConfig {
    /// Length of an epoch in milliseconds: entries read in one tick are committed and
    /// acknowledged together. Smaller: lower latency. Under load, epochs that queue behind a
    /// running commit are committed together (group commit), so short epochs do not shrink the
    /// transactions then.
    #[arg(long = "epoch-ms", env = "EPOCH_MS", default_value = "20", value_parser = millis(1, 60_000))]
    pub epoch: Duration,

    /// Devices held in per-device state per worker; the least recently seen is evicted beyond it.
    #[arg(long, env = "STATE_CAPACITY", default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    pub state_capacity: u64,

    /// A worker stops reading while this many of its epochs (or this many times READ_COUNT
    /// entries) are read but not yet acknowledged: bounds memory when PostgreSQL is slow or down,
    /// and the group commit's transactions under load. Default 16, or 64 with trips on (see
    /// `Config::max_inflight_epochs`).
    #[arg(long = "max-inflight-epochs", env = "MAX_INFLIGHT_EPOCHS", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_inflight: Option<u32>,

    /// Upper bound of the retry backoff for Redis and PostgreSQL operations, in milliseconds.
    #[arg(long = "retry-max-ms", env = "RETRY_MAX_MS", default_value = "5000", value_parser = millis(10, 600_000))]
    pub retry_max: Duration,

    /// How long SIGTERM/SIGINT may take to drain (commit and acknowledge everything read), in
    /// seconds.
    #[arg(long = "shutdown-timeout-secs", env = "SHUTDOWN_TIMEOUT_SECS", default_value = "30", value_parser = seconds(1, 3600))]
    pub shutdown_timeout: Duration,

    /// Whether the newest fix of every device is kept in the `device_latest` table (`on`,
    /// `off`): written per epoch from the fold, in the epoch's transaction. Off by default: at
    /// full speed it costs about 30% of the throughput (one upsert per changed device).
    #[arg(long, env = "DEVICE_LATEST", value_enum, default_value_t = Switch::Off)]
    pub device_latest: Switch,

    /// What a row the database refuses for its data becomes: `auto` dead-letters a bad row
    /// among good ones but holds the stream (entries pending, the write retried, `/readyz`
    /// failing) when the database refuses every row for one reason; `dead-letter` dead-letters
    /// every refused row, whatever the database does (the stream never stalls on the database,
    /// but a broken trigger or a new `NOT NULL` column sends the whole stream to the dead-letter
    /// stream).
    #[arg(long, env = "REFUSED_ROWS", value_enum, default_value_t = RefusedRows::Auto)]
    pub refused_rows: RefusedRows,

    /// A record whose fix time is further ahead of the wall clock than this, in seconds, is
    /// counted in `processor_future_timestamps_total` (and stored: it is the device's clock).
    #[arg(long = "future-margin-secs", env = "FUTURE_MARGIN_SECS", default_value = "300", value_parser = seconds(0, 31_536_000))]
    pub future_margin: Duration,

    /// Window of the active-devices gauge, in seconds.
    #[arg(long = "active-window-secs", env = "ACTIVE_WINDOW_SECS", default_value = "300", value_parser = seconds(1, 86_400))]
    pub active_window: Duration,
}

/// What a row the database refuses becomes (`REFUSED_ROWS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RefusedRows {
    /// Dead-lettered, unless the database refuses every row: then held until it takes them.
    Auto,
    /// Always dead-lettered.
    DeadLetter,
}

impl PipelineConfig {
    /// Devices per worker's state table.
    pub fn state_capacity(&self) -> NonZeroUsize {
        let capacity = usize::try_from(self.state_capacity).unwrap_or(usize::MAX);
        NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN)
    }

    /// The active-devices window in epochs.
    pub fn active_window_epochs(&self) -> u64 {
        let epoch = self.epoch.as_millis().max(1);
        u64::try_from(self.active_window.as_millis() / epoch)
            .unwrap_or(u64::MAX)
            .max(1)
    }
}

/// The timely computation: workers per process, and the processes of a cluster.
#[derive(Clone, Debug, clap::Args)]
pub struct ClusterConfig {
    /// Timely worker threads in this process (each reads as its own consumer). Default: the
    /// cores available to the process; required when PROCESSES > 1.
    #[arg(long, env = "WORKERS", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub workers: Option<u16>,

    /// Processes in the timely cluster (1: this process alone). With more, every process runs
    /// `WORKERS` workers and the exchange by device spans all of them.
    #[arg(long, env = "PROCESSES", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub processes: u16,

    /// This process's index in the cluster, 0..PROCESSES.
    #[arg(long, env = "PROCESS_INDEX", default_value_t = 0)]
    pub process_index: u16,

    /// The cluster's `host:port` addresses, one per process in index order: a comma-separated
    /// list, or the path of a file with one address per line. Required when PROCESSES > 1.
    #[arg(long, env = "TIMELY_HOSTS")]
    pub timely_hosts: Option<String>,
}

impl ClusterConfig {
    /// The index is within the cluster, the hosts are one per process, and a cluster says how
    /// many workers each process runs.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.processes > 1 && self.workers.is_none() {
            return Err(ConfigError::new(
                "WORKERS",
                format!(
                    "required when PROCESSES is {} (every process of a cluster must run the same \
                     number; the cores of one host are no answer for the others)",
                    self.processes
                ),
            ));
        }
        if self.process_index >= self.processes {
            return Err(ConfigError::new(
                "PROCESS_INDEX",
                format!(
                    "{} is not below PROCESSES ({})",
                    self.process_index, self.processes
                ),
            ));
        }
        self.hosts().map(|_| ())
    }

    /// The cluster's addresses (empty for a single process), checked against PROCESSES.
    pub fn hosts(&self) -> Result<Vec<String>, ConfigError> {
        let bad = |reason: String| ConfigError::new("TIMELY_HOSTS", reason);
        if self.processes == 1 {
            return Ok(Vec::new());
        }
        let Some(hosts) = self.timely_hosts.as_deref() else {
            return Err(bad(format!(
                "required when PROCESSES is {}",
                self.processes
            )));
        };
        let text = if std::path::Path::new(hosts).is_file() {
            std::fs::read_to_string(hosts).map_err(|e| bad(format!("{hosts}: {e}")))?
        } else {
            hosts.replace(',', "\n")
        };
        let list: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(str::to_owned)
            .collect();
        if list.len() != usize::from(self.processes) {
            return Err(bad(format!(
                "{} addresses for PROCESSES={}",
                list.len(),
                self.processes
            )));
        }
        if let Some(address) = list.iter().find(|a| {
            a.rsplit_once(':')
                .is_none_or(|(_, port)| port.parse::<u16>().is_err())
        }) {
            return Err(bad(format!("{address:?} is not host:port")));
        }
        Ok(list)
    }

    /// The workers of this process: `WORKERS`, else the cores available to the process (its
    /// CPU quota in a container), at most 256.
    pub fn workers(&self) -> u16 {
        self.workers.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, |cores| {
                u16::try_from(cores.get()).unwrap_or(256).min(256)
            })
        })
    }

    /// This process's workers' global indices: `PROCESS_INDEX * WORKERS ..`.
    pub fn worker_indices(&self) -> Range<usize> {
        let workers = usize::from(self.workers());
        let first = usize::from(self.process_index) * workers;
        first..first + workers
    }
}
