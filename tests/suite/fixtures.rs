//! The shared fixtures through the whole pipeline: every valid entry becomes exactly its expected
//! row, every invalid one is dead-lettered with a reason naming its field, and the valid entries
//! published around the invalid ones all land.

use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::support::harness::Test;
use crate::support::{Backend, TestEnv};

/// This module's tests, as the suite runs them (see `main.rs`).
pub fn tests() -> Vec<Test> {
    [trial!(
        every_fixture_lands_or_is_dead_lettered,
        tokio = 2,
        on_both
    )]
    .into_iter()
    .flatten()
    .collect()
}

#[derive(Deserialize)]
struct ValidCase<'a> {
    name: String,
    fields: serde_json::Map<String, serde_json::Value>,
    #[serde(borrow)]
    expect: Expect<'a>,
}

#[derive(Deserialize)]
struct Expect<'a> {
    device_id: String,
    ts: String,
    latitude: f64,
    longitude: f64,
    altitude: Option<f64>,
    angle: Option<f64>,
    speed: Option<f64>,
    satellites: Option<i16>,
    priority: Option<i16>,
    event_id: Option<i32>,
    /// Kept as raw text so big integers are compared exactly (by PostgreSQL's jsonb equality).
    #[serde(borrow)]
    attributes: &'a RawValue,
}

#[derive(Deserialize)]
struct InvalidCase {
    name: String,
    fields: serde_json::Map<String, serde_json::Value>,
    error_field: String,
}

const VALID: &str = include_str!("../fixtures/valid.jsonl");
const INVALID: &str = include_str!("../fixtures/invalid.jsonl");
const FIXTURE_DEVICE: &str = "356307042441013";

fn string_fields(fields: &serde_json::Map<String, serde_json::Value>) -> Vec<(String, String)> {
    fields
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_str()
                    .expect("fixture field values are strings")
                    .to_owned(),
            )
        })
        .collect()
}

async fn every_fixture_lands_or_is_dead_lettered(backend: Backend) {
    let mut env = TestEnv::on(backend, "fixtures").await;
    let valid: Vec<ValidCase> = VALID
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("valid fixture line"))
        .collect();
    let invalid: Vec<InvalidCase> = INVALID
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("invalid fixture line"))
        .collect();

    // Most valid cases share one (device_id, ts) on purpose: give each its own device, by text
    // replacement so the payload stays byte-for-byte what the fixture says otherwise.
    let mut published = Vec::new();
    let mut invalid_ids = Vec::new();
    let mut invalid_iter = invalid.iter();
    for (i, case) in valid.iter().enumerate() {
        let device = format!("fixture-{i:02}");
        let fields: Vec<(String, String)> = string_fields(&case.fields)
            .into_iter()
            .map(|(k, v)| (k, v.replace(FIXTURE_DEVICE, &device)))
            .collect();
        env.publish_fields(&fields).await;
        published.push(device);
        // interleave the invalid entries between the valid ones
        for bad in invalid_iter.by_ref().take(2) {
            invalid_ids.push((env.publish_fields(&string_fields(&bad.fields)).await, bad));
        }
    }
    for bad in invalid_iter {
        invalid_ids.push((env.publish_fields(&string_fields(&bad.fields)).await, bad));
    }

    let running = env.start(env.config(&[]));
    env.wait_landed(valid.len() as i64, Duration::from_secs(60))
        .await;
    assert_eq!(running.metrics.dead_lettered.get(), invalid.len() as u64);

    let mut failures = Vec::new();
    for (case, device) in valid.iter().zip(&published) {
        let expect = &case.expect;
        let expected_device = expect.device_id.replace(FIXTURE_DEVICE, device);
        let row = env
            .db
            .query_opt(
                "SELECT ts = $2::text::timestamptz,
                        latitude = $3, longitude = $4,
                        altitude IS NOT DISTINCT FROM $5::float8::real,
                        angle IS NOT DISTINCT FROM $6::float8::real,
                        speed IS NOT DISTINCT FROM $7::float8::real,
                        satellites IS NOT DISTINCT FROM $8,
                        priority IS NOT DISTINCT FROM $9,
                        event_id IS NOT DISTINCT FROM $10,
                        attributes = $11::text::jsonb,
                        attributes::text
                 FROM positions WHERE device_id = $1",
                &[
                    &expected_device,
                    &expect.ts,
                    &expect.latitude,
                    &expect.longitude,
                    &expect.altitude,
                    &expect.angle,
                    &expect.speed,
                    &expect.satellites,
                    &expect.priority,
                    &expect.event_id,
                    &expect.attributes.get(),
                ],
            )
            .await
            .expect("query the row");
        let Some(row) = row else {
            failures.push(format!("{}: no row", case.name));
            continue;
        };
        let columns = [
            "ts",
            "latitude",
            "longitude",
            "altitude",
            "angle",
            "speed",
            "satellites",
            "priority",
            "event_id",
            "attributes",
        ];
        for (i, column) in columns.iter().enumerate() {
            if !row.get::<_, bool>(i) {
                let stored: String = row.get(10);
                failures.push(format!(
                    "{}: {column} differs (attributes {stored})",
                    case.name
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "fixture rows differ:\n{}",
        failures.join("\n")
    );

    // A buffer's base64 decodes back to the original bytes, in SQL.
    let bytes: Vec<u8> = env
        .db
        .query_one(
            "SELECT decode(attributes->>'78', 'base64') FROM positions WHERE device_id = 'fixture-00'",
            &[],
        )
        .await
        .expect("decode the buffer")
        .get(0);
    assert_eq!(bytes, vec![1, 2, 3, 4, 5, 6, 7, 8]);

    // Every invalid entry is in the dead-letter stream, with its reason and origin.
    let dead = env.dead_letters().await;
    assert_eq!(dead.len(), invalid.len());
    for (id, case) in &invalid_ids {
        let letter = dead
            .iter()
            .find(|letter| letter.get("source_id") == Some(id))
            .unwrap_or_else(|| panic!("{}: not dead-lettered", case.name));
        let error = &letter["error"];
        assert!(
            error.starts_with(&format!("{}:", case.error_field)),
            "{}: error {error:?} does not name {}",
            case.name,
            case.error_field
        );
        assert!(
            letter["consumer"].ends_with("-0"),
            "{}: consumer",
            case.name
        );
        assert!(letter.contains_key("failed_at"), "{}: failed_at", case.name);
        for (field, value) in string_fields(&case.fields) {
            assert_eq!(
                letter.get(&field),
                Some(&value),
                "{}: original {field}",
                case.name
            );
        }
    }
    assert_eq!(env.pending().await, 0);
    running.stop().await;
    env.assert_table_kind().await;
}
