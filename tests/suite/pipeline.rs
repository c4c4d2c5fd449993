//! The pipeline end to end, in process, against real Redis and PostgreSQL.

use std::time::Duration;

use crate::support::harness::Test;
use crate::support::{payload, payloads, Backend, TestEnv};

/// This module's tests, as the suite runs them (see `main.rs`).
pub fn tests() -> Vec<Test> {
    [
        trial!(
            twenty_thousand_positions_land_once_with_one_worker,
            tokio = 2,
            on_both
        ),
        trial!(
            twenty_thousand_positions_land_once_with_four_workers,
            tokio = 2
        ),
        trial!(nothing_is_acknowledged_before_its_commit, tokio = 2),
        trial!(the_backlog_before_the_group_existed_is_processed, tokio = 2),
        trial!(reading_stops_while_too_much_is_unacknowledged, tokio = 2),
        trial!(
            an_impossible_drain_is_abandoned_without_acknowledging,
            tokio = 2
        ),
        trial!(
            an_entry_with_a_binary_field_name_is_dead_lettered,
            tokio = 2
        ),
        trial!(a_dropped_reader_connection_feeds_nothing_twice, tokio = 2),
        trial!(duplicates_within_an_epoch_stay_on_the_fast_path, tokio = 2),
        trial!(
            a_repeated_position_is_one_row_and_one_duplicate,
            tokio = 2,
            on_both
        ),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// 20,000 positions over 500 devices: every one lands once, nothing stays pending, and each
/// device's state lives on one worker and agrees with the table.
async fn lands_exactly_once(backend: Backend, workers: &str) {
    let mut env = TestEnv::on(backend, &format!("bulk_w{workers}")).await;
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

    // Each device's state lives on exactly one worker: the workers' device counts add up to the
    // devices in the table (a device held twice would make the sum larger), and the positions
    // they folded to the rows.
    let table = env.rows_per_device().await;
    assert_eq!(table.len(), 500);
    let held: usize = report.workers.iter().map(|w| w.devices).sum();
    assert_eq!(held, 500, "{:?}", report.workers);
    let folded: u64 = report.workers.iter().map(|w| w.positions_folded).sum();
    assert_eq!(folded, 20_000);
    assert_eq!(env.pending().await, 0);
    env.assert_table_kind().await;
}

async fn twenty_thousand_positions_land_once_with_one_worker(backend: Backend) {
    lands_exactly_once(backend, "1").await;
}

async fn twenty_thousand_positions_land_once_with_four_workers() {
    lands_exactly_once(Backend::Postgres, "4").await;
}

/// While the table is locked nothing can commit, so nothing may be acknowledged: the entries stay
/// pending. Once the lock goes, they land and are acknowledged.
async fn nothing_is_acknowledged_before_its_commit() {
    let mut env = TestEnv::new("ack_after_commit").await;
    // the schema must exist before the lock is taken: one position through first
    env.publish(&[payload("warm", 1_790_000_000_000)]).await;
    let running = env.start(env.config(&[]));
    env.wait_landed(1, Duration::from_secs(30)).await;

    let lock = env.lock_positions().await;

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

    lock.release().await;
    env.wait_landed(101, Duration::from_secs(30)).await;
    // Redis can show nothing pending a moment before the acknowledger has read XACK's reply and
    // counted it
    env.wait_for(
        Duration::from_secs(5),
        "the acknowledgements to be counted",
        async |_: &mut TestEnv| running.metrics.entries_acked.get() == 101,
    )
    .await;
    assert_eq!(running.metrics.entries_acked.get(), 101);
    running.stop().await;
}

/// The same position twice: one row, one counted duplicate, both entries acknowledged.
async fn a_repeated_position_is_one_row_and_one_duplicate(backend: Backend) {
    let mut env = TestEnv::on(backend, "duplicate").await;
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
    env.assert_table_kind().await;
}

/// A stream that already has a backlog when the group is first created: nothing is skipped.
async fn the_backlog_before_the_group_existed_is_processed() {
    let mut env = TestEnv::new("backlog").await;
    env.publish(&payloads("early", 7, 70)).await;
    let running = env.start(env.config(&[]));
    env.wait_landed(70, Duration::from_secs(30)).await;
    env.publish(&payloads("late", 3, 30)).await;
    env.wait_landed(100, Duration::from_secs(30)).await;
    running.stop().await;
}

/// With writes blocked, a worker stops taking entries once MAX_INFLIGHT_EPOCHS x READ_COUNT are
/// unacknowledged: the rest waits in Redis, undelivered. When writes resume, everything lands.
async fn reading_stops_while_too_much_is_unacknowledged() {
    let mut env = TestEnv::new("backpressure").await;
    env.publish(&[payload("warm", 1_790_000_000_000)]).await;
    let running = env.start(env.config(&["--max-inflight-epochs", "2", "--read-count", "10"]));
    env.wait_landed(1, Duration::from_secs(30)).await;

    let lock = env.lock_positions().await;
    env.publish(&payloads("held", 50, 1000)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let read = running.metrics.entries_read.get() - 1;
    // In flight: fewer than 2 x 10 before the last batch was taken, plus that batch (10); then
    // what the reader holds: the hand-over channel (2 batches) and the batch it is handing over.
    assert!(read > 0, "nothing was read");
    assert!(read <= 60, "read {read} entries while writes were blocked");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        running.metrics.entries_read.get() - 1,
        read,
        "reading went on while writes were blocked"
    );

    lock.release().await;
    env.wait_landed(1001, Duration::from_secs(60)).await;
    running.stop().await;
}

/// A drain that cannot finish (writes blocked) is abandoned after SHUTDOWN_TIMEOUT_SECS: the run
/// reports it, and nothing that was not committed has been acknowledged.
async fn an_impossible_drain_is_abandoned_without_acknowledging() {
    let mut env = TestEnv::new("drain_timeout").await;
    env.publish(&[payload("warm", 1_790_000_000_000)]).await;
    let running = env.start(env.config(&["--shutdown-timeout-secs", "1", "--workers", "2"]));
    env.wait_landed(1, Duration::from_secs(30)).await;

    let lock = env.lock_positions().await;
    env.publish(&payloads("stuck", 5, 50)).await;
    env.wait_for(
        Duration::from_secs(30),
        "the entries to be read",
        async |_: &mut TestEnv| running.metrics.entries_read.get() == 51,
    )
    .await;

    let started = std::time::Instant::now();
    let ended = running.finish().await;
    assert!(
        matches!(ended, Err(processor::RunError::DrainTimeout(_))),
        "expected a drain timeout, got {ended:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(
        env.pending().await,
        50,
        "uncommitted entries must stay pending"
    );
    lock.release().await;

    // the next start resumes them (whatever the abandoned writes managed to commit meanwhile
    // is written once: ON CONFLICT DO NOTHING), with fewer workers: worker 0 adopts what the
    // retired worker 1 left pending
    let running = env.start(env.config(&["--workers", "1"]));
    env.wait_landed(51, Duration::from_secs(30)).await;
    running.stop().await;
    let consumers = env.consumers().await;
    // the retired worker's consumer went when its entries were adopted (the drain deletes only
    // this process's own consumers, `-c-0`, which it did: nothing was left pending)
    assert_eq!(
        consumers,
        vec![],
        "the retired consumer is gone, and the drained one too"
    );
}

/// An entry whose field name is not UTF-8 (and so has no payload) is dead-lettered; it does not
/// block the consumer, and the entries after it land.
async fn an_entry_with_a_binary_field_name_is_dead_lettered() {
    let mut env = TestEnv::new("binary_field").await;
    let _: String = redis::cmd("XADD")
        .arg(&env.stream)
        .arg("*")
        .arg(&[0xffu8, 0xfe][..])
        .arg("x")
        .query_async(&mut env.redis)
        .await
        .expect("XADD");
    env.publish(&payloads("after", 5, 20)).await;
    let running = env.start(env.config(&[]));
    env.wait_landed(20, Duration::from_secs(30)).await;
    assert_eq!(running.metrics.dead_lettered.get(), 1);
    running.stop().await;
}

/// A reader whose connection drops reconnects without feeding the entries it already handed to
/// the dataflow a second time: no duplicate is counted, nothing is read twice.
async fn a_dropped_reader_connection_feeds_nothing_twice() {
    let mut env = TestEnv::new("reader_reconnect").await;
    env.publish(&[payload("warm", 1_790_000_000_000)]).await;
    let running = env.start(env.config(&[]));
    env.wait_landed(1, Duration::from_secs(30)).await;

    let lock = env.lock_positions().await;
    env.publish(&payloads("inflight", 5, 50)).await;
    env.wait_for(
        Duration::from_secs(30),
        "the entries to be read",
        async |_: &mut TestEnv| running.metrics.entries_read.get() == 51,
    )
    .await;

    // kill this test's reader connection (named after its consumer)
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut env.redis)
        .await
        .expect("CLIENT LIST");
    let ours = format!("name={}-c-0", env.name);
    let id = clients
        .lines()
        .find(|line| line.split(' ').any(|field| field == ours))
        .and_then(|line| line.split(' ').find_map(|f| f.strip_prefix("id=")))
        .expect("the reader's connection")
        .to_owned();
    let _: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(&id)
        .query_async(&mut env.redis)
        .await
        .expect("CLIENT KILL");
    // the reader reconnects and reads on; then writes resume
    env.wait_for(
        Duration::from_secs(30),
        "the reader to fail once",
        async |_: &mut TestEnv| {
            running
                .metrics
                .redis_errors
                .with_label_values(&["xreadgroup"])
                .get()
                >= 1
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    lock.release().await;
    env.wait_landed(51, Duration::from_secs(30)).await;
    assert_eq!(
        running.metrics.entries_read.get(),
        51,
        "entries were fed twice"
    );
    assert_eq!(running.metrics.duplicates.get(), 0);
    running.stop().await;
}

/// Trackers resend records whose acknowledgement they missed: the same key twice within one
/// epoch. The copies are dropped before the COPY and counted, so the fast path stays the path.
async fn duplicates_within_an_epoch_stay_on_the_fast_path() {
    let mut env = TestEnv::new("dup_in_epoch").await;
    let mut published = Vec::new();
    for record in payloads("resend", 20, 200) {
        published.push(record.clone());
        published.push(record);
    }
    // a backlog read in one batch: each pair is in one epoch
    env.publish(&published).await;
    let running = env.start(env.config(&[]));
    env.wait_for(
        Duration::from_secs(60),
        "200 rows and 200 duplicates",
        async |env: &mut TestEnv| {
            env.rows().await == 200
                && running.metrics.duplicates.get() == 200
                && env.pending().await == 0
        },
    )
    .await;
    let path = |label: &str| {
        running
            .metrics
            .write_transactions
            .with_label_values(&[label])
            .get()
    };
    assert!(path("copy") > 0);
    assert_eq!(path("insert"), 0, "no batch left the fast path");
    running.stop().await;
}
