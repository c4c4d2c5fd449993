//! `attributes`: the IO element map, validated and copied into the JSON text stored as `jsonb`.
//!
//! How: while parsing the payload, serde_json captures the attributes value as raw text (a
//! `&RawValue` borrowed from the payload), checking its JSON grammar on the way; the payload's
//! UTF-8 was checked once before. A byte scanner here then walks that text once, copy-on-write:
//! spans that need no change are copied as they are, and only sentinel objects and whitespace
//! between tokens are rewritten. When there is neither (the Node producer writes no whitespace)
//! the output is the raw text itself, copied once into the row's `String`. Recursion follows the
//! document's nesting, bounded by [`MAX_DEPTH`].
//!
//! Numbers are copied verbatim, after validation: `1.50`, `1E+2`, `-0.0`, `18446744073709551617`
//! reach PostgreSQL as written. `jsonb` stores a number as `numeric`, exactly, so the producer's
//! digits are kept, which is more faithful than printing them back through an `f64` or an `i64`
//! (a plain integer beyond 64 bits stays exact, where it used to become `1.8446744073709552e+19`).
//! It is also cheaper: a number is scanned, no longer parsed (with `float_roundtrip`) and printed
//! back. A number is refused when:
//! - PostgreSQL's `numeric` cannot hold it. These are PostgreSQL 15's limits (`numeric_in`, checked
//!   against a server with `'{"a": <n>}'::jsonb`): an exponent of magnitude 1,073,741,823
//!   (`INT_MAX / 2`) or more, even on a zero (`0e1073741823`); more than 16,383 digits after the
//!   decimal point once the exponent is applied, trailing zeros counted, for a zero too
//!   (`1e-16384`, `0.0e-16383`); more than 131,072 digits before it (`1e131072`);
//! - or, in the spirit of [`MAX_BIGINT_DIGITS`], it has more than [`MAX_NUMBER_DIGITS`] digits
//!   before, or after, its decimal point when written out in full, as `jsonb` prints it back
//!   (`1e1000` has 1001 digits, `1e-1001` has 1001 decimals). Every `f64` (and so every number the
//!   producer's JavaScript writes) fits, with room to spare; this bounds what one attribute can
//!   cost whoever reads it back as text.
//!
//! A plain integer or short decimal pays a length check only: a number without an exponent whose
//! text has at most [`MAX_NUMBER_DIGITS`] characters is within every limit.
//!
//! Sentinels, resolved at any depth below the attributes object (which is never one itself: its
//! keys are IO ids):
//! - `{"__bigint":"<-?digits>"}` (the object's only key) becomes the JSON number with those digits,
//!   leading zeros dropped (`"007"` -> `7`, `"-0"` -> `0`); at most [`MAX_BIGINT_DIGITS`] digits;
//! - `{"__buffer_b64":"<base64>"}` (only key) becomes the standard, padded base64 of its bytes
//!   (input padding may be omitted; other alphabets, whitespace and non-zero trailing bits are
//!   refused);
//! - `{"type":"Buffer","data":[...]}` (exactly these two keys, any order) means the same as
//!   `__buffer_b64`; its `data` must then be an array of integers 0..=255 (as for the integer
//!   fields, `2.0` counts as `2`: only these elements are parsed as numbers).
//!
//! A sentinel's keys and string arguments are compared unescaped (`"__bigin\u0074"` is `__bigint`).
//! Everything else is written as received: keys in their order, keys and strings with their escapes
//! (the text is valid JSON, so nothing needs re-escaping). A duplicate key inside the attributes is
//! written as received: PostgreSQL's `jsonb`, like `JSON.parse` on the producer's side, keeps the
//! last one.
//!
//! The top-level attributes value must be an object (or `null`/absent, meaning `{}`).
//!
//! Refused, with field `attributes` and the path to the bad value in the reason
//! (`attribute "500"[1]["a"]: …`): malformed sentinels; the numbers above; a NUL character
//! (`\u0000`) in any key or string, which `jsonb` cannot store; an unpaired UTF-16 surrogate escape
//! (`"\ud800"`), which is not Unicode text and which `jsonb` refuses (serde_json refuses it in a
//! string it decodes, but not in text it only captures); nesting deeper than [`MAX_DEPTH`].

use std::borrow::Cow;

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;

use super::text::bounded;
use crate::{DecodeError, Field};

/// The most digits a `__bigint` may carry (PostgreSQL's `numeric` holds far more; this bounds what
/// one attribute can cost downstream).
pub const MAX_BIGINT_DIGITS: usize = 1000;

/// The most digits a plain attribute number may have before its decimal point, and after it, when
/// written out in full (`1e999` is the largest power of ten, `1e-1000` the smallest).
pub const MAX_NUMBER_DIGITS: usize = 1000;

/// The deepest nesting accepted, the attributes object being level 1: serde_json's parser allowed
/// the payload 127 levels, and the payload object takes one. (serde_json captures raw text without
/// a depth limit, so the scanner keeps this one.)
pub const MAX_DEPTH: usize = 126;

/// PostgreSQL's `numeric` (PostgreSQL 15, `numeric_in`): an exponent must be below `INT_MAX / 2` in
/// magnitude; at most `NUMERIC_DSCALE_MAX` digits after the point; at most 32,768 base-10000
/// digits (a weight of `PG_INT16_MAX`) before it.
const PG_MAX_EXPONENT: i64 = 1_073_741_822;
const PG_MAX_SCALE: i64 = 16_383;
const PG_MAX_INTEGER_DIGITS: i64 = 131_072;

const BIGINT: &str = "__bigint";
const BUFFER_B64: &str = "__buffer_b64";

/// Standard alphabet; padding written on output, optional on input; trailing bits must be zero,
/// so a valid input is canonical and re-encodes to itself (plus any missing padding).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Transcodes the attributes value, given as the raw JSON text serde_json captured (so valid JSON):
/// `Some(text)` for an object (borrowed from `raw` when nothing needed rewriting), `None` for
/// `null`.
pub(crate) fn transcode(raw: &str) -> Result<Option<Cow<'_, str>>, DecodeError> {
    let raw = raw.trim_matches(is_whitespace_char);
    let kind = match raw.as_bytes().first() {
        Some(b'{') => {
            let mut scanner = Scanner::new(raw);
            scanner
                .object(true, 1)
                .map_err(|failure| failure.into_error())?;
            return Ok(Some(scanner.finish()));
        }
        Some(b'n') => return Ok(None),
        Some(b't' | b'f') => "a boolean",
        Some(b'"') => "a string",
        Some(b'[') => "an array",
        _ => "a number",
    };
    Err(DecodeError::new(
        Field::Attributes,
        format!("must be an object (IO id -> value), got {kind}"),
    ))
}

fn is_whitespace(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r')
}

fn is_whitespace_char(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// Why transcoding stopped, with the path to the bad value (innermost step first).
struct Failure {
    reason: String,
    path: Vec<Step>,
    /// `false` keeps only the outermost step (for a path as deep as the nesting limit).
    whole_path: bool,
}

enum Step {
    /// An object key, already quoted and bounded for display.
    Key(String),
    Index(usize),
}

/// Boxed: the failure is rare, and keeps every `Ok` small on the way up.
type Scan<T> = Result<T, Box<Failure>>;

fn fail<T>(reason: String) -> Scan<T> {
    Err(Box::new(Failure {
        reason,
        path: Vec::new(),
        whole_path: true,
    }))
}

impl Failure {
    /// Adds a step to the path while the failure unwinds through a container.
    fn step(mut self: Box<Self>, step: impl FnOnce() -> Step) -> Box<Self> {
        if !self.whole_path {
            self.path.clear();
        }
        self.path.push(step());
        self
    }

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

/// What the enclosing object needs to know about a value it may resolve as a sentinel.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Want {
    /// Nothing beyond its kind.
    Nothing,
    /// A string's text (a sentinel's argument, or `type`).
    Text,
    /// An array's elements as bytes, pushed onto the scratch stack (`data`).
    Bytes,
}

/// A value as written, summarised for sentinel resolution.
enum Summary<'a> {
    /// Its JSON kind ("null", "a boolean", "a string", "an array", "an object").
    Other(&'static str),
    /// A number, as written.
    Number(&'a str),
    /// A string, unescaped, when [`Want::Text`] asked for it.
    Text(Cow<'a, str>),
    /// An array, when [`Want::Bytes`] asked for it: its bytes are `scratch[start..]`, unless
    /// element `bad` was not a byte.
    Bytes { start: usize, bad: Option<usize> },
}

impl Summary<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Summary::Other(kind) => kind,
            Summary::Number(_) => "a number",
            Summary::Text(_) => "a string",
            Summary::Bytes { .. } => "an array",
        }
    }

    fn is_text(&self, expected: &str) -> bool {
        matches!(self, Summary::Text(text) if text == expected)
    }

    /// A Buffer element's byte: a number whose value is an integer 0..=255 (`2.0` and `2e0` count,
    /// as does `-0`). Plain digits are read directly; other forms are parsed as an `f64`.
    fn byte(&self) -> Option<u8> {
        let Summary::Number(text) = *self else {
            return None;
        };
        if text.len() <= 3 && text.bytes().all(|b| b.is_ascii_digit()) {
            return text.parse::<u8>().ok();
        }
        let value = text.parse::<f64>().ok()?;
        (value.fract() == 0.0 && (0.0..=255.0).contains(&value)).then_some(value as u8)
    }
}

/// A string as written: `raw` with its quotes.
#[derive(Clone, Copy)]
struct Str<'a> {
    raw: &'a str,
    escaped: bool,
}

impl<'a> Str<'a> {
    fn inner(self) -> &'a str {
        self.raw
            .get(1..self.raw.len().saturating_sub(1))
            .unwrap_or_default()
    }

    /// Its text, unescaped (borrowed when it has no escapes).
    fn text(self) -> Cow<'a, str> {
        if !self.escaped {
            return Cow::Borrowed(self.inner());
        }
        // Already validated (escapes, surrogate pairs), so this does not fail.
        match serde_json::from_str::<String>(self.raw) {
            Ok(text) => Cow::Owned(text),
            Err(_) => Cow::Borrowed(self.inner()),
        }
    }

    /// Quoted and bounded for a reason: unescaped when it can be, else as written.
    fn shown(self) -> String {
        match serde_json::from_str::<String>(self.raw) {
            Ok(text) => bounded(&text, 40),
            Err(_) => bounded(self.inner(), 40),
        }
    }
}

/// What makes a string unfit for `jsonb`.
enum BadString {
    Nul,
    /// The escape's position in the string's raw text.
    LoneSurrogate(usize),
}

/// The value of the four hex digits at `at`, if they are there.
fn hex4(bytes: &[u8], at: usize) -> Option<u16> {
    let digits = bytes.get(at..at + 4)?;
    u16::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
}

/// The transcoder's state: a position in the raw text and the output being written.
struct Scanner<'a> {
    src: &'a str,
    pos: usize,
    /// The output, except `src[pending..]`, which is still to be copied; unallocated while the
    /// output is `src` itself (nothing rewritten yet).
    out: String,
    pending: usize,
    owned: bool,
    /// Decoded buffer bytes; used as a stack (each object truncates back to where it started).
    scratch: Vec<u8>,
}

impl<'a> Scanner<'a> {
    fn new(src: &'a str) -> Self {
        Scanner {
            src,
            pos: 0,
            out: String::new(),
            pending: 0,
            owned: false,
            scratch: Vec::new(),
        }
    }

    fn finish(mut self) -> Cow<'a, str> {
        if !self.owned {
            return Cow::Borrowed(self.src);
        }
        self.flush(self.src.len());
        Cow::Owned(self.out)
    }

    fn peek(&self) -> u8 {
        self.src.as_bytes().get(self.pos).copied().unwrap_or(0)
    }

    /// Where the output will be once everything before `at` (at or after `pending`) is copied.
    fn out_len(&self, at: usize) -> usize {
        self.out.len() + (at - self.pending)
    }

    /// Copies the text still pending up to `upto` into the output (allocated on first use: the
    /// output is never longer than the input).
    fn flush(&mut self, upto: usize) {
        if !self.owned {
            self.owned = true;
            self.out.reserve(self.src.len());
        }
        self.out
            .push_str(self.src.get(self.pending..upto).unwrap_or_default());
        self.pending = upto;
    }

    /// Skips whitespace, leaving it out of the output. (Inlined: it is called between every two
    /// tokens and there is almost never any.)
    #[inline(always)]
    fn whitespace(&mut self) {
        if is_whitespace(self.peek()) {
            self.skip_whitespace();
        }
    }

    #[cold]
    #[inline(never)]
    fn skip_whitespace(&mut self) {
        let from = self.pos;
        while is_whitespace(self.peek()) {
            self.pos += 1;
        }
        self.flush(from);
        self.pending = self.pos;
    }

    /// Replaces the output from `out_start` (where the value starting at `start` began) with
    /// what the caller writes next; the text up to the current position is consumed.
    fn rewrite(&mut self, start: usize, out_start: usize) {
        if self.pending <= start {
            self.flush(start);
        }
        self.out.truncate(out_start);
        self.pending = self.pos;
    }

    fn malformed<T>(&self) -> Scan<T> {
        fail(format!("is not valid JSON at byte {}", self.pos))
    }

    /// One value, in a container at nesting level `depth`.
    fn value(&mut self, want: Want, depth: usize) -> Scan<Summary<'a>> {
        match self.peek() {
            b'"' => {
                let string = self.string("string")?;
                Ok(match want {
                    Want::Text => Summary::Text(string.text()),
                    _ => Summary::Other("a string"),
                })
            }
            b'{' | b'[' if depth >= MAX_DEPTH => Err(Box::new(Failure {
                reason: format!("nests deeper than {MAX_DEPTH} levels"),
                path: Vec::new(),
                whole_path: false,
            })),
            b'{' => {
                self.object(false, depth + 1)?;
                Ok(Summary::Other("an object"))
            }
            b'[' => self.array(want, depth + 1),
            b't' => self.literal("true", "a boolean"),
            b'f' => self.literal("false", "a boolean"),
            b'n' => self.literal("null", "null"),
            _ => self.number(),
        }
    }

    fn literal(&mut self, word: &str, kind: &'static str) -> Scan<Summary<'a>> {
        if !self
            .src
            .get(self.pos..)
            .unwrap_or_default()
            .starts_with(word)
        {
            return self.malformed();
        }
        self.pos += word.len();
        Ok(Summary::Other(kind))
    }

    /// A number: copied as written once its range is checked.
    #[inline]
    fn number(&mut self) -> Scan<Summary<'a>> {
        let bytes = self.src.as_bytes();
        let start = self.pos;
        let mut end = start;
        let mut exponent = false;
        loop {
            match bytes.get(end) {
                Some(b'0'..=b'9' | b'-' | b'+' | b'.') => end += 1,
                Some(b'e' | b'E') => {
                    exponent = true;
                    end += 1;
                }
                _ => break,
            }
        }
        let text = match self.src.get(start..end) {
            Some(text) if !text.is_empty() => text,
            _ => return self.malformed(),
        };
        self.pos = end;
        // The common case: a plain integer or decimal is within every limit by its length alone.
        if exponent || text.len() > MAX_NUMBER_DIGITS {
            if let Err(reason) = check_number(text) {
                return fail(reason);
            }
        }
        Ok(Summary::Number(text))
    }

    /// A string (`what` is "key" or "string", for the reason): copied as written; refused when it
    /// holds NUL or an unpaired surrogate.
    #[inline]
    fn string(&mut self, what: &str) -> Scan<Str<'a>> {
        let bytes = self.src.as_bytes();
        let start = self.pos;
        let mut at = start + 1;
        let mut escaped = false;
        let mut bad = None;
        loop {
            match bytes.get(at) {
                Some(b'"') => break,
                Some(b'\\') => {
                    escaped = true;
                    if bytes.get(at + 1) != Some(&b'u') {
                        at += 2;
                        continue;
                    }
                    match hex4(bytes, at + 2) {
                        Some(0) => {
                            bad.get_or_insert(BadString::Nul);
                        }
                        Some(0xD800..=0xDBFF)
                            if bytes.get(at + 6..at + 8) == Some(b"\\u")
                                && matches!(hex4(bytes, at + 8), Some(0xDC00..=0xDFFF)) =>
                        {
                            at += 6; // the pair's low half
                        }
                        Some(0xD800..=0xDFFF) => {
                            bad.get_or_insert(BadString::LoneSurrogate(at - start));
                        }
                        Some(_) => {}
                        None => return self.malformed(),
                    }
                    at += 6;
                }
                Some(_) => at += 1,
                None => return self.malformed(),
            }
        }
        self.pos = at + 1;
        let string = Str {
            raw: self.src.get(start..self.pos).unwrap_or_default(),
            escaped,
        };
        match bad {
            None => Ok(string),
            Some(BadString::Nul) => fail(format!(
                "{what} {} contains a NUL character (\\u0000), which PostgreSQL jsonb refuses",
                string.shown()
            )),
            Some(BadString::LoneSurrogate(offset)) => fail(format!(
                "{what} {} contains an unpaired UTF-16 surrogate escape ({}), which is not \
                 Unicode text and PostgreSQL jsonb refuses",
                string.shown(),
                string.raw.get(offset..offset + 6).unwrap_or_default()
            )),
        }
    }

    /// An object at nesting level `depth`; when it turns out to be a sentinel, its text is
    /// replaced with the resolved value.
    fn object(&mut self, root: bool, depth: usize) -> Scan<()> {
        let start = self.pos;
        let out_start = self.out_len(start);
        let scratch_start = self.scratch.len();
        let mut shape = if root { Shape::Plain } else { Shape::Empty };
        self.pos += 1; // `{`
        self.whitespace();
        if self.peek() == b'}' {
            self.pos += 1;
        } else {
            loop {
                if self.peek() != b'"' {
                    return self.malformed();
                }
                let key = self.string("key")?;
                self.whitespace();
                self.pos += 1; // `:`
                self.whitespace();
                let step = || Step::Key(key.shown());
                if matches!(shape, Shape::Plain) {
                    self.value(Want::Nothing, depth)
                        .map_err(|failure| failure.step(step))?;
                } else {
                    let name = key.text();
                    let summary = self
                        .value(shape.want(&name), depth)
                        .map_err(|failure| failure.step(step))?;
                    shape = shape.next(&name, summary);
                }
                self.whitespace();
                let separator = self.peek();
                self.pos += 1;
                match separator {
                    b',' => self.whitespace(),
                    b'}' => break,
                    _ => return self.malformed(),
                }
            }
        }
        let resolved = self.resolve(shape, start, out_start);
        self.scratch.truncate(scratch_start);
        resolved
    }

    /// An array at nesting level `depth`; its elements' bytes are collected for [`Want::Bytes`].
    fn array(&mut self, want: Want, depth: usize) -> Scan<Summary<'a>> {
        let collect = want == Want::Bytes;
        let start = self.scratch.len();
        let mut bad = None;
        self.pos += 1; // `[`
        self.whitespace();
        if self.peek() == b']' {
            self.pos += 1;
        } else {
            let mut index = 0;
            loop {
                let summary = self
                    .value(Want::Nothing, depth)
                    .map_err(|failure| failure.step(|| Step::Index(index)))?;
                if collect && bad.is_none() {
                    match summary.byte() {
                        Some(byte) => self.scratch.push(byte),
                        None => bad = Some(index),
                    }
                }
                index += 1;
                self.whitespace();
                let separator = self.peek();
                self.pos += 1;
                match separator {
                    b',' => self.whitespace(),
                    b']' => break,
                    _ => return self.malformed(),
                }
            }
        }
        Ok(if collect {
            Summary::Bytes { start, bad }
        } else {
            Summary::Other("an array")
        })
    }

    /// Replaces a sentinel object (from `start`, output from `out_start`) with its value.
    fn resolve(&mut self, shape: Shape<'_>, start: usize, out_start: usize) -> Scan<()> {
        match shape {
            Shape::BigInt(Summary::Text(text)) => {
                let (sign, digits) = bigint_digits(&text).or_else(fail)?;
                self.rewrite(start, out_start);
                self.out.push_str(sign);
                self.out.push_str(digits);
                Ok(())
            }
            Shape::BigInt(other) => fail(format!(
                "{BIGINT} must hold a string of decimal digits, got {}",
                other.kind()
            )),
            Shape::Base64(Summary::Text(text)) => {
                let from = self.scratch.len();
                if let Err(err) = BASE64.decode_vec(text.as_bytes(), &mut self.scratch) {
                    self.scratch.truncate(from);
                    return fail(format!(
                        "{BUFFER_B64} {} is not standard base64: {err}",
                        bounded(&text, 40)
                    ));
                }
                self.rewrite(start, out_start);
                push_base64(&mut self.out, self.scratch.get(from..).unwrap_or_default());
                Ok(())
            }
            Shape::Base64(other) => fail(format!(
                "{BUFFER_B64} must hold a base64 string, got {}",
                other.kind()
            )),
            Shape::Buffer(Summary::Bytes {
                start: from,
                bad: None,
            }) => {
                self.rewrite(start, out_start);
                push_base64(&mut self.out, self.scratch.get(from..).unwrap_or_default());
                Ok(())
            }
            Shape::Buffer(Summary::Bytes {
                bad: Some(index), ..
            }) => fail(format!(
                "Buffer data[{index}] is not a byte (an integer 0..=255)"
            )),
            Shape::Buffer(other) => fail(format!(
                "Buffer data must be an array of bytes, got {}",
                other.kind()
            )),
            Shape::Plain | Shape::Empty | Shape::TypeBuffer | Shape::Data(_) => Ok(()),
        }
    }
}

/// Appends the standard padded base64 of `bytes` as a JSON string (base64 needs no escaping).
fn push_base64(out: &mut String, bytes: &[u8]) {
    out.push('"');
    BASE64.encode_string(bytes, out);
    out.push('"');
}

/// How far an object matches a sentinel shape, key by key.
enum Shape<'a> {
    /// Cannot be a sentinel (the root, or a key ruled it out).
    Plain,
    /// No key yet.
    Empty,
    /// Only `__bigint` so far, with its value.
    BigInt(Summary<'a>),
    /// Only `__buffer_b64` so far, with its value.
    Base64(Summary<'a>),
    /// Only `"type": "Buffer"` so far.
    TypeBuffer,
    /// Only `data` so far, with its value.
    Data(Summary<'a>),
    /// `"type": "Buffer"` and `data`, with `data`'s value.
    Buffer(Summary<'a>),
}

impl<'a> Shape<'a> {
    fn want(&self, key: &str) -> Want {
        match (self, key) {
            (Shape::Empty, BIGINT | BUFFER_B64 | "type") | (Shape::Data(_), "type") => Want::Text,
            (Shape::Empty | Shape::TypeBuffer, "data") => Want::Bytes,
            _ => Want::Nothing,
        }
    }

    fn next(self, key: &str, value: Summary<'a>) -> Shape<'a> {
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

/// Checks a number's range (see the module doc): what PostgreSQL's `numeric` holds, then
/// [`MAX_NUMBER_DIGITS`]. `text` is a valid JSON number.
fn check_number(text: &str) -> Result<(), String> {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((mantissa, exponent)) => (mantissa, parse_exponent(exponent)),
        None => (unsigned, 0),
    };
    let shown = match text.get(..40) {
        Some(cut) if cut.len() < text.len() => format!("{cut}…"),
        _ => text.to_owned(),
    };
    let out_of_range = || {
        Err(format!(
            "number {shown} is out of the range PostgreSQL's numeric holds (at most \
             {PG_MAX_INTEGER_DIGITS} digits before the decimal point and {PG_MAX_SCALE} after it, \
             an exponent below {} in magnitude)",
            PG_MAX_EXPONENT + 1
        ))
    };
    if exponent.abs() > PG_MAX_EXPONENT {
        return out_of_range();
    }
    let (integer, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let length = |digits: &str| i64::try_from(digits.len()).unwrap_or(i64::MAX);
    // Digits after the point once the exponent is applied (PostgreSQL's display scale).
    let scale = length(fraction).saturating_sub(exponent).max(0);
    // Digits before the point: from the first significant one (JSON allows no leading zero before
    // another digit, so that is the integer part's first digit unless the integer part is `0`).
    let integer_digits = match integer.bytes().position(|b| b != b'0') {
        Some(at) => length(integer.get(at..).unwrap_or_default()).saturating_add(exponent),
        None => match fraction.bytes().position(|b| b != b'0') {
            Some(at) => exponent.saturating_sub(length(fraction.get(..at).unwrap_or_default())),
            None => 1, // zero
        },
    }
    .max(1);
    if scale > PG_MAX_SCALE || integer_digits > PG_MAX_INTEGER_DIGITS {
        return out_of_range();
    }
    let max = i64::try_from(MAX_NUMBER_DIGITS).unwrap_or(i64::MAX);
    for (digits, side) in [(integer_digits, "before"), (scale, "after")] {
        if digits > max {
            return Err(format!(
                "number {shown} has {digits} digits {side} its decimal point when written out, \
                 more than {MAX_NUMBER_DIGITS}"
            ));
        }
    }
    Ok(())
}

/// An exponent's value (after `e`: an optional sign, then digits), saturating far beyond any
/// limit.
fn parse_exponent(text: &str) -> i64 {
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, text.get(1..).unwrap_or_default()),
        Some(b'+') => (false, text.get(1..).unwrap_or_default()),
        _ => (false, text),
    };
    let magnitude = digits.bytes().fold(0i64, |value, digit| {
        value
            .saturating_mul(10)
            .saturating_add(i64::from(digit.wrapping_sub(b'0')))
    });
    if negative {
        -magnitude
    } else {
        magnitude
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
    use serde_json::value::RawValue;

    use super::*;

    /// Transcodes an attributes document on its own, captured by serde_json first as the payload
    /// parser does (grammar errors are the payload's).
    fn transcode_json(json: &str) -> Result<Option<Cow<'_, str>>, DecodeError> {
        let raw: &RawValue = serde_json::from_str(json)
            .map_err(|error| DecodeError::new(Field::Payload, error.to_string()))?;
        transcode(raw.get())
    }

    fn ok(json: &str) -> String {
        match transcode_json(json) {
            Ok(Some(text)) => text.into_owned(),
            other => panic!("{json}: {other:?}"),
        }
    }

    fn err(json: &str) -> DecodeError {
        match transcode_json(json) {
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
        assert_eq!(ok(" {\n\t} "), "{}");
        assert_eq!(transcode_json("null"), Ok(None));
        // Whitespace between tokens goes, whitespace inside strings stays.
        assert_eq!(
            ok("{ \"a b\" :\r\n[ 1 , { \"c\" : \" d \" } , [ ] ] }"),
            r#"{"a b":[1,{"c":" d "},[]]}"#
        );
    }

    #[test]
    fn numbers_are_copied_as_written() {
        let numbers = [
            "18446744073709551615",
            "18446744073709551616",
            "18446744073709551617",
            "-9223372036854775809",
            "123456789012345678901234567890123456789012345678901234567890",
            "0.1",
            "1.50",
            "1E+2",
            "1e-7",
            "-0",
            "-0.0",
            "2.0",
            "1e300",
            "1e400",
            "4.9e-324",
            "0.30000000000000004",
            "12.345678901234567890123",
            "0e1073741822",
        ];
        for number in numbers {
            let json = format!(r#"{{"1":{number},"2":[{number}],"3":{{"x":{number}}}}}"#);
            assert_eq!(ok(&json), json, "{number}");
        }
    }

    #[test]
    fn without_sentinels_or_whitespace_the_output_is_the_raw_text() {
        let json =
            r#"{"239":1,"240":0,"66":12850,"9":-12.5,"1":[1.50,"x\u00e9\n"],"k":{"a":null}}"#;
        match transcode_json(json) {
            Ok(Some(Cow::Borrowed(text))) => assert_eq!(text, json),
            other => panic!("{other:?}"),
        }
        // A sentinel or whitespace makes a copy.
        assert!(matches!(
            transcode_json(r#"{"1":{"__bigint":"1"}}"#),
            Ok(Some(Cow::Owned(_)))
        ));
        assert!(matches!(
            transcode_json(r#"{"1": 1}"#),
            Ok(Some(Cow::Owned(_)))
        ));
    }

    #[test]
    fn numbers_postgresql_cannot_hold_are_refused() {
        for number in [
            "1e1000000",
            "-1e1000000",
            "1e-1000000",
            "1e131072",
            "10e131071",
            "1e-16384",
            "1.5e-16383",
            "0.0e-16383",
            "0e-16384",
            "0e1073741823",
            "0e-1073741823",
            "1e99999999999999999999999999",
            "1E-99999999999999999999999999",
        ] {
            let error = err(&format!(r#"{{"16":[0,{number}]}}"#));
            assert_eq!(error.field, "attributes", "{number}");
            assert!(
                error.reason.starts_with(&format!(
                    "attribute \"16\"[1]: number {number} is out of the range PostgreSQL's numeric holds"
                )),
                "{error}"
            );
        }
        // A long number is cut in the reason.
        let long = format!("{}e1000000", "7".repeat(100));
        let error = err(&format!(r#"{{"16":{long}}}"#));
        assert!(
            error.reason.contains(&format!("{}…", "7".repeat(40))),
            "{error}"
        );
        assert!(error.reason.len() < 300, "{error}");
    }

    #[test]
    fn numbers_have_at_most_max_number_digits_each_side_of_the_point() {
        let max = MAX_NUMBER_DIGITS;
        let nines = "9".repeat(max);
        for fine in [
            nines.clone(),
            format!("-{nines}"),
            format!("0.{nines}"),
            format!("{nines}.{nines}"),
            format!("1e{}", max - 1),
            format!("1e-{max}"),
            format!("0.{}1e{max}", "0".repeat(max)),
            format!("{}e-{max}", "1".repeat(2 * max)),
            "0e1000000".to_owned(),
            format!("0e-{max}"),
        ] {
            let json = format!(r#"{{"1":{fine}}}"#);
            assert_eq!(ok(&json), json);
        }
        for (too_long, side) in [
            (format!("{nines}9"), "before"),
            (format!("-{nines}9.5"), "before"),
            (format!("0.{nines}9"), "after"),
            (format!("1e{max}"), "before"),
            (format!("1e-{}", max + 1), "after"),
            (format!("1.5e-{max}"), "after"),
            (format!("0e-{}", max + 1), "after"),
        ] {
            let error = err(&format!(r#"{{"1":{too_long}}}"#));
            assert_eq!(error.field, "attributes", "{too_long}");
            assert!(
                error.reason.contains(&format!(
                    "digits {side} its decimal point when written out, more than {max}"
                )),
                "{error}"
            );
        }
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
        // Any number whose value is an integer 0..=255 is a byte, however it is written.
        assert_eq!(
            ok(r#"{"a":{"type":"Buffer","data":[ 0 , -0, 2e0, 25.5e1, 1.0E+1, 0.0, 100 ]}}"#),
            r#"{"a":"AAAC/woAZA=="}"#
        );
        for bad in [
            "[1,256]",
            "[-1]",
            "[1.5]",
            "[2.55e2, 1e3]",
            "[1e400]",
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
    fn sentinel_keys_and_arguments_are_compared_unescaped() {
        assert_eq!(
            ok(
                r#"{"a":{"__bigin\u0074":"1\u0032"},"b":{"\u0074ype":"Buf\u0066er","data":[1]},"c":{"__buffer_b64":"AQ\u0049="}}"#
            ),
            r#"{"a":12,"b":"AQ==","c":"AQI="}"#
        );
    }

    #[test]
    fn sentinels_with_whitespace_resolve() {
        assert_eq!(
            ok(
                "{ \"a\" : { \"__bigint\" : \"-01\" } , \"b\" : [ { \"data\" : [ 1 , 2 ] , \"type\" : \"Buffer\" } ] }"
            ),
            r#"{"a":-1,"b":["AQI="]}"#
        );
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
        // A sentinel whose argument is itself a sentinel is malformed.
        let error = err(r#"{"k":{"__bigint":{"__bigint":"1"}}}"#);
        assert!(error.reason.contains("got an object"), "{error}");
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
        let error = err(r#"{"a":[{"b":"x\u0000"}]}"#);
        assert_eq!(
            error.reason,
            r#"attribute "a"[0]["b"]: string "x\0" contains a NUL character (\u0000), which PostgreSQL jsonb refuses"#
        );
        // Other control characters are fine for jsonb once escaped; an escaped backslash before
        // `u0000` is not an escape.
        for json in [r#"{"a":"\u001f\u007f"}"#, r#"{"a":"\\u0000"}"#] {
            assert_eq!(ok(json), json);
        }
    }

    #[test]
    fn unpaired_surrogates_are_refused() {
        for json in [
            r#"{"a":"\ud800"}"#,
            r#"{"a":"x\udc00"}"#,
            r#"{"a":"\uDBFFx"}"#,
            r#"{"a":"\ud800\u0041"}"#,
            r#"{"a":"\ud800\ud800"}"#,
            r#"{"a":"\udc00\ud800"}"#,
            r#"{"a":["\udfff"]}"#,
            r#"{"\ud800":1}"#,
            r#"{"a":{"__bigint":"\ud800"}}"#,
        ] {
            let error = err(json);
            assert_eq!(error.field, "attributes", "{json}");
            assert!(
                error.reason.contains("unpaired UTF-16 surrogate"),
                "{error}"
            );
        }
        let error = err(r#"{"a":["ok","x\udc00y"]}"#);
        assert_eq!(
            error.reason,
            r#"attribute "a"[1]: string "x\\udc00y" contains an unpaired UTF-16 surrogate escape (\udc00), which is not Unicode text and PostgreSQL jsonb refuses"#
        );
        // A pair is one character, kept as written.
        for json in [r#"{"a":"\ud83d\ude97"}"#, r#"{"\uD83D\uDE97":"\\ud800"}"#] {
            assert_eq!(ok(json), json);
        }
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
    fn deep_nesting_is_bounded() {
        // MAX_DEPTH levels, the attributes object included, are accepted...
        let levels = MAX_DEPTH - 1;
        let deep = format!(r#"{{"a":{}1{}}}"#, "[".repeat(levels), "]".repeat(levels));
        assert_eq!(ok(&deep), deep);
        let deep = format!(
            r#"{{"a":{}1{}}}"#,
            r#"{"b":"#.repeat(levels),
            "}".repeat(levels)
        );
        assert_eq!(ok(&deep), deep);
        // ...one more is refused naming the attribute, without exhausting the stack however deep.
        for levels in [MAX_DEPTH, 100_000] {
            let deeper = format!(r#"{{"a":{}1{}}}"#, "[".repeat(levels), "]".repeat(levels));
            let error = err(&deeper);
            assert_eq!(error.field, "attributes");
            assert_eq!(
                error.reason,
                format!(r#"attribute "a": nests deeper than {MAX_DEPTH} levels"#)
            );
        }
    }
}
