//! `positions`: every record, once per `(device_id, ts)`, the first one winning.
//!
//! Fast path: binary `COPY positions FROM STDIN` ([`copy`]), the fastest way into PostgreSQL.
//! COPY has no `ON CONFLICT`, so if any row's key already exists (a redelivery after a crash) the
//! COPY fails with a unique violation, the epoch writer rolls the transaction back and writes the
//! rows again with [`PositionsWriter::insert`]: `INSERT ... SELECT FROM unnest(arrays) ON CONFLICT
//! (device_id, ts) DO NOTHING`, one statement per chunk of `WRITE_BATCH_SIZE` rows, its
//! parameters bound as arrays, its rows in key order (two replicas inserting the same keys in
//! opposite orders would deadlock). There a row whose key exists is skipped, so a redelivered
//! entry writes nothing; rows sent minus rows inserted is the duplicate count.
//!
//! # Rows the database refuses
//! The codec refuses what PostgreSQL would refuse by itself, but a database can refuse more: a
//! `CHECK` constraint, a trigger that raises, a column narrowed. Such a failure is a *data* error
//! ([`PostgresError::is_data_error`]) and it would fail the batch forever.
//! [`PositionsWriter::isolate`] finds the refused rows by splitting the batch: each part is tried
//! under a savepoint of the epoch's transaction, a part that fails is rolled back to it and split
//! in two, and a single row that fails is refused, with the server's reason. About `k × log2(n)`
//! statements find `k` bad rows among `n`, and only when something was refused; the rest of the
//! epoch (the parts taken, and the derived tables written from them) commits in the one
//! transaction. A single row failing on the unique key is no refusal: the key exists
//! (TimescaleDB can raise it for `ON CONFLICT DO NOTHING` into a compressed chunk while another
//! writer inserts the same key), so it counts as a duplicate.

mod copy;

use std::ops::Range;

use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Statement, Transaction};

use super::super::columns::{insert_from_arrays, Column, FixArrays, FIX_COLUMNS};
use super::super::privileges::Grant;
use super::super::refusals::{Refusal, Streak};
use super::super::{IsolateError, PostgresError};
use super::Changes;
use crate::blocks::Blocks;
use dataflow::{Batch, KeySet, LastFix, Position, Rows};

/// The table's written columns: a fix, then its attributes.
/// COPY and `INSERT ... ON CONFLICT DO NOTHING`: inserting is all they do.
pub(in crate::postgres) const GRANT: Grant = Grant {
    table: super::POSITIONS,
    privileges: &["INSERT"],
};

pub(super) fn columns() -> Vec<Column> {
    let mut columns = FIX_COLUMNS.to_vec();
    columns.push(("attributes", Type::JSONB));
    columns
}

/// How many: what every COPY row starts with.
pub(super) const COLUMN_COUNT: usize = FIX_COLUMNS.len() + 1;

/// `INSERT ... SELECT FROM unnest($1::text[], ...) ON CONFLICT (device_id, ts) DO NOTHING`.
fn insert_statement() -> String {
    format!(
        "{} ON CONFLICT (device_id, ts) DO NOTHING",
        insert_from_arrays("positions", &columns())
    )
}

/// What an isolation wrote and refused.
pub(in crate::postgres) struct Isolation {
    /// What happened to the rows taken.
    pub(in crate::postgres) changes: Changes,
    /// The rows refused, by index, in order.
    pub(in crate::postgres) refused: Vec<Refusal>,
}

/// `positions`' writer on one connection, its statements prepared.
pub(in crate::postgres) struct PositionsWriter {
    copy: String,
    insert: Statement,
    /// The COPY encoding buffer, its blocks reused from one epoch to the next.
    blocks: Blocks,
}

impl PositionsWriter {
    /// Prepares the statements on `client`.
    pub(in crate::postgres) async fn prepare(
        client: &Client,
    ) -> Result<Self, tokio_postgres::Error> {
        Ok(PositionsWriter {
            copy: copy::copy_statement(),
            insert: client.prepare(&insert_statement()).await?,
            blocks: copy::copy_blocks(),
        })
    }

    /// Copies `rows` inside `tx` (the fast path); fails on a key that exists.
    pub(in crate::postgres) async fn copy(
        &mut self,
        tx: &Transaction<'_>,
        rows: &[&Position],
    ) -> Result<Changes, tokio_postgres::Error> {
        let inserted = copy::copy_rows(tx, &self.copy, rows, &mut self.blocks).await?;
        Ok(Changes {
            inserted,
            ..Changes::default()
        })
    }

    /// Inserts `rows` (in key order, as [`first_of_each_key`] gives them) inside `tx`, skipping
    /// keys that exist, `chunk` rows per statement (two writers taking the same keys in one
    /// order cannot deadlock).
    pub(in crate::postgres) async fn insert(
        &self,
        tx: &Transaction<'_>,
        rows: &[&Position],
        chunk: usize,
    ) -> Result<Changes, tokio_postgres::Error> {
        debug_assert!(rows.is_sorted_by_key(|row| row.key()));
        let mut inserted = 0;
        for part in rows.chunks(chunk.max(1)) {
            inserted += self.insert_rows(tx, part).await?;
        }
        Ok(Changes {
            inserted,
            duplicates: (rows.len() as u64).saturating_sub(inserted),
            ..Changes::default()
        })
    }

    /// Writes every row of `rows` the database accepts inside `tx`, each part under a savepoint,
    /// and returns the ones it refuses for their data (see the module doc), each refusal and
    /// each row taken told to `streak` (when there is one): a streak that becomes systematic
    /// (`super::super::refusals`) stops the isolation, and the caller rolls `tx` back. Any other
    /// failure is returned as it is: the caller retries the whole transaction, which is
    /// idempotent.
    pub(in crate::postgres) async fn isolate(
        &self,
        tx: &mut Transaction<'_>,
        rows: &[&Position],
        chunk: usize,
        streak: Option<&std::sync::Mutex<Streak>>,
    ) -> Result<Isolation, IsolateError> {
        let failed = |e: &tokio_postgres::Error| PostgresError::query("write", e);
        let taken = || {
            if let Some(streak) = streak {
                streak
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .taken();
            }
        };
        // parts are index ranges of `rows` (in key order, from first_of_each_key), the last
        // on top: taken first to last
        let chunk = chunk.max(1);
        let mut parts: Vec<Range<usize>> = (0..rows.len())
            .step_by(chunk)
            .map(|start| start..(start + chunk).min(rows.len()))
            .rev()
            .collect();
        let mut inserted = 0u64;
        let mut written = 0u64;
        let mut refused = Vec::new();
        while let Some(part) = parts.pop() {
            let savepoint = tx.savepoint("part").await.map_err(|e| failed(&e))?;
            match self.insert_rows(&savepoint, &rows[part.clone()]).await {
                Ok(count) => {
                    savepoint.commit().await.map_err(|e| failed(&e))?;
                    inserted += count;
                    written += part.len() as u64;
                    taken();
                }
                Err(error) => {
                    savepoint.rollback().await.map_err(|e| failed(&e))?;
                    let error = failed(&error);
                    if !error.is_data_error() {
                        return Err(error.into());
                    }
                    if part.len() > 1 {
                        let middle = part.start + part.len() / 2;
                        parts.push(middle..part.end);
                        parts.push(part.start..middle);
                    } else if error.code() == Some(SqlState::UNIQUE_VIOLATION.code()) {
                        // the key exists: written by another writer meanwhile
                        written += 1;
                        taken();
                    } else {
                        let index = part.start;
                        let refusal = Refusal {
                            index,
                            code: error.code.clone().unwrap_or_default(),
                            constraint: error.constraint.clone(),
                            message: error.message.clone(),
                        };
                        if let Some(streak) = streak {
                            let systematic = streak
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .refused(&rows[index].device_id, &refusal);
                            if let Some(systematic) = systematic {
                                return Err(IsolateError::Systematic(systematic));
                            }
                        }
                        refused.push(refusal);
                    }
                }
            }
        }
        refused.sort_unstable_by_key(|refusal| refusal.index);
        Ok(Isolation {
            changes: Changes {
                inserted,
                duplicates: written.saturating_sub(inserted),
                ..Changes::default()
            },
            refused,
        })
    }

    /// One `INSERT ... ON CONFLICT DO NOTHING` of `rows` inside `tx`; returns the rows inserted.
    async fn insert_rows(
        &self,
        tx: &Transaction<'_>,
        rows: &[&Position],
    ) -> Result<u64, tokio_postgres::Error> {
        let mut fixes = FixArrays::with_capacity(rows.len());
        let mut attributes: Vec<&str> = Vec::with_capacity(rows.len());
        for row in rows {
            fixes.push(&row.device_id, row.ts_micros, &LastFix::from(*row));
            attributes.push(&row.attributes);
        }
        let mut params: Vec<&(dyn ToSql + Sync)> = fixes.params();
        params.push(&attributes);
        tx.execute(&self.insert, &params).await
    }
}

/// The rows whose key `(device_id, ts)` has not come before among `batch`'s positions, sorted
/// by that key, and how many positions there were.
///
/// Sorted, because the primary key's btree is most of what a row costs PostgreSQL besides its
/// `jsonb`: rows in key order descend to neighbouring leaves one after the other, so the pages
/// and the keys compared are still in the server's CPU caches, where rows in arrival order
/// (devices interleaved) land on a random leaf each (`docs/performance.md`, round 5: about 15%
/// of PostgreSQL's CPU per row). The order also makes two replicas' COPYs of the same keys wait
/// for each other in one order, never in a cycle. (The keys are unique by then, so the sort
/// need not be stable.)
///
/// Trackers resend records whose acknowledgement they missed, so one key often arrives twice
/// within seconds, and usually in one epoch. Left in, such a pair makes the COPY fail on the
/// unique key and sends the whole batch down the slow `ON CONFLICT` path; taken out here (the
/// first one wins, as with `ON CONFLICT DO NOTHING`), the batch stays on the fast path and the
/// dropped copies are counted as duplicates. Keys that exist in the table already still take the
/// slow path.
pub(in crate::postgres) fn first_of_each_key(batch: &Batch<Rows>) -> (Vec<&Position>, usize) {
    // sized up front: growing the set rehashed every key several times per epoch
    let total = batch.positions().count();
    let mut seen: KeySet<(&str, i64)> = KeySet::with_capacity_and_hasher(total, Default::default());
    let mut first = Vec::with_capacity(total);
    first.extend(batch.positions().filter(|row| seen.insert(row.key())));
    first.sort_unstable_by_key(|row| row.key());
    (first, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_is_a_fix_and_its_attributes() {
        assert_eq!(columns().len(), COLUMN_COUNT);
        assert_eq!(columns()[COLUMN_COUNT - 1], ("attributes", Type::JSONB));
        let insert = insert_statement();
        assert!(
            insert.contains("$11::text[]") && insert.contains("u.attributes::jsonb"),
            "{insert}"
        );
        assert!(insert.ends_with("ON CONFLICT (device_id, ts) DO NOTHING"));
    }

    #[test]
    fn the_first_of_each_key_wins() {
        let a = dataflow::Position {
            device_id: "a".into(),
            ts_micros: 1,
            ..test_position()
        };
        let mut resent = a.clone();
        resent.latitude = 9.0;
        let b = dataflow::Position {
            device_id: "b".into(),
            ..a.clone()
        };
        let batch = Batch::from(vec![
            Rows::Positions(vec![a.clone(), resent]),
            Rows::Positions(vec![b.clone(), a.clone()]),
        ]);
        let (first, total) = first_of_each_key(&batch);
        assert_eq!(total, 4);
        assert_eq!(first, vec![&a, &b]);
        // in key order, whatever order they came in
        let later = dataflow::Position {
            ts_micros: 2,
            ..a.clone()
        };
        let batch = Batch::from(vec![Rows::Positions(vec![
            b.clone(),
            later.clone(),
            a.clone(),
        ])]);
        assert_eq!(first_of_each_key(&batch).0, vec![&a, &later, &b]);
    }

    fn test_position() -> Position {
        dataflow::codec::decode_payload(
            br#"{"device_id":"x","timestamp":1,"latitude":1.0,"longitude":2.0}"#,
        )
        .expect("a contract payload")
    }
}
