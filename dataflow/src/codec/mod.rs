//! Wire codec: a stream entry's `payload` JSON -> [`Position`], per the wire contract.
//!
//! Every input is either a `Position` whose every value PostgreSQL accepts for its column, or a
//! [`DecodeError`] naming the contract field at fault (`payload` when the entry has no payload or
//! the payload is not a JSON object); a bad record is data for the dead-letter path, never a panic.
//!
//! How (and why this way, given a budget of a few microseconds of CPU per record):
//! - one pass of a hand-written JSON scanner over the payload bytes (`scanner.rs` reads tokens,
//!   `fields.rs` the top-level object): no `serde_json::Value` tree, no serde visitors; keys are
//!   compared as written against the contract's names; strings are borrowed from the payload when
//!   they have no escapes; unknown fields are skipped without allocating; a duplicate known field
//!   is an error naming it;
//! - `attributes` is read by that same pass: at its value, a transcoder (`attributes.rs`) checks it
//!   and copies it into its output text, resolving the producer's `__bigint` / `__buffer_b64` /
//!   `Buffer.toJSON()` sentinels and copying numbers as written: a big integer is copied as digits
//!   and never passes through an `f64`. Each byte of the payload is read once;
//! - `timestamp` is parsed by a small exact parser (`timestamp.rs`) and bounded to what a
//!   `timestamptz` stores.
//!
//! The scanner replaced serde_json and keeps its judgement of every payload, so that a record's
//! row or the field its error names does not depend on the parser: the same grammar, the same
//! numbers (the nearest `f64` to a number's text, as serde_json's `float_roundtrip` parser gave),
//! the same failures for a number too large for an `f64` in a known field (the payload's) or a
//! duplicate key (the field's). Reasons for a payload that is not JSON keep serde_json's words and
//! its line and column. (The nearest `f64` is what `latitude` must be: Rust's `str::parse` is
//! correctly rounded, as serde_json's parser was only with its `float_roundtrip` feature; without
//! it about one double in three came back one ulp off.)
//!
//! Text: the payload must be UTF-8 JSON, checked once over the whole payload before parsing (so a
//! stray byte fails as `payload` wherever it sits, in an unknown field too). A string holding an
//! unpaired surrogate escape (`"\ud800"`) is not valid Unicode: in a top-level key or a known
//! field's string it fails as `payload` (serde_json refused it in a string it decoded), in the
//! attributes as `attributes` (as `jsonb` would refuse it); in an unknown field, which is skipped
//! unread, it is ignored.
//!
//! A successful decode allocates the `device_id` and the `attributes` strings, nothing else (plus
//! a scratch buffer when buffers are present, and a copy of any key, string value or sentinel
//! argument that had JSON escapes).

mod attributes;
mod encode;
mod fields;
mod scanner;
mod text;
mod timestamp;

use crate::{DecodeError, Entry, Field, Position};

pub use attributes::{MAX_BIGINT_DIGITS, MAX_NUMBER_DIGITS};
pub use encode::encode_payload;
pub use fields::MAX_DEVICE_ID_CHARS;
pub use timestamp::{MAX_TS_MICROS, MIN_TS_MICROS};

/// Decodes a stream entry: its `payload` field must hold the contract's JSON object. Other fields
/// are ignored but `redrive_count` (set when the entry was sent back from the dead-letter
/// stream); when `payload` appears more than once, the first one counts.
pub fn decode_entry(entry: &Entry) -> Result<Position, DecodeError> {
    match entry.field("payload") {
        Some(payload) => decode_payload(payload).map(|mut position| {
            position.source = entry.id;
            position.redrives = entry
                .field("redrive_count")
                .and_then(|count| std::str::from_utf8(count).ok())
                .and_then(|count| count.trim().parse().ok())
                .unwrap_or(0);
            position
        }),
        None => Err(DecodeError::new(
            Field::Payload,
            "entry has no payload field",
        )),
    }
}

/// Decodes the payload JSON bytes (UTF-8) into a validated [`Position`].
pub fn decode_payload(payload: &[u8]) -> Result<Position, DecodeError> {
    fields::parse(payload)?.into_position()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#""device_id":"356307042441013","timestamp":"2026-11-29T10:15:30.123Z","latitude":54.687157,"longitude":25.279652"#;

    fn with(extra: &str) -> Result<Position, DecodeError> {
        decode_payload(format!("{{{BASE}{extra}}}").as_bytes())
    }

    fn field_of(result: Result<Position, DecodeError>) -> &'static str {
        match result {
            Err(error) => error.field.name(),
            Ok(position) => panic!("accepted: {position:?}"),
        }
    }

    #[test]
    fn minimal_record() {
        let position = with("").unwrap();
        assert_eq!(position.device_id, "356307042441013");
        assert_eq!(position.ts_micros, 1_795_947_330_123_000);
        assert_eq!(position.latitude, 54.687157);
        assert_eq!(position.longitude, 25.279652);
        assert_eq!(position.altitude, None);
        assert_eq!(position.event_id, None);
        assert_eq!(position.attributes, "{}");
        assert_eq!(with(r#","attributes":null"#).unwrap().attributes, "{}");
    }

    #[test]
    fn nulls_are_absent_for_optional_fields_only() {
        let position =
            with(r#","altitude":null,"angle":null,"speed":null,"satellites":null,"priority":null,"event_id":null"#)
                .unwrap();
        assert_eq!(position.altitude, None);
        assert_eq!(position.satellites, None);
        let payload = br#"{"device_id":null,"timestamp":1,"latitude":0,"longitude":0}"#;
        assert_eq!(field_of(decode_payload(payload)), "device_id");
        let payload = br#"{"device_id":"a","timestamp":1,"latitude":null,"longitude":0}"#;
        assert_eq!(field_of(decode_payload(payload)), "latitude");
    }

    #[test]
    fn integral_floats_count_as_integers() {
        let position = with(r#","satellites":2.0,"priority":1e0,"event_id":247.0"#).unwrap();
        assert_eq!(position.satellites, Some(2));
        assert_eq!(position.priority, Some(1));
        assert_eq!(position.event_id, Some(247));
        assert_eq!(field_of(with(r#","satellites":1.5"#)), "satellites");
        assert_eq!(field_of(with(r#","event_id":2147483648"#)), "event_id");
        assert_eq!(field_of(with(r#","event_id":-1"#)), "event_id");
        assert_eq!(field_of(with(r#","priority":3"#)), "priority");
        assert_eq!(field_of(with(r#","priority":"1""#)), "priority");
        assert_eq!(field_of(with(r#","satellites":1e300"#)), "satellites");
    }

    #[test]
    fn reals() {
        let position = with(r#","altitude":-12.5,"angle":360,"speed":0"#).unwrap();
        assert_eq!(position.altitude, Some(-12.5));
        assert_eq!(position.angle, Some(360.0));
        assert_eq!(position.speed, Some(0.0));
        assert_eq!(field_of(with(r#","altitude":1e39"#)), "altitude");
        assert_eq!(
            with(r#","altitude":3.4e38"#).unwrap().altitude,
            Some(3.4e38)
        );
        assert_eq!(field_of(with(r#","angle":360.5"#)), "angle");
        assert_eq!(field_of(with(r#","angle":-0.1"#)), "angle");
        assert_eq!(field_of(with(r#","speed":-1"#)), "speed");
        assert_eq!(field_of(with(r#","speed":1e40"#)), "speed");
        assert_eq!(field_of(with(r#","speed":true"#)), "speed");
    }

    #[test]
    fn reasons_read_well() {
        let payload = br#"{"device_id":"a","timestamp":1,"latitude":91,"longitude":0}"#;
        let error = decode_payload(payload).unwrap_err();
        assert_eq!(error.to_string(), "latitude: 91 is out of range -90..=90");
        let payload =
            br#"{"device_id":"a","timestamp":"2026-11-29T10:15:30","latitude":0,"longitude":0}"#;
        let error = decode_payload(payload).unwrap_err();
        assert_eq!(error.field, "timestamp");
        assert!(error.reason.contains("no time zone"), "{error}");
    }

    #[test]
    fn duplicate_fields_name_the_field() {
        assert_eq!(field_of(with(r#","latitude":1"#)), "latitude");
        assert_eq!(
            field_of(with(r#","attributes":{},"attributes":{}"#)),
            "attributes"
        );
        // Escaped spellings of a name are the same name.
        assert_eq!(field_of(with(r#","device\u005fid":"b""#)), "device_id");
        // Unknown fields may repeat.
        assert!(with(r#","x":1,"x":2"#).is_ok());
    }

    #[test]
    fn device_id_rules() {
        let id = |id: &str| {
            decode_payload(
                serde_json::json!({"device_id": id, "timestamp": 0, "latitude": 0, "longitude": 0})
                    .to_string()
                    .as_bytes(),
            )
        };
        // 64 characters, counted as characters rather than bytes.
        assert!(id(&"é".repeat(64)).is_ok());
        assert_eq!(field_of(id(&"é".repeat(65))), "device_id");
        assert_eq!(field_of(id("a\0b")), "device_id");
        assert_eq!(field_of(id("")), "device_id");
        assert_eq!(id("tab\there").unwrap().device_id, "tab\there");
    }

    #[test]
    fn timestamp_forms() {
        let ts = |value: &str| {
            decode_payload(
                format!(r#"{{"device_id":"a","timestamp":{value},"latitude":0,"longitude":0}}"#)
                    .as_bytes(),
            )
            .map(|p| p.ts_micros)
        };
        assert_eq!(ts("1795947330123"), Ok(1_795_947_330_123_000));
        assert_eq!(ts("-1"), Ok(-1000));
        assert_eq!(ts("1.7e12"), Ok(1_700_000_000_000_000));
        assert_eq!(ts(r#""1969-12-31T23:59:59.999Z""#), Ok(-1000));
        assert_eq!(ts("-210866803200000"), Ok(MIN_TS_MICROS));
        for bad in [
            "-210866803200001",
            "1.5",
            "18446744073709551615",
            "1e300",
            "true",
            "[1]",
            r#""""#,
            r#""2026-11-29T10:15:30""#,
        ] {
            assert_eq!(
                field_of(ts(bad).map(|_| unreachable!())),
                "timestamp",
                "{bad}"
            );
        }
    }

    #[test]
    fn payload_level_failures() {
        for payload in [
            &b""[..],
            b"   ",
            b"{",
            b"[1,2,3]",
            b"null",
            b"\"x\"",
            b"{}x",
            b"{\"device_id\":\"\xff\"}",
            b"{\"x\":\"\xc3\",\"device_id\":\"a\",\"timestamp\":1,\"latitude\":0,\"longitude\":0}",
            br#"{"device_id":"\ud800"}"#,
            b"\xef\xbb\xbf{}",
            br#"{"latitude":NaN}"#,
            br#"{"latitude":1e400}"#,
        ] {
            let error = decode_payload(payload).unwrap_err();
            assert_eq!(
                error.field,
                "payload",
                "{:?}: {error}",
                String::from_utf8_lossy(payload)
            );
        }
        // In the attributes, the scanner refuses it, naming the field.
        let error = decode_payload(br#"{"attributes":{"a":"\udc00"}}"#).unwrap_err();
        assert_eq!(error.field, "attributes", "{error}");
        let entry = Entry {
            id: crate::StreamId::new(1, 0),
            fields: vec![("data".into(), bytes::Bytes::from_static(b"{}"))],
        };
        assert_eq!(decode_entry(&entry).unwrap_err().field, "payload");
    }

    #[test]
    fn attributes_text_holds_no_slack() {
        // a long payload with short attributes: the text must not keep the payload-sized buffer
        let filler = "x".repeat(2000);
        let position = with(&format!(
            r#","note":"{filler}","attributes":{{"io_239":1}}"#
        ))
        .unwrap();
        assert_eq!(position.attributes, r#"{"io_239":1}"#);
        assert!(
            position.attributes.capacity() <= position.attributes.len() + 64,
            "capacity {} for {} bytes",
            position.attributes.capacity(),
            position.attributes.len()
        );
    }

    #[test]
    fn attribute_numbers_are_kept_as_written() {
        let position =
            with(r#","attributes" : { "16" : 18446744073709551617 , "9" : [1.50, 1E+2, -0.0] }"#)
                .unwrap();
        assert_eq!(
            position.attributes,
            r#"{"16":18446744073709551617,"9":[1.50,1E+2,-0.0]}"#
        );
        let error = with(r#","attributes":{"16":1e1000000}"#).unwrap_err();
        assert_eq!(
            error.to_string(),
            "attributes: attribute \"16\": number 1e1000000 is out of the range PostgreSQL's \
             numeric holds (at most 131072 digits before the decimal point and 16383 after it, an \
             exponent below 1073741823 in magnitude)"
        );
    }

    #[test]
    fn attributes_nest_as_deep_as_serde_json_allowed_a_payload() {
        // The payload object, the attributes object and 125 levels inside it: 127 levels.
        let nested = |levels: usize| {
            with(&format!(
                r#","attributes":{{"a":{}1{}}}"#,
                "[".repeat(levels),
                "]".repeat(levels)
            ))
        };
        assert!(nested(125).is_ok());
        assert_eq!(field_of(nested(126)), "attributes");
    }

    #[test]
    fn numbers_read_as_serde_json_read_them() {
        // `-0` is the float -0.0 (a sign PostgreSQL keeps), integers beyond 64 bits are floats.
        let position = with(r#","altitude":-0,"angle":0,"speed":18446744073709551616"#).unwrap();
        assert!(position
            .altitude
            .is_some_and(|a| a == 0.0 && a.is_sign_negative()));
        assert!(position.angle.is_some_and(|a| a.is_sign_positive()));
        assert_eq!(position.speed, Some(18446744073709551616.0));
        let payload = br#"{"device_id":"a","timestamp":1,"latitude":-0.0,"longitude":-0}"#;
        let position = decode_payload(payload).unwrap();
        assert!(position.latitude.is_sign_negative() && position.longitude.is_sign_negative());
        // Nearest doubles, underflow to zero, overflow refused as not JSON (in a known field only).
        let payload = br#"{"device_id":"a","timestamp":1,"latitude":54.68715710000000000000001,"longitude":1e-400}"#;
        let position = decode_payload(payload).unwrap();
        assert_eq!(position.latitude, 54.6871571);
        assert_eq!(position.longitude, 0.0);
        assert_eq!(field_of(with(r#","altitude":1e400"#)), "payload");
        assert_eq!(field_of(with(r#","altitude":-1.8e308"#)), "payload");
        assert!(with(r#","x":1e400"#).is_ok());
        assert_eq!(
            with(r#","timestamp":-9223372036854775808"#)
                .unwrap_err()
                .field,
            "timestamp"
        );
        assert_eq!(
            field_of(with(r#","satellites":-9223372036854775809"#)),
            "satellites"
        );
    }

    #[test]
    fn failures_are_classified_as_before() {
        // A duplicate scalar is named once its value is read (a bad value is the payload's); a
        // second `attributes` at its key.
        assert_eq!(field_of(with(r#","latitude":1e400"#)), "payload");
        assert_eq!(field_of(with(r#","latitude":[1,]"#)), "payload");
        assert_eq!(
            field_of(with(r#","attributes":{},"attributes""#)),
            "attributes"
        );
        // Unpaired surrogates: refused in what is decoded (keys, known fields' strings and the
        // keys of an object they hold), ignored in what is skipped.
        for extra in [
            r#","\ud800":1"#,
            r#","device_id":"\u0000\udc00""#,
            r#","altitude":{"\ud800":1}"#,
        ] {
            assert_eq!(field_of(with(extra)), "payload", "{extra}");
        }
        for extra in [
            r#","x":"\ud800""#,
            r#","x":{"\ud800":1}"#,
            r#","x":["\ud800"]"#,
        ] {
            assert!(with(extra).is_ok(), "{extra}");
        }
        assert_eq!(field_of(with(r#","altitude":{"a":"\ud800"}"#)), "altitude");
        // In the attributes, a grammar failure anywhere in the value wins over a broken rule
        // before it; what comes after the value is not read.
        assert_eq!(
            field_of(with(r#","attributes":{"a":"\u0000","b":[1,]}"#)),
            "payload"
        );
        let nested = format!(
            r#","attributes":{{"a":{}1{},"b":01}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        assert_eq!(field_of(with(&nested)), "payload");
        assert_eq!(
            decode_payload(br#"{"attributes":{"a":"\u0000"}}}"#)
                .unwrap_err()
                .field,
            "attributes"
        );
        // Unknown fields nest to any depth; a known field holding a container has the wrong type.
        let deep = |key: &str| {
            with(&format!(
                r#","{key}":{}1{}"#,
                "[".repeat(100_000),
                "]".repeat(100_000)
            ))
        };
        assert!(deep("x").is_ok());
        assert_eq!(field_of(deep("altitude")), "altitude");
    }

    #[test]
    fn payload_reasons_keep_serde_json_words() {
        let reason = |payload: &[u8]| decode_payload(payload).unwrap_err().to_string();
        assert_eq!(
            reason(br#"{"device_id":"#),
            "payload: is truncated JSON (EOF while parsing a value at line 1 column 13)"
        );
        assert_eq!(
            reason(b"{\n\"a\" 1}"),
            "payload: is not valid JSON (expected `:` at line 2 column 5)"
        );
        assert_eq!(
            reason(b"[1,2,3]"),
            "payload: is not a JSON object (got an array at line 1 column 1)"
        );
        assert_eq!(
            reason(br#"{"latitude":1e400}"#),
            "payload: is not valid JSON (number out of range at line 1 column 13)"
        );
        assert_eq!(
            reason(br#"{"x\ud800":1}"#),
            "payload: is not valid JSON (unpaired UTF-16 surrogate escape \\ud800 in a string at \
             line 1 column 4)"
        );
    }

    #[test]
    fn unknown_fields_of_any_shape_are_skipped() {
        let position = with(r#","codec":142,"x":{"y":[1,{"z":null}]},"s":"\u0000""#).unwrap();
        assert_eq!(position.attributes, "{}");
    }
}
