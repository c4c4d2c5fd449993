//! Trips, the service's first domain output: its settings and `processor trips rebuild` here;
//! the rules are pure (`dataflow::trips`), the table's writer is `postgres/tables/trips/`. The
//! ingest core never imports this module (`tests/suite/module_graph.rs`).

pub mod command;
mod config;

pub use config::{TripRulesArgs, TripsConfig};
