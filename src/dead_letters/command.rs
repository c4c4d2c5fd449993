//! `processor dead-letters ...`: the subcommands, and running one against Redis. The binary's
//! `main` only parses the command line and prints what [`run`] returns; JSON goes to standard
//! output, the one-line summaries and errors to standard error.

use std::io::Write as _;

use clap::Subcommand;

use crate::config_values::ConfigError;
use crate::redis::{DeadLetterKey, RedisError, RedisLink, StreamKey};

/// Which dead-letter stream the commands act on, and where a redrive sends entries.
#[derive(Clone, Debug, clap::Args)]
pub struct Target {
    /// The server.
    #[command(flatten)]
    pub link: RedisLink,
    /// The positions' stream (a redrive's destination).
    #[command(flatten)]
    pub stream: StreamKey,
    /// The dead-letter stream.
    #[command(flatten)]
    pub dead_letters: DeadLetterKey,
}

impl Target {
    /// Checks what the argument parser cannot, as the service does for the same settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.link.validate()?;
        self.stream.validate()?;
        self.dead_letters.validate(&self.stream)
    }
}

/// `processor dead-letters ...`.
#[derive(Debug, Subcommand)]
pub enum DeadLetterCommand {
    /// Counts by the failure's field and by kind of reason, and the oldest and newest failure,
    /// as JSON.
    Stats(SelectArgs),
    /// Prints dead letters as JSON lines: id, reason, fields.
    Show {
        // (which dead letters)
        #[allow(missing_docs)]
        #[command(flatten)]
        select: SelectArgs,
        /// At most this many.
        #[arg(long)]
        count: Option<usize>,
    },
    /// Puts dead letters back on STREAM_KEY with their original fields (plus `redrive_count` and
    /// `redriven_from`), removing each from the dead-letter stream in the same step.
    Redrive {
        // (which dead letters)
        #[allow(missing_docs)]
        #[command(flatten)]
        select: SelectArgs,
        /// Move at most this many.
        #[arg(long)]
        limit: Option<u64>,
        /// At most this many per second (0: no limit).
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        /// Print what would move, move nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Removes dead letters older than `--older-than` (XTRIM MINID).
    Purge {
        /// Age, e.g. `30d`, `12h`.
        #[arg(long)]
        older_than: crate::config_values::Interval,
        /// Print how many would go, remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Which dead letters a command acts on.
#[derive(Debug, Clone, clap::Args)]
pub struct SelectArgs {
    /// Only those whose reason contains this text (case-insensitive).
    #[arg(long)]
    pub reason: Option<String>,
    /// Only those whose failure is about this field: a contract field (`latitude`, `payload`,
    /// ...), `database` (refused by PostgreSQL) or `deliveries` (delivered too often).
    #[arg(long)]
    pub field: Option<String>,
    /// Only those dead-lettered less than this long ago (`30m`, `12h`, `7d`).
    #[arg(long)]
    pub newer_than: Option<crate::config_values::Interval>,
    /// Only those dead-lettered more than this long ago.
    #[arg(long)]
    pub older_than: Option<crate::config_values::Interval>,
}

impl SelectArgs {
    /// The selection the library takes.
    pub fn selection(&self) -> super::Selection {
        super::Selection {
            reason: self.reason.clone(),
            field: self.field.clone(),
            newer_than: self.newer_than.map(|span| span.as_duration()),
            older_than: self.older_than.map(|span| span.as_duration()),
        }
    }
}

/// Why a dead-letter command did not complete.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// Redis failed or refused.
    #[error(transparent)]
    Redis(#[from] RedisError),
    /// The async runtime could not start.
    #[error("starting the runtime: {0}")]
    Runtime(std::io::Error),
    /// Standard output could not be written.
    #[error("writing the output: {0}")]
    Output(#[from] std::io::Error),
    /// A report could not be rendered as JSON.
    #[error("rendering JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Runs `command` against the dead-letter stream that `target` names.
pub fn run(target: &Target, command: DeadLetterCommand) -> Result<(), CommandError> {
    let dead = target.dead_letters.resolve(&target.stream);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CommandError::Runtime)?;
    runtime.block_on(async {
        let client = target.link.client()?;
        let mut conn = crate::redis::connect::command_connection(&client).await?;
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        match command {
            DeadLetterCommand::Stats(select) => {
                let stats = super::stats(&mut conn, &dead, &select.selection()).await?;
                writeln!(out, "{}", serde_json::to_string_pretty(&stats)?)?;
            }
            DeadLetterCommand::Show { select, count } => {
                let shown =
                    super::show(&mut conn, &dead, &select.selection(), count, &mut out).await?;
                eprintln!("processor dead-letters: {shown} shown from {dead}");
            }
            DeadLetterCommand::Redrive {
                select,
                limit,
                rate,
                dry_run,
            } => {
                let options = super::RedriveOptions {
                    limit,
                    rate,
                    dry_run,
                };
                let report = super::redrive_selected(
                    &mut conn,
                    &dead,
                    &target.stream.key,
                    &select.selection(),
                    &options,
                    &mut out,
                )
                .await?;
                eprintln!(
                    "processor dead-letters: {}",
                    serde_json::to_string(&report)?
                );
            }
            DeadLetterCommand::Purge {
                older_than,
                dry_run,
            } => {
                let report =
                    super::purge(&mut conn, &dead, older_than.as_duration(), dry_run).await?;
                writeln!(out, "{}", serde_json::to_string(&report)?)?;
            }
        }
        Ok(())
    })
}
