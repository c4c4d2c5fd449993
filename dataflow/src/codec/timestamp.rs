//! The `timestamp` field: ISO-8601 text with a zone, or epoch milliseconds, to UTC microseconds.
//!
//! Why a hand-written parser rather than chrono's: the producer is Node, whose `Date.toJSON()`
//! writes years outside 0..=9999 in ECMAScript's expanded form (`+012345-…`, `-000001-…`), which
//! RFC 3339 parsers refuse; the accepted grammar is small and fixed, so parsing it directly is also
//! several times cheaper than a general format-driven parser and cannot panic (every byte is read
//! with `get`). The unit tests cross-check it against chrono on RFC 3339 text.
//!
//! Why the bounds: the value is written to a PostgreSQL `timestamptz`, which stores
//! 4714-11-24T00:00:00Z BC (Julian day 0) up to 294276-12-31T23:59:59.999999Z; a `Position` holds
//! microseconds since the Unix epoch in an `i64`, whose limit (294247-01-10T04:00:54.775807Z) comes
//! first. Anything outside is rejected here so that a write never fails on a record's content.
//! A string without a zone is rejected: it would silently take the database session's zone.

use std::borrow::Cow;

/// The earliest instant PostgreSQL's `timestamptz` stores: 4714-11-24T00:00:00Z BC (astronomical
/// year -4713), i.e. Julian day 0, in microseconds since the Unix epoch.
pub const MIN_TS_MICROS: i64 = -210_866_803_200_000_000;

/// The latest instant a `Position` can carry: the `i64` limit of microseconds since the Unix epoch
/// (294247-01-10T04:00:54.775807Z), which is below PostgreSQL's own end (294277-01-01T00:00:00Z).
pub const MAX_TS_MICROS: i64 = i64::MAX;

const MICROS_PER_SECOND: i128 = 1_000_000;
const SECONDS_PER_DAY: i64 = 86_400;

/// Epoch milliseconds to microseconds, within [`MIN_TS_MICROS`]..=[`MAX_TS_MICROS`].
pub(crate) fn from_epoch_millis(millis: i128) -> Result<i64, Cow<'static, str>> {
    in_range(millis.saturating_mul(1000))
        .ok_or_else(|| format!("{millis} ms since the epoch is {OUT_OF_RANGE}").into())
}

/// Parses an ISO-8601 date-time with a zone to microseconds since the Unix epoch (UTC).
///
/// Accepted: `YYYY-MM-DDTHH:MM:SS[.f{1,9}]` followed by `Z` or an offset `±HH:MM`, `±HHMM` or
/// `±HH`; the year is four digits, or a sign and six digits (ECMAScript's expanded years; `-000000`
/// is refused as ECMAScript does). `t`, `z` and a space instead of `T` are accepted as RFC 3339
/// allows, and `,` as the decimal sign as ISO 8601 allows. Digits beyond the microsecond are
/// truncated (the wire carries milliseconds; no producer writes more than nanoseconds). Leap
/// seconds (`:60`) and `24:00` are refused: `Date` never produces them.
pub(crate) fn parse_iso(text: &str) -> Result<i64, Cow<'static, str>> {
    let parsed = Parser::new(text).date_time().ok_or_else(|| not_iso(text))?;
    let DateTime {
        year,
        month,
        day,
        hour,
        minute,
        second,
        micros,
        offset_seconds,
    } = parsed;
    let offset_seconds = match offset_seconds {
        Some(offset) => offset,
        None => {
            return Err(format!(
                "{} has no time zone (add Z or an offset such as +02:00)",
                Shown(text)
            )
            .into())
        }
    };
    if !(1..=12).contains(&month) {
        return Err(format!("{}: month {month} does not exist", Shown(text)).into());
    }
    if day < 1 || day > days_in_month(year, month) {
        return Err(format!("{}: day {day} does not exist in that month", Shown(text)).into());
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err(format!("{}: time of day out of range", Shown(text)).into());
    }
    let days = days_from_civil(year, month, day);
    let seconds = days * SECONDS_PER_DAY
        + i64::from(hour) * 3600
        + i64::from(minute) * 60
        + i64::from(second)
        - offset_seconds;
    let total = i128::from(seconds) * MICROS_PER_SECOND + i128::from(micros);
    in_range(total).ok_or_else(|| format!("{} is {OUT_OF_RANGE}", Shown(text)).into())
}

/// Writes `micros` (since the Unix epoch, UTC) as ISO-8601 with six fractional digits and `Z`,
/// in the grammar [`parse_iso`] reads: a four-digit year, or ECMAScript's expanded form
/// (`+012345`, `-000001`) outside 0000..=9999. `parse_iso` of the result gives `micros` back.
pub(crate) fn format_iso(micros: i64) -> String {
    let seconds = micros.div_euclid(1_000_000);
    let fraction = micros.rem_euclid(1_000_000);
    let days = seconds.div_euclid(SECONDS_PER_DAY);
    let in_day = seconds.rem_euclid(SECONDS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    let year = if (0..=9999).contains(&year) {
        format!("{year:04}")
    } else if year < 0 {
        format!("-{:06}", -year)
    } else {
        format!("+{year:06}")
    };
    format!(
        "{year}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{fraction:06}Z",
        in_day / 3600,
        in_day / 60 % 60,
        in_day % 60
    )
}

/// The proleptic Gregorian (year, month, day) of a day count since 1970-01-01 (astronomical
/// years), after Howard Hinnant's `civil_from_days`; the inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

const OUT_OF_RANGE: &str = "out of range for PostgreSQL timestamptz (4714-11-24 BC .. 294247 AD)";

fn in_range(micros: i128) -> Option<i64> {
    i64::try_from(micros)
        .ok()
        .filter(|m| (MIN_TS_MICROS..=MAX_TS_MICROS).contains(m))
}

fn not_iso(text: &str) -> Cow<'static, str> {
    format!(
        "{} is not an ISO-8601 date-time with zone (expected e.g. 2026-11-29T10:15:30.123Z)",
        Shown(text)
    )
    .into()
}

/// Shows a possibly long input in an error message, bounded to 40 characters.
struct Shown<'a>(&'a str);

impl std::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        super::text::fmt_bounded(self.0, 40, f)
    }
}

/// The fields of a date-time as written, before range checks.
struct DateTime {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    micros: u32,
    /// `None` when the text has no zone designator at all.
    offset_seconds: Option<i64>,
}

/// A cursor over the text's bytes; every read is bounds-checked.
struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        Parser {
            bytes: text.as_bytes(),
            pos: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn eat(&mut self, accept: impl Fn(u8) -> bool) -> Option<u8> {
        let byte = self.peek().filter(|b| accept(*b))?;
        self.pos += 1;
        Some(byte)
    }

    fn digit(&mut self) -> Option<u32> {
        self.eat(|b| b.is_ascii_digit())
            .map(|b| u32::from(b - b'0'))
    }

    /// Exactly `count` decimal digits (count <= 9, so the value fits a u32).
    fn digits(&mut self, count: usize) -> Option<u32> {
        (0..count).try_fold(0u32, |acc, _| Some(acc * 10 + self.digit()?))
    }

    fn date_time(mut self) -> Option<DateTime> {
        let year = match self.eat(|b| b == b'+' || b == b'-') {
            Some(sign) => {
                let magnitude = i64::from(self.digits(6)?);
                if sign == b'-' {
                    if magnitude == 0 {
                        return None;
                    }
                    -magnitude
                } else {
                    magnitude
                }
            }
            None => i64::from(self.digits(4)?),
        };
        self.eat(|b| b == b'-')?;
        let month = self.digits(2)?;
        self.eat(|b| b == b'-')?;
        let day = self.digits(2)?;
        self.eat(|b| b == b'T' || b == b't' || b == b' ')?;
        let hour = self.digits(2)?;
        self.eat(|b| b == b':')?;
        let minute = self.digits(2)?;
        self.eat(|b| b == b':')?;
        let second = self.digits(2)?;
        let mut micros = 0;
        if self.eat(|b| b == b'.' || b == b',').is_some() {
            let mut count = 0;
            while let Some(d) = self.digit() {
                count += 1;
                if count > 9 {
                    return None;
                }
                if count <= 6 {
                    micros = micros * 10 + d;
                }
            }
            if count == 0 {
                return None;
            }
            for _ in count..6 {
                micros *= 10;
            }
        }
        let offset_seconds = match self.peek() {
            None => None,
            Some(b'Z' | b'z') => {
                self.pos += 1;
                Some(0)
            }
            Some(sign @ (b'+' | b'-')) => {
                self.pos += 1;
                let hours = self.digits(2)?;
                let minutes = match self.peek() {
                    None => 0,
                    Some(b':') => {
                        self.pos += 1;
                        self.digits(2)?
                    }
                    Some(_) => self.digits(2)?,
                };
                if hours > 23 || minutes > 59 {
                    return None;
                }
                let offset = i64::from(hours * 3600 + minutes * 60);
                Some(if sign == b'-' { -offset } else { offset })
            }
            Some(_) => return None,
        };
        if self.pos != self.bytes.len() {
            return None;
        }
        Some(DateTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
            micros,
            offset_seconds,
        })
    }
}

fn is_leap(year: i64) -> bool {
    year.rem_euclid(4) == 0 && (year.rem_euclid(100) != 0 || year.rem_euclid(400) == 0)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (astronomical year numbering), after
/// Howard Hinnant's `days_from_civil`; `month` is 1..=12, `year` within ±999999.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month_from_march = i64::from((month + 9) % 12);
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, FixedOffset, SecondsFormat, TimeZone, Utc};
    use proptest::prelude::*;

    #[test]
    fn utc_and_offsets() {
        assert_eq!(
            parse_iso("2026-11-29T10:15:30.123Z"),
            Ok(1_795_947_330_123_000)
        );
        assert_eq!(
            parse_iso("2026-11-29T12:15:30.123+02:00"),
            Ok(1_795_947_330_123_000)
        );
        assert_eq!(
            parse_iso("2026-11-29T05:15:30.123-0500"),
            Ok(1_795_947_330_123_000)
        );
        assert_eq!(
            parse_iso("2026-11-29 12:15:30.123+02"),
            Ok(1_795_947_330_123_000)
        );
        assert_eq!(parse_iso("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_iso("1969-12-31T23:59:59.999999z"), Ok(-1));
        // Nanoseconds are truncated to the microsecond.
        assert_eq!(parse_iso("1970-01-01T00:00:00,123456789Z"), Ok(123_456));
    }

    #[test]
    fn expanded_years_as_date_to_json_writes_them() {
        // new Date(-62198755200000).toJSON() === "-000001-01-01T00:00:00.000Z"
        assert_eq!(
            parse_iso("-000001-01-01T00:00:00.000Z"),
            Ok(-62_198_755_200_000_000)
        );
        // new Date(8.64e15).toJSON() === "+275760-09-13T00:00:00.000Z"
        assert_eq!(
            parse_iso("+275760-09-13T00:00:00.000Z"),
            Ok(8_640_000_000_000_000_000)
        );
        assert!(parse_iso("-000000-01-01T00:00:00Z").is_err());
    }

    #[test]
    fn no_zone_is_refused_with_that_reason() {
        let err = parse_iso("2026-11-29T10:15:30").unwrap_err();
        assert!(err.contains("no time zone"), "{err}");
        assert!(parse_iso("2026-11-29T10:15:30.123").is_err());
    }

    #[test]
    fn malformed_is_refused() {
        for text in [
            "",
            "yesterday",
            "2026-11-29",
            "2026-11-29T10:15Z",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-11-29T24:00:00Z",
            "2026-11-29T23:60:00Z",
            "2026-11-29T23:59:60Z",
            "2026-11-29T10:15:30.Z",
            "2026-11-29T10:15:30.1234567890Z",
            "2026-11-29T10:15:30+24:00",
            "2026-11-29T10:15:30+02:60",
            "2026-11-29T10:15:30+2",
            "2026-11-29T10:15:30Zjunk",
            "26-11-29T10:15:30Z",
            "+26-11-29T10:15:30Z",
            "２０２６-11-29T10:15:30Z",
        ] {
            assert!(parse_iso(text).is_err(), "{text:?} was accepted");
        }
        assert!(parse_iso("2024-02-29T00:00:00Z").is_ok());
        assert!(parse_iso("2000-02-29T00:00:00Z").is_ok());
        assert!(parse_iso("1900-02-29T00:00:00Z").is_err());
    }

    #[test]
    fn postgres_bounds() {
        // Julian day 0 is the first instant PostgreSQL stores.
        assert_eq!(parse_iso("-004713-11-24T00:00:00Z"), Ok(MIN_TS_MICROS));
        assert!(parse_iso("-004713-11-23T23:59:59.999Z").is_err());
        // An offset can push an in-range wall clock out of range.
        assert!(parse_iso("-004713-11-24T00:00:00+00:01").is_err());
        assert_eq!(
            parse_iso("+294247-01-10T04:00:54.775807Z"),
            Ok(MAX_TS_MICROS)
        );
        assert!(parse_iso("+294247-01-10T04:00:54.775808Z").is_err());
        assert!(parse_iso("+294276-12-31T00:00:00Z").is_err());
        assert!(parse_iso("+999999-12-31T23:59:59Z").is_err());

        assert_eq!(from_epoch_millis(-210_866_803_200_000), Ok(MIN_TS_MICROS));
        assert!(from_epoch_millis(-210_866_803_200_001).is_err());
        assert_eq!(
            from_epoch_millis(9_223_372_036_854_775),
            Ok(9_223_372_036_854_775_000)
        );
        assert!(from_epoch_millis(9_223_372_036_854_776).is_err());
        assert!(from_epoch_millis(i128::MAX).is_err());
        assert!(from_epoch_millis(i128::MIN).is_err());
    }

    #[test]
    fn negative_epoch_millis() {
        assert_eq!(from_epoch_millis(-1), Ok(-1000));
        // 1900-01-01T00:00:00.000Z
        assert_eq!(
            from_epoch_millis(-2_208_988_800_000),
            Ok(-2_208_988_800_000_000)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// The parser agrees with chrono on RFC 3339 text with any offset and fraction length.
        #[test]
        fn agrees_with_chrono(
            secs in -62_135_596_800i64..253_402_300_799,
            nanos in 0u32..1_000_000_000,
            offset_minutes in -1439i32..=1439,
            format in 0usize..4,
        ) {
            let offset = FixedOffset::east_opt(offset_minutes * 60).unwrap();
            let utc = Utc.timestamp_opt(secs, nanos).unwrap();
            let local: DateTime<FixedOffset> = utc.with_timezone(&offset);
            let seconds_format = [
                SecondsFormat::Secs,
                SecondsFormat::Millis,
                SecondsFormat::Micros,
                SecondsFormat::Nanos,
            ][format];
            let text = local.to_rfc3339_opts(seconds_format, true);
            let parsed = DateTime::parse_from_rfc3339(&text).unwrap();
            // chrono keeps nanoseconds; the codec truncates to the microsecond.
            let expected = parsed.timestamp() * 1_000_000
                + i64::from(parsed.timestamp_subsec_nanos() / 1000);
            prop_assert_eq!(parse_iso(&text), Ok(expected), "{}", text);
        }

        /// Never panics, whatever the text.
        #[test]
        fn total_on_any_text(text in "\\PC{0,40}") {
            let _ = parse_iso(&text);
        }
    }
}
