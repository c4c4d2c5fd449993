//! Stream hygiene against real Redis and PostgreSQL: the resume point kept in PostgreSQL and a
//! vanished group recreated there, trimming to what every group acknowledged (and nothing
//! else), and backlog signals that cannot say "fine" while nothing moves.

use std::time::Duration;

use processor::pipeline::Faults;

use crate::support::harness::Test;
use crate::support::{payload, payloads, samples, TestEnv};

/// This module's tests, as the suite runs them (see `main.rs`).
pub fn tests() -> Vec<Test> {
    [
        trial!(
            a_group_destroyed_under_load_resumes_where_it_was_committed,
            tokio = 2
        ),
        trial!(
            a_group_gone_while_stopped_is_created_at_the_stored_point,
            tokio = 2
        ),
        trial!(
            a_stream_behind_the_stored_point_is_read_from_its_beginning,
            tokio = 2
        ),
        trial!(trimming_keeps_what_another_group_still_needs, tokio = 2),
        trial!(the_keep_window_holds_and_off_trims_nothing, tokio = 2),
        trial!(
            readiness_fails_when_entries_stop_moving_while_epochs_commit,
            tokio = 2
        ),
        trial!(a_null_lag_becomes_an_upper_bound, tokio = 2),
    ]
    .into_iter()
    .flatten()
    .collect()
}

async fn destroy_group(env: &mut TestEnv) {
    let destroyed: i64 = redis::cmd("XGROUP")
        .arg("DESTROY")
        .arg(&env.stream)
        .arg(&env.group)
        .query_async(&mut env.redis)
        .await
        .expect("XGROUP DESTROY");
    assert_eq!(destroyed, 1, "the group existed");
}

/// Appends an entry with an explicit id.
async fn xadd_at(env: &mut TestEnv, id: &str, payload: &str) {
    let _: String = redis::cmd("XADD")
        .arg(&env.stream)
        .arg(id)
        .arg("payload")
        .arg(payload)
        .query_async(&mut env.redis)
        .await
        .expect("XADD with an explicit id");
}

async fn stored_point(env: &TestEnv) -> Option<String> {
    env.db
        .query_opt(
            "SELECT resume_id FROM stream_offsets WHERE stream = $1 AND consumer_group = $2",
            &[&env.stream, &env.group],
        )
        .await
        .expect("stream_offsets")
        .map(|row| row.get(0))
}

async fn stream_length(env: &mut TestEnv) -> u64 {
    redis::cmd("XLEN")
        .arg(&env.stream)
        .query_async(&mut env.redis)
        .await
        .expect("XLEN")
}

/// 20,000 entries arrive while the service runs; the group is destroyed under load and the
/// service recreates it at the resume point: what was committed is not read again (the
/// duplicates stay within one read batch per consumer), and the rows are exact.
async fn a_group_destroyed_under_load_resumes_where_it_was_committed() {
    let mut env = TestEnv::new("resume_destroy").await;
    let (workers, read_count) = (2u64, 500u64);
    let running = env.start(env.config(&[
        "--workers",
        &workers.to_string(),
        "--read-count",
        &read_count.to_string(),
    ]));
    let all = payloads("rd", 500, 20_000);
    let mut destroyed = false;
    for (i, chunk) in all.chunks(500).enumerate() {
        env.publish(chunk).await;
        tokio::time::sleep(Duration::from_millis(40)).await;
        if i == 20 {
            env.wait_for(
                Duration::from_secs(30),
                "half of what was published so far",
                async |env: &mut TestEnv| env.rows().await >= 5_000,
            )
            .await;
            destroy_group(&mut env).await;
            destroyed = true;
        }
    }
    assert!(destroyed);
    env.wait_landed(20_000, Duration::from_secs(60)).await;
    assert_eq!(env.distinct_rows().await, 20_000);
    let duplicates = running.metrics.duplicates.get();
    eprintln!("read again after the group was recreated: {duplicates}");
    assert!(
        duplicates <= workers * read_count,
        "{duplicates} entries were read again; at most one read batch per consumer may be"
    );
    running.stop().await;
    // the drain stored the final point: the group's last delivered entry
    let last = env.last_delivered().await;
    assert_eq!(stored_point(&env).await, Some(last));
}

/// The group vanishes while the service is down (Redis restarted without persistence, say):
/// at the next start it is created at the point stored in PostgreSQL, not at GROUP_START_ID.
async fn a_group_gone_while_stopped_is_created_at_the_stored_point() {
    let mut env = TestEnv::new("resume_start").await;
    env.publish(&payloads("first", 10, 1_000)).await;
    let running = env.start(env.config(&[]));
    env.wait_landed(1_000, Duration::from_secs(30)).await;
    running.stop().await;
    assert!(
        stored_point(&env).await.is_some(),
        "the drain stored a point"
    );
    destroy_group(&mut env).await;
    env.publish(&payloads("second", 10, 500)).await;
    let running = env.start(env.config(&[]));
    env.wait_landed(1_500, Duration::from_secs(30)).await;
    assert_eq!(
        running.metrics.duplicates.get(),
        0,
        "nothing committed was read again"
    );
    assert_eq!(running.metrics.entries_read.get(), 500);
    running.stop().await;
}

/// Entries older than the stored point in a stream that was replaced (restored from an older
/// copy, or appended with explicit ids): the group starts at the stream's beginning, so they are
/// read rather than skipped.
async fn a_stream_behind_the_stored_point_is_read_from_its_beginning() {
    let mut env = TestEnv::new("resume_behind").await;
    env.publish(&payloads("live", 10, 100)).await;
    let running = env.start(env.config(&[]));
    env.wait_landed(100, Duration::from_secs(30)).await;
    running.stop().await;
    // the stream and its group are lost; a restored copy holds other entries with older ids
    let _: () = redis::cmd("DEL")
        .arg(&env.stream)
        .query_async(&mut env.redis)
        .await
        .expect("DEL");
    for i in 1..=50u64 {
        xadd_at(
            &mut env,
            &format!("1000-{i}"),
            &payload("restored", 1_790_000_000_000 + i as i64),
        )
        .await;
    }
    let running = env.start(env.config(&[]));
    env.wait_landed(150, Duration::from_secs(30)).await;
    running.stop().await;
}

/// Two groups on one stream, one of them (another service) lagging with entries pending and
/// others unread: trimming keeps everything it still needs and removes what both acknowledged.
async fn trimming_keeps_what_another_group_still_needs() {
    let mut env = TestEnv::new("trim_groups").await;
    let ids = env.publish(&payloads("tg", 10, 1_000)).await;
    // the other group has read the first 300 and acknowledged the first 100
    env.create_group("other", "0").await;
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("other")
        .arg("o1")
        .arg("COUNT")
        .arg(300)
        .arg("STREAMS")
        .arg(&env.stream)
        .arg(">")
        .query_async(&mut env.redis)
        .await
        .expect("XREADGROUP other");
    let _: i64 = redis::cmd("XACK")
        .arg(&env.stream)
        .arg("other")
        .arg(&ids[..100])
        .query_async(&mut env.redis)
        .await
        .expect("XACK other");
    let running =
        env.start(env.config(&["--stream-trim", "acked", "--stream-trim-keep-secs", "0"]));
    env.wait_landed(1_000, Duration::from_secs(30)).await;
    env.wait_for(
        Duration::from_secs(10),
        "the stream trimmed to the other group's oldest pending entry",
        async |env: &mut TestEnv| stream_length(env).await == 900,
    )
    .await;
    // what remains starts exactly at the other group's oldest pending entry
    let first: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(&env.stream)
        .arg("-")
        .arg("+")
        .arg("COUNT")
        .arg(1)
        .query_async(&mut env.redis)
        .await
        .expect("XRANGE");
    assert_eq!(first.ids[0].id, ids[100]);
    assert_eq!(running.metrics.stream_trimmed.get(), 100);
    // the other group acknowledges everything: now the stream goes down to our last entry
    let _: () = redis::cmd("XACK")
        .arg(&env.stream)
        .arg("other")
        .arg(&ids[100..300])
        .query_async(&mut env.redis)
        .await
        .map(|_: i64| ())
        .expect("XACK other");
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("other")
        .arg("o1")
        .arg("STREAMS")
        .arg(&env.stream)
        .arg(">")
        .query_async(&mut env.redis)
        .await
        .expect("XREADGROUP other");
    let _: () = redis::cmd("XACK")
        .arg(&env.stream)
        .arg("other")
        .arg(&ids[300..])
        .query_async(&mut env.redis)
        .await
        .map(|_: i64| ())
        .expect("XACK other");
    env.wait_for(
        Duration::from_secs(10),
        "the stream trimmed to its last entry",
        async |env: &mut TestEnv| stream_length(env).await == 1,
    )
    .await;
    let (_, text) = running.get("/metrics").await;
    let s = samples(&text);
    assert_eq!(s["processor_stream_trimmed_total"], 999.0);
    running.stop().await;
}

/// The keep window holds entries however acknowledged they are; with trimming off, nothing is
/// ever trimmed.
async fn the_keep_window_holds_and_off_trims_nothing() {
    let mut env = TestEnv::new("trim_window").await;
    // 100 entries two hours old (explicit ids), then 100 from now
    let two_hours_ago = processor::clock::unix_ms() - 2 * 3_600_000;
    for i in 0..100u64 {
        xadd_at(
            &mut env,
            &format!("{two_hours_ago}-{i}"),
            &payload("old", 1_790_000_000_000 + i as i64),
        )
        .await;
    }
    env.publish(&payloads("new", 10, 100)).await;

    let running = env.start(env.config(&["--stream-trim", "off"]));
    env.wait_landed(200, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(stream_length(&mut env).await, 200, "off trims nothing");
    running.stop().await;

    let running =
        env.start(env.config(&["--stream-trim", "acked", "--stream-trim-keep-secs", "3600"]));
    env.wait_for(
        Duration::from_secs(10),
        "the entries older than the window trimmed",
        async |env: &mut TestEnv| stream_length(env).await == 100,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(
        stream_length(&mut env).await,
        100,
        "the last hour stays, acknowledged or not"
    );
    running.stop().await;
}

/// A reader that hangs after reading: its worker commits empty epochs on (the commit frontier
/// advances), but its entries stay pending. /readyz must say so within STALL_SECS; the backlog
/// metrics show the entry's age and its deliveries.
async fn readiness_fails_when_entries_stop_moving_while_epochs_commit() {
    let mut env = TestEnv::new("stuck_reader").await;
    env.publish(&payloads("stuck", 5, 20)).await;
    let running = env.start_with_faults(
        env.config(&["--stall-secs", "2", "--monitor-interval-ms", "200"]),
        Faults {
            stuck_reader: Some(0),
            ..Faults::default()
        },
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let body = loop {
        let (code, body) = running.get("/readyz").await;
        if code == 503 && body.contains("is stuck") {
            break body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "readiness stayed: {code} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(body.contains("\"commits\""), "{body}");
    let (_, text) = running.get("/metrics").await;
    let s = samples(&text);
    let group = format!("{{group=\"{}\"}}", env.group);
    assert_eq!(s[&format!("processor_pending_entries{group}")], 20.0);
    assert_eq!(s[&format!("processor_pending_max_deliveries{group}")], 1.0);
    assert!(s[&format!("processor_oldest_pending_age_seconds{group}")] >= 2.0);
    assert!(
        s["processor_commit_frontier_age_seconds"] < 2.0,
        "epochs still commit"
    );
    running.shutdown.force();
    let _ = running.finish().await;
}

async fn backlog(env: &mut TestEnv) -> processor::redis::Backlog {
    processor::redis::backlog(
        &mut env.redis,
        &env.stream,
        &env.group,
        Duration::from_secs(60),
    )
    .await
    .expect("backlog")
    .expect("the group exists")
}

/// After deletions Redis reports the lag as null; the backlog then carries an upper bound, and
/// says it is one.
async fn a_null_lag_becomes_an_upper_bound() {
    let mut env = TestEnv::new("null_lag").await;
    let ids = env.publish(&payloads("nl", 5, 10)).await;
    let group = env.group.clone();
    env.create_group(&group, "0").await;
    let exact = backlog(&mut env).await;
    assert_eq!((exact.lag, exact.lag_exact), (10, true));
    let _: i64 = redis::cmd("XDEL")
        .arg(&env.stream)
        .arg(&ids[5])
        .query_async(&mut env.redis)
        .await
        .expect("XDEL");
    let bounded = backlog(&mut env).await;
    assert!(
        !bounded.lag_exact,
        "Redis cannot tell the lag after a deletion"
    );
    assert!(
        bounded.lag >= 9 && bounded.lag <= 10,
        "9 entries are unread; the bound is {}",
        bounded.lag
    );
    assert_eq!(bounded.length, 9);
}
