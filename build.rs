//! Build script: the resolved timely version, from Cargo.lock, for the build-info metric
//! (`processor_build_info{timely=...}`), so the label says what was built rather than what was
//! last written by hand.

use std::process::ExitCode;

fn main() -> ExitCode {
    println!("cargo:rerun-if-changed=Cargo.lock");
    let lock = match std::fs::read_to_string("Cargo.lock") {
        Ok(lock) => lock,
        Err(error) => {
            eprintln!("build.rs: cannot read Cargo.lock for timely's version: {error}");
            return ExitCode::FAILURE;
        }
    };
    match timely_version(&lock) {
        Some(version) => {
            println!("cargo:rustc-env=TIMELY_VERSION={version}");
            ExitCode::SUCCESS
        }
        None => {
            eprintln!("build.rs: Cargo.lock has no [[package]] named \"timely\"");
            ExitCode::FAILURE
        }
    }
}

/// The `version` of the `[[package]]` whose `name` is `timely`.
fn timely_version(lock: &str) -> Option<&str> {
    lock.split("[[package]]").find_map(|package| {
        let field = |key: &str| {
            package.lines().find_map(|line| {
                let value = line.trim().strip_prefix(key)?.trim_start();
                value
                    .strip_prefix('=')?
                    .trim()
                    .strip_prefix('"')?
                    .strip_suffix('"')
            })
        };
        (field("name") == Some("timely"))
            .then(|| field("version"))
            .flatten()
    })
}
