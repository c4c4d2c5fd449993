//! A load generator that publishes realistic positions to a Redis stream (`processor simulate`).
//!
//! A client of the stream, not part of the service: it takes a Redis client and a stream key and
//! knows nothing of the service's configuration. Why it exists: the processor's throughput, its duplicate handling and its dead-letter path can
//! only be judged under load that looks like the Node producer's, and that producer needs real
//! trackers. This module stands in for it: it writes entries exactly as the producer does
//! (`XADD <stream> * payload <json>`, see `docs/contract.md`), with the same mix of timestamp
//! forms and the same `__bigint` / `__buffer_b64` sentinels, and it can add exact duplicates and
//! contract violations in known proportions, so that the rows, duplicate counts and dead letters
//! the processor reports can be checked against the [`SimulateReport`].
//!
//! Layout:
//! - [`Generator`] (`generator.rs`): pure and deterministic, the same seed gives the same
//!   payloads; it takes each device's next fix from the fleet, and sometimes repeats a payload or
//!   breaks one; the unit tests run its output through the real codec;
//! - `fleet.rs`: the simulated trackers and how they move and what they report;
//! - `record.rs`: one fix as a contract payload, written as JSON text;
//! - `faults.rs`: the ways an invalid payload breaks the contract;
//! - `format.rs`: small text encoders (base64, `Date.toJSON()`, the IMEI's Luhn digit);
//! - [`run`] (`publish.rs`): pipelined XADDs, rate limiting, stop at a count or after a duration
//!   (or on SIGINT/SIGTERM, with a summary);
//! - `progress.rs`: progress on stderr (one updating line on a terminal, a line every 2 s
//!   otherwise).

mod faults;
mod fleet;
mod format;
mod generator;
mod progress;
mod publish;
mod record;

pub use generator::{Generator, Payload};
pub use publish::run;
pub use record::DEFAULT_START_MS;

/// The shape of the records a simulated tracker sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Profile {
    /// A Teltonika FMB device's record: 20 numeric IO elements (ids 1, 9, 16, 17, 18, 19, 21,
    /// 66, 67, 69, 113, 181, 182, 200, 206, 239, 240, 241, 303, 449), integers of 0 to 10
    /// digits, an ISO timestamp, 7-decimal coordinates; about 430 bytes of payload.
    Fmb,
    /// Every shape the contract allows: 8-20 IO elements with floats, text, lists, big integers
    /// beyond 64 bits (`__bigint`), buffers (`__buffer_b64` and Node's `Buffer.toJSON()`), and
    /// both timestamp forms.
    Mixed,
}

/// Settings of one simulation run.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// The records' shape: `fmb` (a Teltonika FMB device's numeric IO elements) or `mixed`
    /// (every shape the contract allows, sentinels included).
    #[arg(long, value_enum, default_value_t = Profile::Fmb)]
    pub profile: Profile,

    /// Distinct devices (IMEI-like 15-digit ids).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub devices: u32,

    /// Positions to publish (conflicts with --duration; one of them is required).
    #[arg(
        long,
        conflicts_with = "duration",
        required_unless_present = "duration"
    )]
    pub count: Option<u64>,

    /// Publish for this many seconds instead of a count.
    #[arg(long)]
    pub duration: Option<u64>,

    /// Positions per second; 0 = as fast as possible.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,

    /// Seed: the same seed gives the same positions (and, with --start-ms, the same payloads).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Fraction (0..1) of entries that repeat an earlier position exactly.
    #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
    pub duplicates: f64,

    /// Fraction (0..1) of entries that break the contract (to exercise dead letters).
    #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
    pub invalid: f64,

    /// XADDs per pipelined round trip.
    #[arg(long, default_value_t = 500, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=MAX_PIPELINE))]
    pub pipeline: usize,

    /// Start time of the first position, epoch milliseconds (default: now).
    #[arg(long)]
    pub start_ms: Option<i64>,

    /// Arrival order: `in-order` (each device's fixes oldest first), `newest-first` (backlogs
    /// sent newest first, as a Teltonika device in that mode does: windows of 30 fixes per
    /// device, reversed), `late` (every tenth position held back and sent 60 fixes per device
    /// later).
    #[arg(long, value_enum, default_value_t = Order::InOrder)]
    pub order: Order,
}

/// The order positions arrive in (`--order`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Order {
    /// Each device's fixes oldest first.
    InOrder,
    /// Backlogs newest first: windows of [`NEWEST_FIRST_WINDOW`] fixes per device, reversed.
    NewestFirst,
    /// Every tenth position held back by [`LATE_BY`] fixes per device.
    Late,
}

/// Fixes per device in one newest-first window.
pub const NEWEST_FIRST_WINDOW: u64 = 30;

/// How many fixes per device a late position is held back by.
pub const LATE_BY: u64 = 60;

/// The largest `--pipeline` accepted (a round trip's payloads are held in memory).
const MAX_PIPELINE: u64 = 100_000;

impl SimulateArgs {
    /// Checks what clap cannot (or what a caller building the struct in code may have missed).
    pub fn validate(&self) -> Result<(), SimulateError> {
        let bad = |reason: String| Err(SimulateError::Args(reason));
        if self.devices == 0 {
            return bad("--devices must be at least 1".to_owned());
        }
        match (self.count, self.duration) {
            (Some(_), Some(_)) => return bad("give --count or --duration, not both".to_owned()),
            (None, None) => return bad("give --count or --duration".to_owned()),
            _ => {}
        }
        for (flag, value) in [
            ("--duplicates", self.duplicates),
            ("--invalid", self.invalid),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return bad(format!("{flag} {value} is not a fraction between 0 and 1"));
            }
        }
        if self.duplicates + self.invalid > 1.0 {
            return bad(format!(
                "--duplicates {} and --invalid {} add up to more than 1",
                self.duplicates, self.invalid
            ));
        }
        if self.pipeline == 0 || self.pipeline as u64 > MAX_PIPELINE {
            return bad(format!("--pipeline must be 1..={MAX_PIPELINE}"));
        }
        if let Some(start) = self.start_ms {
            if !(0..=format::MAX_ISO_MS).contains(&start) {
                return bad(format!(
                    "--start-ms {start} is outside 1970-01-01 ..= 9999-12-31 ({}..={})",
                    0,
                    format::MAX_ISO_MS
                ));
            }
        }
        Ok(())
    }
}

fn parse_fraction(text: &str) -> Result<f64, String> {
    let value: f64 = text.trim().parse().map_err(|e| format!("{e}"))?;
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{value} is not between 0 and 1"))
    }
}

/// What was published.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SimulateReport {
    /// Entries appended to the stream (all kinds).
    pub published: u64,
    /// Valid entries, each a distinct `(device_id, ts)` (device timestamps strictly increase, so
    /// this is also the number of rows the processor should write).
    pub valid_distinct: u64,
    /// Exact copies of earlier valid entries (the processor should count them as duplicates).
    pub duplicates: u64,
    /// Entries breaking the contract (the processor should dead-letter them).
    pub invalid: u64,
    /// Wall-clock time of the run, in milliseconds.
    pub elapsed_ms: u64,
}

/// Why a simulation could not run or stopped early.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    /// Connecting to Redis or appending to the stream failed.
    #[error("simulate: redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A publishing task ended without an answer (it panicked or was cancelled).
    #[error("simulate: the publishing task failed: {0}")]
    Task(String),
    /// The settings are inconsistent.
    #[error("simulate: {0}")]
    Args(String),
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: SimulateArgs,
    }

    fn parse(args: &[&str]) -> Result<SimulateArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("simulate").chain(args.iter().copied()))
            .map(|cli| cli.args)
    }

    #[test]
    fn flags_parse_with_defaults() {
        let args = parse(&["--count", "10"]).expect("valid");
        assert_eq!(args.count, Some(10));
        assert_eq!(args.devices, 1000);
        assert_eq!(args.pipeline, 500);
        assert_eq!(args.seed, 1);
        assert!(args.validate().is_ok());
        let args =
            parse(&["--duration", "5", "--rate", "100", "--duplicates", "0.1"]).expect("valid");
        assert_eq!((args.duration, args.rate), (Some(5), 100));
        assert!(args.validate().is_ok());
    }

    #[test]
    fn bad_flags_are_refused() {
        assert!(parse(&[]).is_err(), "count or duration is required");
        assert!(parse(&["--count", "1", "--duration", "1"]).is_err());
        assert!(parse(&["--count", "1", "--duplicates", "1.5"]).is_err());
        assert!(parse(&["--count", "1", "--invalid", "-0.1"]).is_err());
        assert!(parse(&["--count", "1", "--devices", "0"]).is_err());
        assert!(parse(&["--count", "1", "--pipeline", "0"]).is_err());
        let args = parse(&["--count", "1", "--duplicates", "0.6", "--invalid", "0.6"])
            .expect("each is a fraction");
        assert!(matches!(args.validate(), Err(SimulateError::Args(_))));
        let args = parse(&["--count", "1", "--start-ms=-5"]).expect("an integer");
        assert!(matches!(args.validate(), Err(SimulateError::Args(_))));
        let mut args = parse(&["--count", "1"]).expect("valid");
        args.duplicates = f64::NAN;
        assert!(args.validate().is_err());
        args.duplicates = 0.0;
        args.duration = Some(1);
        assert!(args.validate().is_err());
    }
}
