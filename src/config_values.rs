//! What every settings struct shares: the one-line error and the small checks and parsers.
//!
//! Each external system's module owns its settings (`redis::RedisConfig`, `postgres::...`), with
//! its durations as `Duration`s and its own validation; `config` composes them. This leaf is what
//! they have in common, so none of them depends on another or on the command line.

use std::fmt;
use std::str::FromStr;
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

/// A feature switched `on` or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Switch {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}

impl Switch {
    /// Whether it is on.
    pub fn is_on(self) -> bool {
        self == Switch::On
    }
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

/// A whole number of seconds, minutes, hours, days or weeks (`30m`, `12h`, `7d`, `2w`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interval {
    amount: u32,
    unit: Unit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unit {
    Seconds,
    Minutes,
    Hours,
    Days,
    Weeks,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::Seconds => "seconds",
            Unit::Minutes => "minutes",
            Unit::Hours => "hours",
            Unit::Days => "days",
            Unit::Weeks => "weeks",
        }
    }
}

impl Interval {
    /// `amount` days.
    pub const fn days(amount: u32) -> Self {
        Interval {
            amount,
            unit: Unit::Days,
        }
    }

    /// The span as a `Duration`.
    pub fn as_duration(self) -> std::time::Duration {
        let seconds = match self.unit {
            Unit::Seconds => 1,
            Unit::Minutes => 60,
            Unit::Hours => 3_600,
            Unit::Days => 86_400,
            Unit::Weeks => 604_800,
        };
        std::time::Duration::from_secs(u64::from(self.amount) * seconds)
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount, self.unit.name())
    }
}

impl FromStr for Interval {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (digits, unit) = text.split_at(split);
        let amount: u32 = digits.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
            format!("{text:?} is not a positive whole number and a unit (e.g. 12h, 7d, 2w)")
        })?;
        let unit = match unit.trim() {
            "s" => Unit::Seconds,
            "m" => Unit::Minutes,
            "h" => Unit::Hours,
            "d" => Unit::Days,
            "w" => Unit::Weeks,
            other => {
                return Err(format!(
                    "unit {other:?} in {text:?} is not one of s, m, h, d, w"
                ))
            }
        };
        Ok(Interval { amount, unit })
    }
}

/// An interval, or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Optional(pub Option<Interval>);

impl FromStr for Optional {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.trim().eq_ignore_ascii_case("off") {
            Ok(Optional(None))
        } else {
            text.parse().map(|interval| Optional(Some(interval)))
        }
    }
}

impl fmt::Display for Optional {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(interval) => interval.fmt(f),
            None => f.write_str("off"),
        }
    }
}
