//! Shared harness of the integration tests: real Redis and PostgreSQL, one isolated namespace
//! (stream, group, dead-letter stream, PostgreSQL schema) per test, so tests run in parallel.
//!
//! Two kinds of database, [`Backend::Postgres`] and [`Backend::Timescale`]; the pipeline's tests
//! run on both and assert which kind of table they ran on. Servers are found in this order:
//! - Redis: `TEST_REDIS_URL`; else 127.0.0.1:6379 if it answers; else a `redis:7` container;
//! - plain PostgreSQL: `TEST_DATABASE_URL`; else 127.0.0.1:5432 (user postgres, trust auth) if it
//!   answers; else a `postgres:16` container;
//! - TimescaleDB: `TEST_TIMESCALEDB_URL`; else 127.0.0.1:5433 if it answers with the extension
//!   preloaded; else a `timescale/timescaledb:latest-pg16` container.
//!
//! Containers need a reachable Docker engine (testcontainers). Without Redis or PostgreSQL a test
//! fails with one message naming these ways. Without TimescaleDB the TimescaleDB half of a test
//! is registered as ignored, unless `REQUIRE_TIMESCALEDB=1` (CI sets it): then it fails.
//!
//! One file per job: [`servers`] (finding them), [`env`] (a test's namespace and what it does
//! there), [`child`] (the binary as a child process), [`http`] (the service's HTTP server),
//! [`payloads`] (what is published), [`proxy`] (a cuttable TCP proxy), [`pg_tls`] (a TLS front
//! for PostgreSQL with the test's own certificate) and [`harness`] (the runner
//! that registers the tests and decides which are ignored).

#[macro_use]
pub mod harness;
pub mod child;
pub mod env;
pub mod http;
pub mod payloads;
pub mod pg_tls;
pub mod proxy;
pub mod servers;

pub use child::{drain_cleanly, signal, sigterm, wait_exit};
pub use env::{Running, TestEnv};
pub use http::{free_port, http_get, samples};
pub use payloads::{payload, payloads};
pub use servers::Backend;
