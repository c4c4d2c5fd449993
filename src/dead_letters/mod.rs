//! `processor dead-letters`: inspect the dead-letter stream, send entries back, purge old ones.
//!
//! A dead-letter stream nobody reads is a graveyard. Many entries there are valid records that
//! failed for a reason since fixed (a crash loop that hit `MAX_DELIVERIES`, a constraint since
//! dropped, a codec bug since fixed), so the workflow is: `stats` to see what failed and how
//! often, `show` to look at the entries, fix the cause, `redrive` to send them back through the
//! pipeline, `purge` to drop what is no longer wanted.
//!
//! # Why a redrive neither loses nor doubles an entry
//! Each entry goes back with its original fields (the dead-letter writer's `error`,
//! `source_id`, `consumer` and `failed_at` removed), plus `redrive_count` (one more than it
//! carried) and `redriven_from` (its dead-letter id), and is removed from the dead-letter stream
//! in the same step: one Lua script adds it to the stream and deletes it from the dead-letter
//! stream only if it is still there. A redrive killed half-way has moved some entries and left the
//! others; run again, it moves each of the rest once. Only the letters present when a run starts
//! are considered, so an entry that fails again during the run (and is dead-lettered again, with
//! its `redrive_count`, for the operator to see) is not sent around in a loop.

pub mod command;
mod kind;

use std::io::Write;
use std::time::Duration;

use bytes::Bytes;
use dataflow::StreamId;
use redis::aio::ConnectionManager;
use serde::Serialize;

use crate::redis::{
    newest_id, read_dead_letters, redrive, trim_before, DeadLetter, RedisError, METADATA_FIELDS,
    REDRIVEN_FROM, REDRIVE_COUNT,
};

pub use kind::{field_of, kind_of};

/// Dead letters are read in pages of this many.
const PAGE: usize = 500;

/// Which dead letters a command acts on.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// Only those whose `error` contains this text (case-insensitive).
    pub reason: Option<String>,
    /// Only those whose failure is about this field (see [`field_of`]).
    pub field: Option<String>,
    /// Only those dead-lettered less than this long ago.
    pub newer_than: Option<Duration>,
    /// Only those dead-lettered more than this long ago.
    pub older_than: Option<Duration>,
}

impl Selection {
    fn matches(&self, letter: &DeadLetter, now_ms: u64) -> bool {
        let age = Duration::from_millis(now_ms.saturating_sub(letter.id.ms));
        if self.newer_than.is_some_and(|limit| age >= limit)
            || self.older_than.is_some_and(|limit| age <= limit)
        {
            return false;
        }
        let error = letter.field(METADATA_FIELDS[0]).unwrap_or_default();
        if let Some(reason) = &self.reason {
            if !error.to_lowercase().contains(&reason.to_lowercase()) {
                return false;
            }
        }
        if let Some(field) = &self.field {
            if field_of(&error) != field.as_str() {
                return false;
            }
        }
        true
    }
}

/// Walks the dead letters present now (up to the newest at the start), oldest first, handing
/// each selected one to `visit` until it says stop.
async fn each_selected<F>(
    conn: &mut ConnectionManager,
    key: &str,
    selection: &Selection,
    mut visit: F,
) -> Result<(), RedisError>
where
    F: FnMut(DeadLetter) -> bool,
{
    let now_ms = crate::clock::unix_ms();
    let newest = newest_id(conn, key).await?;
    let mut after = None;
    loop {
        let page = read_dead_letters(conn, key, after, PAGE).await?;
        let Some(last) = page.last().map(|letter| letter.id) else {
            return Ok(());
        };
        after = Some(last);
        for letter in page {
            if newest.is_some_and(|newest| letter.id > newest) {
                return Ok(());
            }
            if selection.matches(&letter, now_ms) && !visit(letter) {
                return Ok(());
            }
        }
    }
}

/// What `stats` found.
#[derive(Debug, Default, Serialize)]
pub struct Stats {
    /// Dead letters selected.
    pub total: u64,
    /// Counts by the failure's field.
    pub by_field: std::collections::BTreeMap<String, u64>,
    /// Counts by the kind of reason (values masked).
    pub by_reason: std::collections::BTreeMap<String, u64>,
    /// The oldest and newest `failed_at`.
    pub oldest_failed_at: Option<String>,
    /// The newest `failed_at`.
    pub newest_failed_at: Option<String>,
}

/// Counts the selected dead letters by field and by kind of reason.
pub async fn stats(
    conn: &mut ConnectionManager,
    key: &str,
    selection: &Selection,
) -> Result<Stats, RedisError> {
    let mut stats = Stats::default();
    each_selected(conn, key, selection, |letter| {
        let error = letter.field(METADATA_FIELDS[0]).unwrap_or_default();
        stats.total += 1;
        *stats
            .by_field
            .entry(field_of(&error).to_owned())
            .or_default() += 1;
        *stats.by_reason.entry(kind_of(&error)).or_default() += 1;
        if let Some(at) = letter.field(METADATA_FIELDS[3]) {
            if stats.oldest_failed_at.as_ref().is_none_or(|old| at < *old) {
                stats.oldest_failed_at = Some(at.clone());
            }
            if stats.newest_failed_at.as_ref().is_none_or(|new| at > *new) {
                stats.newest_failed_at = Some(at);
            }
        }
        true
    })
    .await?;
    Ok(stats)
}

/// One dead letter as `show` prints it.
#[derive(Debug, Serialize)]
pub struct Shown {
    /// Its id in the dead-letter stream.
    pub id: String,
    /// Why it was refused.
    pub reason: String,
    /// Its fields (values as text; bytes that are not UTF-8 shown replaced).
    pub fields: serde_json::Map<String, serde_json::Value>,
}

fn shown(letter: &DeadLetter) -> Shown {
    Shown {
        id: letter.id.to_string(),
        reason: letter.field(METADATA_FIELDS[0]).unwrap_or_default(),
        fields: letter
            .fields
            .iter()
            .map(|(name, value)| {
                (
                    String::from_utf8_lossy(name).into_owned(),
                    serde_json::Value::String(String::from_utf8_lossy(value).into_owned()),
                )
            })
            .collect(),
    }
}

/// Writes up to `count` selected dead letters as JSON lines; returns how many.
pub async fn show(
    conn: &mut ConnectionManager,
    key: &str,
    selection: &Selection,
    count: Option<usize>,
    out: &mut dyn Write,
) -> Result<u64, RedisError> {
    let mut written = 0u64;
    let mut failed = None;
    each_selected(conn, key, selection, |letter| {
        if let Err(error) = write_json(out, &shown(&letter)) {
            failed = Some(error);
            return false;
        }
        written += 1;
        count.is_none_or(|count| written < count as u64)
    })
    .await?;
    match failed {
        Some(error) => Err(RedisError::Reply {
            operation: "show",
            detail: format!("writing the output: {error}"),
        }),
        None => Ok(written),
    }
}

fn write_json(out: &mut dyn Write, value: &impl Serialize) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    out.write_all(b"\n")
}

/// How a redrive goes.
#[derive(Clone, Debug, Default)]
pub struct RedriveOptions {
    /// Move at most this many.
    pub limit: Option<u64>,
    /// At most this many per second (0: as fast as the server takes them).
    pub rate: u64,
    /// Only say what would move.
    pub dry_run: bool,
}

/// What a redrive did.
#[derive(Debug, Default, Serialize)]
pub struct RedriveReport {
    /// Entries put back on the stream (none on a dry run).
    pub moved: u64,
    /// On a dry run, the entries a redrive would put back.
    pub would_move: u64,
    /// Selected letters found gone when their turn came (moved or purged meanwhile).
    pub skipped: u64,
    /// Whether nothing was moved.
    pub dry_run: bool,
}

/// The fields an entry goes back with: its own, without the dead-letter writer's and an earlier
/// redrive's, plus `redrive_count` and `redriven_from`.
fn redriven_fields(letter: &DeadLetter) -> Vec<(Bytes, Bytes)> {
    let count: u64 = letter
        .field(REDRIVE_COUNT)
        .and_then(|count| count.trim().parse().ok())
        .unwrap_or(0);
    let mut fields: Vec<(Bytes, Bytes)> = letter
        .fields
        .iter()
        .filter(|(name, _)| {
            !METADATA_FIELDS
                .iter()
                .chain([&REDRIVE_COUNT, &REDRIVEN_FROM])
                .any(|meta| name.as_ref() == meta.as_bytes())
        })
        .cloned()
        .collect();
    fields.push((
        Bytes::from_static(REDRIVE_COUNT.as_bytes()),
        Bytes::from((count + 1).to_string()),
    ));
    fields.push((
        Bytes::from_static(REDRIVEN_FROM.as_bytes()),
        Bytes::from(letter.id.to_string()),
    ));
    fields
}

/// Sends the selected dead letters of `dead` back to `stream` (see the module doc), writing one
/// JSON line per entry moved (or, on a dry run, that would move).
pub async fn redrive_selected(
    conn: &mut ConnectionManager,
    dead: &str,
    stream: &str,
    selection: &Selection,
    options: &RedriveOptions,
    out: &mut dyn Write,
) -> Result<RedriveReport, RedisError> {
    let mut report = RedriveReport {
        dry_run: options.dry_run,
        ..RedriveReport::default()
    };
    // Select first (a page at a time would interleave reads and deletes of one stream): the ids
    // and fields of what is to move, bounded by the limit.
    let mut selected: Vec<DeadLetter> = Vec::new();
    each_selected(conn, dead, selection, |letter| {
        selected.push(letter);
        options
            .limit
            .is_none_or(|limit| (selected.len() as u64) < limit)
    })
    .await?;
    let step = match options.rate {
        0 => 100,
        rate => usize::try_from(rate / 10).unwrap_or(100).clamp(1, 100),
    };
    let started = std::time::Instant::now();
    for chunk in selected.chunks(step) {
        let letters: Vec<(StreamId, Vec<(Bytes, Bytes)>)> = chunk
            .iter()
            .map(|letter| (letter.id, redriven_fields(letter)))
            .collect();
        let moved: Vec<Option<StreamId>> = if options.dry_run {
            letters.iter().map(|(id, _)| Some(*id)).collect()
        } else {
            redrive(conn, dead, stream, &letters).await?
        };
        for ((id, fields), new_id) in letters.iter().zip(moved) {
            let Some(new_id) = new_id else {
                report.skipped += 1;
                continue;
            };
            if options.dry_run {
                report.would_move += 1;
            } else {
                report.moved += 1;
            }
            let line = serde_json::json!({
                "dead_letter_id": id.to_string(),
                "stream_id": if options.dry_run { serde_json::Value::Null } else { new_id.to_string().into() },
                "fields": fields.iter().map(|(name, value)| (
                    String::from_utf8_lossy(name).into_owned(),
                    serde_json::Value::String(String::from_utf8_lossy(value).into_owned()),
                )).collect::<serde_json::Map<_, _>>(),
            });
            write_json(out, &line).map_err(|error| RedisError::Reply {
                operation: "redrive",
                detail: format!("writing the output: {error}"),
            })?;
        }
        if options.rate > 0 && !options.dry_run {
            let due = Duration::from_secs_f64(report.moved as f64 / options.rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
    }
    Ok(report)
}

/// What a purge did.
#[derive(Debug, Default, Serialize)]
pub struct PurgeReport {
    /// Dead letters removed (none on a dry run).
    pub removed: u64,
    /// On a dry run, the dead letters a purge would remove.
    pub would_remove: u64,
    /// Dead letters from before this id were the ones concerned.
    pub before: String,
    /// Whether nothing was removed.
    pub dry_run: bool,
}

/// Removes the dead letters older than `older_than` (by when they were dead-lettered, their
/// stream id), with `XTRIM MINID`.
pub async fn purge(
    conn: &mut ConnectionManager,
    dead: &str,
    older_than: Duration,
    dry_run: bool,
) -> Result<PurgeReport, RedisError> {
    let cutoff = crate::clock::unix_ms()
        .saturating_sub(u64::try_from(older_than.as_millis()).unwrap_or(u64::MAX));
    let minid = StreamId::new(cutoff, 0);
    let removed = if dry_run {
        let mut count = 0u64;
        let mut after = None;
        'pages: loop {
            let page = read_dead_letters(conn, dead, after, PAGE).await?;
            let Some(last) = page.last().map(|letter| letter.id) else {
                break;
            };
            after = Some(last);
            for letter in page {
                if letter.id >= minid {
                    break 'pages;
                }
                count += 1;
            }
        }
        count
    } else {
        trim_before(conn, dead, minid).await?
    };
    let (removed, would_remove) = if dry_run { (0, removed) } else { (removed, 0) };
    Ok(PurgeReport {
        removed,
        would_remove,
        before: minid.to_string(),
        dry_run,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(fields: &[(&str, &str)]) -> DeadLetter {
        DeadLetter {
            id: StreamId::new(1_700_000_000_000, 3),
            fields: fields
                .iter()
                .map(|(k, v)| (Bytes::from(k.to_string()), Bytes::from(v.to_string())))
                .collect(),
        }
    }

    #[test]
    fn an_entry_goes_back_with_its_own_fields_and_its_redrive_count() {
        let first = letter(&[
            ("payload", "{}"),
            ("error", "latitude: 91 is out of range -90..=90"),
            ("source_id", "1-0"),
            ("consumer", "c-0"),
            ("failed_at", "2026-12-01T00:00:00.000Z"),
        ]);
        let fields = redriven_fields(&first);
        let names: Vec<String> = fields
            .iter()
            .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
            .collect();
        assert_eq!(names, vec!["payload", "redrive_count", "redriven_from"]);
        assert_eq!(fields[1].1.as_ref(), b"1");
        assert_eq!(fields[2].1.as_ref(), b"1700000000000-3");
        // dead-lettered again after its first redrive: the count grows
        let again = letter(&[
            ("payload", "{}"),
            ("redrive_count", "1"),
            ("redriven_from", "1-1"),
            ("error", "x"),
        ]);
        let fields = redriven_fields(&again);
        assert_eq!(fields.len(), 3);
        assert_eq!(fields[1].1.as_ref(), b"2");
    }

    #[test]
    fn selections_filter_by_reason_field_and_age() {
        let now = 1_700_000_000_000 + 10_000;
        let dead = letter(&[("error", "Latitude: 91 is out of range -90..=90")]);
        let all = Selection::default();
        assert!(all.matches(&dead, now));
        let by_reason = Selection {
            reason: Some("OUT OF RANGE".to_owned()),
            ..Selection::default()
        };
        assert!(by_reason.matches(&dead, now));
        let by_field = Selection {
            field: Some("longitude".to_owned()),
            ..Selection::default()
        };
        assert!(!by_field.matches(&dead, now));
        let newer = Selection {
            newer_than: Some(Duration::from_secs(5)),
            ..Selection::default()
        };
        assert!(!newer.matches(&dead, now), "10 s old");
        let older = Selection {
            older_than: Some(Duration::from_secs(5)),
            ..Selection::default()
        };
        assert!(older.matches(&dead, now));
    }
}
