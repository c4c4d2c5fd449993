//! TimescaleDB for real: the server that has the extension but cannot load it, the settings
//! applied at every start, and late data into compressed chunks.

use std::time::Duration;

use processor::postgres::timescale::{HypertableConfig, Interval, Mode};

use crate::support;
use crate::support::harness::{Need, Test, TIMESCALEDB};
use crate::support::{payload, payloads, Backend, TestEnv};

/// This module's tests, as the suite runs them (see `main.rs`).
pub fn tests() -> Vec<Test> {
    [
        trial!(
            installed_but_not_preloaded_keeps_a_plain_table_and_says_why,
            tokio = 2,
            needs = NOT_PRELOADED
        ),
        trial!(
            settings_are_applied_at_every_start_and_only_when_they_change,
            tokio = 2,
            needs = TIMESCALEDB
        ),
        trial!(
            late_data_lands_once_in_compressed_chunks,
            tokio = 2,
            needs = TIMESCALEDB
        ),
        trial!(
            replicas_writing_the_same_late_records_into_compressed_chunks,
            tokio = 2,
            needs = TIMESCALEDB
        ),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The plain PostgreSQL in the state the first test needs: TimescaleDB's files installed, the
/// library not preloaded (CI's cluster on 5432 is; a laptop's often is not).
const NOT_PRELOADED: Need = Need {
    tag: "timescaledb_installed_not_preloaded",
    required_by: "REQUIRE_TIMESCALEDB",
    present: support::servers::timescaledb_installed_not_preloaded,
};

/// A server where TimescaleDB is installed but not in `shared_preload_libraries` (the state a
/// fresh package install leaves): `CREATE EXTENSION` would end the session with a FATAL error, so
/// the service must see it coming, keep a plain table, and say once what to do.
async fn installed_but_not_preloaded_keeps_a_plain_table_and_says_why() {
    let mut env = TestEnv::new("not_preloaded").await;
    let available: bool = env
        .db
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')",
            &[],
        )
        .await
        .expect("pg_available_extensions")
        .get(0);
    // registered as ignored where the server is not in that state, unless REQUIRE_TIMESCALEDB=1
    assert!(
        available && !env.servers.postgres_has_timescaledb,
        "installed_but_not_preloaded: the plain PostgreSQL is not in that state (TimescaleDB's \
         files installed, not preloaded)"
    );
    let child = env.spawn_binary("plain", &[]);
    env.publish(&payloads("plain", 5, 50)).await;
    env.wait_landed(50, Duration::from_secs(60)).await;
    support::sigterm(&child);
    let (status, log) =
        tokio::task::spawn_blocking(move || support::wait_exit(child, Duration::from_secs(30)))
            .await
            .expect("join");
    assert!(status.success(), "{status:?}\n{log}");
    assert!(
        !log.contains("\"level\":\"WARN\""),
        "a plain table is no warning under TIMESCALEDB=auto:\n{log}"
    );
    let said: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("timescaledb is installed but not preloaded"))
        .collect();
    assert_eq!(said.len(), 1, "said once:\n{log}");
    assert!(
        said[0].contains("\"level\":\"INFO\"")
            && said[0].contains("shared_preload_libraries = 'timescaledb'"),
        "an INFO that names the remedy: {}",
        said[0]
    );
    assert!(
        log.contains("not in shared_preload_libraries"),
        "the start-up line says why the table is plain:\n{log}"
    );
    env.assert_table_kind().await;
}

fn settings(chunk: &str, compress: Option<&str>, retention: Option<&str>) -> HypertableConfig {
    let interval = |text: &str| text.parse::<Interval>().expect("interval");
    HypertableConfig {
        mode: Mode::Auto,
        chunk_interval: interval(chunk),
        compress_after: compress.map(interval),
        retention: retention.map(interval),
    }
}

/// The hypertable's chunk interval and its jobs: (interval, [(proc, config value, job id)]).
async fn hypertable_settings(env: &TestEnv) -> (String, Vec<(String, String, i32)>) {
    let interval: String = env
        .db
        .query_one(
            "SELECT time_interval::text FROM timescaledb_information.dimensions
             WHERE hypertable_schema = $1 AND hypertable_name = 'positions'",
            &[&env.schema],
        )
        .await
        .expect("dimensions")
        .get(0);
    let jobs = env
        .db
        .query(
            "SELECT proc_name::text,
                    coalesce(config->>'compress_after', config->>'drop_after'), job_id
             FROM timescaledb_information.jobs
             WHERE hypertable_schema = $1 AND hypertable_name = 'positions' ORDER BY proc_name",
            &[&env.schema],
        )
        .await
        .expect("jobs")
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    (interval, jobs)
}

/// Every start brings the hypertable to the configuration: the same values change nothing (the
/// jobs keep their ids), new values replace the old, `off` removes a policy.
async fn settings_are_applied_at_every_start_and_only_when_they_change() {
    let env = TestEnv::on(Backend::Timescale, "ts_settings").await;
    let migrate = |settings: HypertableConfig| {
        let url = env.database_url.clone();
        async move {
            let mut client = processor::postgres::connect(&url, None)
                .await
                .expect("connect");
            processor::postgres::migrate(&mut client, &settings)
                .await
                .expect("migrate")
        }
    };
    migrate(settings("1d", Some("7d"), None)).await;
    env.assert_table_kind().await;
    let (interval, jobs) = hypertable_settings(&env).await;
    assert_eq!(interval, "1 day");
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(
        (jobs[0].0.as_str(), jobs[0].1.as_str()),
        ("policy_compression", "7 days")
    );
    let compression: (String, String) = env
        .db
        .query_one(
            "SELECT segmentby, orderby FROM timescaledb_information.hypertable_columnstore_settings
             WHERE hypertable = 'positions'::regclass",
            &[],
        )
        .await
        .map(|row| (row.get(0), row.get(1)))
        .expect("columnstore settings");
    assert_eq!(compression, ("device_id".to_owned(), "ts DESC".to_owned()));

    // the same again: nothing is touched
    migrate(settings("24h", Some("168h"), None)).await;
    let (interval, again) = hypertable_settings(&env).await;
    assert_eq!(interval, "1 day");
    assert_eq!(
        again, jobs,
        "equal values (24h = 1d) leave the policy as it was"
    );

    // new values
    migrate(settings("12h", Some("2d"), Some("90d"))).await;
    let (interval, jobs) = hypertable_settings(&env).await;
    assert_eq!(interval, "12:00:00");
    let found: Vec<(&str, &str)> = jobs
        .iter()
        .map(|(proc, value, _)| (proc.as_str(), value.as_str()))
        .collect();
    assert_eq!(
        found,
        vec![
            ("policy_compression", "2 days"),
            ("policy_retention", "90 days")
        ]
    );

    // off: the policies go
    migrate(settings("12h", None, None)).await;
    let (_, jobs) = hypertable_settings(&env).await;
    assert!(jobs.is_empty(), "{jobs:?}");
}

fn sample(running: &support::Running, path: &str) -> u64 {
    running
        .metrics
        .write_transactions
        .with_label_values(&[path])
        .get()
}

/// Compresses every chunk of `positions` and checks that at least `expected` are compressed.
/// (The compression policy may compress some at the same moment, in the background: a chunk it
/// got to first is as good.)
pub(crate) async fn compress_all(env: &TestEnv, expected: i64) {
    env.db
        .batch_execute(
            "DO $$ DECLARE c regclass; BEGIN
                 FOR c IN SELECT public.show_chunks('positions') LOOP
                     BEGIN
                         PERFORM public.compress_chunk(c, if_not_compressed => true);
                     EXCEPTION WHEN duplicate_object THEN NULL;
                     END;
                 END LOOP;
             END $$",
        )
        .await
        .expect("compress every chunk");
    let compressed: i64 = env
        .db
        .query_one(
            "SELECT count(*) FROM timescaledb_information.chunks
             WHERE hypertable_schema = $1 AND hypertable_name = 'positions' AND is_compressed",
            &[&env.schema],
        )
        .await
        .expect("compressed chunks")
        .get(0);
    assert!(
        compressed >= expected,
        "{expected} chunks or more should be compressed: {compressed}"
    );
}

/// Trackers buffer records while offline and send them days later, into chunks that are already
/// compressed. New late records land exactly once; a redelivery of records already stored (the
/// same stream ids again) counts as duplicates and doubles nothing. Binary COPY and the
/// `ON CONFLICT` fallback are both exercised against the compressed chunks.
async fn late_data_lands_once_in_compressed_chunks() {
    let mut env = TestEnv::on(Backend::Timescale, "late_data").await;
    // three devices, one record a minute over three days, far in the past
    let base = 1_790_000_000_000i64;
    let minute = 60_000i64;
    let old: Vec<String> = (0..3 * 3 * 24 * 20)
        .map(|i| payload(&format!("late-{}", i % 3), base + (i / 3) * 3 * minute))
        .collect();
    let running = env.start(env.config(&[]));
    env.publish(&old).await;
    env.wait_landed(old.len() as i64, Duration::from_secs(60))
        .await;
    env.assert_table_kind().await;
    compress_all(&env, 3).await;
    let copies_before = sample(&running, "copy");

    // 1. new late records inside the compressed range (between the stored ones): binary COPY
    let late: Vec<String> = (0..90)
        .map(|i| {
            payload(
                &format!("late-{}", i % 3),
                base + (i / 3) * 3 * minute + 30_000,
            )
        })
        .collect();
    env.publish(&late).await;
    let total = (old.len() + late.len()) as i64;
    env.wait_landed(total, Duration::from_secs(60)).await;
    assert_eq!(running.metrics.duplicates.get(), 0);
    assert!(
        sample(&running, "copy") > copies_before,
        "new late rows go in with COPY, compressed chunks or not"
    );
    assert_eq!(sample(&running, "insert"), 0, "no key existed");

    // 2. the same stream ids again (the group rewound): every one is a duplicate, through the
    //    ON CONFLICT fallback, since COPY fails on the keys in the compressed chunks
    let _: () = redis::cmd("XGROUP")
        .arg("SETID")
        .arg(&env.stream)
        .arg(&env.group)
        .arg("0")
        .query_async(&mut env.redis)
        .await
        .expect("XGROUP SETID");
    let redelivered = total as u64;
    env.wait_for(
        Duration::from_secs(60),
        "every redelivered entry counted as a duplicate",
        async |env: &mut TestEnv| {
            running.metrics.duplicates.get() == redelivered && env.pending().await == 0
        },
    )
    .await;
    assert_eq!(env.rows().await, total, "nothing doubled");
    assert!(sample(&running, "insert") > 0, "the fallback wrote them");

    // 3. stored and new late keys in one publish: the new ones land once, the rest are counted
    let mut mixed: Vec<String> = old[..30].to_vec();
    mixed.extend((0..30).map(|i| {
        payload(
            &format!("late-{}", i % 3),
            base + (i / 3) * 3 * minute + 45_000,
        )
    }));
    env.publish(&mixed).await;
    env.wait_for(
        Duration::from_secs(60),
        "the mixed batch",
        async |env: &mut TestEnv| {
            running.metrics.duplicates.get() == redelivered + 30 && env.pending().await == 0
        },
    )
    .await;
    assert_eq!(env.rows().await, total + 30);
    assert_eq!(env.distinct_rows().await, total + 30);
    running.stop().await;

    // the late rows sit in the compressed chunks (now partially compressed), not in new ones
    let uncompressed: i64 = env
        .db
        .query_one(
            "SELECT count(*) FROM timescaledb_information.chunks
             WHERE hypertable_schema = $1 AND hypertable_name = 'positions' AND NOT is_compressed",
            &[&env.schema],
        )
        .await
        .expect("chunks")
        .get(0);
    assert_eq!(uncompressed, 0);
}

/// Two replicas get the same late records at the same moment (each in a consumer group of its
/// own, so both write every record), into chunks that are compressed: TimescaleDB has raised
/// unique violations for concurrent `ON CONFLICT DO NOTHING` there. Neither may stall, nothing
/// may double, and every record one of them did not insert counts as a duplicate (a unique
/// violation from the fallback is one, never a failure to retry forever).
async fn replicas_writing_the_same_late_records_into_compressed_chunks() {
    let mut env = TestEnv::on(Backend::Timescale, "late_race").await;
    let base = 1_790_000_000_000i64;
    let minute = 60_000i64;
    let devices = 20;
    let stored: Vec<String> = (0..devices * 3 * 24 * 4)
        .map(|i| {
            payload(
                &format!("race-{}", i % devices),
                base + (i / devices) * 15 * minute,
            )
        })
        .collect();
    env.publish(&stored).await;
    let loader = env.start(env.config(&[]));
    env.wait_landed(stored.len() as i64, Duration::from_secs(60))
        .await;
    loader.stop().await;
    compress_all(&env, 3).await;

    // two replicas, each in a group of its own that starts after what was loaded
    let last = env.last_delivered().await;
    let mut replicas = Vec::new();
    for name in ["a", "b"] {
        let group = format!("{}-{name}", env.group);
        env.create_group(&group, &last).await;
        let mut config = env.config(&["--workers", "2"]);
        config.redis.consumer_group = group.clone();
        config.redis.consumer_name = Some(format!("{}-{name}", env.name));
        replicas.push((group, env.start(config)));
    }
    // late records, half of them stored already, half new, interleaved, all at once
    let fresh: Vec<String> = (0..devices * 60)
        .map(|i| {
            payload(
                &format!("race-{}", i % devices),
                base + (i / devices) * 15 * minute + 7 * minute,
            )
        })
        .collect();
    let mut late = Vec::new();
    for (old, new) in stored.iter().zip(&fresh) {
        late.push(old.clone());
        late.push(new.clone());
    }
    env.publish(&late).await;

    let published = late.len() as u64;
    for (group, running) in &replicas {
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        while running.metrics.entries_acked.get() < published {
            assert!(
                std::time::Instant::now() < deadline,
                "replica of {group} stalled at {} of {published} acknowledged",
                running.metrics.entries_acked.get()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let total = (stored.len() + fresh.len()) as i64;
    assert_eq!(env.rows().await, total, "nothing doubled, nothing lost");
    assert_eq!(env.distinct_rows().await, total);
    let (mut inserted, mut duplicates) = (0, 0);
    for (group, running) in replicas {
        assert_eq!(
            running.metrics.dead_lettered.get(),
            0,
            "{group}: nothing refused"
        );
        inserted += running.metrics.positions_written.get();
        duplicates += running.metrics.duplicates.get();
        running.stop().await;
    }
    assert_eq!(
        inserted,
        fresh.len() as u64,
        "each new record inserted once"
    );
    assert_eq!(
        duplicates,
        2 * published - fresh.len() as u64,
        "every record a replica did not insert is a duplicate"
    );
    assert!(env.dead_letters().await.is_empty());
}
