//! Fuzzes the wire codec: any bytes as a payload must decode or be refused, never panic, and an
//! accepted payload must yield attributes PostgreSQL's jsonb would take (valid JSON, no NUL).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(position) = dataflow::codec::decode_payload(data) {
        assert!(!position.device_id.is_empty() && position.device_id.chars().count() <= 64);
        assert!((-90.0..=90.0).contains(&position.latitude));
        assert!((-180.0..=180.0).contains(&position.longitude));
        assert!(!position.attributes.contains('\0'));
        // Valid JSON text for an object. (Parsed as raw text: a __bigint can exceed what an f64
        // holds, which jsonb's numeric takes but serde_json's Value cannot.)
        let parsed: Result<Box<serde_json::value::RawValue>, _> =
            serde_json::from_str(&position.attributes);
        assert!(parsed.is_ok(), "{}", position.attributes);
        assert!(position.attributes.starts_with('{'), "{}", position.attributes);
    }
});
