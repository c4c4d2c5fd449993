//! One timely worker: its dataflow, its reader, its acknowledgements, and the loop that ties them.
//!
//! # Where epochs advance and where the acknowledgement happens
//! Each turn of the loop advances the input to the process clock's epoch (also when idle), feeds
//! the batches the reader delivered (stamped with that epoch, their ids recorded in
//! [`InFlight`]), and then asks the probe which epochs are committed: the probe sits after both
//! sinks of every worker, so `!probe.less_equal(e)` means every row and dead letter of every
//! epoch `<= e` is durable cluster-wide. Only those epochs' ids are sent to the acknowledger.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use dataflow::operators::ShareTicks;
use dataflow::{graph, ActiveDevices, Entry, Epoch, StateTable};
use timely::dataflow::operators::vec::Input;
use timely::dataflow::{InputHandleVec, ProbeHandle};
use timely::worker::Worker;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::acker::{ack_loop, AckRequest, Acker};
use super::committer::spawn_committer;
use super::dead_letter_sink::{DeadLetterSink, DeadLetters};
use super::inflight::InFlight;
use super::row_sink::RowSink;
use super::source::{read_loop, ClaimSettings, Source};
use super::Context;
use crate::postgres::EpochWriter;
use crate::redis::StreamReader;
use crate::retry::{Operation, Policy, Retry, Until};

/// What a worker reports when it stops.
#[derive(Debug, Clone)]
pub struct WorkerReport {
    /// The worker's index in the timely computation.
    pub index: usize,
    /// The consumer name it read as.
    pub consumer: String,
    /// Devices its state held at the end.
    pub devices: usize,
    /// Positions folded into that state since each device entered it.
    pub positions_folded: u64,
    /// Whether the worker stopped with everything it read committed and acknowledged.
    pub drained: bool,
}

/// Batches buffered between the reader task and the worker (the worker's backpressure does
/// the real bounding; this only smooths hand-over).
const BATCH_CHANNEL: usize = 2;

/// Pause before a worker's first retry of a commit, an acknowledgement or a read.
const FIRST_RETRY: Duration = Duration::from_millis(50);

/// Runs one worker until its input is drained (or the drain is abandoned).
pub fn run(worker: &mut Worker, ctx: &Context) -> WorkerReport {
    // Marks this worker dead for /healthz unless it returns normally (a panic unwinds past it).
    let alive = ctx.status.worker_started();
    let own = Own::new(ctx, worker.index());
    let state = State::new(ctx);
    let (probe, inputs) = build_dataflow(worker, &own, &state);
    let (acks, acker) = spawn_acker(&own);
    let batches = spawn_reader(&own, acks.clone());
    tracing::info!(worker = own.index, consumer = %own.consumer, "worker started");
    if ctx.faults.panic_worker == Some(own.index) {
        panic!("test fault: worker {} panics on purpose", own.index);
    }
    let drained = step_until_drained(worker, &own, &state, inputs, &probe, batches, &acks);
    if !drained {
        // Abandoned: timely would otherwise keep stepping until the dataflow completes, which
        // it cannot while commits hold their capabilities. What was not acknowledged stays
        // pending in the group for the next start.
        for dataflow in worker.installed_dataflows() {
            worker.drop_dataflow(dataflow);
        }
    }

    // Every acknowledgement is queued; wait until the acknowledger has sent them all. The drain
    // only counts as complete if it did (it gives up when the drain is abandoned).
    drop(acks);
    let drained = drained && ctx.runtime.block_on(acker).unwrap_or(false);
    tracing::info!(worker = own.index, consumer = %own.consumer, drained, "worker stopped");
    let table = state.table.borrow();
    let report = WorkerReport {
        index: own.index,
        consumer: own.consumer,
        devices: table.len(),
        positions_folded: table
            .iter()
            .map(|(_, state)| state.position_count_session)
            .sum(),
        drained,
    };
    alive.finish();
    report
}

/// What is this worker's own: its index, its consumer name, and the shared context.
struct Own<'a> {
    ctx: &'a Context,
    index: usize,
    consumer: String,
}

impl<'a> Own<'a> {
    fn new(ctx: &'a Context, index: usize) -> Self {
        Own {
            ctx,
            index,
            consumer: format!("{}-{}", ctx.consumer_name, index),
        }
    }

    /// This worker's retry policy for `operation`.
    fn retry(&self, operation: Operation, until: Until) -> Retry {
        Retry::new(
            Policy {
                operation,
                instance: self.index,
                until,
                first: FIRST_RETRY,
                max: self.ctx.config.pipeline.retry_max,
            },
            &self.ctx.reporting,
        )
    }

    /// Where this worker's refused entries and rows go.
    fn dead_letters(&self) -> DeadLetters {
        let config = &self.ctx.config;
        DeadLetters {
            conn: self.ctx.redis_commands.clone(),
            stream: config.redis.stream.key.clone(),
            group: config.redis.consumer_group.clone(),
            dead_letter_stream: config.redis.dead_letter_stream(),
            consumer: self.consumer.clone(),
            retry: self.retry(Operation::DeadLetter, Until::Abandon),
            metrics: Arc::clone(&self.ctx.metrics),
        }
    }
}

/// The worker's in-memory state, which its fold operator and its loop share.
struct State {
    table: Rc<RefCell<StateTable>>,
    active: Rc<RefCell<ActiveDevices>>,
}

impl State {
    fn new(ctx: &Context) -> Self {
        let pipeline = &ctx.config.pipeline;
        State {
            table: Rc::new(RefCell::new(StateTable::new(pipeline.state_capacity()))),
            active: Rc::new(RefCell::new(ActiveDevices::new(
                pipeline.active_window_epochs(),
            ))),
        }
    }
}

/// The dataflow's two inputs: the entries, and the process's clock ticks.
struct Inputs {
    entries: InputHandleVec<Epoch, Entry>,
    ticks: InputHandleVec<Epoch, Epoch>,
}

/// Builds this worker's dataflow (see `dataflow::graph`) with its two sinks' committers, and
/// returns the probe after both sinks and the inputs.
fn build_dataflow(worker: &mut Worker, own: &Own, state: &State) -> (ProbeHandle<Epoch>, Inputs) {
    let ctx = own.ctx;
    let config = &ctx.config;
    let mut entries: InputHandleVec<Epoch, Entry> = InputHandleVec::new();
    // The process's clock, shared with the cluster by the first worker of each process.
    let mut ticks: InputHandleVec<Epoch, Epoch> = InputHandleVec::new();
    let probe = worker.dataflow::<Epoch, _, _>(|scope| {
        let clock = Arc::clone(&ctx.clock);
        scope
            .input_from(&mut ticks)
            .share_ticks(move |epoch| clock.catch_up(epoch));
        let input = scope.input_from(&mut entries);
        let rows = RowSink {
            writer: EpochWriter::new(&config.postgres, config.outputs(), ctx.refusals.clone()),
            worker: own.index,
            retry: own.retry(Operation::Write, Until::Abandon),
            refused: own.dead_letters(),
            future_margin_micros: i64::try_from(config.pipeline.future_margin.as_micros())
                .unwrap_or(i64::MAX),
            metrics: Arc::clone(&ctx.metrics),
        };
        let refused = DeadLetterSink {
            letters: own.dead_letters(),
            metrics: Arc::clone(&ctx.metrics),
        };
        graph::build(
            input,
            Rc::clone(&state.table),
            Rc::clone(&state.active),
            config.pipeline.device_latest.is_on(),
            |activator| spawn_committer(&ctx.runtime, rows, activator),
            |activator| spawn_committer(&ctx.runtime, refused, activator),
        )
    });
    (probe, Inputs { entries, ticks })
}

/// Starts this worker's acknowledgement task; returns its queue and its handle.
fn spawn_acker(own: &Own) -> (mpsc::UnboundedSender<AckRequest>, JoinHandle<bool>) {
    let ctx = own.ctx;
    let (acks, requests) = mpsc::unbounded_channel();
    let acker = ctx.runtime.spawn(ack_loop(
        requests,
        Acker {
            conn: ctx.redis_commands.clone(),
            stream: ctx.config.redis.stream.key.clone(),
            group: ctx.config.redis.consumer_group.clone(),
            metrics: Arc::clone(&ctx.metrics),
            retry: own.retry(Operation::Ack, Until::Abandon),
            resume: Arc::clone(&ctx.resume),
        },
    ));
    (acks, acker)
}

/// Starts this worker's reader task; returns the channel its batches arrive on.
fn spawn_reader(own: &Own, acks: mpsc::UnboundedSender<AckRequest>) -> mpsc::Receiver<Vec<Entry>> {
    let ctx = own.ctx;
    let config = &ctx.config;
    let (batches, received) = mpsc::channel::<Vec<Entry>>(BATCH_CHANNEL);
    let reader = StreamReader::new(
        ctx.redis_client.clone(),
        ctx.redis_commands.clone(),
        &config.redis,
        own.consumer.clone(),
        Arc::clone(&ctx.resume),
    );
    ctx.runtime.spawn(read_loop(Source {
        reader,
        batches,
        acks,
        worker_thread: std::thread::current(),
        metrics: Arc::clone(&ctx.metrics),
        shutdown: ctx.shutdown.clone(),
        retry: own.retry(Operation::Read, Until::Drain),
        claim: ClaimSettings {
            interval: config.redis.claim_interval,
            min_idle: config.redis.claim_min_idle,
            max_deliveries: config.redis.max_deliveries,
            dead_letter_stream: config.redis.dead_letter_stream(),
        },
        stuck: ctx.faults.stuck_reader == Some(own.index),
    }));
    received
}

/// The worker's loop: advance the inputs to the clock's epoch, feed what the reader delivered
/// (within the backpressure bounds), acknowledge what the probe says is committed, step the
/// dataflow. Returns `true` once the input is closed and everything is committed, `false` when
/// the drain was abandoned first.
fn step_until_drained(
    worker: &mut Worker,
    own: &Own,
    state: &State,
    inputs: Inputs,
    probe: &ProbeHandle<Epoch>,
    mut batches: mpsc::Receiver<Vec<Entry>>,
    acks: &mpsc::UnboundedSender<AckRequest>,
) -> bool {
    let ctx = own.ctx;
    let config = &ctx.config;
    let shares_ticks = own.index == config.cluster.worker_indices().start;
    // Backpressure bounds: epochs, and entries (several batches can share one epoch when reads
    // are fast, so epochs alone would not bound memory).
    let max_inflight = config.max_inflight_epochs();
    let max_entries = max_inflight.saturating_mul(config.redis.read_count as usize);
    let clock = &ctx.clock;
    let mut inputs = Some(inputs);
    let mut inflight = InFlight::default();
    let mut gauges = GaugeDeltas::default();
    let drained = loop {
        if ctx.shutdown.is_forced() {
            break false;
        }
        let epoch = clock.now();
        if let Some(Inputs { entries, ticks }) = inputs.as_mut() {
            if *ticks.time() < epoch {
                ticks.advance_to(epoch);
                if shares_ticks {
                    ticks.send(epoch);
                }
            }
            if *entries.time() < epoch {
                entries.advance_to(epoch);
            }
            let mut reader_done = false;
            // Backpressure: take more only while fewer than MAX_INFLIGHT_EPOCHS epochs (and
            // MAX_INFLIGHT_EPOCHS x READ_COUNT entries) are unacknowledged.
            while inflight.epochs() < max_inflight && inflight.entries() < max_entries {
                match batches.try_recv() {
                    Ok(mut batch) => {
                        inflight.record(*entries.time(), batch.iter().map(|entry| entry.id));
                        entries.send_batch(&mut batch);
                    }
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        reader_done = true;
                        break;
                    }
                }
            }
            if reader_done {
                // Closing the inputs lets the frontier run to the end once all is committed.
                inputs = None;
            }
        }
        // The probe has passed `e` when no worker can still commit anything at `e`: every
        // epoch strictly below the probe's frontier is durable everywhere and may be acked.
        let committed = inflight.take_committed(|epoch| !probe.less_equal(&epoch));
        if !committed.is_empty() {
            let _ = acks.send(AckRequest::Committed(committed));
        }
        // The probe's frontier is the commit frontier: all epochs before it are committed
        // everywhere. An empty frontier: the input is closed and everything is committed.
        let frontier = probe.with_frontier(|frontier| frontier.iter().min().copied());
        ctx.status.commit_frontier(frontier);
        let active_now = state.active.borrow_mut().count(epoch);
        gauges.update(
            &ctx.metrics,
            &state.table.borrow(),
            inflight.epochs(),
            active_now,
        );
        if inputs.is_none() && inflight.is_empty() && probe.done() {
            break true;
        }
        worker.step_or_park(Some(clock.until_next_tick()));
    };
    gauges.update(&ctx.metrics, &state.table.borrow(), 0, 0);
    drained
}

/// Keeps the process-wide gauges as sums over workers by adding each worker's change.
#[derive(Default)]
struct GaugeDeltas {
    devices: i64,
    evictions: u64,
    out_of_order: u64,
    epochs: i64,
    active: i64,
}

impl GaugeDeltas {
    fn update(
        &mut self,
        metrics: &crate::metrics::Metrics,
        table: &StateTable,
        epochs: usize,
        active: usize,
    ) {
        let devices = i64::try_from(table.len()).unwrap_or(i64::MAX);
        metrics.devices_in_state.add(devices - self.devices);
        self.devices = devices;
        metrics
            .state_evictions
            .inc_by(table.evictions().saturating_sub(self.evictions));
        self.evictions = table.evictions();
        metrics
            .out_of_order
            .inc_by(table.out_of_order().saturating_sub(self.out_of_order));
        self.out_of_order = table.out_of_order();
        let epochs = i64::try_from(epochs).unwrap_or(i64::MAX);
        metrics.epochs_in_flight.add(epochs - self.epochs);
        self.epochs = epochs;
        let active = i64::try_from(active).unwrap_or(i64::MAX);
        metrics.active_devices.add(active - self.active);
        self.active = active;
    }
}
