//! The real binary: configuration errors, SIGKILL and restart, SIGTERM under load.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::harness::Test;
use crate::support::{payloads, signal, wait_exit, Backend, TestEnv};

/// This module's tests, as the suite runs them (see `main.rs`).
pub fn tests() -> Vec<Test> {
    [
        trial!(a_bad_variable_exits_2_naming_it_on_one_line),
        trial!(connection_flags_work_after_the_subcommand, tokio = 2),
        trial!(help_lists_every_variable),
        trial!(sigterm_under_load_drains_and_exits_zero, tokio = 2),
        trial!(
            sigkill_mid_stream_then_restart_loses_and_duplicates_nothing,
            tokio = 2,
            on_both
        ),
    ]
    .into_iter()
    .flatten()
    .collect()
}

fn a_bad_variable_exits_2_naming_it_on_one_line() {
    for (variable, value) in [
        ("WORKERS", "lots"),
        ("EPOCH_MS", "0"),
        ("REDIS_URL", "http://nope"),
        ("LOG_FORMAT", "xml"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_processor"))
            .env(variable, value)
            .stdin(Stdio::null())
            .output()
            .expect("run the binary");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{variable}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{variable}: {stderr}");
        assert!(stderr.contains(variable), "{variable}: {stderr}");
    }
}

/// Connection flags work after the subcommand (and after a dead-letters subcommand's own
/// subcommand), and a service variable the subcommand does not use cannot stop it.
async fn connection_flags_work_after_the_subcommand() {
    let mut env = TestEnv::new("global_flags").await;
    let output = Command::new(env!("CARGO_BIN_EXE_processor"))
        .env_clear()
        .env("WORKERS", "lots")
        .args(["simulate", "--count", "7", "--redis-url"])
        .arg(&env.servers.redis_url)
        .arg("--stream-key")
        .arg(&env.stream)
        .output()
        .expect("run simulate");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let length: u64 = redis::cmd("XLEN")
        .arg(&env.stream)
        .query_async(&mut env.redis)
        .await
        .expect("XLEN");
    assert_eq!(length, 7);
    let dead_letters = format!("{}:graveyard", env.stream);
    let output = Command::new(env!("CARGO_BIN_EXE_processor"))
        .env_clear()
        .env("WORKERS", "lots")
        .args(["dead-letters", "show", "--redis-url"])
        .arg(&env.servers.redis_url)
        .arg("--dead-letter-stream")
        .arg(&dead_letters)
        .output()
        .expect("run dead-letters show");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains(&dead_letters), "{stderr}");
    // beside a subcommand, the service's flags are refused rather than silently unused
    let output = Command::new(env!("CARGO_BIN_EXE_processor"))
        .args(["--workers", "2", "simulate", "--count", "1"])
        .output()
        .expect("run simulate after a service flag");
    assert_eq!(output.status.code(), Some(2));
}

fn help_lists_every_variable() {
    let output = Command::new(env!("CARGO_BIN_EXE_processor"))
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for variable in [
        "REDIS_URL",
        "DATABASE_URL",
        "STREAM_KEY",
        "CONSUMER_GROUP",
        "CONSUMER_NAME",
        "GROUP_START_ID",
        "WORKERS",
        "READ_COUNT",
        "READ_BLOCK_MS",
        "EPOCH_MS",
        "WRITE_BATCH_SIZE",
        "STATE_CAPACITY",
        "MAX_INFLIGHT_EPOCHS",
        "DEAD_LETTER_STREAM",
        "SHUTDOWN_TIMEOUT_SECS",
        "LOG_FORMAT",
        "RUST_LOG",
    ] {
        assert!(
            help.contains(variable),
            "--help does not mention {variable}"
        );
    }
    // a subcommand's help lists what it uses, and nothing of the service's
    for (args, uses, not) in [
        (
            &["simulate", "--help"][..],
            &["REDIS_URL", "REDIS_CA_FILE", "STREAM_KEY"][..],
            &["DATABASE_URL", "HTTP_ADDR", "DEAD_LETTER_STREAM", "WORKERS"][..],
        ),
        (
            &["dead-letters", "show", "--help"],
            &["REDIS_URL", "STREAM_KEY", "DEAD_LETTER_STREAM"],
            &["DATABASE_URL", "HTTP_ADDR", "CONSUMER_GROUP", "WORKERS"],
        ),
        (
            &["migrate", "--help"],
            &["DATABASE_URL", "TIMESCALEDB_COMPRESS_AFTER", "LOG_FORMAT"],
            &["REDIS_URL", "MIGRATE", "WORKERS", "WRITE_BATCH_SIZE"],
        ),
        (
            &["healthcheck", "--help"],
            &["HTTP_ADDR"],
            &["DATABASE_URL", "REDIS_URL", "WORKERS"],
        ),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_processor"))
            .args(args)
            .output()
            .expect("run a subcommand's --help");
        assert!(output.status.success(), "{args:?}");
        let help = String::from_utf8_lossy(&output.stdout);
        for variable in uses {
            assert!(help.contains(variable), "{args:?} lacks {variable}: {help}");
        }
        for variable in not {
            let flag = format!("[env: {variable}=");
            assert!(!help.contains(&flag), "{args:?} shows {variable}: {help}");
        }
    }
}

/// SIGKILL mid-stream, restart with the same consumer name: every published position is one
/// row, none twice, nothing pending. Also: the database password never reaches the log.
async fn sigkill_mid_stream_then_restart_loses_and_duplicates_nothing(backend: Backend) {
    let mut env = TestEnv::on(backend, "sigkill").await;
    let total = 30_000;
    let published = payloads("kill", 300, total);
    let (first, second) = published.split_at(total / 2);
    env.publish(first).await;
    // trust auth ignores the password, but the service must never print it
    let secret = "hunter2-secret";
    let url = env
        .database_url
        .replacen("postgres@", &format!("postgres:{secret}@"), 1);
    assert!(url.contains(secret), "the test URL carries a password");
    // small reads (100 entries per read and worker) keep the first half from landing whole
    // between the first commit and the kill, however fast the build or idle the machine
    let vars = [
        ("WORKERS", "2"),
        ("READ_COUNT", "100"),
        ("DATABASE_URL", url.as_str()),
    ];
    let child = env.spawn_binary("killme", &vars);
    // kill as soon as the first rows have landed, mid-way through the first half
    env.wait_for(
        Duration::from_secs(60),
        "the first rows",
        async |env: &mut TestEnv| env.rows().await > 0,
    )
    .await;
    signal(&child, "KILL");
    let (status, first_log) = wait_exit(child, Duration::from_secs(10));
    assert!(!status.success());
    let rows_at_kill = env.rows().await;
    assert!(
        rows_at_kill < first.len() as i64,
        "the kill came too late to test anything: {rows_at_kill} rows"
    );
    // the second half arrives while the service is down
    env.publish(second).await;

    let restarted = env.spawn_binary("killme", &vars);
    env.wait_landed(total as i64, Duration::from_secs(120))
        .await;
    let distinct = env.distinct_rows().await;
    assert_eq!(distinct, total as i64);
    signal(&restarted, "TERM");
    let (status, log) = wait_exit(restarted, Duration::from_secs(30));
    assert!(status.success(), "exit after SIGTERM: {status:?}\n{log}");
    assert!(
        log.contains("\"level\":\"INFO\""),
        "JSON log lines expected:\n{log}"
    );
    // numbers are JSON numbers, not strings
    assert!(
        log.contains("\"epoch_ms\":20,") && log.contains("\"workers\":2,"),
        "the start-up line's numbers:\n{log}"
    );
    for text in [&first_log, &log] {
        assert!(!text.contains(secret), "the password was logged:\n{text}");
    }
    assert!(
        log.contains("postgres:***@"),
        "the redacted URL is logged:\n{log}"
    );
    env.assert_table_kind().await;
}

/// SIGTERM while entries are arriving: exit 0, and everything the group delivered is committed
/// and acknowledged (nothing pending, a row for every delivered entry).
async fn sigterm_under_load_drains_and_exits_zero() {
    let mut env = TestEnv::new("sigterm").await;
    let child = env.spawn_binary("drainer", &[("WORKERS", "2"), ("READ_COUNT", "200")]);
    let batches = payloads("term", 200, 20_000);
    let mut chunks = batches.chunks(1000);
    for chunk in chunks.by_ref().take(5) {
        env.publish(chunk).await;
    }
    env.wait_for(
        Duration::from_secs(60),
        "the first rows",
        async |env: &mut TestEnv| env.rows().await > 0,
    )
    .await;
    // keep publishing while the signal arrives
    signal(&child, "TERM");
    for chunk in chunks {
        env.publish(chunk).await;
    }
    let (status, log) =
        tokio::task::spawn_blocking(move || wait_exit(child, Duration::from_secs(40)))
            .await
            .expect("join");
    assert!(status.success(), "exit status {status:?}\n{log}");
    assert_eq!(env.pending().await, 0, "entries read but not acknowledged");

    // every entry up to the group's last delivered id has its row
    let groups: redis::streams::StreamInfoGroupsReply =
        redis::AsyncCommands::xinfo_groups(&mut env.redis, &env.stream)
            .await
            .expect("XINFO GROUPS");
    let last = groups.groups[0].last_delivered_id.clone();
    let delivered: Vec<redis::Value> = redis::cmd("XRANGE")
        .arg(&env.stream)
        .arg("-")
        .arg(&last)
        .query_async(&mut env.redis)
        .await
        .expect("XRANGE");
    assert!(!delivered.is_empty());
    assert_eq!(env.rows().await, delivered.len() as i64);
    assert!(log.contains("drain"), "the drain is logged:\n{log}");
}
