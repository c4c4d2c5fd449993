//! Stream entries in redis-rs replies (`XCLAIM`, `XAUTOCLAIM`); the readers' `XREADGROUP` replies
//! are read without redis-rs (see `resp.rs`).

use bytes::Bytes;
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
    parse_id(&text, operation)
}

/// A stream id given as text in a reply.
pub(super) fn parse_id(text: &str, operation: &'static str) -> Result<StreamId, RedisError> {
    text.parse().map_err(|e| RedisError::Reply {
        operation,
        detail: format!("{e}"),
    })
}

fn pairs(values: Vec<Value>) -> Option<Vec<(Bytes, Bytes)>> {
    if !values.len().is_multiple_of(2) {
        return None;
    }
    let mut out = Vec::with_capacity(values.len() / 2);
    let mut iter = values.into_iter();
    while let (Some(key), Some(value)) = (iter.next(), iter.next()) {
        out.push((bulk(key)?, bulk(value)?));
    }
    Some(out)
}

/// A string element as bytes. Field names are kept as they are, UTF-8 or not: they are not
/// interpreted except for `payload`, and a dead letter carries them unchanged.
fn bulk(value: Value) -> Option<Bytes> {
    match value {
        Value::BulkString(bytes) => Some(Bytes::from(bytes)),
        Value::SimpleString(text) => Some(Bytes::from(text)),
        Value::Int(number) => Some(Bytes::from(number.to_string())),
        _ => None,
    }
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
                .map(|(k, v)| Some((bulk(k)?, bulk(v)?)))
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
        let entries = vec![
            Value::Array(vec![
                bulk("1-0"),
                Value::Array(vec![bulk("payload"), bulk("{}")]),
            ]),
            Value::Array(vec![bulk("2-0"), Value::Nil]),
            Value::Array(vec![bulk("3-0"), Value::Array(vec![])]),
        ];
        let mut batch = ReadBatch::default();
        parse_entries(entries, &mut batch, "xclaim").expect("parses");
        assert_eq!(batch.entries.len(), 1);
        assert_eq!(batch.entries[0].id, StreamId::new(1, 0));
        assert_eq!(batch.entries[0].field("payload"), Some(&b"{}"[..]));
        assert_eq!(
            batch.deleted,
            vec![StreamId::new(2, 0), StreamId::new(3, 0)]
        );
    }

    #[test]
    fn a_field_name_that_is_not_utf8_is_kept_as_it_is() {
        let entries = vec![Value::Array(vec![
            bulk("1-0"),
            Value::Array(vec![Value::BulkString(vec![0xff, 0xfe]), bulk("x")]),
        ])];
        let mut batch = ReadBatch::default();
        parse_entries(entries, &mut batch, "xclaim").expect("parses");
        assert_eq!(batch.entries[0].field("payload"), None);
        assert_eq!(batch.entries[0].fields[0].0.as_ref(), &[0xff, 0xfe]);
    }

    #[test]
    fn an_id_that_is_not_one_is_an_unexpected_reply() {
        let entries = vec![Value::Array(vec![
            bulk("yesterday"),
            Value::Array(vec![bulk("payload"), bulk("{}")]),
        ])];
        let mut batch = ReadBatch::default();
        assert!(matches!(
            parse_entries(entries, &mut batch, "xclaim"),
            Err(RedisError::Reply { .. })
        ));
    }
}
