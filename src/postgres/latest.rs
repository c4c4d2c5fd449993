//! `device_latest`: the upsert that moves each device's row forward, and never back.
//!
//! The fixes come from the dataflow (each changed device's newest fix per epoch) and are written
//! in the transaction of their epoch's positions. What makes the table right under replays, late
//! data, replicas and a timely cluster is the condition `WHERE excluded.ts > device_latest.ts`:
//! PostgreSQL evaluates it under the row's lock, so of two writers racing on one device the newer
//! fix wins whichever commits last. The fixes are sorted by device id, so two transactions lock
//! shared devices in the same order and cannot deadlock.

use tokio_postgres::{Statement, Transaction};

use super::columns::{insert_from_arrays, Columns, COLUMNS, FIX_COLUMNS};
use dataflow::LatestFix;

/// The upsert of fixes into `device_latest`.
pub(super) fn upsert_statement() -> String {
    let updates: Vec<String> = COLUMNS[1..FIX_COLUMNS]
        .iter()
        .map(|(name, _)| format!("{name} = excluded.{name}"))
        .collect();
    format!(
        "{} ON CONFLICT (device_id) DO UPDATE SET {}, updated_at = now() \
         WHERE excluded.ts > device_latest.ts",
        insert_from_arrays("device_latest", FIX_COLUMNS),
        updates.join(", "),
    )
}

/// Upserts `fixes` (one per device, sorted by device id) inside `tx`, `chunk` per statement;
/// returns the rows inserted or moved forward.
pub(super) async fn upsert(
    tx: &Transaction<'_>,
    statement: &Statement,
    fixes: &[&LatestFix],
    chunk: usize,
) -> Result<u64, tokio_postgres::Error> {
    let mut moved = 0;
    for part in fixes.chunks(chunk.max(1)) {
        let columns = Columns::fixes(part);
        moved += tx.execute(statement, &columns.params()).await?;
    }
    Ok(moved)
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
            upsert.ends_with("WHERE excluded.ts > device_latest.ts"),
            "{upsert}"
        );
        assert!(upsert.contains("event_id = excluded.event_id, updated_at = now()"));
        assert!(!upsert.contains("device_id = excluded"), "{upsert}");
    }
}
