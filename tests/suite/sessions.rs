//! What every session the service opens runs with.

use crate::support::harness::Test;
use crate::support::servers::servers;

/// This module's tests, as the suite runs them (see `main.rs`).
pub fn tests() -> Vec<Test> {
    [trial!(
        sessions_run_without_jit_unless_the_url_sets_it,
        tokio = 2
    )]
    .into_iter()
    .flatten()
    .collect()
}

async fn jit(url: &str) -> String {
    let client = processor::postgres::connect(url, None)
        .await
        .expect("connect");
    client
        .query_one("SHOW jit", &[])
        .await
        .expect("SHOW jit")
        .get(0)
}

/// JIT compilation is off in the service's sessions (its statements are short; compiling them
/// costs more than it saves), and an operator's `jit` in the URL's `options` wins (in any case),
/// beside the other options there.
async fn sessions_run_without_jit_unless_the_url_sets_it() {
    let url = servers().database_url;
    assert_eq!(jit(&url).await, "off");
    let separator = if url.contains('?') { '&' } else { '?' };
    let chosen = format!("{url}{separator}options=-c%20JIT%3Don%20-c%20work_mem%3D8MB");
    assert_eq!(jit(&chosen).await, "on");
    let other = format!("{url}{separator}options=-c%20work_mem%3D8MB");
    let client = processor::postgres::connect(&other, None)
        .await
        .expect("connect");
    let work_mem: String = client.query_one("SHOW work_mem", &[]).await.unwrap().get(0);
    assert_eq!(work_mem, "8MB", "the URL's other options stay");
    assert_eq!(jit(&other).await, "off");
}
