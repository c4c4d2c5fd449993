//! The simulated fleet: Teltonika-like trackers, how they move and what they report.
//!
//! How the fleet behaves, and why:
//! - devices report in turn (round robin), each about once per simulated second (1000 ms ± 250 ms
//!   per record), so every device's timestamps strictly increase and never repeat: each valid
//!   record is a distinct `(device_id, ts)` row;
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

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::format::imei;
use crate::record::{Attr, Record, Timestamp};
use crate::Profile;

/// Mean milliseconds between two fixes of one device.
const INTERVAL_MS: i64 = 1000;
/// Jitter of that interval, either way; below the interval, so time always moves forward.
const JITTER_MS: i64 = 250;
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

/// The devices of one run, reporting in turn.
#[derive(Debug)]
pub(crate) struct Fleet {
    profile: Profile,
    seed: u64,
    size: u32,
    start_ms: i64,
    devices: Vec<Device>,
    next: u32,
    imei_prefix: u64,
    serial_offset: u128,
}

impl Fleet {
    /// `size` devices (at least one) whose first fixes fall within a second after `start_ms`.
    pub(crate) fn new(profile: Profile, seed: u64, size: u32, start_ms: i64) -> Self {
        let mut setup = StdRng::seed_from_u64(mix(seed));
        let imei_prefix = IMEI_PREFIXES
            .get(setup.random_range(0..IMEI_PREFIXES.len()))
            .copied()
            .unwrap_or(3563);
        Fleet {
            profile,
            seed,
            size: size.max(1),
            start_ms,
            devices: Vec::new(),
            next: 0,
            imei_prefix,
            serial_offset: setup.random_range(0..SERIAL_SPACE),
        }
    }

    /// Moves the next device in turn and returns its fix.
    pub(crate) fn next_record(&mut self, rng: &mut StdRng) -> Record {
        let index = self.next;
        self.next = (index + 1) % self.size;
        if let Some(device) = self.devices.get_mut(index as usize) {
            return device.step(rng, self.profile);
        }
        // First use: round robin reaches devices in index order, so this one goes at `index`.
        let mut device = Device::new(self.seed, index, self.device_id(index), self.start_ms);
        let record = device.step(rng, self.profile);
        self.devices.push(device);
        record
    }

    /// Device `index`'s IMEI: a seed-chosen prefix, then a serial that is a permutation of the
    /// index (so distinct for every `u32` index), then the Luhn digit.
    pub(crate) fn device_id(&self, index: u32) -> String {
        let serial = (self.serial_offset + u128::from(index) * SERIAL_MULTIPLIER) % SERIAL_SPACE;
        let serial = u64::try_from(serial).unwrap_or(0);
        imei(self.imei_prefix * 10_000_000_000 + serial)
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
    /// Seconds with the ignition on, a 10-digit counter on a long-lived device.
    ignition_on_s: u64,
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
            ignition_on_s: rng.random_range(1_000_000_000..=4_000_000_000),
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
    fn step(&mut self, rng: &mut StdRng, profile: Profile) -> Record {
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
        let timestamp = if profile == Profile::Fmb || rng.random_bool(0.75) {
            Timestamp::Iso(ts_ms)
        } else {
            Timestamp::Millis(ts_ms)
        };
        let attributes = match profile {
            Profile::Fmb => self.fmb_attributes(rng),
            Profile::Mixed => self.attributes(rng),
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
            attributes,
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
        if self.ignition {
            self.ignition_on_s = self
                .ignition_on_s
                .saturating_add(interval_ms.unsigned_abs() / 1000);
        }
        self.counter = self.counter.wrapping_add(1);
    }

    /// A Teltonika FMB record's IO elements: the 20 numeric ones such a device sends in every
    /// record, in id order, integers of 0 to 10 digits.
    fn fmb_attributes(&self, rng: &mut StdRng) -> Vec<(u16, Attr)> {
        let moving = i64::from(self.speed > 0.0);
        vec![
            (1, Attr::Int(i64::from(self.ignition))),
            (9, Attr::Int(rng.random_range(0..=30_000))),
            (16, Attr::Int(self.odometer_m as i64)),
            (17, Attr::Int(rng.random_range(-1000..=1000))),
            (18, Attr::Int(rng.random_range(-1000..=1000))),
            (19, Attr::Int(rng.random_range(-1000..=1000))),
            (21, Attr::Int(rng.random_range(1..=5))),
            (66, Attr::Int(rng.random_range(12_000..=14_400))),
            (67, Attr::Int(rng.random_range(3_900..=4_200))),
            (69, Attr::Int(i64::from(self.satellites > 0))),
            (113, Attr::Int(rng.random_range(0..=100))),
            (181, Attr::Int(rng.random_range(5..=30))),
            (182, Attr::Int(rng.random_range(5..=25))),
            (200, Attr::Int(if self.ignition { 0 } else { 4 })),
            (206, Attr::Int(i64::from(self.area_code))),
            (239, Attr::Int(i64::from(self.ignition))),
            (240, Attr::Int(moving)),
            (241, Attr::Int(i64::from(self.operator))),
            (303, Attr::Int(moving)),
            (
                449,
                Attr::Int(i64::try_from(self.ignition_on_s).unwrap_or(i64::MAX)),
            ),
        ]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids_are_distinct_imeis() {
        let fleet = Fleet::new(Profile::Fmb, 5, 1000, 0);
        let ids: std::collections::HashSet<String> =
            (0..1000).map(|i| fleet.device_id(i)).collect();
        assert_eq!(ids.len(), 1000);
        assert_eq!(fleet.device_id(u32::MAX).len(), 15);
    }
}
