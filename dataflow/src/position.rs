//! The decoded record: one GPS position, in the shape the `positions` table stores it.
//!
//! A `Position` crosses worker (and process) boundaries in the exchange by `device_id`, so it is
//! plain owned data with serde derives (timely serialises exchanged records with bincode).

use serde::{Deserialize, Serialize};

use crate::StreamId;

/// One position, validated against the wire contract and ready to be written.
///
/// Every value here is one PostgreSQL accepts for its column: the codec rejects what the database
/// would refuse (out-of-range reals, NUL characters, timestamps before 4713 BC), so a write never
/// fails on a record's content.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Position {
    /// The stream entry it was decoded from (`0-0` when decoded from a bare payload): if the
    /// database refuses the row, the entry is dead-lettered under this id.
    pub source: StreamId,
    /// How many times the entry was sent back from the dead-letter stream (its `redrive_count`
    /// field, 0 when it has none): kept so that a row the database refuses again is
    /// dead-lettered again with its count.
    pub redrives: u32,
    /// Tracker identity (IMEI for Teltonika): non-empty, at most 64 characters.
    pub device_id: String,
    /// The fix time in microseconds since 1970-01-01T00:00:00Z (the wire carries milliseconds;
    /// an ISO-8601 string may carry more digits, which PostgreSQL keeps to the microsecond).
    pub ts_micros: i64,
    /// Degrees WGS84, -90..=90.
    pub latitude: f64,
    /// Degrees WGS84, -180..=180.
    pub longitude: f64,
    /// Metres above sea level.
    pub altitude: Option<f32>,
    /// Heading in degrees, 0..=360.
    pub angle: Option<f32>,
    /// Speed in km/h, >= 0.
    pub speed: Option<f32>,
    /// Satellites in view, 0..=255.
    pub satellites: Option<i16>,
    /// 0 low, 1 high, 2 panic.
    pub priority: Option<i16>,
    /// Teltonika event IO id.
    pub event_id: Option<i32>,
    /// The IO attributes as JSON object text with every sentinel resolved: a `__bigint` is an exact
    /// JSON number written with its own digits, a buffer is its standard base64 string. Kept as
    /// text so that no big integer ever passes through an `f64`; PostgreSQL parses it as `jsonb`.
    pub attributes: String,
}

impl Position {
    /// The key the dataflow partitions by: each device's records go to one worker.
    pub fn device_hash(&self) -> u64 {
        device_hash(&self.device_id)
    }

    /// The table's key, `(device_id, ts)`: one row per key, the first one wins.
    pub fn key(&self) -> (&str, i64) {
        (&self.device_id, self.ts_micros)
    }
}

/// A stable hash of a device id (FNV-1a, 64 bit).
///
/// Stable across processes and builds, unlike `std`'s randomly seeded hasher: in a timely cluster
/// every process must route a device to the same worker, and an operator reading logs can compute
/// which worker owns a device.
pub fn device_hash(device_id: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    device_id.as_bytes().iter().fold(OFFSET, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(PRIME)
    })
}

/// A position of `device` at `ts` (microseconds) with latitude `ts / 1000` and nothing else, for
/// the crate's unit tests.
#[cfg(test)]
pub(crate) fn test_position(device: &str, ts: i64) -> Position {
    Position {
        source: StreamId::default(),
        redrives: 0,
        device_id: device.to_owned(),
        ts_micros: ts,
        latitude: ts as f64 / 1000.0,
        longitude: 2.0,
        altitude: None,
        angle: None,
        speed: None,
        satellites: None,
        priority: None,
        event_id: None,
        attributes: "{}".to_owned(),
    }
}
