//! Migrations against a real PostgreSQL: idempotent, and safe when replicas start together.

mod support;

use support::TestEnv;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_migrating_at_once_apply_each_migration_once() {
    let env = TestEnv::new("migrate").await;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let url = env.database_url.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = processor::postgres::connect(&url, None)
                .await
                .expect("connect");
            processor::postgres::migrate(&mut client)
                .await
                .expect("migrate")
        }));
    }
    let mut applied = Vec::new();
    for task in tasks {
        let report = task.await.expect("join");
        assert!(!report.hypertable, "this server has no timescaledb");
        applied.extend(report.applied);
    }
    applied.sort_unstable();
    assert_eq!(
        applied,
        vec![1, 2],
        "each migration applied by exactly one replica"
    );

    // a later start finds nothing to do
    let mut client = processor::postgres::connect(&env.database_url, None)
        .await
        .expect("connect");
    let again = processor::postgres::migrate(&mut client)
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
}
