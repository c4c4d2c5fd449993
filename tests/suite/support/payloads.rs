//! The contract payloads the tests publish: one position, or many spread over devices.

/// A contract payload for `device` at `ts_ms` (epoch milliseconds), with a few attributes.
pub fn payload(device: &str, ts_ms: i64) -> String {
    format!(
        r#"{{"device_id":"{device}","timestamp":{ts_ms},"latitude":54.68,"longitude":25.27,"speed":42,"satellites":9,"attributes":{{"239":1,"16":{{"__bigint":"9007199254740993"}},"78":{{"__buffer_b64":"AQID"}}}}}}"#
    )
}

/// `count` payloads spread round-robin over `devices` devices, each with increasing time.
pub fn payloads(prefix: &str, devices: usize, count: usize) -> Vec<String> {
    let base = 1_790_000_000_000i64;
    (0..count)
        .map(|i| {
            let device = format!("{prefix}-{:05}", i % devices);
            payload(&device, base + (i / devices) as i64 * 1000)
        })
        .collect()
}
