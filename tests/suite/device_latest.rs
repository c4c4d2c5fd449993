//! `device_latest` and the late-data metrics, through the service and the binary: the table
//! equals `DISTINCT ON (device_id) ... ORDER BY device_id, ts DESC` over `positions` whatever the
//! order, the duplicates, the replicas and the restarts; late and future records are counted.

use std::collections::HashMap;
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::support::harness::Test;
use crate::support::{samples, signal, wait_exit, Backend, TestEnv};

/// This module's tests, as the suite runs them (see `main.rs`).
pub fn tests() -> Vec<Test> {
    [
        trial!(
            two_replicas_and_a_restart_keep_device_latest_exact,
            tokio = 2
        ),
        trial!(device_latest_off_writes_nothing_there, tokio = 2),
        trial!(
            device_latest_is_the_newest_position_whatever_the_order,
            tokio = 2,
            on_both
        ),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// A payload whose fix columns all follow from `(device, ts_ms)`, so a wrong row shows.
fn fix(device: &str, ts_ms: i64) -> String {
    let n = ts_ms % 100_000;
    format!(
        r#"{{"device_id":"{device}","timestamp":{ts_ms},"latitude":{},"longitude":{},"altitude":{},"angle":{},"speed":{},"satellites":{},"priority":{},"event_id":{},"attributes":{{"1":{n}}}}}"#,
        (n % 180) as f64 / 2.0 - 45.0,
        (n % 360) as f64 / 2.0 - 90.0,
        n % 4000,
        n % 360,
        n % 200,
        n % 20,
        n % 3,
        n % 1000
    )
}

/// Rows in which `device_latest` and the newest position of each device differ (both ways).
async fn differences(env: &TestEnv) -> i64 {
    let columns = "device_id, ts, latitude, longitude, altitude, angle, speed, satellites, priority, event_id";
    let query = format!(
        "WITH newest AS (
             SELECT DISTINCT ON (device_id) {columns} FROM positions ORDER BY device_id, ts DESC
         ), latest AS (SELECT {columns} FROM device_latest)
         SELECT (SELECT count(*) FROM (SELECT * FROM newest EXCEPT SELECT * FROM latest) a)
              + (SELECT count(*) FROM (SELECT * FROM latest EXCEPT SELECT * FROM newest) b)"
    );
    env.db
        .query_one(&query, &[])
        .await
        .expect("compare device_latest")
        .get(0)
}

async fn latest_rows(env: &TestEnv) -> i64 {
    env.db
        .query_one("SELECT count(*) FROM device_latest", &[])
        .await
        .expect("device_latest")
        .get(0)
}

/// Shuffled records with duplicates and late data, plus records days old and hours in the future,
/// through one worker (so the fold sees them in stream order and the late count is exact).
async fn device_latest_is_the_newest_position_whatever_the_order(backend: Backend) {
    let mut env = TestEnv::on(backend, "latest_order").await;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let devices = 40;
    let mut records: Vec<(String, i64)> = Vec::new();
    for d in 0..devices {
        let device = format!("lt-{d:03}");
        // a minute of fixes a second apart, ending 10 s ago
        for i in 0..60 {
            records.push((device.clone(), now_ms - 70_000 + i * 1000));
        }
    }
    records.shuffle(&mut rng);
    // duplicates: resends of records already in the stream
    for _ in 0..200 {
        let again = records[rng.random_range(0..records.len())].clone();
        records.push(again);
    }
    // buffered offline for two days, sent now
    let old: Vec<(String, i64)> = (0..30)
        .map(|i| {
            (
                format!("lt-{:03}", i % devices),
                now_ms - 2 * 86_400_000 - i * 1000,
            )
        })
        .collect();
    records.extend(old.iter().cloned());
    // a clock an hour ahead: stored, counted, and such a device's latest fix is that one
    let future: Vec<(String, i64)> = (0..5)
        .map(|i| (format!("lt-{i:03}"), now_ms + 3_600_000 + i))
        .collect();
    records.extend(future.iter().cloned());

    // What the state can tell: a record older than its device's newest so far, in stream order.
    let mut newest: HashMap<&str, i64> = HashMap::new();
    let mut late = 0;
    for (device, ts) in &records {
        let seen = newest.entry(device).or_insert(i64::MIN);
        if *ts < *seen {
            late += 1;
        }
        *seen = (*seen).max(*ts);
    }
    let distinct: std::collections::HashSet<&(String, i64)> = records.iter().collect();

    env.publish(
        &records
            .iter()
            .map(|(device, ts)| fix(device, *ts))
            .collect::<Vec<_>>(),
    )
    .await;
    let running = env.start(env.config(&["--device-latest", "on"]));
    env.wait_landed(distinct.len() as i64, Duration::from_secs(60))
        .await;
    env.assert_table_kind().await;
    assert_eq!(latest_rows(&env).await, devices);
    assert_eq!(
        differences(&env).await,
        0,
        "device_latest differs from DISTINCT ON"
    );

    let (_, text) = running.get("/metrics").await;
    let s = samples(&text);
    assert_eq!(s["processor_out_of_order_total"], late as f64);
    assert_eq!(s["processor_future_timestamps_total"], future.len() as f64);
    assert_eq!(
        s["processor_record_age_seconds_count"],
        records.len() as f64,
        "one age per record written (or found written)"
    );
    let older_than_a_day = s["processor_record_age_seconds_count"]
        - s["processor_record_age_seconds_bucket{le=\"86400\"}"];
    assert_eq!(older_than_a_day, old.len() as f64);
    assert!(s["processor_device_latest_rows_total"] >= devices as f64);
    // one insert per device, the rest moved forward
    let latest = |change: &str| {
        s.get(&format!(
            "processor_table_rows_total{{change=\"{change}\",table=\"device_latest\"}}"
        ))
        .copied()
        .unwrap_or(0.0)
    };
    assert_eq!(latest("inserted"), devices as f64);
    assert_eq!(
        latest("inserted") + latest("updated"),
        s["processor_device_latest_rows_total"]
    );
    running.stop().await;
}

/// Two replicas of the binary share the group and so the devices; one is SIGKILLed halfway and
/// started again (its pending entries are redelivered, its state starts empty). The newer fix
/// must win every race, by the upsert's condition.
async fn two_replicas_and_a_restart_keep_device_latest_exact() {
    let mut env = TestEnv::new("latest_replicas").await;
    let devices = 50;
    let per_device = 200;
    let base = 1_790_000_000_000i64;
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut records: Vec<String> = Vec::new();
    for i in 0..per_device {
        let mut round: Vec<String> = (0..devices)
            .map(|d| {
                fix(
                    &format!("rp-{d:02}"),
                    base + i * 1000 + rng.random_range(0..900),
                )
            })
            .collect();
        round.shuffle(&mut rng);
        records.extend(round);
    }
    // late copies of early records, mixed into the second half
    let late: Vec<String> = records[..500].to_vec();
    let vars = [
        ("WORKERS", "2"),
        ("READ_COUNT", "50"),
        ("DEVICE_LATEST", "on"),
    ];
    let first = env.spawn_binary("rep-a", &vars);
    let second = env.spawn_binary("rep-b", &vars);
    let half = records.len() / 2;
    env.publish(&records[..half]).await;
    env.wait_for(
        Duration::from_secs(60),
        "some rows",
        async |env: &mut TestEnv| env.rows().await > 1000,
    )
    .await;
    signal(&first, "KILL");
    let _ = wait_exit(first, Duration::from_secs(10));
    env.publish(&records[half..]).await;
    env.publish(&late).await;
    let first = env.spawn_binary("rep-a", &vars);
    env.wait_landed(records.len() as i64, Duration::from_secs(120))
        .await;
    assert_eq!(latest_rows(&env).await, devices as i64);
    assert_eq!(
        differences(&env).await,
        0,
        "device_latest differs from DISTINCT ON"
    );
    for child in [first, second] {
        signal(&child, "TERM");
        let (status, logs) = wait_exit(child, Duration::from_secs(30));
        assert!(status.success(), "{logs}");
    }
}

/// With `DEVICE_LATEST=off` (the default) the table stays empty and the positions land as ever.
async fn device_latest_off_writes_nothing_there() {
    let mut env = TestEnv::new("latest_off").await;
    let published: Vec<String> = (0..300)
        .map(|i| fix(&format!("off-{}", i % 10), 1_790_000_000_000 + i))
        .collect();
    env.publish(&published).await;
    let running = env.start(env.config(&["--device-latest", "off"]));
    env.wait_landed(300, Duration::from_secs(60)).await;
    assert_eq!(latest_rows(&env).await, 0);
    running.stop().await;
}
