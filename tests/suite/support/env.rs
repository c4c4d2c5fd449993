//! [`TestEnv`], one test's private namespace on the shared servers (stream, group, dead-letter
//! stream, PostgreSQL schema, named after the test process, the host and the test, so tests run
//! in parallel and a passing one leaves nothing behind), with what tests do in it: publish, wait
//! for rows, read Redis' view, start the service in this process ([`Running`]) or as the binary.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use processor::config::Config;
use processor::metrics::Metrics;
use processor::pipeline::Faults;
use processor::shutdown::Shutdown;
use processor::{RunError, RunReport};
use redis::AsyncCommands;

use super::http::http_get;
use super::servers::{database_for, servers, Backend, Servers, HOW};

/// One test's private namespace on the shared servers.
pub struct TestEnv {
    /// The server's URL (no schema selected).
    server_url: String,
    pub backend: Backend,
    pub name: String,
    pub servers: Servers,
    pub stream: String,
    pub group: String,
    pub dead_letter: String,
    pub schema: String,
    /// `DATABASE_URL` for the processor: the test's schema first on `search_path`.
    pub database_url: String,
    pub redis: redis::aio::MultiplexedConnection,
    pub db: tokio_postgres::Client,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// This host's tag in namespace names: `h` and 6 hex digits of a hash of its name, so that hosts
/// sharing a server tell their namespaces apart (and a name stays within PostgreSQL's 63 bytes).
fn host_tag() -> String {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| {
        let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_default();
        let hash = name.trim().bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        format!("h{:06x}", hash & 0xff_ffff)
    })
    .clone()
}
/// The database URLs swept by this test process, and whether Redis was.
static SWEPT: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Removes what earlier test processes of this host left behind, once per test process and
/// server: the schemas and Redis keys of every namespace `t<pid>_<host>_...` whose host is this
/// one and whose process is gone. A namespace of another host (a Redis or PostgreSQL shared by
/// several machines or containers) is never touched: its process cannot be seen from here. A
/// passing test drops its own namespace when its `TestEnv` goes (see `Drop`); a failed test's
/// stays for inspection until the next run on this host.
async fn sweep_leftovers(
    database_url: &str,
    db: &tokio_postgres::Client,
    redis: &mut redis::aio::MultiplexedConnection,
) {
    // Whether a process lives is read from /proc: without it (not Linux) nothing is swept.
    if !std::path::Path::new("/proc/self").exists() {
        return;
    }
    let (sweep_db, sweep_redis) = {
        let mut swept = SWEPT
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let first = swept.is_empty();
        if swept.iter().any(|url| url == database_url) {
            (false, false)
        } else {
            swept.push(database_url.to_owned());
            (true, first)
        }
    };
    let host = host_tag();
    let gone = |name: &str| {
        let mut parts = name.strip_prefix('t').unwrap_or_default().split('_');
        let pid = parts.next().and_then(|pid| pid.parse::<u32>().ok());
        let ours = parts.next() == Some(host.as_str());
        ours && pid.is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
    };
    if sweep_db {
        let schemas = db
            .query(
                "SELECT nspname::text FROM pg_namespace WHERE nspname ~ '^t[0-9]+_'",
                &[],
            )
            .await
            .unwrap_or_default();
        for row in schemas {
            let schema: String = row.get(0);
            if gone(&schema) {
                let drop = format!(
                    "SET lock_timeout = '2s'; DROP SCHEMA IF EXISTS \"{schema}\" CASCADE; RESET lock_timeout"
                );
                let _ = db.batch_execute(&drop).await;
            }
        }
    }
    if sweep_redis {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("t[0-9]*_*")
            .query_async(redis)
            .await
            .unwrap_or_default();
        let stale: Vec<&String> = keys.iter().filter(|key| gone(key)).collect();
        for chunk in stale.chunks(500) {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(chunk).query_async(redis).await;
        }
    }
}

impl TestEnv {
    /// A fresh namespace named after the test, on plain PostgreSQL.
    pub async fn new(test: &str) -> TestEnv {
        TestEnv::on(Backend::Postgres, test).await
    }

    /// A fresh namespace named after the test on `backend` (which must be there: a test that
    /// needs TimescaleDB is ignored where there is none, see `harness.rs`).
    pub async fn on(backend: Backend, test: &str) -> TestEnv {
        let servers = servers();
        let server_url = database_for(backend, test);
        let name = format!(
            "t{}_{}_{}_{}_{}",
            std::process::id(),
            host_tag(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            rand::random::<u16>(),
            test
        );
        let schema = name.to_lowercase();
        let separator = if server_url.contains('?') { '&' } else { '?' };
        let database_url = format!("{server_url}{separator}options=-csearch_path%3D{schema}");
        let (db, connection) = tokio_postgres::connect(&server_url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("{HOW} ({e})"));
        tokio::spawn(connection);
        db.batch_execute(&format!(
            "CREATE SCHEMA {schema}; SET search_path TO {schema}"
        ))
        .await
        .expect("create the test schema");
        let client = redis::Client::open(servers.redis_url.as_str()).expect("redis url");
        let mut redis = client
            .get_multiplexed_async_connection()
            .await
            .unwrap_or_else(|e| panic!("{HOW} ({e})"));
        sweep_leftovers(&server_url, &db, &mut redis).await;
        TestEnv {
            server_url,
            backend,
            stream: format!("{name}:t"),
            group: format!("{name}-g"),
            dead_letter: format!("{name}:t:dead"),
            name,
            servers,
            schema,
            database_url,
            redis,
            db,
        }
    }

    /// The setting that keeps `positions` plain on a plain-PostgreSQL test whose server happens
    /// to have TimescaleDB preloaded (empty otherwise).
    fn backend_vars(&self) -> Vec<(String, String)> {
        if self.backend == Backend::Postgres && self.servers.postgres_has_timescaledb {
            vec![("TIMESCALEDB".to_owned(), "off".to_owned())]
        } else {
            Vec::new()
        }
    }

    /// Asserts that `positions` is what this test's backend makes it: a hypertable on
    /// TimescaleDB, a plain table on PostgreSQL.
    pub async fn assert_table_kind(&self) {
        let has_extension: bool = self
            .db
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')",
                &[],
            )
            .await
            .expect("pg_extension")
            .get(0);
        let hypertable = has_extension
            && self
                .db
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM timescaledb_information.hypertables
                     WHERE hypertable_schema = $1 AND hypertable_name = 'positions')",
                    &[&self.schema],
                )
                .await
                .expect("timescaledb_information.hypertables")
                .get::<_, bool>(0);
        assert_eq!(
            hypertable,
            self.backend == Backend::Timescale,
            "positions in {} on {:?}: hypertable = {hypertable}",
            self.schema,
            self.backend
        );
    }

    /// The processor's configuration for this namespace, plus `extra` flags.
    pub fn config(&self, extra: &[&str]) -> Config {
        let mut args = vec![
            "processor".to_owned(),
            "--redis-url".to_owned(),
            self.servers.redis_url.clone(),
            "--database-url".to_owned(),
            self.database_url.clone(),
            "--stream-key".to_owned(),
            self.stream.clone(),
            "--consumer-group".to_owned(),
            self.group.clone(),
            "--consumer-name".to_owned(),
            format!("{}-c", self.name),
            "--epoch-ms".to_owned(),
            "20".to_owned(),
            "--read-block-ms".to_owned(),
            "200".to_owned(),
            "--retry-max-ms".to_owned(),
            "500".to_owned(),
        ];
        for (name, value) in self.backend_vars() {
            args.push(format!(
                "--{}={value}",
                name.to_lowercase().replace('_', "-")
            ));
        }
        // one worker unless the test says otherwise (the default is the machine's cores)
        if !extra.iter().any(|arg| arg.starts_with("--workers")) {
            args.extend(["--workers".to_owned(), "1".to_owned()]);
        }
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        Config::from_args(args).unwrap_or_else(|e| panic!("test configuration: {e}"))
    }

    /// The configuration of process `index` of a two-process timely cluster on `hosts` (two
    /// workers each), with its own consumer name, plus `extra` flags.
    pub fn cluster_process(&self, hosts: &str, index: usize, extra: &[&str]) -> Config {
        let index_text = index.to_string();
        let mut args = vec![
            "--workers",
            "2",
            "--processes",
            "2",
            "--process-index",
            &index_text,
            "--timely-hosts",
            hosts,
        ];
        args.extend_from_slice(extra);
        let mut config = self.config(&args);
        config.redis.consumer_name = Some(format!("{}-p{index}", self.name));
        config
    }

    /// The same settings as environment variables, for the binary.
    pub fn env_vars(&self, consumer: &str) -> Vec<(String, String)> {
        [
            ("REDIS_URL", self.servers.redis_url.clone()),
            ("DATABASE_URL", self.database_url.clone()),
            ("STREAM_KEY", self.stream.clone()),
            ("CONSUMER_GROUP", self.group.clone()),
            ("CONSUMER_NAME", consumer.to_owned()),
            ("EPOCH_MS", "20".to_owned()),
            ("READ_BLOCK_MS", "200".to_owned()),
            ("RETRY_MAX_MS", "500".to_owned()),
            ("LOG_FORMAT", "json".to_owned()),
            ("RUST_LOG", "info".to_owned()),
            // the default 0.0.0.0:9090 would collide between tests running in parallel
            ("HTTP_ADDR", "127.0.0.1:0".to_owned()),
            // one worker unless the test sets WORKERS (the default is the machine's cores)
            ("WORKERS", "1".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .chain(self.backend_vars())
        .collect()
    }

    /// Appends entries (`payload` field) in pipelined batches; returns their ids.
    pub async fn publish(&mut self, payloads: &[String]) -> Vec<String> {
        let mut ids = Vec::with_capacity(payloads.len());
        for chunk in payloads.chunks(1000) {
            let mut pipe = redis::pipe();
            for payload in chunk {
                pipe.cmd("XADD")
                    .arg(&self.stream)
                    .arg("*")
                    .arg("payload")
                    .arg(payload);
            }
            let chunk_ids: Vec<String> = pipe.query_async(&mut self.redis).await.expect("XADD");
            ids.extend(chunk_ids);
        }
        ids
    }

    /// Appends one entry with arbitrary fields.
    pub async fn publish_fields(&mut self, fields: &[(String, String)]) -> String {
        self.redis
            .xadd(&self.stream, "*", fields)
            .await
            .expect("XADD")
    }

    /// Holds `LOCK TABLE positions IN ACCESS EXCLUSIVE MODE` on a connection of its own until
    /// released: no commit can happen meanwhile (nor can this test read the table).
    pub async fn lock_positions(&self) -> TableLock {
        let (client, connection) =
            tokio_postgres::connect(&self.database_url, tokio_postgres::NoTls)
                .await
                .expect("second connection");
        tokio::spawn(connection);
        client
            .batch_execute("BEGIN; LOCK TABLE positions IN ACCESS EXCLUSIVE MODE")
            .await
            .expect("lock");
        TableLock { client }
    }

    /// Rows per device in this test's `positions`.
    pub async fn rows_per_device(&self) -> std::collections::HashMap<String, i64> {
        self.db
            .query(
                "SELECT device_id, count(*) FROM positions GROUP BY device_id",
                &[],
            )
            .await
            .expect("per-device counts")
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect()
    }

    /// Distinct `(device_id, ts)` in this test's `positions`.
    pub async fn distinct_rows(&self) -> i64 {
        self.db
            .query_one("SELECT count(DISTINCT (device_id, ts)) FROM positions", &[])
            .await
            .expect("distinct keys")
            .get(0)
    }

    /// Rows in this test's `positions`.
    pub async fn rows(&self) -> i64 {
        self.db
            .query_one("SELECT count(*) FROM positions", &[])
            .await
            .map(|row| row.get(0))
            .unwrap_or(-1)
    }

    /// Entries pending (delivered, not acknowledged) in the group.
    pub async fn pending(&mut self) -> i64 {
        let reply: redis::Value = redis::cmd("XPENDING")
            .arg(&self.stream)
            .arg(&self.group)
            .query_async(&mut self.redis)
            .await
            .expect("XPENDING");
        match reply {
            redis::Value::Array(items) => match items.first() {
                Some(redis::Value::Int(count)) => *count,
                _ => 0,
            },
            _ => 0,
        }
    }

    /// The group's consumers, by name: (name, entries pending in it).
    pub async fn consumers(&mut self) -> Vec<(String, i64)> {
        let reply: redis::streams::StreamInfoConsumersReply = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(&self.stream)
            .arg(&self.group)
            .query_async(&mut self.redis)
            .await
            .expect("XINFO CONSUMERS");
        let mut found: Vec<(String, i64)> = reply
            .consumers
            .into_iter()
            .map(|consumer| (consumer.name, consumer.pending as i64))
            .collect();
        found.sort();
        found
    }

    /// Creates consumer group `group` on the stream, starting after `start` (`0`: everything).
    pub async fn create_group(&mut self, group: &str, start: &str) {
        let _: () = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.stream)
            .arg(group)
            .arg(start)
            .query_async(&mut self.redis)
            .await
            .expect("XGROUP CREATE");
    }

    /// Makes `consumer` read the group's new entries, then re-read its pending list
    /// `times - 1` more times: each read counts one delivery.
    pub async fn deliver(&mut self, consumer: &str, times: usize) {
        for round in 0..times {
            let id = if round == 0 { ">" } else { "0" };
            let _: redis::Value = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(&self.group)
                .arg(consumer)
                .arg("STREAMS")
                .arg(&self.stream)
                .arg(id)
                .query_async(&mut self.redis)
                .await
                .expect("XREADGROUP");
        }
    }

    /// The last delivered id of the stream's first consumer group.
    pub async fn last_delivered(&mut self) -> String {
        let groups: redis::streams::StreamInfoGroupsReply = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&self.stream)
            .query_async(&mut self.redis)
            .await
            .expect("XINFO GROUPS");
        groups.groups[0].last_delivered_id.clone()
    }

    /// Entries in the dead-letter stream, each as its field map.
    pub async fn dead_letters(&mut self) -> Vec<std::collections::HashMap<String, String>> {
        let reply: redis::streams::StreamRangeReply = self
            .redis
            .xrange_all(&self.dead_letter)
            .await
            .expect("XRANGE");
        reply
            .ids
            .into_iter()
            .map(|id| {
                id.map
                    .into_iter()
                    .map(|(k, v)| (k, redis::from_redis_value(v).unwrap_or_default()))
                    .collect()
            })
            .collect()
    }

    /// Starts the service in this process, its HTTP server on a free loopback port.
    pub fn start(&self, config: Config) -> Running {
        self.start_with_faults(config, Faults::default())
    }

    /// Starts the service in this process with faults injected.
    pub fn start_with_faults(&self, config: Config, faults: Faults) -> Running {
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let shutdown = Shutdown::new();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        let http = listener.local_addr().expect("bound address");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
        let task = tokio::spawn(processor::serve_with_faults(
            config,
            listener,
            Arc::clone(&metrics),
            shutdown.clone(),
            faults,
        ));
        Running {
            metrics,
            shutdown,
            http,
            task: Some(task),
        }
    }

    /// Starts the real binary with this namespace's settings (and `extra` variables).
    pub fn spawn_binary(&self, consumer: &str, extra: &[(&str, &str)]) -> Child {
        let mut command = Command::new(env!("CARGO_BIN_EXE_processor"));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env_vars(consumer))
            .envs(extra.iter().map(|(k, v)| (*k, *v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start the processor binary");
        super::child::drain_stderr(&mut child);
        child
    }

    /// Waits until `check` holds, polling; panics with `what` after `timeout`.
    pub async fn wait_for<F>(&mut self, timeout: Duration, what: &str, mut check: F)
    where
        F: AsyncFnMut(&mut TestEnv) -> bool,
    {
        let deadline = Instant::now() + timeout;
        loop {
            if check(self).await {
                return;
            }
            if Instant::now() > deadline {
                let (rows, pending) = (self.rows().await, self.pending().await);
                panic!("timed out waiting for {what} (rows {rows}, pending {pending})");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the table holds `rows` rows (whatever Redis says).
    pub async fn wait_landed_rows(&mut self, rows: i64, timeout: Duration) {
        self.wait_for(
            timeout,
            &format!("{rows} rows"),
            async |env: &mut TestEnv| env.rows().await == rows,
        )
        .await;
    }

    /// Waits until the table holds `rows` rows and nothing is pending.
    pub async fn wait_landed(&mut self, rows: i64, timeout: Duration) {
        self.wait_for(
            timeout,
            &format!("{rows} rows and 0 pending"),
            async |env: &mut TestEnv| env.rows().await == rows && env.pending().await == 0,
        )
        .await;
    }
}

impl Drop for TestEnv {
    /// A test that passed leaves nothing behind: its schema and its Redis keys go. (A failed
    /// test's stay for inspection; the next run on this host sweeps them.) The clean-up runs on a
    /// thread of its own, since `drop` cannot wait on the test's runtime.
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let (server_url, redis_url) = (self.server_url.clone(), self.servers.redis_url.clone());
        let (schema, prefix) = (self.schema.clone(), self.name.clone());
        let cleanup = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok((db, connection)) =
                    tokio_postgres::connect(&server_url, tokio_postgres::NoTls).await
                {
                    tokio::spawn(connection);
                    let _ = db
                        .batch_execute(&format!(
                            "SET lock_timeout = '5s'; DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
                        ))
                        .await;
                }
                let Ok(client) = redis::Client::open(redis_url.as_str()) else {
                    return;
                };
                let Ok(mut redis) = client.get_multiplexed_async_connection().await else {
                    return;
                };
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg(format!("{prefix}*"))
                    .query_async(&mut redis)
                    .await
                    .unwrap_or_default();
                if !keys.is_empty() {
                    let _: redis::RedisResult<()> =
                        redis::cmd("DEL").arg(&keys).query_async(&mut redis).await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// A pipeline running in this process.
pub struct Running {
    pub metrics: Arc<Metrics>,
    pub shutdown: Shutdown,
    /// Where its HTTP server listens.
    pub http: std::net::SocketAddr,
    task: Option<tokio::task::JoinHandle<Result<RunReport, RunError>>>,
}

impl Running {
    /// GETs `path` from the service's HTTP server: (status code, body).
    pub async fn get(&self, path: &str) -> (u16, String) {
        http_get(self.http, path).await
    }

    /// Triggers the drain and waits for the run to end cleanly.
    pub async fn stop(self) -> RunReport {
        self.finish().await.expect("the run ends cleanly")
    }

    /// Triggers the drain and returns how the run ended.
    pub async fn finish(mut self) -> Result<RunReport, RunError> {
        self.shutdown.trigger();
        let task = self.task.take().expect("stopped once");
        tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .expect("the run ends within a minute")
            .expect("the run task does not panic")
    }
}

impl Drop for Running {
    /// A test that fails half-way must not hang: the timely workers run on blocking threads,
    /// which the test's runtime waits for when it shuts down, so stop them outright.
    fn drop(&mut self) {
        self.shutdown.force();
    }
}

/// A lock on `positions` held in an open transaction (see `TestEnv::lock_positions`).
pub struct TableLock {
    client: tokio_postgres::Client,
}

impl TableLock {
    /// Ends the transaction, releasing the lock.
    pub async fn release(self) {
        self.client.batch_execute("ROLLBACK").await.expect("unlock");
    }
}
