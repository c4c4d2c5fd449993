//! The command line: the service's configuration, and the subcommands beside running it.
//!
//! Part of the binary, not of the service library: it is the one place that knows every
//! subcommand, including the load generator (the `simulate` crate), so the library depends on
//! neither. Every parse error becomes one line naming the variable and the flag
//! ([`processor::config::one_line`]).

use clap::error::ErrorKind;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use processor::config::{one_line, Config, ConfigError, HttpAddr};
use processor::dead_letters::command::{DeadLetterCommand, Target};
use processor::logging::LogConfig;
use processor::postgres::{DatabaseLink, TimescaleArgs};
use processor::redis::{RedisLink, StreamKey};
use processor::trips::command::TripsCommand;

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
    /// The service's settings (only without a subcommand: each subcommand declares the few it
    /// uses, so its help lists those alone).
    #[command(flatten)]
    config: Config,
}

/// The parser: the derived one, with the service's flags refused beside a subcommand (each
/// subcommand has its own), and the dead-letter target's flags accepted after `show`, `redrive`
/// and the others as well as after `dead-letters`. Without `service_env`, the service's flags
/// do not read the environment: a subcommand is parsed that way, so a service variable it does
/// not use (a bad `WORKERS`, say) cannot stop it.
fn command(service_env: bool) -> clap::Command {
    let command = Cli::command()
        .args_conflicts_with_subcommands(true)
        .mut_subcommand("dead-letters", |dead_letters| {
            dead_letters.mut_args(|arg| arg.global(true))
        });
    if service_env {
        command
    } else {
        command.mut_args(|arg| arg.env(None))
    }
}

/// Parses the command line with [`command`].
fn parse(service_env: bool) -> Result<Cli, clap::Error> {
    command(service_env)
        .try_get_matches()
        .and_then(|matches| Cli::from_arg_matches(&matches))
}

/// What to do instead of running the service.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Probe /readyz of a running instance: exit 0 when it is ready, 1 otherwise (for container
    /// HEALTHCHECKs without curl).
    Healthcheck {
        /// URL to probe. Default: `http://127.0.0.1:<port of HTTP_ADDR>/readyz`.
        #[arg(long)]
        url: Option<String>,
        /// How long to wait for the answer, in milliseconds.
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
        /// The instance's address (its port is probed).
        #[command(flatten)]
        http: HttpAddr,
    },
    /// Apply the schema's migrations and the TimescaleDB settings of positions, then exit (0, or
    /// 2 with one line). The one step that needs DDL rights: run it as the schema's owner before
    /// the service (whose role then needs only DML rights, with MIGRATE=off or auto).
    Migrate {
        /// The database.
        #[command(flatten)]
        link: DatabaseLink,
        /// What positions should be.
        #[command(flatten)]
        hypertable: TimescaleArgs,
        /// Log format and filter (the steps taken are logged on standard error).
        #[command(flatten)]
        log: LogConfig,
    },
    /// Publish realistic positions to the stream (REDIS_URL, STREAM_KEY): a load generator.
    /// Prints a JSON summary on stdout when done.
    Simulate {
        /// The server.
        #[command(flatten)]
        link: RedisLink,
        /// The stream.
        #[command(flatten)]
        stream: StreamKey,
        /// What to publish.
        #[command(flatten)]
        args: simulate::SimulateArgs,
    },
    /// Trips: `rebuild` recomputes them from positions (after changing a TRIP_* setting, or for
    /// history written before TRIPS=on).
    #[command(subcommand)]
    Trips(TripsCommand),
    /// Inspect the dead-letter stream (DEAD_LETTER_STREAM), send entries back to STREAM_KEY, or
    /// purge old ones.
    DeadLetters {
        /// Which streams.
        #[command(flatten)]
        target: Target,
        /// What to do.
        #[command(subcommand)]
        command: DeadLetterCommand,
    },
}

impl Command {
    /// Checks what the argument parser cannot, for the settings this subcommand uses.
    fn validate(&self) -> Result<(), ConfigError> {
        match self {
            Command::Healthcheck { .. } => Ok(()),
            Command::Migrate { link, log, .. } => {
                link.validate()?;
                log.validate()
            }
            Command::Simulate { link, stream, .. } => {
                link.validate()?;
                stream.validate()
            }
            Command::Trips(TripsCommand::Rebuild(args)) => args.validate(),
            Command::DeadLetters { target, .. } => target.validate(),
        }
    }
}

/// The URL `healthcheck` probes: `url`, or `/readyz` on the loopback at `http`'s port.
pub fn readyz_url(url: Option<String>, http: &HttpAddr) -> String {
    url.unwrap_or_else(|| format!("http://127.0.0.1:{}/readyz", http.addr.port()))
}

/// What the command line asked for.
#[derive(Debug)]
pub enum Parsed {
    /// Run the service.
    Run(Box<Config>),
    /// A subcommand, its settings validated.
    Command(Command),
    /// `--help` or `--version`: print this and exit 0.
    Info(String),
}

/// Parses the process's arguments and environment, then validates what the command needs.
pub fn parse_from_env() -> Result<Parsed, ConfigError> {
    // a subcommand's own errors come before the service's environment is read, so parsing again
    // with it reports the same error for a subcommand, and the service's for the service
    let parsed = match parse(false) {
        Ok(cli) if cli.command.is_some() => Ok(cli),
        _ => parse(true),
    };
    let cli = match parsed {
        Ok(cli) => cli,
        Err(error) => {
            return match error.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    Ok(Parsed::Info(error.render().to_string()))
                }
                _ => Err(one_line(&error, &command(true))),
            }
        }
    };
    match cli.command {
        Some(command) => {
            command.validate()?;
            Ok(Parsed::Command(command))
        }
        None => {
            cli.config.validate()?;
            Ok(Parsed::Run(Box::new(cli.config)))
        }
    }
}
