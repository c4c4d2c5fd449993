//! The `processor` binary: parse the command line, set up logging, serve until a signal.

mod cli;
mod migrate_command;
mod simulate_command;

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use cli::{Command, Parsed};
use processor::config::Config;
use processor::metrics::Metrics;
use processor::shutdown::{self, Shutdown};

/// mimalloc instead of glibc's malloc: the pipeline allocates on one thread (the Redis reader, the
/// decoder) and frees on another (the worker, the writer task), which glibc's per-thread arenas
/// handle poorly (measured in docs/performance.md).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let config = match cli::parse_from_env() {
        Ok(Parsed::Run(config)) => config,
        Ok(Parsed::Command(command)) => return run_command(command),
        Ok(Parsed::Info(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("processor: {error}");
            return ExitCode::from(2);
        }
    };
    processor::logging::init(&config.log);
    processor::panic_hook::install();
    match serve(*config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "processor failed");
            ExitCode::FAILURE
        }
    }
}

/// Runs a subcommand; its errors are one line on stderr, prefixed with its name.
fn run_command(command: Command) -> ExitCode {
    let failed = |name: &str, error: &dyn std::fmt::Display| {
        eprintln!("processor {name}: {error}");
        ExitCode::FAILURE
    };
    match command {
        Command::Healthcheck {
            url,
            timeout_ms,
            http,
        } => match processor::http::probe(
            &cli::readyz_url(url, &http),
            std::time::Duration::from_millis(timeout_ms),
        ) {
            Ok(()) => ExitCode::SUCCESS,
            Err(reason) => failed("healthcheck", &reason),
        },
        Command::Migrate {
            link,
            hypertable,
            log,
        } => {
            processor::logging::init(&log);
            migrate_command::run(&link, &hypertable)
        }
        Command::Simulate { link, stream, args } => simulate_command::run(&link, &stream, &args),
        Command::Trips(command) => match processor::trips::command::run(command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => failed("trips", &error),
        },
        Command::DeadLetters { target, command } => {
            match processor::dead_letters::command::run(&target, command) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => failed("dead-letters", &error),
            }
        }
    }
}

/// How long after `SHUTDOWN_TIMEOUT_SECS` the process exits even if the abandoned drain has not
/// returned: a timely cluster still forming waits for its peers in blocking calls that nothing
/// can interrupt. Nothing is lost by exiting: what was not acknowledged stays pending.
const LAST_RESORT: std::time::Duration = std::time::Duration::from_secs(5);

/// Exits with status 1 after `limit`, unless the process has ended by then.
fn last_resort(limit: std::time::Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        tracing::error!(
            after_seconds = limit.as_secs(),
            "the drain did not end; exiting (unacknowledged entries stay pending)"
        );
        std::process::exit(1);
    });
}

fn serve(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("processor-io")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let metrics = Arc::new(Metrics::new().context("registering metrics")?);
        let listener = tokio::net::TcpListener::bind(config.ops.http.addr)
            .await
            .with_context(|| format!("listening on HTTP_ADDR {}", config.ops.http.addr))?;
        let shutdown = Shutdown::new();
        let on_signal = shutdown.clone();
        let drain_limit = config.pipeline.shutdown_timeout + LAST_RESORT;
        tokio::spawn(async move {
            shutdown::signal().await;
            tracing::info!("shutdown signal received; draining");
            on_signal.trigger();
            last_resort(drain_limit);
        });
        processor::serve(config, listener, metrics, shutdown)
            .await
            .context("running the pipeline")?;
        Ok(())
    })
}
