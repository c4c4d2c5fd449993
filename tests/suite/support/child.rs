//! The processor binary as a child process: signals sent to it (with kill(1), since the
//! workspace forbids `unsafe`), and waiting for its exit while collecting what it logged.

use std::collections::HashMap;
use std::io::Read;
use std::process::Child;
use std::process::Command;
use std::sync::{LazyLock, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The threads that read each spawned binary's stderr, by process id, until [`wait_exit`] takes
/// what they read.
static LOGS: LazyLock<Mutex<HashMap<u32, JoinHandle<String>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Reads `child`'s stderr as it is written, for [`wait_exit`]. A pipe nobody reads fills up
/// (64 KiB), and then the binary blocks in its next log line: a test that reads the log only at
/// the end would see a service stalled by the test itself.
pub fn drain_stderr(child: &mut Child) {
    if let Some(mut stderr) = child.stderr.take() {
        let reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        LOGS.lock().expect("logs").insert(child.id(), reader);
    }
}

/// Sends the signal named `name` (`TERM`, `KILL`, `INT`) to a child process, with kill(1): the
/// workspace forbids `unsafe`, and the tests have no need for it.
pub fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .arg("-s")
        .arg(name)
        .arg(child.id().to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -s {name} {}", child.id());
}

/// SIGTERM, as a container runtime sends it.
pub fn sigterm(child: &Child) {
    signal(child, "TERM");
}

/// Waits for the child to exit, returning its status and everything it wrote to stderr.
pub fn wait_exit(mut child: Child, timeout: Duration) -> (std::process::ExitStatus, String) {
    drain_stderr(&mut child);
    let reader = LOGS
        .lock()
        .expect("logs")
        .remove(&child.id())
        .expect("stderr is piped");
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let log = reader.join().unwrap_or_default();
            panic!("the processor did not exit within {timeout:?}; its log:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status, reader.join().unwrap_or_default())
}

/// SIGTERM, then waits (up to 40 s) for a clean exit: returns what the binary logged, failing the
/// test (with the log) when the drain did not exit 0.
pub async fn drain_cleanly(child: Child) -> String {
    sigterm(&child);
    let (status, log) =
        tokio::task::spawn_blocking(move || wait_exit(child, Duration::from_secs(40)))
            .await
            .expect("join the waiting thread");
    assert!(
        status.success(),
        "the drain did not exit 0: {status}\n{log}"
    );
    log
}
