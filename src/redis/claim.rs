//! Taking over what other consumers could not finish, and giving up on poison entries.
//!
//! A consumer that dies (a replica removed, a pod renamed) leaves its pending entries behind.
//! Every reader periodically takes entries idle longer than `CLAIM_MIN_IDLE_MS` from any consumer
//! of the group with `XAUTOCLAIM` (following the cursor to the end) and processes them like new
//! ones. Claiming resets an entry's idle time, so two readers never both take it.
//!
//! An entry that keeps coming back without ever being acknowledged (it crashes or stalls its
//! consumer each time) would circulate forever. Before claiming, entries whose delivery count
//! reached `MAX_DELIVERIES` are moved to the dead-letter stream (reason `max deliveries
//! exceeded`) and acknowledged, atomically (see `dead_letter`).
//!
//! Redis 7 reports pending ids whose entries were deleted (trimmed) in XAUTOCLAIM's third reply
//! element and drops them from the PEL itself; XCLAIM skips them. They are returned in
//! [`ReadBatch::deleted`] to be counted (and acknowledged, harmlessly).

use std::time::Duration;

use dataflow::StreamId;
use redis::Value;

use super::reply::{parse_entries, stream_id};
use super::{dead_letter, Letter, ReadBatch, RedisError, StreamReader};

/// What a poison sweep did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PoisonSweep {
    /// Entries moved to the dead-letter stream.
    pub dead_lettered: u64,
    /// Their ids (for the log).
    pub ids: Vec<StreamId>,
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl StreamReader {
    /// Dead-letters pending entries delivered at least `max_deliveries` times: this consumer's
    /// own (`idle: None`, at start-up, to break a crash loop), or any consumer's that have
    /// been idle at least `idle`.
    pub async fn dead_letter_poison(
        &mut self,
        max_deliveries: u64,
        idle: Option<Duration>,
        dead_letter_stream: &str,
    ) -> Result<PoisonSweep, RedisError> {
        self.try_poison(max_deliveries, idle.map(millis), dead_letter_stream)
            .await
    }

    async fn try_poison(
        &mut self,
        max_deliveries: u64,
        idle_ms: Option<u64>,
        dead_letter_stream: &str,
    ) -> Result<PoisonSweep, RedisError> {
        let (stream, group) = (self.stream.clone(), self.group.clone());
        let consumer = self.consumer().to_owned();
        let page = self.count().max(10);
        let mut sweep = PoisonSweep::default();
        let mut start = "-".to_owned();
        loop {
            let conn = &mut self.commands;
            let mut xpending = redis::cmd("XPENDING");
            xpending.arg(&stream).arg(&group);
            if let Some(idle) = idle_ms {
                xpending.arg("IDLE").arg(idle);
            }
            xpending.arg(&start).arg("+").arg(page);
            if idle_ms.is_none() {
                xpending.arg(&consumer);
            }
            let pending: redis::streams::StreamPendingCountReply = xpending
                .query_async(conn)
                .await
                .map_err(|e| RedisError::command("xpending", &e))?;
            let Some(last) = pending.ids.last() else {
                return Ok(sweep);
            };
            start = format!("({}", last.id);
            let poison: Vec<(String, usize)> = pending
                .ids
                .iter()
                .filter(|p| p.times_delivered as u64 >= max_deliveries)
                .map(|p| (p.id.clone(), p.times_delivered))
                .collect();
            let full_page = pending.ids.len() >= page as usize;
            if !poison.is_empty() {
                // Claim them first (with the same idle bound, so a concurrent sweeper that got
                // there first wins and this one skips them), to have their fields.
                let ids: Vec<&str> = poison.iter().map(|(id, _)| id.as_str()).collect();
                let reply: Value = redis::cmd("XCLAIM")
                    .arg(&stream)
                    .arg(&group)
                    .arg(&consumer)
                    .arg(idle_ms.unwrap_or(0))
                    .arg(&ids)
                    .query_async(conn)
                    .await
                    .map_err(|e| RedisError::command("xclaim", &e))?;
                let mut claimed = ReadBatch::default();
                if let Value::Array(entries) = reply {
                    parse_entries(entries, &mut claimed, "xclaim")?;
                }
                let letters: Vec<Letter> = claimed
                    .entries
                    .iter()
                    .map(|entry| {
                        let times = poison
                            .iter()
                            .find(|(id, _)| id.parse() == Ok(entry.id))
                            .map_or(max_deliveries as usize, |(_, n)| *n);
                        Letter {
                            id: entry.id,
                            fields: entry.fields.clone(),
                            reason: format!("max deliveries exceeded ({times} deliveries)"),
                        }
                    })
                    .collect();
                dead_letter(
                    conn,
                    &stream,
                    &group,
                    dead_letter_stream,
                    &consumer,
                    &letters,
                )
                .await?;
                sweep.dead_lettered += letters.len() as u64;
                sweep
                    .ids
                    .extend(claimed.entries.iter().map(|entry| entry.id));
            }
            if !full_page {
                return Ok(sweep);
            }
        }
    }

    /// Takes over entries idle at least `min_idle` from any consumer of the group, following
    /// XAUTOCLAIM's cursor (`0-0` to start) to the end of the pending list. Returns them (as one
    /// batch per call; `done` tells whether the cursor wrapped around).
    pub async fn claim_idle(
        &mut self,
        min_idle: Duration,
        cursor: &mut StreamId,
    ) -> Result<(ReadBatch, bool), RedisError> {
        self.try_claim(millis(min_idle), cursor).await
    }

    async fn try_claim(
        &mut self,
        min_idle_ms: u64,
        cursor: &mut StreamId,
    ) -> Result<(ReadBatch, bool), RedisError> {
        let (stream, group) = (self.stream.clone(), self.group.clone());
        let consumer = self.consumer().to_owned();
        let count = self.count();
        let conn = &mut self.commands;
        let reply: Value = redis::cmd("XAUTOCLAIM")
            .arg(&stream)
            .arg(&group)
            .arg(&consumer)
            .arg(min_idle_ms)
            .arg(cursor.to_string())
            .arg("COUNT")
            .arg(count)
            .query_async(conn)
            .await
            .map_err(|e| RedisError::command("xautoclaim", &e))?;
        let unexpected = |detail: &str| RedisError::Reply {
            operation: "xautoclaim",
            detail: detail.to_owned(),
        };
        let Value::Array(mut parts) = reply else {
            return Err(unexpected("not an array"));
        };
        if parts.len() < 2 {
            return Err(unexpected("fewer than two elements"));
        }
        let deleted = if parts.len() >= 3 { parts.pop() } else { None };
        let entries = parts.pop();
        let next = match parts.pop() {
            Some(id) => stream_id(id, "xautoclaim")?,
            None => return Err(unexpected("no cursor")),
        };
        let mut batch = ReadBatch::default();
        if let Some(Value::Array(entries)) = entries {
            parse_entries(entries, &mut batch, "xautoclaim")?;
        }
        if let Some(Value::Array(ids)) = deleted {
            for id in ids {
                batch.deleted.push(stream_id(id, "xautoclaim")?);
            }
        }
        let done = next == StreamId::default();
        *cursor = next;
        Ok((batch, done))
    }
}
