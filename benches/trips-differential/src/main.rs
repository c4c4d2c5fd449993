//! Trips kept two ways, on the same fixes, in the same arrival order, epoch by epoch:
//!
//!   fold  the service's algorithm over per-device state held in memory
//!         (`dataflow::trips::DeviceStore`: the fixes, the runs and the trips, each commit
//!         refolding only the region its fixes can change);
//!   dd    differential-dataflow: the fixes as a collection keyed by device, `reduce` applying
//!         the trip rules (`dataflow::trips::reference`) to each changed device's fixes, the
//!         trips its output (retractions become deletes), one timely worker stepped until the
//!         probe passes each epoch.
//!
//! Reports CPU per fix and peak RSS per variant (each run in a fresh child process), and checks
//! that both end with the same trips.
//!
//! Usage: cargo run --release -- [--devices N] [--fixes N] [--per-epoch N] [--late] [--runs N]

use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;
use std::process::Command;
use std::time::Instant;

use dataflow::trips::{reference, DeviceStore, Fix, Trip, TripRules};
use differential_dataflow::input::Input;

#[derive(Clone, Copy, Debug)]
struct Params {
    devices: usize,
    fixes: usize,
    per_epoch: usize,
    late: bool,
    runs: usize,
}

impl Params {
    fn parse(args: &[String]) -> (Params, Option<String>) {
        let mut p = Params {
            devices: 1_000,
            fixes: 200,
            per_epoch: 1_000,
            late: false,
            runs: 3,
        };
        let mut child = None;
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let mut value = || {
                it.next()
                    .cloned()
                    .unwrap_or_else(|| panic!("{flag} needs a value"))
            };
            match flag.as_str() {
                "--devices" => p.devices = value().parse().expect("--devices"),
                "--fixes" => p.fixes = value().parse().expect("--fixes"),
                "--per-epoch" => p.per_epoch = value().parse().expect("--per-epoch"),
                "--runs" => p.runs = value().parse().expect("--runs"),
                "--late" => p.late = true,
                "--child" => child = Some(value()),
                other => panic!("unknown argument {other}"),
            }
        }
        (p, child)
    }

    fn to_args(self) -> Vec<String> {
        let mut args = vec![
            "--devices".into(),
            self.devices.to_string(),
            "--fixes".into(),
            self.fixes.to_string(),
            "--per-epoch".into(),
            self.per_epoch.to_string(),
        ];
        if self.late {
            args.push("--late".into());
        }
        args
    }
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Each device drives and stops in stretches, one fix a second; arrivals round-robin over the
/// devices, oldest first, or (late) with every tenth fix held back 60 rounds.
fn input(p: Params) -> Vec<(u32, Fix)> {
    let mut seed = 28;
    let mut tracks: Vec<Vec<Fix>> = Vec::with_capacity(p.devices);
    for d in 0..p.devices {
        let (mut lat, mut lon, mut moving) = (54.0 + d as f64 * 1e-3, 25.0, false);
        let mut fixes = Vec::with_capacity(p.fixes);
        for i in 0..p.fixes {
            if splitmix64(&mut seed) % 100 < 3 {
                moving = !moving;
            }
            let speed = if moving {
                30.0 + (splitmix64(&mut seed) % 60) as f32
            } else {
                0.0
            };
            if moving {
                lat += 1e-4;
                lon += (splitmix64(&mut seed) % 100) as f64 * 1e-6;
            }
            fixes.push(Fix {
                ts_micros: 1_790_000_000_000_000 + i as i64 * 1_000_000,
                latitude: lat,
                longitude: lon,
                speed: Some(speed),
            });
        }
        tracks.push(fixes);
    }
    let mut out = Vec::with_capacity(p.devices * p.fixes);
    let mut held: Vec<(usize, (u32, Fix))> = Vec::new();
    for i in 0..p.fixes {
        for (d, track) in tracks.iter().enumerate() {
            let item = (d as u32, track[i]);
            if p.late && i % 10 == 5 {
                held.push((i + 60, item));
            } else {
                out.push(item);
            }
        }
        held.retain(|(due, item)| {
            if *due <= i {
                out.push(*item);
                false
            } else {
                true
            }
        });
    }
    out.extend(held.into_iter().map(|(_, item)| item));
    out
}

/// (trips, total distance in mm) at the end, to check the variants agree.
type Outcome = (usize, u64);

fn run_fold(p: Params, input: &[(u32, Fix)]) -> Outcome {
    let rules = TripRules::default();
    let mut devices: HashMap<u32, DeviceStore> = HashMap::new();
    let mut by_device: HashMap<u32, Vec<Fix>> = HashMap::new();
    for chunk in input.chunks(p.per_epoch) {
        by_device.clear();
        for (device, fix) in chunk {
            by_device.entry(*device).or_default().push(*fix);
        }
        for (device, fixes) in &by_device {
            devices.entry(*device).or_default().commit(&rules, fixes);
        }
    }
    let trips: Vec<&Trip> = devices.values().flat_map(DeviceStore::trips).collect();
    (
        trips.len(),
        trips
            .iter()
            .map(|t| (t.run.distance_m * 1000.0) as u64)
            .sum(),
    )
}

/// A fix as a differential value: ordered by time first.
type Value = (i64, u64, u64, u32);

fn run_dd(p: Params, input: Vec<(u32, Fix)>) -> Outcome {
    timely::execute_directly(move |worker| {
        let outcome = std::rc::Rc::new(std::cell::RefCell::new((0i64, 0i64)));
        let sink = std::rc::Rc::clone(&outcome);
        let (mut session, probe) = worker.dataflow::<u64, _, _>(|scope| {
            let (session, fixes) = scope.new_collection::<(u32, Value), isize>();
            let rules = TripRules::default();
            let trips = fixes.reduce(move |_device, values: &[(&Value, isize)], output| {
                let fixes: Vec<Fix> = values
                    .iter()
                    .map(|((ts, lat, lon, speed), _)| Fix {
                        ts_micros: *ts,
                        latitude: f64::from_bits(*lat),
                        longitude: f64::from_bits(*lon),
                        speed: Some(f32::from_bits(*speed)),
                    })
                    .collect();
                for trip in reference::trips(&fixes, &rules) {
                    let run = trip.run;
                    output.push((
                        (
                            run.start.ts_micros,
                            run.end.ts_micros,
                            (run.distance_m * 1000.0) as u64,
                            trip.open,
                        ),
                        1isize,
                    ));
                }
            });
            let (probe, _) = trips
                .inspect(move |((_, (_, _, mm, _)), _, diff)| {
                    let mut o = sink.borrow_mut();
                    o.0 += *diff as i64;
                    o.1 += *mm as i64 * *diff as i64;
                })
                .probe();
            (session, probe)
        });
        for (epoch, chunk) in input.chunks(p.per_epoch).enumerate() {
            for (device, fix) in chunk {
                let speed = fix.speed.unwrap_or(0.0).to_bits();
                session.insert((
                    *device,
                    (
                        fix.ts_micros,
                        fix.latitude.to_bits(),
                        fix.longitude.to_bits(),
                        speed,
                    ),
                ));
            }
            session.advance_to(epoch as u64 + 1);
            session.flush();
            while probe.less_than(session.time()) {
                worker.step();
            }
        }
        let o = *outcome.borrow();
        (o.0 as usize, o.1 as u64)
    })
}

fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

fn hwm_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

fn child(p: Params, variant: &str) {
    let input = input(p);
    let fixes = input.len();
    let before = hwm_kb();
    let cpu = thread_cpu_ns();
    let start = Instant::now();
    let outcome = match variant {
        "fold" => run_fold(p, &input),
        "dd" => run_dd(p, input),
        other => panic!("unknown variant {other}"),
    };
    let (wall, cpu) = (start.elapsed().as_nanos() as u64, thread_cpu_ns() - cpu);
    black_box(&outcome);
    println!(
        "RESULT fixes={fixes} wall_ns={wall} cpu_ns={cpu} hwm_before_kb={before} hwm_kb={} trips={} mm={}",
        hwm_kb(),
        outcome.0,
        outcome.1
    );
}

fn field(line: &str, name: &str) -> u64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} in {line}"))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (p, child_variant) = Params::parse(&args);
    if let Some(variant) = child_variant {
        child(p, &variant);
        return;
    }
    let exe = std::env::current_exe().expect("current_exe");
    let mut results: BTreeMap<&str, Vec<(f64, f64, u64, u64)>> = BTreeMap::new();
    let mut outcomes: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for _ in 0..p.runs {
        for variant in ["fold", "dd"] {
            let out = Command::new(&exe)
                .args(p.to_args())
                .args(["--child", variant])
                .output()
                .expect("run the child");
            let text = String::from_utf8_lossy(&out.stdout);
            let line = text
                .lines()
                .find(|l| l.starts_with("RESULT"))
                .unwrap_or_else(|| {
                    panic!("{variant}: {text}{}", String::from_utf8_lossy(&out.stderr))
                });
            let fixes = field(line, "fixes") as f64;
            results.entry(variant).or_default().push((
                field(line, "cpu_ns") as f64 / fixes,
                field(line, "wall_ns") as f64 / fixes,
                field(line, "hwm_kb") - field(line, "hwm_before_kb"),
                field(line, "hwm_kb"),
            ));
            outcomes.insert(variant, (field(line, "trips"), field(line, "mm")));
        }
    }
    println!(
        "devices={} fixes/device={} per_epoch={} late={} runs={}",
        p.devices, p.fixes, p.per_epoch, p.late, p.runs
    );
    println!(
        "| variant | CPU ns/fix (median) | wall ns/fix | RSS growth KiB | peak RSS KiB | trips |"
    );
    println!("|---|---|---|---|---|---|");
    for (variant, runs) in &results {
        println!(
            "| {variant} | {:.0} | {:.0} | {:.0} | {:.0} | {} |",
            median(runs.iter().map(|r| r.0).collect()),
            median(runs.iter().map(|r| r.1).collect()),
            median(runs.iter().map(|r| r.2 as f64).collect()),
            median(runs.iter().map(|r| r.3 as f64).collect()),
            outcomes[variant].0
        );
    }
    let (fold, dd) = (outcomes["fold"], outcomes["dd"]);
    assert_eq!(fold.0, dd.0, "both variants end with the same trips");
    let tolerance = (fold.1 / 1_000_000).max(fold.0 as u64);
    assert!(
        fold.1.abs_diff(dd.1) <= tolerance,
        "distances: {fold:?} vs {dd:?}"
    );
    println!("both end with {} trips, {} m in all", fold.0, fold.1 / 1000);
}
