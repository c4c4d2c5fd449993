//! The trips' settings: whether they are on, and the rules.

use std::time::Duration;

use dataflow::trips::TripRules;

use crate::config_values::{seconds, ConfigError, Switch};

/// Whether trips are kept, and the rules that make them.
#[derive(Clone, Debug, clap::Args)]
pub struct TripsConfig {
    /// `on`: keep the `trips` table equal to the trip rules applied to `positions`, in the
    /// epoch's transaction (see docs/trips.md); `off`: no trips.
    #[arg(long, env = "TRIPS", value_enum, default_value_t = Switch::Off)]
    pub trips: Switch,

    /// The rules.
    #[command(flatten)]
    pub rules: TripRulesArgs,
}

impl TripsConfig {
    /// The rules must be usable (checked whether trips are on or not).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.rules.validate()
    }

    /// The rules, when trips are on.
    pub fn rules(&self) -> Option<TripRules> {
        self.trips.is_on().then(|| self.rules.rules())
    }
}

/// The trip rules' settings (the service's, and `processor trips rebuild`'s).
#[derive(Clone, Debug, clap::Args)]
pub struct TripRulesArgs {
    /// A fix is moving at this speed or faster, in km/h.
    #[arg(
        long = "trip-moving-kmh",
        env = "TRIP_MOVING_KMH",
        default_value_t = 5.0
    )]
    pub moving_kmh: f32,

    /// Consecutive moving fixes further apart than this, in seconds, end a trip; a trip is open
    /// until the device's newest fix is this long after its end.
    #[arg(long = "trip-stop-secs", env = "TRIP_STOP_SECS", default_value = "300", value_parser = seconds(1, 86_400))]
    pub stop: Duration,

    /// Trips shorter than this, in metres, are not kept.
    #[arg(
        long = "trip-min-meters",
        env = "TRIP_MIN_METERS",
        default_value_t = 200.0
    )]
    pub min_meters: f64,
}

impl TripRulesArgs {
    /// The speed and the distance must be finite and not negative.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.moving_kmh.is_finite() && self.moving_kmh > 0.0) {
            return Err(ConfigError::new(
                "TRIP_MOVING_KMH",
                format!("{} must be a positive number of km/h", self.moving_kmh),
            ));
        }
        if !(self.min_meters.is_finite() && self.min_meters >= 0.0) {
            return Err(ConfigError::new(
                "TRIP_MIN_METERS",
                format!("{} must be a number of metres, 0 or more", self.min_meters),
            ));
        }
        Ok(())
    }

    /// The rules these settings give.
    pub fn rules(&self) -> TripRules {
        TripRules {
            moving_kmh: self.moving_kmh,
            stop_micros: i64::try_from(self.stop.as_micros()).unwrap_or(i64::MAX),
            min_meters: self.min_meters,
        }
    }
}
