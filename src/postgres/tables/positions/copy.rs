//! The fast path into `positions`: binary `COPY ... FROM STDIN`, encoded here.
//!
//! The binary format is written directly (a header, then per row the field count and each
//! field's length and big-endian value, then a trailer) rather than through tokio-postgres's
//! `BinaryCopyInWriter`, which takes each value through a `dyn ToSql` and each row through an
//! `await`: the rows are plain data of fixed types, and encoding them is a loop of appends.

use std::pin::pin;

use bytes::{BufMut, BytesMut};
use futures_util::SinkExt;
use tokio_postgres::Transaction;

use super::{columns, COLUMN_COUNT};
use crate::blocks::Blocks;
use crate::postgres::columns::column_list;
use crate::postgres::timestamp::PG_EPOCH_OFFSET_MICROS;
use dataflow::Position;

/// `COPY positions (...) FROM STDIN (FORMAT binary)`.
pub(super) fn copy_statement() -> String {
    format!(
        "COPY positions ({}) FROM STDIN (FORMAT binary)",
        column_list(&columns())
    )
}

/// Send the COPY data in pieces of about this size.
const COPY_CHUNK: usize = 256 * 1024;

/// The encoding buffer's blocks, four chunks each, reused once sent (see `crate::blocks`).
pub(super) fn copy_blocks() -> Blocks {
    Blocks::new(4 * COPY_CHUNK, 16 * 1024)
}

/// Copies all `rows` inside `tx`, encoded into `blocks`; returns the rows copied. COPY has no
/// `ON CONFLICT`: a key that exists fails it with a unique violation (and the transaction with it).
pub(super) async fn copy_rows(
    tx: &Transaction<'_>,
    statement: &str,
    rows: &[&Position],
    blocks: &mut Blocks,
) -> Result<u64, tokio_postgres::Error> {
    let mut sink = pin!(tx.copy_in(statement).await?);
    // whatever an interrupted COPY left unsent
    drop(blocks.split());
    let buf = blocks.writable();
    buf.put_slice(b"PGCOPY\n\xff\r\n\0");
    buf.put_i32(0); // flags
    buf.put_i32(0); // header extension length
    for row in rows.iter() {
        encode_row(blocks.writable(), row);
        if blocks.filled().len() >= COPY_CHUNK {
            sink.send(blocks.split()).await?;
        }
    }
    blocks.writable().put_i16(-1); // trailer
    sink.send(blocks.split()).await?;
    sink.as_mut().finish().await
}

/// Appends one row in PostgreSQL's binary COPY format, fields in [`columns`] order.
fn encode_row(buf: &mut BytesMut, row: &Position) {
    buf.put_i16(COLUMN_COUNT as i16);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_names_every_column() {
        assert_eq!(
            copy_statement(),
            "COPY positions (device_id, ts, latitude, longitude, altitude, angle, speed, \
             satellites, priority, event_id, attributes) FROM STDIN (FORMAT binary)"
        );
    }
}
