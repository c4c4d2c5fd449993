//! `stream_offsets`: the resume point of each stream and group, kept where the rows are.
//!
//! The point is derived from Redis (see `redis::resume`) and stored after the fact, so it can lag
//! behind the group but never run ahead of what is committed. The upsert only moves it forward,
//! so replicas (and the processes of a timely cluster) storing their views in any order leave the
//! highest, which every one of them derived from acknowledgements that followed commits.

use dataflow::StreamId;
use tokio_postgres::Client;

use super::privileges::Grant;
use super::PostgresError;

/// The load reads, the forward-only upsert inserts and updates.
pub const GRANT: Grant = Grant {
    table: "stream_offsets",
    privileges: &["SELECT", "INSERT", "UPDATE"],
};

/// The stored resume point of `group` on `stream`, if any.
pub async fn load_resume_point(
    client: &Client,
    stream: &str,
    group: &str,
) -> Result<Option<StreamId>, PostgresError> {
    let row = client
        .query_opt(
            "SELECT resume_ms, resume_seq FROM stream_offsets
             WHERE stream = $1 AND consumer_group = $2",
            &[&stream, &group],
        )
        .await
        .map_err(|e| PostgresError::query("resume_point", &e))?;
    Ok(row.map(|row| {
        let (ms, seq): (i64, i64) = (row.get(0), row.get(1));
        StreamId::new(ms.max(0).unsigned_abs(), seq.max(0).unsigned_abs())
    }))
}

/// Stores `point` for `group` on `stream` unless a later one is stored already.
pub async fn store_resume_point(
    client: &Client,
    stream: &str,
    group: &str,
    point: StreamId,
) -> Result<(), PostgresError> {
    // An id beyond bigint is stored lower, which only makes the point more conservative.
    let ms = i64::try_from(point.ms).unwrap_or(i64::MAX);
    let seq = i64::try_from(point.seq).unwrap_or(i64::MAX);
    client
        .execute(
            "INSERT INTO stream_offsets (stream, consumer_group, resume_ms, resume_seq)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (stream, consumer_group) DO UPDATE
             SET resume_ms = excluded.resume_ms, resume_seq = excluded.resume_seq,
                 updated_at = now()
             WHERE (excluded.resume_ms, excluded.resume_seq)
                 > (stream_offsets.resume_ms, stream_offsets.resume_seq)",
            &[&stream, &group, &ms, &seq],
        )
        .await
        .map_err(|e| PostgresError::query("resume_point", &e))?;
    Ok(())
}
