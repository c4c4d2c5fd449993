//! What every settings struct shares: the one-line error and the small checks and parsers.
//!
//! Each external system's module owns its settings (`redis::RedisConfig`, `postgres::...`), with
//! its durations as `Duration`s and its own validation; `config` composes them. This leaf is what
//! they have in common, so none of them depends on another or on the command line.

use std::time::Duration;

use clap::builder::TypedValueParser;

/// A configuration value that cannot be used; `Display` is the one line printed at start-up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {variable}: {reason}")]
pub struct ConfigError {
    /// The environment variable (or flag) at fault.
    pub variable: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ConfigError {
    /// `variable` is wrong because of `reason`.
    pub fn new(variable: &str, reason: impl Into<String>) -> Self {
        ConfigError {
            variable: variable.to_owned(),
            reason: reason.into(),
        }
    }
}

/// A key or name for Redis: not empty, no white space.
pub fn check_name(variable: &str, value: &str) -> Result<(), ConfigError> {
    if value.trim().is_empty() {
        return Err(ConfigError::new(variable, "must not be empty"));
    }
    if value.chars().any(char::is_whitespace) {
        return Err(ConfigError::new(
            variable,
            format!("{value:?} contains white space"),
        ));
    }
    Ok(())
}

/// A flag in milliseconds within `min..=max`, as a `Duration`.
pub fn millis(min: u64, max: u64) -> impl TypedValueParser<Value = Duration> {
    clap::value_parser!(u64)
        .range(min..=max)
        .map(Duration::from_millis)
}

/// A flag in seconds within `min..=max`, as a `Duration`.
pub fn seconds(min: u64, max: u64) -> impl TypedValueParser<Value = Duration> {
    clap::value_parser!(u64)
        .range(min..=max)
        .map(Duration::from_secs)
}
