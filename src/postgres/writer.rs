//! Writing one epoch's rows: one transaction, idempotent, COPY on the fast path.
//!
//! Fast path: binary `COPY positions FROM STDIN`, the fastest way into PostgreSQL. COPY has no
//! `ON CONFLICT`, so if any row's `(device_id, ts)` already exists (a redelivery after a crash,
//! or the same position twice in one epoch) the COPY fails with a unique violation and rolls
//! back, and the epoch is written again on the idempotent path:
//! `INSERT ... SELECT FROM unnest(arrays) ON CONFLICT (device_id, ts) DO NOTHING`, one statement
//! per chunk of `WRITE_BATCH_SIZE` rows, its parameters bound as arrays. There a row whose key
//! exists is skipped, so a redelivered entry writes nothing; rows sent minus rows inserted is the
//! duplicate count. Duplicates are rare, so nearly every epoch takes the fast path. Either way
//! the transaction makes the epoch all-or-nothing, which is what lets the sink report it
//! committed as a whole.

use std::pin::pin;

use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Statement};

use super::timestamp::{Jsonb, Timestamp};
use super::{connect, PostgresError};
use dataflow::Position;

const INSERT: &str = "
INSERT INTO positions
    (device_id, ts, latitude, longitude, altitude, angle, speed,
     satellites, priority, event_id, attributes)
SELECT d, t, la, lo, al, an, sp, sa, pr, ev, at::jsonb
FROM unnest($1::text[], $2::timestamptz[], $3::float8[], $4::float8[], $5::float4[],
            $6::float4[], $7::float4[], $8::int2[], $9::int2[], $10::int4[], $11::text[])
     AS u(d, t, la, lo, al, an, sp, sa, pr, ev, at)
ON CONFLICT (device_id, ts) DO NOTHING";

const COPY: &str = "COPY positions (device_id, ts, latitude, longitude, altitude, angle, speed, \
    satellites, priority, event_id, attributes) FROM STDIN (FORMAT binary)";

/// The column types of `COPY`, in its column order.
const COPY_TYPES: [Type; 11] = [
    Type::TEXT,
    Type::TIMESTAMPTZ,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::FLOAT4,
    Type::FLOAT4,
    Type::FLOAT4,
    Type::INT2,
    Type::INT2,
    Type::INT4,
    Type::JSONB,
];

/// Rows inserted and rows skipped as duplicates by one epoch's write, and how.
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
    /// `INSERT ... ON CONFLICT DO NOTHING`, after the COPY met an existing key.
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

/// One worker's database writer: its own connection, so workers write in parallel.
pub struct RowWriter {
    database_url: String,
    ca_file: Option<std::path::PathBuf>,
    batch_size: usize,
    conn: Option<(Client, Statement)>,
}

impl RowWriter {
    /// A writer that connects on first use.
    pub fn new(database_url: &str, ca_file: Option<&std::path::Path>, batch_size: usize) -> Self {
        RowWriter {
            database_url: database_url.to_owned(),
            ca_file: ca_file.map(std::path::Path::to_path_buf),
            batch_size: batch_size.max(1),
            conn: None,
        }
    }

    /// Writes all `rows` in one transaction. On error nothing of it is committed; a broken
    /// connection is dropped so the next call reconnects.
    pub async fn write_epoch(&mut self, rows: &[Position]) -> Result<WriteOutcome, PostgresError> {
        let result = self.try_write(rows).await;
        if result.is_err()
            && self
                .conn
                .as_ref()
                .is_some_and(|(client, _)| client.is_closed())
        {
            self.conn = None;
        }
        result
    }

    async fn try_write(&mut self, rows: &[Position]) -> Result<WriteOutcome, PostgresError> {
        let failed = |e: &tokio_postgres::Error| PostgresError::query("write", e);
        let conn = match self.conn.take() {
            Some(conn) => conn,
            None => {
                let client = connect(&self.database_url, self.ca_file.as_deref()).await?;
                let statement = client.prepare(INSERT).await.map_err(|e| failed(&e))?;
                (client, statement)
            }
        };
        let (client, statement) = self.conn.insert(conn);
        match copy_rows(client, rows).await {
            Ok(inserted) => Ok(WriteOutcome {
                inserted,
                duplicates: 0,
                path: WritePath::Copy,
            }),
            Err(error) if error.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                tracing::debug!(
                    rows = rows.len(),
                    "a key exists already; writing the epoch with ON CONFLICT"
                );
                insert_rows(client, statement, rows, self.batch_size)
                    .await
                    .map_err(|e| failed(&e))
            }
            Err(error) => Err(failed(&error)),
        }
    }
}

/// The fast path: all rows in one binary COPY, in one transaction.
async fn copy_rows(client: &mut Client, rows: &[Position]) -> Result<u64, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let sink = tx.copy_in(COPY).await?;
    let mut writer = pin!(BinaryCopyInWriter::new(sink, &COPY_TYPES));
    for row in rows {
        let ts = Timestamp(row.ts_micros);
        let attributes = Jsonb(&row.attributes);
        let values: [&(dyn ToSql + Sync); 11] = [
            &row.device_id,
            &ts,
            &row.latitude,
            &row.longitude,
            &row.altitude,
            &row.angle,
            &row.speed,
            &row.satellites,
            &row.priority,
            &row.event_id,
            &attributes,
        ];
        writer.as_mut().write(&values).await?;
    }
    let inserted = writer.finish().await?;
    tx.commit().await?;
    Ok(inserted)
}

/// The idempotent path: chunked `INSERT ... ON CONFLICT DO NOTHING`, in one transaction.
async fn insert_rows(
    client: &mut Client,
    statement: &Statement,
    rows: &[Position],
    batch_size: usize,
) -> Result<WriteOutcome, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let mut inserted = 0;
    for chunk in rows.chunks(batch_size) {
        let columns = Columns::from_rows(chunk);
        inserted += tx
            .execute(
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
            .await?;
    }
    tx.commit().await?;
    let sent = rows.len() as u64;
    Ok(WriteOutcome {
        inserted,
        duplicates: sent.saturating_sub(inserted),
        path: WritePath::Insert,
    })
}

/// The rows of a chunk as column arrays, all built in one loop so they have one length
/// (`unnest` would silently pad shorter arrays with NULL).
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
    fn from_rows(rows: &'a [Position]) -> Self {
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
