//! The service's metrics, registered in a registry of their own (one per service instance, so
//! tests in one process do not share counters). Names follow Prometheus conventions: the
//! `processor_` prefix, `_total` counters, base units (`_seconds`).

use prometheus::{
    CounterVec, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

/// Every metric the pipeline maintains.
#[derive(Clone)]
pub struct Metrics {
    /// The registry all of them live in (scraped by `/metrics`).
    pub registry: Registry,
    /// The name of every metric family defined here (a labelled family is in the registry's
    /// output only once it has a series; this lists it from the start).
    pub names: Vec<String>,
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
    /// Entries in the dead-letter stream now (by all replicas, and however old).
    pub dead_letter_entries: IntGauge,
    /// Rows the database refused for their data, by SQLSTATE (their entries are dead-lettered).
    pub refused_rows: IntCounterVec,
    /// Consumers deleted from the group, by reason (`drain`: this process's own after a clean
    /// drain; `swept`: idle with nothing pending).
    pub consumers_deleted: IntCounterVec,
    /// Rows of epochs held because the database refuses every row (their entries stay pending).
    pub refused_rows_held: IntGauge,
    /// Pending entries found deleted from the stream (trimmed), acknowledged away.
    pub deleted_pending: IntCounter,
    /// Failed Redis operations, by operation.
    pub redis_errors: IntCounterVec,
    /// Failed PostgreSQL operations, by operation.
    pub postgres_errors: IntCounterVec,
    /// Write transactions committed, by the statement that wrote the rows (`copy`, `insert`).
    pub write_transactions: IntCounterVec,
    /// Duration of one epoch's write transaction, including retries.
    pub commit_seconds: Histogram,
    /// Rows per epoch's write transaction.
    pub batch_rows: Histogram,
    /// Devices held in per-device state, over all workers.
    pub devices_in_state: IntGauge,
    /// Devices evicted from per-device state.
    pub state_evictions: IntCounter,
    /// Records older than their device's newest record seen (late data).
    pub out_of_order: IntCounter,
    /// From a record's fix time to the commit of its row.
    pub record_age_seconds: Histogram,
    /// Records whose fix time was ahead of the wall clock by more than FUTURE_MARGIN_SECS.
    pub future_timestamps: IntCounter,
    /// `device_latest` rows inserted or moved forward.
    pub device_latest_rows: IntCounter,
    /// Trips already closed that a late record changed.
    pub trips_late_changes: IntCounter,
    /// Devices whose trips a commit read back from the tables.
    pub trips_devices_read: IntCounter,
    /// Rows of each output table changed by committed epochs, by table and kind of change.
    pub table_rows: IntCounterVec,
    /// Epochs read but not yet acknowledged, over all workers.
    pub epochs_in_flight: IntGauge,
    /// Entries in the stream (XLEN).
    pub stream_length: IntGauge,
    /// Entries trimmed from the stream by STREAM_TRIM=acked.
    pub stream_trimmed: IntCounter,
    /// Age of the oldest entry pending in the group (from its stream id).
    pub oldest_pending_age_seconds: GaugeVec,
    /// Highest delivery count among the group's oldest pending entries.
    pub pending_max_deliveries: IntGaugeVec,
    /// 1 when `processor_consumer_lag` is Redis's exact lag, 0 when it is an upper bound.
    pub consumer_lag_exact: IntGaugeVec,
    /// Entries taken over from other consumers with XAUTOCLAIM.
    pub entries_claimed: IntCounter,
    /// The group's lag (entries not yet delivered to any consumer), when Redis knows it.
    pub consumer_lag: IntGaugeVec,
    /// Entries delivered to the group's consumers and not yet acknowledged.
    pub pending: IntGaugeVec,
    /// From an entry's stream id time to its acknowledgement.
    pub end_to_end_seconds: Histogram,
    /// Devices that sent a position within ACTIVE_WINDOW_SECS, over all workers.
    pub active_devices: IntGauge,
    /// How long since the commit frontier last advanced.
    pub commit_frontier_age_seconds: Gauge,
    /// Wall-clock steps seen, in seconds, by direction (`back`, `forward`).
    pub clock_step_seconds: CounterVec,
    /// How far the epoch clock is ahead of the wall clock (negative: behind) while it slews.
    pub epoch_clock_offset_seconds: Gauge,
}

impl Metrics {
    /// Creates and registers every metric (fails only on a malformed definition), plus the
    /// process metrics (memory, CPU, open file descriptors) and `processor_build_info`.
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        let build_info = IntGaugeVec::new(
            Opts::new(
                "processor_build_info",
                "Always 1; the labels say which build is running.",
            ),
            &["version", "timely"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), env!("TIMELY_VERSION")])
            .set(1);
        registry.register(Box::new(build_info))?;
        let names = std::cell::RefCell::new(vec!["processor_build_info".to_owned()]);
        let register = |metric: Box<dyn prometheus::core::Collector>| -> prometheus::Result<()> {
            names
                .borrow_mut()
                .extend(metric.desc().iter().map(|desc| desc.fq_name.clone()));
            registry.register(metric)
        };
        let counter = |name: &str, help: &str| -> prometheus::Result<IntCounter> {
            let metric = IntCounter::new(name, help)?;
            register(Box::new(metric.clone()))?;
            Ok(metric)
        };
        let counter_vec =
            |name: &str, help: &str, label: &str| -> prometheus::Result<IntCounterVec> {
                let metric = IntCounterVec::new(Opts::new(name, help), &[label])?;
                register(Box::new(metric.clone()))?;
                Ok(metric)
            };
        let counter_vec2 =
            |name: &str, help: &str, labels: &[&str]| -> prometheus::Result<IntCounterVec> {
                let metric = IntCounterVec::new(Opts::new(name, help), labels)?;
                register(Box::new(metric.clone()))?;
                Ok(metric)
            };
        let gauge = |name: &str, help: &str| -> prometheus::Result<IntGauge> {
            let metric = IntGauge::new(name, help)?;
            register(Box::new(metric.clone()))?;
            Ok(metric)
        };
        let gauge_vec = |name: &str, help: &str, label: &str| -> prometheus::Result<IntGaugeVec> {
            let metric = IntGaugeVec::new(Opts::new(name, help), &[label])?;
            register(Box::new(metric.clone()))?;
            Ok(metric)
        };
        let float_gauge = |name: &str, help: &str| -> prometheus::Result<Gauge> {
            let metric = Gauge::new(name, help)?;
            register(Box::new(metric.clone()))?;
            Ok(metric)
        };
        let histogram =
            |name: &str, help: &str, buckets: Vec<f64>| -> prometheus::Result<Histogram> {
                let metric = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))?;
                register(Box::new(metric.clone()))?;
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
            dead_letter_entries: gauge(
                "processor_dead_letter_entries",
                "Entries in the dead-letter stream (XLEN), refreshed with lag and pending.",
            )?,
            consumers_deleted: counter_vec(
                "processor_consumers_deleted_total",
                "Consumers deleted from the group, by reason: drain (this process's own, after a drain that left nothing pending) or swept (idle longer than CONSUMER_SWEEP_IDLE_SECS with nothing pending).",
                "reason",
            )?,
            refused_rows_held: gauge(
                "processor_refused_rows_held",
                "Rows of epochs held back because the database refuses every row for one reason (REFUSED_ROWS=auto): their entries stay pending and the write is retried until the database takes them.",
            )?,
            refused_rows: counter_vec(
                "processor_refused_rows_total",
                "Rows the database refused for their data (a CHECK, a trigger, a narrowed column), by SQLSTATE; their entries are dead-lettered.",
                "sqlstate",
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
            write_transactions: counter_vec(
                "processor_write_transactions_total",
                "Write transactions committed, by path: copy (binary COPY, the fast path) or insert (INSERT ... ON CONFLICT DO NOTHING after a key existed).",
                "path",
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
            out_of_order: counter(
                "processor_out_of_order_total",
                "Records older than their device's newest record seen by this process (late data: records a tracker buffered offline, or redeliveries). Stored like any other.",
            )?,
            record_age_seconds: histogram(
                "processor_record_age_seconds",
                "From a record's fix time (ts) to the commit of its row: seconds for a live tracker, up to weeks for buffered records.",
                vec![
                    1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 6.0 * 3600.0, 86_400.0,
                    3.0 * 86_400.0, 7.0 * 86_400.0, 14.0 * 86_400.0, 28.0 * 86_400.0,
                ],
            )?,
            future_timestamps: counter(
                "processor_future_timestamps_total",
                "Records whose fix time was more than FUTURE_MARGIN_SECS ahead of the wall clock at commit (a device's clock is wrong). Stored like any other.",
            )?,
            device_latest_rows: counter(
                "processor_device_latest_rows_total",
                "device_latest rows inserted or moved forward (a device's newest fix of an epoch that is newer than the stored one).",
            )?,
            trips_late_changes: counter(
                "processor_trips_late_changes_total",
                "Trips already closed that a late fix changed (updated, split, merged or deleted): history rewritten by data that arrived late.",
            )?,
            trips_devices_read: counter(
                "processor_trips_devices_read_total",
                "Devices whose trips a commit read back from the tables instead of continuing from the writer's memory: a device's first commit since start, a fix older than its newest (other than in a gap of its current trip), or a write by another replica or a rebuild since.",
            )?,
            table_rows: counter_vec2(
                "processor_table_rows_total",
                "Rows of each output table changed by committed epochs, by table (positions, device_latest, trips) and change (inserted, updated, deleted, duplicate: a key that was there already).",
                &["table", "change"],
            )?,
            epochs_in_flight: gauge(
                "processor_epochs_in_flight",
                "Epochs read but not yet acknowledged, over all workers.",
            )?,
            stream_length: gauge(
                "processor_stream_length",
                "Entries in the stream (XLEN), refreshed with lag and pending.",
            )?,
            stream_trimmed: counter(
                "processor_stream_trimmed_total",
                "Entries trimmed from the stream because every consumer group had acknowledged them (STREAM_TRIM=acked).",
            )?,
            oldest_pending_age_seconds: {
                let metric = GaugeVec::new(
                    Opts::new(
                        "processor_oldest_pending_age_seconds",
                        "Age of the oldest entry pending in the group (now minus its stream id's time); 0 when nothing is pending.",
                    ),
                    &["group"],
                )?;
                register(Box::new(metric.clone()))?;
                metric
            },
            pending_max_deliveries: gauge_vec(
                "processor_pending_max_deliveries",
                "Highest delivery count among the group's 1000 oldest pending entries: entries that keep failing before MAX_DELIVERIES dead-letters them.",
                "group",
            )?,
            consumer_lag_exact: gauge_vec(
                "processor_consumer_lag_exact",
                "1 when processor_consumer_lag is Redis's exact lag, 0 when Redis cannot tell (deletions) and it is an upper bound.",
                "group",
            )?,
            entries_claimed: counter(
                "processor_entries_claimed_total",
                "Entries taken over from other consumers of the group (XAUTOCLAIM).",
            )?,
            consumer_lag: gauge_vec(
                "processor_consumer_lag",
                "Entries in the stream not yet delivered to the group (XINFO GROUPS lag); absent when Redis cannot tell.",
                "group",
            )?,
            pending: gauge_vec(
                "processor_pending_entries",
                "Entries delivered to the group's consumers and not yet acknowledged.",
                "group",
            )?,
            end_to_end_seconds: histogram(
                "processor_end_to_end_latency_seconds",
                "From an entry's stream id time to its acknowledgement after commit.",
                // Fine around the epoch length, where healthy latencies sit (an epoch closes, then
                // commits, then acks): p99 is read off these buckets.
                vec![
                    0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 0.1, 0.125, 0.15,
                    0.2, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                ],
            )?,
            active_devices: gauge(
                "processor_active_devices",
                "Devices that sent a position within ACTIVE_WINDOW_SECS, over all workers.",
            )?,
            commit_frontier_age_seconds: float_gauge(
                "processor_commit_frontier_age_seconds",
                "Seconds since the commit frontier last advanced (it advances every epoch while commits succeed, idle or not).",
            )?,
            clock_step_seconds: {
                let metric = CounterVec::new(
                    Opts::new(
                        "processor_clock_step_seconds_total",
                        "Steps of the wall clock seen, in seconds, by direction (back, forward); epochs never step, they slew.",
                    ),
                    &["direction"],
                )?;
                register(Box::new(metric.clone()))?;
                metric
            },
            epoch_clock_offset_seconds: float_gauge(
                "processor_epoch_clock_offset_seconds",
                "How far the epoch clock is ahead of the wall clock (negative: behind); nonzero while it slews after a step.",
            )?,
            names: names.into_inner(),
            registry,
        })
    }
}
