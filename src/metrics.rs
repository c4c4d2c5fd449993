//! The service's metrics, registered in a registry of their own (one per `run`, so tests in one
//! process do not share counters). Each notable event has one method here that counts it, so the
//! counter and the log line that the caller emits next to it cannot drift apart.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Every metric the pipeline maintains.
#[derive(Clone)]
pub struct Metrics {
    /// The registry all of them live in (scraped by `/metrics`).
    pub registry: Registry,
    /// Stream entries handed to the dataflow.
    pub entries_read: IntCounter,
    /// Stream entries acknowledged after their epoch committed.
    pub entries_acked: IntCounter,
    /// Rows inserted into `positions`.
    pub positions_written: IntCounter,
    /// Positions whose `(device_id, ts)` already had a row (the first one wins).
    pub duplicates: IntCounter,
    /// Entries the codec refused, by contract field.
    pub decode_errors: IntCounterVec,
    /// Entries moved to the dead-letter stream.
    pub dead_lettered: IntCounter,
    /// Pending entries found deleted from the stream (trimmed), acknowledged away.
    pub deleted_pending: IntCounter,
    /// Failed Redis operations, by operation.
    pub redis_errors: IntCounterVec,
    /// Failed PostgreSQL operations, by operation.
    pub postgres_errors: IntCounterVec,
    /// Duration of one epoch's write transaction, including retries.
    pub commit_seconds: Histogram,
    /// Rows per epoch's write transaction.
    pub batch_rows: Histogram,
    /// Devices held in per-device state, over all workers.
    pub devices_in_state: IntGauge,
    /// Devices evicted from per-device state.
    pub state_evictions: IntCounter,
    /// Epochs read but not yet acknowledged, over all workers.
    pub epochs_in_flight: IntGauge,
}

impl Metrics {
    /// Creates and registers every metric (fails only on a malformed definition).
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| -> prometheus::Result<IntCounter> {
            let metric = IntCounter::new(name, help)?;
            registry.register(Box::new(metric.clone()))?;
            Ok(metric)
        };
        let counter_vec =
            |name: &str, help: &str, label: &str| -> prometheus::Result<IntCounterVec> {
                let metric = IntCounterVec::new(Opts::new(name, help), &[label])?;
                registry.register(Box::new(metric.clone()))?;
                Ok(metric)
            };
        let gauge = |name: &str, help: &str| -> prometheus::Result<IntGauge> {
            let metric = IntGauge::new(name, help)?;
            registry.register(Box::new(metric.clone()))?;
            Ok(metric)
        };
        let histogram =
            |name: &str, help: &str, buckets: Vec<f64>| -> prometheus::Result<Histogram> {
                let metric = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))?;
                registry.register(Box::new(metric.clone()))?;
                Ok(metric)
            };
        Ok(Metrics {
            entries_read: counter(
                "processor_entries_read_total",
                "Stream entries read and handed to the dataflow.",
            )?,
            entries_acked: counter(
                "processor_entries_acked_total",
                "Stream entries acknowledged after their epoch was committed.",
            )?,
            positions_written: counter(
                "processor_positions_written_total",
                "Rows inserted into positions.",
            )?,
            duplicates: counter(
                "processor_duplicates_total",
                "Positions whose (device_id, ts) already had a row; nothing was written.",
            )?,
            decode_errors: counter_vec(
                "processor_decode_errors_total",
                "Entries the codec refused, by the field at fault.",
                "field",
            )?,
            dead_lettered: counter(
                "processor_dead_lettered_total",
                "Entries moved to the dead-letter stream.",
            )?,
            deleted_pending: counter(
                "processor_deleted_pending_total",
                "Pending entries found deleted from the stream and acknowledged away.",
            )?,
            redis_errors: counter_vec(
                "processor_redis_errors_total",
                "Failed Redis operations, by operation.",
                "operation",
            )?,
            postgres_errors: counter_vec(
                "processor_postgres_errors_total",
                "Failed PostgreSQL operations, by operation.",
                "operation",
            )?,
            commit_seconds: histogram(
                "processor_commit_duration_seconds",
                "Duration of one epoch's write transaction on one worker, retries included.",
                prometheus::exponential_buckets(0.0005, 2.0, 16)?,
            )?,
            batch_rows: histogram(
                "processor_batch_rows",
                "Rows in one epoch's write transaction on one worker.",
                prometheus::exponential_buckets(1.0, 4.0, 11)?,
            )?,
            devices_in_state: gauge(
                "processor_devices_in_state",
                "Devices held in per-device state, over all workers.",
            )?,
            state_evictions: counter(
                "processor_state_evictions_total",
                "Devices evicted from per-device state to respect STATE_CAPACITY.",
            )?,
            epochs_in_flight: gauge(
                "processor_epochs_in_flight",
                "Epochs read but not yet acknowledged, over all workers.",
            )?,
            registry,
        })
    }
}
