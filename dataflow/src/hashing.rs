//! One fast hasher for the hash maps on the hot path: keys are device ids, `(device_id, ts)`
//! pairs and device hashes, all chosen by trackers rather than by an adversary, so the standard
//! library's SipHash (built to resist chosen collisions) would only cost time: it took a tenth of
//! the fold when the active-devices map used it.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// Word-at-a-time multiply-rotate hashing (the scheme of rustc's `FxHasher`); a collision costs
/// one key comparison, never a wrong answer.
#[derive(Default, Clone, Copy, Debug)]
pub struct KeyHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl KeyHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for KeyHasher {
    /// The state rotated: hashbrown picks a key's bucket from the hash's low bits, and after a
    /// multiply the low bits depend only on the low bits of what was added (a string key that ends
    /// in a partial word, such as a 15-digit IMEI, then crowds into few buckets); the high bits
    /// depend on every bit, so they are brought down (as rustc-hash 2 does).
    fn finish(&self) -> u64 {
        self.0.rotate_left(26)
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut le = [0u8; 8];
            le.copy_from_slice(word);
            self.add(u64::from_le_bytes(le));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut le = [0u8; 8];
            le[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(le));
        }
    }

    fn write_u8(&mut self, value: u8) {
        self.add(u64::from(value));
    }

    fn write_u64(&mut self, value: u64) {
        self.add(value);
    }

    fn write_usize(&mut self, value: usize) {
        self.add(value as u64);
    }
}

/// A `HashMap` hashed with [`KeyHasher`].
pub type KeyMap<K, V> = HashMap<K, V, BuildHasherDefault<KeyHasher>>;

/// A `HashSet` hashed with [`KeyHasher`].
pub type KeySet<K> = HashSet<K, BuildHasherDefault<KeyHasher>>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::Hash;

    fn hash<T: Hash>(value: T) -> u64 {
        let mut hasher = KeyHasher::default();
        value.hash(&mut hasher);
        hasher.finish()
    }

    #[test]
    fn every_part_of_a_key_counts() {
        assert_ne!(hash(("a", 1i64)), hash(("a", 2i64)));
        assert_ne!(hash(("a", 1i64)), hash(("b", 1i64)));
        // the tail of a string that is not a whole word
        assert_ne!(hash("123456789"), hash("12345678"));
        assert_ne!(hash("ab"), hash("ba"));
        assert_eq!(hash("356307042441013"), hash("356307042441013"));
    }

    #[test]
    fn device_ids_spread_over_the_low_bits() {
        // 10,000 IMEIs that differ in their last digits, into 2^14 buckets by the low bits (as
        // hashbrown picks them): uniform hashing fills about 7,490 of them.
        let buckets: HashSet<u64> = (0..10_000u64)
            .map(|n| hash(format!("35630704{:07}", n * 7)) & 0x3fff)
            .collect();
        assert!(buckets.len() > 7_000, "{} buckets", buckets.len());
    }
}
