//! Writing one epoch's rows: one transaction, chunked INSERTs, idempotent.
//!
//! `INSERT ... SELECT FROM unnest(arrays) ON CONFLICT (device_id, ts) DO NOTHING`: one statement
//! per chunk of `WRITE_BATCH_SIZE` rows, its parameters bound as arrays (one round trip, one
//! plan). A row whose key already exists is skipped, so a redelivered entry writes nothing; the
//! difference between rows sent and rows inserted is the duplicate count. The transaction makes
//! the epoch all-or-nothing, which is what lets the sink report it committed as a whole.

use tokio_postgres::{Client, Statement};

use super::timestamp::Timestamp;
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

/// Rows inserted and rows skipped as duplicates by one epoch's write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    /// New rows.
    pub inserted: u64,
    /// Rows whose `(device_id, ts)` existed already.
    pub duplicates: u64,
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
        if self.conn.is_none() {
            let client = connect(&self.database_url, self.ca_file.as_deref()).await?;
            let statement = client.prepare(INSERT).await.map_err(|e| failed(&e))?;
            self.conn = Some((client, statement));
        }
        let Some((client, statement)) = self.conn.as_mut() else {
            return Ok(WriteOutcome::default());
        };
        let tx = client.transaction().await.map_err(|e| failed(&e))?;
        let mut inserted = 0;
        for chunk in rows.chunks(self.batch_size) {
            let columns = Columns::from_rows(chunk);
            inserted += tx
                .execute(
                    &*statement,
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
                .map_err(|e| failed(&e))?;
        }
        tx.commit().await.map_err(|e| failed(&e))?;
        let sent = rows.len() as u64;
        Ok(WriteOutcome {
            inserted,
            duplicates: sent.saturating_sub(inserted),
        })
    }
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
