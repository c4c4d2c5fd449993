//! The integration tests, as one binary: one module per area (as cargo's own `tests/testsuite`),
//! so the service is linked once rather than once per file, and [`support`] is shared without
//! each binary using its own part of it.
//!
//! The binary has its own runner (`harness = false`, [`support::harness`], on libtest-mimic):
//! arguments, filters, `--test-threads` (default: the number of CPUs) and the closing
//! `test result:` line are libtest's, and a test that needs what this machine lacks (TimescaleDB,
//! libfaketime) shows as `ignored`, its name ending with what it needs, instead of passing
//! without having run; `REQUIRE_TIMESCALEDB=1` / `REQUIRE_FAKETIME=1` make that a failure.
//!
//! **Adding a test**: write the function in its module and add one line to that module's
//! `tests()`, `trial!(name)` for a plain `fn`, `trial!(name, tokio = 2)` for an `async fn` (run on
//! a multi-threaded runtime of 2 threads, as `#[tokio::test(flavor = "multi_thread")]` did),
//! `trial!(name, tokio = 2, on_both)` for an `async fn(Backend)` run as `name::postgres` and
//! `name::timescaledb`, `trial!(name, tokio = 2, needs = TIMESCALEDB)` for one that needs a
//! [`support::harness::Need`]; a new module also goes in [`main`]'s list. A function left out
//! is dead code, which clippy's `-D warnings` refuses; `#[test]` or `#[tokio::test]` would be
//! silently not run by this runner, so `module_graph::the_suite_uses_no_libtest_attribute` fails
//! on one.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test that cannot unwrap has failed

#[macro_use]
mod support;

mod binary;
mod clock_steps;
mod cluster;
mod consumers;
mod dead_letters;
mod deploy_files;
mod device_latest;
mod faults;
mod fixtures;
mod migrations;
mod module_graph;
mod observability;
mod pipeline;
mod privileges;
mod readme;
mod redis_ops;
mod refusal_stall;
mod refused_rows;
mod sessions;
mod stream_hygiene;
mod timescale;
mod tls;
mod trips;

fn main() -> std::process::ExitCode {
    support::harness::run(
        [
            binary::tests(),
            clock_steps::tests(),
            cluster::tests(),
            consumers::tests(),
            dead_letters::tests(),
            deploy_files::tests(),
            device_latest::tests(),
            faults::tests(),
            fixtures::tests(),
            migrations::tests(),
            module_graph::tests(),
            observability::tests(),
            privileges::tests(),
            pipeline::tests(),
            readme::tests(),
            redis_ops::tests(),
            refusal_stall::tests(),
            refused_rows::tests(),
            sessions::tests(),
            stream_hygiene::tests(),
            timescale::tests(),
            tls::tests(),
            trips::tests(),
        ]
        .into_iter()
        .flatten()
        .collect(),
    )
}
