//! Writing an epoch's rows: idempotent, binary COPY on the fast path, and when the database
//! refuses some rows, exactly those rows found and set aside.
//!
//! Fast path: binary `COPY positions FROM STDIN` in one transaction, the fastest way into
//! PostgreSQL. COPY has no `ON CONFLICT`, so if any row's `(device_id, ts)` already exists (a
//! redelivery after a crash, or the same position twice in one epoch) the COPY fails with a unique
//! violation and rolls back, and the batch is written again on the idempotent path:
//! `INSERT ... SELECT FROM unnest(arrays) ON CONFLICT (device_id, ts) DO NOTHING`, one statement
//! per chunk of `WRITE_BATCH_SIZE` rows, its parameters bound as arrays, its rows in key order (two
//! replicas inserting the same keys in opposite orders would deadlock). There a row whose key
//! exists is skipped, so a redelivered entry writes nothing; rows sent minus rows inserted is the
//! duplicate count. Either way the transaction makes the batch all-or-nothing, and it carries
//! the epoch's `device_latest` fixes too (see `latest`).
//!
//! # Rows the database refuses
//! The codec refuses what PostgreSQL would refuse by itself, but a database can refuse more: a
//! `CHECK` constraint, a trigger that raises, a column narrowed. Such a failure is a *data* error
//! ([`PostgresError::is_data_error`]) and it would fail the batch forever. [`RowWriter::isolate`]
//! finds the refused rows by splitting the batch: each part is tried in a transaction of its own
//! (committed when it succeeds: the inserts are idempotent, so a part committed before a crash is
//! only a duplicate on redelivery), a part that fails is split in two, and a single row that fails
//! is refused, with the server's reason. About `k × log2(n)` statements find `k` bad rows among
//! `n`, and only when something was refused. A single row failing on the unique key is no
//! refusal: the key exists (TimescaleDB can raise it for `ON CONFLICT DO NOTHING` into a
//! compressed chunk while another writer inserts the same key), so it counts as a duplicate.
//! The fixes for `device_latest` are then taken from the rows written, not from the dataflow,
//! so that a refused row is never any device's latest.

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Statement};

use super::columns::{insert_from_arrays, Columns, COLUMNS};
use super::copy::{copy_blocks, copy_rows, copy_statement};
use super::latest::{upsert, upsert_statement};
use super::{connect, PostgresConfig, PostgresError};
use crate::blocks::Blocks;
use dataflow::{newest_per_device, Batch, KeySet, LatestFix, Position, Rows};

/// `INSERT ... SELECT FROM unnest($1::text[], ...) ON CONFLICT (device_id, ts) DO NOTHING`.
fn insert_statement() -> String {
    format!(
        "{} ON CONFLICT (device_id, ts) DO NOTHING",
        insert_from_arrays("positions", COLUMNS.len())
    )
}

/// Rows inserted and rows skipped as duplicates by one write, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOutcome {
    /// New rows.
    pub inserted: u64,
    /// Rows whose `(device_id, ts)` existed already.
    pub duplicates: u64,
    /// `device_latest` rows inserted or moved forward.
    pub latest: u64,
    /// Which statement wrote them.
    pub path: WritePath,
}

/// The statement an epoch's rows went in with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WritePath {
    /// Binary `COPY`: no key existed.
    Copy,
    /// `INSERT ... ON CONFLICT DO NOTHING`, after the COPY met an existing key (or while rows
    /// the database refuses are being isolated).
    Insert,
}

impl WritePath {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            WritePath::Copy => "copy",
            WritePath::Insert => "insert",
        }
    }
}

/// A row the database refused, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Its index in the batch given to [`RowWriter::isolate`].
    pub index: usize,
    /// The SQLSTATE.
    pub code: String,
    /// The constraint the server named, if any.
    pub constraint: Option<String>,
    /// The server's message.
    pub message: String,
}

impl Refusal {
    /// The dead letter's `error`: `postgres <SQLSTATE> [<constraint>]: <message>`.
    pub fn reason(&self) -> String {
        match &self.constraint {
            Some(constraint) => format!("postgres {} {constraint}: {}", self.code, self.message),
            None => format!("postgres {}: {}", self.code, self.message),
        }
    }
}

/// What [`RowWriter::isolate`] wrote and refused.
#[derive(Debug)]
pub struct Isolated {
    /// The rows written (and skipped as duplicates).
    pub outcome: WriteOutcome,
    /// The rows refused.
    pub refused: Vec<Refusal>,
    /// Why `device_latest` refused the written rows' fixes, if it did (they are then skipped:
    /// the positions are durable, and the table catches up with the device's next fix).
    pub latest_refused: Option<PostgresError>,
}

/// A connection and its prepared statements.
struct Connection {
    client: Client,
    insert: Statement,
    upsert: Statement,
    /// The COPY encoding buffer, its blocks reused from one epoch to the next.
    blocks: Blocks,
}

/// One worker's database writer: its own connection, so workers write in parallel.
pub struct RowWriter {
    config: PostgresConfig,
    copy: String,
    conn: Option<Connection>,
}

impl RowWriter {
    /// A writer that connects on first use.
    pub fn new(config: &PostgresConfig) -> Self {
        RowWriter {
            config: config.clone(),
            copy: copy_statement(),
            conn: None,
        }
    }

    fn batch_size(&self) -> usize {
        usize::try_from(self.config.write_batch_size)
            .unwrap_or(usize::MAX)
            .max(1)
    }

    /// The connection, opened (and the statements prepared) if needed.
    async fn connection(&mut self) -> Result<&mut Connection, PostgresError> {
        let conn = match self.conn.take() {
            Some(conn) if !conn.client.is_closed() => conn,
            _ => {
                let failed = |e: &tokio_postgres::Error| PostgresError::query("write", e);
                let client = connect(&self.config.url, self.config.ca_file.as_deref()).await?;
                let insert = client
                    .prepare(&insert_statement())
                    .await
                    .map_err(|e| failed(&e))?;
                let upsert = client
                    .prepare(&upsert_statement())
                    .await
                    .map_err(|e| failed(&e))?;
                Connection {
                    client,
                    insert,
                    upsert,
                    blocks: copy_blocks(),
                }
            }
        };
        Ok(self.conn.insert(conn))
    }

    /// Writes the positions and fixes of `batch` in one transaction. On error nothing of it is
    /// committed; a broken connection is reopened by the next call.
    pub async fn write(&mut self, batch: &Batch<Rows>) -> Result<WriteOutcome, PostgresError> {
        let failed = |e: &tokio_postgres::Error| PostgresError::query("write", e);
        let batch_size = self.batch_size();
        let (rows, total) = first_of_each_key(batch);
        let repeated = (total - rows.len()) as u64;
        let fixes = newest_per_device(batch.latest());
        let copy = self.copy.clone();
        let conn = self.connection().await?;
        let fast = async {
            let tx = conn.client.transaction().await?;
            let inserted = copy_rows(&tx, &copy, &rows, &mut conn.blocks).await?;
            let latest = upsert(&tx, &conn.upsert, &fixes, batch_size).await?;
            tx.commit().await?;
            Ok::<_, tokio_postgres::Error>((inserted, latest))
        }
        .await;
        match fast {
            Ok((inserted, latest)) => Ok(WriteOutcome {
                inserted,
                duplicates: repeated,
                latest,
                path: WritePath::Copy,
            }),
            Err(error) if error.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                tracing::debug!(
                    rows = rows.len(),
                    "a key exists already; writing the batch with ON CONFLICT"
                );
                let mut sorted = rows;
                sorted.sort_unstable_by_key(|row| row.key());
                let tx = conn.client.transaction().await.map_err(|e| failed(&e))?;
                let mut inserted = 0;
                for chunk in sorted.chunks(batch_size) {
                    inserted += insert_rows(&tx, &conn.insert, chunk)
                        .await
                        .map_err(|e| failed(&e))?;
                }
                let latest = upsert(&tx, &conn.upsert, &fixes, batch_size)
                    .await
                    .map_err(|e| failed(&e))?;
                tx.commit().await.map_err(|e| failed(&e))?;
                Ok(WriteOutcome {
                    inserted,
                    duplicates: (total as u64).saturating_sub(inserted),
                    latest,
                    path: WritePath::Insert,
                })
            }
            Err(error) => Err(failed(&error)),
        }
    }

    /// Writes every row of `rows` the database accepts and returns the ones it refuses for their
    /// data (see the module doc), then the written rows' newest fix per device. Any other
    /// failure is returned as it is: the caller retries the whole isolation, which is idempotent.
    pub async fn isolate(&mut self, rows: &[&Position]) -> Result<Isolated, PostgresError> {
        let failed = |e: &tokio_postgres::Error| PostgresError::query("write", e);
        let batch_size = self.batch_size();
        let conn = self.connection().await?;
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_unstable_by_key(|&i| rows[i].key());
        let mut parts: Vec<&[usize]> = order.chunks(batch_size).rev().collect();
        let mut inserted = 0u64;
        let mut written = 0u64;
        let mut refused = Vec::new();
        while let Some(part) = parts.pop() {
            let chunk: Vec<&Position> = part.iter().map(|&i| rows[i]).collect();
            let attempt = async {
                let tx = conn.client.transaction().await?;
                let count = insert_rows(&tx, &conn.insert, &chunk).await?;
                tx.commit().await?;
                Ok::<u64, tokio_postgres::Error>(count)
            }
            .await;
            match attempt {
                Ok(count) => {
                    inserted += count;
                    written += part.len() as u64;
                }
                Err(error) => {
                    let error = failed(&error);
                    if !error.is_data_error() {
                        return Err(error);
                    }
                    match part {
                        // the key exists: written by another writer meanwhile
                        [_] if error.code() == Some(SqlState::UNIQUE_VIOLATION.code()) => {
                            written += 1;
                        }
                        [index] => refused.push(Refusal {
                            index: *index,
                            code: error.code.clone().unwrap_or_default(),
                            constraint: error.constraint.clone(),
                            message: error.message.clone(),
                        }),
                        _ => {
                            let (first, second) = part.split_at(part.len() / 2);
                            parts.push(second);
                            parts.push(first);
                        }
                    }
                }
            }
        }
        refused.sort_unstable_by_key(|refusal| refusal.index);

        // device_latest from what was written: refused rows are no device's latest
        let mut written_fixes: Vec<LatestFix> = Vec::with_capacity(rows.len());
        let mut next_refused = 0;
        for (index, row) in rows.iter().enumerate() {
            if refused.get(next_refused).map(|refusal| refusal.index) == Some(index) {
                next_refused += 1;
            } else {
                written_fixes.push(LatestFix::from(*row));
            }
        }
        let fixes = newest_per_device(&written_fixes);
        let attempt = async {
            let tx = conn.client.transaction().await?;
            let moved = upsert(&tx, &conn.upsert, &fixes, batch_size).await?;
            tx.commit().await?;
            Ok::<u64, tokio_postgres::Error>(moved)
        }
        .await;
        let (latest, latest_refused) = match attempt.map_err(|e| failed(&e)) {
            Ok(moved) => (moved, None),
            Err(error) if error.is_data_error() => (0, Some(error)),
            Err(error) => return Err(error),
        };
        Ok(Isolated {
            outcome: WriteOutcome {
                inserted,
                duplicates: written.saturating_sub(inserted),
                latest,
                path: WritePath::Insert,
            },
            refused,
            latest_refused,
        })
    }
}

/// The rows whose key `(device_id, ts)` has not come before among `rows`, in order, and how many
/// rows there were.
///
/// Trackers resend records whose acknowledgement they missed, so one key often arrives twice
/// within seconds, and usually in one epoch. Left in, such a pair makes the COPY fail on the
/// unique key and sends the whole batch down the slow `ON CONFLICT` path; taken out here (the
/// first one wins, as with `ON CONFLICT DO NOTHING`), the batch stays on the fast path and the
/// dropped copies are counted as duplicates. Keys that exist in the table already still take the
/// slow path.
fn first_of_each_key(batch: &Batch<Rows>) -> (Vec<&Position>, usize) {
    // sized up front: growing the set rehashed every key several times per epoch
    let total = batch.positions().count();
    let mut seen: KeySet<(&str, i64)> = KeySet::with_capacity_and_hasher(total, Default::default());
    let mut first = Vec::with_capacity(total);
    first.extend(batch.positions().filter(|row| seen.insert(row.key())));
    (first, total)
}

/// One `INSERT ... ON CONFLICT DO NOTHING` of `rows` inside `tx`; returns the rows inserted.
async fn insert_rows(
    tx: &tokio_postgres::Transaction<'_>,
    statement: &Statement,
    rows: &[&Position],
) -> Result<u64, tokio_postgres::Error> {
    let columns = Columns::positions(rows);
    tx.execute(statement, &columns.params()).await
}
