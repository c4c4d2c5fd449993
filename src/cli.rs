//! The command line: the service's configuration, and the subcommands beside running it.
//!
//! Part of the binary, not of the service library: it is the one place that knows every
//! subcommand, including the load generator (the `simulate` crate), so the library depends on
//! neither. Every parse error becomes one line naming the variable and the flag
//! ([`processor::config::one_line`]).

use std::time::Duration;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser, Subcommand};
use processor::config::{one_line, Config, ConfigError};
use processor::dead_letters::command::DeadLetterCommand;

/// The command line.
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
    Simulate(simulate::SimulateArgs),
    /// Inspect the dead-letter stream (DEAD_LETTER_STREAM), send entries back to STREAM_KEY, or
    /// purge old ones.
    #[command(subcommand)]
    DeadLetters(DeadLetterCommand),
}

/// What the command line asked for.
#[derive(Debug)]
pub enum Parsed {
    /// Run the service.
    Run(Box<Config>),
    /// Publish generated positions (the load generator).
    Simulate {
        /// Where to publish (its Redis settings).
        config: Box<Config>,
        /// What to publish.
        args: simulate::SimulateArgs,
    },
    /// Inspect, redrive or purge the dead-letter stream.
    DeadLetters {
        /// Where (its Redis settings).
        config: Box<Config>,
        /// What to do.
        command: DeadLetterCommand,
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

/// Parses the process's arguments and environment, then validates what the command needs.
pub fn parse_from_env() -> Result<Parsed, ConfigError> {
    match Cli::try_parse() {
        Ok(Cli {
            command: Some(Command::Healthcheck { url, timeout_ms }),
            config,
        }) => Ok(Parsed::Healthcheck {
            url: url.unwrap_or_else(|| {
                format!("http://127.0.0.1:{}/readyz", config.ops.http_addr.port())
            }),
            timeout: Duration::from_millis(timeout_ms),
        }),
        Ok(Cli {
            command: Some(Command::Simulate(args)),
            config,
        }) => {
            config.redis.validate()?;
            Ok(Parsed::Simulate {
                config: Box::new(config),
                args,
            })
        }
        Ok(Cli {
            command: Some(Command::DeadLetters(command)),
            config,
        }) => {
            config.redis.validate()?;
            Ok(Parsed::DeadLetters {
                config: Box::new(config),
                command,
            })
        }
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
            _ => Err(one_line(&error, &Cli::command())),
        },
    }
}
