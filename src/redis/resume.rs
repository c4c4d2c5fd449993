//! Where a consumer group may resume: the resume point, how it is derived, and where a group
//! that has to be created (again) starts.
//!
//! # Why the point is never ahead of what is durable
//! An entry is acknowledged only after its epoch committed everywhere (its row, or its dead
//! letter), by every worker of every replica and process. The group's last delivered id bounds
//! what was ever read; of that, what is still pending is not yet acknowledged. So every id up to
//! `min(last delivered, oldest pending - 1)` is acknowledged, hence committed, whichever consumer
//! read it. The two are read in one atomic step (a script, with each acknowledgement), so no
//! delivery or acknowledgement can fall between them. The point only moves forward in memory
//! and in PostgreSQL: a view read earlier is lower, never wrong.

use std::sync::{LazyLock, Mutex};

use dataflow::StreamId;
use redis::aio::ConnectionLike;
use redis::{ErrorKind, ServerErrorKind};

use super::{reply, RedisError};

/// A group's standing, read atomically.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupPosition {
    /// The group's last delivered id.
    pub last_delivered: StreamId,
    /// Its oldest pending id, if anything is pending.
    pub oldest_pending: Option<StreamId>,
}

impl GroupPosition {
    /// The id at or below which everything the group read is committed.
    pub fn resume_point(&self) -> StreamId {
        match self.oldest_pending {
            Some(pending) => self.last_delivered.min(pending.prev()),
            None => self.last_delivered,
        }
    }
}

/// The highest resume point known to this process: loaded from PostgreSQL at start-up, then
/// advanced with every acknowledgement.
#[derive(Debug, Default)]
pub struct ResumePoint {
    point: Mutex<Option<StreamId>>,
}

impl ResumePoint {
    /// The point, if one is known.
    pub fn get(&self) -> Option<StreamId> {
        *self
            .point
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Moves the point to `point` if that is later.
    pub fn advance(&self, point: StreamId) {
        let mut held = self
            .point
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if held.is_none_or(|held| point > held) {
            *held = Some(point);
        }
    }
}

/// A script with `groups.lua` (its helper for reading `XINFO GROUPS`) prepended.
fn with_groups(body: &str) -> redis::Script {
    redis::Script::new(&format!("{}\n{body}", include_str!("groups.lua")))
}

static ACK: LazyLock<redis::Script> = LazyLock::new(|| with_groups(include_str!("ack.lua")));

/// Acknowledges `ids` (which may be none) and returns how many were still pending, with the
/// group's position read right after, in the same atomic step (`None` when the group is gone).
pub async fn ack_and_locate<C: ConnectionLike + Send>(
    conn: &mut C,
    stream: &str,
    group: &str,
    ids: &[StreamId],
) -> Result<(u64, Option<GroupPosition>), RedisError> {
    // EVALSHA written directly rather than through `Script::key`/`arg`, which keeps each
    // argument in a vector of its own before copying it into the command: here every id is
    // written once, into the command's one buffer. As `Script` does, the script is loaded when
    // the server does not know it (first use, or after a restart) and the call repeated.
    let mut eval = redis::Cmd::with_capacity(ids.len() + 5, 64 + ids.len() * 24);
    eval.arg("EVALSHA")
        .arg(ACK.get_hash())
        .arg(1)
        .arg(stream)
        .arg(group);
    for id in ids {
        eval.arg(id.text().as_bytes());
    }
    let reply = match eval.query_async(conn).await {
        Err(error) if error.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
            match ACK.load_async(conn).await {
                Ok(_) => eval.query_async(conn).await,
                Err(error) => Err(error),
            }
        }
        reply => reply,
    };
    let (acked, last, oldest): (u64, Option<String>, Option<String>) =
        reply.map_err(|e| RedisError::command("xack", &e))?;
    let Some(last) = last else {
        return Ok((acked, None));
    };
    let id = |text: String| reply::parse_id(&text, "xack");
    Ok((
        acked,
        Some(GroupPosition {
            last_delivered: id(last)?,
            oldest_pending: oldest.map(id).transpose()?,
        }),
    ))
}

/// Why a group starts where it does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartCase {
    /// No resume point is known (the group's first start): `GROUP_START_ID`.
    Configured,
    /// The stream is empty: its beginning.
    EmptyStream,
    /// Every entry is younger than the resume point: a new stream, read from its beginning.
    NewStream,
    /// Every entry is older than the resume point (a stream restored from an older copy, or
    /// Redis's clock went back): read from its beginning; what was committed is only a
    /// duplicate, what was not would otherwise be skipped.
    StreamBehindPoint,
    /// The point lies within the stream: resume there.
    ResumePoint,
}

impl StartCase {
    /// What the log says.
    pub fn describe(self) -> &'static str {
        match self {
            StartCase::Configured => "no resume point is stored for this group: GROUP_START_ID",
            StartCase::EmptyStream => "the stream is empty: its beginning",
            StartCase::NewStream => {
                "every entry is younger than the resume point (a new stream): its beginning"
            }
            StartCase::StreamBehindPoint => {
                "every entry is older than the resume point (a restored stream, or a clock that \
                 went back): its beginning, so nothing is skipped"
            }
            StartCase::ResumePoint => "the resume point",
        }
    }
}

/// Where a group created on a stream holding entries `first..=last` (`None`: empty) starts, given
/// the resume point and `GROUP_START_ID`.
pub fn group_start(
    point: Option<StreamId>,
    stream: Option<(StreamId, StreamId)>,
    configured: &str,
) -> (String, StartCase) {
    let Some(point) = point else {
        return (configured.to_owned(), StartCase::Configured);
    };
    match stream {
        None => ("0".to_owned(), StartCase::EmptyStream),
        Some((first, _)) if first > point => ("0".to_owned(), StartCase::NewStream),
        Some((_, last)) if last < point => ("0".to_owned(), StartCase::StreamBehindPoint),
        Some(_) => (point.to_string(), StartCase::ResumePoint),
    }
}

/// The ids of the stream's first and last entries (`None`: empty or missing).
pub async fn stream_bounds<C: ConnectionLike + Send>(
    conn: &mut C,
    stream: &str,
) -> Result<Option<(StreamId, StreamId)>, RedisError> {
    let mut first = None;
    let mut last = None;
    for (command, from, to, found) in [
        ("XRANGE", "-", "+", &mut first),
        ("XREVRANGE", "+", "-", &mut last),
    ] {
        // only the id is read: an entry's fields may be anything (binary names included)
        let reply: redis::Value = redis::cmd(command)
            .arg(stream)
            .arg(from)
            .arg(to)
            .arg("COUNT")
            .arg(1)
            .query_async(conn)
            .await
            .map_err(|e| RedisError::command("xrange", &e))?;
        if let redis::Value::Array(entries) = reply {
            if let Some(redis::Value::Array(entry)) = entries.into_iter().next() {
                if let Some(id) = entry.into_iter().next() {
                    *found = Some(reply::stream_id(id, "xrange")?);
                }
            }
        }
    }
    Ok(first.zip(last))
}

static TRIM: LazyLock<redis::Script> = LazyLock::new(|| with_groups(include_str!("trim.lua")));

/// Trims `stream` to what every consumer group on it still needs, keeping everything at or after
/// `keep_from`; returns the entries removed.
pub async fn trim_acknowledged<C: ConnectionLike + Send>(
    conn: &mut C,
    stream: &str,
    keep_from: StreamId,
) -> Result<u64, RedisError> {
    let (removed, _floor): (u64, Option<String>) = TRIM
        .key(stream)
        .arg(keep_from.to_string())
        .invoke_async(conn)
        .await
        .map_err(|e| RedisError::command("xtrim", &e))?;
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ms: u64, seq: u64) -> StreamId {
        StreamId::new(ms, seq)
    }

    #[test]
    fn the_resume_point_stops_below_the_oldest_pending_entry() {
        let caught_up = GroupPosition {
            last_delivered: id(100, 5),
            oldest_pending: None,
        };
        assert_eq!(caught_up.resume_point(), id(100, 5));
        let busy = GroupPosition {
            last_delivered: id(100, 5),
            oldest_pending: Some(id(90, 0)),
        };
        assert_eq!(busy.resume_point(), id(89, u64::MAX));
    }

    #[test]
    fn a_point_only_moves_forward() {
        let point = ResumePoint::default();
        assert_eq!(point.get(), None);
        point.advance(id(5, 0));
        point.advance(id(3, 0));
        assert_eq!(point.get(), Some(id(5, 0)));
        point.advance(id(5, 1));
        assert_eq!(point.get(), Some(id(5, 1)));
    }

    #[test]
    fn where_a_group_starts() {
        let point = Some(id(50, 0));
        let start = |point, stream| group_start(point, stream, "$");
        assert_eq!(
            start(None, Some((id(1, 0), id(9, 0)))),
            ("$".to_owned(), StartCase::Configured)
        );
        assert_eq!(start(point, None), ("0".to_owned(), StartCase::EmptyStream));
        assert_eq!(
            start(point, Some((id(60, 0), id(90, 0)))),
            ("0".to_owned(), StartCase::NewStream)
        );
        assert_eq!(
            start(point, Some((id(10, 0), id(40, 0)))),
            ("0".to_owned(), StartCase::StreamBehindPoint)
        );
        assert_eq!(
            start(point, Some((id(10, 0), id(90, 0)))),
            ("50-0".to_owned(), StartCase::ResumePoint)
        );
        // the point on the last entry: nothing new yet, resume there
        assert_eq!(
            start(point, Some((id(10, 0), id(50, 0)))),
            ("50-0".to_owned(), StartCase::ResumePoint)
        );
    }
}
