//! `trips` and `trip_runs` (`TRIPS=on`): the trips the rules give for what `positions` holds,
//! changed in the epoch's transaction, after its positions.
//!
//! For each device with rows in the epoch, the writer
//! 1. takes the device's trip lock (a row lock on its `trip_devices` row, in device order in
//!    every transaction): replicas of one consumer group do not partition by device, so two of
//!    them can commit the same device at once; the lock makes the second wait and then read what
//!    the first committed (each statement of a READ COMMITTED transaction sees what committed
//!    before it). The row keeps a version and the writer that took it last: a writer that finds
//!    them as it remembers only locks the row; any other bumps the version and sets itself
//!    (`rows::LOCK_REMEMBERED` says why that proves nobody else wrote the device since);
//! 2. if every fix is newer than what this writer remembers writing of the device, and the
//!    row shows nobody wrote it since, continues the device's fold from memory (no reads); if
//!    the older ones fill gaps of the current run it remembers, and all are new to `positions`,
//!    reads only the stored fixes from the one before them to the one after them
//!    ([`dataflow::trips::inside`]) and continues likewise;
//! 3. otherwise reads the runs around the epoch's span from `trips` and `trip_runs` (index
//!    probes), plans the region the new fixes can change ([`dataflow::trips::region`]), and reads
//!    the region's fixes from `positions` as committed plus this transaction's own rows (the first
//!    row of each key, never a refused one) and the device's newest fix after it;
//! 4. writes what changed: the region's runs and trips replace the stored ones, and an earlier
//!    open trip that the newest fix has closed is closed.
//!
//! Every step is one statement for all the epoch's devices (arrays, `unnest`), so an epoch costs
//! a fixed number of round trips whatever its devices. The memory is a cache of the tables, never
//! the state: a restart, a replica or a rebuild sends a device down the read path, and what a
//! write would have it remember is applied only once its transaction committed
//! (`DerivedWriter::committed`).

use std::collections::HashMap;

mod diff;
mod rebuild;
mod rows;
mod statements;

use std::sync::{Mutex, PoisonError};

use dataflow::trips::{inside, region, Fix, Region, Right, RunFold, Start, Tail, TripRules};
use lru::LruCache;
use tokio_postgres::{Client, Row, Transaction};

use super::super::privileges::Grant;
use super::super::timestamp::Timestamp;
use super::{BoxFuture, Changes, DerivedTable, DerivedWriter, EpochRows};
use diff::{Stored, Writes};
use rows::run_at;
use statements::Statements;

pub use rebuild::{devices_with_positions, rebuild_device, Rebuilt};

/// The trips table, by these rules.
pub(super) struct Trips {
    /// The rules (`TRIP_*`).
    pub(super) rules: TripRules,
}

impl DerivedTable for Trips {
    fn table(&self) -> &'static str {
        super::TRIPS
    }

    /// Reads the positions; replaces runs and trips.
    fn grants(&self) -> Vec<Grant> {
        vec![
            Grant {
                table: super::POSITIONS,
                privileges: &["SELECT"],
            },
            Grant {
                table: super::TRIPS,
                privileges: &["SELECT", "INSERT", "UPDATE", "DELETE"],
            },
            Grant {
                table: "trip_devices",
                privileges: &["SELECT", "INSERT", "UPDATE"],
            },
            Grant {
                table: "trip_runs",
                privileges: &["SELECT", "INSERT", "UPDATE", "DELETE"],
            },
        ]
    }

    fn prepare<'a>(
        &'a self,
        client: &'a Client,
    ) -> BoxFuture<'a, Result<Box<dyn DerivedWriter>, tokio_postgres::Error>> {
        Box::pin(async move {
            Ok(Box::new(Writer {
                rules: self.rules,
                statements: Statements::prepare(client).await?,
                identity: identity(),
                // unbounded, trimmed by `remember`: a bounded one allocates its whole capacity
                memory: Mutex::new(LruCache::unbounded()),
                pending: Mutex::new(Vec::new()),
            }) as Box<dyn DerivedWriter>)
        })
    }
}

/// Its writer on one connection.
struct Writer {
    rules: TripRules,
    statements: Statements,
    /// This writer's identity in `trip_devices.writer`, unique to it.
    identity: i64,
    /// What this writer last wrote of each device it saw recently (least recently seen evicted):
    /// used instead of reading it back only while the device's `trip_devices` row says nobody
    /// else wrote it since. A write takes its devices out, and they come back with what it wrote
    /// only when its transaction commits: a device whose write is not known to have committed
    /// (rolled back, refused, or a commit whose outcome is unknown) is not remembered.
    memory: Mutex<LruCache<String, Remembered>>,
    /// What the last successful write would have it remember, put into `memory` when its
    /// transaction commits.
    pending: Mutex<Vec<(String, Remembered)>>,
}

/// A device's trips as this writer left them.
#[derive(Clone, Copy, Debug)]
struct Remembered {
    /// `trip_devices.version` after that write.
    version: i64,
    /// The device's newest fix then.
    newest: i64,
    /// Its latest run, stored, with the fold's state after the newest fix, while a later fix
    /// could still extend it.
    current: Option<(Stored, Tail)>,
}

/// A new writer's identity: random (the process's random hash keys, the time, the process id
/// and a count of the writers it made), so no two writers share one.
fn identity() -> i64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static MADE: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    hasher.write_u128(now);
    hasher.write_u32(std::process::id());
    hasher.write_u64(MADE.fetch_add(1, Ordering::Relaxed));
    hasher.finish() as i64
}

/// Devices remembered per writer (one writer per worker).
const REMEMBERED: usize = 1_000_000;

/// The span of one device's rows in the epoch.
struct Span<'a> {
    device: &'a str,
    first: i64,
    last: i64,
    /// Whether any of them is moving.
    moving: bool,
    /// Its fixes, by time, the first of each time (as `positions` took them).
    fixes: Vec<Fix>,
}

/// The 1-based ordinal `WITH ORDINALITY` gave, as an index into the spans.
fn ordinal(row: &Row) -> Result<usize, tokio_postgres::Error> {
    let i: i64 = row.try_get(0)?;
    Ok(usize::try_from(i - 1).unwrap_or(usize::MAX))
}

/// Reads a fix from `at` (`ts`), `at + 1` (latitude), `at + 2` (longitude), `at + 3` (speed).
fn fix_at(row: &Row, at: usize) -> Result<Fix, tokio_postgres::Error> {
    let ts: Timestamp = row.try_get(at)?;
    Ok(Fix {
        ts_micros: ts.0,
        latitude: row.try_get(at + 1)?,
        longitude: row.try_get(at + 2)?,
        speed: row.try_get(at + 3)?,
    })
}

/// Reads a stored run with its kind and `open` at `at` (kind), `at + 1..` (the run's columns),
/// `at + 10` (open); `None` when NULL (no such run).
fn stored_at(row: &Row, at: usize) -> Result<Option<Stored>, tokio_postgres::Error> {
    let Some(trip) = row.try_get::<_, Option<bool>>(at)? else {
        return Ok(None);
    };
    let Some(run) = run_at(row, at + 1)? else {
        return Ok(None);
    };
    Ok(Some(Stored {
        trip,
        run,
        open: row.try_get(at + 10)?,
    }))
}

/// One device's part of the epoch.
struct Plan {
    region: Region,
    /// The latest stored run starting before the span.
    left: Option<Stored>,
    /// The stored runs starting in the region, when known without a query.
    old: Option<Vec<Stored>>,
    /// The region's runs, when known without reading fixes.
    new: Option<Vec<dataflow::trips::Run>>,
    /// The device's newest fix.
    newest: i64,
}

impl Writer {
    /// Keeps what was written of each device (none for `None`), once its transaction commits
    /// (`committed`).
    fn remember(&self, what: Vec<(&str, Option<Remembered>)>) {
        *self.pending.lock().unwrap_or_else(PoisonError::into_inner) = what
            .into_iter()
            .filter_map(|(device, remembered)| Some((device.to_owned(), remembered?)))
            .collect();
    }
}

impl DerivedWriter for Writer {
    fn write<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        rows: &'a EpochRows<'a>,
        _chunk: usize,
    ) -> BoxFuture<'a, Result<Changes, tokio_postgres::Error>> {
        Box::pin(async move {
            // nothing of a write before this one that did not commit is to be kept
            self.pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
            let spans = spans(rows, &self.rules);
            if spans.is_empty() {
                return Ok(Changes::default());
            }
            let s = &self.statements;
            let rules = &self.rules;
            // what this writer remembers of each device (and so the version it expects), taken
            // out until this write's commit puts back what it wrote
            let known: Vec<Option<Remembered>> = {
                let mut memory = self.memory.lock().unwrap_or_else(PoisonError::into_inner);
                spans.iter().map(|span| memory.pop(span.device)).collect()
            };
            let devices: Vec<&str> = spans.iter().map(|span| span.device).collect();
            let expected: Vec<i64> = known
                .iter()
                .map(|known| known.map_or(0, |known| known.version))
                .collect();
            // the devices whose version moved: somebody else wrote them since (or nobody ever)
            let locked = tx
                .query(&s.lock, &[&devices, &expected, &self.identity])
                .await?;
            let mut moved: HashMap<&str, i64> = HashMap::with_capacity(locked.len());
            for row in &locked {
                moved.insert(row.try_get(0)?, row.try_get(1)?);
            }

            // 0. devices whose fixes are all newer than what this writer last wrote of them,
            // with nobody else's write since: no reads, the state continues from memory
            let mut writes = Writes::default();
            let mut remember: Vec<(&str, Option<Remembered>)> = Vec::new();
            // per slow device: what the writer remembers of it that still holds, and its version
            let mut slow = Vec::new();
            let mut slow_known = Vec::new();
            let mut gaps: Vec<Gap> = Vec::new();
            for (span, known) in spans.into_iter().zip(known) {
                let moved = moved.get(span.device).copied();
                let known = known.filter(|_| moved.is_none());
                let gap = known.and_then(|known| filling(&span, &known, rows.fresh));
                match (known, gap) {
                    (Some(known), Some((older, current))) => gaps.push(Gap {
                        span,
                        known,
                        older,
                        current,
                    }),
                    (Some(known), None) if span.first > known.newest => {
                        let current = appended(&mut writes, &span, known, rules);
                        remember.push((
                            span.device,
                            Some(Remembered {
                                newest: span.last,
                                current,
                                ..known
                            }),
                        ));
                    }
                    _ => {
                        let version = moved.or(known.map(|known| known.version)).unwrap_or(0);
                        slow.push(span);
                        slow_known.push((known, version));
                    }
                }
            }
            // 0b. the gaps: each device's stored fixes from the one before its new ones to the one
            // after them, no more
            if !gaps.is_empty() {
                let mut around: Vec<Vec<Fix>> = vec![Vec::new(); gaps.len()];
                let mut arrays: (Vec<&str>, [Vec<Timestamp>; 4]) = Default::default();
                for gap in &gaps {
                    let (stored, _) = gap.current;
                    arrays.0.push(gap.span.device);
                    for (list, at) in arrays.1.iter_mut().zip([
                        stored.run.start.ts_micros,
                        gap.span.first,
                        gap.older_last(),
                        stored.run.end.ts_micros,
                    ]) {
                        list.push(Timestamp(at));
                    }
                }
                let [starts, firsts, lasts, ends] = &arrays.1;
                for row in tx
                    .query(&s.around, &[&arrays.0, starts, firsts, lasts, ends])
                    .await?
                {
                    if let Some(list) = around.get_mut(ordinal(&row)?) {
                        list.push(fix_at(&row, 1)?);
                    }
                }
                for (gap, around) in gaps.into_iter().zip(around) {
                    let Gap {
                        span,
                        known,
                        older,
                        current: (stored, tail),
                    } = gap;
                    let (filling, newer) = span.fixes.split_at(older);
                    let filled = inside::fill_and_continue(
                        rules,
                        (stored.run, tail),
                        filling,
                        &around,
                        newer,
                    );
                    match filled {
                        Some((runs, state)) => {
                            let newest = known.newest.max(span.last);
                            writes.replace(span.device, &[stored], &runs, rules, newest);
                            let current =
                                state.map(|(run, tail)| (Stored::new(run, rules, newest), tail));
                            remember.push((
                                span.device,
                                Some(Remembered {
                                    newest,
                                    current,
                                    ..known
                                }),
                            ));
                        }
                        None => {
                            slow.push(span);
                            slow_known.push((Some(known), known.version));
                        }
                    }
                }
            }
            let spans = slow;
            if spans.is_empty() {
                flush(tx, s, &writes).await?;
                self.remember(remember);
                return Ok(writes.changes);
            }
            writes.changes.read_back = spans.len() as u64;
            let devices: Vec<&str> = spans.iter().map(|span| span.device).collect();

            // 1. the neighbours, and from them each device's region
            let firsts: Vec<Timestamp> = spans.iter().map(|span| Timestamp(span.first)).collect();
            let lasts: Vec<Timestamp> = spans.iter().map(|span| Timestamp(span.last)).collect();
            // a device this writer remembers (nobody else wrote it since) has its newest fix
            // there: the query does not look for it
            let newest_known: Vec<Option<Timestamp>> = slow_known
                .iter()
                .map(|(known, _)| known.map(|known| Timestamp(known.newest)))
                .collect();
            let probes: Vec<Timestamp> = spans
                .iter()
                .map(|span| Timestamp(region::right_probe_end(rules, span.last)))
                .collect();
            let mut plans: Vec<Option<Plan>> = (0..spans.len()).map(|_| None).collect();
            for row in tx
                .query(
                    &s.neighbours,
                    &[&devices, &firsts, &lasts, &probes, &newest_known],
                )
                .await?
            {
                let i = ordinal(&row)?;
                let (Some(span), Some(slot)) = (spans.get(i), plans.get_mut(i)) else {
                    continue;
                };
                let left = stored_at(&row, 1)?;
                let right_end: Option<Timestamp> = row.try_get(12)?;
                let newest_after: Option<Timestamp> = row.try_get(13)?;
                let newest_after = newest_known.get(i).copied().flatten().or(newest_after);
                let first = stored_at(&row, 14)?;
                let newest = newest_after.map_or(span.last, |after| after.0.max(span.last));
                let region = region(
                    rules,
                    span.first,
                    span.last,
                    left.map(|stored| stored.run),
                    Right {
                        first: first.map(|stored| stored.run),
                        last_end: right_end.map(|end| end.0),
                    },
                );
                // with no stored run starting in the span's reach, the region holds at most the
                // left run, and with one only after the span, that one too (it is `next`, the
                // only run starting in the reach): what it replaces is known
                let old = (right_end.is_none() || region.next.is_some()).then(|| {
                    left.filter(|stored| stored.run.start.ts_micros >= region.replaces_from())
                        .into_iter()
                        .chain(region.next.and(first))
                        .collect::<Vec<_>>()
                });
                // and without a moving fix, a region out of the reach of every stored run keeps
                // the runs as they are, and leaves no run to continue: a parked device's fixes
                // change nothing, and what follows them starts afresh (so it is remembered). A
                // region that resumes a run reads its few fixes since the run's end instead:
                // they are the state (the tail) a later moving fix continues from.
                let new = (old.is_some()
                    && !span.moving
                    && region.next.is_none()
                    && matches!(region.start, Start::From(from) if from == span.first))
                .then(Vec::new);
                *slot = Some(Plan {
                    region,
                    left,
                    old,
                    new,
                    newest,
                });
            }
            let plans: Vec<Plan> = plans
                .into_iter()
                .zip(&spans)
                .map(|(plan, span)| {
                    plan.unwrap_or_else(|| Plan {
                        region: region(rules, span.first, span.last, None, Right::default()),
                        left: None,
                        old: Some(Vec::new()),
                        new: None,
                        newest: span.last,
                    })
                })
                .collect();

            // 2. the fixes of the regions that need them, and the stored runs not yet known
            let mut fixes: Vec<Vec<Fix>> = vec![Vec::new(); spans.len()];
            // per picked device: its name, the range `span` gives of its region, its index
            type Wanted<'d> = (Vec<&'d str>, Vec<Timestamp>, Vec<Timestamp>, Vec<usize>);
            let wanted = |pick: &dyn Fn(&Plan) -> bool, span: &dyn Fn(&Region) -> (i64, i64)| {
                let mut out: Wanted = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
                for (i, (plan, device)) in plans.iter().zip(&devices).enumerate() {
                    if pick(plan) {
                        let (from, to) = span(&plan.region);
                        out.0.push(device);
                        out.1.push(Timestamp(from));
                        out.2.push(Timestamp(to));
                        out.3.push(i);
                    }
                }
                out
            };
            let (fetch_devices, fetch_from, fetch_to, fetch_index) =
                wanted(&|plan: &Plan| plan.new.is_none(), &|region: &Region| {
                    (region.read_from(), region.read_to())
                });
            if !fetch_devices.is_empty() {
                for row in tx
                    .query(&s.fixes, &[&fetch_devices, &fetch_from, &fetch_to])
                    .await?
                {
                    let Some(list) = fetch_index
                        .get(ordinal(&row)?)
                        .and_then(|&i| fixes.get_mut(i))
                    else {
                        continue;
                    };
                    list.push(fix_at(&row, 1)?);
                }
            }
            let mut old: Vec<Vec<Stored>> = plans
                .iter()
                .map(|plan| plan.old.clone().unwrap_or_default())
                .collect();
            let (stored_devices, stored_from, stored_to, stored_index) =
                wanted(&|plan: &Plan| plan.old.is_none(), &|region: &Region| {
                    (region.replaces_from(), region.end_micros)
                });
            if !stored_devices.is_empty() {
                for row in tx
                    .query(&s.stored, &[&stored_devices, &stored_from, &stored_to])
                    .await?
                {
                    let slot = stored_index
                        .get(ordinal(&row)?)
                        .and_then(|&i| old.get_mut(i));
                    if let (Some(list), Some(stored)) = (slot, stored_at(&row, 1)?) {
                        list.push(stored);
                    }
                }
            }

            // 3. recompute, and write only what changed
            for ((((span, plan), fixes), old), (known, version)) in spans
                .iter()
                .zip(&plans)
                .zip(&fixes)
                .zip(&old)
                .zip(slow_known)
            {
                let (new, state) = match &plan.new {
                    Some(runs) => (runs.clone(), None),
                    None => plan.region.runs_with_state(rules, fixes),
                };
                writes.replace_region(
                    span.device,
                    &plan.region,
                    plan.left,
                    old,
                    &new,
                    rules,
                    plan.newest,
                );
                // remembered when the region reaches the device's newest fix (read, or known to
                // leave no run to continue), or when it stays clear of what the writer remembers
                // of it (older fixes: a late fix, a newest-first backlog)
                let remembered = if plan.region.end_micros >= plan.newest {
                    Some(Remembered {
                        version,
                        newest: plan.newest,
                        current: state
                            .map(|(run, tail)| (Stored::new(run, rules, plan.newest), tail)),
                    })
                } else {
                    known.and_then(|known| kept(known, plan, &new, rules))
                };
                remember.push((span.device, remembered));
            }
            flush(tx, s, &writes).await?;
            self.remember(remember);
            Ok(writes.changes)
        })
    }

    /// Applies what the committed write would have it remember.
    fn committed(&self) {
        let pending =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
        let mut memory = self.memory.lock().unwrap_or_else(PoisonError::into_inner);
        for (device, remembered) in pending {
            memory.put(device, remembered);
            if memory.len() > REMEMBERED {
                memory.pop_lru();
            }
        }
    }
}

/// Runs the epoch's writes (each kind one statement, when there is any).
async fn flush(
    tx: &Transaction<'_>,
    s: &Statements,
    writes: &Writes<'_>,
) -> Result<(), tokio_postgres::Error> {
    if !writes.delete_trips.is_empty() {
        tx.execute(
            &s.delete_trips,
            &[&writes.delete_trips.device, &writes.delete_trips.start],
        )
        .await?;
    }
    if !writes.delete_runs.is_empty() {
        tx.execute(
            &s.delete_runs,
            &[&writes.delete_runs.device, &writes.delete_runs.start],
        )
        .await?;
    }
    if !writes.upsert_runs.is_empty() {
        tx.execute(&s.upsert_runs, &writes.upsert_runs.run_params())
            .await?;
    }
    if !writes.upsert_trips.is_empty() {
        let mut params = writes.upsert_trips.run_params().to_vec();
        params.push(&writes.upsert_trips.open);
        tx.execute(&s.upsert_trips, &params).await?;
    }
    if !writes.close.is_empty() {
        tx.execute(&s.close, &[&writes.close.device, &writes.close.start])
            .await?;
    }
    Ok(())
}

/// The writes of `span`, whose fixes all come after what `known` remembers of its device (the
/// same state the database holds: the version said so), from memory alone; returns what to
/// remember of the device now.
fn appended<'a>(
    writes: &mut Writes<'a>,
    span: &Span<'a>,
    known: Remembered,
    rules: &TripRules,
) -> Option<(Stored, Tail)> {
    let left = known.current.map(|(stored, _)| stored);
    let region = region(
        rules,
        span.first,
        span.last,
        left.map(|l| l.run),
        Right::default(),
    );
    let (old, mut fold) = match (region.start, known.current) {
        (Start::Resume(_), Some((stored, tail))) => (
            vec![stored],
            RunFold::resuming_state(*rules, (stored.run, tail)),
        ),
        _ => (Vec::new(), RunFold::new(*rules)),
    };
    for fix in &span.fixes {
        fold.push(fix);
    }
    let (runs, state) = fold.finish_with_state();
    writes.replace_region(span.device, &region, left, &old, &runs, rules, span.last);
    state.map(|(run, tail)| (Stored::new(run, rules, span.last), tail))
}

/// A device whose older fixes fill gaps of the current run the writer remembers.
struct Gap<'a> {
    span: Span<'a>,
    known: Remembered,
    /// How many of the span's fixes are older than the device's newest (the first ones).
    older: usize,
    /// The current run, with the fold's state after the newest fix.
    current: (Stored, Tail),
}

impl Gap<'_> {
    /// The newest of the older fixes.
    fn older_last(&self) -> i64 {
        self.span
            .fixes
            .get(self.older.saturating_sub(1))
            .map_or(self.span.first, |fix| fix.ts_micros)
    }
}

/// How many of `span`'s fixes are older than the device's newest fix, and the current run, when
/// the writer remembers the device (`known`, valid) with a current run, those fixes all fall
/// strictly inside that run (gaps of it: a newest-first backlog filling in behind the part that
/// came first, a fix a minute late) and `positions` had none of the span's fixes before
/// (`fresh`), so the span's fixes are the ones it holds now. `None` otherwise, or when none is
/// older.
fn filling(span: &Span<'_>, known: &Remembered, fresh: bool) -> Option<(usize, (Stored, Tail))> {
    let current = known.current.filter(|_| fresh)?;
    let older = inside::older_inside(&current.0.run, &span.fixes, known.newest)?;
    Some((older, current))
}

/// What the writer still knows of a device it remembered (`known`, valid: nobody else wrote it
/// since, so its version is the one the row holds) after a region of older fixes that ends
/// before the device's newest fix, with `new` its runs: the newest fix is the same, and so is
/// the latest run with its tail, unless the region reached it. The region may chain into that
/// run (a newest-first backlog arriving in front of it): the run then starts earlier and ends
/// where it did, and its tail (the fixes after its end) is the same. `None` when the region
/// reached the latest run otherwise, or made a run that could still be continued (its tail was
/// not read).
fn kept(
    known: Remembered,
    plan: &Plan,
    new: &[dataflow::trips::Run],
    rules: &TripRules,
) -> Option<Remembered> {
    if plan.newest != known.newest {
        return None;
    }
    let reach = known.newest.saturating_sub(rules.stop_micros);
    let current = match known.current {
        Some((stored, tail)) if plan.region.next == Some(stored.run) => {
            let chained = *new.last()?;
            if chained.end != stored.run.end {
                return None;
            }
            Some((Stored::new(chained, rules, known.newest), tail))
        }
        Some(current) if plan.region.end_micros < current.0.run.start.ts_micros => Some(current),
        Some(_) => return None,
        None if new.iter().any(|run| run.end.ts_micros >= reach) => return None,
        None => None,
    };
    Some(Remembered { current, ..known })
}

/// Each device's fixes among the rows `positions` took this epoch, with their first and last
/// time, in device order (the rows come in key order, one per key: each device's are a run of
/// them, by time).
fn spans<'a>(rows: &'a EpochRows<'a>, rules: &TripRules) -> Vec<Span<'a>> {
    let mut spans: Vec<Span<'a>> = Vec::new();
    for row in rows.positions {
        let fix = Fix {
            ts_micros: row.ts_micros,
            latitude: row.latitude,
            longitude: row.longitude,
            speed: row.speed,
        };
        match spans.last_mut() {
            Some(span) if span.device == row.device_id => {
                span.last = fix.ts_micros;
                span.moving |= rules.is_moving(fix.speed);
                span.fixes.push(fix);
            }
            _ => {
                debug_assert!(spans
                    .last()
                    .is_none_or(|span| span.device < row.device_id.as_str()));
                spans.push(Span {
                    device: &row.device_id,
                    first: fix.ts_micros,
                    last: fix.ts_micros,
                    moving: rules.is_moving(fix.speed),
                    fixes: vec![fix],
                })
            }
        }
    }
    spans
}
