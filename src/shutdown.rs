//! Shutdown as a value passed in: the signal handler (or a test) triggers it, every loop watches it.
//!
//! # Drain order
//! 1. the trigger flips; each reader finishes the XREADGROUP in progress, hands its entries to its
//!    worker and stops reading;
//! 2. each worker feeds what it holds, closes its input and keeps stepping, so every epoch read
//!    is committed (rows and dead letters) and then acknowledged;
//! 3. when the probe is empty and every acknowledgement is sent, the workers return and `run`
//!    returns; past `SHUTDOWN_TIMEOUT_SECS` the drain is abandoned (`force`), leaving what was not
//!    acknowledged pending in the group, where the next start resumes it: nothing is lost.

use tokio::sync::watch;

/// A cloneable shutdown switch with two stages: `drain` (stop reading, finish what was read) and
/// `force` (stop now).
#[derive(Clone, Debug)]
pub struct Shutdown {
    drain: watch::Sender<bool>,
    force: watch::Sender<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A switch that is not triggered.
    pub fn new() -> Self {
        Shutdown {
            drain: watch::Sender::new(false),
            force: watch::Sender::new(false),
        }
    }

    /// Begins the drain.
    pub fn trigger(&self) {
        self.drain.send_replace(true);
    }

    /// Abandons the drain.
    pub fn force(&self) {
        self.drain.send_replace(true);
        self.force.send_replace(true);
    }

    /// Whether the drain has begun.
    pub fn is_triggered(&self) -> bool {
        *self.drain.borrow()
    }

    /// Whether the drain was abandoned.
    pub fn is_forced(&self) -> bool {
        *self.force.borrow()
    }

    /// Resolves when the drain begins.
    pub async fn triggered(&self) {
        let mut receiver = self.drain.subscribe();
        // `wait_for` errs only when the sender is dropped, which `self` prevents.
        let _ = receiver.wait_for(|triggered| *triggered).await;
    }

    /// Resolves when the drain is abandoned.
    pub async fn forced(&self) {
        let mut receiver = self.force.subscribe();
        let _ = receiver.wait_for(|forced| *forced).await;
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
