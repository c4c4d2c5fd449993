//! A database that refuses every row holds the stream instead of dead-lettering it; bad rows
//! among good ones are still dead-lettered; one bad entry on a quiet stream is dead-lettered at
//! once. Through the binary, on PostgreSQL and TimescaleDB, each case fixed while it runs.

use std::net::SocketAddr;
use std::process::Child;
use std::time::{Duration, Instant};

use crate::support::harness::{Test, TIMESCALEDB};
use crate::support::{
    free_port, http_get, payload, payloads, samples, signal, wait_exit, Backend, TestEnv,
};

/// This module's tests, as the suite runs them (see `main.rs`).
pub fn tests() -> Vec<Test> {
    [
        trial!(
            a_trigger_refusing_every_row_holds_the_stream,
            tokio = 2,
            on_both
        ),
        trial!(a_not_null_column_added_holds_the_stream, tokio = 2),
        trial!(
            a_check_no_row_passes_holds_the_stream,
            tokio = 2,
            needs = TIMESCALEDB
        ),
        trial!(
            two_percent_refused_under_load_are_dead_lettered,
            tokio = 2,
            on_both
        ),
        trial!(
            one_bad_entry_on_a_quiet_stream_is_dead_lettered_at_once,
            tokio = 2,
            on_both
        ),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The binary, two workers, its HTTP server on a port the test knows.
fn spawn(env: &TestEnv, extra: &[(&str, &str)]) -> (Child, SocketAddr) {
    let http: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let address = http.to_string();
    let mut vars = vec![("HTTP_ADDR", address.as_str()), ("WORKERS", "2")];
    vars.extend_from_slice(extra);
    (env.spawn_binary("refusals", &vars), http)
}

/// Polls `/readyz` until its status is `code` and its body holds every one of `words`.
async fn wait_readyz(http: SocketAddr, code: u16, words: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // (until the binary listens, a connection is refused)
        let listening = tokio::net::TcpStream::connect(http).await.is_ok();
        if listening {
            let (got, body) = http_get(http, "/readyz").await;
            if got == code && words.iter().all(|word| body.contains(word)) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "/readyz: {got} {body}, expected {code} with {words:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A `CHECK` that a row at 900 km/h breaks (`payload`'s are at 42).
async fn not_fast(env: &TestEnv) {
    env.db
        .batch_execute("ALTER TABLE positions ADD CONSTRAINT not_fast CHECK (speed < 500)")
        .await
        .expect("the constraint");
}

async fn metric(http: SocketAddr, name: &str) -> f64 {
    let (_, text) = http_get(http, "/metrics").await;
    samples(&text).get(name).copied().unwrap_or(0.0)
}

/// `breakage` makes the database refuse every row for `sqlstate`; 3,000 entries published in a
/// burst over 100 devices are held (at most a handful dead-lettered, nothing written), `/readyz`
/// and one kind of ERROR say why; after `fix` everything else lands, once.
async fn every_row_refused(
    backend: Backend,
    test: &str,
    breakage: &str,
    fix: &str,
    sqlstate: &str,
) {
    let mut env = TestEnv::on(backend, test).await;
    let (child, http) = spawn(&env, &[]);
    wait_readyz(http, 200, &[]).await; // migrated and joined: the table exists, and is empty
    env.db
        .batch_execute(breakage)
        .await
        .expect("break the table");
    let published = payloads("held", 100, 3000);
    env.publish(&published).await;

    let body = wait_readyz(http, 503, &["refuses every row", sqlstate]).await;
    assert!(body.contains("epoch write"), "{body}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(http, "processor_refused_rows_held").await == 0.0 {
        assert!(Instant::now() < deadline, "rows held are counted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await; // it stays so
    let dead = env.dead_letters().await.len();
    assert!(
        dead <= 10,
        "at most a handful dead-lettered before the refusal is seen as systematic: {dead}"
    );
    assert_eq!(env.rows().await, 0, "nothing written");
    assert!(env.pending().await > 0, "the entries read stay pending");
    let acked = metric(http, "processor_entries_acked_total").await;
    assert!(
        acked <= dead as f64,
        "nothing acknowledged but the dead-lettered entries' epochs: {acked}"
    );

    env.db.batch_execute(fix).await.expect("fix the table");
    let landed = (published.len() - dead) as i64;
    env.wait_landed(landed, Duration::from_secs(120)).await;
    assert_eq!(env.distinct_rows().await, landed, "each entry once");
    assert_eq!(
        env.dead_letters().await.len(),
        dead,
        "nothing more dead-lettered"
    );
    wait_readyz(http, 200, &[]).await;
    assert_eq!(metric(http, "processor_refused_rows_held").await, 0.0);
    signal(&child, "TERM");
    let (status, log) = wait_exit(child, Duration::from_secs(30));
    assert!(status.success(), "{status:?}\n{log}");
    let errors: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("\"level\":\"ERROR\""))
        .collect();
    assert!(!errors.is_empty(), "an ERROR says why:\n{log}");
    for line in &errors {
        assert!(
            line.contains("refuses every row") && line.contains(sqlstate),
            "every ERROR names the systematic refusal: {line}"
        );
    }
    env.assert_table_kind().await;
}

const TRIGGER: &str = "CREATE FUNCTION audit_down() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN RAISE EXCEPTION 'audit service unavailable'; END $$;
     CREATE TRIGGER audit_down BEFORE INSERT ON positions
         FOR EACH ROW EXECUTE FUNCTION audit_down();";

async fn a_trigger_refusing_every_row_holds_the_stream(backend: Backend) {
    every_row_refused(
        backend,
        "held_trigger",
        TRIGGER,
        "DROP TRIGGER audit_down ON positions",
        "P0001",
    )
    .await;
}

const NOT_NULL: &str = "ALTER TABLE positions ADD COLUMN note text NOT NULL";
const NULL_AGAIN: &str = "ALTER TABLE positions ALTER COLUMN note DROP NOT NULL";

/// (on PostgreSQL: on TimescaleDB, see the next test)
async fn a_not_null_column_added_holds_the_stream() {
    every_row_refused(
        Backend::Postgres,
        "held_not_null",
        NOT_NULL,
        NULL_AGAIN,
        "23502",
    )
    .await;
}

/// On TimescaleDB a `NOT NULL` column without a default cannot be added to `positions` at all
/// (TimescaleDB refuses it for a hypertable with the columnstore on), so the same refusal of
/// every row comes from a `CHECK` no row passes.
async fn a_check_no_row_passes_holds_the_stream() {
    every_row_refused(
        Backend::Timescale,
        "held_check",
        "ALTER TABLE positions ADD CONSTRAINT on_the_moon CHECK (latitude > 1000) NOT VALID",
        "ALTER TABLE positions DROP CONSTRAINT on_the_moon",
        "23514",
    )
    .await;
}

/// A `CHECK` that 2% of the rows fail, under load (6,000 entries over 300 devices, published in
/// bursts while the service writes): exactly those are dead-lettered, the stream never stalls,
/// and once the `CHECK` is dropped the next ones land.
async fn two_percent_refused_under_load_are_dead_lettered(backend: Backend) {
    let mut env = TestEnv::on(backend, "two_percent").await;
    let (child, http) = spawn(&env, &[]);
    wait_readyz(http, 200, &[]).await;
    not_fast(&env).await;
    let mut published = payloads("load", 300, 6000);
    for (i, payload) in published.iter_mut().enumerate() {
        if i % 50 == 17 {
            *payload = payload.replace("\"speed\":42", "\"speed\":900");
        }
    }
    let bad = published.len() / 50;
    for chunk in published.chunks(500) {
        env.publish(chunk).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    env.wait_landed((published.len() - bad) as i64, Duration::from_secs(120))
        .await;
    let letters = env.dead_letters().await;
    assert_eq!(letters.len(), bad, "exactly the bad rows are dead-lettered");
    assert!(letters
        .iter()
        .all(|l| l["error"].starts_with("postgres 23514 not_fast:")));
    assert_eq!(metric(http, "processor_refused_rows_held").await, 0.0);
    wait_readyz(http, 200, &[]).await;

    env.db
        .batch_execute("ALTER TABLE positions DROP CONSTRAINT not_fast")
        .await
        .expect("drop the constraint");
    env.publish(
        &[payload("load-late", 1_790_000_999_000).replace("\"speed\":42", "\"speed\":900")],
    )
    .await;
    env.wait_landed((published.len() - bad + 1) as i64, Duration::from_secs(60))
        .await;
    signal(&child, "TERM");
    let (status, log) = wait_exit(child, Duration::from_secs(30));
    assert!(status.success(), "{status:?}\n{log}");
    assert!(
        !log.contains("\"level\":\"ERROR\""),
        "bad rows among good ones are no ERROR:\n{log}"
    );
}

/// One bad entry on an otherwise idle stream is dead-lettered at once (no evidence is waited
/// for), then the stream goes on; with `REFUSED_ROWS=dead-letter`, even a database refusing every
/// row only dead-letters.
async fn one_bad_entry_on_a_quiet_stream_is_dead_lettered_at_once(backend: Backend) {
    let mut env = TestEnv::on(backend, "quiet_bad").await;
    let (child, http) = spawn(&env, &[]);
    wait_readyz(http, 200, &[]).await;
    not_fast(&env).await;
    let started = Instant::now();
    env.publish(&[payload("quiet", 1_790_000_000_000).replace("\"speed\":42", "\"speed\":900")])
        .await;
    env.wait_for(
        Duration::from_secs(10),
        "the bad entry's dead letter",
        async |env: &mut TestEnv| env.dead_letters().await.len() == 1 && env.pending().await == 0,
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(10));
    // bad entries of many devices, in small bursts between good ones: each good row written
    // ends the streak, so 12 bad rows of 12 devices are dead-lettered, none held
    let mut good = 0;
    for burst in 0..4 {
        let bad: Vec<String> = (0..3)
            .map(|d| {
                payload(&format!("bursty-{burst}-{d}"), 1_790_000_000_000)
                    .replace("\"speed\":42", "\"speed\":900")
            })
            .collect();
        env.publish(&bad).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        env.publish(&[payload("good", 1_790_000_000_000 + burst * 1000)])
            .await;
        good += 1;
        env.wait_landed(good, Duration::from_secs(30)).await;
    }
    env.wait_for(
        Duration::from_secs(30),
        "every bad entry's dead letter",
        async |env: &mut TestEnv| env.dead_letters().await.len() == 13 && env.pending().await == 0,
    )
    .await;
    assert_eq!(metric(http, "processor_refused_rows_held").await, 0.0);
    env.db
        .batch_execute("ALTER TABLE positions DROP CONSTRAINT not_fast")
        .await
        .expect("drop the constraint");
    env.publish(&[payload("quiet", 1_790_000_001_000)]).await;
    env.wait_landed(good + 1, Duration::from_secs(30)).await;
    wait_readyz(http, 200, &[]).await;
    signal(&child, "TERM");
    assert!(wait_exit(child, Duration::from_secs(30)).0.success());

    // the trade-off's other side: every refused row dead-lettered, the stream never held
    let (child, http) = spawn(&env, &[("REFUSED_ROWS", "dead-letter")]);
    wait_readyz(http, 200, &[]).await;
    env.db.batch_execute(TRIGGER).await.expect("the trigger");
    env.publish(&payloads("every", 20, 200)).await;
    env.wait_for(
        Duration::from_secs(30),
        "every row dead-lettered",
        async |env: &mut TestEnv| env.dead_letters().await.len() == 213 && env.pending().await == 0,
    )
    .await;
    assert_eq!(metric(http, "processor_refused_rows_held").await, 0.0);
    signal(&child, "TERM");
    assert!(wait_exit(child, Duration::from_secs(30)).0.success());
}
