//! `attributes`: the IO element map, validated and copied into the JSON text stored as `jsonb`.
//!
//! How: the payload is read in one pass (`fields.rs`); at the `attributes` value, the
//! [`Transcoder`] here reads on with the same [`Scanner`] to the value's end, checking its JSON
//! grammar (the scanner's tokens) and the rules below as it goes, and writing its output
//! copy-on-write: spans that need no change are copied as they are, and only sentinel objects and
//! whitespace between tokens are rewritten. When there is neither (the Node producer writes no
//! whitespace) the output is the value's text itself, borrowed from the payload and copied once
//! into the row's `String`. Recursion follows the document's nesting, bounded by [`MAX_DEPTH`].
//!
//! Which failure is reported: a grammar failure anywhere in the value is the payload's (field
//! `payload`, "is not valid JSON"), even after a rule below was broken earlier in the value. That
//! is how it was when serde_json captured the value's text (checking its grammar) before a separate
//! scanner checked the rules, and a record's classification must not change with the parser. So
//! when a rule fails, the value is skipped again from its start, grammar only, and a grammar
//! failure found there wins (extra work only for a record that fails anyway).
//!
//! Numbers are copied verbatim, after validation: `1.50`, `1E+2`, `-0.0`, `18446744073709551617`
//! reach PostgreSQL as written. `jsonb` stores a number as `numeric`, exactly, so the producer's
//! digits are kept, which is more faithful than printing them back through an `f64` or an `i64`
//! (a plain integer beyond 64 bits stays exact, where an `f64` would make `1.8446744073709552e+19`
//! of it).
//! It is also cheaper: a number is scanned, never parsed and printed back. A number is refused
//! when:
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
//! (`"\ud800"`), which is not Unicode text and which `jsonb` refuses (in a top-level key or string
//! it is the payload's grammar failure, as it was to serde_json; in an unknown field's value it is
//! skipped unread); nesting deeper than [`MAX_DEPTH`].

use std::borrow::Cow;

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;

use super::scanner::{is_whitespace, BadString, Code, Scanner, Str, Syntax};
use super::text::bounded;
use crate::{DecodeError, Field};

/// The most digits a `__bigint` may carry (PostgreSQL's `numeric` holds far more; this bounds what
/// one attribute can cost downstream).
pub const MAX_BIGINT_DIGITS: usize = 1000;

/// The most digits a plain attribute number may have before its decimal point, and after it, when
/// written out in full (`1e999` is the largest power of ten, `1e-1000` the smallest).
pub const MAX_NUMBER_DIGITS: usize = 1000;

/// The deepest nesting accepted, the attributes object being level 1: serde_json's parser, which
/// this one replaced, allowed the payload 127 levels, and the payload object takes one. (Values of
/// unknown fields are skipped at any depth, as serde_json skipped them.)
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

/// Transcodes the attributes value at the scanner's position (after whitespace) and leaves the
/// scanner after it: `Some(text)` for an object (borrowed from the payload when nothing needed
/// rewriting), `None` for `null`. A grammar failure is the payload's, any other the attributes'.
pub(crate) fn transcode<'a>(
    scanner: &mut Scanner<'a>,
) -> Result<Option<Cow<'a, str>>, DecodeError> {
    let start = scanner.pos();
    let kind = match scanner.peek() {
        b'{' => {
            // The transcoder reads with its own copy of the scanner (kept in its state rather
            // than behind a reference: the position is read and written at every token).
            let mut transcoder = Transcoder::new(*scanner, start);
            let transcoded = transcoder.object(true, 1);
            scanner.set_pos(transcoder.scanner.pos());
            return match transcoded {
                Ok(()) => Ok(Some(transcoder.finish())),
                Err(failure) => Err(failure.into_error(scanner, start)),
            };
        }
        b'n' => {
            return match scanner.literal(b"null") {
                Ok(()) => Ok(None),
                Err(syntax) => Err(syntax.into_error(scanner.src())),
            }
        }
        b't' | b'f' => "a boolean",
        b'"' => "a string",
        b'[' => "an array",
        _ => "a number",
    };
    // Not an object: its grammar first (a failure there is the payload's), then its kind.
    if let Err(syntax) = scanner.skip_value() {
        return Err(syntax.into_error(scanner.src()));
    }
    Err(DecodeError::new(
        Field::Attributes,
        format!("must be an object (IO id -> value), got {kind}"),
    ))
}

/// Why transcoding stopped: a grammar failure (the payload's), or a broken rule with the path to
/// the bad value (innermost step first).
struct Failure {
    syntax: Option<Syntax>,
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
        syntax: None,
        reason,
        path: Vec::new(),
        whole_path: true,
    }))
}

impl From<Syntax> for Box<Failure> {
    #[cold]
    fn from(syntax: Syntax) -> Self {
        Box::new(Failure {
            syntax: Some(syntax),
            reason: String::new(),
            path: Vec::new(),
            whole_path: false,
        })
    }
}

impl Failure {
    /// Adds a step to the path while the failure unwinds through a container.
    fn step(mut self: Box<Self>, step: impl FnOnce() -> Step) -> Box<Self> {
        if self.syntax.is_some() {
            return self;
        }
        if !self.whole_path {
            self.path.clear();
        }
        self.path.push(step());
        self
    }

    /// The error: the payload's for a grammar failure anywhere in the value (which starts at
    /// `start`; see the module doc), else the attributes'.
    fn into_error(self, scanner: &mut Scanner<'_>, start: usize) -> DecodeError {
        if let Some(syntax) = self.syntax {
            return syntax.into_error(scanner.src());
        }
        scanner.set_pos(start);
        if let Err(syntax) = scanner.skip_value() {
            return syntax.into_error(scanner.src());
        }
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

/// A string quoted and bounded for a reason: unescaped when it can be, else as written.
fn shown(string: Str<'_>) -> String {
    bounded(&string.text_or_raw(), 40)
}

/// The transcoder's state: the scanner (its position in the payload) and the output being
/// written.
struct Transcoder<'a> {
    scanner: Scanner<'a>,
    /// The whole payload, and where the attributes value starts in it.
    src: &'a str,
    start: usize,
    /// The output, except `src[pending..]`, which is still to be copied; unallocated while the
    /// output is the value's text itself (nothing rewritten yet).
    out: String,
    pending: usize,
    owned: bool,
    /// Decoded buffer bytes; used as a stack (each object truncates back to where it started).
    scratch: Vec<u8>,
}

impl<'a> Transcoder<'a> {
    fn new(scanner: Scanner<'a>, start: usize) -> Self {
        Transcoder {
            src: scanner.src(),
            scanner,
            start,
            out: String::new(),
            pending: start,
            owned: false,
            scratch: Vec::new(),
        }
    }

    /// The output, once the value has been read.
    fn finish(mut self) -> Cow<'a, str> {
        let end = self.scanner.pos();
        if !self.owned {
            return Cow::Borrowed(self.src.get(self.start..end).unwrap_or_default());
        }
        self.flush(end);
        Cow::Owned(self.out)
    }

    /// Where the output will be once everything before `at` (at or after `pending`) is copied.
    fn out_len(&self, at: usize) -> usize {
        self.out.len() + (at - self.pending)
    }

    /// Copies the text still pending up to `upto` into the output (allocated on first use: the
    /// output is never longer than the rest of the payload).
    fn flush(&mut self, upto: usize) {
        if !self.owned {
            self.owned = true;
            self.out.reserve(self.src.len() - self.start);
        }
        self.out
            .push_str(self.src.get(self.pending..upto).unwrap_or_default());
        self.pending = upto;
    }

    /// Skips whitespace, leaving it out of the output. (Inlined: it is called between every two
    /// tokens and there is almost never any.)
    #[inline(always)]
    fn whitespace(&mut self) {
        if is_whitespace(self.scanner.peek()) {
            self.skip_whitespace();
        }
    }

    #[cold]
    #[inline(never)]
    fn skip_whitespace(&mut self) {
        let from = self.scanner.pos();
        self.scanner.skip_whitespace();
        self.flush(from);
        self.pending = self.scanner.pos();
    }

    /// Replaces the output from `out_start` (where the value starting at `start` began) with
    /// what the caller writes next; the text up to the current position is consumed.
    fn rewrite(&mut self, start: usize, out_start: usize) {
        if self.pending <= start {
            self.flush(start);
        }
        self.out.truncate(out_start);
        self.pending = self.scanner.pos();
    }

    /// One value, in a container at nesting level `depth`. (Inlined into the two containers: most
    /// values are numbers and strings, read without a call.)
    #[inline(always)]
    fn value(&mut self, want: Want, depth: usize) -> Scan<Summary<'a>> {
        match self.scanner.peek() {
            b'"' => {
                let string = self.string("string")?;
                Ok(match want {
                    Want::Text => Summary::Text(string.text()),
                    _ => Summary::Other("a string"),
                })
            }
            b'-' | b'0'..=b'9' => self.number(),
            b'{' | b'[' if depth >= MAX_DEPTH => Err(Box::new(Failure {
                syntax: None,
                reason: format!("nests deeper than {MAX_DEPTH} levels"),
                path: Vec::new(),
                whole_path: false,
            })),
            b'{' => {
                self.object(false, depth + 1)?;
                Ok(Summary::Other("an object"))
            }
            b'[' => self.array(want, depth + 1),
            b't' => {
                self.scanner.literal(b"true")?;
                Ok(Summary::Other("a boolean"))
            }
            b'f' => {
                self.scanner.literal(b"false")?;
                Ok(Summary::Other("a boolean"))
            }
            b'n' => {
                self.scanner.literal(b"null")?;
                Ok(Summary::Other("null"))
            }
            _ => Err(self
                .scanner
                .unexpected(Code::ExpectedValue, Code::EofValue)
                .into()),
        }
    }

    /// A number: copied as written once its range is checked.
    #[inline(always)]
    fn number(&mut self) -> Scan<Summary<'a>> {
        let number = self.scanner.number()?;
        // The common case: a plain integer or decimal is within every limit by its length alone.
        if number.exponent || number.text.len() > MAX_NUMBER_DIGITS {
            if let Err(reason) = check_number(number.text) {
                return fail(reason);
            }
        }
        Ok(Summary::Number(number.text))
    }

    /// A string (`what` is "key" or "string", for the reason): copied as written; refused when it
    /// holds NUL or an unpaired surrogate.
    #[inline(always)]
    fn string(&mut self, what: &str) -> Scan<Str<'a>> {
        let string = self.scanner.string()?;
        match string.bad {
            None => Ok(string),
            Some(BadString::Nul) => fail(format!(
                "{what} {} contains a NUL character (\\u0000), which PostgreSQL jsonb refuses",
                shown(string)
            )),
            Some(BadString::LoneSurrogate(offset)) => fail(format!(
                "{what} {} contains an unpaired UTF-16 surrogate escape ({}), which is not \
                 Unicode text and PostgreSQL jsonb refuses",
                shown(string),
                string.raw.get(offset..offset + 6).unwrap_or_default()
            )),
        }
    }

    /// An object at nesting level `depth`; when it turns out to be a sentinel, its text is
    /// replaced with the resolved value.
    fn object(&mut self, root: bool, depth: usize) -> Scan<()> {
        let start = self.scanner.pos();
        let out_start = self.out_len(start);
        let scratch_start = self.scratch.len();
        let mut shape = if root { Shape::Plain } else { Shape::Empty };
        self.scanner.bump(); // `{`
        self.whitespace();
        if self.scanner.peek() == b'}' {
            self.scanner.bump();
        } else {
            loop {
                if self.scanner.peek() != b'"' {
                    return Err(self
                        .scanner
                        .unexpected(Code::KeyMustBeAString, Code::EofObject)
                        .into());
                }
                let key = self.string("key")?;
                self.whitespace();
                if self.scanner.peek() != b':' {
                    return Err(self
                        .scanner
                        .unexpected(Code::ExpectedColon, Code::EofObject)
                        .into());
                }
                self.scanner.bump();
                self.whitespace();
                // Only the text is kept for the path (a failure is rare; this keeps `key` in
                // registers).
                let raw = key.raw;
                let step = move || Step::Key(shown(Str::written(raw)));
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
                match self.scanner.peek() {
                    b',' => {
                        self.scanner.bump();
                        self.whitespace();
                    }
                    b'}' => {
                        self.scanner.bump();
                        break;
                    }
                    _ => {
                        return Err(self
                            .scanner
                            .unexpected(Code::ExpectedObjectCommaOrEnd, Code::EofObject)
                            .into())
                    }
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
        self.scanner.bump(); // `[`
        self.whitespace();
        if self.scanner.peek() == b']' {
            self.scanner.bump();
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
                match self.scanner.peek() {
                    b',' => {
                        self.scanner.bump();
                        self.whitespace();
                    }
                    b']' => {
                        self.scanner.bump();
                        break;
                    }
                    _ => {
                        return Err(self
                            .scanner
                            .unexpected(Code::ExpectedListCommaOrEnd, Code::EofList)
                            .into())
                    }
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
    use super::*;

    /// Transcodes an attributes document on its own, as the payload parser does at the value
    /// (grammar errors are the payload's).
    fn transcode_json(json: &str) -> Result<Option<Cow<'_, str>>, DecodeError> {
        let mut scanner = Scanner::new(json);
        scanner.skip_whitespace();
        let text = transcode(&mut scanner)?;
        scanner.end().map_err(|syntax| syntax.into_error(json))?;
        Ok(text)
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
