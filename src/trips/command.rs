//! `processor trips ...`: `rebuild` recomputes trips from positions, device by device (after a
//! rule's setting changed, or for history written before trips were on). Each device is rebuilt
//! in its own transaction under its trip lock, so the command is atomic per device and safe
//! while the service runs. Progress goes to standard error, the summary (JSON) to standard
//! output.

use std::io::Write as _;
use std::time::{Duration, Instant};

use clap::Subcommand;

use super::TripRulesArgs;
use crate::config_values::ConfigError;
use crate::postgres::{self, DatabaseLink, PostgresError};

/// `processor trips ...`.
#[derive(Debug, Subcommand)]
pub enum TripsCommand {
    /// Recompute trips from positions: every device, or one (`--device`), all of its history or
    /// from the trip holding `--since` on. Atomic per device; safe while the service runs.
    Rebuild(RebuildArgs),
}

/// What `rebuild` does, and where.
#[derive(Debug, clap::Args)]
pub struct RebuildArgs {
    /// The database.
    #[command(flatten)]
    pub link: DatabaseLink,
    /// The rules to apply (the service's settings: pass the same ones).
    #[command(flatten)]
    pub rules: TripRulesArgs,
    /// Only this device.
    #[arg(long)]
    pub device: Option<String>,
    /// Only from the trip holding this time on (RFC 3339, e.g. `2026-11-01T00:00:00Z`); trips
    /// that ended before it stay as they are.
    #[arg(long, value_parser = rfc3339_micros)]
    pub since: Option<i64>,
}

impl RebuildArgs {
    /// Checks what the argument parser cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.link.validate()?;
        self.rules.validate()
    }
}

fn rfc3339_micros(text: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|time| time.timestamp_micros())
        .map_err(|e| format!("not an RFC 3339 time ({e}), e.g. 2026-11-01T00:00:00Z"))
}

/// Why a trips command did not complete.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// PostgreSQL failed or refused.
    #[error(transparent)]
    Postgres(#[from] PostgresError),
    /// The async runtime could not start.
    #[error("starting the runtime: {0}")]
    Runtime(std::io::Error),
    /// Standard output could not be written.
    #[error("writing the output: {0}")]
    Output(#[from] std::io::Error),
}

/// Devices listed per query of the skip scan.
const PAGE: i64 = 1_000;

/// Runs `command`.
pub fn run(command: TripsCommand) -> Result<(), CommandError> {
    let TripsCommand::Rebuild(args) = command;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CommandError::Runtime)?;
    runtime.block_on(rebuild(&args))
}

async fn rebuild(args: &RebuildArgs) -> Result<(), CommandError> {
    let mut client = args.link.connect().await?;
    let rules = args.rules.rules();
    let devices = match &args.device {
        Some(device) => vec![device.clone()],
        None => {
            let mut all = Vec::new();
            loop {
                let page =
                    postgres::devices_with_positions(&client, all.last().map(String::as_str), PAGE)
                        .await?;
                let done = (page.len() as i64) < PAGE;
                all.extend(page);
                if done {
                    break all;
                }
            }
        }
    };
    let started = Instant::now();
    let mut last_report = Instant::now();
    let mut total = postgres::Rebuilt::default();
    for (done, device) in devices.iter().enumerate() {
        let rebuilt = postgres::rebuild_device(&mut client, device, args.since, &rules).await?;
        total.fixes += rebuilt.fixes;
        total.runs += rebuilt.runs;
        total.trips += rebuilt.trips;
        if last_report.elapsed() >= Duration::from_secs(1) || done + 1 == devices.len() {
            eprintln!(
                "processor trips rebuild: {}/{} devices, {} fixes read, {} trips written",
                done + 1,
                devices.len(),
                total.fixes,
                total.trips
            );
            last_report = Instant::now();
        }
    }
    let report = serde_json::json!({
        "devices": devices.len(),
        "fixes": total.fixes,
        "runs": total.runs,
        "trips": total.trips,
        "elapsed_ms": u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    });
    writeln!(std::io::stdout(), "{report}")?;
    Ok(())
}
