//! One fix as a contract payload, written directly as JSON text (not through
//! `serde_json::Value`): the output is byte-for-byte fixed, a big integer can never become a
//! float, and a record costs a few microseconds, well below what a Redis pipeline takes to carry
//! it.

use std::fmt::Write as _;

use crate::format::{push_base64, push_timestamp_iso};

/// How the timestamp is written.
/// The first position's time when `SimulateArgs::start_ms` is not set: 2026-01-01T00:00:00Z.
/// (`run` sets it to the current time; a bare `Generator` stays reproducible.) Here, below both
/// the generator and the faults, which both need it.
pub const DEFAULT_START_MS: i64 = 1_767_225_600_000;

#[derive(Debug, Clone)]
pub(crate) enum Timestamp {
    /// `Date.toJSON()` text.
    Iso(i64),
    /// Epoch milliseconds.
    Millis(i64),
    /// Raw JSON (a corrupted value).
    Raw(String),
}

/// An IO attribute value.
#[derive(Debug, Clone)]
pub(crate) enum Attr {
    Int(i64),
    Float(f64),
    Text(String),
    /// `{"__bigint":"<digits>"}`.
    BigInt(String),
    /// `{"__buffer_b64":"<base64>"}`.
    Base64(Vec<u8>),
    /// `{"type":"Buffer","data":[...]}`.
    NodeBuffer(Vec<u8>),
    List(Vec<Attr>),
    /// Raw JSON (a corrupted value).
    Raw(String),
}

impl Attr {
    fn write(&self, out: &mut String) {
        match self {
            Attr::Int(value) => {
                let _ = write!(out, "{value}");
            }
            Attr::Float(value) => push_float(out, *value),
            Attr::Text(text) => push_string(out, text),
            Attr::BigInt(digits) => {
                out.push_str("{\"__bigint\":");
                push_string(out, digits);
                out.push('}');
            }
            Attr::Base64(bytes) => {
                out.push_str("{\"__buffer_b64\":\"");
                push_base64(out, bytes);
                out.push_str("\"}");
            }
            Attr::NodeBuffer(bytes) => {
                out.push_str("{\"type\":\"Buffer\",\"data\":[");
                for (i, byte) in bytes.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{byte}");
                }
                out.push_str("]}");
            }
            Attr::List(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Attr::Raw(json) => out.push_str(json),
        }
    }
}

/// A finite float as JSON (Rust's `Display` writes the shortest text that round-trips, without an
/// exponent); a non-finite one, which the generator never produces, as 0.
pub(crate) fn push_float(out: &mut String, value: f64) {
    if value.is_finite() {
        let _ = write!(out, "{value}");
    } else {
        out.push('0');
    }
}

/// A JSON string literal, escaped.
pub(crate) fn push_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// One fix, before it is written as JSON (corruptions edit it first).
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub(crate) device_id: Option<String>,
    pub(crate) timestamp: Timestamp,
    pub(crate) latitude: f64,
    pub(crate) longitude: f64,
    pub(crate) altitude: i64,
    pub(crate) angle: i64,
    pub(crate) satellites: u8,
    pub(crate) speed: i64,
    pub(crate) priority: u8,
    pub(crate) event_id: u16,
    pub(crate) attributes: Vec<(u16, Attr)>,
}

impl Record {
    /// The payload, with fields in the order of the contract's example.
    pub(crate) fn to_json(&self) -> String {
        self.write(None, None)
    }

    /// Writes the record; `latitude` / `longitude` override the values with raw JSON.
    pub(crate) fn write(&self, latitude: Option<&str>, longitude: Option<&str>) -> String {
        let mut out = String::with_capacity(640);
        out.push('{');
        if let Some(id) = &self.device_id {
            out.push_str("\"device_id\":");
            push_string(&mut out, id);
            out.push(',');
        }
        out.push_str("\"timestamp\":");
        match &self.timestamp {
            Timestamp::Iso(ms) => push_timestamp_iso(&mut out, *ms),
            Timestamp::Millis(ms) => {
                let _ = write!(out, "{ms}");
            }
            Timestamp::Raw(json) => out.push_str(json),
        }
        out.push_str(",\"latitude\":");
        match latitude {
            Some(raw) => out.push_str(raw),
            None => push_float(&mut out, self.latitude),
        }
        out.push_str(",\"longitude\":");
        match longitude {
            Some(raw) => out.push_str(raw),
            None => push_float(&mut out, self.longitude),
        }
        let _ = write!(
            out,
            ",\"altitude\":{},\"angle\":{},\"satellites\":{},\"speed\":{},\"priority\":{},\"event_id\":{}",
            self.altitude, self.angle, self.satellites, self.speed, self.priority, self.event_id
        );
        out.push_str(",\"attributes\":{");
        for (i, (key, value)) in self.attributes.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "\"{key}\":");
            value.write(&mut out);
        }
        out.push_str("}}");
        out
    }
}
