//! `processor simulate`: run the load generator (the `simulate` crate) against the stream, then
//! print its summary as JSON on standard output. Part of the binary, so the service library does
//! not depend on the load generator.

use std::process::ExitCode;

use processor::redis::{RedisLink, StreamKey};

/// Publishes what `args` asks for to `stream` on `link`'s server; exit 1 with one line on
/// standard error when that fails.
pub fn run(link: &RedisLink, stream: &StreamKey, args: &simulate::SimulateArgs) -> ExitCode {
    let published = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| {
            let client = link.client()?;
            let server = processor::redact::redact_url(&link.url);
            runtime
                .block_on(simulate::run(client, &server, &stream.key, args))
                .map_err(anyhow::Error::from)
        });
    match published.and_then(|report| Ok(serde_json::to_string(&report)?)) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("processor simulate: {error:#}");
            ExitCode::FAILURE
        }
    }
}
