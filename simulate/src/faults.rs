//! Fault injection: the ways an invalid payload breaks the contract, each one a record edited
//! (or its text cut) so that the codec must refuse it, naming the field.

use rand::rngs::StdRng;
use rand::Rng;

use crate::format::push_timestamp_iso;
use crate::record::{Attr, Record, Timestamp, DEFAULT_START_MS};

/// Ways an invalid payload breaks the contract.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Fault {
    Latitude,
    Longitude,
    LatitudeType,
    NoDeviceId,
    EmptyDeviceId,
    Timestamp,
    TimestampNoZone,
    BigIntLetters,
    BadBase64,
    BufferByte,
    NotAnObject,
    Truncated,
}

pub(crate) const FAULTS: [Fault; 12] = [
    Fault::Latitude,
    Fault::Longitude,
    Fault::LatitudeType,
    Fault::NoDeviceId,
    Fault::EmptyDeviceId,
    Fault::Timestamp,
    Fault::TimestampNoZone,
    Fault::BigIntLetters,
    Fault::BadBase64,
    Fault::BufferByte,
    Fault::NotAnObject,
    Fault::Truncated,
];

impl Record {
    /// The payload broken by `fault`.
    pub(crate) fn corrupt(&mut self, fault: Fault, rng: &mut StdRng) -> String {
        match fault {
            Fault::Latitude => {
                let value = if rng.random_bool(0.5) { "91" } else { "-90.5" };
                self.write(Some(value), None)
            }
            Fault::Longitude => self.write(None, Some("181.25")),
            Fault::LatitudeType => {
                let text = format!("\"{}\"", self.latitude);
                self.write(Some(&text), None)
            }
            Fault::NoDeviceId => {
                self.device_id = None;
                self.to_json()
            }
            Fault::EmptyDeviceId => {
                self.device_id = Some(String::new());
                self.to_json()
            }
            Fault::Timestamp => {
                let bad = [
                    "\"2026-13-01T00:00:00.000Z\"",
                    "\"2026-02-30T10:15:30.123Z\"",
                    "\"yesterday\"",
                    "\"\"",
                    "\"2026-11-29T25:15:30.123Z\"",
                ];
                let raw = bad.get(rng.random_range(0..bad.len())).copied();
                self.timestamp = Timestamp::Raw(raw.unwrap_or("\"yesterday\"").to_owned());
                self.to_json()
            }
            Fault::TimestampNoZone => {
                let mut iso = String::new();
                let ms = match self.timestamp {
                    Timestamp::Iso(ms) | Timestamp::Millis(ms) => ms,
                    Timestamp::Raw(_) => DEFAULT_START_MS,
                };
                push_timestamp_iso(&mut iso, ms);
                // `"…123Z"` -> `"…123"`: a local time, which the contract refuses.
                let raw = iso.replace("Z\"", "\"");
                self.timestamp = Timestamp::Raw(raw);
                self.to_json()
            }
            Fault::BigIntLetters => {
                self.replace(11, Attr::Raw("{\"__bigint\":\"89370abc12\"}".to_owned()));
                self.to_json()
            }
            Fault::BadBase64 => {
                self.replace(78, Attr::Raw("{\"__buffer_b64\":\"AQID*BA!\"}".to_owned()));
                self.to_json()
            }
            Fault::BufferByte => {
                let raw = "{\"type\":\"Buffer\",\"data\":[1,2,256]}".to_owned();
                self.replace(78, Attr::Raw(raw));
                self.to_json()
            }
            Fault::NotAnObject => match rng.random_range(0..5) {
                0 => format!("[{}]", self.to_json()),
                1 => "\"position\"".to_owned(),
                2 => "42".to_owned(),
                3 => "null".to_owned(),
                _ => "true".to_owned(),
            },
            Fault::Truncated => {
                let mut text = self.to_json();
                let mut cut = text.len() / 2;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text.truncate(cut);
                text
            }
        }
    }

    fn replace(&mut self, key: u16, value: Attr) {
        if let Some(slot) = self.attributes.iter_mut().find(|(k, _)| *k == key) {
            slot.1 = value;
        } else {
            self.attributes.push((key, value));
        }
    }
}
