//! Small text encoders the generator needs, written here rather than pulled in as dependencies:
//! standard base64 (the `base64` crate is a dependency of `dataflow` only), Node's `Date.toJSON()`
//! form of a timestamp, and the Luhn check digit that ends an IMEI.
//!
//! Each one is a few lines, exact, and cannot fail: the generator must never panic or stop on its
//! own output.

use std::fmt::Write as _;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Appends the standard, padded base64 (RFC 4648 §4) of `bytes` to `out`.
pub(crate) fn push_base64(out: &mut String, bytes: &[u8]) {
    out.reserve(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b0 = chunk.first().copied().unwrap_or(0);
        let b1 = chunk.get(1).copied().unwrap_or(0);
        let b2 = chunk.get(2).copied().unwrap_or(0);
        let group = (u32::from(b0) << 16) | (u32::from(b1) << 8) | u32::from(b2);
        // Four 6-bit indices; a chunk of n bytes yields n + 1 significant characters.
        for (position, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if position <= chunk.len() {
                let index = ((group >> shift) & 0x3f) as usize;
                out.push(char::from(ALPHABET.get(index).copied().unwrap_or(b'A')));
            } else {
                out.push('=');
            }
        }
    }
}

/// The last instant `Date.toJSON()` writes with a four-digit year: 9999-12-31T23:59:59.999Z.
pub(crate) const MAX_ISO_MS: i64 = 253_402_300_799_999;

/// Appends `ms` (epoch milliseconds) as `Date.toJSON()` writes it, `2026-11-29T10:15:30.123Z`.
///
/// Years outside 1970..=9999 are outside what the generator produces (see `SimulateArgs`); for
/// them Node writes an expanded year (`+012345-…`), so this writes the integer form instead,
/// which the contract accepts as well.
pub(crate) fn push_timestamp_iso(out: &mut String, ms: i64) {
    if !(0..=MAX_ISO_MS).contains(&ms) {
        let _ = write!(out, "{ms}");
        return;
    }
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    let _ = write!(
        out,
        "\"{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z\"",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000
    );
}

/// Days since 1970-01-01 to the proleptic Gregorian (year, month, day) (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The 15-digit IMEI whose first 14 digits are `body` (taken modulo 10^14): the body, then its
/// Luhn check digit.
pub(crate) fn imei(body: u64) -> String {
    let body = body % 100_000_000_000_000;
    let digits = format!("{body:014}");
    // Luhn: from the right of the body, double every first, third, ... digit.
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let doubled = d * 2;
                doubled / 10 + doubled % 10
            } else {
                d
            }
        })
        .sum();
    let check = (10 - sum % 10) % 10;
    format!("{digits}{check}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(bytes: &[u8]) -> String {
        let mut out = String::new();
        push_base64(&mut out, bytes);
        out
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(b64(input.as_bytes()), expected, "{input:?}");
        }
        assert_eq!(b64(&[1, 2, 3, 4, 5, 6, 7, 8]), "AQIDBAUGBwg=");
        assert_eq!(b64(&[0xff, 0xfe, 0xfd]), "//79");
    }

    #[test]
    fn iso_matches_chrono() {
        for ms in [
            0,
            1,
            999,
            951_782_400_000, // 2000-02-29
            1_767_225_599_999,
            1_796_033_730_123,
            4_107_542_400_000, // 2100-03-01
            MAX_ISO_MS,
        ] {
            let mut out = String::new();
            push_timestamp_iso(&mut out, ms);
            let expected = chrono::DateTime::from_timestamp_millis(ms)
                .expect("in range")
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            assert_eq!(out, format!("\"{expected}\""), "{ms}");
        }
        let mut out = String::new();
        push_timestamp_iso(&mut out, MAX_ISO_MS + 1);
        assert_eq!(out, (MAX_ISO_MS + 1).to_string());
    }

    #[test]
    fn imei_has_a_valid_luhn_digit() {
        // A published example IMEI.
        assert_eq!(imei(49_015_420_323_751), "490154203237518");
        assert_eq!(imei(35_630_704_244_101), "356307042441013");
        assert_eq!(imei(0).len(), 15);
    }
}
