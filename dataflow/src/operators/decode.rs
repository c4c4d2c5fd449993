//! `decode_entries`: raw stream entries -> positions, and bad entries to a side output.
//!
//! Decoding runs on the worker that read the entry (pipeline pact, no exchange): that worker holds
//! the entry's stream id, so the dead letter and the acknowledgement happen where the id is known.

use timely::dataflow::operators::core::OkErr;
use timely::dataflow::StreamVec;

use crate::{codec, DecodeError, Entry, Epoch, Position};

/// An entry the codec refused, with the reason: it goes to the dead-letter stream, never to the table.
#[derive(Clone, Debug, PartialEq)]
pub struct BadEntry {
    /// The entry as it was read (its fields are copied into the dead letter unchanged).
    pub entry: Entry,
    /// Why it was refused, naming the field.
    pub error: DecodeError,
}

/// Splits a stream of entries into decoded positions and refused entries.
pub trait DecodeEntries<'scope> {
    /// Decodes every entry; the first stream has the positions, the second the refused entries.
    fn decode_entries(
        self,
    ) -> (
        StreamVec<'scope, Epoch, Position>,
        StreamVec<'scope, Epoch, BadEntry>,
    );
}

impl<'scope> DecodeEntries<'scope> for StreamVec<'scope, Epoch, Entry> {
    fn decode_entries(
        self,
    ) -> (
        StreamVec<'scope, Epoch, Position>,
        StreamVec<'scope, Epoch, BadEntry>,
    ) {
        self.ok_err(|entry: Entry| match codec::decode_entry(&entry) {
            Ok(position) => Ok(position),
            Err(error) => Err(BadEntry { entry, error }),
        })
    }
}
