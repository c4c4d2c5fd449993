//! Bad records are data: a `DecodeError` value flows to the dead-letter path, it is never a panic.

use std::fmt;

use crate::Field;

/// Why an entry could not be decoded, naming the contract field at fault.
///
/// `field` is the payload field (`device_id`, `timestamp`, ..., `attributes`), or `payload` when the
/// entry has no payload or the payload is not a JSON object at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// The contract field the error is about.
    pub field: Field,
    /// What is wrong with it, for people: goes into the dead letter's `error` field and the log.
    pub reason: String,
}

impl DecodeError {
    /// An error about `field`.
    pub fn new(field: Field, reason: impl Into<String>) -> Self {
        DecodeError {
            field,
            reason: reason.into(),
        }
    }

    /// A short, bounded label for metrics (`field` is one of a fixed set of names).
    pub fn metric_label(&self) -> &'static str {
        self.field.name()
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

impl std::error::Error for DecodeError {}
