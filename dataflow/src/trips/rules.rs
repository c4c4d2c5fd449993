//! The settings of the trip rules.

/// What makes a fix moving, a stop, and a trip worth keeping.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TripRules {
    /// A fix is moving at this speed or faster, in km/h (`TRIP_MOVING_KMH`).
    pub moving_kmh: f32,
    /// Consecutive moving fixes further apart than this end a trip, in microseconds
    /// (`TRIP_STOP_SECS`).
    pub stop_micros: i64,
    /// Runs shorter than this many metres are not trips (`TRIP_MIN_METERS`).
    pub min_meters: f64,
}

impl Default for TripRules {
    /// 5 km/h, 300 s, 200 m.
    fn default() -> Self {
        TripRules {
            moving_kmh: 5.0,
            stop_micros: 300_000_000,
            min_meters: 200.0,
        }
    }
}

impl TripRules {
    /// Whether a fix with this speed is moving (one without a speed is not).
    pub fn is_moving(&self, speed: Option<f32>) -> bool {
        speed.is_some_and(|speed| speed >= self.moving_kmh)
    }
}
