//! The suite's own test runner: each test is a [`libtest_mimic::Trial`], so whether a test can
//! run is decided when the binary starts. A test that needs something this machine lacks (a
//! TimescaleDB server, libfaketime) is registered as ignored and shows as `ignored` in the
//! runner's summary, instead of passing without having run; `REQUIRE_...=1` turns that absence
//! into a failure. Registration is one [`trial!`] line per test in its module's `tests()`.

use std::collections::HashMap;
use std::future::Future;
use std::process::ExitCode;

use libtest_mimic::{Arguments, Failed, Trial};

use super::servers::{self, Backend};

/// Something a test needs that a machine may lack: without it the test is ignored, unless
/// `required_by` is set to `1`, which makes the absence a failure (the test runs and says why).
pub struct Need {
    /// What the test's name ends with (`::timescaledb`), so a listing says what it needs.
    pub tag: &'static str,
    /// The variable that makes the absence a failure.
    pub required_by: &'static str,
    /// Whether this machine has it; only asked when a test that needs it is selected.
    pub present: fn() -> bool,
}

/// A TimescaleDB server (see `servers.rs` for where one is looked for).
pub const TIMESCALEDB: Need = Need {
    tag: "timescaledb",
    required_by: "REQUIRE_TIMESCALEDB",
    present: || servers::timescaledb_url().is_some(),
};

/// One registered test, before the run decides whether it is ignored.
pub struct Test {
    name: String,
    need: Option<&'static Need>,
    body: Box<dyn FnOnce() + Send>,
}

/// `suite::pipeline` and `f` -> `pipeline::f` (what a filter matches, as libtest names it).
fn full_name(module: &str, test: &str) -> String {
    let module = module.split_once("::").map_or("", |(_, rest)| rest);
    format!("{module}::{test}")
}

/// `future` on a runtime of the kind `#[tokio::test(flavor = "multi_thread", worker_threads =
/// workers)]` builds, which is what every async test here ran on before this runner.
fn block_on<F: Future<Output = ()>>(workers: usize, future: F) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("the test's runtime")
        .block_on(future);
}

impl Test {
    /// A test that is a plain function.
    pub fn plain(module: &str, name: &str, body: fn()) -> Vec<Test> {
        vec![Test {
            name: full_name(module, name),
            need: None,
            body: Box::new(body),
        }]
    }

    /// An async test, on a multi-threaded runtime of `workers` threads.
    pub fn tokio<F>(module: &str, name: &str, workers: usize, body: fn() -> F) -> Vec<Test>
    where
        F: Future<Output = ()> + 'static,
    {
        vec![Test {
            name: full_name(module, name),
            need: None,
            body: Box::new(move || block_on(workers, body())),
        }]
    }

    /// An async test that needs `need`: its name ends with the need's tag.
    pub fn tokio_needing<F>(
        module: &str,
        name: &str,
        workers: usize,
        need: &'static Need,
        body: fn() -> F,
    ) -> Vec<Test>
    where
        F: Future<Output = ()> + 'static,
    {
        vec![Test {
            name: format!("{}::{}", full_name(module, name), need.tag),
            need: Some(need),
            body: Box::new(move || block_on(workers, body())),
        }]
    }

    /// An async test run twice, `name::postgres` and `name::timescaledb` (which needs
    /// TimescaleDB): `body` is given the backend.
    pub fn on_both<F>(module: &str, name: &str, workers: usize, body: fn(Backend) -> F) -> Vec<Test>
    where
        F: Future<Output = ()> + 'static,
    {
        let name = full_name(module, name);
        vec![
            Test {
                name: format!("{name}::postgres"),
                need: None,
                body: Box::new(move || block_on(workers, body(Backend::Postgres))),
            },
            Test {
                name: format!("{name}::{}", TIMESCALEDB.tag),
                need: Some(&TIMESCALEDB),
                body: Box::new(move || block_on(workers, body(Backend::Timescale))),
            },
        ]
    }
}

/// Registers test function `f` of the calling module, named `module::f` as libtest would:
/// - `trial!(f)`: a plain `fn f()`;
/// - `trial!(f, tokio = N)`: an `async fn f()` on a multi-threaded runtime of N threads;
/// - `trial!(f, tokio = N, needs = NEED)`: the same, ignored where [`Need`] `NEED` is absent;
/// - `trial!(f, tokio = N, on_both)`: an `async fn f(backend: Backend)`, run on each backend.
macro_rules! trial {
    ($f:ident) => {
        $crate::support::harness::Test::plain(module_path!(), stringify!($f), $f)
    };
    ($f:ident, tokio = $workers:literal) => {
        $crate::support::harness::Test::tokio(module_path!(), stringify!($f), $workers, $f)
    };
    ($f:ident, tokio = $workers:literal, needs = $need:expr) => {
        $crate::support::harness::Test::tokio_needing(
            module_path!(),
            stringify!($f),
            $workers,
            &$need,
            $f,
        )
    };
    ($f:ident, tokio = $workers:literal, on_both) => {
        $crate::support::harness::Test::on_both(module_path!(), stringify!($f), $workers, $f)
    };
}

/// Runs `tests` as libtest would (same arguments, same summary line), each needing test ignored
/// where its need is absent and not required.
pub fn run(tests: Vec<Test>) -> ExitCode {
    let mut args = Arguments::from_args();
    // libtest reads RUST_TEST_THREADS when --test-threads is not given; libtest-mimic does not
    if args.test_threads.is_none() {
        args.test_threads = std::env::var("RUST_TEST_THREADS")
            .ok()
            .and_then(|threads| threads.parse().ok());
    }
    // Each need is probed once, and only when a test needing it is selected (not filtered out,
    // not a `--list`): `-- readme` starts no server search and no container.
    let mut present: HashMap<&'static str, bool> = HashMap::new();
    let trials = tests
        .into_iter()
        .map(|test| {
            let body = test.body;
            let trial = Trial::test(test.name, move || {
                body();
                Ok::<(), Failed>(())
            });
            let ignored = match test.need {
                Some(need) if !args.list && !args.is_filtered_out(&trial) => {
                    // A probe that panics (no Redis or PostgreSQL to ask) counts as present:
                    // the test then runs and fails with the probe's message, not the runner.
                    let here = *present
                        .entry(need.tag)
                        .or_insert_with(|| std::panic::catch_unwind(need.present).unwrap_or(true));
                    !here && std::env::var(need.required_by).as_deref() != Ok("1")
                }
                _ => false,
            };
            trial.with_ignored_flag(ignored)
        })
        .collect();
    libtest_mimic::run(&args, trials).exit_code()
}
