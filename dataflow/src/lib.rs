//! The pure core of the processor: wire codec, per-device state and the timely dataflow.
//!
//! Nothing in this crate performs I/O. The service shell (the `processor` binary) feeds stream
//! entries into a timely input and supplies the two I/O edges, the row writer and the dead-letter
//! writer, as [`operators::Committer`] implementations.
//!
//! # The graph
//! ```text
//!  input (per worker, epoch = shared clock tick)
//!    │ Entry { id, fields }
//!    ▼
//!  decode_entries ── pipeline: runs on the worker that read the entry
//!    │ Position                  │ BadEntry
//!    ▼                           ▼
//!  fold_state                 commit_epochs("DeadLetter") ── XADD dead-letter + XACK
//!    │ exchange by device_hash,  │
//!    │ fold into StateTable      │
//!    │ Rows: the positions, then │
//!    │ per complete epoch each   │
//!    │ changed device's newest   │
//!    │ fix (device_latest)       │
//!    ▼                           │
//!  commit_epochs("WriteRows") ── one transaction per (worker, epoch): positions + fixes
//!    │                           │
//!    └──────────► probe ◄────────┘  frontier = "committed everywhere"
//!
//!  ticks (first worker of each process: its epoch, once per tick)
//!    │ broadcast
//!    ▼
//!  share_ticks ── every worker learns the cluster's latest epoch (its clock catches up)
//! ```
//!
//! # Frontiers and commits
//! Time is an [`Epoch`], a tick of a clock every worker shares, so every input advances together,
//! idle or not. Across the processes of a cluster the clocks are kept together by
//! [`operators::ShareTicks`]: a process behind would hold back every commit. A sink hands an epoch's records to its committer when its input frontier has
//! passed the epoch (the epoch is complete on that worker) and keeps the epoch's capability until
//! the committer reports it durable. The probe after both sinks therefore passes `e` only when
//! every worker has committed every row and dead letter of every epoch `<= e`; the sources
//! acknowledge stream ids of epoch `e` only after that. Writes are idempotent
//! (`ON CONFLICT DO NOTHING`), so an entry redelivered after a crash between commit and
//! acknowledgement is written once.
#![forbid(missing_docs)]

mod active;
mod batch;
pub mod codec;
mod entry;
mod error;
mod field;
pub mod graph;
mod hashing;
mod latest;
pub mod operators;
mod position;
mod rows;
mod state;
pub mod trips;

pub use active::ActiveDevices;
pub use batch::Batch;
pub use entry::{BadStreamId, Entry, IdText, StreamId};
pub use error::DecodeError;
pub use field::Field;
pub use hashing::{KeyHasher, KeyMap, KeySet};
pub use latest::{newest_per_device, EpochLatest, LatestFix};
pub use position::{device_hash, Position};
pub use rows::Rows;
pub use state::{DeviceState, Folded, LastFix, StateTable};

/// Logical time of the dataflow: the index of a wall-clock tick of `EPOCH_MS` milliseconds.
pub type Epoch = u64;
