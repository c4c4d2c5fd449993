//! Round trip against a model of the Node producer: whatever the producer can publish decodes back
//! to the position it meant, with big integers exact, attribute numbers as written and buffers as
//! the base64 of their bytes; and the position re-encoded (as a dead letter carries it) decodes
//! back to the same position.
//!
//! The generator writes payloads the way the producer's `JSON.stringify` (with its sentinel
//! replacer) would: numbers as JavaScript prints them (`18446744073709552000`, `1e+21`, `5e-324`),
//! timestamps as epoch milliseconds or as `Date.toJSON()` text (UTC, `Z`, three fraction digits,
//! expanded `±YYYYYY` years outside 0..=9999), BigInts as `{"__bigint": digits}`, Buffers as
//! `{"__buffer_b64": …}` or in the `Buffer.toJSON()` shape of a producer that forgot the replacer;
//! and, as another JSON writer might, attribute numbers in other forms (`1.50`, `2E+7`).
//! A second property feeds mangled payloads to the codec, which must answer without panicking.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test that cannot unwrap has failed

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chrono::Datelike;
use dataflow::codec::{decode_payload, encode_payload};
use dataflow::Position;
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::value::RawValue;

/// PostgreSQL's first instant (4714-11-24T00:00:00Z BC) in epoch milliseconds.
const PG_MIN_MS: i64 = -210_866_803_200_000;
/// JavaScript's last `Date` (+275760-09-13T00:00:00.000Z).
const JS_MAX_MS: i64 = 8_640_000_000_000_000;
/// 0000-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z.
const YEAR_0_MS: i64 = -62_167_219_200_000;
const YEAR_9999_END_MS: i64 = 253_402_300_799_999;
/// About year 200000, inside what chrono (used here to format) can represent.
const CHRONO_SAFE_MAX_MS: i64 = 6_000_000_000_000_000;

/// An attribute value as the producer holds it.
#[derive(Clone, Debug)]
enum Attr {
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
    Null,
    /// A JSON number's text in any form (not JavaScript's), e.g. `-0.50e+3`.
    Number(String),
    /// A BigInt's decimal text (any digits, leading zeros included, to test normalisation).
    BigInt(String),
    /// A Buffer written by the replacer.
    Base64(Vec<u8>),
    /// A Buffer written by `Buffer.toJSON()`.
    NodeBuffer(Vec<u8>),
    Array(Vec<Attr>),
    Object(BTreeMap<String, Attr>),
}

/// An optional field: left out, `null`, or a value.
#[derive(Clone, Debug)]
enum Opt<T> {
    Absent,
    Null,
    Value(T),
}

impl<T: Clone> Opt<T> {
    fn value(&self) -> Option<T> {
        match self {
            Opt::Value(value) => Some(value.clone()),
            Opt::Absent | Opt::Null => None,
        }
    }
}

#[derive(Clone, Debug)]
enum Timestamp {
    Millis(i64),
    Iso(i64),
}

#[derive(Clone, Debug)]
struct Produced {
    device_id: String,
    timestamp: Timestamp,
    latitude: f64,
    longitude: f64,
    altitude: Opt<f64>,
    angle: Opt<f64>,
    speed: Opt<f64>,
    satellites: Opt<i64>,
    priority: Opt<i64>,
    event_id: Opt<i64>,
    attributes: Opt<BTreeMap<String, Attr>>,
}

fn opt<T: Clone + std::fmt::Debug>(
    value: impl Strategy<Value = T>,
) -> impl Strategy<Value = Opt<T>> {
    prop_oneof![
        1 => Just(Opt::Absent),
        1 => Just(Opt::Null),
        3 => value.prop_map(Opt::Value),
    ]
}

fn finite_f64() -> impl Strategy<Value = f64> {
    use proptest::num::f64::{NEGATIVE, NORMAL, POSITIVE, SUBNORMAL, ZERO};
    POSITIVE | NEGATIVE | NORMAL | SUBNORMAL | ZERO
}

fn bounded_f64(low: f64, high: f64) -> impl Strategy<Value = f64> {
    prop_oneof![Just(low), Just(high), low..=high]
}

fn attr() -> impl Strategy<Value = Attr> {
    let leaf = prop_oneof![
        (-(1i64 << 53) + 1..(1i64 << 53)).prop_map(Attr::Int),
        any::<i64>().prop_map(Attr::Int),
        finite_f64().prop_map(Attr::Float),
        "-?(0|[1-9][0-9]{0,30})(\\.[0-9]{1,12})?([eE][+-]?[0-9]{1,2})?".prop_map(Attr::Number),
        "[^\\x00]{0,12}".prop_map(Attr::Str),
        any::<bool>().prop_map(Attr::Bool),
        Just(Attr::Null),
        "-?[0-9]{1,60}".prop_map(Attr::BigInt),
        vec(any::<u8>(), 0..24).prop_map(Attr::Base64),
        vec(any::<u8>(), 0..24).prop_map(Attr::NodeBuffer),
    ];
    leaf.prop_recursive(4, 48, 5, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..5).prop_map(Attr::Array),
            // The `k` prefix keeps generated plain objects from taking a sentinel's shape.
            btree_map("k[^\\x00]{0,6}", inner, 0..5).prop_map(Attr::Object),
        ]
    })
}

fn produced() -> impl Strategy<Value = Produced> {
    let timestamp = prop_oneof![
        (PG_MIN_MS..=JS_MAX_MS).prop_map(Timestamp::Millis),
        (YEAR_0_MS..=YEAR_9999_END_MS).prop_map(Timestamp::Iso),
        (PG_MIN_MS..=CHRONO_SAFE_MAX_MS).prop_map(Timestamp::Iso),
    ];
    let attributes = btree_map(prop_oneof!["[0-9]{1,5}", "[^\\x00]{0,8}"], attr(), 0..8);
    (
        ("[^\\x00]{1,64}", timestamp),
        (bounded_f64(-90.0, 90.0), bounded_f64(-180.0, 180.0)),
        (
            opt(prop_oneof![
                -500.0..9000.0,
                (-20_000i64..20_000).prop_map(|m| m as f64)
            ]),
            opt(bounded_f64(0.0, 360.0)),
            opt(bounded_f64(0.0, 400.0)),
        ),
        (
            opt(0i64..=255),
            opt(0i64..=2),
            opt(0i64..=i64::from(i32::MAX)),
        ),
        opt(attributes),
    )
        .prop_map(
            |(
                (device_id, timestamp),
                (latitude, longitude),
                (altitude, angle, speed),
                (satellites, priority, event_id),
                attributes,
            )| Produced {
                device_id,
                timestamp,
                latitude,
                longitude,
                altitude,
                angle,
                speed,
                satellites,
                priority,
                event_id,
                attributes,
            },
        )
}

/// A number as JavaScript's `Number.prototype.toString` (and so `JSON.stringify`) writes it: the
/// shortest digits that read back as the same double, as plain digits from 1e-6 up to 1e21
/// (`18446744073709552000`, `0.000001`), in exponent form outside (`1e+21`, `1e-7`); `-0` as `0`.
fn js_number(value: f64) -> String {
    if value == 0.0 {
        return "0".to_owned();
    }
    // `{:e}` writes the shortest digits that round-trip, as `d.ddde<exponent>`.
    let formatted = format!("{:e}", value.abs());
    let (mantissa, exponent) = formatted.split_once('e').expect("an exponent");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let k = digits.len() as i32;
    let n = exponent.parse::<i32>().expect("an integer exponent") + 1;
    let body = if k <= n && n <= 21 {
        format!("{digits}{}", "0".repeat((n - k) as usize))
    } else if 0 < n && n <= 21 {
        let (integer, fraction) = digits.split_at(n as usize);
        format!("{integer}.{fraction}")
    } else if -6 < n && n <= 0 {
        format!("0.{}{digits}", "0".repeat(n.unsigned_abs() as usize))
    } else {
        let (first, rest) = digits.split_at(1);
        let point = if rest.is_empty() { "" } else { "." };
        format!(
            "{first}{point}{rest}e{}{}",
            if n > 0 { "+" } else { "-" },
            (n - 1).abs()
        )
    };
    if value < 0.0 {
        format!("-{body}")
    } else {
        body
    }
}

/// A JSON string literal.
fn json_string(text: &str) -> String {
    serde_json::to_string(text).expect("a string serialises")
}

/// `Date.prototype.toJSON()`.
fn to_json_date(millis: i64) -> String {
    let date = chrono::DateTime::from_timestamp_millis(millis).expect("in chrono's range");
    let year = date.year();
    let year = if (0..=9999).contains(&year) {
        format!("{year:04}")
    } else {
        format!("{year:+07}")
    };
    format!("{year}-{}", date.format("%m-%dT%H:%M:%S%.3fZ"))
}

/// An attribute value as the producer writes it.
fn wire_attr(attr: &Attr) -> String {
    let list = |items: Vec<String>| items.join(",");
    match attr {
        Attr::Int(value) => value.to_string(),
        Attr::Float(value) => js_number(*value),
        Attr::Number(text) => text.clone(),
        Attr::Str(text) => json_string(text),
        Attr::Bool(value) => value.to_string(),
        Attr::Null => "null".to_owned(),
        Attr::BigInt(digits) => format!(r#"{{"__bigint":{}}}"#, json_string(digits)),
        Attr::Base64(bytes) => format!(r#"{{"__buffer_b64":"{}"}}"#, STANDARD.encode(bytes)),
        Attr::NodeBuffer(bytes) => format!(
            r#"{{"type":"Buffer","data":[{}]}}"#,
            list(bytes.iter().map(u8::to_string).collect())
        ),
        Attr::Array(items) => format!("[{}]", list(items.iter().map(wire_attr).collect())),
        Attr::Object(map) => format!(
            "{{{}}}",
            list(
                map.iter()
                    .map(|(key, value)| format!("{}:{}", json_string(key), wire_attr(value)))
                    .collect()
            )
        ),
    }
}

fn payload(produced: &Produced) -> String {
    let mut fields = vec![
        ("device_id", json_string(&produced.device_id)),
        (
            "timestamp",
            match produced.timestamp {
                Timestamp::Millis(millis) => millis.to_string(),
                Timestamp::Iso(millis) => json_string(&to_json_date(millis)),
            },
        ),
        ("latitude", js_number(produced.latitude)),
        ("longitude", js_number(produced.longitude)),
    ];
    fn put<T>(
        fields: &mut Vec<(&'static str, String)>,
        key: &'static str,
        field: &Opt<T>,
        to: impl Fn(&T) -> String,
    ) {
        match field {
            Opt::Absent => {}
            Opt::Null => fields.push((key, "null".to_owned())),
            Opt::Value(value) => fields.push((key, to(value))),
        }
    }
    put(&mut fields, "altitude", &produced.altitude, |v| {
        js_number(*v)
    });
    put(&mut fields, "angle", &produced.angle, |v| js_number(*v));
    put(&mut fields, "speed", &produced.speed, |v| js_number(*v));
    put(
        &mut fields,
        "satellites",
        &produced.satellites,
        i64::to_string,
    );
    put(&mut fields, "priority", &produced.priority, i64::to_string);
    put(&mut fields, "event_id", &produced.event_id, i64::to_string);
    put(&mut fields, "attributes", &produced.attributes, |map| {
        wire_attr(&Attr::Object(map.clone()))
    });
    fields.push(("codec", "142".to_owned()));
    let fields: Vec<String> = fields
        .iter()
        .map(|(key, value)| format!("{}:{value}", json_string(key)))
        .collect();
    format!("{{{}}}", fields.join(","))
}

/// The position the producer meant, attributes aside.
fn expected(produced: &Produced) -> Position {
    let millis = match produced.timestamp {
        Timestamp::Millis(millis) | Timestamp::Iso(millis) => millis,
    };
    Position {
        source: dataflow::StreamId::default(),
        redrives: 0,
        device_id: produced.device_id.clone(),
        ts_micros: millis * 1000,
        latitude: produced.latitude,
        longitude: produced.longitude,
        altitude: produced.altitude.value().map(|v| v as f32),
        angle: produced.angle.value().map(|v| v as f32),
        speed: produced.speed.value().map(|v| v as f32),
        satellites: produced.satellites.value().map(|v| v as i16),
        priority: produced.priority.value().map(|v| v as i16),
        event_id: produced.event_id.value().map(|v| v as i32),
        attributes: String::new(),
    }
}

/// A BigInt's digits as JSON must write them: no leading zeros, no negative zero.
fn normal_bigint(text: &str) -> String {
    let (sign, digits) = match text.strip_prefix('-') {
        Some(digits) => ("-", digits),
        None => ("", text),
    };
    match digits.trim_start_matches('0') {
        "" => "0".to_owned(),
        significant => format!("{sign}{significant}"),
    }
}

/// Checks decoded attribute JSON (`raw`) against the producer's value; numbers must be exactly the
/// text the producer wrote (so a big integer rounded through `f64` shows, as would `1.50` printed
/// back as `1.5`).
fn check(expected: &Attr, raw: &str, path: &str) -> Result<(), String> {
    let raw = raw.trim();
    let fail = |what: String| {
        Err(format!(
            "at {path}: {what} (expected {expected:?}, got {raw})"
        ))
    };
    match expected {
        Attr::Int(value) => {
            if raw != value.to_string() {
                return fail("integer not exact".into());
            }
        }
        Attr::BigInt(digits) => {
            if raw != normal_bigint(digits) {
                return fail("bigint digits differ".into());
            }
        }
        Attr::Float(value) => {
            if raw != js_number(*value) {
                return fail("float not as written".into());
            }
        }
        Attr::Number(text) => {
            if raw != text {
                return fail("number not as written".into());
            }
        }
        Attr::Str(text) => {
            if serde_json::from_str::<String>(raw).ok().as_ref() != Some(text) {
                return fail("string differs".into());
            }
        }
        Attr::Bool(value) => {
            if serde_json::from_str::<bool>(raw).ok() != Some(*value) {
                return fail("bool differs".into());
            }
        }
        Attr::Null => {
            if raw != "null" {
                return fail("not null".into());
            }
        }
        Attr::Base64(bytes) | Attr::NodeBuffer(bytes) => {
            let text = serde_json::from_str::<String>(raw).map_err(|e| e.to_string())?;
            if text != STANDARD.encode(bytes) || STANDARD.decode(&text).ok().as_ref() != Some(bytes)
            {
                return fail("buffer differs".into());
            }
        }
        Attr::Array(items) => {
            let got: Vec<Box<RawValue>> = match serde_json::from_str(raw) {
                Ok(got) => got,
                Err(e) => return fail(format!("not an array: {e}")),
            };
            if got.len() != items.len() {
                return fail("array length differs".into());
            }
            for (index, (item, got)) in items.iter().zip(&got).enumerate() {
                check(item, got.get(), &format!("{path}[{index}]"))?;
            }
        }
        Attr::Object(map) => {
            let got: BTreeMap<String, Box<RawValue>> = match serde_json::from_str(raw) {
                Ok(got) => got,
                Err(e) => return fail(format!("not an object: {e}")),
            };
            if !got.keys().eq(map.keys()) {
                return fail("keys differ".into());
            }
            for ((key, item), got) in map.iter().zip(got.values()) {
                check(item, got.get(), &format!("{path}[{key:?}]"))?;
            }
        }
    }
    Ok(())
}

fn config() -> Config {
    Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// Whatever the producer publishes decodes back to what it meant.
    #[test]
    fn node_producer_positions_round_trip(produced in produced()) {
        let text = payload(&produced);
        let decoded = decode_payload(text.as_bytes())
            .map_err(|e| TestCaseError::fail(format!("{e}\npayload: {text}")))?;
        let typed = Position { attributes: String::new(), ..decoded.clone() };
        prop_assert_eq!(typed, expected(&produced), "payload: {}", text);
        let attributes = Attr::Object(produced.attributes.value().unwrap_or_default());
        check(&attributes, &decoded.attributes, "attributes")
            .map_err(|e| TestCaseError::fail(format!("{e}\npayload: {text}")))?;
        // What PostgreSQL receives is valid JSON text (read raw: its numbers need not fit an f64).
        prop_assert!(serde_json::from_str::<&RawValue>(&decoded.attributes).is_ok());
        // The position re-encoded, as a dead letter carries it, decodes to the same position.
        let encoded = encode_payload(&decoded);
        let again = decode_payload(encoded.as_bytes())
            .map_err(|e| TestCaseError::fail(format!("{e}\nre-encoded: {encoded}")))?;
        prop_assert_eq!(again, decoded, "re-encoded: {}", encoded);
    }

    /// Mangled payloads are answered (decoded or refused), never a panic.
    #[test]
    fn mangled_payloads_never_panic(
        produced in produced(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6),
    ) {
        let mut bytes = payload(&produced).into_bytes();
        for (at, byte, kind) in edits {
            if bytes.is_empty() {
                break;
            }
            let at = at.index(bytes.len());
            match kind {
                0 => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                _ => {
                    bytes.remove(at);
                }
            }
        }
        if let Ok(position) = decode_payload(&bytes) {
            prop_assert!(serde_json::from_str::<&RawValue>(&position.attributes).is_ok());
            prop_assert!(!position.device_id.is_empty());
            let encoded = encode_payload(&position);
            prop_assert_eq!(decode_payload(encoded.as_bytes()), Ok(position));
        }
    }
}

#[test]
fn js_number_writes_what_javascript_writes() {
    for (value, javascript) in [
        (0.0, "0"),
        (-0.0, "0"),
        (1.0, "1"),
        (-1.5, "-1.5"),
        (0.1, "0.1"),
        (100.0, "100"),
        (123.456, "123.456"),
        (0.000001, "0.000001"),
        (1.5e-7, "1.5e-7"),
        (1e-7, "1e-7"),
        (18446744073709551616.0, "18446744073709552000"),
        (1e21, "1e+21"),
        (1.2345e22, "1.2345e+22"),
        (5e-324, "5e-324"),
        (f64::MAX, "1.7976931348623157e+308"),
        (-9007199254740993.0, "-9007199254740992"),
    ] {
        assert_eq!(js_number(value), javascript, "{value:e}");
    }
}
