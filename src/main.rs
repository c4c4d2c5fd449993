//! The `processor` binary: parse the configuration, set up logging, serve until a signal.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use processor::config::{Config, Parsed};
use processor::metrics::Metrics;
use processor::shutdown::{self, Shutdown};

/// mimalloc instead of glibc's malloc: the pipeline allocates on one thread (the Redis reader, the
/// decoder) and frees on another (the worker, the writer task), which glibc's per-thread arenas
/// handle poorly (measured in the README's performance section).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let config = match Config::parse_from_env() {
        Ok(Parsed::Run(config)) => config,
        Ok(Parsed::Healthcheck { url, timeout }) => {
            return match processor::http::probe(&url, timeout) {
                Ok(()) => ExitCode::SUCCESS,
                Err(reason) => {
                    eprintln!("processor healthcheck: {reason}");
                    ExitCode::FAILURE
                }
            };
        }
        Ok(Parsed::Simulate { config, args }) => {
            return simulate(&config, &args);
        }
        Ok(Parsed::Info(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("processor: {error}");
            return ExitCode::from(2);
        }
    };
    processor::logging::init(config.log_format, &config.rust_log);
    match serve(*config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "processor failed");
            ExitCode::FAILURE
        }
    }
}

/// `processor simulate`: publish, then print the summary as JSON on stdout.
fn simulate(config: &Config, args: &processor::simulate::SimulateArgs) -> ExitCode {
    let published = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| {
            runtime
                .block_on(processor::simulate::run(
                    &config.redis_url,
                    config.redis_ca_file.as_deref(),
                    &config.stream_key,
                    args,
                ))
                .map_err(anyhow::Error::from)
        });
    match published.and_then(|report| Ok(serde_json::to_string(&report)?)) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("processor simulate: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("processor-io")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let metrics = Arc::new(Metrics::new().context("registering metrics")?);
        let listener = tokio::net::TcpListener::bind(config.http_addr)
            .await
            .with_context(|| format!("listening on HTTP_ADDR {}", config.http_addr))?;
        let shutdown = Shutdown::new();
        let on_signal = shutdown.clone();
        tokio::spawn(async move {
            shutdown::signal().await;
            tracing::info!("shutdown signal received; draining");
            on_signal.trigger();
        });
        processor::serve(config, listener, metrics, shutdown)
            .await
            .context("running the pipeline")?;
        Ok(())
    })
}
