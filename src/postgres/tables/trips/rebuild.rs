//! Recomputing a device's runs and trips from its positions: `processor trips rebuild`, after a
//! rule's setting changed or to cover history written before trips were on.
//!
//! One transaction per device, holding the device's trip lock, so it is atomic per device and
//! safe beside a running service (whose epoch for the device waits, then reads what the rebuild
//! committed). The device's fixes are streamed through the fold, never held whole.

use std::pin::pin;

use dataflow::trips::{Fix, RunFold, TripRules};
use futures_util::TryStreamExt;
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

use super::super::super::timestamp::Timestamp;
use super::super::super::PostgresError;
use super::rows::{RunArrays, LOCK};
use super::statements::upsert;

/// Rows per insert statement.
const CHUNK: usize = 5_000;

/// What rebuilding one device did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rebuilt {
    /// Fixes read.
    pub fixes: u64,
    /// Runs written (short ones included).
    pub runs: u64,
    /// Trips written.
    pub trips: u64,
}

fn failed(error: &tokio_postgres::Error) -> PostgresError {
    PostgresError::query("trips rebuild", error)
}

/// Up to `limit` devices that have positions, in order, after `after` (from the first when
/// `None`): a skip scan of the primary key, one index probe per device.
pub async fn devices_with_positions(
    client: &Client,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<String>, PostgresError> {
    let rows = client
        .query(
            "WITH RECURSIVE d(id, n) AS (
                 SELECT (SELECT min(device_id) FROM positions
                          WHERE $1::text IS NULL OR device_id > $1), 1::bigint
                 UNION ALL
                 SELECT (SELECT min(device_id) FROM positions WHERE device_id > d.id), d.n + 1
                 FROM d WHERE d.id IS NOT NULL AND d.n < $2::bigint
             )
             SELECT id FROM d WHERE id IS NOT NULL",
            &[&after, &limit],
        )
        .await
        .map_err(|e| failed(&e))?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// Recomputes `device`'s runs and trips by `rules` from its positions, all of them or (with
/// `since`, microseconds) those from the run that holds `since` on.
pub async fn rebuild_device(
    client: &mut Client,
    device: &str,
    since: Option<i64>,
    rules: &TripRules,
) -> Result<Rebuilt, PostgresError> {
    let tx = client.transaction().await.map_err(|e| failed(&e))?;
    // (bumping the device's version: a running writer's memory of it is stale now)
    let devices = vec![device];
    tx.query(LOCK, &[&devices]).await.map_err(|e| failed(&e))?;
    // from the start of the stored run that `since` falls in (or chains onto), so no run is cut
    let from: Option<Timestamp> = match since {
        None => None,
        Some(since) => {
            let left = tx
                .query_opt(
                    "(SELECT start_ts, end_ts FROM trips
                       WHERE device_id = $1 AND start_ts < $2 ORDER BY start_ts DESC LIMIT 1)
                     UNION ALL
                     (SELECT start_ts, end_ts FROM trip_runs
                       WHERE device_id = $1 AND start_ts < $2 ORDER BY start_ts DESC LIMIT 1)
                     ORDER BY start_ts DESC LIMIT 1",
                    &[&device, &Timestamp(since)],
                )
                .await
                .map_err(|e| failed(&e))?;
            let start = left.and_then(|row| {
                let (start, end): (Timestamp, Timestamp) = (row.get(0), row.get(1));
                (end.0 >= since - rules.stop_micros).then_some(start.0)
            });
            Some(Timestamp(start.unwrap_or(since)))
        }
    };
    for table in ["trip_runs", "trips"] {
        tx.execute(
            &format!(
                "DELETE FROM {table} WHERE device_id = $1
                 AND ($2::timestamptz IS NULL OR start_ts >= $2)"
            ),
            &[&device, &from],
        )
        .await
        .map_err(|e| failed(&e))?;
    }
    let params: [&(dyn ToSql + Sync); 2] = [&device, &from];
    let stream = tx
        .query_raw(
            "SELECT ts, latitude, longitude, speed FROM positions
             WHERE device_id = $1 AND ($2::timestamptz IS NULL OR ts >= $2) ORDER BY ts",
            params,
        )
        .await
        .map_err(|e| failed(&e))?;
    let mut stream = pin!(stream);
    let mut fold = RunFold::new(*rules);
    let mut rebuilt = Rebuilt::default();
    let mut newest = i64::MIN;
    while let Some(row) = stream.try_next().await.map_err(|e| failed(&e))? {
        let ts: Timestamp = row.get(0);
        newest = ts.0;
        fold.push(&Fix {
            ts_micros: ts.0,
            latitude: row.get(1),
            longitude: row.get(2),
            speed: row.get(3),
        });
        rebuilt.fixes += 1;
    }
    let runs = fold.finish();
    for part in runs.chunks(CHUNK) {
        let mut run_rows = RunArrays::default();
        let mut trip_rows = RunArrays::default();
        for run in part {
            match run.trip(rules, newest) {
                Some(trip) => trip_rows.push(device, run, trip.open),
                None => run_rows.push(device, run, false),
            }
        }
        tx.execute(&upsert("trip_runs", false), &run_rows.run_params())
            .await
            .map_err(|e| failed(&e))?;
        let mut params = trip_rows.run_params().to_vec();
        params.push(&trip_rows.open);
        rebuilt.trips += tx
            .execute(&upsert("trips", true), &params)
            .await
            .map_err(|e| failed(&e))?;
        rebuilt.runs += part.len() as u64;
    }
    // an open trip before the rebuilt span that its fixes have closed
    if let Some(from) = from.filter(|_| rebuilt.fixes > 0) {
        tx.execute(
            "UPDATE trips SET open = false
             WHERE device_id = $1 AND open AND start_ts < $2 AND end_ts <= $3",
            &[
                &device,
                &from,
                &Timestamp(newest.saturating_sub(rules.stop_micros)),
            ],
        )
        .await
        .map_err(|e| failed(&e))?;
    }
    tx.commit().await.map_err(|e| failed(&e))?;
    Ok(rebuilt)
}
