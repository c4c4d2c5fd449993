//! The trip rules applied to a whole sorted slice of fixes, as plainly as they are written: the
//! yardstick the fold is tested against, and what `trips rebuild` checks itself by.

use super::{haversine_m, Fix, Point, Run, Trip, TripRules};

/// Every run of `fixes` (sorted by time, one per time).
pub fn runs(fixes: &[Fix], rules: &TripRules) -> Vec<Run> {
    let moving: Vec<usize> = (0..fixes.len())
        .filter(|&i| rules.is_moving(fixes[i].speed))
        .collect();
    let mut groups: Vec<(usize, usize)> = Vec::new();
    for &i in &moving {
        match groups.last_mut() {
            Some((_, last)) if fixes[i].ts_micros - fixes[*last].ts_micros <= rules.stop_micros => {
                *last = i;
            }
            _ => groups.push((i, i)),
        }
    }
    groups
        .into_iter()
        .map(|(first, last)| {
            let span = &fixes[first..=last];
            Run {
                start: Point::from(&fixes[first]),
                end: Point::from(&fixes[last]),
                distance_m: span
                    .windows(2)
                    .map(|w| {
                        haversine_m(w[0].latitude, w[0].longitude, w[1].latitude, w[1].longitude)
                    })
                    .sum(),
                max_speed: span
                    .iter()
                    .filter_map(|fix| fix.speed)
                    .fold(f32::MIN, f32::max),
                fixes: u32::try_from(span.len()).unwrap_or(u32::MAX),
            }
        })
        .collect()
}

/// The trips of `fixes` (sorted by time, one per time), in time order.
pub fn trips(fixes: &[Fix], rules: &TripRules) -> Vec<Trip> {
    let newest = fixes.last().map_or(i64::MIN, |fix| fix.ts_micros);
    runs(fixes, rules)
        .iter()
        .filter_map(|run| run.trip(rules, newest))
        .collect()
}
