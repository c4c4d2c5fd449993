//! The timely operators of the pipeline, one extension trait per file (as timely's own are).
//!
//! Every operator here is pure: the I/O edges (the database writer, the dead-letter writer) are
//! reached through the [`Committer`] trait, implemented outside this crate.

mod commit_epochs;
mod complete;
mod decode;
mod fold_state;
mod share_ticks;

pub use commit_epochs::{CommitEpochs, Committer};
pub use decode::{BadEntry, DecodeEntries};
pub use fold_state::FoldState;
pub use share_ticks::ShareTicks;
