//! Trips: the domain's first output, derived from a device's positions by rules that depend on
//! the set of rows, never on the order they arrived in.
//!
//! Per device, take its fixes ordered by time. A fix is *moving* when its speed is at least
//! [`TripRules::moving_kmh`] (a fix without a speed is not). A *run* is a maximal sequence of
//! moving fixes in which consecutive ones are at most [`TripRules::stop_micros`] apart; it spans
//! from its first moving fix S to its last L and holds every fix in between, moving or not (a
//! traffic light). Its distance is the sum of the haversine legs between consecutive fixes of
//! the span, its `max_speed` the largest speed in it. A run whose distance reaches
//! [`TripRules::min_meters`] is a [`Trip`]; it is *open* while the device's newest fix is less
//! than the stop time after L (a newer moving fix could still extend it).
//!
//! Two implementations of the rules live here. [`RunFold`] folds fixes in time order into runs,
//! and can start from a run already known (a stored trip: its row is exactly the state at its
//! L), so extending the current trip costs the new fixes, not the trip's history.
//! [`reference::trips`] applies the rules to a whole sorted slice in the plainest way, for the
//! property tests that hold the fold to it.
//!
//! This module is the domain: the ingest core (codec, state, operators, graph) never imports it
//! (`tests/suite/module_graph.rs` holds that boundary).

mod distance;
mod fold;
pub mod inside;
mod memory;
pub mod reference;
pub mod region;
mod rules;

pub use distance::{haversine_m, EARTH_RADIUS_M};
pub use fold::{Folded, RunFold, Tail};
pub use memory::DeviceStore;
pub use region::{region, Region, Right, Start};
pub use rules::TripRules;

/// One fix of a device, as the trip rules see it (a row of `positions`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fix {
    /// Microseconds since the Unix epoch (the row's `ts`).
    pub ts_micros: i64,
    /// Degrees WGS84.
    pub latitude: f64,
    /// Degrees WGS84.
    pub longitude: f64,
    /// km/h; `None` when the tracker sent none.
    pub speed: Option<f32>,
}

/// A point of a run: a fix's time and place.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    /// Microseconds since the Unix epoch.
    pub ts_micros: i64,
    /// Degrees WGS84.
    pub latitude: f64,
    /// Degrees WGS84.
    pub longitude: f64,
}

impl From<&Fix> for Point {
    fn from(fix: &Fix) -> Self {
        Point {
            ts_micros: fix.ts_micros,
            latitude: fix.latitude,
            longitude: fix.longitude,
        }
    }
}

/// A maximal run of moving fixes, kept as a trip or not (see the module's rules).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Run {
    /// Its first moving fix.
    pub start: Point,
    /// Its last moving fix.
    pub end: Point,
    /// The haversine legs between consecutive fixes of the span, summed, in metres.
    pub distance_m: f64,
    /// The largest speed in the span (a moving fix's: the others are slower).
    pub max_speed: f32,
    /// Fixes in the span, moving or not.
    pub fixes: u32,
}

impl Run {
    /// The trip this run is under `rules`, or `None` when it is too short to keep; open when
    /// `newest_micros` (the device's newest fix) is less than the stop time after its end.
    pub fn trip(&self, rules: &TripRules, newest_micros: i64) -> Option<Trip> {
        (self.distance_m >= rules.min_meters).then(|| Trip {
            run: *self,
            open: newest_micros - self.end.ts_micros < rules.stop_micros,
        })
    }
}

/// A run long enough to keep: a row of `trips`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Trip {
    /// The run.
    pub run: Run,
    /// A newer moving fix could still extend it.
    pub open: bool,
}

#[cfg(test)]
mod tests;
