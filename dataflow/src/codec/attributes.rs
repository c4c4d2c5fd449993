//! `attributes`: the IO element map, transcoded in one streaming pass into canonical JSON text.
//!
//! Why streaming: the attributes are most of a payload, and building a `serde_json::Value` tree
//! only to print it again costs an allocation per key, per string and per map node. Here the serde
//! visitor writes each token straight into the output `String` as serde_json parses it; keys and
//! strings are borrowed from the payload, so a record costs one output allocation (plus a scratch
//! buffer only when a buffer sentinel is present). Recursion follows the document's nesting, which
//! serde_json bounds at 128 levels.
//!
//! Why text: a `__bigint` must reach PostgreSQL's `jsonb` (numeric) exactly, and without
//! serde_json's `arbitrary_precision` any number in a `Value` beyond 64 bits becomes an `f64`.
//! A `__bigint` never becomes a number in Rust at all: its digits are validated and copied.
//!
//! What is written:
//! - `{"__bigint":"<-?digits>"}` (the object's only key) becomes the JSON number with those digits,
//!   leading zeros dropped (`"007"` -> `7`, `"-0"` -> `0`); at most [`MAX_BIGINT_DIGITS`] digits;
//! - `{"__buffer_b64":"<base64>"}` (only key) becomes the standard, padded base64 of its bytes
//!   (input padding may be omitted; other alphabets, whitespace and non-zero trailing bits are
//!   refused);
//! - `{"type":"Buffer","data":[...]}` (exactly these two keys, any order) means the same as
//!   `__buffer_b64`; its `data` must then be an array of integers 0..=255 (as for the integer
//!   fields, `2.0` counts as `2`);
//! - other values pass through: integers exact (`u64`/`i64`), other numbers as the shortest text
//!   that round-trips their `f64` (serde_json's printing), strings re-escaped minimally, keys in
//!   their original order. A plain JSON integer beyond 64 bits (not a `__bigint`) is a float to
//!   serde_json and is written as one (`1.8446744073709552e+19`): the producer's own numbers are
//!   doubles, so nothing is lost that the producer had. A duplicate key inside the attributes is
//!   written as received: PostgreSQL's `jsonb`, like `JSON.parse` on the producer's side, keeps
//!   the last one.
//!
//! The top-level attributes value must be an object (or `null`/absent, meaning `{}`); it is never a
//! sentinel itself, since its keys are IO ids. Sentinels are resolved at any depth below it.
//!
//! Refused, with field `attributes` and the path to the bad value in the reason: malformed
//! sentinels, and a NUL character (`\u0000`) in any key or string, which `jsonb` cannot store.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

use super::text::bounded;
use crate::{DecodeError, Field};

/// The most digits a `__bigint` may carry (PostgreSQL's `numeric` holds far more; this bounds what
/// one attribute can cost downstream).
pub const MAX_BIGINT_DIGITS: usize = 1000;

const BIGINT: &str = "__bigint";
const BUFFER_B64: &str = "__buffer_b64";

/// Standard alphabet; padding written on output, optional on input; trailing bits must be zero,
/// so a valid input is canonical and re-encodes to itself (plus any missing padding).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Deserializes the `attributes` value into its canonical text: `Some(text)` for an object,
/// `None` for `null`. On a contract violation it leaves the [`DecodeError`] in `error` and fails.
pub(crate) struct AttributesSeed<'e> {
    /// Side channel for the failure's description (the serde error itself carries none).
    pub error: &'e mut Option<DecodeError>,
    /// How much output to reserve up front (the payload's length is a good upper estimate).
    pub capacity: usize,
}

impl<'de> DeserializeSeed<'de> for AttributesSeed<'_> {
    type Value = Option<String>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        let mut ctx = Ctx {
            out: String::new(),
            scratch: Vec::new(),
            failure: None,
            capacity: self.capacity,
        };
        match deserializer.deserialize_any(Root { ctx: &mut ctx }) {
            Ok(true) => Ok(Some(ctx.out)),
            Ok(false) => Ok(None),
            Err(err) => {
                if let Some(failure) = ctx.failure.take() {
                    *self.error = Some(failure.into_error());
                }
                Err(err)
            }
        }
    }
}

/// The transcoder's state, shared down the recursion.
struct Ctx {
    /// The canonical JSON being written.
    out: String,
    /// Decoded buffer bytes; used as a stack (each object truncates back to where it started).
    scratch: Vec<u8>,
    /// Why transcoding stopped, with the path to the bad value (innermost step first).
    failure: Option<Failure>,
    /// Reserved for `out` once the value turns out to be an object.
    capacity: usize,
}

struct Failure {
    reason: String,
    path: Vec<Step>,
}

enum Step {
    /// An object key, already quoted and bounded for display.
    Key(String),
    Index(usize),
}

impl Failure {
    fn into_error(self) -> DecodeError {
        let mut reason = String::new();
        for (depth, step) in self.path.iter().rev().enumerate() {
            match step {
                Step::Key(key) if depth == 0 => reason.push_str(&format!("attribute {key}")),
                Step::Key(key) => reason.push_str(&format!("[{key}]")),
                Step::Index(index) => reason.push_str(&format!("[{index}]")),
            }
        }
        if !reason.is_empty() {
            reason.push_str(": ");
        }
        reason.push_str(&self.reason);
        DecodeError::new(Field::Attributes, reason)
    }
}

impl Ctx {
    /// Records why transcoding stops and returns the error that unwinds serde_json.
    fn fail<E: de::Error>(&mut self, reason: String) -> E {
        self.failure = Some(Failure {
            reason,
            path: Vec::new(),
        });
        E::custom("invalid attributes")
    }

    /// Adds a step to the failure's path while the error unwinds through a container.
    fn step(&mut self, step: impl FnOnce() -> Step) {
        if let Some(failure) = &mut self.failure {
            failure.path.push(step());
        }
    }

    fn push_display<E: de::Error>(&mut self, value: impl fmt::Display) -> Result<(), E> {
        write!(self.out, "{value}").map_err(|_| E::custom("cannot format a number"))
    }

    /// Writes a JSON string value, refusing NUL.
    fn push_string<E: de::Error>(&mut self, text: &str) -> Result<(), E> {
        if push_json_string(&mut self.out, text) {
            Ok(())
        } else {
            Err(self.fail(format!(
                "string {} contains a NUL character (\\u0000), which PostgreSQL jsonb refuses",
                bounded(text, 40)
            )))
        }
    }
}

/// Appends `text` as a JSON string literal, escaping only what JSON requires (`"`, `\` and control
/// characters). Returns `false`, leaving `out` partly written, when `text` contains NUL.
fn push_json_string(out: &mut String, text: &str) -> bool {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    let mut clean_from = 0;
    for (index, byte) in text.bytes().enumerate() {
        let escape = match byte {
            0 => return false,
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x01..=0x1f => "",
            _ => continue,
        };
        // `index` is at an ASCII byte, so both ends are character boundaries.
        out.push_str(text.get(clean_from..index).unwrap_or_default());
        if escape.is_empty() {
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xf)]));
        } else {
            out.push_str(escape);
        }
        clean_from = index + 1;
    }
    out.push_str(text.get(clean_from..).unwrap_or_default());
    out.push('"');
    true
}

/// Appends an integer's decimal digits (a sign, then the magnitude) without going through
/// `core::fmt`, which costs several times more for the short integers attributes are made of.
fn push_integer(out: &mut String, negative: bool, mut magnitude: u64) {
    let mut digits = [0u8; 20]; // u64::MAX has 20 digits
    let mut count = 0;
    for slot in digits.iter_mut().rev() {
        *slot = b'0' + (magnitude % 10) as u8;
        count += 1;
        magnitude /= 10;
        if magnitude == 0 {
            break;
        }
    }
    if negative {
        out.push('-');
    }
    let used = digits.get(digits.len() - count..).unwrap_or_default();
    // ASCII digits only, so this never falls back to the empty default.
    out.push_str(std::str::from_utf8(used).unwrap_or_default());
}

/// Appends the standard padded base64 of `bytes` as a JSON string (base64 needs no escaping).
fn push_base64(out: &mut String, bytes: &[u8]) {
    out.push('"');
    BASE64.encode_string(bytes, out);
    out.push('"');
}

/// The attributes value itself: an object (transcoded, never a sentinel) or `null`.
struct Root<'c> {
    ctx: &'c mut Ctx,
}

impl Root<'_> {
    fn not_an_object<E: de::Error>(self, kind: &str) -> E {
        self.ctx
            .fail(format!("must be an object (IO id -> value), got {kind}"))
    }
}

impl<'de> Visitor<'de> for Root<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<bool, A::Error> {
        let capacity = self.ctx.capacity;
        self.ctx.out.reserve(capacity);
        object(self.ctx, map, true).map(|()| true)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<bool, E> {
        Err(self.not_an_object("a boolean"))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<bool, E> {
        Err(self.not_an_object("a number"))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<bool, E> {
        Err(self.not_an_object("a number"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<bool, E> {
        Err(self.not_an_object("a number"))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<bool, E> {
        Err(self.not_an_object("a string"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<bool, A::Error> {
        Err(self.not_an_object("an array"))
    }
}

/// What the enclosing object needs to know about a value it may resolve as a sentinel.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Want {
    /// Nothing beyond its kind and, for a non-negative integer, its value.
    Nothing,
    /// A string's text (a sentinel's argument, or `type`).
    Text,
    /// An array's elements as bytes, pushed onto the scratch stack (`data`).
    Bytes,
}

/// A value as written, summarised for sentinel resolution.
enum Summary<'de> {
    /// Its JSON kind ("null", "a boolean", "a number", "a string", "an array", "an object").
    Other(&'static str),
    Integer(u64),
    Float(f64),
    /// A string, when [`Want::Text`] asked for it.
    Text(Cow<'de, str>),
    /// An array, when [`Want::Bytes`] asked for it: its bytes are `scratch[start..]`, unless
    /// element `bad` was not a byte.
    Bytes {
        start: usize,
        bad: Option<usize>,
    },
}

impl Summary<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Summary::Other(kind) => kind,
            Summary::Integer(_) | Summary::Float(_) => "a number",
            Summary::Text(_) => "a string",
            Summary::Bytes { .. } => "an array",
        }
    }

    fn is_text(&self, expected: &str) -> bool {
        matches!(self, Summary::Text(text) if text == expected)
    }

    fn byte(&self) -> Option<u8> {
        match *self {
            Summary::Integer(value) => u8::try_from(value).ok(),
            Summary::Float(value) if value.fract() == 0.0 && (0.0..=255.0).contains(&value) => {
                Some(value as u8)
            }
            _ => None,
        }
    }
}

/// Transcodes one value; `comma` writes the separator first (only once the value is known to
/// exist: serde calls a seed only for an element that is there).
struct ValueSeed<'c> {
    ctx: &'c mut Ctx,
    want: Want,
    comma: bool,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Summary<'de>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        if self.comma {
            self.ctx.out.push(',');
        }
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Summary<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.ctx.out.push_str("null");
        Ok(Summary::Other("null"))
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Self::Value, E> {
        self.ctx.out.push_str(if value { "true" } else { "false" });
        Ok(Summary::Other("a boolean"))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Self::Value, E> {
        push_integer(&mut self.ctx.out, false, value);
        Ok(Summary::Integer(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Self::Value, E> {
        push_integer(&mut self.ctx.out, value < 0, value.unsigned_abs());
        Ok(match u64::try_from(value) {
            Ok(value) => Summary::Integer(value),
            Err(_) => Summary::Other("a number"),
        })
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Self::Value, E> {
        // serde_json never yields a non-finite number; `from_f64` refuses one regardless.
        match serde_json::Number::from_f64(value) {
            Some(number) => self.ctx.push_display(number)?,
            None => return Err(self.ctx.fail(format!("{value} is not a finite number"))),
        }
        Ok(Summary::Float(value))
    }

    fn visit_borrowed_str<E: de::Error>(self, value: &'de str) -> Result<Self::Value, E> {
        self.ctx.push_string(value)?;
        Ok(match self.want {
            Want::Text => Summary::Text(Cow::Borrowed(value)),
            _ => Summary::Other("a string"),
        })
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
        self.ctx.push_string(value)?;
        Ok(match self.want {
            Want::Text => Summary::Text(Cow::Owned(value.to_owned())),
            _ => Summary::Other("a string"),
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let ctx = self.ctx;
        let collect = self.want == Want::Bytes;
        let start = ctx.scratch.len();
        let mut bad = None;
        ctx.out.push('[');
        let mut index = 0;
        loop {
            let element = ValueSeed {
                ctx: &mut *ctx,
                want: Want::Nothing,
                comma: index > 0,
            };
            let summary = match seq.next_element_seed(element) {
                Ok(Some(summary)) => summary,
                Ok(None) => break,
                Err(err) => {
                    ctx.step(|| Step::Index(index));
                    return Err(err);
                }
            };
            if collect && bad.is_none() {
                match summary.byte() {
                    Some(byte) => ctx.scratch.push(byte),
                    None => bad = Some(index),
                }
            }
            index += 1;
        }
        ctx.out.push(']');
        Ok(if collect {
            Summary::Bytes { start, bad }
        } else {
            Summary::Other("an array")
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        object(self.ctx, map, false)?;
        Ok(Summary::Other("an object"))
    }
}

/// Writes a key (after a comma when `comma`) and its colon; returns the key's text.
struct KeySeed<'c> {
    ctx: &'c mut Ctx,
    comma: bool,
}

impl KeySeed<'_> {
    fn write<E: de::Error>(self, key: &str) -> Result<(), E> {
        if self.comma {
            self.ctx.out.push(',');
        }
        if !push_json_string(&mut self.ctx.out, key) {
            return Err(self.ctx.fail(format!(
                "key {} contains a NUL character (\\u0000), which PostgreSQL jsonb refuses",
                bounded(key, 40)
            )));
        }
        self.ctx.out.push(':');
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Cow<'de, str>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E: de::Error>(self, key: &'de str) -> Result<Self::Value, E> {
        self.write(key)?;
        Ok(Cow::Borrowed(key))
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        self.write(key)?;
        Ok(Cow::Owned(key.to_owned()))
    }
}

/// How far an object matches a sentinel shape, key by key.
enum Shape<'de> {
    /// Cannot be a sentinel (the root, or a key ruled it out).
    Plain,
    /// No key yet.
    Empty,
    /// Only `__bigint` so far, with its value.
    BigInt(Summary<'de>),
    /// Only `__buffer_b64` so far, with its value.
    Base64(Summary<'de>),
    /// Only `"type": "Buffer"` so far.
    TypeBuffer,
    /// Only `data` so far, with its value.
    Data(Summary<'de>),
    /// `"type": "Buffer"` and `data`, with `data`'s value.
    Buffer(Summary<'de>),
}

impl<'de> Shape<'de> {
    fn want(&self, key: &str) -> Want {
        match (self, key) {
            (Shape::Empty, BIGINT | BUFFER_B64 | "type") | (Shape::Data(_), "type") => Want::Text,
            (Shape::Empty | Shape::TypeBuffer, "data") => Want::Bytes,
            _ => Want::Nothing,
        }
    }

    fn next(self, key: &str, value: Summary<'de>) -> Shape<'de> {
        match (self, key) {
            (Shape::Empty, BIGINT) => Shape::BigInt(value),
            (Shape::Empty, BUFFER_B64) => Shape::Base64(value),
            (Shape::Empty, "type") if value.is_text("Buffer") => Shape::TypeBuffer,
            (Shape::Empty, "data") => Shape::Data(value),
            (Shape::TypeBuffer, "data") => Shape::Buffer(value),
            (Shape::Data(data), "type") if value.is_text("Buffer") => Shape::Buffer(data),
            _ => Shape::Plain,
        }
    }
}

/// Transcodes an object, then, when it turns out to be a sentinel, replaces its text (from `start`)
/// with the resolved value.
fn object<'de, A: MapAccess<'de>>(ctx: &mut Ctx, mut map: A, root: bool) -> Result<(), A::Error> {
    let start = ctx.out.len();
    let scratch_start = ctx.scratch.len();
    let mut shape = if root { Shape::Plain } else { Shape::Empty };
    ctx.out.push('{');
    let mut comma = false;
    while let Some(key) = map.next_key_seed(KeySeed {
        ctx: &mut *ctx,
        comma,
    })? {
        comma = true;
        let plain = matches!(shape, Shape::Plain);
        let value = ValueSeed {
            ctx: &mut *ctx,
            want: if plain {
                Want::Nothing
            } else {
                shape.want(&key)
            },
            comma: false,
        };
        let summary = match map.next_value_seed(value) {
            Ok(summary) => summary,
            Err(err) => {
                ctx.step(|| Step::Key(bounded(&key, 40)));
                return Err(err);
            }
        };
        if !plain {
            shape = shape.next(&key, summary);
        }
    }
    ctx.out.push('}');
    let resolved = resolve(ctx, shape, start);
    ctx.scratch.truncate(scratch_start);
    resolved
}

fn resolve<E: de::Error>(ctx: &mut Ctx, shape: Shape<'_>, start: usize) -> Result<(), E> {
    match shape {
        Shape::BigInt(Summary::Text(text)) => match bigint_digits(&text) {
            Ok(digits) => {
                ctx.out.truncate(start);
                ctx.out.push_str(digits.0);
                ctx.out.push_str(digits.1);
                Ok(())
            }
            Err(reason) => Err(ctx.fail(reason)),
        },
        Shape::BigInt(other) => Err(ctx.fail(format!(
            "{BIGINT} must hold a string of decimal digits, got {}",
            other.kind()
        ))),
        Shape::Base64(Summary::Text(text)) => {
            let from = ctx.scratch.len();
            if let Err(err) = BASE64.decode_vec(text.as_bytes(), &mut ctx.scratch) {
                ctx.scratch.truncate(from);
                return Err(ctx.fail(format!(
                    "{BUFFER_B64} {} is not standard base64: {err}",
                    bounded(&text, 40)
                )));
            }
            ctx.out.truncate(start);
            push_base64(&mut ctx.out, ctx.scratch.get(from..).unwrap_or_default());
            Ok(())
        }
        Shape::Base64(other) => Err(ctx.fail(format!(
            "{BUFFER_B64} must hold a base64 string, got {}",
            other.kind()
        ))),
        Shape::Buffer(Summary::Bytes {
            start: from,
            bad: None,
        }) => {
            ctx.out.truncate(start);
            push_base64(&mut ctx.out, ctx.scratch.get(from..).unwrap_or_default());
            Ok(())
        }
        Shape::Buffer(Summary::Bytes {
            bad: Some(index), ..
        }) => Err(ctx.fail(format!(
            "Buffer data[{index}] is not a byte (an integer 0..=255)"
        ))),
        Shape::Buffer(other) => Err(ctx.fail(format!(
            "Buffer data must be an array of bytes, got {}",
            other.kind()
        ))),
        Shape::Plain | Shape::Empty | Shape::TypeBuffer | Shape::Data(_) => Ok(()),
    }
}

/// Validates a `__bigint` argument; returns its sign (`""` or `"-"`) and its digits without
/// leading zeros, so that the two written one after the other are a valid JSON number.
fn bigint_digits(text: &str) -> Result<(&'static str, &str), String> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{BIGINT} {} is not a decimal integer (an optional - then digits)",
            bounded(text, 40)
        ));
    }
    if digits.len() > MAX_BIGINT_DIGITS {
        return Err(format!(
            "{BIGINT} has {} digits, more than {MAX_BIGINT_DIGITS}",
            digits.len()
        ));
    }
    let significant = digits.trim_start_matches('0');
    Ok(match (negative, significant.is_empty()) {
        (_, true) => ("", "0"),
        (true, false) => ("-", significant),
        (false, false) => ("", significant),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Transcodes an attributes document on its own.
    fn transcode(json: &str) -> Result<Option<String>, DecodeError> {
        let mut error = None;
        let mut deserializer = serde_json::Deserializer::from_str(json);
        let result = AttributesSeed {
            error: &mut error,
            capacity: json.len(),
        }
        .deserialize(&mut deserializer)
        .and_then(|text| deserializer.end().map(|()| text));
        result.map_err(|json_error| {
            error.unwrap_or_else(|| DecodeError::new(Field::Payload, json_error.to_string()))
        })
    }

    fn ok(json: &str) -> String {
        match transcode(json) {
            Ok(Some(text)) => text,
            other => panic!("{json}: {other:?}"),
        }
    }

    fn err(json: &str) -> DecodeError {
        match transcode(json) {
            Err(error) => error,
            Ok(text) => panic!("{json} was accepted as {text:?}"),
        }
    }

    #[test]
    fn plain_values_pass_through_in_order() {
        assert_eq!(
            ok(r#"{ "2" : 1.5, "1":"t\"x\\\n\u0001é", "3":[true,false,null,[],{}], "0":-7 }"#),
            r#"{"2":1.5,"1":"t\"x\\\n\u0001é","3":[true,false,null,[],{}],"0":-7}"#
        );
        assert_eq!(ok("{}"), "{}");
        assert_eq!(transcode("null"), Ok(None));
        // u64 and i64 extremes stay exact; floats print shortest (serde_json's printer), integers
        // beyond 64 bits that are not sentinels are floats.
        assert_eq!(
            ok(
                r#"{"a":18446744073709551615,"b":-9223372036854775808,"c":0.1,"d":1e300,"e":2.0,"f":-0,"g":18446744073709551616}"#
            ),
            r#"{"a":18446744073709551615,"b":-9223372036854775808,"c":0.1,"d":1e+300,"e":2.0,"f":-0.0,"g":1.8446744073709552e+19}"#
        );
    }

    #[test]
    fn bigint_beyond_u128_is_exact() {
        let digits = "123456789012345678901234567890123456789012345678901234567890";
        assert_eq!(
            ok(&format!(r#"{{"16":{{"__bigint":"-{digits}"}}}}"#)),
            format!(r#"{{"16":-{digits}}}"#)
        );
        let max = "9".repeat(MAX_BIGINT_DIGITS);
        assert_eq!(
            ok(&format!(r#"{{"16":{{"__bigint":"{max}"}}}}"#)),
            format!(r#"{{"16":{max}}}"#)
        );
        let error = err(&format!(r#"{{"16":{{"__bigint":"{max}9"}}}}"#));
        assert_eq!(error.field, "attributes");
    }

    #[test]
    fn bigint_leading_zeros_and_negative_zero() {
        assert_eq!(
            ok(
                r#"{"a":{"__bigint":"007"},"b":{"__bigint":"-0"},"c":{"__bigint":"-000"},"d":{"__bigint":"-0010"}}"#
            ),
            r#"{"a":7,"b":0,"c":0,"d":-10}"#
        );
    }

    #[test]
    fn malformed_bigints_name_the_attribute() {
        for bad in [
            r#""12a""#, r#""""#, r#""1e5""#, r#""-""#, r#""+5""#, r#"" 5""#, r#""1.0""#, "5",
            "null", "[]", r#""٣""#,
        ] {
            let error = err(&format!(r#"{{"16":{{"__bigint":{bad}}}}}"#));
            assert_eq!(error.field, "attributes", "{bad}");
            assert!(error.reason.starts_with("attribute \"16\": "), "{error}");
        }
    }

    #[test]
    fn buffer_b64_round_trips_to_the_original_bytes() {
        let bytes: Vec<u8> = (0..=255).collect();
        let encoded = base64::engine::general_purpose::STANDARD.encode(&bytes);
        let text = ok(&format!(r#"{{"78":{{"__buffer_b64":"{encoded}"}}}}"#));
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let back = base64::engine::general_purpose::STANDARD
            .decode(value["78"].as_str().unwrap())
            .unwrap();
        assert_eq!(back, bytes);
        // Missing padding is tolerated, and restored.
        assert_eq!(
            ok(r#"{"a":{"__buffer_b64":"AQI"},"b":{"__buffer_b64":""}}"#),
            r#"{"a":"AQI=","b":""}"#
        );
        for bad in [
            r#""!!!""#,
            r#""AQI=A""#,
            r#""AR==""#,
            r#""AQ I=""#,
            r#""_-8=""#,
            "[1]",
        ] {
            assert_eq!(
                err(&format!(r#"{{"78":{{"__buffer_b64":{bad}}}}}"#)).field,
                "attributes",
                "{bad}"
            );
        }
    }

    #[test]
    fn node_buffer_shape_in_either_key_order() {
        assert_eq!(
            ok(
                r#"{"a":{"type":"Buffer","data":[222,173,190,239]},"b":{"data":[1,2.0],"type":"Buffer"},"c":{"type":"Buffer","data":[]}}"#
            ),
            r#"{"a":"3q2+7w==","b":"AQI=","c":""}"#
        );
        for bad in [
            "[1,256]",
            "[-1]",
            "[1.5]",
            r#"["1"]"#,
            "[[1]]",
            r#""AQI=""#,
            "null",
        ] {
            let error = err(&format!(r#"{{"78":{{"type":"Buffer","data":{bad}}}}}"#));
            assert_eq!(error.field, "attributes", "{bad}");
        }
    }

    #[test]
    fn near_sentinels_are_plain_objects() {
        let plain = [
            r#"{"__bigint":"1","x":1}"#,
            r#"{"x":1,"__bigint":"1"}"#,
            r#"{"__buffer_b64":"AA==","__bigint":"1"}"#,
            r#"{"type":"Buffer"}"#,
            r#"{"data":[1,300]}"#,
            r#"{"type":"Buffer","data":[300],"x":0}"#,
            r#"{"type":"buffer","data":[300]}"#,
            r#"{"type":"Buffer","type":"Buffer"}"#,
            r#"{"data":[1],"data":[2]}"#,
            r#"{"__BIGINT":"x"}"#,
        ];
        for object in plain {
            assert_eq!(
                ok(&format!(r#"{{"k":{object}}}"#)),
                format!(r#"{{"k":{object}}}"#)
            );
        }
        // The attributes object itself is never a sentinel: its keys are IO ids.
        assert_eq!(ok(r#"{"__bigint":"5"}"#), r#"{"__bigint":"5"}"#);
    }

    #[test]
    fn nested_sentinels_resolve_at_any_depth() {
        assert_eq!(
            ok(
                r#"{"1":[{"__bigint":"1"},[{"a":{"__buffer_b64":"AA=="}}]],"2":{"x":{"y":{"type":"Buffer","data":[0]}}}}"#
            ),
            r#"{"1":[1,[{"a":"AA=="}]],"2":{"x":{"y":"AA=="}}}"#
        );
        // A sentinel inside a would-be Buffer's data array: the inner one resolves, the outer
        // one is then not bytes.
        assert_eq!(
            ok(r#"{"k":{"data":[1,{"type":"Buffer","data":[2]},3],"type":"Other"}}"#),
            r#"{"k":{"data":[1,"Ag==",3],"type":"Other"}}"#
        );
        let error = err(r#"{"k":{"data":[1,{"type":"Buffer","data":[2]},3],"type":"Buffer"}}"#);
        assert!(error.reason.contains("data[1]"), "{error}");
    }

    #[test]
    fn error_reason_carries_the_path() {
        let error = err(r#"{"500":[0,{"a":{"__buffer_b64":"!"}}]}"#);
        assert_eq!(error.field, "attributes");
        assert!(
            error
                .reason
                .starts_with(r#"attribute "500"[1]["a"]: __buffer_b64"#),
            "{error}"
        );
    }

    #[test]
    fn nul_is_refused_in_keys_and_strings_anywhere() {
        for json in [
            r#"{"a":"x\u0000"}"#,
            r#"{"a\u0000":1}"#,
            r#"{"a":[{"b":"\u0000"}]}"#,
            r#"{"a":{"\u0000":null}}"#,
            r#"{"a":{"__bigint":"1\u0000"}}"#,
        ] {
            let error = err(json);
            assert_eq!(error.field, "attributes", "{json}");
            assert!(error.reason.contains("NUL"), "{error}");
        }
        // Other control characters are fine for jsonb once escaped.
        assert_eq!(ok(r#"{"a":"\u001f\u007f"}"#), "{\"a\":\"\\u001f\u{7f}\"}");
    }

    #[test]
    fn not_an_object() {
        for json in ["[1,2]", "1", "\"x\"", "true", "-1", "1.5"] {
            let error = err(json);
            assert_eq!(error.field, "attributes", "{json}");
            assert!(error.reason.starts_with("must be an object"), "{error}");
        }
    }

    #[test]
    fn deep_nesting_is_bounded_by_serde_json() {
        // 127 levels inside the attributes object parse (serde_json's limit is 128)...
        let deep = format!(r#"{{"a":{}1{}}}"#, "[".repeat(126), "]".repeat(126));
        assert!(transcode(&deep).is_ok());
        // ...and deeper input is refused as bad JSON, without exhausting the stack.
        let deeper = format!(r#"{{"a":{}1{}}}"#, "[".repeat(5000), "]".repeat(5000));
        assert_eq!(transcode(&deeper).unwrap_err().field, "payload");
    }
}
