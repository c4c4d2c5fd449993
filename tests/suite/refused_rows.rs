//! The database refuses rows the codec let through: exactly those rows are dead-lettered with the
//! server's reason, their neighbours land, and nothing stays pending. A schema error that hits
//! every row (the table gone) is not a row error: the service waits, says why, and lands
//! everything once the schema is back.

use std::time::Duration;

use crate::support;
use crate::support::harness::Test;
use crate::support::{payload, Backend, TestEnv};

/// This module's tests, as the suite runs them (see `main.rs`).
pub fn tests() -> Vec<Test> {
    [
        trial!(a_missing_table_stalls_says_why_and_recovers, tokio = 2),
        trial!(a_check_constraint_refuses_only_its_rows, tokio = 2, on_both),
        trial!(a_trigger_that_raises_for_one_device, tokio = 2, on_both),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// A contract payload for `device` at `ts_ms` moving at `speed` km/h.
fn at_speed(device: &str, ts_ms: i64, speed: u32) -> String {
    payload(device, ts_ms).replace("\"speed\":42", &format!("\"speed\":{speed}"))
}

/// `count` payloads over `devices` devices; every `every`-th one at 900 km/h.
fn with_speeding(count: usize, devices: usize, every: usize) -> (Vec<String>, usize) {
    let base = 1_790_000_000_000i64;
    let payloads: Vec<String> = (0..count)
        .map(|i| {
            let speed = if i % every == every - 1 { 900 } else { 60 };
            at_speed(
                &format!("car-{}", i % devices),
                base + (i as i64) * 1000,
                speed,
            )
        })
        .collect();
    (payloads, count / every)
}

async fn warm_up(env: &mut TestEnv) -> support::Running {
    env.publish(&[payload("warm", 1_780_000_000_000)]).await;
    let running = env.start(env.config(&[]));
    env.wait_landed(1, Duration::from_secs(30)).await;
    running
}

async fn a_check_constraint_refuses_only_its_rows(backend: Backend) {
    let mut env = TestEnv::on(backend, "check_refuses").await;
    let running = warm_up(&mut env).await;
    env.db
        .batch_execute(
            "ALTER TABLE positions ADD CONSTRAINT speed_lt_500 CHECK (speed < 500) NOT VALID",
        )
        .await
        .expect("add the constraint");
    let (published, speeding) = with_speeding(300, 20, 50);
    for chunk in published.chunks(30) {
        env.publish(chunk).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let landed = 1 + published.len() - speeding;
    env.wait_landed(landed as i64, Duration::from_secs(60))
        .await;
    env.wait_for(
        Duration::from_secs(30),
        "the refused rows' dead letters",
        async |env: &mut TestEnv| env.dead_letters().await.len() == speeding,
    )
    .await;
    let letters = env.dead_letters().await;
    for letter in &letters {
        let error = &letter["error"];
        assert!(
            error.starts_with("postgres 23514 speed_lt_500:"),
            "the reason names the SQLSTATE and the constraint: {error}"
        );
        // the re-encoded payload decodes to the refused row
        let row = dataflow::codec::decode_payload(letter["payload"].as_bytes()).expect("decodes");
        assert_eq!(row.speed, Some(900.0));
        assert!(letter["source_id"].contains('-'), "{letter:?}");
    }
    let speeding_stored: i64 = env
        .db
        .query_one("SELECT count(*) FROM positions WHERE speed >= 500", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(speeding_stored, 0);
    assert_eq!(
        running
            .metrics
            .refused_rows
            .with_label_values(&["23514"])
            .get(),
        speeding as u64
    );
    assert_eq!(env.pending().await, 0);
    running.stop().await;
    env.assert_table_kind().await;
}

async fn a_trigger_that_raises_for_one_device(backend: Backend) {
    let mut env = TestEnv::on(backend, "trigger_refuses").await;
    let running = warm_up(&mut env).await;
    env.db
        .batch_execute(
            "CREATE FUNCTION refuse_blocked() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF NEW.device_id = 'car-3' THEN
                     RAISE EXCEPTION 'device % is blocked', NEW.device_id;
                 END IF;
                 RETURN NEW;
             END $$;
             CREATE TRIGGER refuse_blocked BEFORE INSERT ON positions
                 FOR EACH ROW EXECUTE FUNCTION refuse_blocked();",
        )
        .await
        .expect("the trigger");
    let (published, _) = with_speeding(200, 10, 1_000_000);
    env.publish(&published).await;
    env.wait_landed(1 + 180, Duration::from_secs(60)).await;
    env.wait_for(
        Duration::from_secs(30),
        "the blocked device's dead letters",
        async |env: &mut TestEnv| env.dead_letters().await.len() == 20,
    )
    .await;
    for letter in env.dead_letters().await {
        assert!(
            letter["error"].starts_with("postgres P0001: device car-3 is blocked"),
            "{letter:?}"
        );
    }
    let blocked: i64 = env
        .db
        .query_one(
            "SELECT count(*) FROM positions WHERE device_id = 'car-3'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(blocked, 0);
    assert_eq!(env.pending().await, 0);
    running.stop().await;
}

/// The table renamed away for a few seconds: every row would fail, so nothing is a row error.
/// Nothing is dead-lettered, `/readyz` says why meanwhile, and everything lands after.
async fn a_missing_table_stalls_says_why_and_recovers() {
    let mut env = TestEnv::new("table_away").await;
    let running = warm_up(&mut env).await;
    env.db
        .batch_execute("ALTER TABLE positions RENAME TO positions_away")
        .await
        .expect("rename away");
    let (published, _) = with_speeding(100, 10, 1_000_000);
    env.publish(&published).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let body = loop {
        let (code, body) = running.get("/readyz").await;
        if code == 503 && body.contains("\"name\":\"operations\",\"ok\":false") {
            break body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/readyz: {code} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        body.contains("epoch write") && body.contains("42P01"),
        "/readyz names the failing write and its reason: {body}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        env.pending().await,
        100,
        "nothing acknowledged while the table is away"
    );
    env.db
        .batch_execute("ALTER TABLE positions_away RENAME TO positions")
        .await
        .expect("rename back");
    env.wait_landed(101, Duration::from_secs(60)).await;
    assert!(env.dead_letters().await.is_empty(), "nothing dead-lettered");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (code, body) = running.get("/readyz").await;
        if code == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/readyz: {code} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    running.stop().await;
}
