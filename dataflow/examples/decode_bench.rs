//! Times `decode_payload` on two kinds of payload, a million decodes each:
//! - `teltonika`: a Teltonika FMB-like record (about 430 bytes): ISO timestamp, 7-decimal
//!   coordinates, 20 numeric IO attributes with integer values of 0 to 10 digits;
//! - `sentinels`: a record whose attributes hold `__bigint`s, a `__buffer_b64`, a Node
//!   `Buffer.toJSON()` array and floats.
//!
//! Run with `cargo run --release -p dataflow --example decode_bench`; it prints ns per decode for
//! three timed runs of each kind and their median. Arguments: how many decodes per run (default a
//! million) and which kinds (default both). Instructions rather than seconds, which do not move
//! with the host's load:
//! `valgrind --tool=callgrind target/release/examples/decode_bench 20000 teltonika`
//! (divide the total by 4 × 20,000: a warm-up and three runs).

use std::hint::black_box;
use std::time::Instant;

use dataflow::codec::decode_payload;

const TELTONIKA: &str = concat!(
    r#"{"device_id":"356307042441013","timestamp":"2026-11-29T10:15:30.123Z","#,
    r#""latitude":54.6871571,"longitude":25.2796523,"altitude":112,"angle":270,"#,
    r#""satellites":11,"speed":48,"priority":0,"event_id":0,"attributes":{"#,
    r#""1":0,"9":1234567,"16":1234567890,"17":4294901760,"18":1003,"19":1280,"21":5,"66":12850123,"#,
    r#""67":40123,"69":1,"113":100,"181":12,"182":12,"200":0,"206":4294967295,"239":1,"#,
    r#""240":1,"241":2460119,"303":3000,"449":123456789}}"#
);

const SENTINELS: &str = concat!(
    r#"{"device_id":"356307042441013","timestamp":1795947330123,"#,
    r#""latitude":54.68,"longitude":25.27,"speed":42,"satellites":9,"attributes":{"#,
    r#""239":1,"16":{"__bigint":"9007199254740993"},"11":{"__bigint":"89370071234567890123"},"#,
    r#""78":{"__buffer_b64":"AQIDBAUGBwg="},"256":{"type":"Buffer","data":[87,70,48,88,88]},"#,
    r#""9":12.345,"24":0.1,"30":-3.75e-5,"66":12850.5,"67":4.012}}"#
);

const DECODES: u32 = 1_000_000;
const RUNS: usize = 3;

fn time(payload: &str, decodes: u32) -> f64 {
    let bytes = payload.as_bytes();
    let start = Instant::now();
    for _ in 0..decodes {
        let position = decode_payload(black_box(bytes));
        black_box(&position);
    }
    start.elapsed().as_nanos() as f64 / f64::from(decodes)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let decodes = match args.next().map(|count| count.parse::<u32>()) {
        None => DECODES,
        Some(Ok(count)) if count > 0 => count,
        Some(_) => {
            eprintln!("usage: decode_bench [DECODES per run] [teltonika|sentinels]...");
            std::process::exit(2);
        }
    };
    let kinds: Vec<String> = args.collect();
    for (name, payload) in [("teltonika", TELTONIKA), ("sentinels", SENTINELS)] {
        if !kinds.is_empty() && !kinds.iter().any(|kind| kind == name) {
            continue;
        }
        if let Err(error) = decode_payload(payload.as_bytes()) {
            eprintln!("{name}: the payload does not decode: {error}");
            std::process::exit(1);
        }
        time(payload, decodes); // warm-up
        let mut runs: Vec<f64> = (0..RUNS).map(|_| time(payload, decodes)).collect();
        runs.sort_by(f64::total_cmp);
        let shown: Vec<String> = runs.iter().map(|ns| format!("{ns:.0}")).collect();
        println!(
            "{name} ({} bytes): {} ns per decode (median of {}) {}",
            payload.len(),
            runs.get(RUNS / 2).map_or(0.0, |ns| *ns).round(),
            RUNS,
            shown.join(" "),
        );
    }
}
