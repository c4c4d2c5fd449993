//! Progress of a simulation on stderr, fit for where stderr goes.
//!
//! On a terminal, one line rewritten in place (`\r`) a few times a second; anywhere else (a file,
//! a CI log, `docker logs`), where `\r` would pile up into one huge line, a plain line every two
//! seconds. Either way a summary line ends the run. Write errors are ignored: progress must never
//! stop a run (stderr closed is no reason to stop publishing).

use std::io::Write;
use std::time::{Duration, Instant};

use super::SimulateReport;

/// How a run ended, for the summary line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The count was reached or the duration elapsed.
    Done,
    /// SIGINT or SIGTERM.
    Interrupted,
    /// A Redis error.
    Failed,
}

/// The progress reporter of one run.
pub(crate) struct Progress {
    terminal: bool,
    interval: Duration,
    last_at: Instant,
    last_published: u64,
    /// Whether an unterminated `\r` line is on the terminal.
    line_open: bool,
}

impl Progress {
    /// A reporter; `terminal` chooses the updating line.
    pub(crate) fn new(terminal: bool, started: Instant) -> Self {
        Progress {
            terminal,
            interval: if terminal {
                Duration::from_millis(250)
            } else {
                Duration::from_secs(2)
            },
            last_at: started,
            last_published: 0,
            line_open: false,
        }
    }

    /// Reports `published` entries after `elapsed`, if the interval has passed since the last one.
    pub(crate) fn update(&mut self, published: u64, elapsed: Duration, now: Instant) {
        let since = now.saturating_duration_since(self.last_at);
        if since < self.interval {
            return;
        }
        let recent = per_second(published.saturating_sub(self.last_published), since);
        self.last_at = now;
        self.last_published = published;
        let text = progress_line(published, recent, per_second(published, elapsed), elapsed);
        let mut err = std::io::stderr().lock();
        if self.terminal {
            // Padding clears what a longer previous line left.
            let _ = write!(err, "\r{text:<78}");
            self.line_open = true;
        } else {
            let _ = writeln!(err, "simulate: {text}");
        }
        let _ = err.flush();
    }

    /// Ends the progress display with the summary.
    pub(crate) fn finish(&mut self, report: &SimulateReport, outcome: Outcome) {
        let mut err = std::io::stderr().lock();
        if self.line_open {
            let _ = writeln!(err);
            self.line_open = false;
        }
        let _ = writeln!(err, "simulate: {}", summary_line(report, outcome));
        let _ = err.flush();
    }
}

/// Events per second (0 for no time).
fn per_second(events: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 {
        events as f64 / seconds
    } else {
        0.0
    }
}

fn progress_line(published: u64, recent: f64, average: f64, elapsed: Duration) -> String {
    format!(
        "{published} published, {recent:.0}/s now, {average:.0}/s average, {:.1} s elapsed",
        elapsed.as_secs_f64()
    )
}

fn summary_line(report: &SimulateReport, outcome: Outcome) -> String {
    let seconds = report.elapsed_ms as f64 / 1000.0;
    let rate = if seconds > 0.0 {
        report.published as f64 / seconds
    } else {
        0.0
    };
    let ending = match outcome {
        Outcome::Done => "",
        Outcome::Interrupted => " (interrupted)",
        Outcome::Failed => " (stopped by an error)",
    };
    format!(
        "published {} entries in {seconds:.3} s ({rate:.0}/s): {} valid, {} duplicates, {} invalid{ending}",
        report.published, report.valid_distinct, report.duplicates, report.invalid
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_say_what_was_published() {
        let line = progress_line(1500, 1000.4, 750.0, Duration::from_millis(2000));
        assert_eq!(
            line,
            "1500 published, 1000/s now, 750/s average, 2.0 s elapsed"
        );
        let report = SimulateReport {
            published: 1000,
            valid_distinct: 850,
            duplicates: 100,
            invalid: 50,
            elapsed_ms: 500,
        };
        assert_eq!(
            summary_line(&report, Outcome::Done),
            "published 1000 entries in 0.500 s (2000/s): 850 valid, 100 duplicates, 50 invalid"
        );
        assert!(summary_line(&report, Outcome::Interrupted).ends_with("(interrupted)"));
        assert_eq!(per_second(10, Duration::ZERO), 0.0);
    }
}
