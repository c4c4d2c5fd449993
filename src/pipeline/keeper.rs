//! The stream keeper: keeps the resume point in PostgreSQL and, when asked to, trims the stream
//! to what every consumer group has acknowledged.
//!
//! Both run once a second, on their own connections, and neither is on the path of a record: a
//! failure is logged and tried again a second later, and stalls nothing.
//!
//! # The resume point
//! The acknowledgers advance the process's [`ResumePoint`] (see `redis::resume` for why it is
//! never ahead of what is committed); the keeper stores it when it has moved, with an upsert that
//! only moves forward. At worst the stored point is a second old: a group recreated from it
//! re-reads that second, and the idempotent writes make the re-read a duplicate count only.
//!
//! # Trimming
//! `XTRIM MINID` to the oldest id any group on the stream still needs (its oldest pending entry,
//! or its last delivered one), computed and applied in one script so that no group moves in
//! between, and never within `STREAM_TRIM_KEEP_SECS` of now. Other groups reading the stream
//! (another service) hold it back exactly as ours does.

use std::sync::Arc;
use std::time::Duration;

use dataflow::StreamId;
use redis::aio::ConnectionManager;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::postgres;
use crate::redis::{self as redis_io, ResumePoint, StreamTrim};

/// How often the keeper runs.
const INTERVAL: Duration = Duration::from_secs(1);

/// What the keeper works with.
pub(crate) struct Keeper {
    pub(crate) config: Config,
    pub(crate) resume: Arc<ResumePoint>,
    pub(crate) redis: ConnectionManager,
    pub(crate) metrics: Arc<Metrics>,
    /// The point last stored (or loaded) from PostgreSQL.
    pub(crate) stored: Option<StreamId>,
    pub(crate) postgres: Option<tokio_postgres::Client>,
    /// Whether the last attempt of each job failed (a failure is logged once, not every second).
    pub(crate) store_failing: bool,
    pub(crate) trim_failing: bool,
}

impl Keeper {
    /// Runs until `stop` resolves, then stores the point one last time.
    pub(crate) async fn run(mut self, stop: tokio::sync::oneshot::Receiver<()>) {
        let mut stop = std::pin::pin!(stop);
        loop {
            self.store().await;
            if self.config.redis.stream_trim == StreamTrim::Acked {
                self.trim().await;
            }
            tokio::select! {
                _ = tokio::time::sleep(INTERVAL) => {}
                _ = &mut stop => break,
            }
        }
        self.store().await;
    }

    /// Stores the resume point if it moved since the last store.
    async fn store(&mut self) {
        let Some(point) = self.resume.get() else {
            return;
        };
        if self.stored.is_some_and(|stored| stored >= point) {
            return;
        }
        let redis = &self.config.redis;
        let stored = async {
            let client = match self.postgres.take().filter(|client| !client.is_closed()) {
                Some(client) => client,
                None => {
                    let pg = &self.config.postgres;
                    pg.link.connect().await?
                }
            };
            postgres::store_resume_point(&client, &redis.stream.key, &redis.consumer_group, point)
                .await?;
            self.postgres = Some(client);
            Ok::<(), postgres::PostgresError>(())
        };
        match tokio::time::timeout(INTERVAL, stored).await {
            Ok(Ok(())) => {
                self.stored = Some(point);
                if std::mem::take(&mut self.store_failing) {
                    tracing::info!(resume_point = %point, "resume point stored again");
                }
            }
            Ok(Err(error)) => self.store_failed(&error.to_string()),
            Err(_) => self.store_failed("timed out"),
        }
    }

    fn store_failed(&mut self, reason: &str) {
        self.postgres = None;
        if !std::mem::replace(&mut self.store_failing, true) {
            tracing::warn!(
                reason,
                "storing the resume point failed; retrying every second (a group recreated \
                 meanwhile resumes from the last point stored)"
            );
        }
    }

    /// Trims the stream to what every group still needs, beyond the keep window.
    async fn trim(&mut self) {
        let keep =
            u64::try_from(self.config.redis.stream_trim_keep.as_millis()).unwrap_or(u64::MAX);
        let keep_from = StreamId::new(crate::clock::unix_ms().saturating_sub(keep), 0);
        let trimmed = tokio::time::timeout(
            INTERVAL,
            redis_io::trim_acknowledged(&mut self.redis, &self.config.redis.stream.key, keep_from),
        )
        .await;
        match trimmed {
            Ok(Ok(removed)) => {
                self.metrics.stream_trimmed.inc_by(removed);
                if std::mem::take(&mut self.trim_failing) {
                    tracing::info!("trimming the stream works again");
                }
                if removed > 0 {
                    tracing::debug!(removed, "stream trimmed to what every group acknowledged");
                }
            }
            Ok(Err(error)) => self.trim_failed(&error.to_string()),
            Err(_) => self.trim_failed("timed out"),
        }
    }

    fn trim_failed(&mut self, reason: &str) {
        if !std::mem::replace(&mut self.trim_failing, true) {
            tracing::warn!(reason, "trimming the stream failed; retrying every second");
        }
    }
}
