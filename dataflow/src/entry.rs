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
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
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
        let bad = || BadStreamId(text.to_owned());
        let (ms, seq) = text.split_once('-').unwrap_or((text, "0"));
        let number = |part: &str| {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            part.parse::<u64>().ok()
        };
        Ok(StreamId::new(
            number(ms).ok_or_else(bad)?,
            number(seq).ok_or_else(bad)?,
        ))
    }
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
        for bad in [
            "",
            "-",
            "1-",
            "a-1",
            "1-2-3",
            "-1",
            "1- 2",
            "99999999999999999999-0",
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
}
