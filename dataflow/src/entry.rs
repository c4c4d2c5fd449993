//! A raw stream entry as the source hands it to the dataflow, and its stream id.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A Redis stream id, `<ms>-<seq>`: when Redis appended the entry, and its order within that
/// millisecond. Ids order as Redis orders them.
///
/// Kept as two numbers rather than text: it is copied into every position (16 bytes, no
/// allocation), held per entry until the acknowledgement, and compared to find what is committed.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct StreamId {
    /// Milliseconds since the Unix epoch, by Redis's clock.
    pub ms: u64,
    /// Sequence number within that millisecond.
    pub seq: u64,
}

impl StreamId {
    /// The id `ms-seq`.
    pub const fn new(ms: u64, seq: u64) -> Self {
        StreamId { ms, seq }
    }

    /// The id just before this one (`0-0` stays `0-0`).
    pub fn prev(self) -> StreamId {
        match (self.ms, self.seq) {
            (ms, seq) if seq > 0 => StreamId::new(ms, seq - 1),
            (ms, _) if ms > 0 => StreamId::new(ms - 1, u64::MAX),
            _ => StreamId::default(),
        }
    }

    /// The id just after this one (`XREADGROUP`'s pending cursor takes ids after a given one).
    pub fn next(self) -> StreamId {
        match self.seq.checked_add(1) {
            Some(seq) => StreamId::new(self.ms, seq),
            None => StreamId::new(self.ms.saturating_add(1), 0),
        }
    }

    /// The id as text, `<ms>-<seq>`, written without the formatting machinery or an allocation:
    /// every acknowledged entry's id is written into an `XACK`, so this is per row.
    pub fn text(self) -> IdText {
        let mut text = IdText {
            bytes: [0; IdText::CAPACITY],
            start: IdText::CAPACITY,
        };
        text.prepend_decimal(self.seq);
        text.prepend(b'-');
        text.prepend_decimal(self.ms);
        text
    }

    /// Parses `<ms>-<seq>` or `<ms>` (see [`FromStr`]) from bytes in one pass: the reader parses
    /// every entry's id straight from the reply buffer, without a UTF-8 check or a split first.
    pub fn from_bytes(text: &[u8]) -> Option<StreamId> {
        let (ms, seq) = match text.iter().position(|&byte| byte == b'-') {
            Some(dash) => (text.get(..dash)?, text.get(dash + 1..)?),
            None => (text, &b"0"[..]),
        };
        Some(StreamId::new(decimal(ms)?, decimal(seq)?))
    }
}

/// A stream id's text (see [`StreamId::text`]), on the stack.
#[derive(Clone, Copy)]
pub struct IdText {
    /// Written from the end: the text is `bytes[start..]`.
    bytes: [u8; IdText::CAPACITY],
    start: usize,
}

impl IdText {
    /// Two `u64`s of 20 digits and the `-`.
    const CAPACITY: usize = 41;

    fn prepend(&mut self, byte: u8) {
        self.start -= 1;
        if let Some(slot) = self.bytes.get_mut(self.start) {
            *slot = byte;
        }
    }

    fn prepend_decimal(&mut self, mut value: u64) {
        loop {
            self.prepend(b'0' + (value % 10) as u8);
            value /= 10;
            if value == 0 {
                break;
            }
        }
    }

    /// The text's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(self.start..).unwrap_or_default()
    }

    /// The text (digits and a `-`, so always UTF-8).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text().as_str())
    }
}

/// Why text is not a stream id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadStreamId(pub String);

impl fmt::Display for BadStreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} is not a stream id (<ms>-<seq>)", self.0)
    }
}

impl std::error::Error for BadStreamId {}

impl FromStr for StreamId {
    type Err = BadStreamId;

    /// `<ms>-<seq>`, or `<ms>` alone (sequence 0), as Redis accepts it.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        StreamId::from_bytes(text.as_bytes()).ok_or_else(|| BadStreamId(text.to_owned()))
    }
}

/// Decimal digits (at least one, nothing else) as a `u64`; `None` past `u64::MAX`.
fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |value, &byte| {
        let digit = byte.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        value.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// One entry of the Redis stream: its id and its field/value pairs, undecoded.
///
/// The entry keeps every field so that a dead letter can carry the original content unchanged.
/// Names and values are [`Bytes`]: slices of the buffer the reader received the reply in, shared
/// rather than copied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The stream id; it stays on the worker that read it, which acknowledges it.
    pub id: StreamId,
    /// Field name and raw value pairs, in the order Redis returned them.
    pub fields: Vec<(Bytes, Bytes)>,
}

impl Entry {
    /// The value of the first field named `name`, if any.
    pub fn field(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(key, _)| key.as_ref() == name.as_bytes())
            .map(|(_, value)| value.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_print_and_order_numerically() {
        let id: StreamId = "1700000000000-12".parse().expect("an id");
        assert_eq!(id, StreamId::new(1_700_000_000_000, 12));
        assert_eq!(id.to_string(), "1700000000000-12");
        assert_eq!("5".parse(), Ok(StreamId::new(5, 0)));
        assert_eq!(
            "18446744073709551615-18446744073709551615".parse(),
            Ok(StreamId::new(u64::MAX, u64::MAX))
        );
        assert_eq!(
            StreamId::from_bytes(b"1700000000000-12"),
            Some(StreamId::new(1_700_000_000_000, 12))
        );
        assert_eq!(StreamId::from_bytes(b"\xff-1"), None);
        for bad in [
            "",
            "-",
            "1-",
            "a-1",
            "1-2-3",
            "-1",
            "1- 2",
            "99999999999999999999-0",
            "18446744073709551616-0",
            "1-18446744073709551616",
            "+1-2",
        ] {
            assert!(bad.parse::<StreamId>().is_err(), "{bad:?}");
        }
        assert!(StreamId::new(10, 0) > StreamId::new(9, 5));
        assert!(StreamId::new(9, 10) > StreamId::new(9, 9));
        assert_eq!(StreamId::new(9, u64::MAX).next(), StreamId::new(10, 0));
        assert_eq!(StreamId::new(10, 0).prev(), StreamId::new(9, u64::MAX));
        assert_eq!(StreamId::new(10, 3).prev(), StreamId::new(10, 2));
        assert_eq!(StreamId::default().prev(), StreamId::default());
    }

    #[test]
    fn id_text_is_both_numbers_in_decimal() {
        for (ms, seq) in [
            (0, 0),
            (1, 9),
            (10, 10),
            (1_700_000_000_000, 12),
            (u64::MAX, u64::MAX),
            (99_999, 100_000),
        ] {
            let id = StreamId::new(ms, seq);
            let text = format!("{ms}-{seq}");
            assert_eq!(id.text().as_str(), text);
            assert_eq!(id.text().as_bytes(), text.as_bytes());
            assert_eq!(id.to_string(), text);
            assert_eq!(text.parse(), Ok(id));
        }
        // Every count of digits, and every value up to 1,000.
        let mut value = 1u64;
        for _ in 0..19 {
            for n in [value - 1, value, value + 1, value * 7 / 3, value + 99] {
                assert_eq!(
                    StreamId::new(n, n / 7).text().as_str(),
                    format!("{n}-{}", n / 7)
                );
            }
            value *= 10;
        }
        for n in 0..=1000u64 {
            assert_eq!(
                StreamId::new(n, 1000 - n).text().as_str(),
                format!("{n}-{}", 1000 - n)
            );
        }
    }
}
