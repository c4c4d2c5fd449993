//! Parsing Redis stream replies into entries (shared by reading and claiming).

use dataflow::{Entry, StreamId};
use redis::Value;

use super::{ReadBatch, RedisError};

/// A stream id in a reply.
pub(super) fn stream_id(value: Value, operation: &'static str) -> Result<StreamId, RedisError> {
    let unexpected = |detail: String| RedisError::Reply { operation, detail };
    let text = match value {
        Value::BulkString(bytes) => String::from_utf8(bytes)
            .map_err(|_| unexpected("a stream id is not UTF-8".to_owned()))?,
        Value::SimpleString(text) => text,
        other => return Err(unexpected(format!("a stream id is {other:?}"))),
    };
    text.parse().map_err(|e| unexpected(format!("{e}")))
}

/// Parses `XREADGROUP`'s reply: nil, or `[[stream, [[id, [field, value, ...]], ...]]]`
/// (a deleted pending entry has a nil or empty field list).
pub(super) fn parse_reply(reply: Value) -> Result<ReadBatch, RedisError> {
    let unexpected = |detail: &str| RedisError::Reply {
        operation: "xreadgroup",
        detail: detail.to_owned(),
    };
    let mut batch = ReadBatch::default();
    let streams = match reply {
        Value::Nil => return Ok(batch),
        Value::Array(streams) => streams,
        Value::Map(streams) => streams
            .into_iter()
            .map(|(key, entries)| Value::Array(vec![key, entries]))
            .collect(),
        _ => return Err(unexpected("not an array of streams")),
    };
    for stream in streams {
        let Value::Array(mut pair) = stream else {
            return Err(unexpected("stream is not a [key, entries] pair"));
        };
        let entries = match pair.pop() {
            Some(Value::Array(entries)) => entries,
            Some(Value::Nil) => continue,
            _ => return Err(unexpected("stream entries are not an array")),
        };
        parse_entries(entries, &mut batch, "xreadgroup")?;
    }
    Ok(batch)
}

fn pairs(values: Vec<Value>) -> Option<Vec<(String, Vec<u8>)>> {
    if values.len() % 2 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(values.len() / 2);
    let mut iter = values.into_iter();
    while let (Some(key), Some(value)) = (iter.next(), iter.next()) {
        out.push((bulk_to_string(key)?, bulk_to_bytes(value)?));
    }
    Some(out)
}

fn bulk_to_bytes(value: Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(text) => Some(text.into_bytes()),
        Value::Int(number) => Some(number.to_string().into_bytes()),
        _ => None,
    }
}

/// A field name as text. Names are not interpreted except for `payload`, so a name that is not
/// UTF-8 is kept lossily rather than failing the read (which would block the consumer on that
/// entry forever); the entry then has no usable payload and is dead-lettered.
fn bulk_to_string(value: Value) -> Option<String> {
    let bytes = bulk_to_bytes(value)?;
    Some(match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) => String::from_utf8_lossy(error.as_bytes()).into_owned(),
    })
}

/// Parses `[[id, [field, value, ...]], ...]` into `batch`: entries with fields, and ids whose
/// entry was deleted (nil or empty field list).
pub(super) fn parse_entries(
    entries: Vec<Value>,
    batch: &mut ReadBatch,
    operation: &'static str,
) -> Result<(), RedisError> {
    let unexpected = |detail: &str| RedisError::Reply {
        operation,
        detail: detail.to_owned(),
    };
    for entry in entries {
        let Value::Array(mut parts) = entry else {
            return Err(unexpected("entry is not an [id, fields] pair"));
        };
        let fields = if parts.len() == 2 { parts.pop() } else { None };
        let id = match parts.pop() {
            Some(id) => stream_id(id, operation)?,
            None => return Err(unexpected("entry has no id")),
        };
        let fields = match fields {
            Some(Value::Array(values)) => {
                pairs(values).ok_or_else(|| unexpected("odd field list"))?
            }
            Some(Value::Map(map)) => map
                .into_iter()
                .map(|(k, v)| Some((bulk_to_string(k)?, bulk_to_bytes(v)?)))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| unexpected("field is not a string"))?,
            Some(Value::Nil) | None => Vec::new(),
            Some(_) => return Err(unexpected("entry fields are not an array")),
        };
        if fields.is_empty() {
            batch.deleted.push(id);
        } else {
            batch.entries.push(Entry { id, fields });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn parses_entries_and_deleted_ids() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("telemetry:t"),
            Value::Array(vec![
                Value::Array(vec![
                    bulk("1-0"),
                    Value::Array(vec![bulk("payload"), bulk("{}")]),
                ]),
                Value::Array(vec![bulk("2-0"), Value::Nil]),
                Value::Array(vec![bulk("3-0"), Value::Array(vec![])]),
            ]),
        ])]);
        let batch = parse_reply(reply).expect("parses");
        assert_eq!(batch.entries.len(), 1);
        assert_eq!(batch.entries[0].id, StreamId::new(1, 0));
        assert_eq!(batch.entries[0].field("payload"), Some(&b"{}"[..]));
        assert_eq!(
            batch.deleted,
            vec![StreamId::new(2, 0), StreamId::new(3, 0)]
        );
        assert!(parse_reply(Value::Nil).expect("nil").entries.is_empty());
        assert!(parse_reply(Value::Int(3)).is_err());
    }

    #[test]
    fn a_field_name_that_is_not_utf8_does_not_fail_the_batch() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("s"),
            Value::Array(vec![
                Value::Array(vec![
                    bulk("1-0"),
                    Value::Array(vec![Value::BulkString(vec![0xff, 0xfe]), bulk("x")]),
                ]),
                Value::Array(vec![
                    bulk("2-0"),
                    Value::Array(vec![bulk("payload"), bulk("{}")]),
                ]),
            ]),
        ])]);
        let batch = parse_reply(reply).expect("parses");
        assert_eq!(batch.entries.len(), 2);
        assert_eq!(batch.entries[0].field("payload"), None);
    }

    #[test]
    fn an_id_that_is_not_one_is_an_unexpected_reply() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("s"),
            Value::Array(vec![Value::Array(vec![
                bulk("yesterday"),
                Value::Array(vec![bulk("payload"), bulk("{}")]),
            ])]),
        ])]);
        assert!(matches!(parse_reply(reply), Err(RedisError::Reply { .. })));
    }
}
