//! Consumers of departed replicas do not pile up in the group: a clean drain deletes the
//! process's own, a crash leaves them for another replica to claim from, and an idle consumer
//! with nothing pending is swept by a running replica. Through the binary.

use std::time::Duration;

use crate::support::harness::Test;
use crate::support::{payloads, signal, wait_exit, TestEnv};

/// This module's tests, as the suite runs them (see `main.rs`).
pub fn tests() -> Vec<Test> {
    [
        trial!(replicas_drained_in_turn_leave_no_consumers, tokio = 2),
        trial!(
            a_killed_replicas_consumers_stay_until_claimed_from,
            tokio = 2
        ),
        trial!(idle_consumers_with_nothing_pending_are_swept, tokio = 2),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Three processes with other names (a Deployment's pods), started and drained in turn.
async fn replicas_drained_in_turn_leave_no_consumers() {
    let mut env = TestEnv::new("pods").await;
    let mut landed = 0;
    for pod in ["pod-a", "pod-b", "pod-c"] {
        let child = env.spawn_binary(pod, &[("WORKERS", "2")]);
        env.publish(&payloads(pod, 10, 100)).await;
        landed += 100;
        env.wait_landed(landed, Duration::from_secs(60)).await;
        signal(&child, "TERM");
        let (status, log) = wait_exit(child, Duration::from_secs(30));
        assert!(status.success(), "{status:?}\n{log}");
        assert!(
            log.contains("consumers of this process deleted from the group after a clean drain"),
            "{log}"
        );
        assert_eq!(env.consumers().await, vec![], "after {pod}");
    }
}

/// A replica SIGKILLed with entries pending keeps its consumers, so that another replica can
/// claim the entries; that one's own drain does not delete them (they are not its own).
async fn a_killed_replicas_consumers_stay_until_claimed_from() {
    let mut env = TestEnv::new("killed").await;
    let doomed = env.spawn_binary("doomed", &[("READ_COUNT", "50")]);
    let total = 5000;
    env.publish(&payloads("killed", 50, total)).await;
    env.wait_for(
        Duration::from_secs(60),
        "the first rows",
        async |env: &mut TestEnv| env.rows().await > 0,
    )
    .await;
    signal(&doomed, "KILL");
    let _ = wait_exit(doomed, Duration::from_secs(10));
    let left = env.consumers().await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].0, "doomed-0");
    let heir = env.spawn_binary(
        "heir",
        &[("CLAIM_MIN_IDLE_MS", "1000"), ("CLAIM_INTERVAL_MS", "300")],
    );
    env.wait_landed(total as i64, Duration::from_secs(120))
        .await;
    signal(&heir, "TERM");
    let (status, log) = wait_exit(heir, Duration::from_secs(30));
    assert!(status.success(), "{status:?}\n{log}");
    // the heir's own consumer went with its drain; the dead one's stays, emptied, until the sweep
    assert_eq!(env.consumers().await, vec![("doomed-0".to_owned(), 0)]);
}

/// A consumer idle past `CONSUMER_SWEEP_IDLE_SECS` with nothing pending is deleted by a running
/// replica; one holding an entry is not.
async fn idle_consumers_with_nothing_pending_are_swept() {
    let mut env = TestEnv::new("sweep").await;
    env.publish(&payloads("sweep", 1, 1)).await;
    env.create_group(&env.group.clone(), "0").await;
    // a consumer that read one entry and never acknowledged it, and one that read nothing
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(&env.group)
        .arg("holder")
        .arg("COUNT")
        .arg(1)
        .arg("STREAMS")
        .arg(&env.stream)
        .arg(">")
        .query_async(&mut env.redis)
        .await
        .expect("read as holder");
    let _: i64 = redis::cmd("XGROUP")
        .arg("CREATECONSUMER")
        .arg(&env.stream)
        .arg(&env.group)
        .arg("ghost")
        .query_async(&mut env.redis)
        .await
        .expect("create ghost");
    let replica = env.spawn_binary(
        "live",
        &[
            ("CONSUMER_SWEEP_IDLE_SECS", "2"),
            ("MONITOR_INTERVAL_MS", "200"),
            // the holder's entry stays its own
            ("CLAIM_MIN_IDLE_MS", "600000"),
        ],
    );
    env.wait_for(
        Duration::from_secs(30),
        "the ghost swept",
        async |env: &mut TestEnv| {
            !env.consumers()
                .await
                .iter()
                .any(|(name, _)| name == "ghost")
        },
    )
    .await;
    let left = env.consumers().await;
    assert!(left.contains(&("holder".to_owned(), 1)), "{left:?}");
    // the live replica's own consumer may be swept too (an empty blocking read is no activity to
    // Redis 7.0): harmless, its next read creates it again, and what comes next lands
    tokio::time::sleep(Duration::from_secs(3)).await;
    env.publish(&payloads("after", 1, 1)).await;
    env.wait_landed_rows(1, Duration::from_secs(30)).await;
    assert!(
        env.consumers().await.contains(&("holder".to_owned(), 1)),
        "a consumer holding an entry is never swept"
    );
    signal(&replica, "TERM");
    let (status, log) = wait_exit(replica, Duration::from_secs(30));
    assert!(status.success(), "{status:?}\n{log}");
    assert!(
        log.contains("consumers idle with nothing pending deleted from the group")
            && log.contains("ghost"),
        "{log}"
    );
}
