//! The rules on the shared hand-made cases, and the fold held to the plain batch rules on random
//! fix sequences.

use proptest::prelude::*;

use super::*;

/// `tests/fixtures/trips.jsonl`: hand-made cases with the trips the rules give.
const CASES: &str = include_str!("../../../tests/fixtures/trips.jsonl");

fn micros(text: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .timestamp_micros()
}

fn number(value: &serde_json::Value) -> f64 {
    value
        .as_f64()
        .unwrap_or_else(|| panic!("not a number: {value}"))
}

fn fixes_of(case: &serde_json::Value) -> Vec<Fix> {
    case["fixes"]
        .as_array()
        .expect("fixes")
        .iter()
        .map(|fix| Fix {
            ts_micros: micros(fix["ts"].as_str().expect("ts")),
            latitude: number(&fix["latitude"]),
            longitude: number(&fix["longitude"]),
            speed: fix["speed"].as_f64().map(|speed| speed as f32),
        })
        .collect()
}

fn assert_same(got: &[Trip], want: &serde_json::Value, case: &str) {
    let want = want.as_array().expect("trips");
    assert_eq!(got.len(), want.len(), "{case}: {got:#?}");
    for (trip, want) in got.iter().zip(want) {
        let run = &trip.run;
        assert_eq!(
            run.start.ts_micros,
            micros(want["start_ts"].as_str().expect("start_ts")),
            "{case}"
        );
        assert_eq!(
            run.end.ts_micros,
            micros(want["end_ts"].as_str().expect("end_ts")),
            "{case}"
        );
        assert_eq!(
            run.start.latitude,
            number(&want["start_latitude"]),
            "{case}"
        );
        assert_eq!(
            run.start.longitude,
            number(&want["start_longitude"]),
            "{case}"
        );
        assert_eq!(run.end.latitude, number(&want["end_latitude"]), "{case}");
        assert_eq!(run.end.longitude, number(&want["end_longitude"]), "{case}");
        let distance = number(&want["distance_m"]);
        assert!(
            (run.distance_m - distance).abs() <= 1e-6 * distance.max(1.0),
            "{case}: distance {} want {distance}",
            run.distance_m
        );
        assert_eq!(
            f64::from(run.max_speed),
            number(&want["max_speed"]),
            "{case}"
        );
        assert_eq!(
            u64::from(run.fixes),
            want["fixes"].as_u64().expect("fixes"),
            "{case}"
        );
        assert_eq!(trip.open, want["open"].as_bool().expect("open"), "{case}");
    }
}

/// The fold's trips of sorted fixes.
fn folded(fixes: &[Fix], rules: &TripRules) -> Vec<Trip> {
    let mut fold = RunFold::new(*rules);
    for fix in fixes {
        fold.push(fix);
    }
    let newest = fixes.last().map_or(i64::MIN, |fix| fix.ts_micros);
    fold.finish()
        .iter()
        .filter_map(|run| run.trip(rules, newest))
        .collect()
}

#[test]
fn the_shared_cases_give_their_trips_by_both_implementations() {
    let rules = TripRules::default();
    let mut cases = 0;
    for line in CASES.lines().filter(|line| !line.trim().is_empty()) {
        let case: serde_json::Value = serde_json::from_str(line).expect("a JSON case");
        let name = case["name"].as_str().expect("name");
        let mut fixes = fixes_of(&case);
        fixes.sort_by_key(|fix| fix.ts_micros);
        assert_same(&reference::trips(&fixes, &rules), &case["trips"], name);
        assert_same(&folded(&fixes, &rules), &case["trips"], name);
        cases += 1;
    }
    assert!(cases >= 15, "only {cases} cases read");
}

#[test]
fn haversine_of_one_degree_of_latitude() {
    // pi * R / 180
    let want = std::f64::consts::PI * EARTH_RADIUS_M / 180.0;
    assert!((haversine_m(0.0, 0.0, 1.0, 0.0) - want).abs() < 1e-6);
    assert_eq!(haversine_m(54.68, 25.28, 54.68, 25.28), 0.0);
}

/// Fixes of one device: distinct times with gaps around the stop time, speeds around the
/// threshold and sometimes missing, small moves.
fn device_fixes() -> impl Strategy<Value = Vec<Fix>> {
    let step = prop_oneof![1i64..=30, 250i64..=350, 290i64..=310, 600i64..=4000,];
    let speed = prop_oneof![
        Just(None),
        (0.0f32..4.99).prop_map(Some),
        Just(Some(5.0)),
        (5.0f32..120.0).prop_map(Some),
    ];
    proptest::collection::vec((step, speed, -0.002f64..0.002, -0.002f64..0.002), 0..120).prop_map(
        |steps| {
            let (mut ts, mut lat, mut lon) = (1_790_000_000_000_000i64, 54.68, 25.28);
            steps
                .into_iter()
                .map(|(seconds, speed, dlat, dlon)| {
                    ts += seconds * 1_000_000;
                    lat += dlat;
                    lon += dlon;
                    Fix {
                        ts_micros: ts,
                        latitude: lat,
                        longitude: lon,
                        speed,
                    }
                })
                .collect()
        },
    )
}

fn assert_runs_equal(got: &[Run], want: &[Run]) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.len(), want.len());
    for (got, want) in got.iter().zip(want) {
        prop_assert_eq!(got.start, want.start);
        prop_assert_eq!(got.end, want.end);
        prop_assert_eq!(got.fixes, want.fixes);
        prop_assert_eq!(got.max_speed, want.max_speed);
        prop_assert!((got.distance_m - want.distance_m).abs() <= 1e-9 * want.distance_m.max(1.0));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// The fold gives the batch rules' runs, whatever the fixes.
    #[test]
    fn the_fold_gives_the_rules_runs(fixes in device_fixes()) {
        let rules = TripRules::default();
        let mut fold = RunFold::new(rules);
        for fix in &fixes {
            fold.push(fix);
        }
        assert_runs_equal(&fold.finish(), &reference::runs(&fixes, &rules))?;
    }

    /// Resuming any run from its stored state, with only the fixes after its end, continues it
    /// exactly as folding everything from the start does: a trip's row is enough to extend it.
    #[test]
    fn resuming_a_run_from_its_row_continues_it(fixes in device_fixes(), pick in any::<prop::sample::Index>()) {
        let rules = TripRules::default();
        let all = reference::runs(&fixes, &rules);
        prop_assume!(!all.is_empty());
        let at = pick.index(all.len());
        // the run as a stored row knew it when its end was the newest moving fix
        let mut known = RunFold::new(rules);
        for fix in fixes.iter().filter(|fix| fix.ts_micros <= all[at].end.ts_micros) {
            known.push(fix);
        }
        let known = *known.finish().last().expect("a run");
        prop_assert_eq!(known.start, all[at].start);
        let mut resumed = RunFold::resuming(rules, known);
        for fix in fixes.iter().filter(|fix| fix.ts_micros > known.end.ts_micros) {
            resumed.push(fix);
        }
        let mut runs = all[..at].to_vec();
        runs.extend(resumed.finish());
        assert_runs_equal(&runs, &all)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Stopping the fold anywhere and resuming it from its state with the fixes after gives
    /// the runs of folding everything at once: the state (run and tail) is all it needs.
    #[test]
    fn resuming_from_the_folds_state_continues_it(fixes in device_fixes(), cut in any::<prop::sample::Index>()) {
        let rules = TripRules::default();
        let at = if fixes.is_empty() { 0 } else { cut.index(fixes.len()) };
        let mut first = RunFold::new(rules);
        for fix in &fixes[..at] {
            first.push(fix);
        }
        let (mut runs, state) = first.finish_with_state();
        let mut second = match state {
            Some(state) => {
                // the state's run is the last of the runs: it continues
                prop_assert_eq!(runs.pop(), Some(state.0));
                RunFold::resuming_state(rules, state)
            }
            None => RunFold::new(rules),
        };
        for fix in &fixes[at..] {
            second.push(fix);
        }
        runs.extend(second.finish());
        assert_runs_equal(&runs, &reference::runs(&fixes, &rules))?;
    }
}

fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut state = seed | 1;
    for i in (1..items.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        items.swap(i, (state % (i as u64 + 1)) as usize);
    }
}

fn assert_trips_equal(got: &[Trip], want: &[Trip]) -> Result<(), TestCaseError> {
    let open = |trips: &[Trip]| trips.iter().map(|trip| trip.open).collect::<Vec<_>>();
    prop_assert_eq!(open(got), open(want));
    let runs = |trips: &[Trip]| trips.iter().map(|trip| trip.run).collect::<Vec<_>>();
    assert_runs_equal(&runs(got), &runs(want))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// Fixes arriving in any order, in batches of any size, resent with other content: after
    /// every commit, the stored trips are the rules applied to the stored fixes.
    #[test]
    fn regions_keep_the_trips_exact_in_any_arrival_order(
        fixes in device_fixes(),
        seed in any::<u64>(),
        order in 0u8..4,
        batch in 1usize..12,
    ) {
        let rules = TripRules::default();
        let mut arrivals = fixes.clone();
        match order {
            0 => {}
            1 => arrivals.reverse(),
            2 => shuffle(&mut arrivals, seed),
            // in order, but every fifth fix held back and sent last (hours late)
            _ => {
                let (late, on_time): (Vec<_>, Vec<_>) =
                    arrivals.iter().enumerate().partition(|(i, _)| i % 5 == 0);
                arrivals = on_time.into_iter().chain(late).map(|(_, fix)| *fix).collect();
            }
        }
        // resends of some fixes with other content: the first stored row wins
        let resent: Vec<Fix> = fixes
            .iter()
            .step_by(7)
            .map(|fix| Fix { latitude: fix.latitude + 1.0, speed: Some(99.0), ..*fix })
            .collect();
        let mut store = DeviceStore::default();
        let mut firsts = std::collections::BTreeMap::new();
        let all: Vec<Fix> = arrivals.iter().chain(&resent).copied().collect();
        for part in all.chunks(batch) {
            store.commit(&rules, part);
            for fix in part {
                firsts.entry(fix.ts_micros).or_insert(*fix);
            }
            let stored: Vec<Fix> = firsts.values().copied().collect();
            let (trips, runs): (Vec<Trip>, Vec<Run>) =
                (store.trips().copied().collect(), store.runs().copied().collect());
            assert_trips_equal(&trips, &reference::trips(&stored, &rules))?;
            assert_runs_equal(&runs, &reference::runs(&stored, &rules))?;
            prop_assert!(store.fixes().copied().eq(stored.iter().copied()));
        }
    }
}
