//! The payload's top level: one pass over the JSON object into typed slots, then per-field checks.
//!
//! Why a hand-written visitor instead of `#[derive(Deserialize)]` or a `serde_json::Value`:
//! - no tree is built: each known field is read into a small [`Scalar`] (strings borrowed from the
//!   payload when they have no escapes), unknown fields are skipped with `IgnoredAny`, and
//!   `attributes` is captured as raw text borrowed from the payload (`&RawValue`: serde_json checks
//!   its grammar) and transcoded as soon as it is read (see `attributes.rs`);
//! - every failure names its field. A derive would report a wrong type or a duplicate key as a
//!   serde error that only says "invalid type"; here the type is checked after parsing, against the
//!   contract, and semantic failures found during parsing (duplicate keys, bad attributes) are left
//!   in a side channel that `decode_payload` reads before falling back to field `payload`.
//!
//! Numbers: serde_json (without `arbitrary_precision`) hands over a non-negative integer as `u64`,
//! a negative one as `i64`, and anything else (`1.5`, `2.0`, `1e3`, integers beyond 64 bits) as
//! `f64`. An integer field accepts a float with a zero fraction (`2.0`, `1e1`): JSON has a single
//! number type, and to the producer (JavaScript) `2.0` and `2` are the same value. `1.5` is
//! refused.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::attributes;
use super::text::{bounded, fmt_bounded};
use super::timestamp;
use crate::{DecodeError, Field, Position, StreamId};

/// A top-level value as parsed, before its field's checks; containers are skipped, not kept.
#[derive(Debug, PartialEq)]
pub(crate) enum Scalar<'de> {
    /// JSON `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A non-negative integer that fits 64 bits.
    U64(u64),
    /// A negative integer that fits 64 bits.
    I64(i64),
    /// Any other number (always finite: serde_json refuses overflowing literals).
    F64(f64),
    /// A string, borrowed from the payload unless it had escapes.
    Str(Cow<'de, str>),
    /// An array (its content is skipped).
    Array,
    /// An object (its content is skipped).
    Object,
}

impl Scalar<'_> {
    /// "a string", "a number", ...: the JSON type, for error messages.
    fn kind(&self) -> &'static str {
        match self {
            Scalar::Null => "null",
            Scalar::Bool(_) => "a boolean",
            Scalar::U64(_) | Scalar::I64(_) | Scalar::F64(_) => "a number",
            Scalar::Str(_) => "a string",
            Scalar::Array => "an array",
            Scalar::Object => "an object",
        }
    }

    fn number(&self) -> Option<f64> {
        match *self {
            Scalar::U64(v) => Some(v as f64),
            Scalar::I64(v) => Some(v as f64),
            Scalar::F64(v) => Some(v),
            _ => None,
        }
    }

    /// The value of an integral number (a float must have a zero fraction); `f64` beyond `i128`
    /// saturates, which every caller's range check then refuses.
    fn integer(&self) -> Option<i128> {
        match *self {
            Scalar::U64(v) => Some(i128::from(v)),
            Scalar::I64(v) => Some(i128::from(v)),
            Scalar::F64(v) if v.fract() == 0.0 => Some(v as i128),
            _ => None,
        }
    }
}

/// Writes a number as JSON would (`91`, `-1.5`, `1e300`), a string quoted and bounded.
impl fmt::Display for Scalar<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::U64(v) => write!(f, "{v}"),
            Scalar::I64(v) => write!(f, "{v}"),
            Scalar::F64(v) => match serde_json::Number::from_f64(*v) {
                Some(n) => write!(f, "{n}"),
                None => write!(f, "{v}"),
            },
            Scalar::Str(s) => fmt_bounded(s, 40, f),
            other => f.write_str(other.kind()),
        }
    }
}

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Bool(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Scalar::U64(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Scalar::I64(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Scalar::F64(v))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Array)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Object)
    }
}

/// A top-level key: a scalar field, `attributes`, or a key outside the contract.
#[derive(Clone, Copy)]
enum Key {
    Scalar(Field),
    Attributes,
    Unknown,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl Visitor<'_> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E>(self, v: &str) -> Result<Key, E> {
        Ok(match Field::from_key(v) {
            Some(Field::Attributes) => Key::Attributes,
            Some(field) => Key::Scalar(field),
            None => Key::Unknown,
        })
    }
}

/// The payload as parsed: each scalar field's value if present, and the attributes text.
#[derive(Debug, Default)]
pub(crate) struct Parsed<'de> {
    /// Indexed by [`Field::slot`].
    scalars: [Option<Scalar<'de>>; Field::SCALARS.len()],
    /// The attributes' JSON text (borrowed when nothing was rewritten); `None` when absent or
    /// `null`.
    attributes: Option<Cow<'de, str>>,
}

/// Reads the payload object; semantic failures go to `error` (see the module doc).
pub(crate) struct PayloadVisitor<'e> {
    /// Side channel: set when the visitor fails for a reason that names a field.
    pub error: &'e mut Option<DecodeError>,
}

impl<'de> Visitor<'de> for PayloadVisitor<'_> {
    type Value = Parsed<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Parsed<'de>, A::Error> {
        let mut parsed = Parsed::default();
        let mut attributes_seen = false;
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Scalar(field) => {
                    let value = map.next_value::<Scalar<'de>>()?;
                    match field.slot().and_then(|slot| parsed.scalars.get_mut(slot)) {
                        Some(entry @ None) => *entry = Some(value),
                        _ => return Err(duplicate(self.error, field)),
                    }
                }
                Key::Attributes => {
                    if attributes_seen {
                        return Err(duplicate(self.error, Field::Attributes));
                    }
                    attributes_seen = true;
                    let raw = map.next_value::<&'de RawValue>()?;
                    parsed.attributes = match attributes::transcode(raw.get()) {
                        Ok(text) => text,
                        Err(error) => {
                            *self.error = Some(error);
                            return Err(de::Error::custom("invalid attributes"));
                        }
                    };
                }
                Key::Unknown => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(parsed)
    }
}

fn duplicate<E: de::Error>(error: &mut Option<DecodeError>, field: Field) -> E {
    *error = Some(DecodeError::new(
        field,
        "appears more than once in the payload",
    ));
    E::custom(format_args!("duplicate field {field}"))
}

impl<'de> Parsed<'de> {
    /// The value of scalar field `field`, with the field.
    fn take(&mut self, field: Field) -> (Field, Option<Scalar<'de>>) {
        let value = field
            .slot()
            .and_then(|slot| self.scalars.get_mut(slot))
            .and_then(Option::take);
        (field, value)
    }

    /// Checks every field against the contract and builds the position.
    pub(crate) fn into_position(mut self) -> Result<Position, DecodeError> {
        let device_id = device_id(self.take(Field::DeviceId))?;
        let ts_micros = timestamp(self.take(Field::Timestamp))?;
        let latitude = coordinate(self.take(Field::Latitude), 90.0)?;
        let longitude = coordinate(self.take(Field::Longitude), 180.0)?;
        let altitude = real(self.take(Field::Altitude), Bounds::Any)?;
        let angle = real(self.take(Field::Angle), Bounds::Range(0.0, 360.0))?;
        let speed = real(self.take(Field::Speed), Bounds::NonNegative)?;
        let satellites = integer(self.take(Field::Satellites), 0, 255)?;
        let priority = integer(self.take(Field::Priority), 0, 2)?;
        let event_id = integer(self.take(Field::EventId), 0, i32::MAX)?;
        let attributes = match self.attributes {
            Some(Cow::Borrowed(text)) => text.to_owned(),
            Some(Cow::Owned(text)) => right_sized(text),
            None => String::from("{}"),
        };
        Ok(Position {
            source: StreamId::default(),
            redrives: 0,
            device_id,
            ts_micros,
            latitude,
            longitude,
            altitude,
            angle,
            speed,
            satellites,
            priority,
            event_id,
            attributes,
        })
    }
}

/// Longest accepted `device_id`, in characters (Unicode scalar values).
pub const MAX_DEVICE_ID_CHARS: usize = 64;

fn required<'a>(field: Field, value: Option<Scalar<'a>>) -> Result<Scalar<'a>, DecodeError> {
    match value {
        None => Err(DecodeError::new(field, "is missing")),
        Some(Scalar::Null) => Err(DecodeError::new(field, "is null but required")),
        Some(value) => Ok(value),
    }
}

fn wrong_type(field: Field, expected: &str, got: &Scalar<'_>) -> DecodeError {
    DecodeError::new(field, format!("must be {expected}, got {}", got.kind()))
}

fn device_id((field, value): (Field, Option<Scalar<'_>>)) -> Result<String, DecodeError> {
    let text = match required(field, value)? {
        Scalar::Str(text) => text,
        other => return Err(wrong_type(field, "a string", &other)),
    };
    if text.is_empty() {
        return Err(DecodeError::new(field, "is empty"));
    }
    if text.chars().nth(MAX_DEVICE_ID_CHARS).is_some() {
        return Err(DecodeError::new(
            field,
            format!(
                "{} is longer than {MAX_DEVICE_ID_CHARS} characters",
                bounded(&text, MAX_DEVICE_ID_CHARS)
            ),
        ));
    }
    if text.contains('\0') {
        return Err(DecodeError::new(
            field,
            "contains a NUL character (PostgreSQL text cannot store it)",
        ));
    }
    Ok(text.into_owned())
}

fn timestamp((field, value): (Field, Option<Scalar<'_>>)) -> Result<i64, DecodeError> {
    let value = required(field, value)?;
    let micros = match &value {
        Scalar::Str(text) => timestamp::parse_iso(text),
        number @ (Scalar::U64(_) | Scalar::I64(_) | Scalar::F64(_)) => match number.integer() {
            Some(millis) => timestamp::from_epoch_millis(millis),
            None => Err(format!("{number} is not a whole number of epoch milliseconds").into()),
        },
        other => {
            return Err(wrong_type(
                field,
                "an ISO-8601 string or epoch milliseconds",
                other,
            ))
        }
    };
    micros.map_err(|reason| DecodeError::new(field, reason))
}

fn coordinate((field, value): (Field, Option<Scalar<'_>>), limit: f64) -> Result<f64, DecodeError> {
    let value = required(field, value)?;
    let number = value
        .number()
        .ok_or_else(|| wrong_type(field, "a number", &value))?;
    if !(-limit..=limit).contains(&number) {
        return Err(DecodeError::new(
            field,
            format!("{value} is out of range -{limit}..={limit}"),
        ));
    }
    Ok(number)
}

/// The values a `real` column accepts besides being finite and representable as `f32`.
enum Bounds {
    Any,
    NonNegative,
    Range(f64, f64),
}

/// An optional `real` column: finite, representable as `f32`, within `bounds`.
fn real(
    (field, value): (Field, Option<Scalar<'_>>),
    bounds: Bounds,
) -> Result<Option<f32>, DecodeError> {
    let value = match value {
        None | Some(Scalar::Null) => return Ok(None),
        Some(value) => value,
    };
    let number = value
        .number()
        .ok_or_else(|| wrong_type(field, "a number", &value))?;
    match bounds {
        Bounds::Any => {}
        Bounds::NonNegative if number < 0.0 => {
            return Err(DecodeError::new(field, format!("{value} is negative")));
        }
        Bounds::NonNegative => {}
        Bounds::Range(low, high) if !(low..=high).contains(&number) => {
            return Err(DecodeError::new(
                field,
                format!("{value} is out of range {low}..={high}"),
            ));
        }
        Bounds::Range(..) => {}
    }
    let single = number as f32;
    if !single.is_finite() {
        return Err(DecodeError::new(
            field,
            format!("{value} does not fit a real (32-bit float)"),
        ));
    }
    Ok(Some(single))
}

/// An optional integer column of type `T`, within `low..=high`.
fn integer<T>(
    (field, value): (Field, Option<Scalar<'_>>),
    low: T,
    high: T,
) -> Result<Option<T>, DecodeError>
where
    T: Copy + fmt::Display + Into<i128> + TryFrom<i128>,
{
    let value = match value {
        None | Some(Scalar::Null) => return Ok(None),
        Some(value) => value,
    };
    let number = match value.integer() {
        Some(number) => number,
        None if value.number().is_some() => {
            return Err(DecodeError::new(
                field,
                format!("{value} is not an integer"),
            ))
        }
        None => return Err(wrong_type(field, "an integer", &value)),
    };
    if number < low.into() || number > high.into() {
        return Err(DecodeError::new(
            field,
            format!("{value} is out of range {low}..={high}"),
        ));
    }
    T::try_from(number)
        .map(Some)
        .map_err(|_| DecodeError::new(field, format!("{value} is out of range {low}..={high}")))
}

/// Rewritten attributes text (sentinels resolved, whitespace dropped) is written into a buffer
/// reserved at the raw text's length (so it never grows while being written), which the rewriting
/// leaves partly unused (a Node `Buffer.toJSON()` array shrinks to a third). The row then waits in
/// memory until its epoch commits, up to `MAX_INFLIGHT_EPOCHS × READ_COUNT` rows per worker, so
/// the slack is handed back with one exact-size copy (an allocator's in-place shrink would keep the
/// block). Text that needed no rewriting is copied once, at its exact size.
fn right_sized(text: String) -> String {
    const SLACK: usize = 64;
    if text.capacity() - text.len() > SLACK {
        String::from(text.as_str())
    } else {
        text
    }
}

/// Parses the payload bytes: one JSON object, nothing but whitespace after it. A failure that
/// names a field is left in `error`; any other failure is the payload's (not JSON, not an object).
pub(crate) fn parse<'de>(
    payload: &'de [u8],
    error: &mut Option<DecodeError>,
) -> Result<Parsed<'de>, serde_json::Error> {
    // One UTF-8 check of the whole payload (word-at-a-time over ASCII), then serde_json's `str`
    // reader, which trusts it: parsing from bytes would validate every string it reads again,
    // and that was a tenth of the decoder's time.
    let text = match std::str::from_utf8(payload) {
        Ok(text) => text,
        Err(utf8) => {
            *error = Some(DecodeError::new(
                Field::Payload,
                format!("is not UTF-8 ({utf8})"),
            ));
            return Err(de::Error::custom("payload is not UTF-8"));
        }
    };
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let parsed = de::Deserializer::deserialize_map(&mut deserializer, PayloadVisitor { error })?;
    deserializer.end()?;
    Ok(parsed)
}
