//! Faults: a replica that dies for good, poison entries, trimmed pending entries, Redis restarted
//! without persistence. Real servers throughout.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support;
use crate::support::harness::Test;
use crate::support::{payload, payloads, TestEnv};

/// This module's tests, as the suite runs them (see `main.rs`).
pub fn tests() -> Vec<Test> {
    [
        trial!(a_dead_replicas_entries_are_claimed_by_the_other, tokio = 2),
        trial!(an_entry_delivered_too_often_is_dead_lettered, tokio = 2),
        trial!(trimmed_pending_entries_are_acknowledged_away, tokio = 2),
        trial!(a_redis_restart_without_persistence_is_survived, tokio = 2),
        trial!(
            a_postgres_outage_under_load_loses_nothing_and_bounds_memory,
            tokio = 2
        ),
        trial!(a_failed_connection_names_where_it_tried, tokio = 2),
    ]
    .into_iter()
    .flatten()
    .collect()
}

fn kill9(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Two processes in one group; one is SIGKILLed mid-stream and never comes back. The other
/// takes over its pending entries: every position is one row, nothing stays pending.
async fn a_dead_replicas_entries_are_claimed_by_the_other() {
    let mut env = TestEnv::new("claim").await;
    let fast_claims = [("CLAIM_MIN_IDLE_MS", "1000"), ("CLAIM_INTERVAL_MS", "300")];
    let mut doomed = env.spawn_binary("doomed", &fast_claims);
    let mut survivor = env.spawn_binary("survivor", &fast_claims);
    let total = 20_000;
    env.publish(&payloads("claim", 400, total)).await;
    env.wait_for(
        Duration::from_secs(60),
        "the first rows",
        async |env: &mut TestEnv| env.rows().await > 0,
    )
    .await;
    kill9(&mut doomed);
    env.wait_landed(total as i64, Duration::from_secs(120))
        .await;
    let distinct = env.distinct_rows().await;
    assert_eq!(distinct, total as i64);
    kill9(&mut survivor);
}

/// An entry delivered MAX_DELIVERIES times without success is dead-lettered with the reason and
/// acknowledged; the others land.
async fn an_entry_delivered_too_often_is_dead_lettered() {
    let mut env = TestEnv::new("poison").await;
    processor::redis::ensure_group(&mut env.redis, &env.stream, &env.group, "0")
        .await
        .expect("group");
    let poison = env.publish(&[payload("poison", 1_790_000_000_000)]).await;
    env.deliver("crashy", 3).await;
    assert_eq!(env.pending().await, 1);
    env.publish(&payloads("fine", 5, 20)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let running = env.start(env.config(&[
        "--max-deliveries",
        "3",
        "--claim-min-idle-ms",
        "100",
        "--claim-interval-ms",
        "200",
    ]));
    env.wait_landed(20, Duration::from_secs(30)).await;
    env.wait_for(
        Duration::from_secs(10),
        "the dead letter",
        async |env: &mut TestEnv| !env.dead_letters().await.is_empty(),
    )
    .await;
    let letters = env.dead_letters().await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0]["source_id"], poison[0]);
    assert!(
        letters[0]["error"].starts_with("max deliveries exceeded"),
        "{:?}",
        letters[0]
    );
    assert_eq!(env.pending().await, 0);
    assert_eq!(running.metrics.dead_lettered.get(), 1);
    running.stop().await;
}

/// Entries trimmed from the stream while pending in a dead consumer: the claim reports them
/// deleted, they are counted and leave the pending list, and nothing crashes.
async fn trimmed_pending_entries_are_acknowledged_away() {
    let mut env = TestEnv::new("trimmed").await;
    processor::redis::ensure_group(&mut env.redis, &env.stream, &env.group, "0")
        .await
        .expect("group");
    env.publish(&payloads("gone", 5, 10)).await;
    env.deliver("ghost", 1).await;
    let _: i64 = redis::cmd("XTRIM")
        .arg(&env.stream)
        .arg("MAXLEN")
        .arg(0)
        .query_async(&mut env.redis)
        .await
        .expect("XTRIM");
    assert_eq!(env.pending().await, 10);
    env.publish(&payloads("kept", 5, 10)).await;
    tokio::time::sleep(Duration::from_millis(150)).await;

    let running =
        env.start(env.config(&["--claim-min-idle-ms", "100", "--claim-interval-ms", "200"]));
    env.wait_landed(10, Duration::from_secs(30)).await;
    env.wait_for(
        Duration::from_secs(10),
        "the deleted ids counted",
        async |_: &mut TestEnv| running.metrics.deleted_pending.get() == 10,
    )
    .await;
    assert_eq!(env.pending().await, 0);
    running.stop().await;
}

/// Redis restarted without persistence under load: the service reconnects, creates the group
/// again, and everything in the stream after the restart lands.
async fn a_redis_restart_without_persistence_is_survived() {
    let port = support::free_port();
    let start_redis = || {
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed for this test")
    };
    let mut redis_server = start_redis();
    let redis_url = format!("redis://127.0.0.1:{port}");
    let client = redis::Client::open(redis_url.as_str()).expect("url");
    let mut conn = loop {
        match client.get_multiplexed_async_connection().await {
            Ok(conn) => break conn,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let mut env = TestEnv::new("redis_restart").await;
    let mut config = env.config(&[]);
    config.redis.link.url = redis_url.clone();
    let running = env.start(config);
    let publish =
        async |conn: &mut redis::aio::MultiplexedConnection, stream: &str, items: &[String]| {
            let mut pipe = redis::pipe();
            for item in items {
                pipe.cmd("XADD")
                    .arg(stream)
                    .arg("*")
                    .arg("payload")
                    .arg(item)
                    .ignore();
            }
            pipe.query_async::<()>(conn).await
        };
    publish(&mut conn, &env.stream, &payloads("before", 10, 100))
        .await
        .expect("publish");
    env.wait_landed_rows(100, Duration::from_secs(30)).await;

    kill9(&mut redis_server);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut redis_server = start_redis();
    let mut conn = loop {
        match client.get_multiplexed_async_connection().await {
            Ok(conn) => break conn,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    publish(&mut conn, &env.stream, &payloads("after", 10, 100))
        .await
        .expect("publish after the restart");
    env.wait_landed_rows(200, Duration::from_secs(60)).await;
    // and everything is acknowledged on the new server (the ack follows the commit)
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let pending: redis::Value = redis::cmd("XPENDING")
            .arg(&env.stream)
            .arg(&env.group)
            .query_async(&mut conn)
            .await
            .expect("XPENDING");
        let redis::Value::Array(summary) = pending else {
            panic!("XPENDING reply")
        };
        if summary.first() == Some(&redis::Value::Int(0)) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still pending: {summary:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.stop().await;
    kill9(&mut redis_server);
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

/// PostgreSQL unreachable for OUTAGE_SECS (default 5; the closing note's figures use 30) while
/// positions keep arriving: readiness goes false, reading stops at the in-flight bound so memory
/// stays flat, and when the database returns everything lands, nothing pending.
async fn a_postgres_outage_under_load_loses_nothing_and_bounds_memory() {
    let outage = Duration::from_secs(
        std::env::var("OUTAGE_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(5),
    );
    let mut env = TestEnv::new("pg_outage").await;
    let upstream: std::net::SocketAddr = tokio::net::lookup_host(
        env.servers
            .database_url
            .split('@')
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .expect("host:port"),
    )
    .await
    .expect("resolve")
    .next()
    .expect("address");
    let proxy = support::proxy::Proxy::start(upstream).await;
    let url = env
        .database_url
        .replacen(&upstream.to_string(), &proxy.address.to_string(), 1);
    let port = support::free_port();
    let http = format!("127.0.0.1:{port}");
    let mut child = env.spawn_binary(
        "outage",
        &[
            ("DATABASE_URL", url.as_str()),
            ("HTTP_ADDR", http.as_str()),
            ("MONITOR_INTERVAL_MS", "200"),
            ("WORKERS", "2"),
        ],
    );
    let address: std::net::SocketAddr = http.parse().expect("address");
    let mut published = 0usize;
    let mut batch = 0usize;
    let mut publish_some = async |env: &mut TestEnv| {
        let items = payloads(&format!("load{batch}"), 100, 1000);
        batch += 1;
        env.publish(&items).await;
        published += items.len();
    };
    // steady load before the outage
    for _ in 0..5 {
        publish_some(&mut env).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    env.wait_for(
        Duration::from_secs(60),
        "the first rows",
        async |env: &mut TestEnv| env.rows().await > 0,
    )
    .await;
    let before = rss_kib(child.id());

    proxy.cut();
    let started = std::time::Instant::now();
    let mut peak = before;
    let mut saw_not_ready = false;
    while started.elapsed() < outage {
        publish_some(&mut env).await;
        let (code, body) = support::http_get(address, "/readyz").await;
        if code == 503 && body.contains("\"name\":\"postgres\",\"ok\":false") {
            saw_not_ready = true;
        }
        peak = peak.max(rss_kib(child.id()));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let during = rss_kib(child.id());
    proxy.restore();
    env.wait_landed(published as i64, Duration::from_secs(180))
        .await;
    let after = rss_kib(child.id());
    eprintln!(
        "postgres outage of {outage:?} under load: {published} published; RSS before {before} KiB, \
         peak during {peak} KiB, at the end of the outage {during} KiB, after recovery {after} KiB"
    );
    assert!(
        saw_not_ready,
        "/readyz never reported postgres failing during the outage"
    );
    // the in-flight bound (2 workers x 16 epochs / 16,000 entries) keeps memory flat
    assert!(
        peak < before + 128 * 1024,
        "memory grew from {before} KiB to {peak} KiB during the outage"
    );
    kill9(&mut child);
}

/// A server that does not answer: the retry line names the address it tried (host and port),
/// and never the password.
async fn a_failed_connection_names_where_it_tried() {
    let env = TestEnv::new("where").await;
    let nobody = support::free_port();
    let database = format!("postgres://postgres:s3cret@127.0.0.1:{nobody}/postgres");
    let child = env.spawn_binary("where", &[("DATABASE_URL", database.as_str())]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    support::sigterm(&child);
    let (_, log) = support::wait_exit(child, Duration::from_secs(30));
    assert!(
        log.contains(&format!("connecting to 127.0.0.1:{nobody}")),
        "the PostgreSQL address is named:\n{log}"
    );
    assert!(!log.contains("s3cret"), "{log}");

    let redis = format!("redis://:s3cret@127.0.0.1:{nobody}");
    let child = env.spawn_binary("where", &[("REDIS_URL", redis.as_str())]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    support::sigterm(&child);
    let (_, log) = support::wait_exit(child, Duration::from_secs(30));
    assert!(
        log.contains(&format!("connecting to 127.0.0.1:{nobody}")),
        "the Redis address is named:\n{log}"
    );
    assert!(!log.contains("s3cret"), "{log}");
}
