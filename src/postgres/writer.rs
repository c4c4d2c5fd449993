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
//! duplicate count. Either way the transaction makes the batch all-or-nothing.
//!
//! # Rows the database refuses
//! The codec refuses what PostgreSQL would refuse by itself, but a database can refuse more: a
//! `CHECK` constraint, a trigger that raises, a column narrowed. Such a failure is a *data* error
//! ([`PostgresError::is_data_error`]) and it would fail the batch forever. [`RowWriter::isolate`]
//! finds the refused rows by splitting the batch: each part is tried in a transaction of its own
//! (committed when it succeeds: the inserts are idempotent, so a part committed before a crash is
//! only a duplicate on redelivery), a part that fails is split in two, and a single row that fails
//! is refused, with the server's reason. About `k × log2(n)` statements find `k` bad rows among
//! `n`, and only when something was refused.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::pin::pin;

use bytes::{BufMut, BytesMut};
use futures_util::SinkExt;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Statement};

use super::timestamp::{Timestamp, PG_EPOCH_OFFSET_MICROS};
use super::{connect, PostgresConfig, PostgresError};
use dataflow::{Batch, Position};

/// The columns the service writes, with their wire types: the one list both statements are built
/// from (their order is the order [`encode_row`] and [`Columns`] give a row's values in).
const COLUMNS: [(&str, Type); 11] = [
    ("device_id", Type::TEXT),
    ("ts", Type::TIMESTAMPTZ),
    ("latitude", Type::FLOAT8),
    ("longitude", Type::FLOAT8),
    ("altitude", Type::FLOAT4),
    ("angle", Type::FLOAT4),
    ("speed", Type::FLOAT4),
    ("satellites", Type::INT2),
    ("priority", Type::INT2),
    ("event_id", Type::INT4),
    ("attributes", Type::JSONB),
];

fn column_list() -> String {
    COLUMNS
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `COPY positions (...) FROM STDIN (FORMAT binary)`.
fn copy_statement() -> String {
    format!(
        "COPY positions ({}) FROM STDIN (FORMAT binary)",
        column_list()
    )
}

/// `INSERT ... SELECT FROM unnest($1::text[], ...) ON CONFLICT (device_id, ts) DO NOTHING`; jsonb
/// travels as text (`::jsonb` on the way in), since arrays of the binary jsonb form cannot be
/// bound.
fn insert_statement() -> String {
    let arrays: Vec<String> = COLUMNS
        .iter()
        .enumerate()
        .map(|(i, (_, ty))| {
            let element = if *ty == Type::JSONB {
                "text"
            } else {
                ty.name()
            };
            format!("${}::{element}[]", i + 1)
        })
        .collect();
    let selected: Vec<String> = COLUMNS
        .iter()
        .map(|(name, ty)| {
            if *ty == Type::JSONB {
                format!("u.{name}::jsonb")
            } else {
                format!("u.{name}")
            }
        })
        .collect();
    format!(
        "INSERT INTO positions ({}) SELECT {} FROM unnest({}) AS u({}) \
         ON CONFLICT (device_id, ts) DO NOTHING",
        column_list(),
        selected.join(", "),
        arrays.join(", "),
        column_list()
    )
}

/// Rows inserted and rows skipped as duplicates by one write, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOutcome {
    /// New rows.
    pub inserted: u64,
    /// Rows whose `(device_id, ts)` existed already.
    pub duplicates: u64,
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Isolated {
    /// The rows written (and skipped as duplicates).
    pub outcome: WriteOutcome,
    /// The rows refused.
    pub refused: Vec<Refusal>,
}

/// A connection and its prepared insert.
struct Connection {
    client: Client,
    insert: Statement,
}

/// One worker's database writer: its own connection, so workers write in parallel.
pub struct RowWriter {
    config: PostgresConfig,
    copy: String,
    insert: String,
    conn: Option<Connection>,
}

impl RowWriter {
    /// A writer that connects on first use.
    pub fn new(config: &PostgresConfig) -> Self {
        RowWriter {
            config: config.clone(),
            copy: copy_statement(),
            insert: insert_statement(),
            conn: None,
        }
    }

    fn batch_size(&self) -> usize {
        usize::try_from(self.config.write_batch_size)
            .unwrap_or(usize::MAX)
            .max(1)
    }

    /// The connection, opened (and the insert prepared) if needed.
    async fn connection(&mut self) -> Result<&mut Connection, PostgresError> {
        let conn = match self.conn.take() {
            Some(conn) if !conn.client.is_closed() => conn,
            _ => {
                let client = connect(&self.config.url, self.config.ca_file.as_deref()).await?;
                let insert = client
                    .prepare(&self.insert)
                    .await
                    .map_err(|e| PostgresError::query("write", &e))?;
                Connection { client, insert }
            }
        };
        Ok(self.conn.insert(conn))
    }

    /// Writes all `rows` in one transaction. On error nothing of it is committed; a broken
    /// connection is reopened by the next call.
    pub async fn write(&mut self, batch: &Batch<Position>) -> Result<WriteOutcome, PostgresError> {
        let failed = |e: &tokio_postgres::Error| PostgresError::query("write", e);
        let copy = self.copy.clone();
        let batch_size = self.batch_size();
        let rows = first_of_each_key(batch);
        let repeated = (batch.len() - rows.len()) as u64;
        let conn = self.connection().await?;
        match copy_rows(&mut conn.client, &copy, &rows).await {
            Ok(inserted) => Ok(WriteOutcome {
                inserted,
                duplicates: repeated,
                path: WritePath::Copy,
            }),
            Err(error) if error.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                tracing::debug!(
                    rows = rows.len(),
                    "a key exists already; writing the batch with ON CONFLICT"
                );
                let mut sorted = rows;
                sorted.sort_unstable_by(|a, b| {
                    (&a.device_id, a.ts_micros).cmp(&(&b.device_id, b.ts_micros))
                });
                let tx = conn.client.transaction().await.map_err(|e| failed(&e))?;
                let mut inserted = 0;
                for chunk in sorted.chunks(batch_size) {
                    inserted += insert_rows(&tx, &conn.insert, chunk)
                        .await
                        .map_err(|e| failed(&e))?;
                }
                tx.commit().await.map_err(|e| failed(&e))?;
                Ok(WriteOutcome {
                    inserted,
                    duplicates: (batch.len() as u64).saturating_sub(inserted),
                    path: WritePath::Insert,
                })
            }
            Err(error) => Err(failed(&error)),
        }
    }

    /// Writes every row of `rows` the database accepts and returns the ones it refuses for their
    /// data (see the module doc). Any other failure is returned as it is: the caller retries the
    /// whole isolation, which is idempotent.
    pub async fn isolate(&mut self, rows: &[&Position]) -> Result<Isolated, PostgresError> {
        let failed = |e: &tokio_postgres::Error| PostgresError::query("write", e);
        let batch_size = self.batch_size();
        let conn = self.connection().await?;
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_unstable_by(|a, b| {
            let (a, b) = (&rows[*a], &rows[*b]);
            (&a.device_id, a.ts_micros).cmp(&(&b.device_id, b.ts_micros))
        });
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
        Ok(Isolated {
            outcome: WriteOutcome {
                inserted,
                duplicates: written.saturating_sub(inserted),
                path: WritePath::Insert,
            },
            refused,
        })
    }
}

/// The rows of `batch` whose key `(device_id, ts)` has not come before in it, in order.
///
/// Trackers resend records whose acknowledgement they missed, so one key often arrives twice
/// within seconds, and usually in one epoch. Left in, such a pair makes the COPY fail on the
/// unique key and sends the whole batch down the slow `ON CONFLICT` path; taken out here (the
/// first one wins, as with `ON CONFLICT DO NOTHING`), the batch stays on the fast path and the
/// dropped copies are counted as duplicates. Keys that exist in the table already still take the
/// slow path.
fn first_of_each_key(batch: &Batch<Position>) -> Vec<&Position> {
    let mut seen: HashSet<(&str, i64), BuildHasherDefault<KeyHasher>> =
        HashSet::with_capacity_and_hasher(batch.len(), BuildHasherDefault::default());
    batch
        .iter()
        .filter(|row| seen.insert((row.device_id.as_str(), row.ts_micros)))
        .collect()
}

/// FNV-1a over the key's bytes, finished with a multiply: a fast hash for short keys that come
/// from trackers, not from an adversary choosing collisions (a collision costs a comparison).
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut hash = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for byte in bytes {
            hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = hash;
    }
}

/// Send the COPY data in pieces of about this size.
const COPY_CHUNK: usize = 256 * 1024;

/// The fast path: all rows in one binary COPY, in one transaction.
///
/// The binary format is written here directly (a header, then per row the field count and each
/// field's length and big-endian value, then a trailer) rather than through tokio-postgres's
/// `BinaryCopyInWriter`, which takes each value through a `dyn ToSql` and each row through an
/// `await`: the rows are plain data of fixed types, and encoding them is a loop of appends.
async fn copy_rows(
    client: &mut Client,
    statement: &str,
    rows: &[&Position],
) -> Result<u64, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let mut sink = pin!(tx.copy_in(statement).await?);
    let mut buf = BytesMut::with_capacity(COPY_CHUNK + 4096);
    buf.put_slice(b"PGCOPY\n\xff\r\n\0");
    buf.put_i32(0); // flags
    buf.put_i32(0); // header extension length
    for row in rows.iter() {
        encode_row(&mut buf, row);
        if buf.len() >= COPY_CHUNK {
            sink.send(buf.split().freeze()).await?;
        }
    }
    buf.put_i16(-1); // trailer
    sink.send(buf.freeze()).await?;
    let inserted = sink.as_mut().finish().await?;
    tx.commit().await?;
    Ok(inserted)
}

/// Appends one row in PostgreSQL's binary COPY format, fields in [`COLUMNS`] order.
fn encode_row(buf: &mut BytesMut, row: &Position) {
    buf.put_i16(COLUMNS.len() as i16);
    put_bytes(buf, row.device_id.as_bytes());
    buf.put_i32(8);
    buf.put_i64(row.ts_micros.saturating_sub(PG_EPOCH_OFFSET_MICROS));
    buf.put_i32(8);
    buf.put_f64(row.latitude);
    buf.put_i32(8);
    buf.put_f64(row.longitude);
    for value in [row.altitude, row.angle, row.speed] {
        match value {
            Some(value) => {
                buf.put_i32(4);
                buf.put_f32(value);
            }
            None => buf.put_i32(-1),
        }
    }
    for value in [row.satellites, row.priority] {
        match value {
            Some(value) => {
                buf.put_i32(2);
                buf.put_i16(value);
            }
            None => buf.put_i32(-1),
        }
    }
    match row.event_id {
        Some(value) => {
            buf.put_i32(4);
            buf.put_i32(value);
        }
        None => buf.put_i32(-1),
    }
    // jsonb's binary form: a version byte (1), then the JSON text
    buf.put_i32(i32::try_from(row.attributes.len() + 1).unwrap_or(i32::MAX));
    buf.put_u8(1);
    buf.put_slice(row.attributes.as_bytes());
}

/// A text field: its length, then its bytes.
fn put_bytes(buf: &mut BytesMut, bytes: &[u8]) {
    buf.put_i32(i32::try_from(bytes.len()).unwrap_or(i32::MAX));
    buf.put_slice(bytes);
}

/// One `INSERT ... ON CONFLICT DO NOTHING` of `rows` inside `tx`; returns the rows inserted.
async fn insert_rows(
    tx: &tokio_postgres::Transaction<'_>,
    statement: &Statement,
    rows: &[&Position],
) -> Result<u64, tokio_postgres::Error> {
    let columns = Columns::from_rows(rows);
    tx.execute(
        statement,
        &[
            &columns.device_id,
            &columns.ts,
            &columns.latitude,
            &columns.longitude,
            &columns.altitude,
            &columns.angle,
            &columns.speed,
            &columns.satellites,
            &columns.priority,
            &columns.event_id,
            &columns.attributes,
        ],
    )
    .await
}

/// The rows of a chunk as column arrays, in [`COLUMNS`] order, all built in one loop so they
/// have one length (`unnest` would silently pad shorter arrays with NULL).
struct Columns<'a> {
    device_id: Vec<&'a str>,
    ts: Vec<Timestamp>,
    latitude: Vec<f64>,
    longitude: Vec<f64>,
    altitude: Vec<Option<f32>>,
    angle: Vec<Option<f32>>,
    speed: Vec<Option<f32>>,
    satellites: Vec<Option<i16>>,
    priority: Vec<Option<i16>>,
    event_id: Vec<Option<i32>>,
    attributes: Vec<&'a str>,
}

impl<'a> Columns<'a> {
    fn from_rows(rows: &[&'a Position]) -> Self {
        let n = rows.len();
        let mut columns = Columns {
            device_id: Vec::with_capacity(n),
            ts: Vec::with_capacity(n),
            latitude: Vec::with_capacity(n),
            longitude: Vec::with_capacity(n),
            altitude: Vec::with_capacity(n),
            angle: Vec::with_capacity(n),
            speed: Vec::with_capacity(n),
            satellites: Vec::with_capacity(n),
            priority: Vec::with_capacity(n),
            event_id: Vec::with_capacity(n),
            attributes: Vec::with_capacity(n),
        };
        for row in rows {
            columns.device_id.push(&row.device_id);
            columns.ts.push(Timestamp(row.ts_micros));
            columns.latitude.push(row.latitude);
            columns.longitude.push(row.longitude);
            columns.altitude.push(row.altitude);
            columns.angle.push(row.angle);
            columns.speed.push(row.speed);
            columns.satellites.push(row.satellites);
            columns.priority.push(row.priority);
            columns.event_id.push(row.event_id);
            columns.attributes.push(&row.attributes);
        }
        columns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_statements_come_from_the_one_column_list() {
        let copy = copy_statement();
        let insert = insert_statement();
        let list = "device_id, ts, latitude, longitude, altitude, angle, speed, satellites, priority, event_id, attributes";
        assert!(copy.contains(list), "{copy}");
        assert_eq!(insert.matches(list).count(), 2, "{insert}");
        assert!(
            insert.contains("$1::text[]") && insert.contains("$11::text[]"),
            "{insert}"
        );
        assert!(
            insert.contains("$2::timestamptz[]") && insert.contains("u.attributes::jsonb"),
            "{insert}"
        );
    }
}
