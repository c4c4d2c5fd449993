//! The import graph has no circle: every module depends only on modules below it.
//!
//! Read off the source text: a file of module `m` that names `crate::x` (also in a group,
//! `crate::{x, ...}`) depends on `x`; a file that names `super::y`, where `y` is a sibling file,
//! depends on `y` (a module's `mod.rs` is its facade and is left out of the sibling graph).
//! Checked for the service library's top-level modules, the files of each of its module
//! directories, and the same for the `dataflow` crate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::support::harness::Test;

/// This module's tests, as the suite runs them (see `main.rs`).
pub fn tests() -> Vec<Test> {
    [
        trial!(the_service_library_has_no_circle),
        trial!(the_dataflow_crate_has_no_circle),
        trial!(the_ingest_core_never_imports_the_domain),
        trial!(a_circle_is_found),
        trial!(grouped_imports_name_each_module),
        trial!(the_suite_uses_no_libtest_attribute),
    ]
    .into_iter()
    .flatten()
    .collect()
}

type Graph = BTreeMap<String, BTreeSet<String>>;

/// Source text without comments (`//` to the end of a line; `://` in URLs is kept).
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("read a source file");
    text.lines()
        .map(|line| {
            let mut cut = line.len();
            let bytes = line.as_bytes();
            for i in 0..bytes.len().saturating_sub(1) {
                if bytes[i] == b'/' && bytes[i + 1] == b'/' && (i == 0 || bytes[i - 1] != b':') {
                    cut = i;
                    break;
                }
            }
            &line[..cut]
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn identifier(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// The first segments of the paths in a `{...}` group that starts `text`
/// (`{a::X, b, c::{d, e}}` gives `a`, `b`, `c`); `self` is the prefix's own module, not a name.
fn group_heads(text: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0usize;
    let mut at_item_start = false;
    for (i, c) in text.char_indices() {
        match c {
            '{' => {
                depth += 1;
                at_item_start = depth == 1;
            }
            '}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    break;
                }
            }
            ',' if depth == 1 => at_item_start = true,
            c if c.is_whitespace() => {}
            _ if at_item_start => {
                at_item_start = false;
                let name = identifier(&text[i..]);
                if !name.is_empty() && name != "self" {
                    heads.push(name);
                }
            }
            _ => {}
        }
    }
    heads
}

/// The identifiers that follow `prefix` in `text` (`crate::a::b` gives `a`; a grouped import
/// `crate::{a::X, b}` gives `a` and `b`).
fn named_after(text: &str, prefix: &str) -> BTreeSet<String> {
    text.match_indices(prefix)
        .filter(|(at, _)| {
            // `super::` inside `super::super::` or a longer path like `xsuper::` is not it
            *at == 0 || !text[..*at].ends_with(|c: char| c.is_alphanumeric() || c == '_')
        })
        .flat_map(|(at, _)| {
            let rest = &text[at + prefix.len()..];
            if rest.starts_with('{') {
                group_heads(rest)
            } else {
                vec![identifier(rest)]
            }
        })
        .filter(|name| !name.is_empty())
        .collect()
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read a source directory") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// Top-level modules of the crate in `src` and what each names through `crate::`.
fn top_level(src: &Path, skip: &[&str]) -> Graph {
    let mut graph = Graph::new();
    for file in rust_files(src) {
        let relative = file.strip_prefix(src).expect("under src");
        let first = relative.components().next().expect("a component");
        let module = first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        if skip.contains(&module.as_str()) {
            continue;
        }
        let deps = named_after(&code(&file), "crate::");
        let entry = graph.entry(module.clone()).or_default();
        entry.extend(deps.into_iter().filter(|dep| *dep != module));
    }
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for deps in graph.values_mut() {
        deps.retain(|dep| modules.contains(dep));
    }
    graph
}

/// The files of module directory `dir` (but `mod.rs`) and the siblings each names by `super::`.
fn siblings(dir: &Path) -> Graph {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("a module directory")
        .map(|entry| entry.expect("an entry").path())
        .filter(|path| {
            path.extension().is_some_and(|e| e == "rs")
                && path.file_name().is_some_and(|n| n != "mod.rs")
        })
        .collect();
    let names: BTreeSet<String> = files
        .iter()
        .map(|f| {
            f.file_stem()
                .expect("a name")
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let mut graph = Graph::new();
    for file in &files {
        let name = file
            .file_stem()
            .expect("a name")
            .to_string_lossy()
            .into_owned();
        let deps = named_after(&code(file), "super::")
            .into_iter()
            .filter(|dep| names.contains(dep) && *dep != name)
            .collect();
        graph.insert(name, deps);
    }
    graph
}

/// A circle in `graph`, if there is one.
fn circle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &Graph,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut found = path[start..].to_vec();
            found.push(node.to_owned());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, graph, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

fn assert_no_circle(what: &str, graph: &Graph) {
    assert!(graph.len() > 1, "{what}: nothing found to check: {graph:?}");
    if let Some(found) = circle(graph) {
        panic!(
            "{what}: a dependency circle: {}\n{graph:#?}",
            found.join(" -> ")
        );
    }
}

fn the_service_library_has_no_circle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("src");
    // the binary's own modules sit on top of the library
    let graph = top_level(
        &src,
        &["main", "cli", "migrate_command", "simulate_command", "lib"],
    );
    assert_no_circle("src/", &graph);
    for leaf in [
        "config_values",
        "clock",
        "redact",
        "operation",
        "shutdown",
        "blocks",
    ] {
        assert!(
            graph.get(leaf).is_some_and(BTreeSet::is_empty),
            "{leaf} must be a leaf: {:?}",
            graph.get(leaf)
        );
    }
    for dir in ["pipeline", "redis", "postgres"] {
        assert_no_circle(&format!("src/{dir}/"), &siblings(&src.join(dir)));
    }
}

fn the_dataflow_crate_has_no_circle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("dataflow")
        .join("src");
    assert_no_circle("dataflow/src/", &top_level(&root, &["lib"]));
    let codec = siblings(&root.join("codec"));
    assert_no_circle("dataflow/src/codec/", &codec);
    assert!(
        codec.get("text").is_some_and(BTreeSet::is_empty),
        "the codec's text helpers are a leaf: {codec:?}"
    );
    assert_no_circle(
        "dataflow/src/operators/",
        &siblings(&root.join("operators")),
    );
}

/// The domain (trips) sits beside the ingest core, never under it: no module of the `dataflow`
/// crate but `trips` names it, and `trips` names nothing of the core; in the service, only the
/// trips' own table seam and command may (a domain change cannot break ingest).
fn the_ingest_core_never_imports_the_domain() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dataflow = top_level(&root.join("dataflow").join("src"), &["lib"]);
    assert!(dataflow.contains_key("trips"), "{dataflow:?}");
    for (module, deps) in &dataflow {
        assert!(
            module == "trips" || !deps.contains("trips"),
            "dataflow/src/{module} imports the domain (trips)"
        );
    }
    assert!(
        dataflow.get("trips").is_some_and(BTreeSet::is_empty),
        "trips must not import the ingest core: {:?}",
        dataflow.get("trips")
    );
    let src = root.join("src");
    for file in rust_files(&src) {
        let relative = file.strip_prefix(&src).expect("under src");
        // the domain's own files, and the places that compose it with the rest: the settings,
        // the table registry, the binary's command line
        let allowed = relative.to_string_lossy().contains("trips")
            || [
                "config/mod.rs",
                "postgres/tables/mod.rs",
                "cli.rs",
                "main.rs",
            ]
            .iter()
            .any(|composer| relative == Path::new(composer));
        if !allowed {
            assert!(
                !code(&file).contains("trips::"),
                "src/{} imports the domain (trips); only its table seam and command may",
                relative.display()
            );
        }
    }
}

fn a_circle_is_found() {
    let mut graph = Graph::new();
    graph.insert("a".into(), ["b".to_owned()].into());
    graph.insert("b".into(), ["c".to_owned()].into());
    graph.insert("c".into(), ["a".to_owned()].into());
    assert_eq!(
        circle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    graph.insert("c".into(), BTreeSet::new());
    assert_eq!(circle(&graph), None);
}

fn grouped_imports_name_each_module() {
    let text = "use crate::{config::Config, redis::{self, Reader}, metrics};\nuse super::{self, dead_letter, resp::Frame};";
    let crate_names: Vec<_> = named_after(text, "crate::").into_iter().collect();
    assert_eq!(crate_names, ["config", "metrics", "redis"]);
    let super_names: Vec<_> = named_after(text, "super::").into_iter().collect();
    assert_eq!(super_names, ["dead_letter", "resp"]);
}

/// The suite runs only what its modules' `tests()` register (`harness = false`): a libtest
/// attribute here would compile and never run, so none may appear.
fn the_suite_uses_no_libtest_attribute() {
    let suite = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("suite");
    let files = rust_files(&suite);
    assert!(files.len() > 10, "the suite's sources: {files:?}");
    // spelled in two pieces so that this file does not match itself
    let attributes = [concat!("#[", "test"), concat!("#[", "tokio::test")];
    let mut found = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("a suite source");
        for (number, line) in text.lines().enumerate() {
            if attributes.iter().any(|a| line.trim_start().starts_with(a)) {
                found.push(format!(
                    "{}:{}: {}",
                    file.display(),
                    number + 1,
                    line.trim()
                ));
            }
        }
    }
    assert!(
        found.is_empty(),
        "register these with trial! in the module's tests() instead (see tests/suite/main.rs):\n{}",
        found.join("\n")
    );
}
