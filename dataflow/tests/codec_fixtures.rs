//! The wire contract's fixtures (`tests/fixtures/*.jsonl` at the workspace root), decoded by the
//! codec: every valid entry must become exactly its expected `positions` row, every invalid one
//! must fail naming the expected field.
//!
//! Each test runs all cases and reports every failing case by name at once, so that one run shows
//! the whole picture. Attributes are compared as parsed JSON with integers compared by their
//! digits: `serde_json::Value` (without `arbitrary_precision`) would turn an integer beyond 64 bits
//! into an `f64` on both sides and hide exactly the rounding this test must catch.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test that cannot unwrap has failed

use std::collections::BTreeMap;

use dataflow::codec::decode_entry;
use dataflow::{Entry, Position};
use serde::Deserialize;
use serde_json::value::RawValue;

const VALID: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/fixtures/valid.jsonl"
));
const INVALID: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/fixtures/invalid.jsonl"
));

#[derive(Deserialize)]
struct ValidCase {
    name: String,
    fields: BTreeMap<String, String>,
    expect: Row,
}

/// A `positions` row as the fixture writes it.
#[derive(Deserialize)]
struct Row {
    device_id: String,
    ts: String,
    latitude: f64,
    longitude: f64,
    altitude: Option<f64>,
    angle: Option<f64>,
    speed: Option<f64>,
    satellites: Option<i64>,
    priority: Option<i64>,
    event_id: Option<i64>,
    /// Kept as text so that big integers reach the comparison unrounded.
    attributes: Box<RawValue>,
}

#[derive(Deserialize)]
struct InvalidCase {
    name: String,
    fields: BTreeMap<String, String>,
    error_field: String,
}

fn entry(index: usize, fields: BTreeMap<String, String>) -> Entry {
    Entry {
        id: dataflow::StreamId::new(1_764_411_330_123, index as u64),
        fields: fields
            .into_iter()
            .map(|(key, value)| (key.into(), value.into()))
            .collect(),
    }
}

/// A JSON value whose numbers are kept exact: integers as their digits, other numbers as `f64`.
#[derive(Debug, PartialEq)]
enum Exact {
    Null,
    Bool(bool),
    Integer(String),
    Float(f64),
    Str(String),
    Array(Vec<Exact>),
    Object(BTreeMap<String, Exact>),
}

/// Parses JSON text into [`Exact`], reading every number's own text through `RawValue`.
fn exact(text: &str) -> Result<Exact, String> {
    let text = text.trim();
    let parse_error = |e: serde_json::Error| format!("{e} in {text}");
    Ok(match text.as_bytes().first() {
        Some(b'{') => Exact::Object(
            serde_json::from_str::<BTreeMap<String, Box<RawValue>>>(text)
                .map_err(parse_error)?
                .into_iter()
                .map(|(key, value)| Ok((key, exact(value.get())?)))
                .collect::<Result<_, String>>()?,
        ),
        Some(b'[') => Exact::Array(
            serde_json::from_str::<Vec<Box<RawValue>>>(text)
                .map_err(parse_error)?
                .iter()
                .map(|value| exact(value.get()))
                .collect::<Result<_, String>>()?,
        ),
        Some(b'"') => Exact::Str(serde_json::from_str(text).map_err(parse_error)?),
        Some(b't' | b'f') => Exact::Bool(serde_json::from_str(text).map_err(parse_error)?),
        Some(b'n') => Exact::Null,
        _ => {
            let digits = text.strip_prefix('-').unwrap_or(text);
            if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                Exact::Integer(text.to_owned())
            } else {
                Exact::Float(text.parse().map_err(|e| format!("{e}: {text}"))?)
            }
        }
    })
}

fn ts_micros(iso: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(iso)
        .unwrap_or_else(|e| panic!("fixture ts {iso:?}: {e}"))
        .timestamp_micros()
}

/// Every column that differs, as `column: got … expected …`.
fn differences(got: &Position, row: &Row) -> Vec<String> {
    let mut diffs = Vec::new();
    let mut check = |column: &str, same: bool, got: String, expected: String| {
        if !same {
            diffs.push(format!("{column}: got {got}, expected {expected}"));
        }
    };
    check(
        "device_id",
        got.device_id == row.device_id,
        format!("{:?}", got.device_id),
        format!("{:?}", row.device_id),
    );
    let ts = ts_micros(&row.ts);
    check(
        "ts",
        got.ts_micros == ts,
        got.ts_micros.to_string(),
        ts.to_string(),
    );
    check(
        "latitude",
        got.latitude == row.latitude,
        got.latitude.to_string(),
        row.latitude.to_string(),
    );
    check(
        "longitude",
        got.longitude == row.longitude,
        got.longitude.to_string(),
        row.longitude.to_string(),
    );
    for (column, got, expected) in [
        ("altitude", got.altitude, row.altitude),
        ("angle", got.angle, row.angle),
        ("speed", got.speed, row.speed),
    ] {
        let expected = expected.map(|v| v as f32);
        check(
            column,
            got == expected,
            format!("{got:?}"),
            format!("{expected:?}"),
        );
    }
    for (column, got, expected) in [
        ("satellites", got.satellites.map(i64::from), row.satellites),
        ("priority", got.priority.map(i64::from), row.priority),
        ("event_id", got.event_id.map(i64::from), row.event_id),
    ] {
        check(
            column,
            got == expected,
            format!("{got:?}"),
            format!("{expected:?}"),
        );
    }
    let attributes = exact(&got.attributes);
    let expected = exact(row.attributes.get());
    check(
        "attributes",
        attributes.is_ok() && attributes == expected,
        got.attributes.clone(),
        row.attributes.get().to_owned(),
    );
    diffs
}

#[test]
fn valid_fixtures_decode_to_their_rows() {
    let mut failures = Vec::new();
    let mut cases = 0;
    for (index, line) in VALID.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let case: ValidCase = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("valid.jsonl line {}: {e}", index + 1));
        cases += 1;
        match decode_entry(&entry(index, case.fields)) {
            Ok(position) => {
                let diffs = differences(&position, &case.expect);
                if !diffs.is_empty() {
                    failures.push(format!("{}:\n    {}", case.name, diffs.join("\n    ")));
                }
            }
            Err(error) => failures.push(format!("{}: rejected: {error}", case.name)),
        }
    }
    assert!(cases > 0, "no valid fixtures read");
    assert!(
        failures.is_empty(),
        "{} of {cases} valid fixtures failed:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

#[test]
fn invalid_fixtures_fail_naming_their_field() {
    let mut failures = Vec::new();
    let mut cases = 0;
    for (index, line) in INVALID.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let case: InvalidCase = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("invalid.jsonl line {}: {e}", index + 1));
        cases += 1;
        match decode_entry(&entry(index, case.fields)) {
            Ok(position) => failures.push(format!("{}: accepted as {position:?}", case.name)),
            Err(error) if error.field != case.error_field => failures.push(format!(
                "{}: error names {:?}, expected {:?} ({error})",
                case.name, error.field, case.error_field
            )),
            Err(error) if error.reason.trim().is_empty() => {
                failures.push(format!("{}: error has no reason", case.name))
            }
            Err(_) => {}
        }
    }
    assert!(cases > 0, "no invalid fixtures read");
    assert!(
        failures.is_empty(),
        "{} of {cases} invalid fixtures failed:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

/// The comparison itself must see a big integer rounded through `f64`, which `Value` would not.
#[test]
fn exact_comparison_catches_rounded_big_integers() {
    let sent = r#"{"16":18446744073709551617,"17":-9223372036854775809}"#;
    let rounded = r#"{"16":18446744073709551616,"17":-9223372036854775808}"#;
    assert_ne!(exact(sent), exact(rounded));
    assert_eq!(exact(sent), exact(&format!(" {sent} ")));
    let as_values: [serde_json::Value; 2] = [
        serde_json::from_str(sent).unwrap(),
        serde_json::from_str(rounded).unwrap(),
    ];
    assert_eq!(
        as_values[0]["16"], as_values[1]["16"],
        "Value rounds; Exact must not"
    );
}
