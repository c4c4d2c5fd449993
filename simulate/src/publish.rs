//! The publishing loop: generated payloads to `XADD <stream> * payload <json>`, pipelined.
//!
//! Why this shape:
//! - one pipeline of up to `--pipeline` XADDs per round trip, as the integration tests publish:
//!   one entry per round trip would measure network latency, not the processor;
//! - while one pipeline is in flight the next one is generated, so generating costs no throughput;
//!   pipelines are still sent one after the other (the next only when the previous one is
//!   confirmed), so entries land in the stream in generation order and the counts in the report
//!   are confirmed by Redis, never guessed;
//! - at a set `--rate`, each pipeline waits until sending it keeps `published / elapsed` at or
//!   below the rate (so the first one goes out after its own share of time, e.g. one second at
//!   `--rate 1`), and pipelines are cut to about a twentieth of a second's worth, so a low rate is
//!   a steady trickle rather than a burst per second;
//! - SIGINT/SIGTERM stop the run between two pipelines, and the summary still says exactly what
//!   was published.

use std::io::IsTerminal;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::aio::ConnectionManager;
use redis::RedisError;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::generator::{Generator, Payload};
use crate::progress::{Outcome, Progress};
use crate::{SimulateArgs, SimulateError, SimulateReport};

/// At a set rate, pipelines are sized for about this many round trips per second.
const CHUNKS_PER_SECOND: u64 = 20;

/// Publishes to `stream` through `client`; progress to stderr, where `server` (how to name the
/// Redis server, credentials already removed) appears in the first line.
///
/// Runs until `args.count` entries are published or `args.duration` seconds have passed, or until
/// SIGINT/SIGTERM (then it returns normally, with what was published). `args.start_ms` unset means
/// the current time. A Redis failure ends the run with [`SimulateError::Redis`] (the summary line
/// on stderr still says how much was published before it).
pub async fn run(
    client: redis::Client,
    server: &str,
    stream: &str,
    args: &SimulateArgs,
) -> Result<SimulateReport, SimulateError> {
    args.validate()?;
    if stream.trim().is_empty() {
        return Err(SimulateError::Args(
            "the stream key must not be empty".to_owned(),
        ));
    }
    let conn = client.get_connection_manager().await?;

    let mut args = args.clone();
    let start_ms = *args.start_ms.get_or_insert_with(now_ms);
    let generator = Generator::new(&args);
    let until = match (args.count, args.duration) {
        (Some(count), _) => format!("{count} entries"),
        (None, Some(seconds)) => format!("{seconds} s"),
        (None, None) => String::new(),
    };
    let rate = match args.rate {
        0 => "as fast as possible".to_owned(),
        rate => format!("at {rate}/s"),
    };
    eprintln!(
        "simulate: publishing {until} to {stream} on {server} {rate}: {:?} records, {} devices, \
         seed {}, first position at {start_ms} ms, duplicates {}, invalid {}, pipeline {}",
        args.profile, args.devices, args.seed, args.duplicates, args.invalid, args.pipeline,
    );

    let (stop, stopped) = watch::channel(false);
    let watcher = tokio::spawn(async move {
        signal().await;
        stop.send_replace(true);
    });
    let started = Instant::now();
    let mut publisher = Publisher {
        conn,
        stream: stream.to_owned(),
        args,
        generator,
        stop: stopped,
        progress: Progress::new(std::io::stderr().is_terminal(), started),
        started,
        confirmed: Counts::default(),
    };
    let result = publisher.publish().await;
    watcher.abort();

    let counts = publisher.confirmed;
    let report = SimulateReport {
        published: counts.published,
        valid_distinct: counts.valid,
        duplicates: counts.duplicates,
        invalid: counts.invalid,
        elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    };
    let outcome = match &result {
        Ok(outcome) => *outcome,
        Err(_) => Outcome::Failed,
    };
    publisher.progress.finish(&report, outcome);
    result?;
    Ok(report)
}

/// Entries of each kind.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    published: u64,
    valid: u64,
    duplicates: u64,
    invalid: u64,
}

impl Counts {
    fn add(&mut self, other: Counts) {
        self.published += other.published;
        self.valid += other.valid;
        self.duplicates += other.duplicates;
        self.invalid += other.invalid;
    }
}

/// A pipeline sent in the background, resolving to what it published.
type InFlight = JoinHandle<Result<Counts, RedisError>>;

struct Publisher {
    conn: ConnectionManager,
    stream: String,
    args: SimulateArgs,
    generator: Generator,
    /// Turns true on SIGINT/SIGTERM.
    stop: watch::Receiver<bool>,
    progress: Progress,
    started: Instant,
    /// What Redis has confirmed.
    confirmed: Counts,
}

impl Publisher {
    /// The loop; returns how it ended.
    async fn publish(&mut self) -> Result<Outcome, SimulateError> {
        let chunk = chunk_size(self.args.pipeline, self.args.rate);
        // A duration too long for an `Instant` is no deadline at all.
        let deadline = self
            .args
            .duration
            .and_then(|seconds| self.started.checked_add(Duration::from_secs(seconds)));
        // Generated and sent (confirmed or in flight).
        let mut sent: u64 = 0;
        let mut in_flight: Option<InFlight> = None;
        let outcome = loop {
            if *self.stop.borrow() {
                break Outcome::Interrupted;
            }
            let remaining = self.args.count.map(|count| count.saturating_sub(sent));
            if remaining == Some(0) || deadline.is_some_and(|d| Instant::now() >= d) {
                break Outcome::Done;
            }
            let size = match remaining {
                Some(remaining) => chunk.min(usize::try_from(remaining).unwrap_or(usize::MAX)),
                None => chunk,
            };
            // When this pipeline may go out: once `(sent + size) / rate` seconds have passed, so
            // that `published / elapsed` never exceeds the rate (even right after a pipeline).
            let due = match self.args.rate {
                0 => None,
                rate => match self
                    .started
                    .checked_add(pace(sent.saturating_add(size as u64), rate))
                {
                    Some(due) if deadline.is_none_or(|d| due <= d) => Some(due),
                    // Due after the deadline (or never): the run is over.
                    _ => break Outcome::Done,
                },
            };
            let (pipe, counts) = self.build(size);
            if let Some(previous) = in_flight.take() {
                self.confirm(previous).await?;
            }
            if let Some(due) = due {
                let mut stop = self.stop.clone();
                tokio::select! {
                    () = tokio::time::sleep_until(tokio::time::Instant::from_std(due)) => {}
                    _ = stop.wait_for(|stopped| *stopped) => break Outcome::Interrupted,
                }
            }
            in_flight = Some(tokio::spawn(send(self.conn.clone(), pipe, counts)));
            sent += counts.published;
        };
        if let Some(last) = in_flight.take() {
            self.confirm(last).await?;
        }
        Ok(outcome)
    }

    /// The next `size` payloads as one pipeline of XADDs, and what they are.
    fn build(&mut self, size: usize) -> (redis::Pipeline, Counts) {
        let mut pipe = redis::pipe();
        let mut counts = Counts::default();
        for _ in 0..size {
            let payload = self.generator.next_payload();
            match &payload {
                Payload::Valid(_) => counts.valid += 1,
                Payload::Duplicate(_) => counts.duplicates += 1,
                Payload::Invalid(_) => counts.invalid += 1,
            }
            counts.published += 1;
            pipe.cmd("XADD")
                .arg(&self.stream)
                .arg("*")
                .arg("payload")
                .arg(payload.as_str())
                .ignore();
        }
        (pipe, counts)
    }

    /// Waits for a pipeline in flight and counts what it published.
    async fn confirm(&mut self, in_flight: InFlight) -> Result<(), SimulateError> {
        let counts = in_flight
            .await
            .map_err(|e| SimulateError::Task(e.to_string()))??;
        self.confirmed.add(counts);
        let now = Instant::now();
        self.progress.update(
            self.confirmed.published,
            now.saturating_duration_since(self.started),
            now,
        );
        Ok(())
    }
}

/// Sends one pipeline; any XADD refused (e.g. the key holds another type) fails it.
async fn send(
    mut conn: ConnectionManager,
    pipe: redis::Pipeline,
    counts: Counts,
) -> Result<Counts, RedisError> {
    pipe.query_async::<()>(&mut conn).await?;
    Ok(counts)
}

/// The wall clock in epoch milliseconds (the default start of the simulated fixes).
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

/// Resolves on SIGINT or SIGTERM.
async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Entries per pipeline: `pipeline`, or at a set rate about 1/20 s worth (at least one).
fn chunk_size(pipeline: usize, rate: u64) -> usize {
    let pipeline = pipeline.max(1);
    match rate {
        0 => pipeline,
        rate => {
            let per_chunk = (rate / CHUNKS_PER_SECOND).max(1);
            pipeline.min(usize::try_from(per_chunk).unwrap_or(usize::MAX))
        }
    }
}

/// How long after the start `sent` entries may have gone out at `rate` per second.
fn pace(sent: u64, rate: u64) -> Duration {
    let nanos = u128::from(sent) * 1_000_000_000 / u128::from(rate.max(1));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_shrink_at_low_rates() {
        assert_eq!(chunk_size(500, 0), 500);
        assert_eq!(chunk_size(500, 1_000_000), 500);
        assert_eq!(chunk_size(500, 2000), 100);
        assert_eq!(chunk_size(500, 10), 1);
        assert_eq!(chunk_size(0, 0), 1);
    }

    #[test]
    fn pace_spreads_entries_evenly() {
        assert_eq!(pace(0, 100), Duration::ZERO);
        assert_eq!(pace(100, 100), Duration::from_secs(1));
        assert_eq!(pace(5, 1000), Duration::from_millis(5));
        assert_eq!(pace(u64::MAX, 1), Duration::from_nanos(u64::MAX));
    }
}

/// Against a real Redis (`TEST_REDIS_URL`, else 127.0.0.1:6379), like the integration tests.
#[cfg(test)]
mod redis_tests {
    use redis::AsyncCommands;

    use super::*;

    fn url() -> String {
        std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
    }

    fn client() -> redis::Client {
        redis::Client::open(url()).expect("url")
    }

    /// A key no other test uses, and a connection to delete it with afterwards.
    async fn fresh_key() -> (String, redis::aio::MultiplexedConnection) {
        let key = format!(
            "simulate-test-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        );
        let client = redis::Client::open(url()).expect("url");
        let conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("redis");
        (key, conn)
    }

    fn args(count: Option<u64>, duration: Option<u64>, rate: u64) -> SimulateArgs {
        SimulateArgs {
            profile: crate::Profile::Mixed,
            devices: 20,
            count,
            duration,
            rate,
            seed: 42,
            duplicates: 0.1,
            invalid: 0.1,
            pipeline: 300,
            start_ms: Some(1_796_033_730_123),
            order: crate::Order::InOrder,
        }
    }

    #[tokio::test]
    async fn publishes_the_generated_payloads_in_order_and_paced() {
        let (stream, mut conn) = fresh_key().await;

        let exact = args(Some(2000), None, 0);
        let report = run(client(), "test", &stream, &exact).await.expect("run");
        assert_eq!(report.published, 2000);
        assert_eq!(
            report.valid_distinct + report.duplicates + report.invalid,
            2000
        );
        let reply: redis::streams::StreamRangeReply =
            conn.xrange_all(&stream).await.expect("XRANGE");
        let mut generator = Generator::new(&exact);
        assert_eq!(reply.ids.len(), 2000);
        for entry in &reply.ids {
            let payload: String = entry.get("payload").expect("payload field");
            assert_eq!(payload, generator.next_payload().into_string());
        }

        // Paced: 600 entries at 2000/s take about 0.3 s.
        let started = Instant::now();
        let report = run(client(), "test", &stream, &args(Some(600), None, 2000))
            .await
            .expect("run");
        let elapsed = started.elapsed();
        assert_eq!(report.published, 600);
        assert!(
            elapsed >= Duration::from_millis(280) && elapsed < Duration::from_millis(900),
            "{elapsed:?}"
        );

        // A duration at a rate: about rate x duration entries.
        let report = run(client(), "test", &stream, &args(None, Some(1), 300))
            .await
            .expect("run");
        assert!((280..=320).contains(&report.published), "{report:?}");

        let _: () = conn.del(&stream).await.expect("DEL");
    }

    #[tokio::test]
    async fn a_key_of_another_type_fails_the_run() {
        let (key, mut conn) = fresh_key().await;
        let _: () = conn.set(&key, "not a stream").await.expect("SET");
        let result = run(client(), "test", &key, &args(Some(10), None, 0)).await;
        assert!(matches!(result, Err(SimulateError::Redis(_))), "{result:?}");
        let _: () = conn.del(&key).await.expect("DEL");
    }
}
