//! Trips through the service, the stream and the table, on both databases: `trips` equals the
//! trip rules applied to what `positions` holds, in every snapshot, whatever the arrival order,
//! the resends, the refused rows, the workers, the restarts.

use std::collections::BTreeMap;
use std::time::Duration;

use dataflow::trips::{reference, Fix, TripRules};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::support::harness::{Test, TIMESCALEDB};
use crate::support::{drain_cleanly, signal, wait_exit, Backend, TestEnv};

/// This module's tests, as the suite runs them (see `main.rs`).
pub fn tests() -> Vec<Test> {
    [
        trial!(
            the_shared_cases_give_their_trips_in_any_arrival_order,
            tokio = 2,
            on_both
        ),
        trial!(
            random_fleets_are_exact_in_every_snapshot,
            tokio = 2,
            on_both
        ),
        trial!(refused_rows_and_resends_change_no_trip, tokio = 2),
        trial!(replicas_and_a_cluster_keep_trips_exact, tokio = 4, on_both),
        trial!(sigkill_and_restart_keep_trips_exact, tokio = 2),
        trial!(trips_off_writes_no_trip, tokio = 2),
        trial!(
            a_device_is_read_back_only_when_memory_cannot_serve,
            tokio = 2
        ),
        trial!(
            fixes_weeks_late_into_compressed_chunks_and_retention,
            tokio = 2,
            needs = TIMESCALEDB
        ),
        trial!(
            rebuild_covers_history_rule_changes_and_a_running_service,
            tokio = 2
        ),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// `tests/fixtures/trips.jsonl`: hand-made cases with the trips the rules give.
const CASES: &str = include_str!("../fixtures/trips.jsonl");

/// A stored trip, as comparable values.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    start: i64,
    end: i64,
    start_latitude: f64,
    start_longitude: f64,
    end_latitude: f64,
    end_longitude: f64,
    distance_m: f64,
    max_speed: f32,
    fixes: i32,
    open: bool,
}

fn close(got: &Row, want: &Row) -> bool {
    let relative = (got.distance_m - want.distance_m).abs() <= 1e-6 * want.distance_m.max(1.0);
    relative
        && Row {
            distance_m: 0.0,
            ..got.clone()
        } == Row {
            distance_m: 0.0,
            ..want.clone()
        }
}

/// Micros since the epoch of a timestamptz, as SQL computes it.
const MICROS: &str = "(extract(epoch from {}) * 1000000)::bigint";

fn micros(column: &str) -> String {
    MICROS.replace("{}", column)
}

/// Each device's trips in `client`'s view.
async fn stored_trips(client: &impl tokio_postgres::GenericClient) -> BTreeMap<String, Vec<Row>> {
    let query = format!(
        "SELECT device_id, {}, {}, start_latitude, start_longitude, end_latitude, end_longitude,
                distance_m, max_speed, fixes, open
         FROM trips ORDER BY device_id, start_ts",
        micros("start_ts"),
        micros("end_ts")
    );
    let mut trips: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    for row in client.query(&query, &[]).await.expect("trips") {
        trips.entry(row.get(0)).or_default().push(Row {
            start: row.get(1),
            end: row.get(2),
            start_latitude: row.get(3),
            start_longitude: row.get(4),
            end_latitude: row.get(5),
            end_longitude: row.get(6),
            distance_m: row.get(7),
            max_speed: row.get(8),
            fixes: row.get(9),
            open: row.get(10),
        });
    }
    trips
}

/// Each device's trips by the plain rules over the positions in `client`'s view.
async fn rules_over_positions(
    client: &impl tokio_postgres::GenericClient,
    rules: &TripRules,
) -> BTreeMap<String, Vec<Row>> {
    let query = format!(
        "SELECT device_id, {}, latitude, longitude, speed FROM positions ORDER BY device_id, ts",
        micros("ts")
    );
    let mut fixes: BTreeMap<String, Vec<Fix>> = BTreeMap::new();
    for row in client.query(&query, &[]).await.expect("positions") {
        fixes.entry(row.get(0)).or_default().push(Fix {
            ts_micros: row.get(1),
            latitude: row.get(2),
            longitude: row.get(3),
            speed: row.get(4),
        });
    }
    fixes
        .into_iter()
        .map(|(device, fixes)| {
            let rows: Vec<Row> = reference::trips(&fixes, rules)
                .into_iter()
                .map(|trip| Row {
                    start: trip.run.start.ts_micros,
                    end: trip.run.end.ts_micros,
                    start_latitude: trip.run.start.latitude,
                    start_longitude: trip.run.start.longitude,
                    end_latitude: trip.run.end.latitude,
                    end_longitude: trip.run.end.longitude,
                    distance_m: trip.run.distance_m,
                    max_speed: trip.run.max_speed,
                    fixes: i32::try_from(trip.run.fixes).expect("fixes"),
                    open: trip.open,
                })
                .collect();
            (device, rows)
        })
        .filter(|(_, rows)| !rows.is_empty())
        .collect()
}

/// What differs between the stored trips and the rules over the positions, in one snapshot
/// (`REPEATABLE READ`): empty when they are equal.
async fn differences(env: &mut TestEnv, rules: &TripRules) -> Vec<String> {
    let tx = env
        .db
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .expect("a snapshot");
    let want = rules_over_positions(&tx, rules).await;
    let got = stored_trips(&tx).await;
    tx.commit().await.expect("end the snapshot");
    let mut differences = Vec::new();
    for device in want.keys().chain(got.keys()) {
        let (want, got) = (
            want.get(device).cloned().unwrap_or_default(),
            got.get(device).cloned().unwrap_or_default(),
        );
        let same = want.len() == got.len() && want.iter().zip(&got).all(|(w, g)| close(g, w));
        if !same {
            differences.push(format!("{device}: stored {got:?}\nthe rules give {want:?}"));
        }
    }
    differences.sort();
    differences.dedup();
    differences
}

/// Waits until the service has applied its migrations (the last creates `trips`).
async fn wait_for_the_schema(env: &mut TestEnv) {
    env.wait_for(
        Duration::from_secs(30),
        "the schema",
        async |env: &mut TestEnv| {
            env.db
                .query_one("SELECT to_regclass('trips') IS NOT NULL", &[])
                .await
                .is_ok_and(|row| row.get(0))
        },
    )
    .await;
}

fn micros_of(text: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .timestamp_micros()
}

/// The shared cases, each published four ways as its own device (as given, reversed, shuffled,
/// every third fix held back and sent last), read a few entries at a time so the orders cross
/// many commits: every device ends with the case's trips.
async fn the_shared_cases_give_their_trips_in_any_arrival_order(backend: Backend) {
    let mut env = TestEnv::on(backend, "trip_cases").await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(28);
    let mut expected: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    let mut streams: Vec<Vec<String>> = vec![Vec::new(); 4];
    let mut total = 0;
    for line in CASES.lines().filter(|line| !line.trim().is_empty()) {
        let case: serde_json::Value = serde_json::from_str(line).expect("a case");
        let name = case["name"].as_str().expect("name");
        let fixes = case["fixes"].as_array().expect("fixes");
        for (order, stream) in streams.iter_mut().enumerate() {
            let device = format!("{name}-{order}");
            let mut payloads: Vec<String> = fixes
                .iter()
                .map(|fix| {
                    fix_payload(
                        &device,
                        fix["ts"].as_str().expect("ts"),
                        fix["latitude"].as_f64().expect("latitude"),
                        fix["longitude"].as_f64().expect("longitude"),
                        fix["speed"].as_f64(),
                    )
                })
                .collect();
            match order {
                0 => {}
                1 => payloads.reverse(),
                2 => payloads.shuffle(&mut rng),
                _ => {
                    let (late, on_time): (Vec<_>, Vec<_>) = payloads
                        .into_iter()
                        .enumerate()
                        .partition(|(i, _)| i % 3 == 0);
                    payloads = on_time.into_iter().chain(late).map(|(_, p)| p).collect();
                }
            }
            total += payloads.len();
            stream.extend(payloads);
            let rows: Vec<Row> = case["trips"]
                .as_array()
                .expect("trips")
                .iter()
                .map(|trip| Row {
                    start: micros_of(trip["start_ts"].as_str().expect("start_ts")),
                    end: micros_of(trip["end_ts"].as_str().expect("end_ts")),
                    start_latitude: trip["start_latitude"].as_f64().expect("f64"),
                    start_longitude: trip["start_longitude"].as_f64().expect("f64"),
                    end_latitude: trip["end_latitude"].as_f64().expect("f64"),
                    end_longitude: trip["end_longitude"].as_f64().expect("f64"),
                    distance_m: trip["distance_m"].as_f64().expect("f64"),
                    max_speed: trip["max_speed"].as_f64().expect("f64") as f32,
                    fixes: i32::try_from(trip["fixes"].as_i64().expect("fixes")).expect("i32"),
                    open: trip["open"].as_bool().expect("open"),
                })
                .collect();
            if !rows.is_empty() {
                expected.insert(device, rows);
            }
        }
    }
    // the four orders interleaved, so each commit holds fixes of many devices
    let mut published = Vec::new();
    let longest = streams.iter().map(Vec::len).max().unwrap_or(0);
    for i in 0..longest {
        for stream in &streams {
            if let Some(payload) = stream.get(i) {
                published.push(payload.clone());
            }
        }
    }
    env.publish(&published).await;
    let running = env.start(env.config(&[
        "--trips",
        "on",
        "--read-count",
        "7",
        "--max-inflight-epochs",
        "4",
        "--workers",
        "2",
    ]));
    env.wait_landed(total as i64, Duration::from_secs(60)).await;
    // late fixes rewrote closed trips (merges, splits), and the table's changes were counted
    let metrics = crate::support::samples(&running.get("/metrics").await.1);
    running.stop().await;
    assert!(
        metrics["processor_trips_late_changes_total"] > 0.0,
        "{metrics:?}"
    );
    for change in ["inserted", "updated", "deleted"] {
        let series = format!("processor_table_rows_total{{change=\"{change}\",table=\"trips\"}}");
        assert!(metrics.get(&series).is_some_and(|n| *n > 0.0), "{series}");
    }
    let stored = stored_trips(&env.db).await;
    for (device, want) in &expected {
        let got = stored.get(device).cloned().unwrap_or_default();
        assert!(
            got.len() == want.len() && got.iter().zip(want).all(|(g, w)| close(g, w)),
            "{device}: stored {got:#?}\nthe case says {want:#?}"
        );
    }
    for device in stored.keys() {
        assert!(
            expected.contains_key(device),
            "{device} has trips it should not"
        );
    }
    assert_eq!(
        differences(&mut env, &TripRules::default()).await,
        Vec::<String>::new()
    );
}

/// Random drives of many devices (moving and stopped stretches, traffic lights, tunnels),
/// published partly in order, partly newest first, partly shuffled and partly hours late, with
/// resends; two workers. Snapshots taken while it runs all hold trips equal to the rules.
async fn random_fleets_are_exact_in_every_snapshot(backend: Backend) {
    let mut env = TestEnv::on(backend, "trip_fleet").await;
    let published = fleet(&mut rand::rngs::StdRng::seed_from_u64(5), 30, 400);
    let total = distinct(&published);
    let running = env.start(env.config(&["--trips", "on", "--read-count", "50", "--workers", "2"]));
    let rules = TripRules::default();
    wait_for_the_schema(&mut env).await;
    let mut snapshots = 0;
    for chunk in published.chunks(500) {
        env.publish(chunk).await;
        let found = differences(&mut env, &rules).await;
        assert!(
            found.is_empty(),
            "a snapshot differs from the rules:\n{}",
            found.join("\n")
        );
        snapshots += 1;
    }
    env.wait_landed(total, Duration::from_secs(90)).await;
    running.stop().await;
    let found = differences(&mut env, &rules).await;
    assert!(found.is_empty(), "{}", found.join("\n"));
    let trips: i64 = env
        .db
        .query_one("SELECT count(*) FROM trips", &[])
        .await
        .expect("count")
        .get(0);
    assert!(
        trips > 30,
        "the fleet drove: {trips} trips, {snapshots} snapshots"
    );
}

/// `devices` devices, `fixes` fixes each, 10 s apart: drives and stops, in mixed arrival orders,
/// plus resends of some fixes with other content.
fn fleet(rng: &mut rand::rngs::StdRng, devices: usize, fixes: usize) -> Vec<String> {
    let start = 1_790_000_000_000i64;
    let mut out = Vec::new();
    for d in 0..devices {
        let device = format!("fleet-{d:03}");
        let (mut lat, mut lon, mut moving) = (54.6 + d as f64 * 0.01, 25.2, false);
        let mut ts = start;
        let mut rows: Vec<(i64, f64, f64, Option<f64>)> = Vec::new();
        for _ in 0..fixes {
            // stretches: switch between driving and standing now and then; tunnels skip time
            if rng.random_bool(0.08) {
                moving = !moving;
            }
            ts += if rng.random_bool(0.03) {
                400_000
            } else {
                10_000
            };
            let speed = if moving {
                Some(rng.random_range(5.0..90.0_f64).round())
            } else if rng.random_bool(0.2) {
                None
            } else {
                Some(rng.random_range(0.0..4.0_f64).round())
            };
            if moving {
                lat += rng.random_range(0.0..0.002);
                lon += rng.random_range(-0.001..0.002);
            }
            rows.push((ts, lat, lon, speed));
        }
        let mut payloads: Vec<String> = rows
            .iter()
            .map(|&(ts, lat, lon, speed)| fix_payload(&device, ts, lat, lon, speed))
            .collect();
        match d % 4 {
            0 => {}
            1 => payloads.reverse(),
            2 => payloads.shuffle(rng),
            _ => {
                let (late, on_time): (Vec<_>, Vec<_>) = payloads
                    .into_iter()
                    .enumerate()
                    .partition(|(i, _)| i % 4 == 0);
                payloads = on_time.into_iter().chain(late).map(|(_, p)| p).collect();
            }
        }
        // resends with other content: the first row wins
        let resends: Vec<String> = rows
            .iter()
            .step_by(37)
            .map(|&(ts, lat, lon, _)| fix_payload(&device, ts, lat - 0.5, lon, Some(99.0)))
            .collect();
        payloads.extend(resends);
        out.push(payloads);
    }
    // interleave the devices
    let mut mixed = Vec::new();
    let longest = out.iter().map(Vec::len).max().unwrap_or(0);
    for i in 0..longest {
        for payloads in &out {
            if let Some(p) = payloads.get(i) {
                mixed.push(p.clone());
            }
        }
    }
    mixed
}

/// Devices `names` driving in order: fixes `fixes` (indices) of each, moving at 36 km/h, 10 s and
/// about 100 m apart, interleaved (each index of every device, then the next).
fn drives(names: &[String], fixes: std::ops::Range<i64>) -> Vec<String> {
    fixes
        .flat_map(|i| {
            names.iter().enumerate().map(move |(d, device)| {
                let ts = 1_790_000_000_000 + i * 10_000;
                let latitude = 54.0 + d as f64 + i as f64 * 0.0009;
                fix_payload(device, ts, latitude, 25.0, Some(36.0))
            })
        })
        .collect()
}

/// A contract payload for one fix: `timestamp` as the contract allows it (epoch milliseconds or
/// an ISO-8601 string), no `speed` field when it has none.
fn fix_payload(
    device: &str,
    timestamp: impl Into<serde_json::Value>,
    latitude: f64,
    longitude: f64,
    speed: Option<f64>,
) -> String {
    let mut payload = serde_json::json!({
        "device_id": device,
        "timestamp": timestamp.into(),
        "latitude": latitude,
        "longitude": longitude,
    });
    if let Some(speed) = speed {
        payload["speed"] = speed.into();
    }
    payload.to_string()
}

/// Distinct (device, time) keys among payloads.
fn distinct(payloads: &[String]) -> i64 {
    let keys: std::collections::HashSet<(String, i64)> = payloads
        .iter()
        .map(|p| {
            let v: serde_json::Value = serde_json::from_str(p).expect("json");
            (
                v["device_id"].as_str().expect("id").to_owned(),
                v["timestamp"].as_i64().expect("ts"),
            )
        })
        .collect();
    keys.len() as i64
}

/// A row the database refuses (a `CHECK` on `positions`) is dead-lettered and in no trip; a
/// resend of a stored fix with other content changes nothing.
async fn refused_rows_and_resends_change_no_trip() {
    let mut env = TestEnv::new("trip_refused").await;
    // the schema first, then a rule that refuses speed 77
    let running = env.start(env.config(&["--trips", "on"]));
    wait_for_the_schema(&mut env).await;
    env.db
        .batch_execute(
            "ALTER TABLE positions ADD CONSTRAINT no_77 CHECK (speed IS DISTINCT FROM 77)",
        )
        .await
        .expect("add the check");
    let start = 1_790_000_000_000i64;
    let mut payloads: Vec<String> = (0..30)
        .map(|i| {
            fix_payload(
                "refuse-1",
                start + i * 10_000,
                54.68,
                25.28 + i as f64 * 0.002,
                Some(40.0),
            )
        })
        .collect();
    // refused: inside the trip, and far east (it would add kilometres)
    payloads.push(fix_payload(
        "refuse-1",
        start + 95_000,
        54.68,
        26.5,
        Some(77.0),
    ));
    env.publish(&payloads).await;
    env.wait_landed(30, Duration::from_secs(30)).await;
    env.wait_for(
        Duration::from_secs(30),
        "the dead letter",
        async |env: &mut TestEnv| env.dead_letters().await.len() == 1,
    )
    .await;
    let before = stored_trips(&env.db).await;
    assert_eq!(before.get("refuse-1").map(Vec::len), Some(1), "{before:?}");
    assert_eq!(before["refuse-1"][0].fixes, 30);
    // a resend with other content: the first row wins, the trip does not move
    env.publish(&[fix_payload(
        "refuse-1",
        start + 100_000,
        10.0,
        10.0,
        Some(120.0),
    )])
    .await;
    env.wait_for(
        Duration::from_secs(30),
        "the resend acknowledged",
        async |env: &mut TestEnv| env.pending().await == 0,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.stop().await;
    assert_eq!(stored_trips(&env.db).await, before);
    assert_eq!(
        differences(&mut env, &TripRules::default()).await,
        Vec::<String>::new()
    );
}

/// The binary killed with SIGKILL mid-stream and restarted: trips still equal the rules.
async fn sigkill_and_restart_keep_trips_exact() {
    let mut env = TestEnv::new("trip_kill").await;
    let published = fleet(&mut rand::rngs::StdRng::seed_from_u64(9), 40, 300);
    let total = distinct(&published);
    env.publish(&published).await;
    let vars = [("TRIPS", "on"), ("WORKERS", "2"), ("READ_COUNT", "100")];
    let child = env.spawn_binary("tripkill", &vars);
    env.wait_for(
        Duration::from_secs(60),
        "some rows",
        async |env: &mut TestEnv| env.rows().await > 1000,
    )
    .await;
    signal(&child, "KILL");
    let _ = tokio::task::spawn_blocking(move || wait_exit(child, Duration::from_secs(10)))
        .await
        .expect("join");
    let child = env.spawn_binary("tripkill", &vars);
    env.wait_landed(total, Duration::from_secs(90)).await;
    drain_cleanly(child).await;
    let found = differences(&mut env, &TripRules::default()).await;
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// `TRIPS=off` (the default): the table exists and stays empty.
async fn trips_off_writes_no_trip() {
    let mut env = TestEnv::new("trip_off").await;
    let published = fleet(&mut rand::rngs::StdRng::seed_from_u64(1), 3, 100);
    let total = distinct(&published);
    env.publish(&published).await;
    let running = env.start(env.config(&[]));
    env.wait_landed(total, Duration::from_secs(60)).await;
    running.stop().await;
    assert!(stored_trips(&env.db).await.is_empty());
}

/// A writer continues each device's trips from what it remembers, and reads them back from the
/// tables only when that may be stale or the fixes are older than the device's newest:
/// - fixes in order read each device once (its first commit), however many commits follow, and
///   across a stop that starts a new trip;
/// - a late fix into an earlier trip reads its device once; what the writer remembers of the
///   current trip stays, so the fixes in order after it are not read;
/// - fixes filling gaps of the current trip read only the fixes around them, not the trip;
/// - a newest-first backlog reads its device at every commit of older fixes (each chaining into
///   the trip after it), and the fixes in order after the backlog are not read;
/// - after a rebuild of one device (another writer of its trips) the service reads that device
///   back, and no other.
async fn a_device_is_read_back_only_when_memory_cannot_serve() {
    let mut env = TestEnv::new("trip_memory").await;
    let devices: Vec<String> = (0..4).map(|d| format!("mem-{d}")).collect();
    let running = env.start(env.config(&["--trips", "on", "--read-count", "10"]));
    let read_back = async |running: &crate::support::Running| {
        crate::support::samples(&running.get("/metrics").await.1)
            .get("processor_trips_devices_read_total")
            .copied()
            .unwrap_or(0.0)
    };
    let mut landed = 0;
    let mut publish = async |env: &mut TestEnv, payloads: Vec<String>| {
        landed += payloads.len() as i64;
        env.publish(&payloads).await;
        env.wait_landed(landed, Duration::from_secs(60)).await;
    };
    // fixes 10 s apart: a trip of 60, a stop of 1,400 s, the next trip
    publish(&mut env, drives(&devices, 0..60)).await;
    assert_eq!(read_back(&running).await, 4.0, "in order");
    publish(&mut env, drives(&devices, 200..260)).await;
    assert_eq!(read_back(&running).await, 4.0, "in order, a new trip");
    let late = fix_payload("mem-0", 1_790_000_305_000i64, 54.027, 25.0, Some(36.0));
    publish(&mut env, vec![late]).await;
    assert_eq!(
        read_back(&running).await,
        5.0,
        "a late fix into the first trip"
    );
    publish(&mut env, drives(&devices, 260..300)).await;
    assert_eq!(
        read_back(&running).await,
        5.0,
        "in order after the late fix"
    );
    // fixes filling gaps of the current trip (off its line, so its distance grows), one with a
    // newer fix in the same commit: only their neighbours are read
    let gap = |d: usize, seconds: &[i64]| -> Vec<String> {
        let off_line = |seconds: i64| 54.0 + d as f64 + seconds as f64 * 0.00009 + 0.001;
        seconds
            .iter()
            .map(|&s| {
                let ts = 1_790_000_000_000 + s * 1_000;
                fix_payload(&devices[d], ts, off_line(s), 25.0, Some(36.0))
            })
            .collect()
    };
    // the newest fix is at 2,990 s
    let mut gaps = gap(2, &[2_655]);
    gaps.extend(gap(3, &[2_945, 2_995]));
    publish(&mut env, gaps).await;
    assert_eq!(read_back(&running).await, 5.0, "gaps in the current trip");

    let backlog = ["back-0".to_owned()];
    for batch in [60..90, 30..60, 0..30] {
        let mut payloads = drives(&backlog, batch);
        payloads.reverse();
        publish(&mut env, payloads).await;
    }
    // at least once per batch (a batch that lands in several commits is read at each)
    let after_backlog = read_back(&running).await;
    assert!(
        after_backlog >= 8.0,
        "a newest-first backlog: {after_backlog}"
    );
    publish(&mut env, drives(&backlog, 90..120)).await;
    assert_eq!(
        read_back(&running).await,
        after_backlog,
        "in order after the backlog"
    );

    rebuild(&env, &["--device", "mem-1"]);
    let mut after = drives(&devices, 300..340);
    after.extend(drives(&backlog, 120..130));
    publish(&mut env, after).await;
    assert_eq!(
        read_back(&running).await,
        after_backlog + 1.0,
        "after the rebuild"
    );
    running.stop().await;
    let found = differences(&mut env, &TripRules::default()).await;
    assert!(found.is_empty(), "{}", found.join("\n"));
    let trips = stored_trips(&env.db).await;
    assert_eq!(trips.len(), devices.len() + 1, "{trips:?}");
    assert!(
        devices.iter().all(|device| trips[device].len() == 2),
        "{trips:?}"
    );
}

/// Runs `processor trips rebuild` with `args`; returns its JSON summary.
fn rebuild(env: &TestEnv, args: &[&str]) -> serde_json::Value {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_processor"))
        .env_clear()
        .args(["trips", "rebuild", "--database-url", &env.database_url])
        .args(args)
        .output()
        .expect("run trips rebuild");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "trips rebuild {args:?}: {stderr}");
    assert!(stderr.contains("devices"), "progress on stderr: {stderr}");
    serde_json::from_slice(&output.stdout).expect("a JSON summary")
}

/// History written with trips off gets its trips from `rebuild`; a changed rule applied by
/// `rebuild` gives the new rule's trips; a rebuild while the service writes (trips on) leaves
/// the table exact.
async fn rebuild_covers_history_rule_changes_and_a_running_service() {
    let mut env = TestEnv::new("trip_rebuild").await;
    let history = fleet(&mut rand::rngs::StdRng::seed_from_u64(3), 12, 200);
    let total = distinct(&history);
    env.publish(&history).await;
    let running = env.start(env.config(&[]));
    env.wait_landed(total, Duration::from_secs(60)).await;
    running.stop().await;
    assert!(stored_trips(&env.db).await.is_empty(), "trips were off");
    let summary = rebuild(&env, &[]);
    assert_eq!(summary["devices"], 12, "{summary}");
    assert_eq!(summary["fixes"], total, "{summary}");
    let found = differences(&mut env, &TripRules::default()).await;
    assert!(found.is_empty(), "{}", found.join("\n"));
    assert!(!stored_trips(&env.db).await.is_empty());

    // a rule changed: rebuild applies it to the past
    let shorter = TripRules {
        stop_micros: 60_000_000,
        ..TripRules::default()
    };
    rebuild(&env, &["--trip-stop-secs", "60"]);
    let found = differences(&mut env, &shorter).await;
    assert!(found.is_empty(), "{}", found.join("\n"));
    rebuild(&env, &[]);

    // one device, from a time on, with the same rules: nothing changes
    let before = stored_trips(&env.db).await;
    let summary = rebuild(
        &env,
        &["--device", "fleet-001", "--since", "2026-09-21T14:30:00Z"],
    );
    assert_eq!(summary["devices"], 1, "{summary}");
    assert_eq!(stored_trips(&env.db).await, before);

    // beside a running service with trips on, fed new and late fixes meanwhile
    let more = fleet(&mut rand::rngs::StdRng::seed_from_u64(4), 12, 260);
    let all = distinct(&[history, more.clone()].concat());
    let running = env.start(env.config(&["--trips", "on", "--read-count", "40"]));
    let publisher = {
        let (url, stream) = (env.servers.redis_url.clone(), env.stream.clone());
        tokio::spawn(async move {
            let client = redis::Client::open(url.as_str()).expect("redis");
            let mut redis = client
                .get_multiplexed_async_connection()
                .await
                .expect("redis");
            for chunk in more.chunks(200) {
                let mut pipe = redis::pipe();
                for payload in chunk {
                    pipe.cmd("XADD")
                        .arg(&stream)
                        .arg("*")
                        .arg("payload")
                        .arg(payload);
                }
                let _: Vec<String> = pipe.query_async(&mut redis).await.expect("XADD");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    for _ in 0..3 {
        let env_ref = &env;
        tokio::task::block_in_place(|| rebuild(env_ref, &[]));
    }
    publisher.await.expect("publisher");
    env.wait_landed(all, Duration::from_secs(90)).await;
    running.stop().await;
    let found = differences(&mut env, &TripRules::default()).await;
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// Two independent replicas in one consumer group (which do not partition by device: both commit
/// rows of the same devices, at the same moments; small group commits, so they take turns on a
/// device often), then a timely cluster of two processes with two workers each: trips equal the
/// rules. Beside the fleet's mixed orders, devices driving in order: each replica would continue
/// them from memory, which the other's writes make stale.
async fn replicas_and_a_cluster_keep_trips_exact(backend: Backend) {
    let mut env = TestEnv::on(backend, "trip_replicas").await;
    let rules = TripRules::default();
    let driving: Vec<String> = (0..10).map(|d| format!("drive-{d}")).collect();
    let first_half = [
        fleet(&mut rand::rngs::StdRng::seed_from_u64(11), 20, 300),
        drives(&driving, 0..150),
    ]
    .concat();
    let second_half = fleet(&mut rand::rngs::StdRng::seed_from_u64(12), 20, 300);
    // replicas: small reads, so each replica's epochs hold a few fixes of many devices
    let replica = |name: &str| {
        let mut config = env.config(&[
            "--trips",
            "on",
            "--read-count",
            "20",
            "--workers",
            "2",
            "--max-inflight-epochs",
            "2",
        ]);
        config.redis.consumer_name = Some(format!("{}-{name}", env.name));
        config
    };
    let a = env.start(replica("a"));
    let b = env.start(replica("b"));
    env.publish(&first_half).await;
    let landed = distinct(&first_half);
    env.wait_landed(landed, Duration::from_secs(90)).await;
    let (_, _) = tokio::join!(a.stop(), b.stop());
    let found = differences(&mut env, &rules).await;
    assert!(found.is_empty(), "replicas: {}", found.join("\n"));

    // a cluster of two processes, on the same tables
    let hosts = format!(
        "127.0.0.1:{},127.0.0.1:{}",
        crate::support::free_port(),
        crate::support::free_port()
    );
    let extra = ["--trips", "on", "--read-count", "50"];
    let first = env.start(env.cluster_process(&hosts, 0, &extra));
    let second = env.start(env.cluster_process(&hosts, 1, &extra));
    env.publish(&second_half).await;
    let all = distinct(&[first_half, second_half].concat());
    env.wait_landed(all, Duration::from_secs(120)).await;
    first.shutdown.trigger();
    second.shutdown.trigger();
    let (_, _) = tokio::join!(first.stop(), second.stop());
    let found = differences(&mut env, &rules).await;
    assert!(found.is_empty(), "cluster: {}", found.join("\n"));
}

/// TimescaleDB: a fleet's history compressed, then fixes that arrive weeks late land in the
/// compressed chunks and rewrite the trips they touch; retention then drops the chunks, and the
/// trips stay as they were.
async fn fixes_weeks_late_into_compressed_chunks_and_retention() {
    let mut env = TestEnv::on(Backend::Timescale, "trip_compressed").await;
    let rules = TripRules::default();
    // the fleet drives about 70 days ago (fleet() starts at 2026-09-21); every 6th fix held back
    let all = fleet(&mut rand::rngs::StdRng::seed_from_u64(21), 15, 300);
    let (late, on_time): (Vec<_>, Vec<_>) = all
        .iter()
        .cloned()
        .enumerate()
        .partition(|(i, _)| i % 6 == 0);
    let late: Vec<String> = late.into_iter().map(|(_, p)| p).collect();
    let on_time: Vec<String> = on_time.into_iter().map(|(_, p)| p).collect();
    env.publish(&on_time).await;
    let running = env.start(env.config(&["--trips", "on"]));
    env.wait_landed(distinct(&on_time), Duration::from_secs(60))
        .await;
    crate::timescale::compress_all(&env, 1).await;
    let before_late = stored_trips(&env.db).await;
    env.publish(&late).await;
    env.wait_landed(distinct(&all), Duration::from_secs(60))
        .await;
    let metrics = crate::support::samples(&running.get("/metrics").await.1);
    running.stop().await;
    let found = differences(&mut env, &rules).await;
    assert!(found.is_empty(), "{}", found.join("\n"));
    let after_late = stored_trips(&env.db).await;
    assert_ne!(before_late, after_late, "the late fixes changed trips");
    assert!(metrics["processor_trips_late_changes_total"] > 0.0);

    // retention drops every chunk of positions: the trips stay
    env.db
        .batch_execute("SELECT public.drop_chunks('positions', older_than => interval '30 days')")
        .await
        .expect("drop_chunks");
    assert_eq!(env.rows().await, 0, "the chunks are gone");
    assert_eq!(stored_trips(&env.db).await, after_late);
}
