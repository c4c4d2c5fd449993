//! Log set-up: JSON lines for log shippers, text for people at a terminal.
//!
//! Lifecycle events are logged at `info`, per-record events at `debug`/`trace`. Nothing here
//! formats credentials: callers pass URLs and client errors through [`crate::redact`].

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config_values::ConfigError;

/// How log lines are written (`LOG_FORMAT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Text when standard error is a terminal, JSON otherwise.
    Auto,
    /// One JSON object per line (for log shippers).
    Json,
    /// Human-readable lines (for a terminal).
    Text,
}

/// The logging settings.
#[derive(Clone, Debug, clap::Args)]
pub struct LogConfig {
    /// Log line format: `auto` (text on a terminal, JSON otherwise), `json` or `text`.
    #[arg(long = "log-format", env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto)]
    pub format: LogFormat,

    /// Log filter (tracing `EnvFilter` syntax, e.g. `info,processor=debug`).
    #[arg(long = "log-filter", env = "RUST_LOG", default_value = "info")]
    pub filter: String,
}

impl LogConfig {
    /// The filter must parse (checked at start-up, so a typo is not silently `info`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        EnvFilter::try_new(&self.filter)
            .map(|_| ())
            .map_err(|e| ConfigError::new("RUST_LOG", e.to_string()))
    }

    /// The format to write: `auto` resolved against standard error.
    pub fn resolved_format(&self) -> LogFormat {
        match self.format {
            LogFormat::Auto if std::io::stderr().is_terminal() => LogFormat::Text,
            LogFormat::Auto => LogFormat::Json,
            other => other,
        }
    }
}

/// Installs the global subscriber on standard error: JSON lines or text, RFC 3339 timestamps.
pub fn init(config: &LogConfig) {
    let filter = EnvFilter::try_new(&config.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // `try_init` fails only when a subscriber is already installed (tests): keep that one.
    let _ = match config.resolved_format() {
        LogFormat::Json | LogFormat::Auto => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
}
