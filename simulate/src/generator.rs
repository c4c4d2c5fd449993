//! The payload generator: a deterministic stream of payloads from a simulated fleet.
//!
//! Pure (no I/O, no clock): everything follows from [`SimulateArgs`], so a seed reproduces a load
//! test exactly, and the unit tests check the output against the real codec. Each payload is the
//! next device's fix (`fleet.rs`, written by `record.rs`), or, in the proportions asked for, an
//! exact copy of a recent valid payload (with `--rate` equal to `--devices`, the simulated clocks
//! keep pace with the wall clock, and these are the only duplicates) or a fix broken by a fault
//! (`faults.rs`).

use std::collections::VecDeque;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::faults::{Fault, FAULTS};
use crate::fleet::Fleet;
use crate::record::DEFAULT_START_MS;
use crate::{Order, SimulateArgs, LATE_BY, NEWEST_FIRST_WINDOW};

/// How many recent valid payloads a duplicate is drawn from.
const RECENT: usize = 128;

/// One generated stream entry's payload, in publish order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// A contract-conforming position with a `(device_id, ts)` not generated before.
    Valid(String),
    /// A byte-for-byte copy of one of the last 128 valid payloads: the processor must count it as
    /// a duplicate and write nothing.
    Duplicate(String),
    /// A payload that breaks the contract in one of several ways (field out of range, field
    /// missing, malformed timestamp or sentinel, not a JSON object, truncated JSON): the processor
    /// must dead-letter it.
    Invalid(String),
}

impl Payload {
    /// The JSON text (for the entry's `payload` field).
    pub fn as_str(&self) -> &str {
        match self {
            Payload::Valid(text) | Payload::Duplicate(text) | Payload::Invalid(text) => text,
        }
    }

    /// The JSON text, owned.
    pub fn into_string(self) -> String {
        match self {
            Payload::Valid(text) | Payload::Duplicate(text) | Payload::Invalid(text) => text,
        }
    }
}

/// The deterministic source of payloads: the same [`SimulateArgs`] (seed, devices, fractions,
/// start time) give the same sequence, build after build (as long as `rand`'s `StdRng`, which
/// `rand` may change between major versions, stays the same algorithm).
#[derive(Debug)]
pub struct Generator {
    rng: StdRng,
    duplicates: f64,
    invalid: f64,
    fleet: Fleet,
    recent: VecDeque<String>,
    order: Order,
    /// Fixes of one device per window/delay unit: the fleet size.
    devices: u64,
    /// `newest-first`: the current window, emitted from its end.
    window: Vec<Payload>,
    /// `late`: held-back payloads with the count after which each is released.
    held: VecDeque<(u64, Payload)>,
    /// Payloads handed out so far.
    produced: u64,
}

impl Generator {
    /// A generator for `args`: its seed, devices (at least one), fractions (clamped to 0..=1,
    /// `invalid` to at most `1 - duplicates`) and start time ([`DEFAULT_START_MS`] when unset).
    pub fn new(args: &SimulateArgs) -> Self {
        let duplicates = fraction(args.duplicates);
        let invalid = fraction(args.invalid).min(1.0 - duplicates);
        Generator {
            rng: StdRng::seed_from_u64(args.seed),
            duplicates,
            invalid,
            fleet: Fleet::new(
                args.profile,
                args.seed,
                args.devices,
                args.start_ms.unwrap_or(DEFAULT_START_MS),
            ),
            recent: VecDeque::with_capacity(RECENT),
            order: args.order,
            devices: u64::from(args.devices.max(1)),
            window: Vec::new(),
            held: VecDeque::new(),
            produced: 0,
        }
    }

    /// The next payload in publish order (`--order`).
    pub fn next_payload(&mut self) -> Payload {
        self.produced += 1;
        match self.order {
            Order::InOrder => self.generate(),
            Order::NewestFirst => {
                if self.window.is_empty() {
                    let size = self.devices * NEWEST_FIRST_WINDOW;
                    self.window = (0..size).map(|_| self.generate()).collect();
                }
                self.window.pop().unwrap_or_else(|| self.generate())
            }
            Order::Late => {
                if self
                    .held
                    .front()
                    .is_some_and(|(at, _)| *at <= self.produced)
                {
                    if let Some((_, payload)) = self.held.pop_front() {
                        return payload;
                    }
                }
                let payload = self.generate();
                if self.produced.is_multiple_of(10) && matches!(payload, Payload::Valid(_)) {
                    self.held
                        .push_back((self.produced + self.devices * LATE_BY, payload));
                    return self.generate();
                }
                payload
            }
        }
    }

    /// The next payload the fleet gives, in time order.
    fn generate(&mut self) -> Payload {
        let draw: f64 = self.rng.random();
        if draw < self.duplicates && !self.recent.is_empty() {
            let index = self.rng.random_range(0..self.recent.len());
            if let Some(text) = self.recent.get(index) {
                return Payload::Duplicate(text.clone());
            }
        }
        let invalid = draw >= self.duplicates && draw < self.duplicates + self.invalid;
        let mut record = self.fleet.next_record(&mut self.rng);
        if invalid {
            let fault = FAULTS
                .get(self.rng.random_range(0..FAULTS.len()))
                .copied()
                .unwrap_or(Fault::Latitude);
            return Payload::Invalid(record.corrupt(fault, &mut self.rng));
        }
        let text = record.to_json();
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(text.clone());
        Payload::Valid(text)
    }
}

/// `value` as a usable fraction: NaN and negatives become 0, values above 1 become 1.
fn fraction(value: f64) -> f64 {
    if value.is_nan() {
        0.0
    } else {
        value.clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use dataflow::codec::decode_payload;
    use serde_json::Value;

    use super::*;

    fn args(seed: u64, devices: u32, duplicates: f64, invalid: f64) -> SimulateArgs {
        SimulateArgs {
            profile: crate::Profile::Mixed,
            devices,
            count: Some(10_000),
            duration: None,
            rate: 0,
            seed,
            duplicates,
            invalid,
            pipeline: 500,
            start_ms: Some(1_796_033_730_123),
            order: crate::Order::InOrder,
        }
    }

    fn take(args: &SimulateArgs, n: usize) -> Vec<Payload> {
        let mut generator = Generator::new(args);
        (0..n).map(|_| generator.next_payload()).collect()
    }

    /// Each device's fix times in arrival order.
    fn arrivals(args: &SimulateArgs, n: usize) -> HashMap<String, Vec<i64>> {
        let mut by_device: HashMap<String, Vec<i64>> = HashMap::new();
        for payload in take(args, n) {
            let position = decode_payload(payload.as_str().as_bytes()).expect("valid");
            by_device
                .entry(position.device_id)
                .or_default()
                .push(position.ts_micros);
        }
        by_device
    }

    #[test]
    fn orders_reorder_each_devices_fixes() {
        let base = args(5, 10, 0.0, 0.0);
        let in_order = arrivals(&base, 3_000);
        assert!(in_order
            .values()
            .all(|ts| ts.windows(2).all(|w| w[0] < w[1])));
        let newest_first = arrivals(
            &SimulateArgs {
                order: crate::Order::NewestFirst,
                ..base.clone()
            },
            3_000,
        );
        for ts in newest_first.values() {
            // each window of 30 arrives newest first, windows in time order
            for window in ts.chunks(30) {
                assert!(window.windows(2).all(|w| w[0] > w[1]), "{window:?}");
            }
            assert!(ts[30] > ts[0]);
        }
        let late = arrivals(
            &SimulateArgs {
                order: crate::Order::Late,
                ..base.clone()
            },
            3_000,
        );
        for ts in late.values() {
            let back = ts.windows(2).filter(|w| w[1] < w[0]).count();
            assert!(back >= 10, "{back} late fixes in {ts:?}");
            // a late fix is about a minute behind the newest
            let newest_before = |i: usize| ts[..i].iter().copied().max().unwrap_or(i64::MIN);
            let lag = (1..ts.len())
                .map(|i| newest_before(i) - ts[i])
                .max()
                .unwrap_or(0);
            assert!(lag >= 50_000_000, "{lag} µs");
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_payloads() {
        let a = take(&args(7, 50, 0.1, 0.1), 2000);
        let b = take(&args(7, 50, 0.1, 0.1), 2000);
        assert_eq!(a, b);
        let c = take(&args(8, 50, 0.1, 0.1), 2000);
        assert_ne!(a, c);
    }

    #[test]
    fn valid_payloads_decode_with_big_integers_and_buffers() {
        let payloads = take(&args(3, 40, 0.0, 0.0), 2000);
        let mut saw_node_buffer = false;
        let mut saw_u128 = false;
        let mut saw_iso = false;
        let mut saw_millis = false;
        let mut counts = HashSet::new();
        for payload in &payloads {
            let Payload::Valid(text) = payload else {
                panic!("only valid payloads were asked for: {payload:?}")
            };
            let position =
                decode_payload(text.as_bytes()).unwrap_or_else(|e| panic!("{e}: {text}"));
            assert_eq!(position.device_id.len(), 15, "{text}");
            assert!(position.device_id.bytes().all(|b| b.is_ascii_digit()));
            assert!((-90.0..=90.0).contains(&position.latitude));
            assert!((-180.0..=180.0).contains(&position.longitude));
            assert!(position.speed.is_some_and(|s| (0.0..=130.0).contains(&s)));
            assert!(position.angle.is_some_and(|a| (0.0..=360.0).contains(&a)));
            assert!(position.satellites.is_some_and(|s| (0..=20).contains(&s)));
            assert!(position.priority.is_some_and(|p| (0..=2).contains(&p)));

            let raw: Value = serde_json::from_str(text).expect("JSON");
            match raw.get("timestamp") {
                Some(Value::String(_)) => saw_iso = true,
                Some(Value::Number(_)) => saw_millis = true,
                other => panic!("timestamp {other:?}"),
            }
            let attributes = raw
                .get("attributes")
                .and_then(Value::as_object)
                .expect("attributes");
            assert!((8..=20).contains(&attributes.len()), "{text}");
            counts.insert(attributes.len());
            let mut bigints = 0;
            let mut buffers = 0;
            for (key, value) in attributes {
                assert!(key.parse::<u16>().is_ok(), "IO id {key}");
                if let Some(digits) = value.get("__bigint").and_then(Value::as_str) {
                    let number: u128 = digits.parse().expect("digits");
                    assert!(number > 1 << 53, "{digits}");
                    saw_u128 |= number > u128::from(u64::MAX);
                    // The codec writes the exact digits as a JSON number.
                    let expected = format!("\"{key}\":{digits}");
                    assert!(position.attributes.contains(&expected), "{expected}");
                    bigints += 1;
                }
                if let Some(b64) = value.get("__buffer_b64").and_then(Value::as_str) {
                    let expected = format!("\"{key}\":\"{b64}\"");
                    assert!(position.attributes.contains(&expected), "{expected}");
                    buffers += 1;
                }
                saw_node_buffer |= value.get("type").and_then(Value::as_str) == Some("Buffer");
            }
            assert!(bigints >= 1 && buffers >= 1, "{text}");
            let decoded: Value = serde_json::from_str(&position.attributes).expect("attributes");
            assert_eq!(decoded.as_object().map(|o| o.len()), Some(attributes.len()));
        }
        assert!(saw_node_buffer && saw_u128 && saw_iso && saw_millis);
        assert!(counts.contains(&8) && counts.contains(&20), "{counts:?}");
    }

    #[test]
    fn timestamps_strictly_increase_per_device() {
        let payloads = take(&args(11, 25, 0.0, 0.0), 3000);
        let mut last: HashMap<String, i64> = HashMap::new();
        for payload in &payloads {
            let position = decode_payload(payload.as_str().as_bytes()).expect("valid");
            if let Some(previous) = last.insert(position.device_id.clone(), position.ts_micros) {
                assert!(
                    position.ts_micros > previous,
                    "{}: {} after {previous}",
                    position.device_id,
                    position.ts_micros
                );
            }
        }
        assert_eq!(last.len(), 25, "every device reports");
        // The start time is honoured: the first fixes lie within a second of it.
        let earliest = last.values().min().copied().unwrap_or_default();
        assert!(earliest > 1_796_033_730_123_000);
    }

    #[test]
    fn invalid_payloads_fail_to_decode() {
        let payloads = take(&args(13, 30, 0.0, 1.0), 1200);
        let mut fields = HashSet::new();
        for payload in &payloads {
            let Payload::Invalid(text) = payload else {
                panic!("only invalid payloads were asked for: {payload:?}")
            };
            match decode_payload(text.as_bytes()) {
                Ok(position) => panic!("decoded {position:?} from {text}"),
                Err(error) => {
                    fields.insert(error.field.name());
                }
            }
        }
        // The faults are varied: they reach several fields.
        for field in [
            "payload",
            "device_id",
            "timestamp",
            "latitude",
            "attributes",
        ] {
            assert!(fields.contains(field), "no {field} error among {fields:?}");
        }
    }

    #[test]
    fn fractions_are_respected_and_duplicates_repeat_valid_payloads() {
        let payloads = take(&args(17, 100, 0.1, 0.05), 10_000);
        let mut valid = HashSet::new();
        let (mut duplicates, mut invalid) = (0, 0);
        for payload in &payloads {
            match payload {
                Payload::Valid(text) => {
                    assert!(valid.insert(text.as_str()), "a valid payload repeats");
                }
                Payload::Duplicate(text) => {
                    assert!(valid.contains(text.as_str()), "not a copy: {text}");
                    duplicates += 1;
                }
                Payload::Invalid(_) => invalid += 1,
            }
        }
        // Binomial standard deviations are 30 and 22; allow about five of them.
        assert!(
            (850..=1150).contains(&duplicates),
            "{duplicates} duplicates"
        );
        assert!((390..=610).contains(&invalid), "{invalid} invalid");
    }

    #[test]
    fn fractions_are_clamped() {
        let mut generator = Generator::new(&args(1, 10, f64::NAN, 2.0));
        for _ in 0..100 {
            assert!(matches!(generator.next_payload(), Payload::Invalid(_)));
        }
    }

    #[test]
    fn fmb_records_are_numeric_and_about_430_bytes() {
        let args = SimulateArgs {
            profile: crate::Profile::Fmb,
            ..args(21, 50, 0.0, 0.0)
        };
        let payloads = take(&args, 1000);
        let mut total = 0;
        for payload in &payloads {
            let text = payload.as_str();
            total += text.len();
            let position =
                decode_payload(text.as_bytes()).unwrap_or_else(|e| panic!("{e}: {text}"));
            let raw: Value = serde_json::from_str(text).expect("JSON");
            assert!(raw["timestamp"].is_string(), "an ISO timestamp: {text}");
            let attributes = raw["attributes"].as_object().expect("attributes");
            let mut ids: Vec<u16> = attributes
                .keys()
                .map(|k| k.parse().expect("an IO id"))
                .collect();
            ids.sort_unstable();
            assert_eq!(
                ids,
                vec![
                    1, 9, 16, 17, 18, 19, 21, 66, 67, 69, 113, 181, 182, 200, 206, 239, 240, 241,
                    303, 449
                ]
            );
            for value in attributes.values() {
                let digits = value
                    .as_i64()
                    .expect("an integer")
                    .unsigned_abs()
                    .to_string()
                    .len();
                assert!(digits <= 10, "{text}");
            }
            assert_eq!(
                serde_json::from_str::<Value>(&position.attributes).expect("JSON"),
                raw["attributes"]
            );
        }
        let mean = total / payloads.len();
        assert!((380..=480).contains(&mean), "mean payload {mean} bytes");
    }
}
