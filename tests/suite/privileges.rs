//! Least privilege, through the binary: `processor migrate` as the schema's owner, the service
//! under a role with DML rights only, and under the minimal Redis ACL the docs give.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::harness::Test;
use crate::support::{drain_cleanly, free_port, http_get, payloads, Backend, TestEnv};

/// This module's tests, as the suite runs them (see `main.rs`).
pub fn tests() -> Vec<Test> {
    [
        trial!(a_dml_only_role_writes_a_migrated_schema, tokio = 2, on_both),
        trial!(
            a_dml_only_role_on_an_unmigrated_schema_waits_for_migrate,
            tokio = 2,
            on_both
        ),
        trial!(migrate_off_never_changes_the_schema, tokio = 2),
        trial!(migrate_that_fails_exits_2_with_one_line),
        trial!(the_service_runs_under_the_minimal_redis_acl, tokio = 2),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The Redis ACL the operating guide gives for the service and `processor dead-letters`,
/// without the key pattern.
const SERVICE_ACL: &[&str] = &[
    "+@stream",
    "+@scripting",
    "+type",
    "+exists",
    "+ping",
    "+info",
    "+client|setname",
    "+hello",
    "+auth",
    "+select",
];

/// A login role holding what the operating guide grants the service: `USAGE` on the schema, and
/// `SELECT, INSERT, UPDATE, DELETE` on its tables, now and (default privileges) on those the
/// owner creates later. Dropped by [`Role::drop_role`].
struct Role {
    name: String,
}

impl Role {
    async fn create(env: &TestEnv) -> Role {
        let name = format!("dml_{}_{}", std::process::id(), rand::random::<u32>());
        env.db
            .batch_execute(&format!(
                "CREATE ROLE {name} LOGIN;
                 GRANT USAGE ON SCHEMA {schema} TO {name};
                 GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {name};
                 ALTER DEFAULT PRIVILEGES IN SCHEMA {schema}
                   GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {name};",
                schema = env.schema
            ))
            .await
            .expect("create the DML role");
        Role { name }
    }

    /// `env`'s database URL, logging in as this role.
    fn url(&self, env: &TestEnv) -> String {
        let url = env
            .database_url
            .replacen("://postgres@", &format!("://{}@", self.name), 1);
        assert_ne!(
            url, env.database_url,
            "the test URL names the postgres user"
        );
        url
    }

    async fn drop_role(self, env: &TestEnv) {
        env.db
            .batch_execute(&format!(
                "DROP OWNED BY {name}; DROP ROLE {name}",
                name = self.name
            ))
            .await
            .expect("drop the DML role");
    }
}

/// Runs `processor migrate` as the schema's owner; returns its JSON report.
fn migrate_as_owner(env: &TestEnv) -> serde_json::Value {
    let mut command = Command::new(env!("CARGO_BIN_EXE_processor"));
    command
        .env_clear()
        .arg("migrate")
        .env("DATABASE_URL", &env.database_url)
        .env("LOG_FORMAT", "json");
    if env.backend == Backend::Postgres && env.servers.postgres_has_timescaledb {
        command.env("TIMESCALEDB", "off");
    }
    let output = command.output().expect("run processor migrate");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "processor migrate: {stderr}");
    serde_json::from_slice(&output.stdout).expect("migrate prints a JSON report")
}

/// Polls `/readyz` at `address` (waiting for the server to listen) until `until` holds of its
/// status and body; returns the body.
async fn readyz_until(
    address: std::net::SocketAddr,
    what: &str,
    until: impl Fn(u16, &str) -> bool,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if tokio::net::TcpStream::connect(address).await.is_ok() {
            let (code, body) = http_get(address, "/readyz").await;
            if until(code, &body) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "/readyz never showed {what}: {code} {body}"
            );
        }
        assert!(Instant::now() < deadline, "nothing listens on {address}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn table_rows(env: &TestEnv, table: &str) -> i64 {
    env.db
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .expect("count")
        .get(0)
}

async fn resume_point_stored(env: &TestEnv) -> bool {
    env.db
        .query_opt(
            "SELECT 1 FROM stream_offsets WHERE stream = $1 AND consumer_group = $2",
            &[&env.stream, &env.group],
        )
        .await
        .expect("stream_offsets")
        .is_some()
}

/// The schema migrated by its owner, then the service under `MIGRATE=auto` (the default) as a
/// role that may not change it: it finds nothing to change, runs no DDL, and writes every table.
async fn a_dml_only_role_writes_a_migrated_schema(backend: Backend) {
    let mut env = TestEnv::on(backend, "dml_role").await;
    let report = migrate_as_owner(&env);
    assert_eq!(
        report["applied"],
        serde_json::json!([1, 3, 4, 5, 6, 7]),
        "{report}"
    );
    let want = if backend == Backend::Timescale {
        "hypertable"
    } else {
        "plain table"
    };
    assert_eq!(report["positions"], want, "{report}");
    // a second run finds nothing to do
    assert_eq!(migrate_as_owner(&env)["applied"], serde_json::json!([]));
    let role = Role::create(&env).await;
    // another application's hypertable in a schema this role may not use: TimescaleDB's
    // information views that cast every hypertable's name to regclass fail on it
    let other = format!("{}_other", env.schema);
    if backend == Backend::Timescale {
        env.db
            .batch_execute(&format!(
                "CREATE SCHEMA {other};
                 CREATE TABLE {other}.readings (ts timestamptz NOT NULL, v int);
                 SELECT public.create_hypertable('{other}.readings', public.by_range('ts'));"
            ))
            .await
            .expect("another schema's hypertable");
    }
    let (devices, total) = (40, 4_000);
    env.publish(&payloads("dml", devices, total)).await;
    let url = role.url(&env);
    let child = env.spawn_binary(
        "dml",
        &[("DATABASE_URL", url.as_str()), ("DEVICE_LATEST", "on")],
    );
    env.wait_landed(total as i64, Duration::from_secs(60)).await;
    env.wait_for(
        Duration::from_secs(30),
        "the resume point",
        async |env: &mut TestEnv| resume_point_stored(env).await,
    )
    .await;
    let log = drain_cleanly(child).await;
    assert!(
        !log.contains("\"ERROR\""),
        "no error under a DML role:\n{log}"
    );
    assert_eq!(env.distinct_rows().await, total as i64);
    assert_eq!(env.rows().await, total as i64);
    assert_eq!(table_rows(&env, "device_latest").await, devices as i64);
    env.assert_table_kind().await;
    if backend == Backend::Timescale {
        env.db
            .batch_execute(&format!("DROP SCHEMA {other} CASCADE"))
            .await
            .expect("drop the other schema");
    }
    role.drop_role(&env).await;
}

/// The same role on a schema nobody has migrated: one ERROR naming what is missing and the
/// command that fixes it, `/readyz` 503 with the same; once the owner has run `processor
/// migrate`, the service carries on by itself and every row lands once.
async fn a_dml_only_role_on_an_unmigrated_schema_waits_for_migrate(backend: Backend) {
    let mut env = TestEnv::on(backend, "unmigrated").await;
    let role = Role::create(&env).await;
    let total = 1_000;
    env.publish(&payloads("wait", 20, total)).await;
    let port = free_port();
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let url = role.url(&env);
    let http = format!("127.0.0.1:{port}");
    let child = env.spawn_binary(
        "unmigrated",
        &[("DATABASE_URL", url.as_str()), ("HTTP_ADDR", http.as_str())],
    );
    let body = readyz_until(address, "the missing migrations", |code, body| {
        code == 503 && body.contains("not applied")
    })
    .await;
    assert!(body.contains("processor migrate"), "{body}");
    assert!(body.contains("0001_positions"), "{body}");
    assert_eq!(
        env.rows().await,
        -1,
        "no positions table before the owner migrates"
    );
    migrate_as_owner(&env);
    env.wait_landed(total as i64, Duration::from_secs(60)).await;
    readyz_until(address, "ready", |code, _| code == 200).await;
    let log = drain_cleanly(child).await;
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("\"ERROR\"")).collect();
    assert!(!errors.is_empty(), "an ERROR while unmigrated:\n{log}");
    // before the owner migrates, the ERROR names what is missing; while the owner's run is
    // under way one attempt can also meet a schema half set up (a TimescaleDB setting this role
    // may not apply): every ERROR names the command that fixes it
    assert!(errors[0].contains("not applied"), "{}", errors[0]);
    for line in &errors {
        assert!(
            line.contains("processor migrate"),
            "every ERROR names the command: {line}"
        );
    }
    assert!(log.contains("succeeded again"), "{log}");
    assert_eq!(env.distinct_rows().await, total as i64);
    assert_eq!(env.rows().await, total as i64);
    role.drop_role(&env).await;
}

/// `MIGRATE=off`, even for a role that could: nothing is created, `/readyz` says what to run;
/// after `processor migrate` it writes.
async fn migrate_off_never_changes_the_schema() {
    let mut env = TestEnv::new("migrate_off").await;
    let total = 500;
    env.publish(&payloads("off", 10, total)).await;
    let running = env.start(env.config(&["--migrate", "off"]));
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        let (code, body) = running.get("/readyz").await;
        if code == 503 && body.contains("MIGRATE=off") {
            break body;
        }
        assert!(Instant::now() < deadline, "/readyz: {code} {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(body.contains("processor migrate"), "{body}");
    let tables: i64 = env
        .db
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = $1",
            &[&env.schema],
        )
        .await
        .expect("pg_tables")
        .get(0);
    assert_eq!(tables, 0, "MIGRATE=off created something");
    migrate_as_owner(&env);
    env.wait_landed(total as i64, Duration::from_secs(60)).await;
    running.stop().await;
}

/// The service under exactly the documented Redis ACL (its keys and commands only): rows exact,
/// dead letters written, the resume point stored; `processor dead-letters` works under it too.
async fn the_service_runs_under_the_minimal_redis_acl() {
    let mut env = TestEnv::new("redis_acl").await;
    let user = format!("acl_{}_{}", std::process::id(), rand::random::<u32>());
    let mut setuser = redis::cmd("ACL");
    setuser
        .arg("SETUSER")
        .arg(&user)
        .arg("on")
        .arg(">secret-pw")
        .arg("resetkeys")
        .arg(format!("~{}*", env.stream))
        .arg("-@all")
        .arg(SERVICE_ACL);
    let () = setuser
        .query_async(&mut env.redis)
        .await
        .expect("ACL SETUSER");
    let good = payloads("acl", 20, 2_000);
    env.publish(&good).await;
    let refused = 7;
    for i in 0..refused {
        env.publish(&[format!(
            r#"{{"device_id":"acl-bad","timestamp":{i},"latitude":95,"longitude":0}}"#
        )])
        .await;
    }
    let redis_url =
        env.servers
            .redis_url
            .replacen("redis://", &format!("redis://{user}:secret-pw@"), 1);
    assert_ne!(redis_url, env.servers.redis_url);
    let child = env.spawn_binary("acl", &[("REDIS_URL", redis_url.as_str())]);
    env.wait_landed(good.len() as i64, Duration::from_secs(60))
        .await;
    env.wait_for(
        Duration::from_secs(30),
        "the dead letters and the resume point",
        async |env: &mut TestEnv| {
            env.dead_letters().await.len() == refused && resume_point_stored(env).await
        },
    )
    .await;
    let log = drain_cleanly(child).await;
    assert!(!log.contains("\"ERROR\""), "no error under the ACL:\n{log}");
    let output = Command::new(env!("CARGO_BIN_EXE_processor"))
        .env_clear()
        .args(["dead-letters", "stats", "--redis-url", &redis_url])
        .args(["--stream-key", &env.stream])
        .output()
        .expect("run dead-letters stats");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stats: serde_json::Value = serde_json::from_slice(&output.stdout).expect("stats JSON");
    assert_eq!(stats["total"], refused, "{stats}");
    let () = redis::cmd("ACL")
        .arg("DELUSER")
        .arg(&user)
        .query_async(&mut env.redis)
        .await
        .expect("ACL DELUSER");
}

/// `processor migrate` that cannot reach its database: exit 2 and one line naming where.
fn migrate_that_fails_exits_2_with_one_line() {
    let port = free_port();
    let output = Command::new(env!("CARGO_BIN_EXE_processor"))
        .env_clear()
        .arg("migrate")
        .env(
            "DATABASE_URL",
            format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        )
        .output()
        .expect("run processor migrate");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    assert!(output.stdout.is_empty());
}
