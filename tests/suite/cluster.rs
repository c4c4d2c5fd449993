//! A timely cluster of two processes with two workers each, on loopback: one computation whose
//! exchange by device spans both processes.

use std::time::Duration;

use crate::support;
use crate::support::harness::Test;
use crate::support::{payloads, Backend, TestEnv};

/// This module's tests, as the suite runs them (see `main.rs`).
pub fn tests() -> Vec<Test> {
    [
        trial!(two_replicas_share_the_stream, tokio = 4),
        trial!(
            a_dead_peer_makes_the_survivor_exit_3_with_one_line,
            tokio = 2
        ),
        trial!(
            two_processes_own_each_device_exactly_once,
            tokio = 4,
            on_both
        ),
    ]
    .into_iter()
    .flatten()
    .collect()
}

async fn two_processes_own_each_device_exactly_once(backend: Backend) {
    let mut env = TestEnv::on(backend, "cluster").await;
    let hosts = format!(
        "127.0.0.1:{},127.0.0.1:{}",
        support::free_port(),
        support::free_port()
    );
    let total = 5_000;
    env.publish(&payloads("fleet", 1_000, total)).await;
    let first = env.start(env.cluster_process(&hosts, 0, &[]));
    let second = env.start(env.cluster_process(&hosts, 1, &[]));
    env.wait_landed(total as i64, Duration::from_secs(120))
        .await;
    // a cluster stops as a whole: both drain together
    first.shutdown.trigger();
    second.shutdown.trigger();
    let (first, second) = tokio::join!(first.stop(), second.stop());

    let table = env.rows_per_device().await;
    assert_eq!(table.len(), 1_000);
    let workers: Vec<_> = first.workers.iter().chain(&second.workers).collect();
    let indices: Vec<usize> = workers.iter().map(|w| w.index).collect();
    assert_eq!(indices, vec![0, 1, 2, 3], "global worker indices");
    assert!(
        workers.iter().all(|w| w.devices > 0),
        "every worker holds devices: {workers:?}"
    );
    // each device on exactly one worker cluster-wide: the counts add up to the table's
    let held: usize = workers.iter().map(|w| w.devices).sum();
    assert_eq!(held, 1_000, "every device is owned by one worker");
    let folded: u64 = workers.iter().map(|w| w.positions_folded).sum();
    assert_eq!(folded, total as u64);
    assert_eq!(env.pending().await, 0);
    env.assert_table_kind().await;
}

/// Two independent replicas (not a cluster) in one consumer group share the stream: every
/// position lands once and nothing stays pending. Each holds state only for what it read.
async fn two_replicas_share_the_stream() {
    let mut env = TestEnv::new("replicas").await;
    let replica = |name: &str| {
        let mut config = env.config(&["--workers", "2"]);
        config.redis.consumer_name = Some(format!("{}-{name}", env.name));
        config
    };
    let first = env.start(replica("a"));
    let second = env.start(replica("b"));
    let total = 10_000;
    env.publish(&payloads("shared", 500, total)).await;
    env.wait_landed(total as i64, Duration::from_secs(120))
        .await;
    let read_by_first = first.metrics.entries_read.get();
    let read_by_second = second.metrics.entries_read.get();
    assert_eq!(
        read_by_first + read_by_second,
        total as u64,
        "each entry read once"
    );
    let (first, second) = tokio::join!(first.stop(), second.stop());
    let counted: u64 = first
        .workers
        .iter()
        .chain(&second.workers)
        .map(|w| w.positions_folded)
        .sum();
    assert_eq!(
        counted, total as u64,
        "per-replica state covers what each replica read"
    );
    let distinct = env.distinct_rows().await;
    assert_eq!(distinct, total as i64);
}

/// A process of a cluster dies (SIGKILL): the survivor cannot progress without it, says so in one
/// structured line, and exits with status 3 for the orchestrator to restart the cluster. Nothing
/// is lost: the restarted cluster lands everything.
async fn a_dead_peer_makes_the_survivor_exit_3_with_one_line() {
    let mut env = TestEnv::new("peer_lost").await;
    let hosts = format!(
        "127.0.0.1:{},127.0.0.1:{}",
        support::free_port(),
        support::free_port()
    );
    let process = |index: &str| {
        vec![
            ("PROCESSES", "2".to_owned()),
            ("PROCESS_INDEX", index.to_owned()),
            ("TIMELY_HOSTS", hosts.clone()),
            ("WORKERS", "1".to_owned()),
        ]
    };
    let spawn = |env: &TestEnv, index: &str| {
        let vars = process(index);
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        env.spawn_binary(&format!("peer{index}"), &vars)
    };
    let survivor = spawn(&env, "0");
    let mut victim = spawn(&env, "1");
    let total = 3_000;
    env.publish(&payloads("peer", 100, total)).await;
    env.wait_for(
        Duration::from_secs(60),
        "the first rows",
        async |env: &mut TestEnv| env.rows().await > 0,
    )
    .await;
    support::signal(&victim, "KILL");
    let _ = victim.wait();
    let (status, log) =
        tokio::task::spawn_blocking(move || support::wait_exit(survivor, Duration::from_secs(30)))
            .await
            .expect("join");
    assert_eq!(status.code(), Some(3), "{log}");
    let lost: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("lost the connection to cluster process 1"))
        .collect();
    assert_eq!(lost.len(), 1, "{log}");
    assert!(lost[0].contains("\"level\":\"ERROR\""), "{}", lost[0]);
    assert!(
        log.lines().all(|line| line.starts_with('{')),
        "only JSON lines, no raw panic output:\n{log}"
    );
    // the cluster restarted as a whole lands everything once, old and new
    let first = spawn(&env, "0");
    let second = spawn(&env, "1");
    env.publish(&payloads("after", 100, 1_000)).await;
    env.wait_landed(total as i64 + 1_000, Duration::from_secs(120))
        .await;
    assert_eq!(env.distinct_rows().await, total as i64 + 1_000);
    support::sigterm(&first);
    support::sigterm(&second);
    let (a, b) = tokio::join!(
        tokio::task::spawn_blocking(move || support::wait_exit(first, Duration::from_secs(40))),
        tokio::task::spawn_blocking(move || support::wait_exit(second, Duration::from_secs(40)))
    );
    assert!(a.expect("join").0.success());
    assert!(b.expect("join").0.success());
}
