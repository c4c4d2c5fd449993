//! The wall clock steps under the running binary, through libfaketime (the real system clock is
//! untouched): commits and acknowledgements go on, the drain exits 0, the rows are exact.
//!
//! libfaketime is Debian's `faketime` package. Without it these tests show as ignored (their
//! names end with `::faketime`), unless `REQUIRE_FAKETIME=1` (CI sets it), which makes its
//! absence a failure.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use crate::support;
use crate::support::harness::{Need, Test};
use crate::support::{payloads, TestEnv};

/// This module's tests, as the suite runs them (see `main.rs`).
pub fn tests() -> Vec<Test> {
    [
        trial!(
            a_step_back_of_two_minutes_under_load_stops_nothing,
            tokio = 2,
            needs = FAKETIME
        ),
        trial!(
            a_step_forward_of_an_hour_under_load_stops_nothing,
            tokio = 2,
            needs = FAKETIME
        ),
        trial!(
            a_cluster_survives_one_hosts_clock_stepping_back,
            tokio = 2,
            needs = FAKETIME
        ),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// libfaketime, which every test here needs.
const FAKETIME: Need = Need {
    tag: "faketime",
    required_by: "REQUIRE_FAKETIME",
    present: || installed_faketime().is_some(),
};

/// The library, if it is where it is said to be.
fn installed_faketime() -> Option<PathBuf> {
    faketime_library().filter(|library| library.exists())
}

/// Where Debian and others put the multithreaded libfaketime; `FAKETIME_LIBRARY` overrides.
fn faketime_library() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("FAKETIME_LIBRARY") {
        return Some(PathBuf::from(path));
    }
    let candidates = [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/faketime/libfaketimeMT.so.1",
        "/usr/local/lib/faketime/libfaketimeMT.so.1",
    ];
    candidates.iter().map(PathBuf::from).find(|p| p.exists())
}

/// The library: the tests run without it only when asked to (`REQUIRE_FAKETIME=1`, `--ignored`),
/// and then fail here.
fn require_faketime(test: &str) -> PathBuf {
    installed_faketime().unwrap_or_else(|| {
        panic!(
            "{test}: libfaketime not found (Debian: apt-get install faketime, or set \
             FAKETIME_LIBRARY), and this test needs it"
        )
    })
}

/// A fake wall clock for one process: an offset from the real time, changed by rewriting a file
/// that libfaketime re-reads on every call.
struct FakeClock {
    file: PathBuf,
    library: PathBuf,
}

impl FakeClock {
    fn new(library: PathBuf, name: &str) -> FakeClock {
        let file = std::env::temp_dir().join(format!("{name}.faketime"));
        std::fs::write(&file, "+0").expect("write the faketime file");
        FakeClock { file, library }
    }

    /// `+3600`, `-120`: seconds from the real time.
    fn set(&self, offset: &str) {
        std::fs::write(&self.file, offset).expect("write the faketime file");
    }

    fn vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("LD_PRELOAD", path(&self.library)),
            ("FAKETIME_TIMESTAMP_FILE", path(&self.file)),
            ("FAKETIME_NO_CACHE", "1".to_owned()),
            ("DONT_FAKE_MONOTONIC", "1".to_owned()),
        ]
    }
}

impl Drop for FakeClock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
    }
}

fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn spawn(env: &TestEnv, consumer: &str, vars: &[(&'static str, String)]) -> Child {
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.spawn_binary(consumer, &vars)
}

/// Publishes `payloads` at about 2,000 entries/s; after `step_after` entries, `step()` runs.
async fn publish_under_load(
    env: &mut TestEnv,
    payloads: &[String],
    step_after: usize,
    step: impl FnOnce(),
) {
    let mut step = Some(step);
    for (i, chunk) in payloads.chunks(100).enumerate() {
        env.publish(chunk).await;
        if (i + 1) * 100 >= step_after {
            if let Some(step) = step.take() {
                step();
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Waits for the binary's exit after SIGTERM: (exit code, log).
async fn terminate(child: Child) -> (Option<i32>, String) {
    support::sigterm(&child);
    let (status, log) =
        tokio::task::spawn_blocking(move || support::wait_exit(child, Duration::from_secs(40)))
            .await
            .expect("join");
    (status.code(), log)
}

async fn one_process_survives_a_step(name: &str, offset: &str, direction: &str) {
    let library = require_faketime(name);
    let mut env = TestEnv::new(name).await;
    let clock = FakeClock::new(library, &env.name);
    let port = support::free_port();
    let mut vars = clock.vars();
    vars.push(("HTTP_ADDR", format!("127.0.0.1:{port}")));
    let child = spawn(&env, "stepper", &vars);
    let total = 16_000;
    let published = payloads("step", 200, total);
    publish_under_load(&mut env, &published, 5_000, || clock.set(offset)).await;
    // Before the fix a step back froze every epoch until the wall clock caught up (two minutes
    // here): nothing committed, nothing acknowledged. Now everything lands within seconds.
    env.wait_landed(total as i64, Duration::from_secs(60)).await;
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let (_, metrics) = support::http_get(address, "/metrics").await;
    let stepped = sample(
        &metrics,
        &format!("processor_clock_step_seconds_total{{direction=\"{direction}\"}}"),
    );
    let size: f64 = offset
        .trim_start_matches(['+', '-'])
        .parse()
        .expect("offset");
    assert!(
        (size - 1.0..=size + 1.0).contains(&stepped),
        "processor_clock_step_seconds_total{{direction={direction}}} = {stepped}, want about {size}"
    );
    let (code, _) = support::http_get(address, "/readyz").await;
    assert_eq!(code, 200, "ready after the step");
    let (code, log) = terminate(child).await;
    assert_eq!(code, Some(0), "the drain exits 0 after the step\n{log}");
    assert_eq!(
        log.matches("the wall clock stepped").count(),
        1,
        "one WARN line for the step:\n{log}"
    );
    assert_eq!(env.distinct_rows().await, total as i64);
    assert_eq!(env.rows().await, total as i64);
    assert_eq!(env.pending().await, 0);
}

async fn a_step_back_of_two_minutes_under_load_stops_nothing() {
    one_process_survives_a_step("clock_back", "-120", "back").await;
}

async fn a_step_forward_of_an_hour_under_load_stops_nothing() {
    one_process_survives_a_step("clock_fwd", "+3600", "forward").await;
}

/// A two-process cluster where only process 1's wall clock steps back two minutes: it keeps pace
/// with process 0 (which shares its epoch every tick), so neither waits on the other.
async fn a_cluster_survives_one_hosts_clock_stepping_back() {
    let library = require_faketime("clock_cluster");
    let mut env = TestEnv::new("clock_cluster").await;
    let clock = FakeClock::new(library, &env.name);
    let hosts = format!(
        "127.0.0.1:{},127.0.0.1:{}",
        support::free_port(),
        support::free_port()
    );
    let cluster = |index: &str| {
        vec![
            ("PROCESSES", "2".to_owned()),
            ("PROCESS_INDEX", index.to_owned()),
            ("TIMELY_HOSTS", hosts.clone()),
            ("WORKERS", "1".to_owned()),
        ]
    };
    let steady = spawn(&env, "steady", &cluster("0"));
    let mut vars = cluster("1");
    vars.extend(clock.vars());
    let stepping = spawn(&env, "stepping", &vars);
    let total = 12_000;
    let published = payloads("cluster", 300, total);
    publish_under_load(&mut env, &published, 4_000, || clock.set("-120")).await;
    env.wait_landed(total as i64, Duration::from_secs(60)).await;
    // a cluster stops as a whole
    let (first, second) = tokio::join!(terminate(steady), terminate(stepping));
    assert_eq!(first.0, Some(0), "process 0 drains\n{}", first.1);
    assert_eq!(second.0, Some(0), "process 1 drains\n{}", second.1);
    assert!(
        second.1.contains("the wall clock stepped"),
        "process 1 saw its step:\n{}",
        second.1
    );
    assert_eq!(env.distinct_rows().await, total as i64);
    assert_eq!(env.pending().await, 0);
}
