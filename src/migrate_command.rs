//! `processor migrate`: apply the migrations and the TimescaleDB settings, then exit. The one
//! step that needs DDL rights (a Kubernetes init container, a release job, a DBA's change
//! window), so the service itself can run with a role that only reads and writes rows.
//!
//! It uses the service's advisory lock, so two runs at once (or a run beside a starting
//! replica under `MIGRATE=auto`) apply each migration once. It does not retry: whatever runs it
//! decides whether to run it again. Exit 0 with a JSON report on standard output, or 2 with one
//! line on standard error.

use std::process::ExitCode;

use processor::postgres::timescale::Optional;
use processor::postgres::{DatabaseLink, MigrationReport, Storage, TimescaleArgs};

/// Applies what is missing on `link`'s database; the exit status and output described above.
pub fn run(link: &DatabaseLink, hypertable: &TimescaleArgs) -> ExitCode {
    let migrated = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))
        .and_then(|runtime| {
            runtime.block_on(async {
                let mut client = link.connect().await.map_err(|e| e.to_string())?;
                processor::postgres::migrate(&mut client, &hypertable.config())
                    .await
                    .map_err(|e| e.to_string())
            })
        });
    match migrated {
        Ok(report) => {
            println!("{}", report_json(&report));
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("processor migrate: {error}");
            ExitCode::from(2)
        }
    }
}

/// `{"applied":[1,3,4],"positions":"hypertable","timescaledb":"2.28.3",...}`.
fn report_json(report: &MigrationReport) -> serde_json::Value {
    let mut json = serde_json::json!({ "applied": report.applied });
    match &report.storage {
        Storage::Hypertable {
            version,
            compress_after,
            retention,
        } => {
            json["positions"] = "hypertable".into();
            json["timescaledb"] = version.as_str().into();
            json["compress_after"] = Optional(*compress_after).to_string().into();
            json["retention"] = Optional(*retention).to_string().into();
        }
        Storage::Plain(reason) => {
            json["positions"] = "plain table".into();
            json["reason"] = reason.to_string().into();
        }
    }
    json
}
