//! Rows the database refuses, and the rule that tells a bad row from a database that refuses
//! every row.
//!
//! A row that breaks a `CHECK` among good ones is bad data: it is dead-lettered and the stream
//! moves on. A trigger that raises for every row (its audit service down), a `NOT NULL` column
//! added without a default, a `CHECK` nothing passes: that is the database refusing everything,
//! and dead-lettering would empty the stream into the dead-letter stream. The two are told apart
//! by a *streak*: the rows the process has found refused, in the order isolation finds them
//! (epochs in turn, each one's rows in key order), since the last row it wrote (by isolation, or
//! by any epoch written whole).
//!
//! # The rule
//! A refusal is *systematic* when the streak reaches [`STREAK_ROWS`] rows of at least
//! [`STREAK_DEVICES`] devices, all refused for one reason (the SQLSTATE, the constraint, and the
//! server's message with its values masked). Then nothing more is dead-lettered: the epoch is
//! held, its entries stay pending, the write is retried with the retry policy's backoff (an
//! `ERROR` and `/readyz` name the reason), and it lands once the database takes it.
//!
//! Why it does not mistake one for the other:
//! - a database refusing every row breaks no streak: nothing is taken, so after at most
//!   `STREAK_ROWS - 1` dead letters (the first rows of a burst, when they come from enough
//!   devices) the streak is systematic; the next epochs add to it;
//! - bad rows among good ones: any row taken ends the streak, and rows are tried in key order,
//!   so a streak needs that many bad rows in a row with no good one between (at a 2% rate,
//!   about one chance in 10^17 per row);
//! - every row of a few devices refused (a trigger blocking a device): their rows are refused in
//!   a row, but they are fewer than `STREAK_DEVICES` devices, so they are dead-lettered;
//! - one bad entry on a quiet stream: a streak of one; it is dead-lettered at once, never held
//!   waiting for evidence that may never come.

use std::collections::BTreeSet;

use crate::redact::mask_values;

/// Rows in a streak that make a refusal systematic.
pub const STREAK_ROWS: usize = 10;

/// Devices in a streak that make a refusal systematic.
pub const STREAK_DEVICES: usize = 3;

/// A row the database refused, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Its index in the rows given to the isolation.
    pub index: usize,
    /// The SQLSTATE.
    pub code: String,
    /// The constraint the server named, if any.
    pub constraint: Option<String>,
    /// The server's message.
    pub message: String,
}

impl Refusal {
    /// The dead letter's `error`: `postgres <SQLSTATE> [<constraint>]: <message>`.
    pub fn reason(&self) -> String {
        match &self.constraint {
            Some(constraint) => format!("postgres {} {constraint}: {}", self.code, self.message),
            None => format!("postgres {}: {}", self.code, self.message),
        }
    }

    /// The reason with the values masked: refusals of one kind share it.
    fn kind(&self) -> String {
        mask_values(&self.reason())
    }
}

/// The database refuses every row for one reason (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the database refuses every row ({reason}): {rows} rows of {devices} devices refused in a row, \
     none taken; the entries stay pending and land once the table, its constraints or its \
     triggers take them (REFUSED_ROWS=dead-letter dead-letters such rows instead)",
    reason = .refusal.reason()
)]
pub struct Systematic {
    /// The refusal that made the streak systematic.
    pub refusal: Refusal,
    /// Rows in the streak.
    pub rows: usize,
    /// Devices in the streak (counted up to [`STREAK_DEVICES`]).
    pub devices: usize,
}

/// The process's refused rows since the last row taken, all of one kind.
#[derive(Debug, Default)]
pub struct Streak {
    kind: String,
    rows: usize,
    /// The first [`STREAK_DEVICES`] devices of the streak.
    devices: BTreeSet<String>,
}

impl Streak {
    /// `refusal` of a row of `device`: the systematic refusal when the streak now is one.
    pub fn refused(&mut self, device: &str, refusal: &Refusal) -> Option<Systematic> {
        let kind = refusal.kind();
        if kind != self.kind {
            self.taken();
            self.kind = kind;
        }
        self.rows += 1;
        if self.devices.len() < STREAK_DEVICES {
            self.devices.insert(device.to_owned());
        }
        (self.rows >= STREAK_ROWS && self.devices.len() >= STREAK_DEVICES).then(|| Systematic {
            refusal: refusal.clone(),
            rows: self.rows,
            devices: self.devices.len(),
        })
    }

    /// A row was taken: the streak ends.
    pub fn taken(&mut self) {
        self.kind.clear();
        self.rows = 0;
        self.devices.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(message: &str) -> Refusal {
        Refusal {
            index: 0,
            code: "P0001".into(),
            constraint: None,
            message: message.into(),
        }
    }

    #[test]
    fn ten_rows_of_three_devices_for_one_reason_are_systematic() {
        let mut streak = Streak::default();
        for i in 0..STREAK_ROWS - 1 {
            // the values differ, the kind does not
            let refused = refusal(&format!("audit {i} unavailable"));
            assert_eq!(streak.refused(&format!("d{}", i % 3), &refused), None);
        }
        let last = streak.refused("d0", &refusal("audit 99 unavailable"));
        let last = last.expect("systematic");
        assert_eq!((last.rows, last.devices), (STREAK_ROWS, 3));
        assert!(last
            .to_string()
            .contains("postgres P0001: audit 99 unavailable"));
        // and it stays so until a row is taken
        assert!(streak
            .refused("d1", &refusal("audit 1 unavailable"))
            .is_some());
        streak.taken();
        assert_eq!(streak.refused("d1", &refusal("audit 1 unavailable")), None);
    }

    #[test]
    fn few_devices_a_taken_row_or_another_reason_break_the_streak() {
        let mut streak = Streak::default();
        for _ in 0..100 {
            assert_eq!(streak.refused("blocked-1", &refusal("blocked")), None);
            assert_eq!(streak.refused("blocked-2", &refusal("blocked")), None);
        }
        let mut streak = Streak::default();
        for i in 0..100 {
            if i % 9 == 8 {
                streak.taken();
            }
            assert_eq!(streak.refused(&format!("d{i}"), &refusal("bad")), None);
        }
        let mut streak = Streak::default();
        for i in 0..100 {
            let reason = if i % 2 == 0 { "one" } else { "other" };
            assert_eq!(streak.refused(&format!("d{i}"), &refusal(reason)), None);
        }
    }
}
