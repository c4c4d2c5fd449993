//! Where the test servers are: found once per test process, in the order the README gives
//! (a variable, a local server that answers, a testcontainers container), so that every test
//! shares the same Redis and PostgreSQL and a missing one fails with one message naming the ways.
//! TimescaleDB is looked for on its own ([`timescaledb_url`]): the runner asks for it at start-up
//! to decide whether the tests that need it run or show as ignored.

use std::sync::OnceLock;
use std::time::Duration;

/// Which kind of database a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// PostgreSQL where `positions` stays a plain table.
    Postgres,
    /// PostgreSQL with TimescaleDB preloaded: `positions` is a hypertable.
    Timescale,
}

/// Where the test servers are.
#[derive(Clone, Debug)]
pub struct Servers {
    pub redis_url: String,
    /// A plain PostgreSQL.
    pub database_url: String,
    /// Whether that server has TimescaleDB preloaded (then the plain tests switch it off).
    pub postgres_has_timescaledb: bool,
    /// A PostgreSQL with TimescaleDB preloaded, if one was found.
    pub timescaledb_url: Option<String>,
}

static SERVERS: OnceLock<Servers> = OnceLock::new();

pub const HOW: &str = "integration tests need Redis 7 and PostgreSQL: set TEST_REDIS_URL and \
TEST_DATABASE_URL, or run them locally on 127.0.0.1:6379 and 127.0.0.1:5432 (user postgres, \
trust auth), or make a Docker engine reachable for testcontainers";

const HOW_TIMESCALEDB: &str = "set TEST_TIMESCALEDB_URL, or run a PostgreSQL with \
shared_preload_libraries = 'timescaledb' on 127.0.0.1:5433 (see the README's \"Tests\"), or make a \
Docker engine reachable for testcontainers";

/// The servers, found once per test binary.
pub fn servers() -> Servers {
    SERVERS
        .get_or_init(|| {
            // Discovery may start containers with a blocking runner and queries servers with a
            // runtime of its own, which must not run inside the test's async runtime: do it on a
            // thread of its own.
            std::thread::spawn(discover)
                .join()
                .unwrap_or_else(|_| panic!("{HOW}"))
        })
        .clone()
}

fn discover() -> Servers {
    let redis_url = std::env::var("TEST_REDIS_URL")
        .ok()
        .or_else(|| answers("127.0.0.1:6379").then(|| "redis://127.0.0.1:6379".to_owned()))
        .unwrap_or_else(redis_container);
    let database_url = std::env::var("TEST_DATABASE_URL")
        .ok()
        .or_else(|| {
            answers("127.0.0.1:5432")
                .then(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
        })
        .unwrap_or_else(|| {
            postgres_container("postgres", "16").unwrap_or_else(|e| panic!("{HOW} ({e})"))
        });
    let postgres_has_timescaledb = timescaledb_preloaded(&database_url).unwrap_or(false);
    let timescaledb_url = timescaledb_url();
    Servers {
        redis_url,
        database_url,
        postgres_has_timescaledb,
        timescaledb_url,
    }
}

/// A PostgreSQL with TimescaleDB preloaded: `TEST_TIMESCALEDB_URL` (set but empty: none, to run
/// without it where 5433 answers); else 127.0.0.1:5433 if it answers with the extension
/// preloaded; else a container. Looked for once per test process, apart from Redis and plain
/// PostgreSQL, because the runner asks for it before any test runs.
pub fn timescaledb_url() -> Option<String> {
    static TIMESCALEDB: OnceLock<Option<String>> = OnceLock::new();
    TIMESCALEDB
        .get_or_init(|| {
            // as in `servers`: the probe runs a runtime of its own, never inside a test's
            std::thread::spawn(|| match std::env::var("TEST_TIMESCALEDB_URL") {
                Ok(url) if url.is_empty() => None,
                Ok(url) => Some(url),
                Err(_) => {
                    let local = "postgres://postgres@127.0.0.1:5433/postgres";
                    (answers("127.0.0.1:5433") && timescaledb_preloaded(local) == Some(true))
                        .then(|| local.to_owned())
                        .or_else(|| postgres_container("timescale/timescaledb", "latest-pg16").ok())
                }
            })
            .join()
            .unwrap_or(None)
        })
        .clone()
}

fn answers(address: &str) -> bool {
    address
        .parse()
        .ok()
        .and_then(|addr| std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok())
        .is_some()
}

/// Whether the server at `url` has TimescaleDB's loader preloaded (`None`: unreachable).
fn timescaledb_preloaded(url: &str) -> Option<bool> {
    query_bool(
        url,
        "SELECT current_setting('timescaledb.max_background_workers', true) IS NOT NULL",
    )
}

/// Whether the plain PostgreSQL has TimescaleDB's files installed but not preloaded, the state
/// of a fresh package install that one test needs. An unreachable server counts as yes, so that
/// the test runs and fails saying so rather than showing as ignored.
pub fn timescaledb_installed_not_preloaded() -> bool {
    let servers = servers();
    !servers.postgres_has_timescaledb
        && query_bool(
            &servers.database_url,
            "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')",
        ) != Some(false)
}

/// The one boolean `sql` answers on the server at `url` (`None`: unreachable), on a runtime of
/// its own: callers are never inside a test's runtime.
fn query_bool(url: &str, sql: &str) -> Option<bool> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .ok()?;
        tokio::spawn(connection);
        let row = client.query_one(sql, &[]).await.ok()?;
        Some(row.get(0))
    })
}

/// A Redis 7 container. It outlives the test process (the harness has no hook at exit, so the
/// container is leaked on purpose: testcontainers' reaper or `docker rm` removes it).
fn redis_container() -> String {
    use testcontainers_modules::redis::{Redis, REDIS_PORT};
    use testcontainers_modules::testcontainers::runners::SyncRunner;
    use testcontainers_modules::testcontainers::ImageExt;

    let container = Redis::default()
        .with_tag("7")
        .start()
        .unwrap_or_else(|e| panic!("{HOW} ({e})"));
    let port = container
        .get_host_port_ipv4(REDIS_PORT)
        .unwrap_or_else(|e| panic!("{HOW} ({e})"));
    std::mem::forget(container);
    format!("redis://127.0.0.1:{port}")
}

/// A PostgreSQL container of `image:tag` with trust auth (leaked like the Redis one).
fn postgres_container(image: &str, tag: &str) -> Result<String, String> {
    use testcontainers_modules::postgres::Postgres;
    use testcontainers_modules::testcontainers::runners::SyncRunner;
    use testcontainers_modules::testcontainers::ImageExt;

    let container = Postgres::default()
        .with_host_auth()
        .with_name(image)
        .with_tag(tag)
        .start()
        .map_err(|e| e.to_string())?;
    let port = container
        .get_host_port_ipv4(5432)
        .map_err(|e| e.to_string())?;
    std::mem::forget(container);
    Ok(format!("postgres://postgres@127.0.0.1:{port}/postgres"))
}

/// The database URL for `backend`. A test that needs TimescaleDB runs without one only when it
/// was asked to (`REQUIRE_TIMESCALEDB=1`, `--ignored`, `--include-ignored`): then it fails here.
pub fn database_for(backend: Backend, test: &str) -> String {
    let servers = servers();
    match backend {
        Backend::Postgres => servers.database_url,
        Backend::Timescale => servers.timescaledb_url.unwrap_or_else(|| {
            panic!(
                "{test}: no TimescaleDB server found, and this test needs one ({HOW_TIMESCALEDB})"
            )
        }),
    }
}
