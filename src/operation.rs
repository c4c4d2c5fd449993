//! The operations the service retries, and the words its log lines and `/readyz` use for them:
//! one list, so a documented log line cannot drift from the one printed. A leaf.

/// The operations that are retried, each with the words its log lines use. Every retry log line
/// of the service is `<what> failed; retrying` (a transient failure, `WARN`) or `<what> failed and
/// will not succeed until this is fixed; retrying` (a stalled one, `ERROR`) for one of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Start-up: connect to PostgreSQL, apply migrations, set up TimescaleDB.
    Migrate,
    /// Start-up: check the dead-letter key, create the group, adopt retired workers.
    JoinGroup,
    /// A reader's XREADGROUP, claim or poison sweep.
    Read,
    /// An epoch's rows to PostgreSQL.
    Write,
    /// Refused entries to the dead-letter stream.
    DeadLetter,
    /// XACK of committed entries.
    Ack,
}

impl Operation {
    /// Every operation, for documentation and tests.
    pub const ALL: [Operation; 6] = [
        Operation::Migrate,
        Operation::JoinGroup,
        Operation::Read,
        Operation::Write,
        Operation::DeadLetter,
        Operation::Ack,
    ];

    /// The log line of a failed attempt that is retried: transient (`WARN`) or stalled until an
    /// operator fixes something (`ERROR`). The one place these lines are worded.
    pub fn retry_message(self, stalled: bool) -> String {
        if stalled {
            format!(
                "{} failed and will not succeed until this is fixed; retrying",
                self.what()
            )
        } else {
            format!("{} failed; retrying", self.what())
        }
    }

    /// How log lines and `/readyz` name it.
    pub const fn what(self) -> &'static str {
        match self {
            Operation::Migrate => "postgres migrate",
            Operation::JoinGroup => "redis join",
            Operation::Read => "stream read",
            Operation::Write => "epoch write",
            Operation::DeadLetter => "dead letter",
            Operation::Ack => "acknowledgement",
        }
    }
}
