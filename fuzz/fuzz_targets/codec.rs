//! Fuzzes the wire codec: any bytes as a payload must decode or be refused, never panic, and an
//! accepted payload must yield attributes PostgreSQL's jsonb would take (valid JSON, no NUL, numbers
//! as written and in numeric's range) and re-encode to a payload that decodes to the same row.
#![no_main]

use dataflow::codec::{decode_payload, encode_payload};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(position) = decode_payload(data) {
        assert!(!position.device_id.is_empty() && position.device_id.chars().count() <= 64);
        assert!((-90.0..=90.0).contains(&position.latitude));
        assert!((-180.0..=180.0).contains(&position.longitude));
        assert!(!position.attributes.contains('\0'));
        // Valid JSON text for an object. (Parsed as raw text: attribute numbers are copied as
        // written and may exceed what an f64 holds, which jsonb's numeric takes but serde_json's
        // Value cannot.)
        let parsed: Result<Box<serde_json::value::RawValue>, _> =
            serde_json::from_str(&position.attributes);
        assert!(parsed.is_ok(), "{}", position.attributes);
        assert!(position.attributes.starts_with('{'), "{}", position.attributes);
        // The codec accepts its own output: the attributes hold no NUL escape, no unpaired
        // surrogate, no number out of range and no sentinel left to resolve, and the dead-letter
        // encoding gives the same row back.
        let encoded = encode_payload(&position);
        assert_eq!(
            decode_payload(encoded.as_bytes()).as_ref(),
            Ok(&position),
            "{encoded}"
        );
    }
});
