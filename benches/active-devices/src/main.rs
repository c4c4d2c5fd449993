//! Hot-path cost of the "devices active in the last W epochs" gauge.
//!
//! Variants, all on the same synthetic input (built before the timed region):
//!   a  baseline: `StateTable::fold` per record
//!   b  a + `ActiveDevices::observe(device_hash, epoch)` per record + `count(epoch)` per epoch
//!   c  a + differential-dataflow: `update_at(hash, t, +1)`, `update_at(hash, t+W, -1)`,
//!      `.distinct().map(|_| ()).count()`, stepping one timely worker until a probe passes
//!      each epoch
//!   d  like c with the totally-ordered operators (`distinct_total`, `count_total`), the
//!      cheaper choice DD offers when time is a plain u64
//!   e  like d, but the -1 is not sent ahead at t+W: the host keeps the last W epochs of hashes
//!      and sends each epoch's retractions at the epoch they fall due (so DD's input batcher does
//!      not hold W epochs of future updates and re-scan them every epoch)
//!
//! The parent process runs every variant `--runs` times in alternation, each in a fresh child
//! process of this binary (`--child <variant>`), so VmHWM (peak RSS) is per variant. It checks
//! the gauge values of b, c and d against an exact sliding-window count of the input.
//!
//! Usage: cargo run --release -- [--records N] [--devices N] [--chatty N] [--per-epoch N]
//!                                [--window N] [--runs N]

use std::cell::Cell;
use std::collections::VecDeque;
use std::hint::black_box;
use std::num::NonZeroUsize;
use std::process::Command;
use std::rc::Rc;
use std::time::{Duration, Instant};

use dataflow::{ActiveDevices, Epoch, Position, StateTable};
use differential_dataflow::input::Input;
use differential_dataflow::operators::{CountTotal, ThresholdTotal};

/// The processor's default STATE_CAPACITY: larger than the device count, so no evictions.
const STATE_CAPACITY: usize = 1_000_000;
/// 2026-01-01T00:00:00Z in microseconds.
const BASE_TS_MICROS: i64 = 1_767_225_600_000_000;
/// An epoch of 50 ms, in microseconds (only used to space timestamps).
const EPOCH_MICROS: i64 = 50_000;

const VARIANTS: [(&str, &str); 5] = [
    ("a", "StateTable::fold only (baseline)"),
    ("b", "fold + ActiveDevices (plain HashMap)"),
    ("c", "fold + DD distinct().count()"),
    ("d", "fold + DD distinct_total().count_total()"),
    ("e", "as d, retractions sent when due"),
];

#[derive(Clone, Copy, Debug)]
struct Params {
    records: usize,
    devices: usize,
    /// Devices that send half of all records (the rest come from the other devices).
    chatty: usize,
    per_epoch: usize,
    window: Epoch,
    runs: usize,
}

impl Params {
    fn parse(args: &[String]) -> (Params, Option<String>) {
        let mut p = Params {
            records: 2_000_000,
            devices: 100_000,
            chatty: 10_000,
            per_epoch: 1_000,
            window: 300,
            runs: 5,
        };
        let mut child = None;
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let mut value = || -> String {
                it.next()
                    .cloned()
                    .unwrap_or_else(|| panic!("{flag} needs a value"))
            };
            match flag.as_str() {
                "--records" => p.records = value().parse().expect("--records"),
                "--devices" => p.devices = value().parse().expect("--devices"),
                "--chatty" => p.chatty = value().parse().expect("--chatty"),
                "--per-epoch" => p.per_epoch = value().parse().expect("--per-epoch"),
                "--window" => p.window = value().parse().expect("--window"),
                "--runs" => p.runs = value().parse().expect("--runs"),
                "--child" => child = Some(value()),
                other => panic!("unknown argument {other}"),
            }
        }
        assert!(p.records > 0 && p.per_epoch > 0 && p.window > 0 && p.runs > 0);
        assert!(
            p.chatty > 0 && p.chatty < p.devices,
            "need 0 < chatty < devices"
        );
        (p, child)
    }

    fn to_args(self) -> Vec<String> {
        [
            ("--records", self.records as u64),
            ("--devices", self.devices as u64),
            ("--chatty", self.chatty as u64),
            ("--per-epoch", self.per_epoch as u64),
            ("--window", self.window),
        ]
        .iter()
        .flat_map(|(k, v)| [k.to_string(), v.to_string()])
        .collect()
    }

    fn epochs(self) -> usize {
        self.records.div_ceil(self.per_epoch)
    }
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The device (index) of every record: half from `chatty` devices, half from the others.
fn device_sequence(p: Params) -> Vec<u32> {
    let mut rng = 0x5eed_u64;
    (0..p.records)
        .map(|_| {
            let r = splitmix64(&mut rng);
            let d = if r & 1 == 0 {
                (r >> 1) as usize % p.chatty
            } else {
                p.chatty + (r >> 1) as usize % (p.devices - p.chatty)
            };
            d as u32
        })
        .collect()
}

/// The records as the fold sees them, in epoch order (record i is in epoch i / per_epoch).
fn positions(p: Params) -> Vec<Position> {
    let mut rng = 0xfeed_u64;
    device_sequence(p)
        .into_iter()
        .enumerate()
        .map(|(i, d)| {
            let r = splitmix64(&mut rng);
            let epoch = (i / p.per_epoch) as i64;
            Position {
                device_id: format!("35{:013}", 4_000_000_000_000u64 + u64::from(d)),
                ts_micros: BASE_TS_MICROS + epoch * EPOCH_MICROS + (i % p.per_epoch) as i64,
                latitude: 54.0 + (r % 1_000_000) as f64 * 1e-6,
                longitude: 25.0 + ((r >> 20) % 1_000_000) as f64 * 1e-6,
                altitude: Some(120.0),
                angle: Some((r % 360) as f32),
                speed: Some((r % 90) as f32),
                satellites: Some(11),
                priority: Some(0),
                event_id: None,
                attributes: format!(
                    r#"{{"21":{},"66":{},"239":1,"240":1}}"#,
                    r % 5,
                    12_000 + r % 2_000
                ),
            }
        })
        .collect()
}

/// Exact number of devices with a record in epochs (t - W, t], for every epoch t.
fn exact_counts(p: Params) -> Vec<usize> {
    let seq = device_sequence(p);
    let mut in_window = vec![0u32; p.devices];
    let mut active = 0usize;
    let mut out = Vec::with_capacity(p.epochs());
    let chunks: Vec<&[u32]> = seq.chunks(p.per_epoch).collect();
    for t in 0..chunks.len() {
        for &d in chunks[t] {
            if in_window[d as usize] == 0 {
                active += 1;
            }
            in_window[d as usize] += 1;
        }
        if t as u64 >= p.window {
            for &d in chunks[t - p.window as usize] {
                in_window[d as usize] -= 1;
                if in_window[d as usize] == 0 {
                    active -= 1;
                }
            }
        }
        out.push(active);
    }
    out
}

fn status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Time this thread has spent on a CPU, in ns (from the scheduler; excludes time spent waiting
/// for a CPU while other processes run, so it is less noisy than wall time on a shared machine).
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

struct Measured {
    total: Duration,
    cpu_ns: u64,
    /// Of `total`: time spent once per epoch (count()/sweep, or advance+flush+step).
    per_epoch: Duration,
    counts: Vec<usize>,
    hwm_before_kb: u64,
}

fn new_table() -> StateTable {
    StateTable::new(NonZeroUsize::new(STATE_CAPACITY).expect("non-zero"))
}

fn run_a(p: Params, input: &[Position]) -> Measured {
    let mut table = new_table();
    let hwm_before_kb = status_kb("VmHWM:");
    let cpu_start = thread_cpu_ns();
    let start = Instant::now();
    for chunk in input.chunks(p.per_epoch) {
        for position in chunk {
            table.fold(position);
        }
    }
    let total = start.elapsed();
    let cpu_ns = thread_cpu_ns() - cpu_start;
    black_box(table.len());
    Measured {
        total,
        cpu_ns,
        per_epoch: Duration::ZERO,
        counts: Vec::new(),
        hwm_before_kb,
    }
}

fn run_b(p: Params, input: &[Position]) -> Measured {
    let mut table = new_table();
    let mut active = ActiveDevices::new(p.window);
    let mut counts = Vec::with_capacity(p.epochs());
    let mut per_epoch = Duration::ZERO;
    let hwm_before_kb = status_kb("VmHWM:");
    let cpu_start = thread_cpu_ns();
    let start = Instant::now();
    for (t, chunk) in input.chunks(p.per_epoch).enumerate() {
        let epoch = t as Epoch;
        for position in chunk {
            table.fold(position);
            active.observe(position.device_hash(), epoch);
        }
        let at = Instant::now();
        counts.push(active.count(epoch));
        per_epoch += at.elapsed();
    }
    let total = start.elapsed();
    let cpu_ns = thread_cpu_ns() - cpu_start;
    black_box(table.len());
    Measured {
        total,
        cpu_ns,
        per_epoch,
        counts,
        hwm_before_kb,
    }
}

/// c, d and e: one timely worker, one DD dataflow. `total_order` picks `distinct_total` and
/// `count_total` over `distinct` and `count`; `retract_when_due` sends each record's -1 at
/// epoch t+W (from a host-side ring of the last W epochs of hashes) instead of ahead of time.
fn run_dd(p: Params, input: Vec<Position>, total_order: bool, retract_when_due: bool) -> Measured {
    timely::execute_directly(move |worker| {
        // Sum over the count's output updates of count * diff = the current distinct count.
        let current = Rc::new(Cell::new(0i64));
        let (mut session, probe) = worker.dataflow::<Epoch, _, _>(|scope| {
            let (session, hashes) = scope.new_collection::<u64, isize>();
            let counted = if total_order {
                hashes.distinct_total().map(|_| ()).count_total()
            } else {
                hashes.distinct().map(|_| ()).count()
            };
            let sink = Rc::clone(&current);
            let (probe, _) = counted
                .inspect(move |(((), count), _time, diff)| {
                    sink.set(sink.get() + (*count as i64) * (*diff as i64));
                })
                .probe();
            (session, probe)
        });

        let mut table = new_table();
        let mut counts = Vec::with_capacity(p.epochs());
        let mut per_epoch = Duration::ZERO;
        // e only: the hashes of the last W epochs, oldest first.
        let mut due: VecDeque<Vec<u64>> = VecDeque::new();
        let hwm_before_kb = status_kb("VmHWM:");
        let cpu_start = thread_cpu_ns();
        let start = Instant::now();
        for (t, chunk) in input.chunks(p.per_epoch).enumerate() {
            let epoch = t as Epoch;
            if retract_when_due {
                let mut this_epoch = if due.len() as u64 >= p.window {
                    due.pop_front().expect("non-empty")
                } else {
                    Vec::with_capacity(p.per_epoch)
                };
                // What was popped is epoch t-W: it leaves the window now.
                for &hash in &this_epoch {
                    session.update_at(hash, epoch, -1);
                }
                this_epoch.clear();
                for position in chunk {
                    table.fold(position);
                    let hash = position.device_hash();
                    session.update_at(hash, epoch, 1);
                    this_epoch.push(hash);
                }
                due.push_back(this_epoch);
            } else {
                for position in chunk {
                    table.fold(position);
                    let hash = position.device_hash();
                    session.update_at(hash, epoch, 1);
                    session.update_at(hash, epoch + p.window, -1);
                }
            }
            let at = Instant::now();
            session.advance_to(epoch + 1);
            session.flush();
            while probe.less_than(session.time()) {
                worker.step();
            }
            counts.push(current.get() as usize);
            per_epoch += at.elapsed();
        }
        let total = start.elapsed();
        let cpu_ns = thread_cpu_ns() - cpu_start;
        black_box(table.len());
        Measured {
            total,
            cpu_ns,
            per_epoch,
            counts,
            hwm_before_kb,
        }
    })
}

fn child(p: Params, variant: &str) {
    let input = positions(p);
    let m = match variant {
        "a" => run_a(p, &input),
        "b" => run_b(p, &input),
        "c" => run_dd(p, input, false, false),
        "d" => run_dd(p, input, true, false),
        "e" => run_dd(p, input, true, true),
        other => panic!("unknown variant {other}"),
    };
    // Read before anything is dropped: the peak includes the variant's steady state.
    let hwm_after_kb = status_kb("VmHWM:");
    println!(
        "RESULT total_ns={} cpu_ns={} per_epoch_ns={} hwm_before_kb={} hwm_after_kb={}",
        m.total.as_nanos(),
        m.cpu_ns,
        m.per_epoch.as_nanos(),
        m.hwm_before_kb,
        hwm_after_kb
    );
    let counts: Vec<String> = m.counts.iter().map(|c| c.to_string()).collect();
    println!("COUNTS {}", counts.join(","));
}

#[derive(Clone, Debug)]
struct Run {
    ns_per_record: f64,
    cpu_ns_per_record: f64,
    per_epoch_ns_per_record: f64,
    hwm_before_kb: u64,
    hwm_after_kb: u64,
    counts: Vec<usize>,
}

fn spawn(p: Params, variant: &str) -> Run {
    let exe = std::env::current_exe().expect("current_exe");
    let out = Command::new(exe)
        .args(p.to_args())
        .args(["--child", variant])
        .output()
        .expect("spawn child");
    assert!(
        out.status.success(),
        "child {variant} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("utf8");
    let mut run = Run {
        ns_per_record: 0.0,
        cpu_ns_per_record: 0.0,
        per_epoch_ns_per_record: 0.0,
        hwm_before_kb: 0,
        hwm_after_kb: 0,
        counts: Vec::new(),
    };
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("RESULT ") {
            for kv in rest.split_whitespace() {
                let (k, v) = kv.split_once('=').expect("k=v");
                let v: u128 = v.parse().expect("number");
                match k {
                    "total_ns" => run.ns_per_record = v as f64 / p.records as f64,
                    "cpu_ns" => run.cpu_ns_per_record = v as f64 / p.records as f64,
                    "per_epoch_ns" => run.per_epoch_ns_per_record = v as f64 / p.records as f64,
                    "hwm_before_kb" => run.hwm_before_kb = v as u64,
                    "hwm_after_kb" => run.hwm_after_kb = v as u64,
                    _ => {}
                }
            }
        } else if let Some(rest) = line.strip_prefix("COUNTS ") {
            run.counts = rest
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().expect("count"))
                .collect();
        }
    }
    run
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

fn min_max(xs: &[f64]) -> (f64, f64) {
    xs.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        })
}

fn mib(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (p, child_variant) = Params::parse(&args);
    if let Some(variant) = child_variant {
        child(p, &variant);
        return;
    }

    let sweep_every = (p.window / 16).max(1);
    println!("active-devices gauge: hot-path cost per record");
    println!(
        "input: {} records, {} devices ({} chatty devices send half of the records), \
         {} records/epoch -> {} epochs, window W = {} epochs (ActiveDevices sweeps every {}), \
         StateTable capacity {}, {} runs per variant in alternation, each in a fresh process",
        p.records,
        p.devices,
        p.chatty,
        p.per_epoch,
        p.epochs(),
        p.window,
        sweep_every,
        STATE_CAPACITY,
        p.runs
    );

    let exact = exact_counts(p);
    let mut results: Vec<Vec<Run>> = vec![Vec::new(); VARIANTS.len()];
    let wall = Instant::now();
    for run in 0..p.runs {
        for (i, (name, _)) in VARIANTS.iter().enumerate() {
            let r = spawn(p, name);
            println!(
                "  run {} variant {}: {:7.1} ns/record (per-epoch part {:6.1}), peak RSS {:7.1} MiB (input built: {:7.1} MiB)",
                run + 1,
                name,
                r.ns_per_record,
                r.per_epoch_ns_per_record,
                mib(r.hwm_after_kb),
                mib(r.hwm_before_kb)
            );
            results[i].push(r);
        }
    }
    println!(
        "total wall time of the runs: {:.1} s",
        wall.elapsed().as_secs_f64()
    );

    // Correctness: DD must equal the exact count at every epoch; ActiveDevices at every sweep
    // epoch, and never below it (it may still hold devices up to W/16 past the window).
    println!();
    println!(
        "gauge check against the exact sliding-window count (devices with a record in (t-W, t]):"
    );
    let mut ok = true;
    for (i, (name, _)) in VARIANTS.iter().enumerate().skip(1) {
        for r in &results[i] {
            assert_eq!(
                r.counts.len(),
                exact.len(),
                "variant {name}: one count per epoch"
            );
        }
        let counts = &results[i][0].counts;
        let (mut equal, mut max_over) = (0usize, 0usize);
        let mut sweep_mismatch = 0usize;
        for (t, (&got, &want)) in counts.iter().zip(&exact).enumerate() {
            if got == want {
                equal += 1;
            }
            if got < want {
                ok = false;
                println!("  !! variant {name} epoch {t}: {got} < exact {want}");
            }
            max_over = max_over.max(got.saturating_sub(want));
            if *name == "b" && t > 0 && (t as u64).is_multiple_of(sweep_every) && got != want {
                sweep_mismatch += 1;
            }
        }
        let all_runs_same = results[i].iter().all(|r| r.counts == *counts);
        if *name == "b" {
            ok &= sweep_mismatch == 0 && all_runs_same;
            println!(
                "  b: equal at {equal}/{} epochs; sweep epochs (t % {sweep_every} == 0) mismatching: {sweep_mismatch}; \
                 max overcount between sweeps: {max_over}; identical across runs: {all_runs_same}",
                exact.len()
            );
        } else {
            ok &= equal == exact.len() && all_runs_same;
            println!(
                "  {name}: equal at {equal}/{} epochs; identical across runs: {all_runs_same}",
                exact.len()
            );
        }
    }
    let last = exact.len() - 1;
    let checkpoints: Vec<usize> = [exact.len() / 4, exact.len() / 2, 3 * exact.len() / 4, last]
        .iter()
        .map(|&t| t / sweep_every as usize * sweep_every as usize)
        .collect();
    print!("  checkpoints (sweep epochs):   epoch    exact");
    for (name, _) in VARIANTS.iter().skip(1) {
        print!(" {name:>8}");
    }
    println!();
    for &t in &checkpoints {
        print!("  {:>34} {:>8}", t, exact[t]);
        for r in results.iter().skip(1) {
            print!(" {:>8}", r[0].counts[t]);
        }
        println!();
    }
    println!("  counts agree: {}", if ok { "YES" } else { "NO" });

    println!();
    println!(
        "| variant | wall ns/record median | wall min-max | extra wall ns/record over a | \
         CPU ns/record median | CPU min-max | extra CPU ns/record over a | \
         of which at epoch boundaries (wall) | peak RSS (MiB) | RSS added in the timed part (MiB) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let stat = |i: usize, f: fn(&Run) -> f64| {
        let xs: Vec<f64> = results[i].iter().map(f).collect();
        let (lo, hi) = min_max(&xs);
        (median(xs), lo, hi)
    };
    let wall = |r: &Run| r.ns_per_record;
    let cpu = |r: &Run| r.cpu_ns_per_record;
    let (base_wall, _, _) = stat(0, wall);
    let (base_cpu, _, _) = stat(0, cpu);
    for (i, (name, label)) in VARIANTS.iter().enumerate() {
        let (w, wlo, whi) = stat(i, wall);
        let (c, clo, chi) = stat(i, cpu);
        let (per_epoch, _, _) = stat(i, |r| r.per_epoch_ns_per_record);
        let (hwm, _, _) = stat(i, |r| mib(r.hwm_after_kb));
        let (added, _, _) = stat(i, |r| mib(r.hwm_after_kb.saturating_sub(r.hwm_before_kb)));
        let (extra_wall, extra_cpu) = if i == 0 {
            ("-".to_string(), "-".to_string())
        } else {
            (
                format!("{:+.1}", w - base_wall),
                format!("{:+.1}", c - base_cpu),
            )
        };
        println!(
            "| {name}: {label} | {w:.1} | {wlo:.1}-{whi:.1} | {extra_wall} | {c:.1} | {clo:.1}-{chi:.1} | \
             {extra_cpu} | {per_epoch:.1} | {hwm:.1} | {added:.1} |"
        );
    }
    let b_wall = stat(1, wall).0 - base_wall;
    let b_cpu = stat(1, cpu).0 - base_cpu;
    println!();
    for (i, (name, _)) in VARIANTS.iter().enumerate().skip(2) {
        println!(
            "added cost ratio ({name}-a)/(b-a): {:.1}x wall, {:.1}x CPU",
            (stat(i, wall).0 - base_wall) / b_wall,
            (stat(i, cpu).0 - base_cpu) / b_cpu
        );
    }
    if !ok {
        std::process::exit(1);
    }
}
