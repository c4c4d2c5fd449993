//! A raw stream entry as the source hands it to the dataflow.

use serde::{Deserialize, Serialize};

/// One entry of the Redis stream: its id and its field/value pairs, undecoded.
///
/// The entry keeps every field so that a dead letter can carry the original content unchanged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The stream id (`<ms>-<seq>`); it stays on the worker that read it, which acknowledges it.
    pub id: String,
    /// Field name and raw value pairs, in the order Redis returned them.
    pub fields: Vec<(String, Vec<u8>)>,
}

impl Entry {
    /// The value of the first field named `name`, if any.
    pub fn field(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_slice())
    }
}

/// The millisecond part of a stream id (`<ms>-<seq>`): when Redis appended the entry (the
/// start of the end-to-end latency figure).
pub fn stream_id_millis(id: &str) -> Option<u64> {
    id.split('-').next()?.parse().ok()
}
