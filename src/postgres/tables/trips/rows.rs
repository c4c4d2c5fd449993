//! What the trips' statements share: a run's columns and arrays, reading a run back, the
//! per-device lock.

use dataflow::trips::{Point, Run};
use tokio_postgres::Row;

use super::super::super::timestamp::Timestamp;

/// Takes the trip lock of every device in `$1::text[]`: creates its `trip_devices` row, or
/// locks it by bumping its `version`, in device order in every transaction (so two never wait on
/// each other in a circle), held to the end of the transaction. Returns each device's version
/// now. A row lock, not an advisory lock: it lives in the row, so an epoch of any number of
/// devices fits (advisory locks fill the server's shared lock table, sized by
/// `max_locks_per_transaction`).
pub(super) const LOCK: &str = "INSERT INTO trip_devices (device_id) \
SELECT d FROM unnest($1::text[]) AS d ORDER BY d \
ON CONFLICT (device_id) DO UPDATE SET version = trip_devices.version + 1 \
RETURNING device_id, version";

/// A run's columns, in the order every statement here lists them.
pub(super) const RUN_COLUMNS: &str =
    "start_ts, end_ts, start_latitude, start_longitude, end_latitude, \
end_longitude, distance_m, max_speed, fixes";

/// A run's values as the insert statements' array parameters, device first.
pub(super) const RUN_ARRAYS: &str =
    "$1::text[], $2::timestamptz[], $3::timestamptz[], $4::float8[], \
$5::float8[], $6::float8[], $7::float8[], $8::float8[], $9::float4[], $10::int4[]";

/// Runs (and their trips' open flags) as arrays, for the insert statements.
#[derive(Default)]
pub(super) struct RunArrays<'a> {
    device: Vec<&'a str>,
    start: Vec<Timestamp>,
    end: Vec<Timestamp>,
    start_latitude: Vec<f64>,
    start_longitude: Vec<f64>,
    end_latitude: Vec<f64>,
    end_longitude: Vec<f64>,
    distance: Vec<f64>,
    max_speed: Vec<f32>,
    fixes: Vec<i32>,
    pub(super) open: Vec<bool>,
}

impl<'a> RunArrays<'a> {
    /// No runs.
    pub(super) fn is_empty(&self) -> bool {
        self.device.is_empty()
    }

    pub(super) fn push(&mut self, device: &'a str, run: &Run, open: bool) {
        self.device.push(device);
        self.start.push(Timestamp(run.start.ts_micros));
        self.end.push(Timestamp(run.end.ts_micros));
        self.start_latitude.push(run.start.latitude);
        self.start_longitude.push(run.start.longitude);
        self.end_latitude.push(run.end.latitude);
        self.end_longitude.push(run.end.longitude);
        self.distance.push(run.distance_m);
        self.max_speed.push(run.max_speed);
        self.fixes
            .push(i32::try_from(run.fixes).unwrap_or(i32::MAX));
        self.open.push(open);
    }

    pub(super) fn run_params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 10] {
        [
            &self.device,
            &self.start,
            &self.end,
            &self.start_latitude,
            &self.start_longitude,
            &self.end_latitude,
            &self.end_longitude,
            &self.distance,
            &self.max_speed,
            &self.fixes,
        ]
    }
}

/// A stored run read back from `columns` (the statement's `RUN_COLUMNS`, from index `at`);
/// `None` when they are NULL (no such run).
pub(super) fn run_at(row: &Row, at: usize) -> Result<Option<Run>, tokio_postgres::Error> {
    let Some(start) = row.try_get::<_, Option<Timestamp>>(at)? else {
        return Ok(None);
    };
    let end: Timestamp = row.try_get(at + 1)?;
    Ok(Some(Run {
        start: Point {
            ts_micros: start.0,
            latitude: row.try_get(at + 2)?,
            longitude: row.try_get(at + 3)?,
        },
        end: Point {
            ts_micros: end.0,
            latitude: row.try_get(at + 4)?,
            longitude: row.try_get(at + 5)?,
        },
        distance_m: row.try_get(at + 6)?,
        max_speed: row.try_get(at + 7)?,
        fixes: u32::try_from(row.try_get::<_, i32>(at + 8)?).unwrap_or(0),
    }))
}
