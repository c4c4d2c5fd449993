//! The dataflow in one process with several workers: keying, state, commits and the probe.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test that cannot unwrap has failed

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::num::NonZeroUsize;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use dataflow::operators::{BadEntry, Committer};
use dataflow::{graph, ActiveDevices, Batch, Entry, Epoch, Rows, StateTable};
use timely::dataflow::operators::vec::Input;
use timely::dataflow::InputHandleVec;
use timely::scheduling::SyncActivator;

/// What the committers were handed: (worker, epoch, batch).
type Log<D> = Arc<Mutex<Vec<(usize, Epoch, Vec<D>)>>>;

/// Records what it is given; reports an epoch committed only once the test has released it.
struct GatedCommitter<D> {
    worker: usize,
    log: Log<D>,
    released: Arc<Mutex<HashSet<Epoch>>>,
    submitted: Vec<Epoch>,
}

impl<D> Committer<D> for GatedCommitter<D> {
    fn submit(&mut self, epoch: Epoch, batch: Batch<D>) {
        self.log
            .lock()
            .expect("log")
            .push((self.worker, epoch, batch.into_iter().collect()));
        self.submitted.push(epoch);
    }

    fn poll_committed(&mut self, committed: &mut Vec<Epoch>) {
        let released = self.released.lock().expect("released");
        self.submitted.retain(|epoch| {
            if released.contains(epoch) {
                committed.push(*epoch);
                false
            } else {
                true
            }
        });
    }
}

fn gated<D>(
    worker: usize,
    log: &Log<D>,
    released: &Arc<Mutex<HashSet<Epoch>>>,
    activators: &Arc<Mutex<Vec<SyncActivator>>>,
) -> impl FnOnce(SyncActivator) -> GatedCommitter<D> {
    let log = Arc::clone(log);
    let released = Arc::clone(released);
    let activators = Arc::clone(activators);
    move |activator: SyncActivator| {
        // the test wakes every sink with these after it releases an epoch
        activators.lock().expect("activators").push(activator);
        GatedCommitter {
            worker,
            log,
            released,
            submitted: Vec::new(),
        }
    }
}

fn entry(id: u64, device: &str, ts_ms: u64) -> Entry {
    let payload = format!(
        r#"{{"device_id":"{device}","timestamp":{ts_ms},"latitude":54.5,"longitude":25.25,"attributes":{{"16":{{"__bigint":"18446744073709551617"}}}}}}"#
    );
    Entry {
        id: dataflow::StreamId::new(id, 0),
        fields: vec![("payload".into(), payload.into())],
    }
}

fn bad_entry(id: u64) -> Entry {
    Entry {
        id: dataflow::StreamId::new(id, 0),
        fields: vec![("payload".into(), bytes::Bytes::from_static(b"[1,2,3]"))],
    }
}

type RowLog = Log<Rows>;
type Dead = Log<BadEntry>;

/// Three workers each read entries of 50 devices over several epochs; every device's records
/// must land on exactly one worker, whose state counts them; every epoch's batch is submitted
/// once; bad entries go to the dead-letter committer of the worker that read them.
#[test]
fn three_workers_key_fold_and_commit_every_epoch_once() {
    let rows: RowLog = Arc::new(Mutex::new(Vec::new()));
    let dead: Dead = Arc::new(Mutex::new(Vec::new()));
    let released = Arc::new(Mutex::new(HashSet::new()));
    let activators = Arc::new(Mutex::new(Vec::new()));
    let states: Arc<Mutex<Vec<(usize, String, u64)>>> = Arc::new(Mutex::new(Vec::new()));
    {
        let (rows, dead, released, activators, states) = (
            Arc::clone(&rows),
            Arc::clone(&dead),
            Arc::clone(&released),
            Arc::clone(&activators),
            Arc::clone(&states),
        );
        // every epoch is released up front: this test is about routing, not gating
        released.lock().expect("released").extend(0..10u64);
        timely::execute(timely::Config::process(3), move |worker| {
            let index = worker.index();
            let table = Rc::new(RefCell::new(StateTable::new(
                NonZeroUsize::new(1000).expect("non-zero"),
            )));
            let active = Rc::new(RefCell::new(ActiveDevices::new(1000)));
            let mut input: InputHandleVec<Epoch, Entry> = InputHandleVec::new();
            let probe = worker.dataflow(|scope| {
                let entries = scope.input_from(&mut input);
                graph::build(
                    entries,
                    Rc::clone(&table),
                    Rc::clone(&active),
                    true,
                    gated(index, &rows, &released, &activators),
                    gated(index, &dead, &released, &activators),
                )
            });
            for epoch in 0..5u64 {
                for i in 0..100u64 {
                    // each worker reads a different slice of ids, but every worker sees
                    // records of every device
                    let id = 1_000_000 * index as u64 + 1000 * epoch + i;
                    input.send(entry(id, &format!("dev-{}", i % 50), 1000 * epoch + i));
                }
                input.send(bad_entry(1_000_000 * index as u64 + 1000 * epoch + 999));
                input.advance_to(epoch + 1);
                while probe.less_than(input.time()) {
                    worker.step();
                }
            }
            // every device this worker holds is active, and only those
            assert_eq!(active.borrow_mut().count(5), table.borrow().len());
            for (device, state) in table.borrow().iter() {
                states.lock().expect("states").push((
                    index,
                    device.clone(),
                    state.position_count_session,
                ));
            }
        })
        .expect("timely runs");
    }

    let rows = rows.lock().expect("rows");
    let mut owner: HashMap<String, HashSet<usize>> = HashMap::new();
    let mut per_device: HashMap<String, u64> = HashMap::new();
    let mut batches: BTreeMap<(usize, Epoch), usize> = BTreeMap::new();
    for (worker, epoch, batch) in rows.iter() {
        *batches.entry((*worker, *epoch)).or_default() += 1;
        // the epoch's newest fix per device travels with its positions: one per device, the
        // newest of them (every epoch's records are newer than the last epoch's)
        let mut newest: HashMap<&str, i64> = HashMap::new();
        for position in batch.iter().flat_map(Rows::positions) {
            let ts = newest.entry(&position.device_id).or_insert(i64::MIN);
            *ts = (*ts).max(position.ts_micros);
        }
        let mut fixes: HashMap<&str, i64> = HashMap::new();
        for fix in batch.iter().flat_map(Rows::latest) {
            assert!(
                fixes.insert(&fix.device_id, fix.ts_micros).is_none(),
                "two fixes for {} in one epoch",
                fix.device_id
            );
        }
        assert_eq!(fixes, newest, "worker {worker}, epoch {epoch}");
        for position in batch.iter().flat_map(Rows::positions) {
            owner
                .entry(position.device_id.clone())
                .or_default()
                .insert(*worker);
            *per_device.entry(position.device_id.clone()).or_default() += 1;
            assert_eq!(position.attributes, r#"{"16":18446744073709551617}"#);
        }
    }
    assert_eq!(per_device.len(), 50);
    assert_eq!(per_device.values().sum::<u64>(), 3 * 5 * 100);
    for (device, workers) in &owner {
        assert_eq!(workers.len(), 1, "{device} is held by {workers:?}");
    }
    assert!(
        batches.values().all(|submissions| *submissions == 1),
        "an epoch was submitted twice on a worker: {batches:?}"
    );

    let states = states.lock().expect("states");
    assert_eq!(states.len(), 50, "each device's state lives on one worker");
    for (worker, device, count) in states.iter() {
        assert!(owner[device].contains(worker));
        assert_eq!(*count, per_device[device], "state count for {device}");
    }

    let dead = dead.lock().expect("dead");
    let dead_entries: Vec<(usize, &BadEntry)> = dead
        .iter()
        .flat_map(|(worker, _, batch)| batch.iter().map(move |bad| (*worker, bad)))
        .collect();
    assert_eq!(dead_entries.len(), 15);
    for (worker, bad) in dead_entries {
        // refused entries stay on the worker that read them (its ids start with its index)
        assert_eq!(bad.entry.id.ms / 1_000_000, worker as u64);
        assert_eq!(bad.error.field, "payload");
    }
}

/// Late data and repeats move no device back: an epoch whose records of a device are all older
/// than what the state has seen emits no fix for it; and with the table switched off, nothing.
#[test]
fn only_records_that_move_a_device_forward_become_fixes() {
    for latest in [true, false] {
        let rows: RowLog = Arc::new(Mutex::new(Vec::new()));
        let dead: Dead = Arc::new(Mutex::new(Vec::new()));
        let released = Arc::new(Mutex::new((0..10u64).collect::<HashSet<_>>()));
        let activators = Arc::new(Mutex::new(Vec::new()));
        {
            let (rows, dead) = (Arc::clone(&rows), Arc::clone(&dead));
            timely::execute(timely::Config::thread(), move |worker| {
                let table = Rc::new(RefCell::new(StateTable::new(
                    NonZeroUsize::new(16).expect("non-zero"),
                )));
                let mut input: InputHandleVec<Epoch, Entry> = InputHandleVec::new();
                let probe = worker.dataflow(|scope| {
                    let entries = scope.input_from(&mut input);
                    graph::build(
                        entries,
                        table,
                        Rc::new(RefCell::new(ActiveDevices::new(100))),
                        latest,
                        gated(0, &rows, &released, &activators),
                        gated(0, &dead, &released, &activators),
                    )
                });
                let epochs: [&[(&str, u64)]; 3] = [
                    &[("a", 100), ("a", 300), ("a", 200)],
                    &[("a", 50), ("a", 300), ("b", 10)], // a: late and a repeat; b: new
                    &[("a", 400), ("b", 5)],
                ];
                for (epoch, records) in epochs.iter().enumerate() {
                    for (i, (device, ts)) in records.iter().enumerate() {
                        input.send(entry((epoch * 10 + i) as u64 + 1, device, *ts));
                    }
                    input.advance_to(epoch as u64 + 1);
                    while probe.less_than(input.time()) {
                        worker.step();
                    }
                }
            })
            .expect("timely runs");
        }
        let rows = rows.lock().expect("rows");
        let fixes: Vec<(Epoch, String, i64)> = rows
            .iter()
            .flat_map(|(_, epoch, batch)| {
                batch
                    .iter()
                    .flat_map(Rows::latest)
                    .map(move |fix| (*epoch, fix.device_id.clone(), fix.ts_micros / 1000))
            })
            .collect();
        let positions: usize = rows
            .iter()
            .map(|(_, _, batch)| batch.iter().flat_map(Rows::positions).count())
            .sum();
        assert_eq!(positions, 8, "every record is written, late or not");
        if latest {
            let expected = vec![
                (0, "a".to_owned(), 300),
                (1, "b".to_owned(), 10),
                (2, "a".to_owned(), 400),
            ];
            assert_eq!(fixes, expected);
        } else {
            assert!(fixes.is_empty(), "{fixes:?}");
        }
    }
}

/// The probe must not pass an epoch while its commit is outstanding on any worker, and must pass
/// it once the commit is reported.
#[test]
fn probe_waits_for_the_commit_of_every_worker() {
    let rows: RowLog = Arc::new(Mutex::new(Vec::new()));
    let dead: Dead = Arc::new(Mutex::new(Vec::new()));
    let released = Arc::new(Mutex::new(HashSet::new()));
    let activators = Arc::new(Mutex::new(Vec::new()));
    let observed: Arc<Mutex<Vec<(usize, bool, bool)>>> = Arc::new(Mutex::new(Vec::new()));
    let barrier = Arc::new(std::sync::Barrier::new(2));
    {
        let (rows, dead, released, activators, observed) = (
            Arc::clone(&rows),
            Arc::clone(&dead),
            Arc::clone(&released),
            Arc::clone(&activators),
            Arc::clone(&observed),
        );
        timely::execute(timely::Config::process(2), move |worker| {
            let barrier = Arc::clone(&barrier);
            let index = worker.index();
            let table = Rc::new(RefCell::new(StateTable::new(
                NonZeroUsize::new(16).expect("non-zero"),
            )));
            let mut input: InputHandleVec<Epoch, Entry> = InputHandleVec::new();
            let probe = worker.dataflow(|scope| {
                let entries = scope.input_from(&mut input);
                graph::build(
                    entries,
                    table,
                    Rc::new(RefCell::new(ActiveDevices::new(100))),
                    true,
                    gated(index, &rows, &released, &activators),
                    gated(index, &dead, &released, &activators),
                )
            });
            // only worker 0 reads anything; worker 1 is idle but advances its input too
            if index == 0 {
                input.send(entry(1, "a", 1));
                input.send(entry(2, "b", 1));
            }
            input.advance_to(1);
            // step until epoch 0 has been submitted somewhere (the commit is now outstanding)
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while rows.lock().expect("rows").is_empty() && std::time::Instant::now() < deadline {
                worker.step();
            }
            for _ in 0..200 {
                worker.step();
            }
            let held_while_pending = probe.less_equal(&0);
            // both workers have looked before anything is released
            barrier.wait();
            // release epoch 0: worker 0 does it, then every sink is woken
            if index == 0 {
                released.lock().expect("released").insert(0);
                for activator in activators.lock().expect("activators").iter() {
                    activator.activate().expect("activate");
                }
            }
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while probe.less_equal(&0) && std::time::Instant::now() < deadline {
                worker.step();
            }
            let passed_after_release = !probe.less_equal(&0);
            observed.lock().expect("observed").push((
                index,
                held_while_pending,
                passed_after_release,
            ));
        })
        .expect("timely runs");
    }
    let observed = observed.lock().expect("observed");
    assert_eq!(observed.len(), 2);
    for (worker, held, passed) in observed.iter() {
        assert!(
            held,
            "worker {worker}: probe passed epoch 0 before its commit"
        );
        assert!(
            passed,
            "worker {worker}: probe never passed epoch 0 after the commit"
        );
    }
}

/// Every worker learns the latest epoch any worker shares, and is told only when it grows.
#[test]
fn every_worker_learns_the_latest_shared_epoch() {
    let seen: Arc<Mutex<Vec<(usize, Epoch)>>> = Arc::new(Mutex::new(Vec::new()));
    {
        let seen = Arc::clone(&seen);
        timely::execute(timely::Config::process(3), move |worker| {
            use dataflow::operators::ShareTicks;
            let index = worker.index();
            let mut ticks: InputHandleVec<Epoch, Epoch> = InputHandleVec::new();
            let observed = Rc::new(RefCell::new(Vec::new()));
            {
                let observed = Rc::clone(&observed);
                worker.dataflow::<Epoch, _, _>(|scope| {
                    scope
                        .input_from(&mut ticks)
                        .share_ticks(move |epoch| observed.borrow_mut().push(epoch));
                });
            }
            // worker 1 is ahead (its host's clock, say), the others behind; each sends twice
            let epoch = if index == 1 { 500 } else { 100 + index as u64 };
            ticks.send(epoch);
            ticks.send(epoch - 1);
            drop(ticks);
            while worker.step() {}
            // nothing observed may ever decrease, and the last is the cluster's latest epoch
            let observed = observed.borrow();
            assert!(
                observed.windows(2).all(|pair| pair[0] < pair[1]),
                "{observed:?}"
            );
            seen.lock()
                .expect("seen")
                .push((index, observed.last().copied().unwrap_or_default()));
        })
        .expect("timely runs");
    }
    let mut seen = seen.lock().expect("seen").clone();
    seen.sort_unstable();
    assert_eq!(seen, vec![(0, 500), (1, 500), (2, 500)]);
}
