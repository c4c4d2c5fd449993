//! `processor dead-letters` through the binary, against real Redis and PostgreSQL: entries that
//! failed for a reason since fixed are sent back and land once, a redrive killed half-way and run
//! again moves each entry once, a dry run moves nothing and a limit the oldest first, and a purge
//! leaves newer entries alone.

use std::process::{Command, Stdio};
use std::time::Duration;

use redis::AsyncCommands;

use crate::support;
use crate::support::harness::Test;
use crate::support::{payload, TestEnv};

/// This module's tests, as the suite runs them (see `main.rs`).
pub fn tests() -> Vec<Test> {
    [
        trial!(
            entries_failed_for_a_reason_since_fixed_are_sent_back_and_land_once,
            tokio = 2
        ),
        trial!(
            a_redrive_killed_half_way_and_run_again_moves_each_entry_once,
            tokio = 2
        ),
        trial!(a_purge_leaves_newer_entries_alone, tokio = 2),
        trial!(
            a_dry_run_moves_nothing_and_a_limit_moves_the_oldest,
            tokio = 2
        ),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Runs `processor dead-letters <args>` for this namespace; (exit code, stdout, stderr).
fn dead_letters(env: &TestEnv, args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_processor"))
        .arg("dead-letters")
        .args(args)
        .env_clear()
        .envs(env.env_vars("tool"))
        .stdin(Stdio::null())
        .output()
        .expect("run processor dead-letters");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn speeding(device: &str, ts_ms: i64) -> String {
    payload(device, ts_ms).replace("\"speed\":42", "\"speed\":900")
}

async fn entries_failed_for_a_reason_since_fixed_are_sent_back_and_land_once() {
    let mut env = TestEnv::new("redrive").await;
    processor::redis::ensure_group(&mut env.redis, &env.stream, &env.group, "0")
        .await
        .expect("group");
    // one entry a crashing consumer took three times
    env.publish(&[payload("crashy", 1_790_000_000_000)]).await;
    env.deliver("crashy", 3).await;
    let vars = [
        ("MAX_DELIVERIES", "3"),
        ("CLAIM_MIN_IDLE_MS", "100"),
        ("CLAIM_INTERVAL_MS", "200"),
    ];
    let service = env.spawn_binary("service", &vars);
    env.publish(&[payload("warm", 1_790_000_000_000)]).await;
    env.wait_landed_rows(1, Duration::from_secs(60)).await;
    // a constraint refuses five rows
    env.db
        .batch_execute(
            "ALTER TABLE positions ADD CONSTRAINT speed_lt_500 CHECK (speed < 500) NOT VALID",
        )
        .await
        .expect("constraint");
    let mut batch: Vec<String> = (0..5)
        .map(|i| speeding("fast", 1_790_000_000_000 + i * 1000))
        .collect();
    batch.extend((0..5).map(|i| payload("slow", 1_790_000_000_000 + i * 1000)));
    env.publish(&batch).await;
    env.wait_for(
        Duration::from_secs(60),
        "six dead letters and the five good rows",
        async |env: &mut TestEnv| env.dead_letters().await.len() == 6 && env.rows().await == 6,
    )
    .await;

    let (code, stats, _) = dead_letters(&env, &["stats"]);
    assert_eq!(code, Some(0));
    let stats: serde_json::Value = serde_json::from_str(&stats).expect("stats JSON");
    assert_eq!(stats["total"], 6, "{stats}");
    assert_eq!(stats["by_field"]["database"], 5, "{stats}");
    assert_eq!(stats["by_field"]["deliveries"], 1, "{stats}");
    assert!(stats["oldest_failed_at"].is_string(), "{stats}");
    let (code, shown, said) = dead_letters(&env, &["show", "--field", "database", "--count", "2"]);
    assert_eq!(code, Some(0));
    assert!(
        said.contains(&format!("2 shown from {}", env.dead_letter)),
        "show names the stream it read: {said}"
    );
    let lines: Vec<serde_json::Value> = shown
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0]["reason"]
        .as_str()
        .is_some_and(|r| r.contains("speed_lt_500")));

    // sent back before the cause is fixed, the refused rows fail again: dead-lettered again,
    // with their redrive count
    let (code, moved, report) = dead_letters(&env, &["redrive", "--field", "database"]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(moved.lines().count(), 5, "{moved}");
    env.wait_for(
        Duration::from_secs(60),
        "the five refused again",
        async |env: &mut TestEnv| {
            let letters = env.dead_letters().await;
            letters.len() == 6
                && letters
                    .iter()
                    .filter(|l| l.get("redrive_count").map(String::as_str) == Some("1"))
                    .count()
                    == 5
        },
    )
    .await;

    // the cause is fixed: the constraint goes, and everything is sent back
    env.db
        .batch_execute("ALTER TABLE positions DROP CONSTRAINT speed_lt_500")
        .await
        .expect("drop the constraint");
    let (code, moved, report) = dead_letters(&env, &["redrive"]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(moved.lines().count(), 6, "{moved}");
    assert!(report.contains("\"moved\":6"), "{report}");
    env.wait_landed(12, Duration::from_secs(60)).await;
    assert_eq!(env.distinct_rows().await, 12);
    assert!(env.dead_letters().await.is_empty());
    // the entries went back marked
    let entries: redis::streams::StreamRangeReply =
        env.redis.xrange_all(&env.stream).await.expect("XRANGE");
    let redriven: Vec<_> = entries
        .ids
        .iter()
        .filter(|entry| entry.map.contains_key("redriven_from"))
        .collect();
    assert_eq!(redriven.len(), 11);
    let mut counts: Vec<String> = redriven
        .iter()
        .map(|entry| entry.get("redrive_count").expect("redrive_count"))
        .collect();
    counts.sort();
    // the first round's five, the second round's five (their second trip) and the poison entry
    assert_eq!(
        counts,
        ["1", "1", "1", "1", "1", "1", "2", "2", "2", "2", "2"]
    );
    support::sigterm(&service);
    let (status, log) =
        tokio::task::spawn_blocking(move || support::wait_exit(service, Duration::from_secs(30)))
            .await
            .expect("join");
    assert!(status.success(), "{log}");
}

/// Dead letters written as the service writes them, `n` of them.
async fn fill_dead_letters(env: &mut TestEnv, n: usize) {
    let mut pipe = redis::pipe();
    for i in 0..n {
        pipe.cmd("XADD")
            .arg(&env.dead_letter)
            .arg("*")
            .arg("payload")
            .arg(payload("dead", 1_790_000_000_000 + i as i64 * 1000))
            .arg("error")
            .arg("postgres 23514 c: refused")
            .arg("source_id")
            .arg(format!("1-{i}"))
            .arg("consumer")
            .arg("c-0")
            .arg("failed_at")
            .arg("2026-12-01T00:00:00.000Z")
            .ignore();
    }
    let _: () = pipe.query_async(&mut env.redis).await.expect("XADD");
}

async fn a_redrive_killed_half_way_and_run_again_moves_each_entry_once() {
    let mut env = TestEnv::new("redrive_kill").await;
    fill_dead_letters(&mut env, 300).await;
    let mut slow = Command::new(env!("CARGO_BIN_EXE_processor"))
        .args(["dead-letters", "redrive", "--rate", "100"])
        .env_clear()
        .envs(env.env_vars("tool"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the redrive");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    support::signal(&slow, "KILL");
    let _ = slow.wait();
    let left: usize = env.redis.xlen(&env.dead_letter).await.expect("XLEN");
    assert!(
        (1..300).contains(&left),
        "killed half-way: {left} of 300 left"
    );
    let (code, _, report) = dead_letters(&env, &["redrive", "--rate", "0"]);
    assert_eq!(code, Some(0), "{report}");
    let left: usize = env.redis.xlen(&env.dead_letter).await.expect("XLEN");
    assert_eq!(left, 0);
    let entries: redis::streams::StreamRangeReply =
        env.redis.xrange_all(&env.stream).await.expect("XRANGE");
    let mut origins: Vec<String> = entries
        .ids
        .iter()
        .map(|entry| entry.get("redriven_from").expect("redriven_from"))
        .collect();
    assert_eq!(origins.len(), 300, "every entry moved");
    origins.sort();
    origins.dedup();
    assert_eq!(origins.len(), 300, "none moved twice");
}

async fn a_purge_leaves_newer_entries_alone() {
    let mut env = TestEnv::new("purge").await;
    let two_days_ago = processor::clock::unix_ms() - 2 * 86_400_000;
    for i in 0..5u64 {
        let _: String = redis::cmd("XADD")
            .arg(&env.dead_letter)
            .arg(format!("{}-{i}", two_days_ago))
            .arg("error")
            .arg("payload: old")
            .query_async(&mut env.redis)
            .await
            .expect("XADD old");
    }
    fill_dead_letters(&mut env, 5).await;
    let (code, dry, _) = dead_letters(&env, &["purge", "--older-than", "1d", "--dry-run"]);
    assert_eq!(code, Some(0));
    assert!(
        dry.contains("\"removed\":0")
            && dry.contains("\"would_remove\":5")
            && dry.contains("\"dry_run\":true"),
        "{dry}"
    );
    let left: usize = env.redis.xlen(&env.dead_letter).await.expect("XLEN");
    assert_eq!(left, 10, "a dry run removes nothing");
    let (code, done, _) = dead_letters(&env, &["purge", "--older-than", "1d"]);
    assert_eq!(code, Some(0));
    assert!(done.contains("\"removed\":5"), "{done}");
    let letters = env.dead_letters().await;
    assert_eq!(letters.len(), 5);
    assert!(letters
        .iter()
        .all(|letter| letter["error"].starts_with("postgres")));
}

/// A dry run says what would move and moves nothing; `--limit` moves that many, the oldest first;
/// the running service's `processor_dead_letter_entries` follows the dead-letter stream's length.
async fn a_dry_run_moves_nothing_and_a_limit_moves_the_oldest() {
    let mut env = TestEnv::new("redrive_limit").await;
    fill_dead_letters(&mut env, 10).await;
    let letters: redis::streams::StreamRangeReply = env
        .redis
        .xrange_all(&env.dead_letter)
        .await
        .expect("XRANGE");
    let letter_ids: Vec<String> = letters.ids.iter().map(|entry| entry.id.clone()).collect();

    let (code, lines, report) = dead_letters(&env, &["redrive", "--dry-run"]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(lines.lines().count(), 10, "{lines}");
    assert!(lines
        .lines()
        .all(|line| line.contains("\"stream_id\":null")));
    assert!(
        report.contains("\"moved\":0")
            && report.contains("\"would_move\":10")
            && report.contains("\"dry_run\":true"),
        "{report}"
    );
    let left: usize = env.redis.xlen(&env.dead_letter).await.expect("XLEN");
    let sent: usize = env.redis.xlen(&env.stream).await.expect("XLEN");
    assert_eq!((left, sent), (10, 0), "a dry run moves nothing");

    let (code, _, report) = dead_letters(&env, &["redrive", "--limit", "4", "--rate", "0"]);
    assert_eq!(code, Some(0), "{report}");
    assert!(report.contains("\"moved\":4"), "{report}");
    let left: usize = env.redis.xlen(&env.dead_letter).await.expect("XLEN");
    assert_eq!(left, 6);
    let entries: redis::streams::StreamRangeReply =
        env.redis.xrange_all(&env.stream).await.expect("XRANGE");
    let origins: Vec<String> = entries
        .ids
        .iter()
        .map(|entry| entry.get("redriven_from").expect("redriven_from"))
        .collect();
    assert_eq!(origins, letter_ids[..4], "the oldest four, in order");

    // the service reads the four back (they land) and reports the six still dead-lettered
    let running = env.start(env.config(&["--monitor-interval-ms", "200"]));
    env.wait_landed(4, Duration::from_secs(30)).await;
    env.wait_for(
        Duration::from_secs(10),
        "processor_dead_letter_entries = 6",
        async |_: &mut TestEnv| running.metrics.dead_letter_entries.get() == 6,
    )
    .await;
    running.stop().await;
}
