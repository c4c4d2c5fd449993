//! RESP2 replies read straight from a reader's socket buffer: entries sliced out of it, no tree
//! of values.
//!
//! Why: redis-rs parses every reply into a `Value` tree (a vector per entry, a vector per field
//! list, a byte vector per id, name and value) which the reader then takes apart again; for
//! `XREADGROUP`, the one command that carries every record, that was about a quarter of the
//! service's CPU. Here a reply is read in two passes over one buffer:
//! 1. [`Frame::complete`] finds where the reply ends, resumably: it keeps its position and the
//!    counts of open arrays between socket reads, so a large reply arriving in many reads is
//!    scanned once;
//! 2. [`parse_read_reply`] walks the complete reply and hands out each entry's id (parsed) and
//!    its field names and values as [`Bytes`] slices of the buffer (reference-counted, not
//!    copied).

use bytes::Bytes;
use dataflow::{Entry, StreamId};

use super::ReadBatch;

/// Why a reply could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyError {
    /// The server answered with an error (`-NOGROUP ...`): its text.
    Server(String),
    /// The reply is not what `XREADGROUP` answers.
    Unexpected(String),
}

/// The resumable scan for the end of one reply.
#[derive(Debug, Default)]
pub struct Frame {
    /// Where scanning continues.
    pos: usize,
    /// Values still expected in each open array (the top-level reply is an array of one).
    open: Vec<i64>,
    started: bool,
}

impl Frame {
    /// A scan of a new reply starting at the beginning of the buffer.
    pub fn new() -> Self {
        Frame::default()
    }

    /// `Some(length)` once `buf` holds a whole reply (of that many bytes), `None` while it needs
    /// more; scanning resumes where it stopped.
    pub fn complete(&mut self, buf: &[u8]) -> Result<Option<usize>, ReplyError> {
        if !self.started {
            self.started = true;
            self.open.push(1);
        }
        while let Some(left) = self.open.last_mut() {
            if *left == 0 {
                self.open.pop();
                continue;
            }
            let Some((kind, header, next)) = line(buf, self.pos) else {
                return Ok(None);
            };
            match kind {
                b'+' | b'-' | b':' => {
                    *left -= 1;
                    self.pos = next;
                }
                b'$' => {
                    let length = number(header)?;
                    let end = if length < 0 {
                        next
                    } else {
                        let end = next + usize::try_from(length).unwrap_or(usize::MAX) + 2;
                        if buf.len() < end {
                            return Ok(None);
                        }
                        end
                    };
                    *left -= 1;
                    self.pos = end;
                }
                b'*' => {
                    let count = number(header)?;
                    *left -= 1;
                    self.pos = next;
                    if count > 0 {
                        self.open.push(count);
                    }
                }
                other => {
                    return Err(ReplyError::Unexpected(format!(
                        "a reply element starts with {:?}",
                        char::from(other)
                    )))
                }
            }
        }
        Ok(Some(self.pos))
    }
}

/// The line at `pos`: its type byte, the header text after it, and where the next line starts.
fn line(buf: &[u8], pos: usize) -> Option<(u8, &[u8], usize)> {
    let rest = buf.get(pos..)?;
    let end = rest.iter().position(|&b| b == b'\r')?;
    if rest.get(end + 1) != Some(&b'\n') {
        // a header has no CR inside it; one not followed by LF yet means: not all here
        return None;
    }
    let kind = *rest.first()?;
    Some((kind, rest.get(1..end)?, pos + end + 2))
}

/// A header's length or count: an optional `-`, then decimal digits.
fn number(text: &[u8]) -> Result<i64, ReplyError> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let mut value: i64 = 0;
    for &byte in digits {
        if !byte.is_ascii_digit() || digits.len() > 18 {
            return Err(ReplyError::Unexpected(format!(
                "{:?} is not a length",
                String::from_utf8_lossy(text)
            )));
        }
        value = value * 10 + i64::from(byte - b'0');
    }
    if digits.is_empty() {
        return Err(ReplyError::Unexpected("an empty length".to_owned()));
    }
    Ok(if negative { -value } else { value })
}

/// A cursor over a complete reply.
struct Cursor {
    frame: Bytes,
    pos: usize,
}

/// One element of the reply, as far as the entry reader cares.
enum Element {
    Array(i64),
    Bulk(Bytes),
    Null,
    Error(String),
    Other,
}

impl Cursor {
    fn next(&mut self) -> Result<Element, ReplyError> {
        let truncated = || ReplyError::Unexpected("the reply ends early".to_owned());
        let (kind, header, next) = line(&self.frame, self.pos).ok_or_else(truncated)?;
        let value = match kind {
            b'*' | b'$' => number(header)?,
            _ => 0,
        };
        let error = (kind == b'-').then(|| String::from_utf8_lossy(header).into_owned());
        self.pos = next;
        Ok(match kind {
            b'*' => match value {
                count if count < 0 => Element::Null,
                count => Element::Array(count),
            },
            b'$' => match value {
                length if length < 0 => Element::Null,
                length => {
                    let end = next + usize::try_from(length).unwrap_or(usize::MAX);
                    if self.frame.len() < end + 2 {
                        return Err(truncated());
                    }
                    self.pos = end + 2;
                    Element::Bulk(self.frame.slice(next..end))
                }
            },
            b'-' => Element::Error(error.unwrap_or_default()),
            _ => Element::Other,
        })
    }

    fn array(&mut self, what: &str) -> Result<Option<i64>, ReplyError> {
        match self.next()? {
            Element::Array(count) => Ok(Some(count)),
            Element::Null => Ok(None),
            Element::Error(text) => Err(ReplyError::Server(text)),
            _ => Err(ReplyError::Unexpected(format!("{what} is not an array"))),
        }
    }

    fn bulk(&mut self, what: &str) -> Result<Bytes, ReplyError> {
        match self.next()? {
            Element::Bulk(bytes) => Ok(bytes),
            _ => Err(ReplyError::Unexpected(format!("{what} is not a string"))),
        }
    }
}

/// Reads `XREADGROUP`'s reply (`frame`, exactly one complete reply): a null array when nothing
/// arrived, else `[[stream, [[id, [field, value, ...]], ...]]]`; an entry whose field list is
/// null or empty was deleted from the stream while pending.
pub fn parse_read_reply(frame: Bytes) -> Result<ReadBatch, ReplyError> {
    let mut cursor = Cursor { frame, pos: 0 };
    let mut batch = ReadBatch::default();
    let Some(streams) = cursor.array("the reply")? else {
        return Ok(batch);
    };
    for _ in 0..streams {
        if cursor.array("a stream")? != Some(2) {
            return Err(ReplyError::Unexpected(
                "a stream is not a [key, entries] pair".to_owned(),
            ));
        }
        cursor.bulk("a stream key")?;
        let Some(entries) = cursor.array("the entries")? else {
            continue;
        };
        let capacity = usize::try_from(entries).unwrap_or(0);
        batch.entries.reserve(capacity);
        for _ in 0..entries {
            if cursor.array("an entry")? != Some(2) {
                return Err(ReplyError::Unexpected(
                    "an entry is not an [id, fields] pair".to_owned(),
                ));
            }
            let id = cursor.bulk("an entry id")?;
            let id = StreamId::from_bytes(&id).ok_or_else(|| {
                ReplyError::Unexpected(format!(
                    "{:?} is not a stream id",
                    String::from_utf8_lossy(&id)
                ))
            })?;
            let count = cursor.array("an entry's fields")?.unwrap_or(0);
            if count % 2 != 0 {
                return Err(ReplyError::Unexpected("an odd field list".to_owned()));
            }
            if count == 0 {
                batch.deleted.push(id);
                continue;
            }
            let mut fields = Vec::with_capacity(usize::try_from(count / 2).unwrap_or(0));
            for _ in 0..count / 2 {
                let name = cursor.bulk("a field name")?;
                let value = cursor.bulk("a field value")?;
                fields.push((name, value));
            }
            batch.entries.push(Entry { id, fields });
        }
    }
    Ok(batch)
}

/// The RESP2 encoding of a command.
pub fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> String {
        format!("${}\r\n{text}\r\n", text.len())
    }

    fn reply() -> String {
        let mut text = String::from("*1\r\n*2\r\n");
        text += &bulk("telemetry:t");
        text += "*3\r\n";
        text += "*2\r\n";
        text += &bulk("1700000000000-0");
        text += "*4\r\n";
        text += &bulk("payload");
        text += &bulk("{\"a\":1}\r\nwith a line break");
        text += &bulk("other");
        text += &bulk("");
        text += "*2\r\n";
        text += &bulk("1700000000000-1");
        text += "*-1\r\n";
        text += "*2\r\n";
        text += &bulk("1700000000001-0");
        text += "*0\r\n";
        text
    }

    #[test]
    fn a_reply_is_complete_only_when_all_of_it_arrived_whatever_the_pieces() {
        let text = reply();
        let bytes = text.as_bytes();
        // fed one byte at a time, the scan resumes and finds the end exactly once
        let mut frame = Frame::new();
        let mut found = None;
        for end in 1..=bytes.len() {
            if let Some(length) = frame.complete(&bytes[..end]).expect("valid") {
                found = Some((end, length));
                break;
            }
        }
        assert_eq!(found, Some((bytes.len(), bytes.len())));
        // with more after it, the reply's own length
        let mut longer = text.clone();
        longer += "+OK\r\n";
        assert_eq!(
            Frame::new().complete(longer.as_bytes()),
            Ok(Some(bytes.len()))
        );
    }

    #[test]
    fn entries_are_sliced_out_and_deleted_ids_reported() {
        let batch = parse_read_reply(Bytes::from(reply())).expect("parses");
        assert_eq!(batch.entries.len(), 1);
        let entry = &batch.entries[0];
        assert_eq!(entry.id, StreamId::new(1_700_000_000_000, 0));
        assert_eq!(
            entry.field("payload"),
            Some(&b"{\"a\":1}\r\nwith a line break"[..])
        );
        assert_eq!(entry.field("other"), Some(&b""[..]));
        assert_eq!(
            batch.deleted,
            vec![
                StreamId::new(1_700_000_000_000, 1),
                StreamId::new(1_700_000_000_001, 0)
            ]
        );
    }

    #[test]
    fn nothing_errors_and_nonsense_are_told_apart() {
        let nothing = parse_read_reply(Bytes::from_static(b"*-1\r\n")).expect("null");
        assert!(nothing.entries.is_empty() && nothing.deleted.is_empty());
        assert_eq!(Frame::new().complete(b"*-1\r\n"), Ok(Some(5)));
        let error = b"-NOGROUP No such key\r\n";
        assert_eq!(Frame::new().complete(error), Ok(Some(error.len())));
        assert_eq!(
            parse_read_reply(Bytes::from_static(error)).map(|_| ()),
            Err(ReplyError::Server("NOGROUP No such key".to_owned()))
        );
        assert!(Frame::new().complete(b"?what\r\n").is_err());
        let bad_id = "*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$9\r\nyesterday\r\n*0\r\n";
        assert!(matches!(
            parse_read_reply(Bytes::from(bad_id)),
            Err(ReplyError::Unexpected(_))
        ));
    }

    #[test]
    fn commands_are_encoded_as_arrays_of_bulk_strings() {
        assert_eq!(
            command(&[b"XACK", b"s", b"1-0"]),
            b"*3\r\n$4\r\nXACK\r\n$1\r\ns\r\n$3\r\n1-0\r\n".to_vec()
        );
    }
}
