//! What the output tables share: a fix's columns (the scalar columns of [`LastFix`], with the
//! device and the time), and statements that bind rows as column arrays.
//!
//! `positions` stores a fix and its attributes, `device_latest` a fix: each table lists its own
//! columns (in its writer's file) from [`FIX_COLUMNS`], and every statement and row encoding of
//! a table is built from that list, so they cannot disagree on an order.

use tokio_postgres::types::{ToSql, Type};

use super::timestamp::Timestamp;
use dataflow::LastFix;

/// A column: its name and wire type.
pub(super) type Column = (&'static str, Type);

/// A fix's columns, in the order every fix table has them first.
pub(super) const FIX_COLUMNS: [Column; 10] = [
    ("device_id", Type::TEXT),
    ("ts", Type::TIMESTAMPTZ),
    ("latitude", Type::FLOAT8),
    ("longitude", Type::FLOAT8),
    ("altitude", Type::FLOAT4),
    ("angle", Type::FLOAT4),
    ("speed", Type::FLOAT4),
    ("satellites", Type::INT2),
    ("priority", Type::INT2),
    ("event_id", Type::INT4),
];

/// `device_id, ts, ...`: the names of `columns`, in order.
pub(super) fn column_list(columns: &[Column]) -> String {
    columns
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `INSERT INTO <table> (<columns>) SELECT ... FROM unnest($1::text[], ...) AS u(<columns>)`;
/// jsonb travels as text (`::jsonb` on the way in), since arrays of the binary jsonb form cannot
/// be bound. The caller appends its `ON CONFLICT` clause.
pub(super) fn insert_from_arrays(table: &str, columns: &[Column]) -> String {
    let arrays: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, (_, ty))| {
            let element = if *ty == Type::JSONB {
                "text"
            } else {
                ty.name()
            };
            format!("${}::{element}[]", i + 1)
        })
        .collect();
    let selected: Vec<String> = columns
        .iter()
        .map(|(name, ty)| {
            if *ty == Type::JSONB {
                format!("u.{name}::jsonb")
            } else {
                format!("u.{name}")
            }
        })
        .collect();
    format!(
        "INSERT INTO {table} ({list}) SELECT {} FROM unnest({}) AS u({list})",
        selected.join(", "),
        arrays.join(", "),
        list = column_list(columns),
    )
}

/// Fixes as column arrays, in [`FIX_COLUMNS`] order, all built by one `push` so that they have
/// one length (`unnest` would silently pad shorter arrays with NULL).
pub(super) struct FixArrays<'a> {
    device_id: Vec<&'a str>,
    ts: Vec<Timestamp>,
    latitude: Vec<f64>,
    longitude: Vec<f64>,
    altitude: Vec<Option<f32>>,
    angle: Vec<Option<f32>>,
    speed: Vec<Option<f32>>,
    satellites: Vec<Option<i16>>,
    priority: Vec<Option<i16>>,
    event_id: Vec<Option<i32>>,
}

impl<'a> FixArrays<'a> {
    /// Room for `n` fixes.
    pub(super) fn with_capacity(n: usize) -> Self {
        FixArrays {
            device_id: Vec::with_capacity(n),
            ts: Vec::with_capacity(n),
            latitude: Vec::with_capacity(n),
            longitude: Vec::with_capacity(n),
            altitude: Vec::with_capacity(n),
            angle: Vec::with_capacity(n),
            speed: Vec::with_capacity(n),
            satellites: Vec::with_capacity(n),
            priority: Vec::with_capacity(n),
            event_id: Vec::with_capacity(n),
        }
    }

    /// Appends one fix.
    pub(super) fn push(&mut self, device_id: &'a str, ts_micros: i64, fix: &LastFix) {
        self.device_id.push(device_id);
        self.ts.push(Timestamp(ts_micros));
        self.latitude.push(fix.latitude);
        self.longitude.push(fix.longitude);
        self.altitude.push(fix.altitude);
        self.angle.push(fix.angle);
        self.speed.push(fix.speed);
        self.satellites.push(fix.satellites);
        self.priority.push(fix.priority);
        self.event_id.push(fix.event_id);
    }

    /// The statement parameters of the fix columns, in [`FIX_COLUMNS`] order.
    pub(super) fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![
            &self.device_id,
            &self.ts,
            &self.latitude,
            &self.longitude,
            &self.altitude,
            &self.angle,
            &self.speed,
            &self.satellites,
            &self.priority,
            &self.event_id,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_insert_names_its_columns_and_their_array_types() {
        let insert = insert_from_arrays("t", &FIX_COLUMNS);
        let list = "device_id, ts, latitude, longitude, altitude, angle, speed, satellites, priority, event_id";
        assert_eq!(insert.matches(list).count(), 2, "{insert}");
        assert!(
            insert.contains("$1::text[]") && insert.contains("$10::int4[]"),
            "{insert}"
        );
        assert!(insert.contains("$2::timestamptz[]"), "{insert}");
        assert!(!insert.contains("$11"), "{insert}");
        let with_json = insert_from_arrays("t", &[("a", Type::TEXT), ("j", Type::JSONB)]);
        assert!(
            with_json.contains("$2::text[]") && with_json.contains("u.j::jsonb"),
            "{with_json}"
        );
    }
}
