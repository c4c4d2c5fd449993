//! A position written back as the contract's payload.
//!
//! Why: when the database refuses a row (a `CHECK` constraint, a trigger), its entry goes to the
//! dead-letter stream so that it can be inspected and sent back once the cause is fixed. The
//! producer's bytes are not kept past decoding (holding them until the commit would double the
//! memory and the cluster traffic of every record in flight), so the dead letter carries the
//! position re-encoded instead: decoding it gives exactly the same row. Numbers are written
//! exactly (`f32` columns through their exact `f64` value), the timestamp to the microsecond, and
//! the attributes as the JSON text they are stored as (their numbers as the producer wrote them).

use super::timestamp::format_iso;
use crate::Position;

/// The payload of `position`, in the contract's format.
pub fn encode_payload(position: &Position) -> String {
    let mut out = String::with_capacity(160 + position.attributes.len());
    out.push_str("{\"device_id\":");
    push_string(&mut out, &position.device_id);
    out.push_str(",\"timestamp\":\"");
    out.push_str(&format_iso(position.ts_micros));
    out.push_str("\",\"latitude\":");
    push_number(&mut out, Some(position.latitude));
    out.push_str(",\"longitude\":");
    push_number(&mut out, Some(position.longitude));
    for (name, value) in [
        ("altitude", position.altitude),
        ("angle", position.angle),
        ("speed", position.speed),
    ] {
        out.push_str(",\"");
        out.push_str(name);
        out.push_str("\":");
        push_number(&mut out, value.map(f64::from));
    }
    for (name, value) in [
        ("satellites", position.satellites.map(i64::from)),
        ("priority", position.priority.map(i64::from)),
        ("event_id", position.event_id.map(i64::from)),
    ] {
        out.push_str(",\"");
        out.push_str(name);
        out.push_str("\":");
        match value {
            Some(value) => out.push_str(&value.to_string()),
            None => out.push_str("null"),
        }
    }
    out.push_str(",\"attributes\":");
    out.push_str(&position.attributes);
    out.push('}');
    out
}

/// A finite number as the shortest text that reads back as the same `f64`; `null` for none.
fn push_number(out: &mut String, value: Option<f64>) {
    match value.and_then(serde_json::Number::from_f64) {
        Some(number) => out.push_str(&number.to_string()),
        None => out.push_str("null"),
    }
}

fn push_string(out: &mut String, text: &str) {
    match serde_json::to_string(text) {
        Ok(quoted) => out.push_str(&quoted),
        // Serialising a `&str` cannot fail; an empty string keeps the payload well-formed.
        Err(_) => out.push_str("\"\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::decode_payload;
    use crate::StreamId;

    fn position(ts_micros: i64) -> Position {
        Position {
            source: StreamId::default(),
            redrives: 0,
            device_id: "dev \"quoted\" \u{1F697}".to_owned(),
            ts_micros,
            latitude: 54.687_157_1,
            longitude: -25.279_651,
            altitude: Some(112.3),
            angle: Some(359.9),
            speed: Some(0.1),
            satellites: Some(13),
            priority: Some(2),
            event_id: None,
            // Numbers as written: beyond 64 bits, trailing zeros, exponents.
            attributes: r#"{"16":9007199254740993,"17":18446744073709551617,"78":"AQID","9":12.345,"10":[1.50,1E+2,-0.0,1e400]}"#.to_owned(),
        }
    }

    #[test]
    fn decoding_the_encoding_gives_the_same_row() {
        for ts in [
            1_790_000_000_123_456,
            0,
            -1,
            crate::codec::MIN_TS_MICROS,
            crate::codec::MAX_TS_MICROS,
            253_402_300_800_000_000, // year 10000: an expanded year
        ] {
            let original = position(ts);
            let text = encode_payload(&original);
            let decoded = decode_payload(text.as_bytes()).unwrap_or_else(|e| panic!("{e}: {text}"));
            assert_eq!(decoded, original, "{text}");
        }
    }
}
