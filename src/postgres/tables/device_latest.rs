//! `device_latest`: each device's newest fix, moved forward and never back.
//!
//! The fixes come from the dataflow (each changed device's newest fix per epoch) and are written
//! in the transaction of their epoch's positions. When `positions` refused rows of the epoch, the
//! fixes are taken from the rows it took instead, so that a refused row is never any device's
//! latest. What makes the table right under replays, late data, replicas and a timely cluster is
//! the condition `WHERE excluded.ts > device_latest.ts`: PostgreSQL evaluates it under the row's
//! lock, so of two writers racing on one device the newer fix wins whichever commits last. The
//! fixes are sorted by device id, so two transactions lock shared devices in the same order and
//! cannot deadlock.

use tokio_postgres::{Client, Statement, Transaction};

use super::super::columns::{insert_from_arrays, FixArrays, FIX_COLUMNS};
use super::super::privileges::Grant;
use super::{BoxFuture, Changes, DerivedTable, DerivedWriter, EpochRows};
use dataflow::{newest_per_device, LatestFix};

/// The table's columns: a fix.
const COLUMNS: &[super::super::columns::Column] = &FIX_COLUMNS;

/// The upsert of fixes; each returned row says whether it was inserted (`xmax = 0`: no earlier
/// version of the row) or moved forward.
fn upsert_statement() -> String {
    let updates: Vec<String> = COLUMNS[1..]
        .iter()
        .map(|(name, _)| format!("{name} = excluded.{name}"))
        .collect();
    format!(
        "{} ON CONFLICT (device_id) DO UPDATE SET {}, updated_at = now() \
         WHERE excluded.ts > device_latest.ts RETURNING (xmax = 0) AS inserted",
        insert_from_arrays("device_latest", COLUMNS),
        updates.join(", "),
    )
}

/// The `device_latest` table.
pub(in crate::postgres) struct DeviceLatest;

impl DerivedTable for DeviceLatest {
    fn table(&self) -> &'static str {
        super::DEVICE_LATEST
    }

    /// The upsert inserts, updates, and reads `ts` in its condition.
    fn grants(&self) -> Vec<Grant> {
        vec![Grant {
            table: super::DEVICE_LATEST,
            privileges: &["SELECT", "INSERT", "UPDATE"],
        }]
    }

    fn prepare<'a>(
        &'a self,
        client: &'a Client,
    ) -> BoxFuture<'a, Result<Box<dyn DerivedWriter>, tokio_postgres::Error>> {
        Box::pin(async move {
            let upsert = client.prepare(&upsert_statement()).await?;
            Ok(Box::new(Writer { upsert }) as Box<dyn DerivedWriter>)
        })
    }
}

/// Its writer on one connection.
struct Writer {
    upsert: Statement,
}

impl DerivedWriter for Writer {
    fn write<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        rows: &'a EpochRows<'a>,
        chunk: usize,
    ) -> BoxFuture<'a, Result<Changes, tokio_postgres::Error>> {
        Box::pin(async move {
            let from_written: Vec<LatestFix>;
            let fixes = match rows.written {
                None => newest_per_device(rows.batch.latest()),
                Some(written) => {
                    from_written = written.iter().map(|row| LatestFix::from(*row)).collect();
                    newest_per_device(&from_written)
                }
            };
            let mut changes = Changes::default();
            for part in fixes.chunks(chunk.max(1)) {
                let mut arrays = FixArrays::with_capacity(part.len());
                for fix in part {
                    arrays.push(&fix.device_id, fix.ts_micros, &fix.fix);
                }
                for row in tx.query(&self.upsert, &arrays.params()).await? {
                    if row.try_get::<_, bool>(0)? {
                        changes.inserted += 1;
                    } else {
                        changes.updated += 1;
                    }
                }
            }
            Ok(changes)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upsert_only_moves_forward() {
        let upsert = upsert_statement();
        assert!(
            upsert.starts_with("INSERT INTO device_latest (device_id, ts, "),
            "{upsert}"
        );
        assert!(
            upsert.contains("WHERE excluded.ts > device_latest.ts RETURNING"),
            "{upsert}"
        );
        assert!(upsert.contains("event_id = excluded.event_id, updated_at = now()"));
        assert!(!upsert.contains("device_id = excluded"), "{upsert}");
        assert!(!upsert.contains("attributes"), "{upsert}");
    }
}
