//! The pipeline end to end, in process, against real Redis and PostgreSQL.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use support::{payload, payloads, TestEnv};

/// 20,000 positions over 500 devices: every one lands once, nothing stays pending, and each
/// device's state lives on one worker and agrees with the table.
async fn lands_exactly_once(workers: &str) {
    let mut env = TestEnv::new(&format!("bulk_w{workers}")).await;
    let published = payloads("dev", 500, 20_000);
    env.publish(&published).await;
    let running = env.start(env.config(&["--workers", workers]));
    env.wait_landed(20_000, Duration::from_secs(120)).await;
    assert_eq!(running.metrics.entries_read.get(), 20_000);
    assert_eq!(running.metrics.positions_written.get(), 20_000);
    assert_eq!(running.metrics.duplicates.get(), 0);
    let report = running.stop().await;
    assert_eq!(
        report.workers.len(),
        workers.parse::<usize>().expect("workers")
    );

    let table: HashMap<String, i64> = env
        .db
        .query(
            "SELECT device_id, count(*) FROM positions GROUP BY device_id",
            &[],
        )
        .await
        .expect("per-device counts")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(table.len(), 500);
    let mut seen = HashMap::new();
    for worker in &report.workers {
        for (device, state) in &worker.devices {
            assert!(
                seen.insert(device.clone(), worker.index).is_none(),
                "{device} has state on two workers"
            );
            assert_eq!(
                state.position_count_session as i64, table[device],
                "state of {device} disagrees with the table"
            );
            let last: i64 = env
                .db
                .query_one(
                    "SELECT (extract(epoch FROM max(ts)) * 1000000)::int8 FROM positions WHERE device_id = $1",
                    &[device],
                )
                .await
                .expect("max ts")
                .get(0);
            assert_eq!(state.last_seen, last, "last_seen of {device}");
        }
    }
    assert_eq!(seen.len(), 500);
    assert_eq!(env.pending().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_positions_land_once_with_one_worker() {
    lands_exactly_once("1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_positions_land_once_with_four_workers() {
    lands_exactly_once("4").await;
}

/// While the table is locked nothing can commit, so nothing may be acknowledged: the entries stay
/// pending. Once the lock goes, they land and are acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_acknowledged_before_its_commit() {
    let mut env = TestEnv::new("ack_after_commit").await;
    // the schema must exist before the lock is taken: one position through first
    env.publish(&[payload("warm", 1_790_000_000_000)]).await;
    let running = env.start(env.config(&[]));
    env.wait_landed(1, Duration::from_secs(30)).await;

    let (mut locker, connection) =
        tokio_postgres::connect(&env.database_url, tokio_postgres::NoTls)
            .await
            .expect("second connection");
    tokio::spawn(connection);
    let lock = locker.transaction().await.expect("begin");
    lock.batch_execute("LOCK TABLE positions IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock");

    env.publish(&payloads("locked", 10, 100)).await;
    env.wait_for(
        Duration::from_secs(30),
        "the entries to be read",
        async |_: &mut TestEnv| running.metrics.entries_read.get() == 101,
    )
    .await;
    // several epochs pass with the writes blocked: every read entry must still be pending
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        env.pending().await,
        100,
        "entries were acknowledged before their commit"
    );
    assert_eq!(running.metrics.entries_acked.get(), 1);

    lock.rollback().await.expect("release the lock");
    env.wait_landed(101, Duration::from_secs(30)).await;
    assert_eq!(running.metrics.entries_acked.get(), 101);
    running.stop().await;
}

/// The same position twice: one row, one counted duplicate, both entries acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_position_is_one_row_and_one_duplicate() {
    let mut env = TestEnv::new("duplicate").await;
    let running = env.start(env.config(&[]));
    let same = payload("twice", 1_790_000_000_000);
    env.publish(std::slice::from_ref(&same)).await;
    env.wait_landed(1, Duration::from_secs(30)).await;
    // a second copy in a later epoch, and two copies within one epoch
    env.publish(std::slice::from_ref(&same)).await;
    let other = payload("twice", 1_790_000_001_000);
    env.publish(&[other.clone(), other]).await;
    env.wait_for(
        Duration::from_secs(30),
        "both duplicates to be counted",
        async |env: &mut TestEnv| running.metrics.duplicates.get() == 2 && env.pending().await == 0,
    )
    .await;
    assert_eq!(env.rows().await, 2);
    assert_eq!(running.metrics.positions_written.get(), 2);
    running.stop().await;
}

/// A stream that already has a backlog when the group is first created: nothing is skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backlog_before_the_group_existed_is_processed() {
    let mut env = TestEnv::new("backlog").await;
    env.publish(&payloads("early", 7, 70)).await;
    let running = env.start(env.config(&[]));
    env.wait_landed(70, Duration::from_secs(30)).await;
    env.publish(&payloads("late", 3, 30)).await;
    env.wait_landed(100, Duration::from_secs(30)).await;
    running.stop().await;
}
