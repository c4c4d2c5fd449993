//! One `Config`, the composition of every module's settings; each is an environment variable and
//! a `--flag`.
//!
//! The groups of the external systems live with what they configure (`redis::RedisConfig`,
//! `postgres::PostgresConfig`, `logging::LogConfig`), each owning its durations and its
//! validation; the pipeline's groups (`PipelineConfig`, `ClusterConfig`) are here, in
//! `pipeline.rs`, because the pipeline is handed the whole `Config` (it reads four of its groups)
//! and so sits above this module. This module adds the operational settings, the checks that
//! span groups, and the rendering of any parse error as one line naming the variable. A bad
//! value stops the service before it touches Redis or PostgreSQL. The pieces every group shares
//! (the error, the value parsers) are the leaf `config_values`.

use std::net::SocketAddr;
use std::time::Duration;

use clap::error::{ContextKind, ContextValue};
use clap::{Args, Parser};

use crate::logging::LogConfig;
mod pipeline;

use crate::config_values::{millis, seconds};
use crate::postgres::PostgresConfig;
use crate::redis::RedisConfig;
pub use pipeline::{ClusterConfig, PipelineConfig, RefusedRows};

pub use crate::config_values::ConfigError;

/// The service's configuration.
#[derive(Clone, Debug, Args)]
pub struct Config {
    /// Redis, the stream and the consumer group.
    #[command(flatten)]
    pub redis: RedisConfig,
    /// PostgreSQL/TimescaleDB.
    #[command(flatten)]
    pub postgres: PostgresConfig,
    /// Epochs, state, backpressure, retries, the drain.
    #[command(flatten)]
    pub pipeline: PipelineConfig,
    /// Workers and the processes of a timely cluster.
    #[command(flatten)]
    pub cluster: ClusterConfig,
    /// The HTTP server and the background checks.
    #[command(flatten)]
    pub ops: OpsConfig,
    /// Log format and filter.
    #[command(flatten)]
    pub log: LogConfig,
    /// Trips (the domain's output) and their rules.
    #[command(flatten)]
    pub trips: crate::trips::TripsConfig,
}

/// The HTTP server's address (also what `healthcheck` probes by default).
#[derive(Clone, Debug, Args)]
pub struct HttpAddr {
    /// Address of the HTTP server for /metrics, /healthz and /readyz.
    #[arg(
        id = "http_addr",
        long = "http-addr",
        env = "HTTP_ADDR",
        value_name = "ADDR",
        default_value = "0.0.0.0:9090"
    )]
    pub addr: SocketAddr,
}

/// The HTTP server and the background checks behind it.
#[derive(Clone, Debug, Args)]
pub struct OpsConfig {
    /// Where the HTTP server listens.
    #[command(flatten)]
    pub http: HttpAddr,

    /// /readyz reports not ready when the commit frontier has not advanced for this long, in
    /// seconds.
    #[arg(long = "stall-secs", env = "STALL_SECS", default_value = "60", value_parser = seconds(1, 86_400))]
    pub stall: Duration,

    /// How often Redis and PostgreSQL are probed and lag and pending are refreshed, in
    /// milliseconds.
    #[arg(long = "monitor-interval-ms", env = "MONITOR_INTERVAL_MS", default_value = "2000", value_parser = millis(100, 600_000))]
    pub monitor_interval: Duration,
}

/// The service's flags alone (no subcommands), for [`Config::from_args`].
#[derive(Debug, Parser)]
#[command(name = "processor")]
struct ServiceArgs {
    #[command(flatten)]
    config: Config,
}

impl Config {
    /// Parses the service's flags from `args` (the first is the program name) and the
    /// environment, then validates.
    pub fn from_args<I, T>(args: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let parsed = ServiceArgs::try_parse_from(args)
            .map_err(|error| one_line(&error, &<ServiceArgs as clap::CommandFactory>::command()))?;
        parsed.config.validate()?;
        Ok(parsed.config)
    }

    /// The derived output tables that are on.
    pub fn outputs(&self) -> crate::postgres::Outputs {
        crate::postgres::Outputs {
            device_latest: self.pipeline.device_latest.is_on(),
            trips: self.trips.rules(),
        }
    }

    /// `MAX_INFLIGHT_EPOCHS`, else its default: 16, or 64 with trips on. The bound is also the
    /// largest group commit under load, and the trips' cost is per device per transaction (each
    /// device's lock and its current trip's row), not per row: a group four times larger writes
    /// a device's trip once for several of its fixes (see docs/trips.md, "Cost"). Positions alone
    /// gain nothing from larger groups, so they keep the smaller bound and its memory.
    pub fn max_inflight_epochs(&self) -> usize {
        let default = if self.trips.trips.is_on() { 64 } else { 16 };
        self.pipeline.max_inflight.unwrap_or(default) as usize
    }

    /// Checks what the argument parser cannot, group by group, then across groups.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.redis.validate()?;
        self.postgres.validate()?;
        self.cluster.validate()?;
        self.trips.validate()?;
        self.log.validate()?;
        if self.redis.read_block >= self.pipeline.shutdown_timeout {
            return Err(ConfigError::new(
                "READ_BLOCK_MS",
                format!(
                    "{} ms must be shorter than SHUTDOWN_TIMEOUT_SECS ({} s), or no drain can finish",
                    self.redis.read_block.as_millis(),
                    self.pipeline.shutdown_timeout.as_secs()
                ),
            ));
        }
        Ok(())
    }
}

/// Renders a clap error as one line naming the environment variable and the flag; `command` is
/// the parser that produced it (to find the variable behind a flag).
pub fn one_line(error: &clap::Error, command: &clap::Command) -> ConfigError {
    let arg = match error.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(arg)) => Some(arg.clone()),
        _ => None,
    };
    let value = match error.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(value)) => Some(value.clone()),
        _ => None,
    };
    let valid = match error.get(ContextKind::ValidValue) {
        Some(ContextValue::Strings(values)) => Some(values.join(", ")),
        _ => None,
    };
    let variable = arg
        .as_deref()
        .and_then(|printed| env_name_of(printed, command))
        .map(|(env, flag)| format!("{env} ({flag})"))
        .or(arg)
        .unwrap_or_else(|| "arguments".to_owned());
    let reason = match (value, std::error::Error::source(error), valid) {
        (Some(value), _, Some(valid)) => {
            format!("invalid value {value:?}: accepted values are {valid}")
        }
        (Some(value), Some(source), None) => format!("invalid value {value:?}: {source}"),
        (Some(value), None, None) => format!("invalid value {value:?}"),
        _ => error
            .render()
            .to_string()
            .lines()
            .next()
            .unwrap_or("invalid arguments")
            .trim_start_matches("error: ")
            .to_owned(),
    };
    ConfigError::new(&variable, reason)
}

/// Finds the environment variable behind a flag as clap prints it (`--workers <WORKERS>`),
/// searching `command` and its subcommands.
fn env_name_of(printed: &str, command: &clap::Command) -> Option<(String, String)> {
    let long = printed.split_whitespace().next()?.trim_start_matches("--");
    let found = command.get_arguments().find_map(|arg| {
        if arg.get_long() == Some(long) {
            let env = arg.get_env()?.to_string_lossy().into_owned();
            Some((env, format!("--{long}")))
        } else {
            None
        }
    });
    found.or_else(|| {
        command
            .get_subcommands()
            .find_map(|sub| env_name_of(printed, sub))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, ConfigError> {
        Config::from_args(std::iter::once("processor").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_are_valid() {
        let config = parse(&[]).expect("defaults must parse");
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(usize::from(config.cluster.workers()), cores.min(256));
        assert_eq!(config.redis.group_start_id, "0");
        assert_eq!(config.redis.read_block, Duration::from_secs(1));
        assert_eq!(
            config.redis.dead_letter_stream(),
            format!("{}:dead", config.redis.stream.key)
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
        let error = parse(&["--epoch-ms", "0"]).expect_err("must fail");
        assert!(
            error.to_string().contains("EPOCH_MS (--epoch-ms)"),
            "{error}"
        );
    }

    #[test]
    fn a_bad_choice_lists_the_accepted_values() {
        let error = parse(&["--log-format", "yaml"]).expect_err("must fail");
        let line = error.to_string();
        assert!(line.contains("LOG_FORMAT (--log-format)"), "{line}");
        assert!(line.contains("auto, json, text"), "{line}");
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
        let error =
            parse(&["--read-block-ms", "5000", "--shutdown-timeout-secs", "2"]).expect_err("bad");
        assert_eq!(error.variable, "READ_BLOCK_MS");
        let error = parse(&["--http-addr", "localhost"]).expect_err("bad");
        assert!(error.to_string().contains("HTTP_ADDR"), "{error}");
        let error = parse(&["--chunk-interval", "7y"]).expect_err("bad");
        assert!(
            error.to_string().contains("TIMESCALEDB_CHUNK_INTERVAL"),
            "{error}"
        );
    }

    #[test]
    fn cluster_settings_are_checked() {
        let error = parse(&["--processes", "2", "--timely-hosts", "a:1,b:2"]).expect_err("workers");
        assert_eq!(error.variable, "WORKERS");
        assert_eq!(error.to_string().lines().count(), 1);
        let error = parse(&["--processes", "2", "--workers", "1"]).expect_err("hosts missing");
        assert_eq!(error.variable, "TIMELY_HOSTS");
        let error = parse(&[
            "--processes",
            "2",
            "--workers",
            "1",
            "--timely-hosts",
            "a:1",
        ])
        .expect_err("one host");
        assert_eq!(error.variable, "TIMELY_HOSTS");
        let error = parse(&[
            "--processes",
            "2",
            "--process-index",
            "2",
            "--workers",
            "1",
            "--timely-hosts",
            "a:1,b:2",
        ])
        .expect_err("index");
        assert_eq!(error.variable, "PROCESS_INDEX");
        let config = parse(&[
            "--processes",
            "2",
            "--process-index",
            "1",
            "--workers",
            "3",
            "--timely-hosts",
            "a:1, b:2",
        ])
        .expect("a valid cluster");
        assert_eq!(config.cluster.hosts().expect("hosts"), vec!["a:1", "b:2"]);
        assert_eq!(config.cluster.worker_indices(), 3..6);
    }
}
