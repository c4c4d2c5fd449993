//! The JSON grammar, byte by byte: the one reader of the payload's text, shared by the top level
//! (`fields.rs`) and the attributes transcoder (`attributes.rs`). A leaf of the codec.
//!
//! A [`Scanner`] walks a `&str` (the payload, whose UTF-8 was checked once before) with a byte
//! position, and reads one token at a time: a string ([`Scanner::string`]), a number
//! ([`Scanner::number`]), a literal, or a whole value it skips ([`Scanner::skip_value`]). Each
//! token is checked against RFC 8259 as strictly as serde_json checked it before this module
//! replaced it (so the same payloads are JSON): whitespace is space, tab, CR and LF only; a string
//! has no raw control character (U+0000..=U+001F) and only the escapes `\" \\ \/ \b \f \n \r \t`
//! and `\u` with four hex digits; a number is `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`; no
//! trailing comma, no comment, nothing but whitespace after the payload.
//!
//! Nothing is allocated on the way: a string is returned as its raw text (quotes included) with
//! what the caller may need to know about it (whether it has escapes, whether one of them is a NUL
//! or an unpaired UTF-16 surrogate); [`Str::text`] unescapes it only when asked. What a string or
//! a number must further be is the caller's rule: a decoded top-level string refuses an unpaired
//! surrogate ([`Scanner::decoded_string`]: a Rust string cannot hold one), a skipped one does not; the
//! attributes refuse NUL and unpaired surrogates as `jsonb` does, naming the attribute.
//!
//! A grammar failure is a [`Syntax`]: what was expected and the byte where it failed, reported as
//! the `payload`'s fault ([`Syntax::into_error`]) in serde_json's words and categories ("is
//! truncated JSON" when the text ends too soon, "is not valid JSON" otherwise).

use std::borrow::Cow;

use crate::{DecodeError, Field};

/// Why the text is not JSON, or not a JSON object, and where (a byte offset).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Syntax {
    /// Where the failure was found: the offending byte, or the end of the text.
    pub at: usize,
    /// What was wrong.
    pub code: Code,
}

/// A grammar failure, worded as serde_json worded it (the payload's reason keeps its form).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Code {
    EofValue,
    EofString,
    EofObject,
    EofList,
    ExpectedColon,
    ExpectedObjectCommaOrEnd,
    ExpectedListCommaOrEnd,
    ExpectedValue,
    ExpectedIdent,
    KeyMustBeAString,
    TrailingComma,
    TrailingCharacters,
    InvalidNumber,
    /// A number whose nearest `f64` is infinite, in a field read as a number (`1e400`).
    NumberOutOfRange,
    InvalidEscape,
    ControlCharacter,
    /// An unpaired UTF-16 surrogate escape in a string the payload decodes (`at` is its `\`).
    LoneSurrogate,
    /// The payload is valid JSON of another kind (its kind: "an array", ...).
    NotAnObject(&'static str),
}

impl Syntax {
    /// The payload's error, with the failure's line and column in `src` (the whole payload).
    pub(crate) fn into_error(self, src: &str) -> DecodeError {
        let at = self.at.min(src.len());
        let before = src.as_bytes().get(..at).unwrap_or_default();
        let line = 1 + before.iter().filter(|&&byte| byte == b'\n').count();
        let line_start = before
            .iter()
            .rposition(|&byte| byte == b'\n')
            .map_or(0, |newline| newline + 1);
        // 1-based column of the offending byte; at the end, of the last byte (as serde_json).
        let column = at - line_start + usize::from(at < src.len());
        let place = format!("at line {line} column {column}");
        let what = match self.code {
            Code::EofValue => "EOF while parsing a value",
            Code::EofString => "EOF while parsing a string",
            Code::EofObject => "EOF while parsing an object",
            Code::EofList => "EOF while parsing a list",
            Code::ExpectedColon => "expected `:`",
            Code::ExpectedObjectCommaOrEnd => "expected `,` or `}`",
            Code::ExpectedListCommaOrEnd => "expected `,` or `]`",
            Code::ExpectedValue => "expected value",
            Code::ExpectedIdent => "expected ident",
            Code::KeyMustBeAString => "key must be a string",
            Code::TrailingComma => "trailing comma",
            Code::TrailingCharacters => "trailing characters",
            Code::InvalidNumber => "invalid number",
            Code::NumberOutOfRange => "number out of range",
            Code::InvalidEscape => "invalid escape",
            Code::ControlCharacter => {
                "control character (\\u0000-\\u001F) found while parsing a string"
            }
            Code::LoneSurrogate => {
                let escape = src.get(at..at + 6).unwrap_or_default();
                return DecodeError::new(
                    Field::Payload,
                    format!(
                        "is not valid JSON (unpaired UTF-16 surrogate escape {escape} in a string \
                         {place})"
                    ),
                );
            }
            Code::NotAnObject(kind) => {
                return DecodeError::new(
                    Field::Payload,
                    format!("is not a JSON object (got {kind} {place})"),
                );
            }
        };
        let class = match self.code {
            Code::EofValue | Code::EofString | Code::EofObject | Code::EofList => {
                "is truncated JSON"
            }
            _ => "is not valid JSON",
        };
        DecodeError::new(Field::Payload, format!("{class} ({what} {place})"))
    }
}

/// What makes a string unfit for `jsonb` (and, for the surrogate, for a Rust `String`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BadString {
    /// A `\u0000` escape.
    Nul,
    /// An unpaired surrogate escape, at this offset in the string's raw text (its `\`).
    LoneSurrogate(usize),
}

/// A string as written: `raw` with its quotes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Str<'a> {
    pub raw: &'a str,
    pub escaped: bool,
    /// The first NUL or unpaired surrogate escape, if any.
    pub bad: Option<BadString>,
}

impl<'a> Str<'a> {
    /// The string whose raw text (quotes included) [`Scanner::string`] returned earlier.
    pub fn written(raw: &'a str) -> Self {
        Str {
            raw,
            escaped: raw.contains('\\'),
            bad: None,
        }
    }

    /// The text between the quotes, escapes as written.
    #[inline]
    pub fn inner(self) -> &'a str {
        self.raw
            .get(1..self.raw.len().saturating_sub(1))
            .unwrap_or_default()
    }

    /// Its text, unescaped (borrowed when it has no escapes). An unpaired surrogate, which no
    /// `String` holds, becomes U+FFFD (callers that care refuse such strings first).
    #[inline]
    pub fn text(self) -> Cow<'a, str> {
        if !self.escaped {
            return Cow::Borrowed(self.inner());
        }
        Cow::Owned(unescape(self.inner()).unwrap_or_else(|lossy| lossy))
    }

    /// Its text unescaped, or as written when it holds an unpaired surrogate.
    pub fn text_or_raw(self) -> Cow<'a, str> {
        if !self.escaped {
            return Cow::Borrowed(self.inner());
        }
        match unescape(self.inner()) {
            Ok(text) => Cow::Owned(text),
            Err(_) => Cow::Borrowed(self.inner()),
        }
    }
}

/// Unescapes a string's inner text, which [`Scanner::string`] validated: `Err` holds the text with
/// U+FFFD for each unpaired surrogate.
fn unescape(inner: &str) -> Result<String, String> {
    let bytes = inner.as_bytes();
    let mut out = String::with_capacity(inner.len());
    let mut paired = true;
    let mut copied = 0;
    let mut at = 0;
    while let Some(offset) = bytes
        .get(at..)
        .and_then(|rest| rest.iter().position(|&b| b == b'\\'))
    {
        at += offset;
        out.push_str(inner.get(copied..at).unwrap_or_default());
        let escape = bytes.get(at + 1).copied().unwrap_or(b'\\');
        at += 2;
        let c = match escape {
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let unit = hex4(bytes, at).unwrap_or(0xFFFD);
                at += 4;
                match unit {
                    0xD800..=0xDBFF => match (bytes.get(at..at + 2), hex4(bytes, at + 2)) {
                        (Some(b"\\u"), Some(low @ 0xDC00..=0xDFFF)) => {
                            at += 6;
                            let code = 0x1_0000
                                + ((u32::from(unit) - 0xD800) << 10)
                                + (u32::from(low) - 0xDC00);
                            char::from_u32(code).unwrap_or('\u{FFFD}')
                        }
                        _ => {
                            paired = false;
                            '\u{FFFD}'
                        }
                    },
                    0xDC00..=0xDFFF => {
                        paired = false;
                        '\u{FFFD}'
                    }
                    _ => char::from_u32(u32::from(unit)).unwrap_or('\u{FFFD}'),
                }
            }
            other => char::from(other), // `"`, `\`, `/`
        };
        out.push(c);
        copied = at;
    }
    out.push_str(inner.get(copied..).unwrap_or_default());
    if paired {
        Ok(out)
    } else {
        Err(out)
    }
}

/// The value of the four hex digits at `at`, if they are there.
fn hex4(bytes: &[u8], at: usize) -> Option<u16> {
    let digits = bytes.get(at..at + 4)?;
    digits.iter().try_fold(0u16, |value, &digit| {
        let nibble = char::from(digit).to_digit(16)?;
        Some(value << 4 | nibble as u16)
    })
}

/// Bytes that end a string's plain run: `"`, `\` and the control characters.
const SPECIAL: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = true;
        byte += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Where the run from `at` of bytes that do not end it ends (or the end of `bytes`): eight bytes at
/// a time, as a `u64` whose ending bytes `ends_in_word` flags (each one's high bit set; exact for
/// the lowest at least), then byte by byte through `ends` for the tail. A run's length then costs
/// one branch per eight bytes, not one per byte (whose exit the branch predictor mostly misses:
/// keys and values vary in length).
#[inline(always)]
fn run_end(
    bytes: &[u8],
    mut at: usize,
    ends_in_word: impl Fn(u64) -> u64,
    ends: impl Fn(u8) -> bool,
) -> usize {
    while let Some(chunk) = bytes.get(at..at + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let flagged = ends_in_word(u64::from_le_bytes(word));
        if flagged != 0 {
            return at + (flagged.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    while bytes.get(at).is_some_and(|&byte| !ends(byte)) {
        at += 1;
    }
    at
}

/// Where the run of plain string bytes from `at` ends: at the first `"`, `\\` or control
/// character, or at the end. In a word, bytes are flagged with the usual borrow tricks, which are
/// exact for the lowest flagged byte.
#[inline(always)]
fn plain_run(bytes: &[u8], at: usize) -> usize {
    let special = |word: u64| {
        let below = |word: u64, byte: u8| word.wrapping_sub(ONES * u64::from(byte)) & !word & HIGHS;
        below(word ^ (ONES * u64::from(b'"')), 1)
            | below(word ^ (ONES * u64::from(b'\\')), 1)
            | below(word, 0x20)
    };
    run_end(bytes, at, special, |byte| SPECIAL[usize::from(byte)])
}

/// Where the run of ASCII digits from `at` ends: at the first other byte, or at the end. In a word,
/// a byte is a digit when its high bit is clear and its low seven bits are at least `0` and below
/// `:`; both comparisons are additions within each byte (the low seven bits plus at most 0x50
/// never carry into the next byte), so the flags are exact for every byte of the word.
#[inline(always)]
fn digit_run(bytes: &[u8], at: usize) -> usize {
    let other = |word: u64| {
        let low = word & !HIGHS;
        let from_zero = low + ONES * (0x80 - u64::from(b'0'));
        let past_nine = low + ONES * (0x80 - u64::from(b':'));
        !(from_zero & !past_nine & !word) & HIGHS
    };
    run_end(bytes, at, other, |byte| !byte.is_ascii_digit())
}

/// A number as written, with its shape.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Number<'a> {
    pub text: &'a str,
    /// No fraction and no exponent: an integer's digits (`-0` included).
    pub plain: bool,
    /// It has an exponent (`e` or `E`).
    pub exponent: bool,
}

/// The containers a skip is inside, innermost last, one bit each (set: an object).
struct Frames {
    depth: usize,
    word: u64,
    spilled: Vec<u64>,
}

impl Frames {
    fn top(&self) -> Option<bool> {
        let depth = self.depth.checked_sub(1)?;
        Some(self.word >> (depth % 64) & 1 == 1)
    }

    fn push(&mut self, object: bool) {
        let bit = self.depth % 64;
        if bit == 0 && self.depth > 0 {
            self.spilled.push(self.word);
        }
        if object {
            self.word |= 1 << bit;
        } else {
            self.word &= !(1 << bit);
        }
        self.depth += 1;
    }

    fn pop(&mut self) {
        self.depth = self.depth.saturating_sub(1);
        if self.depth.is_multiple_of(64) && self.depth > 0 {
            self.word = self.spilled.pop().unwrap_or_default();
        }
    }
}

/// A position in the payload's text, and the grammar.
#[derive(Clone, Copy)]
pub(crate) struct Scanner<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Scanner<'a> {
    pub fn new(src: &'a str) -> Self {
        Scanner { src, pos: 0 }
    }

    /// The whole text.
    pub fn src(&self) -> &'a str {
        self.src
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    pub fn set_pos(&mut self, pos: usize) {
        self.pos = pos;
    }

    /// The byte at the position; 0 at the end (a 0 byte is valid nowhere a caller looks).
    #[inline(always)]
    pub fn peek(&self) -> u8 {
        self.src.as_bytes().get(self.pos).copied().unwrap_or(0)
    }

    /// Steps over one byte the caller has peeked.
    #[inline(always)]
    pub fn bump(&mut self) {
        self.pos += 1;
    }

    pub fn at_end(&self) -> bool {
        self.pos >= self.src.len()
    }

    /// The failure at the position: `eof` when the text has ended there, else `code`.
    #[cold]
    pub fn unexpected(&self, code: Code, eof: Code) -> Syntax {
        Syntax {
            at: self.pos,
            code: if self.at_end() { eof } else { code },
        }
    }

    /// Skips whitespace. (Inlined: it is called between every two tokens and there is almost
    /// never any.)
    #[inline(always)]
    pub fn skip_whitespace(&mut self) {
        while is_whitespace(self.peek()) {
            self.pos += 1;
        }
    }

    /// After the payload: nothing but whitespace.
    pub fn end(&mut self) -> Result<(), Syntax> {
        self.skip_whitespace();
        if self.at_end() {
            Ok(())
        } else {
            Err(self.unexpected(Code::TrailingCharacters, Code::TrailingCharacters))
        }
    }

    /// The object's `{`, after whitespace; anything else is the payload's failure.
    pub fn open_object(&mut self) -> Result<(), Syntax> {
        self.skip_whitespace();
        let start = self.pos;
        let kind = match self.peek() {
            b'{' => {
                self.pos += 1;
                return Ok(());
            }
            // serde_json read a scalar's token before saying it was not an object, not an array.
            b'[' => "an array",
            b'"' => {
                self.decoded_string()?;
                "a string"
            }
            b't' => {
                self.literal(b"true")?;
                "a boolean"
            }
            b'f' => {
                self.literal(b"false")?;
                "a boolean"
            }
            b'n' => {
                self.literal(b"null")?;
                "null"
            }
            b'-' | b'0'..=b'9' => {
                let number = self.number()?;
                if !number_is_finite(number.text) {
                    return Err(Syntax {
                        at: start,
                        code: Code::NumberOutOfRange,
                    });
                }
                "a number"
            }
            _ => return Err(self.unexpected(Code::ExpectedValue, Code::EofValue)),
        };
        Err(Syntax {
            at: start,
            code: Code::NotAnObject(kind),
        })
    }

    /// In an object, after its `{` (`first`) or after a member's value: whether a member
    /// follows (the position is then at its key's `"`), or the object ended (its `}` consumed).
    #[inline]
    pub fn next_member(&mut self, first: bool) -> Result<bool, Syntax> {
        self.skip_whitespace();
        match self.peek() {
            b'}' => {
                self.pos += 1;
                Ok(false)
            }
            b'"' if first => Ok(true),
            b',' if !first => {
                self.pos += 1;
                self.skip_whitespace();
                match self.peek() {
                    b'"' => Ok(true),
                    b'}' => Err(self.unexpected(Code::TrailingComma, Code::EofValue)),
                    _ => Err(self.unexpected(Code::KeyMustBeAString, Code::EofValue)),
                }
            }
            _ if first => Err(self.unexpected(Code::KeyMustBeAString, Code::EofObject)),
            _ => Err(self.unexpected(Code::ExpectedObjectCommaOrEnd, Code::EofObject)),
        }
    }

    /// The `:` after a key, with the whitespace around it.
    #[inline]
    pub fn colon(&mut self) -> Result<(), Syntax> {
        self.skip_whitespace();
        if self.peek() != b':' {
            return Err(self.unexpected(Code::ExpectedColon, Code::EofObject));
        }
        self.pos += 1;
        self.skip_whitespace();
        Ok(())
    }

    /// A literal (`true`, `false`, `null`) at the position.
    pub fn literal(&mut self, word: &[u8]) -> Result<(), Syntax> {
        for &expected in word {
            match self.src.as_bytes().get(self.pos) {
                Some(&byte) if byte == expected => self.pos += 1,
                Some(_) => return Err(self.unexpected(Code::ExpectedIdent, Code::EofValue)),
                None => return Err(self.unexpected(Code::EofValue, Code::EofValue)),
            }
        }
        Ok(())
    }

    /// A number at the position (its first byte is `-` or a digit), as written.
    #[inline(always)]
    pub fn number(&mut self) -> Result<Number<'a>, Syntax> {
        let bytes = self.src.as_bytes();
        let start = self.pos;
        let mut at = start;
        // Where the grammar failed: the end of the text, or a byte that does not fit.
        let invalid = |at: usize| Syntax {
            at,
            code: if at >= bytes.len() {
                Code::EofValue
            } else {
                Code::InvalidNumber
            },
        };
        if bytes.get(at) == Some(&b'-') {
            at += 1;
        }
        match bytes.get(at) {
            Some(b'0') => {
                at += 1;
                if bytes.get(at).is_some_and(u8::is_ascii_digit) {
                    return Err(invalid(at));
                }
            }
            Some(b'1'..=b'9') => at = digit_run(bytes, at + 1),
            _ => return Err(invalid(at)),
        }
        let mut plain = true;
        if bytes.get(at) == Some(&b'.') {
            plain = false;
            if !bytes.get(at + 1).is_some_and(u8::is_ascii_digit) {
                return Err(invalid(at + 1));
            }
            at = digit_run(bytes, at + 1);
        }
        let mut exponent = false;
        if let Some(b'e' | b'E') = bytes.get(at) {
            plain = false;
            exponent = true;
            at += 1;
            if let Some(b'+' | b'-') = bytes.get(at) {
                at += 1;
            }
            if !bytes.get(at).is_some_and(u8::is_ascii_digit) {
                return Err(invalid(at));
            }
            at = digit_run(bytes, at);
        }
        self.pos = at;
        Ok(Number {
            text: self.src.get(start..at).unwrap_or_default(),
            plain,
            exponent,
        })
    }

    /// A string at the position (its `"`), as written, with its flaws noted; its grammar is
    /// checked, not what its escapes stand for.
    #[inline(always)]
    pub fn string(&mut self) -> Result<Str<'a>, Syntax> {
        let bytes = self.src.as_bytes();
        let start = self.pos;
        let mut at = start + 1;
        let mut escaped = false;
        let mut bad = None;
        loop {
            at = plain_run(bytes, at);
            let Some(&byte) = bytes.get(at) else {
                return Err(Syntax {
                    at,
                    code: Code::EofString,
                });
            };
            match byte {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    match bytes.get(at + 1) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => at += 2,
                        Some(b'u') => {
                            let unit = match hex4(bytes, at + 2) {
                                Some(unit) => unit,
                                None => return Err(bad_hex(bytes, at + 2)),
                            };
                            match unit {
                                0 => {
                                    bad.get_or_insert(BadString::Nul);
                                }
                                0xD800..=0xDBFF
                                    if bytes.get(at + 6..at + 8) == Some(b"\\u")
                                        && matches!(hex4(bytes, at + 8), Some(0xDC00..=0xDFFF)) =>
                                {
                                    at += 6; // the pair's low half
                                }
                                0xD800..=0xDFFF => {
                                    bad.get_or_insert(BadString::LoneSurrogate(at - start));
                                }
                                _ => {}
                            }
                            at += 6;
                        }
                        Some(_) => {
                            return Err(Syntax {
                                at: at + 1,
                                code: Code::InvalidEscape,
                            })
                        }
                        None => {
                            return Err(Syntax {
                                at: at + 1,
                                code: Code::EofString,
                            })
                        }
                    }
                }
                _ => {
                    return Err(Syntax {
                        at,
                        code: Code::ControlCharacter,
                    })
                }
            }
        }
        self.pos = at + 1;
        Ok(Str {
            raw: self.src.get(start..self.pos).unwrap_or_default(),
            escaped,
            bad,
        })
    }

    /// A string that is decoded to text (a top-level key or string value): as [`Self::string`],
    /// and an unpaired surrogate escape is a grammar failure, as it was to serde_json.
    #[inline(always)]
    pub fn decoded_string(&mut self) -> Result<Str<'a>, Syntax> {
        let start = self.pos;
        let string = self.string()?;
        let lone = match string.bad {
            None => return Ok(string),
            Some(BadString::LoneSurrogate(offset)) => offset,
            // `bad` notes the first flaw; an unpaired surrogate may follow a NUL.
            Some(BadString::Nul) => match lone_surrogate(string.raw) {
                None => return Ok(string),
                Some(offset) => offset,
            },
        };
        Err(Syntax {
            at: start + lone,
            code: Code::LoneSurrogate,
        })
    }

    /// Skips one value at the position (after whitespace), checking its grammar only: its numbers
    /// need not fit anything, its strings may hold any escape, it may nest to any depth (without
    /// recursion: one bit per level).
    pub fn skip_value(&mut self) -> Result<(), Syntax> {
        let mut frames = Frames {
            depth: 0,
            word: 0,
            spilled: Vec::new(),
        };
        loop {
            // A value.
            self.skip_whitespace();
            match self.peek() {
                b'"' => {
                    self.string()?;
                }
                b'-' | b'0'..=b'9' => {
                    self.number()?;
                }
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                b'{' => {
                    self.pos += 1;
                    self.skip_whitespace();
                    if self.peek() == b'}' {
                        self.pos += 1;
                    } else {
                        frames.push(true);
                        self.key_in_skip()?;
                        continue;
                    }
                }
                b'[' => {
                    self.pos += 1;
                    self.skip_whitespace();
                    if self.peek() == b']' {
                        self.pos += 1;
                    } else {
                        frames.push(false);
                        continue;
                    }
                }
                _ => return Err(self.unexpected(Code::ExpectedValue, Code::EofValue)),
            }
            // After a value: close what ends here, up to the next value.
            loop {
                let Some(object) = frames.top() else {
                    return Ok(());
                };
                self.skip_whitespace();
                match self.peek() {
                    b',' => {
                        self.pos += 1;
                        if object {
                            self.skip_whitespace();
                            self.key_in_skip()?;
                        }
                        break;
                    }
                    b'}' if object => {
                        self.pos += 1;
                        frames.pop();
                    }
                    b']' if !object => {
                        self.pos += 1;
                        frames.pop();
                    }
                    _ if object => {
                        return Err(self.unexpected(Code::ExpectedObjectCommaOrEnd, Code::EofObject))
                    }
                    _ => return Err(self.unexpected(Code::ExpectedListCommaOrEnd, Code::EofList)),
                }
            }
        }
    }

    /// A key and its colon, in a skipped object.
    fn key_in_skip(&mut self) -> Result<(), Syntax> {
        if self.peek() != b'"' {
            return Err(self.unexpected(Code::KeyMustBeAString, Code::EofObject));
        }
        self.string()?;
        self.colon()
    }
}

/// Where the first unpaired surrogate escape is in a string's raw text, which
/// [`Scanner::string`] validated.
#[cold]
fn lone_surrogate(raw: &str) -> Option<usize> {
    let bytes = raw.as_bytes();
    let mut at = 0;
    while let Some(offset) = bytes
        .get(at..)
        .and_then(|rest| rest.iter().position(|&b| b == b'\\'))
    {
        at += offset;
        if bytes.get(at + 1) != Some(&b'u') {
            at += 2;
            continue;
        }
        match hex4(bytes, at + 2) {
            Some(0xD800..=0xDBFF)
                if bytes.get(at + 6..at + 8) == Some(b"\\u")
                    && matches!(hex4(bytes, at + 8), Some(0xDC00..=0xDFFF)) =>
            {
                at += 12;
            }
            Some(0xD800..=0xDFFF) => return Some(at),
            _ => at += 6,
        }
    }
    None
}

/// Why four hex digits at `at` are not: the text ends before four bytes (as serde_json checked
/// first), or a byte is not a hex digit.
#[cold]
fn bad_hex(bytes: &[u8], at: usize) -> Syntax {
    if bytes.len() < at + 4 {
        return Syntax {
            at: bytes.len(),
            code: Code::EofString,
        };
    }
    let offset = (0..4)
        .find(|offset| !bytes.get(at + offset).is_some_and(u8::is_ascii_hexdigit))
        .unwrap_or_default();
    Syntax {
        at: at + offset,
        code: Code::InvalidEscape,
    }
}

/// JSON's whitespace.
#[inline(always)]
pub(crate) fn is_whitespace(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r')
}

/// Whether a number's nearest `f64` is finite (`1e400` is not).
pub(crate) fn number_is_finite(text: &str) -> bool {
    text.parse::<f64>().is_ok_and(f64::is_finite)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skip(json: &str) -> Result<usize, Syntax> {
        let mut scanner = Scanner::new(json);
        scanner.skip_value()?;
        Ok(scanner.pos())
    }

    #[test]
    fn skipping_accepts_json_and_stops_after_the_value() {
        for json in [
            "0",
            "-0.5e+3",
            "\"a\\\"\\u00e9\\ud800\"",
            "true",
            "null",
            "[]",
            "{}",
            " [ 1 , { \"a\" : [ ] , \"b\" : { } } , \"x\" ] ",
            "{\"a\":{\"b\":{\"c\":[[[]]]}}}",
        ] {
            assert_eq!(skip(json), Ok(json.trim_end().len()), "{json}");
        }
        // No stack is used however deep.
        let deep = format!("{}1{}", "[{\"a\":".repeat(100_000), "}]".repeat(100_000));
        assert_eq!(skip(&deep), Ok(deep.len()));
    }

    #[test]
    fn skipping_refuses_what_is_not_json() {
        for (json, code) in [
            ("", Code::EofValue),
            ("[1,]", Code::ExpectedValue),
            ("[1 2]", Code::ExpectedListCommaOrEnd),
            ("{\"a\":1,}", Code::KeyMustBeAString),
            ("{\"a\" 1}", Code::ExpectedColon),
            ("{1:1}", Code::KeyMustBeAString),
            ("[1", Code::EofList),
            ("{\"a\":1", Code::EofObject),
            ("\"abc", Code::EofString),
            ("\"a\\x\"", Code::InvalidEscape),
            ("\"\\u12G4\"", Code::InvalidEscape),
            ("\"\\u+123\"", Code::InvalidEscape),
            ("\"\\u12", Code::EofString),
            ("\"\\u1x", Code::EofString),
            ("\"a\tb\"", Code::ControlCharacter),
            ("01", Code::InvalidNumber),
            ("-", Code::EofValue),
            ("-a", Code::InvalidNumber),
            ("1.", Code::EofValue),
            ("1.e5", Code::InvalidNumber),
            ("1e", Code::EofValue),
            ("1e+", Code::EofValue),
            ("+1", Code::ExpectedValue),
            (".5", Code::ExpectedValue),
            ("tru", Code::EofValue),
            ("trUe", Code::ExpectedIdent),
            ("NaN", Code::ExpectedValue),
            ("[}", Code::ExpectedValue),
            ("{]", Code::KeyMustBeAString),
        ] {
            assert_eq!(skip(json).map_err(|e| e.code), Err(code), "{json}");
        }
    }

    #[test]
    fn strings_note_nul_and_unpaired_surrogates() {
        fn bad(json: &str) -> Result<Option<BadString>, Syntax> {
            Scanner::new(json).string().map(|s| s.bad)
        }
        assert_eq!(bad(r#""\u0000""#), Ok(Some(BadString::Nul)));
        assert_eq!(bad(r#""ab\udc00""#), Ok(Some(BadString::LoneSurrogate(3))));
        assert_eq!(bad(r#""\ud83d\ude97""#), Ok(None));
        for (json, at) in [(r#""x\ud800y""#, 2), (r#""\u0000\\\udc00""#, 9)] {
            assert_eq!(
                Scanner::new(json).decoded_string().map(|s| s.raw),
                Err(Syntax {
                    at,
                    code: Code::LoneSurrogate
                }),
                "{json}"
            );
        }
        assert!(Scanner::new(r#""\u0000\\udc00""#).decoded_string().is_ok());
    }

    #[test]
    fn plain_runs_end_at_the_first_special_byte() {
        for text in [
            "",
            "abc",
            "abcdefgh",
            "abcdefghijklmnopq",
            "é€😀 plain text \u{7f}",
        ] {
            for (end, special) in [
                ("\"", "quote"),
                ("\\", "backslash"),
                ("\n", "newline"),
                ("\0", "nul"),
                ("\u{1f}", "unit separator"),
            ] {
                for tail in ["", "x\"", "\"\"\"\"\"\"\"\"\""] {
                    let whole = format!("{text}{end}{tail}");
                    assert_eq!(
                        plain_run(whole.as_bytes(), 0),
                        text.len(),
                        "{whole:?} {special}"
                    );
                }
            }
            assert_eq!(plain_run(text.as_bytes(), 0), text.len());
        }
        // Every byte value, at every offset of a word.
        for byte in 0..=255u8 {
            for offset in 0..9 {
                let mut bytes = vec![b'a'; 20];
                bytes[offset] = byte;
                let expected = if SPECIAL[usize::from(byte)] {
                    offset
                } else {
                    20
                };
                assert_eq!(plain_run(&bytes, 0), expected, "{byte:#x} at {offset}");
            }
        }
    }

    #[test]
    fn digit_runs_end_at_the_first_other_byte() {
        for digits in [
            "",
            "0",
            "12345",
            "1234567",
            "12345678",
            "123456789",
            "0123456789012345678",
        ] {
            for tail in ["", "}", ",\"1\":2}", ".5", "e3", "/", ":", "\u{80}"] {
                let whole = format!("{digits}{tail}");
                assert_eq!(digit_run(whole.as_bytes(), 0), digits.len(), "{whole:?}");
            }
        }
        // Every byte value, at every offset of a word, between digits.
        for byte in 0..=255u8 {
            for offset in 0..9 {
                let mut bytes = vec![b'7'; 20];
                bytes[offset] = byte;
                let expected = if byte.is_ascii_digit() { 20 } else { offset };
                assert_eq!(digit_run(&bytes, 0), expected, "{byte:#x} at {offset}");
            }
        }
    }

    #[test]
    fn unescaping() {
        let text = |json: &str| Scanner::new(json).string().map(|s| s.text().into_owned());
        assert_eq!(text(r#""plain""#), Ok("plain".to_owned()));
        assert_eq!(
            text(r#""\"\\\/\b\f\n\r\t\u00e9\u0000\ud83d\ude97x""#),
            Ok("\"\\/\u{8}\u{c}\n\r\t\u{e9}\0\u{1F697}x".to_owned())
        );
        assert_eq!(text(r#""a\ud800b""#), Ok("a\u{FFFD}b".to_owned()));
        let raw = Scanner::new(r#""a\ud800b""#)
            .string()
            .map(|s| s.text_or_raw().into_owned());
        assert_eq!(raw, Ok(r"a\ud800b".to_owned()));
    }

    #[test]
    fn reasons_name_the_place_in_serde_json_words() {
        let reason = |code: Code, at: usize, src: &str| Syntax { at, code }.into_error(src).reason;
        assert_eq!(
            reason(Code::ExpectedColon, 6, "{\"a\" 1}"),
            "is not valid JSON (expected `:` at line 1 column 7)"
        );
        assert_eq!(
            reason(Code::EofObject, 6, "{\"a\":1"),
            "is truncated JSON (EOF while parsing an object at line 1 column 6)"
        );
        assert_eq!(
            reason(Code::TrailingCharacters, 4, "{}\n x"),
            "is not valid JSON (trailing characters at line 2 column 2)"
        );
        assert_eq!(
            reason(Code::NotAnObject("an array"), 0, "[1]"),
            "is not a JSON object (got an array at line 1 column 1)"
        );
    }
}
