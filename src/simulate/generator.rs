//! The record generator: a deterministic fleet of simulated Teltonika trackers.
//!
//! Pure (no I/O, no clock): everything follows from [`SimulateArgs`], so a seed reproduces a load
//! test exactly, and the unit tests check the output against the real codec.
//!
//! How the fleet behaves, and why:
//! - devices report in turn (round robin), each about once per simulated second (1000 ms ± 250 ms
//!   per record), so every device's timestamps strictly increase and never repeat: each valid
//!   record is a distinct `(device_id, ts)` row, and the only duplicates are the deliberate ones
//!   (with `--rate` equal to `--devices`, the simulated clocks keep pace with the wall clock);
//! - a device drives a random walk inside a European box (it turns back at the edges): speed
//!   0..=130 km/h, heading drifting a few degrees per fix, the position moving by speed × time,
//!   ignition occasionally off (parked: speed 0);
//! - device state is created on first use from a seed of its own (the run seed and the device
//!   index), so memory grows with the devices actually reached, and a device's id, SIM and start
//!   do not depend on how many other devices there are;
//! - each record carries 8..=20 IO attributes, always including a big integer (`11`, ICCID) and a
//!   buffer (`78`, iButton), the two values JSON cannot carry and the producer wraps in sentinels;
//! - the timestamp is a `Date.toJSON()` string three times in four, else epoch milliseconds,
//!   the two forms the Node producer sends.
//!
//! Payloads are written directly as JSON text (not through `serde_json::Value`): the output is
//! byte-for-byte fixed, a big integer can never become a float, and a record costs a few
//! microseconds, well below what a Redis pipeline takes to carry it.

use std::collections::VecDeque;
use std::fmt::Write as _;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::format::{imei, push_base64, push_timestamp_iso};
use super::SimulateArgs;

/// The first position's time when [`SimulateArgs::start_ms`] is not set: 2026-01-01T00:00:00Z.
/// (`run` sets it to the current time; a bare `Generator` stays reproducible.)
pub const DEFAULT_START_MS: i64 = 1_767_225_600_000;

/// Mean milliseconds between two fixes of one device.
const INTERVAL_MS: i64 = 1000;
/// Jitter of that interval, either way; below the interval, so time always moves forward.
const JITTER_MS: i64 = 250;
/// How many recent valid payloads a duplicate is drawn from.
const RECENT: usize = 128;
/// The box the fleet drives in (roughly Europe), degrees.
const LAT_RANGE: (f64, f64) = (36.0, 70.0);
const LON_RANGE: (f64, f64) = (-10.0, 40.0);
/// Kilometres per degree of latitude.
const KM_PER_DEGREE: f64 = 111.32;
/// IMEI prefixes (first four digits of Teltonika-like type allocation codes).
const IMEI_PREFIXES: [u64; 4] = [3563, 3520, 8641, 3596];
/// Multiplier of the index -> serial permutation; coprime with 10^10, so ids never collide.
const SERIAL_MULTIPLIER: u128 = 6_364_136_223;
const SERIAL_SPACE: u128 = 10_000_000_000;

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
    seed: u64,
    devices: u32,
    start_ms: i64,
    duplicates: f64,
    invalid: f64,
    fleet: Vec<Device>,
    next_device: u32,
    imei_prefix: u64,
    serial_offset: u128,
    recent: VecDeque<String>,
}

impl Generator {
    /// A generator for `args`: its seed, devices (at least one), fractions (clamped to 0..=1,
    /// `invalid` to at most `1 - duplicates`) and start time ([`DEFAULT_START_MS`] when unset).
    pub fn new(args: &SimulateArgs) -> Self {
        let duplicates = fraction(args.duplicates);
        let invalid = fraction(args.invalid).min(1.0 - duplicates);
        let mut setup = StdRng::seed_from_u64(mix(args.seed));
        let imei_prefix = IMEI_PREFIXES
            .get(setup.random_range(0..IMEI_PREFIXES.len()))
            .copied()
            .unwrap_or(3563);
        Generator {
            rng: StdRng::seed_from_u64(args.seed),
            seed: args.seed,
            devices: args.devices.max(1),
            start_ms: args.start_ms.unwrap_or(DEFAULT_START_MS),
            duplicates,
            invalid,
            fleet: Vec::new(),
            next_device: 0,
            imei_prefix,
            serial_offset: setup.random_range(0..SERIAL_SPACE),
            recent: VecDeque::with_capacity(RECENT),
        }
    }

    /// The next payload in publish order.
    pub fn next_payload(&mut self) -> Payload {
        let draw: f64 = self.rng.random();
        if draw < self.duplicates && !self.recent.is_empty() {
            let index = self.rng.random_range(0..self.recent.len());
            if let Some(text) = self.recent.get(index) {
                return Payload::Duplicate(text.clone());
            }
        }
        let invalid = draw >= self.duplicates && draw < self.duplicates + self.invalid;
        let mut record = self.next_record();
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

    /// Moves the next device in turn and returns its fix.
    fn next_record(&mut self) -> Record {
        let index = self.next_device;
        self.next_device = (index + 1) % self.devices;
        if let Some(device) = self.fleet.get_mut(index as usize) {
            return device.step(&mut self.rng);
        }
        // First use: round robin reaches devices in index order, so this one goes at `index`.
        let mut device = Device::new(self.seed, index, self.device_id(index), self.start_ms);
        let record = device.step(&mut self.rng);
        self.fleet.push(device);
        record
    }

    /// Device `index`'s IMEI: a seed-chosen prefix, then a serial that is a permutation of the
    /// index (so distinct for every `u32` index), then the Luhn digit.
    fn device_id(&self, index: u32) -> String {
        let serial = (self.serial_offset + u128::from(index) * SERIAL_MULTIPLIER) % SERIAL_SPACE;
        let serial = u64::try_from(serial).unwrap_or(0);
        imei(self.imei_prefix * 10_000_000_000 + serial)
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

/// SplitMix64's finaliser: spreads a seed so that related seeds give unrelated streams.
fn mix(value: u64) -> u64 {
    let mut z = value.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One simulated tracker's state between fixes.
#[derive(Debug)]
struct Device {
    id: String,
    /// The next fix's time, epoch milliseconds.
    next_ms: i64,
    latitude: f64,
    longitude: f64,
    altitude: f64,
    heading: f64,
    speed: f64,
    satellites: u8,
    ignition: bool,
    odometer_m: f64,
    trip_m: f64,
    iccid: u64,
    iccid2: u64,
    user_id: u64,
    /// A 128-bit counter (beyond `u64`), to exercise the codec's exact big-number path.
    counter: u128,
    ibutton: [u8; 8],
    operator: u32,
    cell_id: u32,
    area_code: u32,
    vin: String,
}

impl Device {
    fn new(seed: u64, index: u32, id: String, start_ms: i64) -> Self {
        let mut rng = StdRng::seed_from_u64(mix(seed ^ mix(u64::from(index))));
        const VIN_CHARS: &[u8] = b"ABCDEFGHJKLMNPRSTUVWXYZ0123456789";
        let vin = (0..17)
            .map(|_| {
                let i = rng.random_range(0..VIN_CHARS.len());
                char::from(VIN_CHARS.get(i).copied().unwrap_or(b'X'))
            })
            .collect();
        Device {
            id,
            next_ms: start_ms.saturating_add(rng.random_range(0..INTERVAL_MS)),
            latitude: rng.random_range(LAT_RANGE.0..LAT_RANGE.1),
            longitude: rng.random_range(LON_RANGE.0..LON_RANGE.1),
            altitude: rng.random_range(0.0..600.0),
            heading: rng.random_range(0.0..360.0),
            speed: rng.random_range(0.0..90.0),
            satellites: rng.random_range(4..=16),
            ignition: rng.random_bool(0.9),
            odometer_m: rng.random_range(0.0..500_000_000.0),
            trip_m: 0.0,
            iccid: rng.random_range(8_900_000_000_000_000_000..=8_999_999_999_999_999_999),
            iccid2: rng.random_range(8_900_000_000_000_000_000..=8_999_999_999_999_999_999),
            user_id: rng.random_range((1u64 << 53) + 1..=u64::MAX),
            counter: u128::from(u64::MAX) + u128::from(rng.random::<u32>()) + 1,
            ibutton: rng.random(),
            operator: [24601, 24602, 26201, 26202, 23415, 20801, 21401, 26001]
                .get(rng.random_range(0..8))
                .copied()
                .unwrap_or(24601),
            cell_id: rng.random_range(1..=268_435_455),
            area_code: rng.random_range(1..=65_533),
            vin,
        }
    }

    /// Advances the device to its next fix and returns that fix as a record.
    fn step(&mut self, rng: &mut StdRng) -> Record {
        let ts_ms = self.next_ms;
        let interval = INTERVAL_MS + rng.random_range(-JITTER_MS..=JITTER_MS);
        self.next_ms = self.next_ms.saturating_add(interval);
        self.drive(rng, interval);
        let priority: u8 = match rng.random_range(0..1000) {
            0..950 => 0,
            950..995 => 1,
            _ => 2,
        };
        let event_id = if priority == 0 {
            0
        } else {
            [239, 240, 246, 247, 250, 252, 253]
                .get(rng.random_range(0..7))
                .copied()
                .unwrap_or(0)
        };
        let timestamp = if rng.random_bool(0.75) {
            Timestamp::Iso(ts_ms)
        } else {
            Timestamp::Millis(ts_ms)
        };
        Record {
            device_id: Some(self.id.clone()),
            timestamp,
            latitude: round(self.latitude, 7),
            longitude: round(self.longitude, 7),
            altitude: self.altitude.round() as i64,
            angle: self.heading.round() as i64,
            satellites: self.satellites,
            speed: self.speed.round() as i64,
            priority,
            event_id,
            attributes: self.attributes(rng),
        }
    }

    /// Moves along the current heading for `interval_ms` and lets speed, heading, altitude and
    /// satellites drift.
    fn drive(&mut self, rng: &mut StdRng, interval_ms: i64) {
        if rng.random_bool(0.002) {
            self.ignition = !self.ignition;
            self.trip_m = 0.0;
        }
        self.speed = if self.ignition {
            (self.speed + rng.random_range(-6.0..=6.0)).clamp(0.0, 130.0)
        } else {
            0.0
        };
        self.heading = (self.heading + rng.random_range(-12.0..=12.0)).rem_euclid(360.0);
        let km = self.speed * interval_ms as f64 / 3_600_000.0;
        let (sin, cos) = self.heading.to_radians().sin_cos();
        self.latitude += km * cos / KM_PER_DEGREE;
        let km_per_lon_degree = KM_PER_DEGREE * self.latitude.to_radians().cos().max(0.05);
        self.longitude += km * sin / km_per_lon_degree;
        // Turn back at the edges of the box (reflect the heading), so the walk stays plausible.
        if !(LAT_RANGE.0..=LAT_RANGE.1).contains(&self.latitude) {
            self.heading = (180.0 - self.heading).rem_euclid(360.0);
            self.latitude = self.latitude.clamp(LAT_RANGE.0, LAT_RANGE.1);
        }
        if !(LON_RANGE.0..=LON_RANGE.1).contains(&self.longitude) {
            self.heading = (360.0 - self.heading).rem_euclid(360.0);
            self.longitude = self.longitude.clamp(LON_RANGE.0, LON_RANGE.1);
        }
        self.altitude = (self.altitude + rng.random_range(-3.0..=3.0)).clamp(0.0, 2500.0);
        let satellites = i16::from(self.satellites) + rng.random_range(-1..=1);
        self.satellites = u8::try_from(satellites.clamp(0, 20)).unwrap_or(0);
        self.odometer_m += km * 1000.0;
        self.trip_m += km * 1000.0;
        self.counter = self.counter.wrapping_add(1);
    }

    /// The IO elements: six always present (including the big integer and the buffer), then 2..=14
    /// of the optional ones, so 8..=20 in all.
    fn attributes(&self, rng: &mut StdRng) -> Vec<(u16, Attr)> {
        let mut attributes = vec![
            (239, Attr::Int(i64::from(self.ignition))),
            (240, Attr::Int(i64::from(self.speed > 0.0))),
            (66, Attr::Int(rng.random_range(12_000..=14_400))),
            (9, Attr::Float(round(rng.random_range(0.0..30.0), 3))),
            (11, Attr::BigInt(self.iccid.to_string())),
            (78, Attr::Base64(self.ibutton.to_vec())),
        ];
        let optional =
            rng.random_range(MIN_ATTRIBUTES - attributes.len()..=MAX_ATTRIBUTES - attributes.len());
        let mut chosen = rand::seq::index::sample(rng, OPTIONAL, optional).into_vec();
        chosen.sort_unstable();
        for which in chosen {
            attributes.push(self.optional_attribute(which, rng));
        }
        attributes
    }

    fn optional_attribute(&self, which: usize, rng: &mut StdRng) -> (u16, Attr) {
        match which {
            0 => (21, Attr::Int(rng.random_range(1..=5))),
            1 => (200, Attr::Int(if rng.random_bool(0.9) { 0 } else { 4 })),
            2 => (69, Attr::Int(i64::from(self.satellites > 0))),
            3 => (181, Attr::Int(rng.random_range(5..=30))),
            4 => (182, Attr::Int(rng.random_range(5..=25))),
            5 => (67, Attr::Int(rng.random_range(3_900..=4_200))),
            6 => (68, Attr::Int(rng.random_range(0..=400))),
            7 => (16, Attr::Int(self.odometer_m as i64)),
            8 => (199, Attr::Int(self.trip_m as i64)),
            9 => (24, Attr::Int(self.speed.round() as i64)),
            10 => (205, Attr::Int(i64::from(self.cell_id))),
            11 => (206, Attr::Int(i64::from(self.area_code))),
            12 => (241, Attr::Int(i64::from(self.operator))),
            13 => (1, Attr::Int(i64::from(self.ignition))),
            14 => (72, Attr::Float(round(rng.random_range(-20.0..40.0), 1))),
            15 => (113, Attr::Int(rng.random_range(0..=100))),
            16 => (17, Attr::Int(rng.random_range(-1000..=1000))),
            17 => (18, Attr::Int(rng.random_range(-1000..=1000))),
            18 => (19, Attr::Int(rng.random_range(-1000..=1000))),
            19 => (80, Attr::Int(rng.random_range(0..=5))),
            20 => (14, Attr::BigInt(self.iccid2.to_string())),
            21 => (238, Attr::BigInt(self.user_id.to_string())),
            22 => {
                let bytes = random_bytes(rng, 10..=40);
                if rng.random_bool(0.5) {
                    (385, Attr::Base64(bytes))
                } else {
                    // A producer without the replacer sends Node's own Buffer.toJSON() shape.
                    (385, Attr::NodeBuffer(bytes))
                }
            }
            23 => {
                let beacons = rng.random_range(1..=3);
                let list = (0..beacons)
                    .map(|_| Attr::Base64(random_bytes(rng, 6..=16)))
                    .collect();
                (548, Attr::List(list))
            }
            24 => (256, Attr::Text(self.vin.clone())),
            25 => (390, Attr::BigInt(self.counter.to_string())),
            26 => (10828, Attr::Float(round(rng.random_range(0.0..40.0), 2))),
            _ => (113, Attr::Int(rng.random_range(0..=100))),
        }
    }
}

/// How many optional attributes [`Device::optional_attribute`] knows.
const OPTIONAL: usize = 27;
/// Attributes per record, the always-present ones included.
const MIN_ATTRIBUTES: usize = 8;
const MAX_ATTRIBUTES: usize = 20;

fn random_bytes(rng: &mut StdRng, length: std::ops::RangeInclusive<usize>) -> Vec<u8> {
    let length = rng.random_range(length);
    (0..length).map(|_| rng.random()).collect()
}

/// `value` rounded to `decimals` places (the precision a tracker reports).
fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

/// How the timestamp is written.
#[derive(Debug, Clone)]
enum Timestamp {
    /// `Date.toJSON()` text.
    Iso(i64),
    /// Epoch milliseconds.
    Millis(i64),
    /// Raw JSON (a corrupted value).
    Raw(String),
}

/// An IO attribute value.
#[derive(Debug, Clone)]
enum Attr {
    Int(i64),
    Float(f64),
    Text(String),
    /// `{"__bigint":"<digits>"}`.
    BigInt(String),
    /// `{"__buffer_b64":"<base64>"}`.
    Base64(Vec<u8>),
    /// `{"type":"Buffer","data":[...]}`.
    NodeBuffer(Vec<u8>),
    List(Vec<Attr>),
    /// Raw JSON (a corrupted value).
    Raw(String),
}

impl Attr {
    fn write(&self, out: &mut String) {
        match self {
            Attr::Int(value) => {
                let _ = write!(out, "{value}");
            }
            Attr::Float(value) => push_float(out, *value),
            Attr::Text(text) => push_string(out, text),
            Attr::BigInt(digits) => {
                out.push_str("{\"__bigint\":");
                push_string(out, digits);
                out.push('}');
            }
            Attr::Base64(bytes) => {
                out.push_str("{\"__buffer_b64\":\"");
                push_base64(out, bytes);
                out.push_str("\"}");
            }
            Attr::NodeBuffer(bytes) => {
                out.push_str("{\"type\":\"Buffer\",\"data\":[");
                for (i, byte) in bytes.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{byte}");
                }
                out.push_str("]}");
            }
            Attr::List(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Attr::Raw(json) => out.push_str(json),
        }
    }
}

/// A finite float as JSON (Rust's `Display` writes the shortest text that round-trips, without an
/// exponent); a non-finite one, which the generator never produces, as 0.
fn push_float(out: &mut String, value: f64) {
    if value.is_finite() {
        let _ = write!(out, "{value}");
    } else {
        out.push('0');
    }
}

/// A JSON string literal, escaped.
fn push_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// One fix, before it is written as JSON (corruptions edit it first).
#[derive(Debug, Clone)]
struct Record {
    device_id: Option<String>,
    timestamp: Timestamp,
    latitude: f64,
    longitude: f64,
    altitude: i64,
    angle: i64,
    satellites: u8,
    speed: i64,
    priority: u8,
    event_id: u16,
    attributes: Vec<(u16, Attr)>,
}

impl Record {
    /// The payload, with fields in the order of the contract's example.
    fn to_json(&self) -> String {
        self.write(None, None)
    }

    /// Writes the record; `latitude` / `longitude` override the values with raw JSON.
    fn write(&self, latitude: Option<&str>, longitude: Option<&str>) -> String {
        let mut out = String::with_capacity(640);
        out.push('{');
        if let Some(id) = &self.device_id {
            out.push_str("\"device_id\":");
            push_string(&mut out, id);
            out.push(',');
        }
        out.push_str("\"timestamp\":");
        match &self.timestamp {
            Timestamp::Iso(ms) => push_timestamp_iso(&mut out, *ms),
            Timestamp::Millis(ms) => {
                let _ = write!(out, "{ms}");
            }
            Timestamp::Raw(json) => out.push_str(json),
        }
        out.push_str(",\"latitude\":");
        match latitude {
            Some(raw) => out.push_str(raw),
            None => push_float(&mut out, self.latitude),
        }
        out.push_str(",\"longitude\":");
        match longitude {
            Some(raw) => out.push_str(raw),
            None => push_float(&mut out, self.longitude),
        }
        let _ = write!(
            out,
            ",\"altitude\":{},\"angle\":{},\"satellites\":{},\"speed\":{},\"priority\":{},\"event_id\":{}",
            self.altitude, self.angle, self.satellites, self.speed, self.priority, self.event_id
        );
        out.push_str(",\"attributes\":{");
        for (i, (key, value)) in self.attributes.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "\"{key}\":");
            value.write(&mut out);
        }
        out.push_str("}}");
        out
    }

    /// The payload broken by `fault`.
    fn corrupt(&mut self, fault: Fault, rng: &mut StdRng) -> String {
        match fault {
            Fault::Latitude => {
                let value = if rng.random_bool(0.5) { "91" } else { "-90.5" };
                self.write(Some(value), None)
            }
            Fault::Longitude => self.write(None, Some("181.25")),
            Fault::LatitudeType => {
                let text = format!("\"{}\"", self.latitude);
                self.write(Some(&text), None)
            }
            Fault::NoDeviceId => {
                self.device_id = None;
                self.to_json()
            }
            Fault::EmptyDeviceId => {
                self.device_id = Some(String::new());
                self.to_json()
            }
            Fault::Timestamp => {
                let bad = [
                    "\"2026-13-01T00:00:00.000Z\"",
                    "\"2026-02-30T10:15:30.123Z\"",
                    "\"yesterday\"",
                    "\"\"",
                    "\"2026-11-29T25:15:30.123Z\"",
                ];
                let raw = bad.get(rng.random_range(0..bad.len())).copied();
                self.timestamp = Timestamp::Raw(raw.unwrap_or("\"yesterday\"").to_owned());
                self.to_json()
            }
            Fault::TimestampNoZone => {
                let mut iso = String::new();
                let ms = match self.timestamp {
                    Timestamp::Iso(ms) | Timestamp::Millis(ms) => ms,
                    Timestamp::Raw(_) => DEFAULT_START_MS,
                };
                push_timestamp_iso(&mut iso, ms);
                // `"…123Z"` -> `"…123"`: a local time, which the contract refuses.
                let raw = iso.replace("Z\"", "\"");
                self.timestamp = Timestamp::Raw(raw);
                self.to_json()
            }
            Fault::BigIntLetters => {
                self.replace(11, Attr::Raw("{\"__bigint\":\"89370abc12\"}".to_owned()));
                self.to_json()
            }
            Fault::BadBase64 => {
                self.replace(78, Attr::Raw("{\"__buffer_b64\":\"AQID*BA!\"}".to_owned()));
                self.to_json()
            }
            Fault::BufferByte => {
                let raw = "{\"type\":\"Buffer\",\"data\":[1,2,256]}".to_owned();
                self.replace(78, Attr::Raw(raw));
                self.to_json()
            }
            Fault::NotAnObject => match rng.random_range(0..5) {
                0 => format!("[{}]", self.to_json()),
                1 => "\"position\"".to_owned(),
                2 => "42".to_owned(),
                3 => "null".to_owned(),
                _ => "true".to_owned(),
            },
            Fault::Truncated => {
                let mut text = self.to_json();
                let mut cut = text.len() / 2;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text.truncate(cut);
                text
            }
        }
    }

    fn replace(&mut self, key: u16, value: Attr) {
        if let Some(slot) = self.attributes.iter_mut().find(|(k, _)| *k == key) {
            slot.1 = value;
        } else {
            self.attributes.push((key, value));
        }
    }
}

/// Ways an invalid payload breaks the contract.
#[derive(Debug, Clone, Copy)]
enum Fault {
    Latitude,
    Longitude,
    LatitudeType,
    NoDeviceId,
    EmptyDeviceId,
    Timestamp,
    TimestampNoZone,
    BigIntLetters,
    BadBase64,
    BufferByte,
    NotAnObject,
    Truncated,
}

const FAULTS: [Fault; 12] = [
    Fault::Latitude,
    Fault::Longitude,
    Fault::LatitudeType,
    Fault::NoDeviceId,
    Fault::EmptyDeviceId,
    Fault::Timestamp,
    Fault::TimestampNoZone,
    Fault::BigIntLetters,
    Fault::BadBase64,
    Fault::BufferByte,
    Fault::NotAnObject,
    Fault::Truncated,
];

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use dataflow::codec::decode_payload;
    use serde_json::Value;

    use super::*;

    fn args(seed: u64, devices: u32, duplicates: f64, invalid: f64) -> SimulateArgs {
        SimulateArgs {
            devices,
            count: Some(10_000),
            duration: None,
            rate: 0,
            seed,
            duplicates,
            invalid,
            pipeline: 500,
            start_ms: Some(1_796_033_730_123),
        }
    }

    fn take(args: &SimulateArgs, n: usize) -> Vec<Payload> {
        let mut generator = Generator::new(args);
        (0..n).map(|_| generator.next_payload()).collect()
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
    fn device_ids_are_distinct_imeis() {
        let generator = Generator::new(&args(5, 1000, 0.0, 0.0));
        let ids: HashSet<String> = (0..1000).map(|i| generator.device_id(i)).collect();
        assert_eq!(ids.len(), 1000);
        assert_eq!(generator.device_id(u32::MAX).len(), 15);
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
                    fields.insert(error.field);
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
}
