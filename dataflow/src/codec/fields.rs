//! The payload's top level: one pass over the JSON object into typed slots, then per-field checks.
//!
//! Why one hand-written pass (no serde, no `serde_json::Value`), given a budget of a few
//! microseconds of CPU per record: serde_json's visitor machinery and its own grammar pass over
//! the attributes (which the attributes scanner then read a second time) were the larger part of
//! decoding. Here one [`Scanner`] reads the payload's bytes once, front to back:
//! - each key is compared as written against the contract's names (a key with escapes is unescaped
//!   first: `"device\u005fid"` is `device_id`); a known field's value is read into a small
//!   [`Scalar`] (strings borrowed from the payload when they have no escapes); an unknown field's
//!   value is skipped, its grammar checked, at any depth; `attributes` is handed to the
//!   transcoder (`attributes.rs`), which reads it on from the same position, checking and copying
//!   it;
//! - every failure names its field: a duplicate key names it (a scalar once its value is read,
//!   `attributes` at its second key), a broken attributes rule names `attributes`, and a grammar
//!   failure anywhere names `payload` (see `scanner.rs`). Types and ranges are checked after the
//!   pass, against the contract ([`Parsed::into_position`]).
//!
//! What is JSON, and how values read, is exactly what it was with serde_json (whose
//! `float_roundtrip` parser this replaced), so the same payloads decode to the same rows and fail
//! naming the same field:
//! - a non-negative integer that fits 64 bits is a `u64`, a negative one that fits is an `i64`
//!   (`-0` is the float `-0.0`), and any other number (`1.5`, `2.0`, `1e3`, integers beyond 64
//!   bits) is the `f64` nearest to its decimal text (Rust's `str::parse`, correctly rounded); a
//!   number whose nearest `f64` is infinite (`1e400`) is not valid JSON, as serde_json said. An
//!   integer field accepts a float with a zero fraction (`2.0`, `1e1`): JSON has a single number
//!   type, and to the producer (JavaScript) `2.0` and `2` are the same value. `1.5` is refused;
//! - a string a known field or any top-level key holds is decoded, so an unpaired surrogate escape
//!   (`"\ud800"`) in it is not valid JSON (as are the keys of an object a known field holds, which
//!   serde_json decoded too); in an unknown field's value it is skipped unread;
//! - the payload is one JSON object with only whitespace after it, and its UTF-8 is checked once,
//!   over the whole payload, before parsing (so a stray byte fails as `payload` wherever it sits,
//!   in an unknown field too).

use std::borrow::Cow;
use std::fmt;

use super::attributes;
use super::scanner::{Code, Number, Scanner, Str, Syntax};
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
    /// Any other number (always finite: an overflowing literal is refused while parsing).
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

/// A top-level key: a scalar field, `attributes`, or a key outside the contract.
#[derive(Clone, Copy)]
enum Key {
    Scalar(Field),
    Attributes,
    Unknown,
}

impl Key {
    /// What a key names: compared as written when it has no escapes (the usual case), else once
    /// unescaped.
    #[inline]
    fn of(key: Str<'_>) -> Key {
        let field = if key.escaped {
            Field::from_key(&key.text())
        } else {
            Field::from_key(key.inner())
        };
        match field {
            Some(Field::Attributes) => Key::Attributes,
            Some(field) => Key::Scalar(field),
            None => Key::Unknown,
        }
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

/// Parses the payload bytes: one JSON object, nothing but whitespace after it. A failure names
/// its field (a duplicate key, the attributes) or else the payload (not UTF-8, not JSON, not an
/// object).
pub(crate) fn parse(payload: &[u8]) -> Result<Parsed<'_>, DecodeError> {
    // One UTF-8 check of the whole payload (word-at-a-time over ASCII); the scanner then reads the
    // bytes of a `str`, and every slice it takes starts and ends at an ASCII byte.
    let text = std::str::from_utf8(payload)
        .map_err(|utf8| DecodeError::new(Field::Payload, format!("is not UTF-8 ({utf8})")))?;
    let mut scanner = Scanner::new(text);
    let invalid = |syntax: Syntax| syntax.into_error(text);
    scanner.open_object().map_err(invalid)?;
    let mut parsed = Parsed::default();
    let mut attributes_seen = false;
    let mut first = true;
    while scanner.next_member(first).map_err(invalid)? {
        first = false;
        let key = scanner.decoded_string().map_err(invalid)?;
        match Key::of(key) {
            Key::Scalar(field) => {
                scanner.colon().map_err(invalid)?;
                let value = scalar(&mut scanner).map_err(invalid)?;
                match field.slot().and_then(|slot| parsed.scalars.get_mut(slot)) {
                    Some(entry @ None) => *entry = Some(value),
                    _ => return Err(duplicate(field)),
                }
            }
            Key::Attributes => {
                if attributes_seen {
                    return Err(duplicate(Field::Attributes));
                }
                attributes_seen = true;
                scanner.colon().map_err(invalid)?;
                parsed.attributes = attributes::transcode(&mut scanner)?;
            }
            Key::Unknown => {
                scanner.colon().map_err(invalid)?;
                scanner.skip_value().map_err(invalid)?;
            }
        }
    }
    scanner.end().map_err(invalid)?;
    Ok(parsed)
}

#[cold]
fn duplicate(field: Field) -> DecodeError {
    DecodeError::new(field, "appears more than once in the payload")
}

/// A known field's value (see the module doc for what each kind reads as).
#[inline]
fn scalar<'a>(scanner: &mut Scanner<'a>) -> Result<Scalar<'a>, Syntax> {
    let start = scanner.pos();
    Ok(match scanner.peek() {
        b'"' => Scalar::Str(scanner.decoded_string()?.text()),
        b'-' | b'0'..=b'9' => number(scanner.number()?).ok_or(Syntax {
            at: start,
            code: Code::NumberOutOfRange,
        })?,
        b't' => {
            scanner.literal(b"true")?;
            Scalar::Bool(true)
        }
        b'f' => {
            scanner.literal(b"false")?;
            Scalar::Bool(false)
        }
        b'n' => {
            scanner.literal(b"null")?;
            Scalar::Null
        }
        b'[' => {
            scanner.skip_value()?;
            Scalar::Array
        }
        b'{' => {
            // Its keys are decoded (an unpaired surrogate in one is not valid JSON), its values
            // skipped.
            scanner.bump();
            let mut first = true;
            while scanner.next_member(first)? {
                first = false;
                scanner.decoded_string()?;
                scanner.colon()?;
                scanner.skip_value()?;
            }
            Scalar::Object
        }
        _ => return Err(scanner.unexpected(Code::ExpectedValue, Code::EofValue)),
    })
}

/// A number's value: a `u64` or `i64` when it is an integer that fits, else the nearest `f64`;
/// `None` when that is infinite.
#[inline]
fn number(number: Number<'_>) -> Option<Scalar<'_>> {
    if number.plain {
        let (negative, digits) = match number.text.strip_prefix('-') {
            Some(digits) => (true, digits),
            None => (false, number.text),
        };
        if let Ok(magnitude) = digits.parse::<u64>() {
            if !negative {
                return Some(Scalar::U64(magnitude));
            }
            // `-0` is the float `-0.0`, and below `i64::MIN` a float, as serde_json had them.
            if magnitude != 0 {
                if let Some(value) = 0i64.checked_sub_unsigned(magnitude) {
                    return Some(Scalar::I64(value));
                }
            }
        }
    }
    if !number.exponent {
        if let Some(value) = short_decimal(number.text) {
            return Some(Scalar::F64(value));
        }
    }
    let value: f64 = number.text.parse().ok()?;
    value.is_finite().then_some(Scalar::F64(value))
}

/// Exact powers of ten as `f64` (10^22 is the largest one an `f64` holds exactly).
const POWERS_OF_TEN: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// The value of a JSON number without an exponent (`54.6871571`) when its digits, the point
/// removed, are an integer of at most 2^53 and it has at most 22 decimals; else `None`.
///
/// Why: coordinates come as such decimals, and the general parser (`str::parse`, which must handle
/// any length and exponent) was a tenth of a decode. Here the integer and the power of ten are both
/// exact `f64`s, so their IEEE quotient is the decimal correctly rounded (Clinger's fast path):
/// the same `f64` as `str::parse`, bit for bit, which the tests check on random decimals.
fn short_decimal(text: &str) -> Option<f64> {
    const EXACT: u64 = 1 << 53;
    let (negative, digits) = match text.strip_prefix('-') {
        Some(digits) => (true, digits),
        None => (false, text),
    };
    let mut mantissa: u64 = 0;
    let mut decimals: Option<usize> = None;
    for (at, &byte) in digits.as_bytes().iter().enumerate() {
        if byte == b'.' {
            decimals = Some(digits.len() - at - 1);
            continue;
        }
        let digit = byte.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        mantissa = mantissa.checked_mul(10)?.checked_add(u64::from(digit))?;
    }
    if mantissa > EXACT {
        return None;
    }
    let power = *POWERS_OF_TEN.get(decimals.unwrap_or(0))?;
    let value = mantissa as f64 / power;
    Some(if negative { -value } else { value })
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
    // A text of at most 64 bytes has at most 64 characters: only a longer one is counted.
    if text.len() > MAX_DEVICE_ID_CHARS && text.chars().nth(MAX_DEVICE_ID_CHARS).is_some() {
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
/// reserved at the length of the payload from the attributes on (so it never grows while being
/// written), which the rewriting and any fields after the attributes leave partly unused (a Node
/// `Buffer.toJSON()` array shrinks to a third). The row then waits in memory until its epoch
/// commits, up to `MAX_INFLIGHT_EPOCHS × READ_COUNT` rows per worker, so the slack is handed back
/// with one exact-size copy (an allocator's in-place shrink would keep the block). Text that needed
/// no rewriting is copied once, at its exact size.
fn right_sized(text: String) -> String {
    const SLACK: usize = 64;
    if text.capacity() - text.len() > SLACK {
        String::from(text.as_str())
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parsed(text: &str) -> f64 {
        text.parse().unwrap()
    }

    #[test]
    fn short_decimals_are_the_nearest_f64() {
        for text in [
            "0",
            "-0",
            "0.0",
            "-0.0",
            "54.6871571",
            "-25.2796523",
            "180",
            "0.1",
            "0.3",
            "9007199254740992",
            "900719925474099.2",
            "0.0000000000000000000001",
            "1.797693134862315",
            "-90.0000000",
        ] {
            let value = short_decimal(text).unwrap();
            assert_eq!(value.to_bits(), parsed(text).to_bits(), "{text}");
        }
        // Beyond the fast path: more than 2^53 as digits, more than 22 decimals.
        for text in [
            "9007199254740993",
            "1.7976931348623157",
            "1.00000000000000000000001",
        ] {
            assert_eq!(short_decimal(text), None, "{text}");
        }
        // Through the scanner, a long decimal still reads as the nearest f64.
        let text = "0.90071992547409931";
        let mut scanner = Scanner::new(text);
        let value = number(scanner.number().unwrap());
        assert_eq!(value, Some(Scalar::F64(parsed(text))));
    }

    proptest! {
        #[test]
        fn short_decimals_agree_with_str_parse(
            negative in any::<bool>(),
            integer in 0u64..1_000_000_000,
            fraction in proptest::option::of("[0-9]{1,12}"),
        ) {
            let sign = if negative { "-" } else { "" };
            let text = match &fraction {
                Some(digits) => format!("{sign}{integer}.{digits}"),
                None => format!("{sign}{integer}"),
            };
            if let Some(value) = short_decimal(&text) {
                prop_assert_eq!(value.to_bits(), parsed(&text).to_bits(), "{}", text);
            }
        }
    }
}
