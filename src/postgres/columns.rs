//! The columns the service writes, in one list: every statement (COPY, INSERT, the
//! `device_latest` upsert) and every row encoding is built from it, so they cannot disagree on
//! an order.

use tokio_postgres::types::{ToSql, Type};

use super::timestamp::Timestamp;
use dataflow::{LastFix, LatestFix, Position};

/// `positions`' written columns with their wire types; `device_latest` has the first
/// [`FIX_COLUMNS`] of them (all but `attributes`).
pub(super) const COLUMNS: [(&str, Type); 11] = [
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
    ("attributes", Type::JSONB),
];

/// The columns of a fix: the device, its time and the scalar columns of [`LastFix`].
pub(super) const FIX_COLUMNS: usize = 10;

/// `device_id, ts, ...` for the first `count` columns.
pub(super) fn column_list(count: usize) -> String {
    COLUMNS[..count]
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `INSERT INTO <table> (<columns>) SELECT ... FROM unnest($1::text[], ...) AS u(<columns>)`
/// for the first `count` columns; jsonb travels as text (`::jsonb` on the way in), since arrays
/// of the binary jsonb form cannot be bound. The caller appends its `ON CONFLICT` clause.
pub(super) fn insert_from_arrays(table: &str, count: usize) -> String {
    let columns = &COLUMNS[..count];
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
        list = column_list(count),
    )
}

/// Rows as column arrays, in [`COLUMNS`] order, all built by one `push` so that they have one
/// length (`unnest` would silently pad shorter arrays with NULL).
pub(super) struct Columns<'a> {
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
    attributes: Vec<&'a str>,
}

impl<'a> Columns<'a> {
    fn with_capacity(n: usize) -> Self {
        Columns {
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
            attributes: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, device_id: &'a str, ts_micros: i64, fix: &LastFix) {
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

    /// Positions, with their attributes.
    pub(super) fn positions(rows: &[&'a Position]) -> Self {
        let mut columns = Columns::with_capacity(rows.len());
        for row in rows {
            columns.push(&row.device_id, row.ts_micros, &LastFix::from(*row));
            columns.attributes.push(&row.attributes);
        }
        columns
    }

    /// Fixes (no attributes).
    pub(super) fn fixes(fixes: &[&'a LatestFix]) -> Self {
        let mut columns = Columns::with_capacity(fixes.len());
        for fix in fixes {
            columns.push(&fix.device_id, fix.ts_micros, &fix.fix);
        }
        columns
    }

    /// The statement's parameters: every column that has values, in [`COLUMNS`] order.
    pub(super) fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![
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
        ];
        if !self.attributes.is_empty() {
            params.push(&self.attributes);
        }
        params
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_come_from_the_one_column_list() {
        let insert = insert_from_arrays("positions", COLUMNS.len());
        let list = "device_id, ts, latitude, longitude, altitude, angle, speed, satellites, priority, event_id, attributes";
        assert_eq!(insert.matches(list).count(), 2, "{insert}");
        assert!(
            insert.contains("$1::text[]") && insert.contains("$11::text[]"),
            "{insert}"
        );
        assert!(
            insert.contains("$2::timestamptz[]") && insert.contains("u.attributes::jsonb"),
            "{insert}"
        );
        let fixes = insert_from_arrays("device_latest", FIX_COLUMNS);
        assert!(
            fixes.contains("event_id)") && !fixes.contains("attributes"),
            "{fixes}"
        );
        assert!(
            fixes.contains("$10::int4[]") && !fixes.contains("$11"),
            "{fixes}"
        );
    }
}
