//! A timely cluster of two processes with two workers each, on loopback: one computation whose
//! exchange by device spans both processes.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use support::{payloads, Backend, TestEnv};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_own_each_device_exactly_once_on_postgres() {
    two_processes_own_each_device_exactly_once(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_own_each_device_exactly_once_on_timescaledb() {
    two_processes_own_each_device_exactly_once(Backend::Timescale).await;
}

async fn two_processes_own_each_device_exactly_once(backend: Backend) {
    let Some(mut env) = TestEnv::on(backend, "cluster").await else {
        return;
    };
    let hosts = format!(
        "127.0.0.1:{},127.0.0.1:{}",
        support::free_port(),
        support::free_port()
    );
    let total = 5_000;
    env.publish(&payloads("fleet", 1_000, total)).await;
    let process = |index: &str, name: &str| {
        let mut config = env.config(&[
            "--workers",
            "2",
            "--processes",
            "2",
            "--process-index",
            index,
            "--timely-hosts",
            &hosts,
        ]);
        config.consumer_name = Some(format!("{}-{name}", env.name));
        config
    };
    let first = env.start(process("0", "p0"));
    let second = env.start(process("1", "p1"));
    env.wait_landed(total as i64, Duration::from_secs(120))
        .await;
    // a cluster stops as a whole: both drain together
    first.shutdown.trigger();
    second.shutdown.trigger();
    let (first, second) = tokio::join!(first.stop(), second.stop());

    let table = env.rows_per_device().await;
    assert_eq!(table.len(), 1_000);
    let mut owner: HashMap<&str, usize> = HashMap::new();
    let workers: Vec<_> = first.workers.iter().chain(&second.workers).collect();
    let indices: Vec<usize> = workers.iter().map(|w| w.index).collect();
    assert_eq!(indices, vec![0, 1, 2, 3], "global worker indices");
    for worker in &workers {
        assert!(
            !worker.devices.is_empty(),
            "worker {} holds no device",
            worker.index
        );
        for (device, state) in &worker.devices {
            if let Some(other) = owner.insert(device, worker.index) {
                panic!("{device} has state on workers {other} and {}", worker.index);
            }
            assert_eq!(
                state.position_count_session as i64, table[device],
                "{device}"
            );
        }
    }
    assert_eq!(owner.len(), 1_000, "every device is owned by one worker");
    assert_eq!(env.pending().await, 0);
    env.assert_table_kind().await;
}

/// Two independent replicas (not a cluster) in one consumer group share the stream: every
/// position lands once and nothing stays pending. Each holds state only for what it read.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_share_the_stream() {
    let mut env = TestEnv::new("replicas").await;
    let replica = |name: &str| {
        let mut config = env.config(&["--workers", "2"]);
        config.consumer_name = Some(format!("{}-{name}", env.name));
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
        .flat_map(|w| w.devices.iter().map(|(_, s)| s.position_count_session))
        .sum();
    assert_eq!(
        counted, total as u64,
        "per-replica state covers what each replica read"
    );
    let distinct = env.distinct_rows().await;
    assert_eq!(distinct, total as i64);
}
