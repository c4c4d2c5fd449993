//! What a panic looks like in the log: one structured `ERROR` line, never a raw multi-line
//! backtrace in the middle of JSON lines.
//!
//! A timely cluster runs and restarts as a whole: when a peer process dies, this process's
//! network threads for that peer panic (`timely:recv-N`, `timely:send-N`), and every worker would
//! follow with panics of its own. Nothing can progress without the peer, so the process says so
//! once and exits with [`EXIT_PEER_LOST`], for the orchestrator to restart the cluster. Nothing is
//! lost: what was not acknowledged stays pending and is resumed at the next start.

use std::sync::atomic::{AtomicBool, Ordering};

/// The exit status after losing a peer of the timely cluster.
pub const EXIT_PEER_LOST: i32 = 3;

/// Set by the first thread that exits for a lost peer (its send and receive threads both panic).
static EXITING: AtomicBool = AtomicBool::new(false);

/// Installs the hook (for the binary; tests keep the default one).
pub fn install() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed");
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .map(|text| (*text).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(a panic without a message)".to_owned());
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        if let Some(peer) = peer_of(name) {
            if EXITING.swap(true, Ordering::SeqCst) {
                // another thread is saying it and exiting: wait for the end, quietly
                loop {
                    std::thread::park();
                }
            }
            tracing::error!(
                process = peer,
                thread = name,
                error = %message,
                exit_status = EXIT_PEER_LOST,
                "lost the connection to cluster process {peer}; exiting so the cluster restarts as a whole"
            );
            std::process::exit(EXIT_PEER_LOST);
        }
        tracing::error!(thread = name, location, error = %message, "a thread panicked");
    }));
}

/// The peer process a timely network thread talks to (`timely:recv-1` → `1`).
fn peer_of(thread: &str) -> Option<&str> {
    thread
        .strip_prefix("timely:recv-")
        .or_else(|| thread.strip_prefix("timely:send-"))
        .filter(|peer| !peer.is_empty() && peer.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_threads_name_their_peer() {
        assert_eq!(peer_of("timely:recv-1"), Some("1"));
        assert_eq!(peer_of("timely:send-12"), Some("12"));
        assert_eq!(peer_of("timely:work-0"), None);
        assert_eq!(peer_of("timely:recv-"), None);
        assert_eq!(peer_of("processor-io"), None);
    }
}
