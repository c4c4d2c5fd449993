//! Migrations against a real PostgreSQL and a real TimescaleDB: idempotent, and safe when
//! replicas start together.

use processor::postgres::timescale::{HypertableConfig, Interval, Mode};
use processor::postgres::Storage;

use crate::support;
use crate::support::harness::Test;
use crate::support::{Backend, TestEnv};

/// This module's tests, as the suite runs them (see `main.rs`).
pub fn tests() -> Vec<Test> {
    [
        trial!(a_schema_named_in_the_url_is_created_when_missing, tokio = 2),
        trial!(
            replicas_migrating_at_once_apply_each_migration_once,
            tokio = 2,
            on_both
        ),
    ]
    .into_iter()
    .flatten()
    .collect()
}

const DEFAULTS: HypertableConfig = HypertableConfig {
    mode: Mode::Auto,
    chunk_interval: Interval::days(1),
    compress_after: Some(Interval::days(7)),
    retention: None,
};

async fn replicas_migrating_at_once_apply_each_migration_once(backend: Backend) {
    let env = TestEnv::on(backend, "migrate").await;
    let settings = HypertableConfig {
        mode: if backend == Backend::Postgres && env.servers.postgres_has_timescaledb {
            Mode::Off
        } else {
            Mode::Auto
        },
        ..DEFAULTS
    };
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let url = env.database_url.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = processor::postgres::connect(&url, None)
                .await
                .expect("connect");
            processor::postgres::migrate(&mut client, &settings)
                .await
                .expect("migrate")
        }));
    }
    let mut applied = Vec::new();
    for task in tasks {
        let report = task.await.expect("join");
        match (backend, &report.storage) {
            (Backend::Postgres, Storage::Plain(_)) => {}
            (Backend::Timescale, Storage::Hypertable { compress_after, .. }) => {
                assert_eq!(*compress_after, Some(Interval::days(7)));
            }
            (backend, storage) => panic!("{backend:?} gave {storage:?}"),
        }
        applied.extend(report.applied);
    }
    applied.sort_unstable();
    assert_eq!(
        applied,
        vec![1, 3, 4, 5, 6, 7],
        "each migration applied by exactly one replica"
    );
    env.assert_table_kind().await;
    if backend == Backend::Timescale {
        let jobs: i64 = env
            .db
            .query_one(
                "SELECT count(*) FROM timescaledb_information.jobs
                 WHERE hypertable_schema = $1 AND hypertable_name = 'positions'",
                &[&env.schema],
            )
            .await
            .expect("jobs")
            .get(0);
        assert_eq!(
            jobs, 1,
            "one compression policy, however many replicas set it"
        );
    }

    // a later start finds nothing to do
    let mut client = processor::postgres::connect(&env.database_url, None)
        .await
        .expect("connect");
    let again = processor::postgres::migrate(&mut client, &settings)
        .await
        .expect("migrate");
    assert!(again.applied.is_empty());
    let columns: Vec<String> = env
        .db
        .query(
            "SELECT column_name::text FROM information_schema.columns
             WHERE table_schema = $1 AND table_name = 'positions' ORDER BY ordinal_position",
            &[&env.schema],
        )
        .await
        .expect("columns")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        columns,
        [
            "device_id",
            "ts",
            "latitude",
            "longitude",
            "altitude",
            "angle",
            "speed",
            "satellites",
            "priority",
            "event_id",
            "attributes",
            "ingested_at"
        ]
    );
    // device ids compare byte by byte in every table keyed by them (0006_device_collation)
    let collations: Vec<(String, Option<String>)> = env
        .db
        .query(
            "SELECT table_name::text, collation_name::text FROM information_schema.columns
             WHERE table_schema = $1 AND column_name = 'device_id' ORDER BY table_name",
            &[&env.schema],
        )
        .await
        .expect("collations")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let tables: Vec<&str> = collations.iter().map(|(table, _)| table.as_str()).collect();
    assert_eq!(
        tables,
        [
            "device_latest",
            "positions",
            "trip_devices",
            "trip_runs",
            "trips"
        ]
    );
    assert!(
        collations.iter().all(|(_, c)| c.as_deref() == Some("C")),
        "{collations:?}"
    );
    // the primary key is positions' only index, on a hypertable too (no default index on ts:
    // each row would pay for a second btree)
    let indexes: Vec<String> = env
        .db
        .query(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = 'positions'",
            &[&env.schema],
        )
        .await
        .expect("indexes")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(indexes.len(), 1, "{indexes:?}");
    assert!(indexes[0].contains("(device_id, ts)"), "{indexes:?}");
}

/// `DATABASE_URL` selects a schema that does not exist yet: the service creates it (and says
/// so) instead of retrying forever with "no schema has been selected to create in".
async fn a_schema_named_in_the_url_is_created_when_missing() {
    let mut env = TestEnv::new("fresh_schema").await;
    let schema = format!("{}_fresh", env.schema);
    let mut config = env.config(&[]);
    config.postgres.link.url = env.database_url.replace(&env.schema, &schema);
    env.publish(&support::payloads("fresh", 3, 30)).await;
    let running = env.start(config);
    let count = format!("SELECT count(*) FROM {schema}.positions");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let rows: i64 = match env.db.query_one(count.as_str(), &[]).await {
            Ok(row) => row.get(0),
            Err(_) => 0,
        };
        if rows == 30 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the rows never landed in the new schema: {:?}",
            running.get("/readyz").await
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    running.stop().await;
    env.db
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .expect("drop the schema");
}
