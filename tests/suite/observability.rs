//! `/metrics`, `/healthz`, `/readyz` and `processor healthcheck`, against real servers.

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use crate::support;
use crate::support::harness::Test;
use crate::support::proxy::Proxy;
use crate::support::{payload, payloads, samples, TestEnv};

/// This module's tests, as the suite runs them (see `main.rs`).
pub fn tests() -> Vec<Test> {
    [
        trial!(
            metrics_count_what_was_published_and_pass_promtool,
            tokio = 2
        ),
        trial!(readyz_follows_the_database_and_the_drain, tokio = 2),
        trial!(healthz_fails_when_a_worker_dies, tokio = 2),
        trial!(the_healthcheck_subcommand_reports_readiness, tokio = 2),
        trial!(lag_and_pending_are_there_from_the_first_commit, tokio = 2),
    ]
    .into_iter()
    .flatten()
    .collect()
}

fn sum_of(samples: &HashMap<String, f64>, name: &str) -> f64 {
    samples
        .iter()
        .filter(|(series, _)| *series == name || series.starts_with(&format!("{name}{{")))
        .map(|(_, value)| value)
        .sum()
}

async fn wait_status(
    running: &support::Running,
    path: &str,
    code: u16,
    timeout: Duration,
) -> String {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let (got, body) = running.get(path).await;
        if got == code {
            return body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{path} stayed {got}, wanted {code}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn metrics_count_what_was_published_and_pass_promtool() {
    let mut env = TestEnv::new("metrics").await;
    let mut published = payloads("m", 20, 200);
    published.extend(published[..5].to_vec()); // 5 duplicates
    published.extend((0..7).map(|i| format!("{{\"device_id\":\"bad{i}\"}}"))); // 7 refused
    env.publish(&published).await;
    let running = env.start(env.config(&["--workers", "2", "--monitor-interval-ms", "200"]));
    env.wait_landed(200, Duration::from_secs(60)).await;
    env.wait_for(
        Duration::from_secs(30),
        "every entry acknowledged",
        async |_: &mut TestEnv| running.metrics.entries_acked.get() == 212,
    )
    .await;
    // let the monitor refresh pending/lag once more
    tokio::time::sleep(Duration::from_millis(500)).await;

    let (code, text) = running.get("/metrics").await;
    assert_eq!(code, 200);
    // nothing but the three endpoints is served
    for path in ["/", "/debug/pprof", "/metrics/../admin", "/readyz/x"] {
        assert_eq!(running.get(path).await.0, 404, "{path}");
    }
    let s = samples(&text);
    assert_eq!(s["processor_entries_read_total"], 212.0);
    assert_eq!(s["processor_entries_acked_total"], 212.0);
    assert_eq!(s["processor_positions_written_total"], 200.0);
    assert_eq!(s["processor_duplicates_total"], 5.0);
    // the same, counted per table
    let positions = |change: &str| {
        s[&format!("processor_table_rows_total{{change=\"{change}\",table=\"positions\"}}")]
    };
    assert_eq!(positions("inserted"), 200.0);
    assert_eq!(positions("duplicate"), 5.0);
    assert_eq!(s["processor_dead_lettered_total"], 7.0);
    assert_eq!(sum_of(&s, "processor_decode_errors_total"), 7.0);
    assert_eq!(s["processor_decode_errors_total{field=\"timestamp\"}"], 7.0);
    assert!(s["processor_commit_duration_seconds_count"] > 0.0);
    assert_eq!(
        s["processor_batch_rows_sum"], 205.0,
        "rows handed to the writer"
    );
    assert_eq!(s["processor_end_to_end_latency_seconds_count"], 212.0);
    assert_eq!(s["processor_devices_in_state"], 20.0);
    assert_eq!(s["processor_active_devices"], 20.0);
    assert_eq!(s["processor_epochs_in_flight"], 0.0);
    let group = format!("processor_pending_entries{{group=\"{}\"}}", env.group);
    assert_eq!(s[&group], 0.0, "pending gauge");
    let lag = format!("processor_consumer_lag{{group=\"{}\"}}", env.group);
    assert_eq!(s.get(&lag).copied(), Some(0.0), "lag gauge");
    assert!(s["process_resident_memory_bytes"] > 0.0);
    // the build's timely, as Cargo.lock resolved it
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock"))
        .expect("Cargo.lock");
    let timely = lock
        .split("[[package]]")
        .find(|package| package.contains("\nname = \"timely\"\n"))
        .and_then(|package| package.split("version = \"").nth(1))
        .and_then(|rest| rest.split('"').next())
        .expect("timely in Cargo.lock");
    assert!(
        text.contains(&format!("timely=\"{timely}\"")),
        "processor_build_info names timely {timely}"
    );

    // promtool's own linter finds nothing to complain about
    let file = std::env::temp_dir().join(format!("{}.prom", env.name));
    std::fs::write(&file, &text).expect("write metrics");
    let promtool = Command::new("promtool")
        .arg("check")
        .arg("metrics")
        .stdin(std::fs::File::open(&file).expect("open"))
        .output()
        .expect("promtool must be installed (Debian package `prometheus`; .ci/run installs it)");
    let _ = std::fs::remove_file(&file);
    assert!(
        promtool.status.success() && promtool.stdout.is_empty() && promtool.stderr.is_empty(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&promtool.stdout),
        String::from_utf8_lossy(&promtool.stderr)
    );
    running.stop().await;
}

async fn readyz_follows_the_database_and_the_drain() {
    let mut env = TestEnv::new("readyz").await;
    let upstream: std::net::SocketAddr = {
        let url = &env.servers.database_url;
        let host_port = url
            .split('@')
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .expect("host:port in the database URL");
        tokio::net::lookup_host(host_port)
            .await
            .expect("resolve")
            .next()
            .expect("an address")
    };
    let proxy = Proxy::start(upstream).await;
    let through_proxy = env
        .database_url
        .replacen(&upstream.to_string(), &proxy.address.to_string(), 1)
        .replacen("localhost", "127.0.0.1", 1);
    let mut config = env.config(&["--monitor-interval-ms", "200", "--stall-secs", "30"]);
    config.postgres.link.url = through_proxy;
    let running = env.start(config);

    wait_status(&running, "/readyz", 200, Duration::from_secs(30)).await;
    let (code, _) = running.get("/healthz").await;
    assert_eq!(code, 200);

    proxy.cut();
    let body = wait_status(&running, "/readyz", 503, Duration::from_secs(10)).await;
    let readiness: serde_json::Value = serde_json::from_str(&body).expect("JSON body");
    let postgres = readiness["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|check| check["name"] == "postgres")
        .expect("a postgres check")
        .clone();
    assert_eq!(postgres["ok"], false, "{body}");
    let redis_ok = readiness["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .any(|check| check["name"] == "redis" && check["ok"] == true);
    assert!(redis_ok, "only postgres fails: {body}");

    // positions published during the outage land once it is over
    env.publish(&payloads("outage", 5, 50)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.restore();
    wait_status(&running, "/readyz", 200, Duration::from_secs(30)).await;
    env.wait_landed(50, Duration::from_secs(30)).await;

    // from SIGTERM on, not ready while the drain runs: hold the drain with a lock
    let lock = env.lock_positions().await;
    env.publish(&[payload("late", 1_790_000_000_000)]).await;
    env.wait_for(
        Duration::from_secs(10),
        "the late entry read",
        async |_: &mut TestEnv| running.metrics.entries_read.get() == 51,
    )
    .await;
    running.shutdown.trigger();
    let body = wait_status(&running, "/readyz", 503, Duration::from_secs(5)).await;
    assert!(body.contains("draining"), "{body}");
    lock.release().await;
    running.stop().await;
    assert_eq!(env.rows().await, 51);
}

async fn healthz_fails_when_a_worker_dies() {
    let env = TestEnv::new("healthz").await;
    let running = env.start_with_faults(
        env.config(&["--workers", "2"]),
        processor::pipeline::Faults {
            panic_worker: Some(1),
            ..Default::default()
        },
    );
    let body = wait_status(&running, "/healthz", 503, Duration::from_secs(30)).await;
    assert!(body.contains("panic"), "{body}");
    running.shutdown.force();
    assert!(running.finish().await.is_err(), "a dead worker is an error");
}

async fn the_healthcheck_subcommand_reports_readiness() {
    let env = TestEnv::new("healthcheck").await;
    let port = support::free_port();
    let address = format!("127.0.0.1:{port}");
    let mut child = env.spawn_binary(
        "probe",
        &[
            ("HTTP_ADDR", address.as_str()),
            ("MONITOR_INTERVAL_MS", "200"),
        ],
    );
    let healthcheck = || {
        Command::new(env!("CARGO_BIN_EXE_processor"))
            .env("HTTP_ADDR", &address)
            .arg("healthcheck")
            .output()
            .expect("run healthcheck")
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !healthcheck().status.success() {
        assert!(std::time::Instant::now() < deadline, "never became ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let output = healthcheck();
    assert_eq!(output.status.code(), Some(1), "nothing listens any more");
    assert!(!output.stderr.is_empty());
}

/// Lag and pending are on `/metrics` as soon as the group is joined, not one monitor interval
/// later: a scrape right after the first commit finds them (the interval here is a minute).
async fn lag_and_pending_are_there_from_the_first_commit() {
    let mut env = TestEnv::new("first_scrape").await;
    let running = env.start(env.config(&["--monitor-interval-ms", "60000"]));
    env.publish(&[payload("first", 1_790_000_000_000)]).await;
    env.wait_landed(1, Duration::from_secs(30)).await;
    let (_, text) = running.get("/metrics").await;
    let s = samples(&text);
    for name in ["processor_pending_entries", "processor_consumer_lag"] {
        let series = format!("{name}{{group=\"{}\"}}", env.group);
        assert!(s.contains_key(&series), "{series} missing:\n{text}");
    }
    running.stop().await;
}
