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
/// `max_locks_per_transaction`). Always bumping makes every writer's memory of the devices stale
/// (`rebuild` takes it so).
pub(super) const LOCK: &str = "INSERT INTO trip_devices (device_id) \
SELECT d FROM unnest($1::text[]) AS d ORDER BY d \
ON CONFLICT (device_id) DO UPDATE SET version = trip_devices.version + 1 \
RETURNING device_id, version";

/// [`LOCK`] for a writer that remembers devices: `$2::int8[]` is the version it remembers of
/// each (0 for none), `$3::int8` the writer's identity. A device whose row still holds that
/// version and this writer is only locked (no new row version: a fraction of an update's cost);
/// any other is created or bumped, with this writer set. Returns the devices it created or
/// bumped, with their version now; the others hold what the writer remembers.
///
/// Why an unchanged row proves nobody else wrote the device's trips since this writer did: every
/// write of them holds this lock. Another writer's lock finds a writer other than itself, so it
/// bumps the version (and sets itself), as `rebuild`'s [`LOCK`] and older writers do always;
/// a version only grows, so the row never holds this version and this writer again. And a writer
/// applies to what it remembers only writes that committed.
pub(super) const LOCK_REMEMBERED: &str = "INSERT INTO trip_devices (device_id, version, writer) \
SELECT d, v, $3::int8 FROM unnest($1::text[], $2::int8[]) AS k(d, v) ORDER BY d \
ON CONFLICT (device_id) DO UPDATE \
SET version = trip_devices.version + 1, writer = excluded.writer \
WHERE trip_devices.version <> excluded.version \
OR trip_devices.writer IS DISTINCT FROM excluded.writer \
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
