//! Writing an epoch's rows: one transaction, `positions` first, then each derived table, so the
//! epoch is all-or-nothing and every derived row changes with the positions that change it.
//!
//! The writer owns the connection and the transaction; what each table writes, and how, is in
//! its own file under `tables/`. The transaction is tried on the fast path first (`positions` by
//! binary COPY); when a key exists already, again with `INSERT ... ON CONFLICT DO NOTHING`; and
//! when the database refuses rows for their data, [`EpochWriter::isolate`] finds them under
//! savepoints, so that the rest of the epoch commits and the refused rows can be dead-lettered.

use std::sync::{Arc, Mutex};
use tokio_postgres::error::SqlState;

use tokio_postgres::Client;

use super::refusals::{Refusal, Streak, Systematic};
use super::tables::positions::{first_of_each_key, PositionsWriter};
use super::tables::{
    derived_tables, Changes, DerivedTable, DerivedWriter, EpochRows, Outputs, TableChanges,
    POSITIONS,
};
use super::{PostgresConfig, PostgresError};
use dataflow::{Batch, Position, Rows};

/// What one epoch write did, table by table (`positions` first), and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Each table's changes, in the order they were written.
    pub tables: Vec<TableChanges>,
    /// Which statement wrote the positions.
    pub path: WritePath,
}

/// The statement an epoch's positions went in with.
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

/// What [`EpochWriter::isolate`] wrote and refused.
#[derive(Debug)]
pub struct Isolated<'a> {
    /// The rows written (and skipped as duplicates), table by table.
    pub outcome: WriteOutcome,
    /// The positions refused, and why.
    pub refused: Vec<(&'a Position, Refusal)>,
    /// The derived tables that refused the rows written from the epoch, and why: their share is
    /// then skipped (the positions are durable, and a table like `device_latest` catches up with
    /// the device's next fix).
    pub derived_refused: Vec<(&'static str, PostgresError)>,
}

/// Why [`EpochWriter::isolate`] wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum IsolateError {
    /// PostgreSQL failed otherwise than by refusing rows: retry the isolation.
    #[error(transparent)]
    Postgres(#[from] PostgresError),
    /// The database refuses every row (see `refusals`): the epoch is held, retried until it
    /// lands.
    #[error(transparent)]
    Systematic(Systematic),
}

/// A connection and each table's writer on it.
struct Connection {
    client: Client,
    positions: PositionsWriter,
    /// The derived tables' writers, with their tables' names, in registration order.
    derived: Vec<(&'static str, Box<dyn DerivedWriter>)>,
}

/// One worker's database writer: its own connection, so workers write in parallel.
pub struct EpochWriter {
    config: PostgresConfig,
    derived: Vec<Box<dyn DerivedTable>>,
    /// The process's streak of refused rows (`REFUSED_ROWS=auto`); `None`: every refused row is
    /// dead-lettered (`REFUSED_ROWS=dead-letter`).
    streak: Option<Arc<Mutex<Streak>>>,
    conn: Option<Connection>,
}

impl EpochWriter {
    /// A writer of `positions` and of the derived tables `outputs` turns on, telling refusals
    /// apart with `streak` (shared by the process's writers) when there is one; it connects on
    /// first use.
    pub fn new(
        config: &PostgresConfig,
        outputs: Outputs,
        streak: Option<Arc<Mutex<Streak>>>,
    ) -> Self {
        EpochWriter {
            config: config.clone(),
            derived: derived_tables(outputs),
            streak,
            conn: None,
        }
    }

    fn batch_size(&self) -> usize {
        usize::try_from(self.config.write_batch_size)
            .unwrap_or(usize::MAX)
            .max(1)
    }

    /// The connection, opened (and every table's statements prepared) if needed.
    async fn connection(&mut self) -> Result<&mut Connection, PostgresError> {
        let conn = match self.conn.take() {
            Some(conn) if !conn.client.is_closed() => conn,
            _ => {
                let failed = |e: &tokio_postgres::Error| PostgresError::query("write", e);
                let client = self.config.link.connect().await?;
                let positions = PositionsWriter::prepare(&client)
                    .await
                    .map_err(|e| failed(&e))?;
                let mut derived = Vec::with_capacity(self.derived.len());
                for table in &self.derived {
                    derived.push((
                        table.table(),
                        table.prepare(&client).await.map_err(|e| failed(&e))?,
                    ));
                }
                Connection {
                    client,
                    positions,
                    derived,
                }
            }
        };
        Ok(self.conn.insert(conn))
    }

    /// Writes `batch` in one transaction: its positions (the first of each key), then every
    /// derived table. On error nothing of it is committed; a broken connection is reopened by
    /// the next call.
    pub async fn write(&mut self, batch: &Batch<Rows>) -> Result<WriteOutcome, PostgresError> {
        let chunk = self.batch_size();
        let (rows, total) = first_of_each_key(batch);
        let repeated = (total - rows.len()) as u64;
        let conn = self.connection().await?;
        let mut path = WritePath::Copy;
        let mut tables = match conn.transact(path, batch, &rows, chunk).await {
            Err(error) if error.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                tracing::debug!(
                    rows = rows.len(),
                    "a key exists already; writing the batch with ON CONFLICT"
                );
                path = WritePath::Insert;
                conn.transact(path, batch, &rows, chunk).await
            }
            written => written,
        }
        .map_err(|e| PostgresError::query("write", &e))?;
        if let Some(positions) = tables.first_mut() {
            positions.changes.duplicates += repeated;
        }
        if let (Some(streak), false) = (&self.streak, rows.is_empty()) {
            // rows taken: whatever was refused before is no streak with what is refused next
            streak
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .taken();
        }
        Ok(WriteOutcome { tables, path })
    }

    /// Writes every position of `batch` the database accepts and returns the ones it refuses
    /// for their data, then every derived table from the positions taken, in one transaction.
    /// A derived table that refuses its share is skipped (see [`Isolated::derived_refused`]).
    /// When the refusals make a systematic streak, nothing is committed and
    /// [`IsolateError::Systematic`] says why. Any other failure is returned as it is: the caller
    /// retries the whole isolation, which is idempotent.
    pub async fn isolate<'a>(
        &mut self,
        batch: &'a Batch<Rows>,
    ) -> Result<Isolated<'a>, IsolateError> {
        let failed = |e: &tokio_postgres::Error| PostgresError::query("write", e);
        let chunk = self.batch_size();
        let (rows, total) = first_of_each_key(batch);
        let repeated = (total - rows.len()) as u64;
        let streak = self.streak.clone();
        let conn = self.connection().await?;
        let mut tx = conn.client.transaction().await.map_err(|e| failed(&e))?;
        // (on any error, dropping `tx` rolls it back)
        let isolation = conn
            .positions
            .isolate(&mut tx, &rows, chunk, streak.as_deref())
            .await?;
        let written = taken(&rows, &isolation.refused);
        let epoch = EpochRows {
            batch,
            written: Some(&written),
            positions: &written,
            fresh: false,
        };
        let mut tables = vec![TableChanges {
            table: POSITIONS,
            changes: Changes {
                duplicates: isolation.changes.duplicates + repeated,
                ..isolation.changes
            },
        }];
        let mut derived_refused = Vec::new();
        for (table, writer) in &conn.derived {
            let savepoint = tx.savepoint("derived").await.map_err(|e| failed(&e))?;
            match writer.write(&savepoint, &epoch, chunk).await {
                Ok(changes) => {
                    savepoint.commit().await.map_err(|e| failed(&e))?;
                    tables.push(TableChanges { table, changes });
                }
                Err(error) => {
                    savepoint.rollback().await.map_err(|e| failed(&e))?;
                    let error = failed(&error);
                    if !error.is_data_error() {
                        return Err(error.into());
                    }
                    derived_refused.push((*table, error));
                }
            }
        }
        tx.commit().await.map_err(|e| failed(&e))?;
        conn.committed();
        let refused = isolation
            .refused
            .into_iter()
            .map(|refusal| (rows[refusal.index], refusal))
            .collect();
        Ok(Isolated {
            outcome: WriteOutcome {
                tables,
                path: WritePath::Insert,
            },
            refused,
            derived_refused,
        })
    }
}

impl Connection {
    /// One transaction of `rows` (`batch`'s, the first of each key) into `positions` by `path`,
    /// then into every derived table; each table's changes, `positions` first.
    async fn transact(
        &mut self,
        path: WritePath,
        batch: &Batch<Rows>,
        rows: &[&Position],
        chunk: usize,
    ) -> Result<Vec<TableChanges>, tokio_postgres::Error> {
        let tx = self.client.transaction().await?;
        let positions = match path {
            WritePath::Copy => self.positions.copy(&tx, rows).await?,
            WritePath::Insert => self.positions.insert(&tx, rows, chunk).await?,
        };
        let mut tables = Vec::with_capacity(1 + self.derived.len());
        tables.push(TableChanges {
            table: POSITIONS,
            changes: positions,
        });
        let epoch = EpochRows {
            batch,
            written: None,
            positions: rows,
            // a COPY that returned took every row: it fails on any key stored already
            fresh: path == WritePath::Copy,
        };
        for (table, writer) in &self.derived {
            let changes = writer.write(&tx, &epoch, chunk).await?;
            tables.push(TableChanges { table, changes });
        }
        tx.commit().await?;
        self.committed();
        Ok(tables)
    }

    /// Tells every derived table's writer that its last write's transaction committed.
    fn committed(&self) {
        for (_, writer) in &self.derived {
            writer.committed();
        }
    }
}

/// The rows of `rows` not in `refused` (sorted by index).
fn taken<'a>(rows: &[&'a Position], refused: &[Refusal]) -> Vec<&'a Position> {
    let mut taken = Vec::with_capacity(rows.len());
    let mut next = refused.iter().map(|refusal| refusal.index).peekable();
    for (index, row) in rows.iter().enumerate() {
        if next.peek() == Some(&index) {
            next.next();
        } else {
            taken.push(*row);
        }
    }
    taken
}
