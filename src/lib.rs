//! processor: Redis Stream telemetry -> timely dataflow -> PostgreSQL/TimescaleDB.
//!
//! The pure logic (codec, per-device state, operators) lives in the `dataflow` crate; this crate
//! is the shell around it, one module per external system. [`serve`] runs all of it.
//!
//! # Layout
//! Each module depends only on modules listed below it (checked by a test of the import graph):
//! - [`service`](serve): the whole service in one call: HTTP server, background checks, pipeline;
//! - [`pipeline`]: the timely workers and the tasks that connect them to Redis and PostgreSQL
//!   (epochs, backpressure, commits, acknowledgements, the drain);
//! - `monitor`: background checks of Redis and PostgreSQL, lag and pending;
//! - [`http`]: `/metrics`, `/healthz`, `/readyz`, and the `healthcheck` probe;
//! - [`dead_letters`]: `processor dead-letters`: inspect, send back and purge dead letters (the
//!   subcommands and their running, `dead_letters::command`, so `main` only dispatches);
//! - [`config`]: the composition of every module's settings, and the one-line errors;
//! - [`trips`]: the domain's settings (its rules are `dataflow::trips`, its table
//!   `postgres/tables/trips.rs`; the ingest core never imports it);
//! - [`redis`]: the consumer group, reads, claims, acknowledgements, dead letters;
//! - [`postgres`]: connection, migrations, TimescaleDB, the epoch writer;
//! - [`retry`]: the one retry policy (backoff, classification, the log line, the metric);
//! - [`status`]: what the probes report; [`metrics`]: every metric;
//! - [`logging`], [`panic_hook`], [`shutdown`], [`tls`]: set-up pieces;
//! - [`config_values`], [`clock`], [`redact`], [`operation`], [`blocks`]: leaves (what every
//!   settings group shares: the one-line error and the value parsers; the wall clock and the
//!   slewing clock; redaction; the names of retried operations; reusable byte blocks).
//!
//! The binary adds `cli` (the command line, with the `simulate` load generator) and `main`.
//!
//! Delivery guarantee: an entry is acknowledged (XACK) only after the epoch it was read in is
//! committed on every worker, and writes are idempotent, so every record becomes exactly one row
//! whatever crashes in between (see `pipeline::worker` and `dataflow::operators`).

pub mod blocks;
pub mod clock;
pub mod config;
pub mod config_values;
pub mod dead_letters;
pub mod http;
pub mod logging;
pub mod metrics;
mod monitor;
pub mod operation;
pub mod panic_hook;
pub mod pipeline;
pub mod postgres;
pub mod redact;
pub mod redis;
pub mod retry;
mod service;
pub mod shutdown;
pub mod status;
pub mod tls;
pub mod trips;

pub use config::Config;
pub use pipeline::{RunError, RunReport};
pub use service::{serve, serve_with_faults};
