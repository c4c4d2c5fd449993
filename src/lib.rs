//! processor: Redis Stream telemetry -> timely dataflow -> PostgreSQL/TimescaleDB.
//!
//! The pure logic (codec, per-device state, operators) lives in the `dataflow` crate; this crate
//! is the shell around it, one module per external system:
//! - [`config`]: every setting, from environment variables and flags;
//! - [`redis`]: the consumer group, reads, acknowledgements, dead letters;
//! - [`postgres`]: connection, migrations, the epoch writer;
//! - [`pipeline`]: the timely workers and the tasks that connect them to the outside;
//! - [`http`], [`status`]: `/metrics`, `/healthz`, `/readyz` and what they report;
//! - [`metrics`], [`logging`], [`shutdown`], [`retry`]: cross-cutting pieces.
//!
//! [`serve`] runs all of it.
//!
//! Delivery guarantee: an entry is acknowledged (XACK) only after the epoch it was read in is
//! committed on every worker, and writes are idempotent, so every record becomes exactly one row
//! whatever crashes in between (see `pipeline::worker` and `dataflow::operators`).

pub mod clock;
pub mod config;
pub mod http;
pub mod logging;
pub mod metrics;
mod monitor;
pub mod pipeline;
pub mod postgres;
pub mod redis;
pub mod retry;
mod service;
pub mod shutdown;
pub mod simulate;
pub mod status;
pub mod tls;

pub use config::Config;
pub use pipeline::{RunError, RunReport};
pub use service::serve;
