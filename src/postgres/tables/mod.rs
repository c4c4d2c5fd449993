//! The output tables, one file each: its columns, its statements and its share of isolating
//! refused rows. The epoch writer (`super::epoch_writer`) opens the transaction and calls them.
//!
//! `positions` is the table every record goes to, and it decides which records are written: the
//! first of each key, minus what the database refuses. Every other table is *derived*: written
//! from the epoch's rows after `positions`, in the same transaction, and from what `positions`
//! took (a refused row is in no derived table). Adding one is: a migration, its file here
//! implementing [`DerivedTable`], the operator that produces its rows (in `dataflow/`), and its
//! line in [`derived_tables`].

mod device_latest;
pub(super) mod positions;
mod trips;

pub use trips::{devices_with_positions, rebuild_device, Rebuilt};

use std::future::Future;
use std::pin::Pin;

use tokio_postgres::{Client, Transaction};

use dataflow::{Batch, Position, Rows};

use super::privileges::Grant;

/// The table every record goes to, as outcomes and metrics name it.
pub const POSITIONS: &str = "positions";

/// The table of each device's newest fix, as outcomes and metrics name it.
pub const DEVICE_LATEST: &str = "device_latest";

/// The trips derived from the positions, as outcomes and metrics name it.
pub const TRIPS: &str = "trips";

/// A boxed future, so that the derived tables can sit in one list.
pub(super) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What one write did to one table, by kind of change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changes {
    /// Rows added.
    pub inserted: u64,
    /// Rows changed in place.
    pub updated: u64,
    /// Rows removed.
    pub deleted: u64,
    /// Rows not written because their key was there already.
    pub duplicates: u64,
    /// Of the updated and deleted rows, those a late record changed after they were final
    /// (trips: a trip already closed).
    pub late: u64,
    /// Keys whose stored state the writer read back from the tables instead of continuing from
    /// what it remembers (trips: devices; see `processor_trips_devices_read_total`).
    pub read_back: u64,
}

impl Changes {
    /// Each kind with its count, as the metric labels them.
    pub fn by_kind(&self) -> [(&'static str, u64); 4] {
        [
            ("inserted", self.inserted),
            ("updated", self.updated),
            ("deleted", self.deleted),
            ("duplicate", self.duplicates),
        ]
    }
}

/// What one write did to one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableChanges {
    /// The table.
    pub table: &'static str,
    /// What happened to its rows.
    pub changes: Changes,
}

/// The epoch's rows as a derived table sees them.
pub(super) struct EpochRows<'a> {
    /// Everything the dataflow emitted for the epochs of this transaction.
    pub(super) batch: &'a Batch<Rows>,
    /// `None` when `positions` took every position of the batch (or had it already); else
    /// the positions it took, after refusing the others.
    pub(super) written: Option<&'a [&'a Position]>,
    /// The positions written or offered to `positions`: the first of each key, in key order
    /// (device, then time), without the refused ones.
    pub(super) positions: &'a [&'a Position],
    /// Every one of `positions` is new to the table, none a resend of a stored row: the binary
    /// COPY took them all (it fails on any key stored already).
    pub(super) fresh: bool,
}

/// A table written from an epoch's rows after `positions`, in the same transaction.
pub(super) trait DerivedTable: Send + Sync {
    /// The table's name, for logs and metrics.
    fn table(&self) -> &'static str;

    /// The privileges its statements need (checked at start-up).
    fn grants(&self) -> Vec<Grant>;

    /// Prepares the table's statements on a new connection: its writer there.
    fn prepare<'a>(
        &'a self,
        client: &'a Client,
    ) -> BoxFuture<'a, Result<Box<dyn DerivedWriter>, tokio_postgres::Error>>;
}

/// A derived table's writer on one connection, its statements prepared.
pub(super) trait DerivedWriter: Send + Sync {
    /// Writes the table's share of `rows` inside `tx`, `chunk` rows per statement at most.
    fn write<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        rows: &'a EpochRows<'a>,
        chunk: usize,
    ) -> BoxFuture<'a, Result<Changes, tokio_postgres::Error>>;

    /// The transaction of this writer's last successful `write` committed. A writer that keeps
    /// a cache of what it wrote applies the write to it here, never before: a write whose
    /// transaction rolled back (or whose commit's outcome is unknown) must leave no trace in it.
    fn committed(&self) {}
}

/// Which derived tables are on.
#[derive(Debug, Clone, Copy)]
pub struct Outputs {
    /// `device_latest` (`DEVICE_LATEST`).
    pub device_latest: bool,
    /// `trips` by these rules (`TRIPS`), or none.
    pub trips: Option<dataflow::trips::TripRules>,
}

/// The privileges the service's writes need on the output tables that are on: `positions`'s
/// and each derived table's.
pub fn grants(outputs: Outputs) -> Vec<Grant> {
    std::iter::once(positions::GRANT)
        .chain(
            derived_tables(outputs)
                .iter()
                .flat_map(|table| table.grants()),
        )
        .collect()
}

/// The derived tables that are on, in the order they are written: the one registration of each.
pub(super) fn derived_tables(outputs: Outputs) -> Vec<Box<dyn DerivedTable>> {
    let mut tables: Vec<Box<dyn DerivedTable>> = Vec::new();
    if outputs.device_latest {
        tables.push(Box::new(device_latest::DeviceLatest));
    }
    if let Some(rules) = outputs.trips {
        tables.push(Box::new(trips::Trips { rules }));
    }
    tables
}
