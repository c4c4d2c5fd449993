//! One `Config`, parsed once in `main`: every setting is an environment variable and a `--flag`.
//!
//! A bad value must stop the service before it touches Redis or PostgreSQL, with one line that
//! names the variable: [`Config::parse_from_env`] turns clap's multi-line errors into a
//! [`ConfigError`] of that shape, and [`Config::validate`] checks what clap cannot (URLs, names).

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::str::FromStr;
use std::time::Duration;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use crate::postgres::timescale;

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (for log shippers).
    Json,
    /// Human-readable lines (for a terminal).
    Text,
}

/// The command line: the service's configuration, and optional subcommands.
#[derive(Debug, Parser)]
#[command(
    name = "processor",
    version,
    about = "Redis Stream telemetry -> timely dataflow -> PostgreSQL/TimescaleDB, acknowledged only after commit"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: Config,
}

/// What to do instead of running the service.
#[derive(Debug, Subcommand)]
enum Command {
    /// Probe /readyz of a running instance: exit 0 when it is ready, 1 otherwise (for container
    /// HEALTHCHECKs without curl).
    Healthcheck {
        /// URL to probe. Default: `http://127.0.0.1:<port of HTTP_ADDR>/readyz`.
        #[arg(long)]
        url: Option<String>,
        /// How long to wait for the answer, in milliseconds.
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
    /// Publish realistic positions to the stream (REDIS_URL, STREAM_KEY): a load generator.
    /// Prints a JSON summary on stdout when done.
    Simulate(crate::simulate::SimulateArgs),
}

/// The service's configuration.
#[derive(Clone, Debug, Args)]
pub struct Config {
    /// Redis server (`redis://[user:password@]host:port[/db]`, `rediss://` for TLS).
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,

    /// PEM file of the CA(s) trusted for Redis's certificate (`rediss://`), instead of the
    /// system's roots.
    #[arg(long, env = "REDIS_CA_FILE")]
    pub redis_ca_file: Option<std::path::PathBuf>,

    /// PEM file of the CA(s) trusted for PostgreSQL's certificate (`sslmode=require`), instead of
    /// the system's roots.
    #[arg(long, env = "DATABASE_CA_FILE")]
    pub database_ca_file: Option<std::path::PathBuf>,

    /// PostgreSQL/TimescaleDB connection (URL or key=value form).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub database_url: String,

    /// The stream the ingestion service appends positions to.
    #[arg(long, env = "STREAM_KEY", default_value = "telemetry:t")]
    pub stream_key: String,

    /// Consumer group shared by every replica.
    #[arg(long, env = "CONSUMER_GROUP", default_value = "processor")]
    pub consumer_group: String,

    /// This replica's consumer name; worker N reads as `<CONSUMER_NAME>-<N>`. Must be stable
    /// across restarts so pending entries are resumed. Default: the host name.
    #[arg(long, env = "CONSUMER_NAME")]
    pub consumer_name: Option<String>,

    /// Where a newly created group starts reading (`0`: the whole backlog; `$`: only new entries).
    #[arg(long, env = "GROUP_START_ID", default_value = "0")]
    pub group_start_id: String,

    /// Timely worker threads in this process (each reads as its own consumer).
    #[arg(long, env = "WORKERS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub workers: u16,

    /// Entries per XREADGROUP call.
    #[arg(long, env = "READ_COUNT", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub read_count: u32,

    /// How long one XREADGROUP waits for new entries, in milliseconds (also bounds how long
    /// shutdown waits for the read in progress).
    #[arg(long, env = "READ_BLOCK_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub read_block_ms: u64,

    /// Length of an epoch in milliseconds: entries read in one tick are committed and
    /// acknowledged together. Smaller: lower latency. Under load, epochs that queue behind a
    /// running commit are committed together (group commit), so short epochs do not shrink the
    /// transactions then.
    #[arg(long, env = "EPOCH_MS", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub epoch_ms: u64,

    /// Rows per INSERT statement inside an epoch's transaction.
    #[arg(long, env = "WRITE_BATCH_SIZE", default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub write_batch_size: u32,

    /// Devices held in per-device state per worker; the least recently seen is evicted beyond it.
    #[arg(long, env = "STATE_CAPACITY", default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    pub state_capacity: u64,

    /// A worker stops reading while this many of its epochs (or this many times READ_COUNT
    /// entries) are read but not yet acknowledged: bounds memory when PostgreSQL is slow or down.
    #[arg(long, env = "MAX_INFLIGHT_EPOCHS", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_inflight_epochs: u32,

    /// Stream that refused entries are moved to. Default: `<STREAM_KEY>:dead`.
    #[arg(long, env = "DEAD_LETTER_STREAM")]
    pub dead_letter_stream: Option<String>,

    /// Upper bound of the retry backoff for Redis and PostgreSQL operations, in milliseconds.
    #[arg(long, env = "RETRY_MAX_MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub retry_max_ms: u64,

    /// How long SIGTERM/SIGINT may take to drain (commit and acknowledge everything read), in seconds.
    #[arg(long, env = "SHUTDOWN_TIMEOUT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub shutdown_timeout_secs: u64,

    /// Log line format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,

    /// Log filter (tracing `EnvFilter` syntax, e.g. `info,processor=debug`).
    #[arg(long = "log-filter", env = "RUST_LOG", default_value = "info")]
    pub rust_log: String,

    /// Address of the HTTP server for /metrics, /healthz and /readyz.
    #[arg(long, env = "HTTP_ADDR", default_value = "0.0.0.0:9090")]
    pub http_addr: SocketAddr,

    /// Window of the active-devices gauge, in seconds.
    #[arg(long, env = "ACTIVE_WINDOW_SECS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub active_window_secs: u64,

    /// /readyz reports not ready when the commit frontier has not advanced for this long while
    /// entries wait, in seconds.
    #[arg(long, env = "STALL_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub stall_secs: u64,

    /// How often Redis and PostgreSQL are probed and lag and pending are refreshed, in milliseconds.
    #[arg(long, env = "MONITOR_INTERVAL_MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub monitor_interval_ms: u64,

    /// How often each reader takes over entries idle in other consumers, in milliseconds.
    #[arg(long, env = "CLAIM_INTERVAL_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub claim_interval_ms: u64,

    /// Entries pending longer than this in any consumer are taken over (XAUTOCLAIM), in
    /// milliseconds. Keep it well above the time a commit can take.
    #[arg(long, env = "CLAIM_MIN_IDLE_MS", default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(100..=86_400_000))]
    pub claim_min_idle_ms: u64,

    /// An entry delivered this many times without being acknowledged goes to the dead-letter
    /// stream with reason `max deliveries exceeded`.
    #[arg(long, env = "MAX_DELIVERIES", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_deliveries: u64,

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

    /// Whether `positions` is a TimescaleDB hypertable: `auto` (when the server can load the
    /// extension; a plain table otherwise), `require` (start-up waits until it can), `off`.
    #[arg(long, env = "TIMESCALEDB", value_enum, default_value_t = timescale::Mode::Auto)]
    pub timescaledb: timescale::Mode,

    /// Time span of one hypertable chunk (`12h`, `1d`, `1w`); a change applies to new chunks.
    #[arg(long, env = "TIMESCALEDB_CHUNK_INTERVAL", default_value = "1d")]
    pub chunk_interval: timescale::Interval,

    /// Compress chunks older than this (segmented by device_id, ordered by ts DESC), or `off`.
    #[arg(long, env = "TIMESCALEDB_COMPRESS_AFTER", default_value = "7d")]
    pub compress_after: timescale::Optional,

    /// Drop chunks older than this, or `off` to keep every row.
    #[arg(long, env = "TIMESCALEDB_RETENTION", default_value = "off")]
    pub retention: timescale::Optional,

    /// Test hook: the worker with this index panics once it has started. Never set in production.
    #[arg(long, env = "FAULT_PANIC_WORKER", hide = true)]
    pub fault_panic_worker: Option<usize>,
}

/// A configuration value that cannot be used; `Display` is the one line printed at start-up.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {variable}: {reason}")]
pub struct ConfigError {
    /// The environment variable (or flag) at fault.
    pub variable: String,
    /// What is wrong with it.
    pub reason: String,
}

/// What the command line asked for.
#[derive(Debug)]
pub enum Parsed {
    /// Run the service.
    Run(Box<Config>),
    /// Publish generated positions (the load generator).
    Simulate {
        /// Where to publish (REDIS_URL, REDIS_CA_FILE, STREAM_KEY are read from it).
        config: Box<Config>,
        /// What to publish.
        args: crate::simulate::SimulateArgs,
    },
    /// Probe a running instance's readiness.
    Healthcheck {
        /// The URL to probe.
        url: String,
        /// How long to wait.
        timeout: Duration,
    },
    /// `--help` or `--version`: print this and exit 0.
    Info(String),
}

impl Config {
    /// Parses the process's arguments and environment, then validates.
    pub fn parse_from_env() -> Result<Parsed, ConfigError> {
        Self::parse_from(std::env::args_os())
    }

    /// Parses the given arguments (and the environment), then validates.
    pub fn parse_from<I, T>(args: I) -> Result<Parsed, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        match Cli::try_parse_from(args) {
            Ok(Cli {
                command: Some(Command::Healthcheck { url, timeout_ms }),
                config,
            }) => Ok(Parsed::Healthcheck {
                url: url.unwrap_or_else(|| {
                    format!("http://127.0.0.1:{}/readyz", config.http_addr.port())
                }),
                timeout: Duration::from_millis(timeout_ms),
            }),
            Ok(Cli {
                command: Some(Command::Simulate(args)),
                config,
            }) => Ok(Parsed::Simulate {
                config: Box::new(config),
                args,
            }),
            Ok(Cli {
                command: None,
                config,
            }) => {
                config.validate()?;
                Ok(Parsed::Run(Box::new(config)))
            }
            Err(error) => match error.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    Ok(Parsed::Info(error.render().to_string()))
                }
                _ => Err(one_line(&error)),
            },
        }
    }

    /// Parses a set of environment variables as the service would read them, without touching
    /// the process environment (used to check deployment files against the real parser). An
    /// unknown variable is an error naming it.
    pub fn parse_from_vars(vars: &[(String, String)]) -> Result<Parsed, ConfigError> {
        let command = Cli::command();
        let mut args = vec!["processor".to_owned()];
        for (name, value) in vars {
            let flag = command
                .get_arguments()
                .find(|arg| arg.get_env().is_some_and(|env| env == name.as_str()))
                .and_then(|arg| arg.get_long())
                .ok_or_else(|| ConfigError {
                    variable: name.clone(),
                    reason: "not a setting of this service".to_owned(),
                })?;
            args.push(format!("--{flag}={value}"));
        }
        Self::parse_from(args)
    }

    /// Checks what the argument parser cannot: URLs parse, names are usable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |variable: &str, reason: String| ConfigError {
            variable: variable.to_owned(),
            reason,
        };
        redis::Client::open(self.redis_url.as_str()).map_err(|e| {
            bad(
                "REDIS_URL",
                format!("not a Redis URL ({})", crate::logging::redact_error(&e)),
            )
        })?;
        for (variable, file) in [
            ("REDIS_CA_FILE", &self.redis_ca_file),
            ("DATABASE_CA_FILE", &self.database_ca_file),
        ] {
            if let Some(path) = file {
                crate::tls::read_ca_file(path).map_err(|e| bad(variable, e.to_string()))?;
            }
        }
        tokio_postgres::Config::from_str(&crate::tls::normalize_sslmode(&self.database_url))
            .map_err(|e| {
                bad(
                    "DATABASE_URL",
                    format!(
                        "not a PostgreSQL connection string ({})",
                        crate::logging::redact_error(&e)
                    ),
                )
            })?;
        for (variable, value) in [
            ("STREAM_KEY", Some(self.stream_key.as_str())),
            ("CONSUMER_GROUP", Some(self.consumer_group.as_str())),
            ("CONSUMER_NAME", self.consumer_name.as_deref()),
            ("DEAD_LETTER_STREAM", self.dead_letter_stream.as_deref()),
            ("GROUP_START_ID", Some(self.group_start_id.as_str())),
        ] {
            if let Some(value) = value {
                if value.trim().is_empty() {
                    return Err(bad(variable, "must not be empty".to_owned()));
                }
                if value.chars().any(char::is_whitespace) {
                    return Err(bad(variable, format!("{value:?} contains white space")));
                }
            }
        }
        if !valid_start_id(&self.group_start_id) {
            return Err(bad(
                "GROUP_START_ID",
                format!(
                    "{:?} is not a stream id (`0`, `$` or `<ms>-<seq>`)",
                    self.group_start_id
                ),
            ));
        }
        if self.dead_letter_stream() == self.stream_key {
            return Err(bad(
                "DEAD_LETTER_STREAM",
                "must differ from STREAM_KEY".to_owned(),
            ));
        }
        if self.process_index >= self.processes {
            return Err(bad(
                "PROCESS_INDEX",
                format!(
                    "{} is not below PROCESSES ({})",
                    self.process_index, self.processes
                ),
            ));
        }
        self.cluster_hosts()?;
        if self.read_block_ms >= self.shutdown_timeout_secs.saturating_mul(1000) {
            return Err(bad(
                "READ_BLOCK_MS",
                format!(
                    "{} ms must be shorter than SHUTDOWN_TIMEOUT_SECS ({} s), or no drain can finish",
                    self.read_block_ms, self.shutdown_timeout_secs
                ),
            ));
        }
        tracing_subscriber::EnvFilter::try_new(&self.rust_log)
            .map_err(|e| bad("RUST_LOG", e.to_string()))?;
        Ok(())
    }

    /// The dead-letter stream key.
    pub fn dead_letter_stream(&self) -> String {
        self.dead_letter_stream
            .clone()
            .unwrap_or_else(|| format!("{}:dead", self.stream_key))
    }

    /// This replica's consumer name (the host name unless set).
    pub fn consumer_name(&self) -> String {
        self.consumer_name.clone().unwrap_or_else(host_name)
    }

    /// Devices per worker's state table.
    pub fn state_capacity(&self) -> NonZeroUsize {
        let capacity = usize::try_from(self.state_capacity).unwrap_or(usize::MAX);
        NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN)
    }

    /// The epoch length.
    pub fn epoch(&self) -> Duration {
        Duration::from_millis(self.epoch_ms)
    }

    /// The drain deadline after a shutdown signal.
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_secs)
    }

    /// The longest pause between two retries.
    pub fn retry_max(&self) -> Duration {
        Duration::from_millis(self.retry_max_ms)
    }

    /// The cluster's addresses (empty for a single process), checked against PROCESSES.
    pub fn cluster_hosts(&self) -> Result<Vec<String>, ConfigError> {
        let bad = |reason: String| ConfigError {
            variable: "TIMELY_HOSTS".to_owned(),
            reason,
        };
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

    /// This process's workers' global indices: `PROCESS_INDEX * WORKERS ..`.
    pub fn worker_indices(&self) -> std::ops::Range<usize> {
        let workers = usize::from(self.workers);
        let first = usize::from(self.process_index) * workers;
        first..first + workers
    }

    /// The TimescaleDB settings of `positions`.
    pub fn timescale(&self) -> timescale::Settings {
        timescale::Settings {
            mode: self.timescaledb,
            chunk_interval: self.chunk_interval,
            compress_after: self.compress_after.0,
            retention: self.retention.0,
        }
    }

    /// The active-devices window in epochs.
    pub fn active_window_epochs(&self) -> u64 {
        (self.active_window_secs.saturating_mul(1000) / self.epoch_ms.max(1)).max(1)
    }
}

fn valid_start_id(id: &str) -> bool {
    if id == "$" {
        return true;
    }
    let mut parts = id.splitn(2, '-');
    let ms_ok = parts
        .next()
        .is_some_and(|ms| !ms.is_empty() && ms.bytes().all(|b| b.is_ascii_digit()));
    let seq_ok = parts
        .next()
        .is_none_or(|seq| !seq.is_empty() && seq.bytes().all(|b| b.is_ascii_digit()));
    ms_ok && seq_ok
}

/// The host name, as the kernel reports it (stable across restarts of a pod or a host).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "processor".to_owned())
}

/// Renders a clap error as one line naming the environment variable and the flag.
fn one_line(error: &clap::Error) -> ConfigError {
    let arg = match error.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(arg)) => Some(arg.clone()),
        _ => None,
    };
    let value = match error.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(value)) => Some(value.clone()),
        _ => None,
    };
    let variable = arg
        .as_deref()
        .and_then(env_name_of)
        .map(|(env, flag)| format!("{env} ({flag})"))
        .or(arg)
        .unwrap_or_else(|| "arguments".to_owned());
    let reason = match (value, std::error::Error::source(error)) {
        (Some(value), Some(source)) => format!("invalid value {value:?}: {source}"),
        (Some(value), None) => format!("invalid value {value:?}"),
        _ => error
            .render()
            .to_string()
            .lines()
            .next()
            .unwrap_or("invalid arguments")
            .trim_start_matches("error: ")
            .to_owned(),
    };
    ConfigError { variable, reason }
}

/// Finds the environment variable behind a flag as clap prints it (`--workers <WORKERS>`).
fn env_name_of(printed: &str) -> Option<(String, String)> {
    let long = printed.split_whitespace().next()?.trim_start_matches("--");
    Cli::command().get_arguments().find_map(|arg| {
        if arg.get_long() == Some(long) {
            let env = arg.get_env()?.to_string_lossy().into_owned();
            Some((env, format!("--{long}")))
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Parsed, ConfigError> {
        Config::parse_from(std::iter::once("processor").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_are_valid() {
        let Ok(Parsed::Run(config)) = parse(&[]) else {
            panic!("defaults must parse")
        };
        assert_eq!(config.workers, 1);
        assert_eq!(config.group_start_id, "0");
        assert_eq!(
            config.dead_letter_stream(),
            format!("{}:dead", config.stream_key)
        );
    }

    #[test]
    fn a_bad_number_names_the_variable_on_one_line() {
        let error = parse(&["--workers", "many"]).expect_err("must fail");
        let line = error.to_string();
        assert!(line.contains("WORKERS (--workers)"), "{line}");
        assert!(line.contains("\"many\""), "{line}");
        assert_eq!(line.lines().count(), 1, "{line}");
        let error = parse(&["--workers", "0"]).expect_err("must fail");
        assert!(error.to_string().contains("WORKERS"), "{error}");
    }

    #[test]
    fn bad_urls_and_names_are_refused() {
        let error =
            parse(&["--database-url", "postgres://u:secret@h:notaport/db"]).expect_err("bad");
        assert_eq!(error.variable, "DATABASE_URL");
        assert!(!error.to_string().contains("secret"), "{error}");
        let error = parse(&["--redis-url", "http://x"]).expect_err("bad");
        assert_eq!(error.variable, "REDIS_URL");
        let error = parse(&["--group-start-id", "yesterday"]).expect_err("bad");
        assert_eq!(error.variable, "GROUP_START_ID");
        let error = parse(&["--dead-letter-stream", "telemetry:t"]).expect_err("bad");
        assert_eq!(error.variable, "DEAD_LETTER_STREAM");
        let error = parse(&["--log-format", "xml"]).expect_err("bad");
        assert!(error.to_string().contains("LOG_FORMAT"), "{error}");
        let error =
            parse(&["--read-block-ms", "5000", "--shutdown-timeout-secs", "2"]).expect_err("bad");
        assert_eq!(error.variable, "READ_BLOCK_MS");
        let error = parse(&["--http-addr", "localhost"]).expect_err("bad");
        assert!(error.to_string().contains("HTTP_ADDR"), "{error}");
    }

    #[test]
    fn cluster_settings_are_checked() {
        let error = parse(&["--processes", "2"]).expect_err("hosts missing");
        assert_eq!(error.variable, "TIMELY_HOSTS");
        let error = parse(&["--processes", "2", "--timely-hosts", "a:1"]).expect_err("one host");
        assert_eq!(error.variable, "TIMELY_HOSTS");
        let error = parse(&[
            "--processes",
            "2",
            "--process-index",
            "2",
            "--timely-hosts",
            "a:1,b:2",
        ])
        .expect_err("index");
        assert_eq!(error.variable, "PROCESS_INDEX");
        let Ok(Parsed::Run(config)) = parse(&[
            "--processes",
            "2",
            "--process-index",
            "1",
            "--workers",
            "3",
            "--timely-hosts",
            "a:1, b:2",
        ]) else {
            panic!("a valid cluster")
        };
        assert_eq!(config.cluster_hosts().expect("hosts"), vec!["a:1", "b:2"]);
        assert_eq!(config.worker_indices(), 3..6);
    }

    #[test]
    fn healthcheck_probes_the_configured_port() {
        let Ok(Parsed::Healthcheck { url, .. }) =
            parse(&["--http-addr", "0.0.0.0:9191", "healthcheck"])
        else {
            panic!("healthcheck must parse")
        };
        assert_eq!(url, "http://127.0.0.1:9191/readyz");
    }

    #[test]
    fn start_ids() {
        for ok in ["0", "$", "1700000000000-0", "5"] {
            assert!(valid_start_id(ok), "{ok}");
        }
        for bad in ["", "-", "1-", "a-1", ">"] {
            assert!(!valid_start_id(bad), "{bad}");
        }
    }
}
