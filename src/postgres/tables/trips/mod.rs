//! `trips` and `trip_runs` (`TRIPS=on`): the trips the rules give for what `positions` holds,
//! changed in the epoch's transaction, after its positions.
//!
//! For each device with rows in the epoch, the writer
//! 1. takes the device's trip lock (`pg_advisory_xact_lock`, in one order for every
//!    transaction): replicas of one consumer group do not partition by device, so two of them can
//!    commit the same device at once; the lock makes the second wait and then read what the first
//!    committed (each statement of a READ COMMITTED transaction sees what committed before it);
//! 2. reads the runs around the epoch's span from `trip_runs` (two index probes) and plans the
//!    region the new fixes can change ([`dataflow::trips::region`]);
//! 3. reads the region's fixes from `positions` as committed plus this transaction's own rows
//!    (the first row of each key, never a refused one) and the device's newest fix after it;
//! 4. replaces the region's runs and trips with the recomputed ones, and closes an earlier open
//!    trip that the newest fix has closed.
//!
//! Every step is one statement for all the epoch's devices (arrays, `unnest`), so an epoch costs
//! a fixed number of round trips whatever its devices. Nothing is kept in memory between epochs:
//! a restart, a replica or a rebuilt table starts from what the database holds.

use std::collections::HashMap;

mod rebuild;
mod rows;

use dataflow::trips::{region, Fix, Region, Trip, TripRules};
use tokio_postgres::{Client, Row, Statement, Transaction};

use super::super::privileges::Grant;
use super::super::timestamp::Timestamp;
use super::{BoxFuture, Changes, DerivedTable, DerivedWriter, EpochRows};
use rows::{run_at, RunArrays, LOCK, RUN_ARRAYS, RUN_COLUMNS};

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
                table: "trip_runs",
                privileges: &["SELECT", "INSERT", "DELETE"],
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
            }) as Box<dyn DerivedWriter>)
        })
    }
}

/// The statements, prepared on one connection.
struct Statements {
    lock: Statement,
    neighbours: Statement,
    fixes: Statement,
    newest_after: Statement,
    delete_runs: Statement,
    insert_runs: Statement,
    delete_trips: Statement,
    insert_trips: Statement,
    close: Statement,
}

impl Statements {
    async fn prepare(client: &Client) -> Result<Self, tokio_postgres::Error> {
        Ok(Statements {
            lock: client.prepare(LOCK).await?,
            // the latest run starting before the span, and the latest end of the runs starting
            // from the span's first fix to the right-hand probe
            neighbours: client
                .prepare(&format!(
                    "SELECT n.i, l.{}, \
                            (SELECT max(r.end_ts) FROM trip_runs r \
                              WHERE r.device_id = n.d AND r.start_ts >= n.a \
                                AND r.start_ts <= n.p) \
                     FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[]) \
                          WITH ORDINALITY AS n(d, a, p, i) \
                     LEFT JOIN LATERAL (SELECT * FROM trip_runs r \
                                         WHERE r.device_id = n.d AND r.start_ts < n.a \
                                         ORDER BY r.start_ts DESC LIMIT 1) AS l ON true",
                    RUN_COLUMNS.replace(", ", ", l.")
                ))
                .await?,
            fixes: client
                .prepare(
                    "SELECT n.i, p.ts, p.latitude, p.longitude, p.speed \
                     FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[]) \
                          WITH ORDINALITY AS n(d, f, e, i) \
                     JOIN positions p ON p.device_id = n.d AND p.ts >= n.f AND p.ts <= n.e \
                     ORDER BY n.i, p.ts",
                )
                .await?,
            newest_after: client
                .prepare(
                    "SELECT n.i, (SELECT max(p.ts) FROM positions p \
                                  WHERE p.device_id = n.d AND p.ts > n.e) \
                     FROM unnest($1::text[], $2::timestamptz[]) WITH ORDINALITY AS n(d, e, i)",
                )
                .await?,
            delete_runs: client
                .prepare(
                    "DELETE FROM trip_runs t \
                     USING unnest($1::text[], $2::timestamptz[], $3::timestamptz[]) AS n(d, f, e) \
                     WHERE t.device_id = n.d AND t.start_ts >= n.f AND t.start_ts <= n.e",
                )
                .await?,
            insert_runs: client
                .prepare(&format!(
                    "INSERT INTO trip_runs (device_id, {RUN_COLUMNS}) \
                     SELECT * FROM unnest({RUN_ARRAYS})"
                ))
                .await?,
            delete_trips: client
                .prepare(&format!(
                    "DELETE FROM trips t \
                     USING unnest($1::text[], $2::timestamptz[], $3::timestamptz[]) AS n(d, f, e) \
                     WHERE t.device_id = n.d AND t.start_ts >= n.f AND t.start_ts <= n.e \
                     RETURNING t.device_id, t.{}, t.open",
                    RUN_COLUMNS.replace(", ", ", t.")
                ))
                .await?,
            insert_trips: client
                .prepare(&format!(
                    "INSERT INTO trips (device_id, {RUN_COLUMNS}, open) \
                     SELECT * FROM unnest({RUN_ARRAYS}, $11::bool[])"
                ))
                .await?,
            // an open trip before the region that the device's newest fix has closed
            close: client
                .prepare(
                    "UPDATE trips t SET open = false \
                     FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[]) AS n(d, f, c) \
                     WHERE t.device_id = n.d AND t.open AND t.start_ts < n.f AND t.end_ts <= n.c",
                )
                .await?,
        })
    }
}

/// Its writer on one connection.
struct Writer {
    rules: TripRules,
    statements: Statements,
}

/// The span of one device's rows in the epoch.
struct Span<'a> {
    device: &'a str,
    first: i64,
    last: i64,
}

/// The 1-based ordinal `WITH ORDINALITY` gave, as an index into the spans.
fn ordinal(row: &Row) -> Result<usize, tokio_postgres::Error> {
    let i: i64 = row.try_get(0)?;
    Ok(usize::try_from(i - 1).unwrap_or(usize::MAX))
}

impl DerivedWriter for Writer {
    fn write<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        rows: &'a EpochRows<'a>,
        _chunk: usize,
    ) -> BoxFuture<'a, Result<Changes, tokio_postgres::Error>> {
        Box::pin(async move {
            let spans = spans(rows);
            if spans.is_empty() {
                return Ok(Changes::default());
            }
            let s = &self.statements;
            let rules = &self.rules;
            let devices: Vec<&str> = spans.iter().map(|span| span.device).collect();
            tx.query(&s.lock, &[&devices]).await?;

            let firsts: Vec<Timestamp> = spans.iter().map(|span| Timestamp(span.first)).collect();
            let probes: Vec<Timestamp> = spans
                .iter()
                .map(|span| Timestamp(region::right_probe_end(rules, span.last)))
                .collect();
            let mut regions: Vec<Option<Region>> = vec![None; spans.len()];
            for row in tx
                .query(&s.neighbours, &[&devices, &firsts, &probes])
                .await?
            {
                let i = ordinal(&row)?;
                let left = run_at(&row, 1)?;
                let right_end: Option<Timestamp> = row.try_get(10)?;
                if let (Some(span), Some(slot)) = (spans.get(i), regions.get_mut(i)) {
                    *slot = Some(region(
                        rules,
                        span.first,
                        span.last,
                        left,
                        right_end.map(|end| end.0),
                    ));
                }
            }
            let regions: Vec<Region> = regions
                .into_iter()
                .zip(&spans)
                .map(|(region, span)| {
                    region.unwrap_or_else(|| {
                        dataflow::trips::region(rules, span.first, span.last, None, None)
                    })
                })
                .collect();

            // the region's fixes, and the device's newest fix beyond it
            let read_from: Vec<Timestamp> =
                regions.iter().map(|r| Timestamp(r.read_from())).collect();
            let ends: Vec<Timestamp> = regions.iter().map(|r| Timestamp(r.end_micros)).collect();
            let mut fixes: Vec<Vec<Fix>> = vec![Vec::new(); spans.len()];
            for row in tx.query(&s.fixes, &[&devices, &read_from, &ends]).await? {
                let i = ordinal(&row)?;
                let ts: Timestamp = row.try_get(1)?;
                if let Some(list) = fixes.get_mut(i) {
                    list.push(Fix {
                        ts_micros: ts.0,
                        latitude: row.try_get(2)?,
                        longitude: row.try_get(3)?,
                        speed: row.try_get(4)?,
                    });
                }
            }
            let mut newest: Vec<i64> = spans.iter().map(|span| span.last).collect();
            for (list, newest) in fixes.iter().zip(newest.iter_mut()) {
                if let Some(fix) = list.last() {
                    *newest = (*newest).max(fix.ts_micros);
                }
            }
            for row in tx.query(&s.newest_after, &[&devices, &ends]).await? {
                let i = ordinal(&row)?;
                if let (Some(after), Some(newest)) =
                    (row.try_get::<_, Option<Timestamp>>(1)?, newest.get_mut(i))
                {
                    *newest = (*newest).max(after.0);
                }
            }

            // recompute, then replace what the regions held
            let mut runs = RunArrays::default();
            let mut trips = RunArrays::default();
            let mut computed: HashMap<(&str, i64), Trip> = HashMap::new();
            for (((span, region), fixes), newest) in
                spans.iter().zip(&regions).zip(&fixes).zip(&newest)
            {
                for run in region.runs(rules, fixes) {
                    runs.push(span.device, &run, false);
                    if let Some(trip) = run.trip(rules, *newest) {
                        trips.push(span.device, &run, trip.open);
                        computed.insert((span.device, run.start.ts_micros), trip);
                    }
                }
            }
            let replaced_from: Vec<Timestamp> = regions
                .iter()
                .map(|r| Timestamp(r.replaces_from()))
                .collect();
            tx.execute(&s.delete_runs, &[&devices, &replaced_from, &ends])
                .await?;
            tx.execute(&s.insert_runs, &runs.run_params()).await?;
            let mut changes = Changes::default();
            let old = tx
                .query(&s.delete_trips, &[&devices, &replaced_from, &ends])
                .await?;
            let mut kept = 0u64;
            for row in &old {
                let device: &str = row.try_get(0)?;
                let Some(run) = run_at(row, 1)? else {
                    continue;
                };
                let open: bool = row.try_get(10)?;
                match computed.get(&(device, run.start.ts_micros)) {
                    Some(trip) if trip.run == run && trip.open == open => kept += 1,
                    Some(trip) => {
                        changes.updated += 1;
                        // a closed trip changed: by a late fix (not by extending the open one)
                        if !open && trip.run != run {
                            changes.late += 1;
                        }
                    }
                    None => {
                        changes.deleted += 1;
                        if !open {
                            changes.late += 1;
                        }
                    }
                }
            }
            let matched = kept + changes.updated;
            changes.inserted = (computed.len() as u64).saturating_sub(matched);
            let mut params = trips.run_params().to_vec();
            params.push(&trips.open);
            tx.execute(&s.insert_trips, &params).await?;
            let cutoffs: Vec<Timestamp> = newest
                .iter()
                .map(|newest| Timestamp(newest.saturating_sub(rules.stop_micros)))
                .collect();
            changes.updated += tx
                .execute(&s.close, &[&devices, &replaced_from, &cutoffs])
                .await?;
            Ok(changes)
        })
    }
}

/// Each device's first and last fix time among the rows `positions` took this epoch, in device
/// order.
fn spans<'a>(rows: &'a EpochRows<'a>) -> Vec<Span<'a>> {
    let mut by_device: HashMap<&'a str, (i64, i64)> = HashMap::new();
    let mut add = |device: &'a str, ts: i64| {
        by_device
            .entry(device)
            .and_modify(|(first, last)| {
                *first = (*first).min(ts);
                *last = (*last).max(ts);
            })
            .or_insert((ts, ts));
    };
    match rows.written {
        Some(written) => {
            for row in written {
                add(&row.device_id, row.ts_micros);
            }
        }
        None => {
            for row in rows.batch.positions() {
                add(&row.device_id, row.ts_micros);
            }
        }
    }
    let mut spans: Vec<Span<'a>> = by_device
        .into_iter()
        .map(|(device, (first, last))| Span {
            device,
            first,
            last,
        })
        .collect();
    spans.sort_unstable_by(|x, y| x.device.cmp(y.device));
    spans
}
