//! The user docs stay true: every log line the README or `docs/*.md` quotes is one the service
//! prints, the configuration table (`docs/configuration.md`) lists exactly the service's
//! variables, and the metrics table (`docs/operating.md`) exactly its metrics.
//!
//! Log lines are quoted as ``log `message` `` (several: ``log `a` / `b` ``), with `...` where a
//! part is left out; each quoted part must appear in a string literal of the sources, or be a
//! retry line (`Operation::retry_message`, the one place those are worded).

use std::collections::BTreeSet;
use std::path::Path;

use clap::Args;
use processor::config::Config;
use processor::operation::Operation;

use crate::support::harness::Test;

/// This module's tests, as the suite runs them (see `main.rs`).
pub fn tests() -> Vec<Test> {
    [
        trial!(every_quoted_log_line_is_printed_by_the_service),
        trial!(the_configuration_table_lists_every_variable_and_only_those),
        trial!(the_metrics_table_lists_every_metric_and_only_those),
    ]
    .into_iter()
    .flatten()
    .collect()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|err| panic!("{path}: {err}"))
}

/// README.md and every `docs/*.md`, concatenated: where log lines are quoted.
fn user_docs() -> String {
    let mut text = read("README.md");
    let mut docs: Vec<_> = std::fs::read_dir("docs")
        .expect("docs/")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    docs.sort();
    for path in docs {
        text.push('\n');
        text.push_str(&read(path.to_str().expect("path")));
    }
    text
}

/// Every `.rs` file under `dir`, concatenated, with Rust's string line continuations (a `\` at
/// the end of a line and the next line's indentation) removed, so a message written over several
/// source lines reads as printed.
fn sources(dir: &Path, into: &mut String) {
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, into);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            let text = std::fs::read_to_string(&path).expect("source");
            let mut lines = text.lines().peekable();
            while let Some(line) = lines.next() {
                match line.strip_suffix('\\') {
                    Some(head) => {
                        into.push_str(head);
                        if let Some(next) = lines.peek_mut() {
                            *next = next.trim_start();
                        }
                    }
                    None => {
                        into.push_str(line);
                        into.push('\n');
                    }
                }
            }
        }
    }
}

/// The messages the README quotes as log lines.
fn quoted_log_lines(readme: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = readme;
    while let Some(at) = rest.find("log `") {
        rest = &rest[at + 4..];
        // `a` / `b` / ...
        while let Some(body) = rest.strip_prefix('`') {
            let Some(end) = body.find('`') else { break };
            found.push(body[..end].to_owned());
            rest = &body[end + 1..];
            match rest.strip_prefix(" / ") {
                Some(more) => rest = more,
                None => break,
            }
        }
    }
    found
}

fn every_quoted_log_line_is_printed_by_the_service() {
    let mut corpus = String::new();
    for dir in ["src", "dataflow/src", "simulate/src"] {
        sources(Path::new(dir), &mut corpus);
    }
    for operation in Operation::ALL {
        for stalled in [false, true] {
            corpus.push_str(&operation.retry_message(stalled));
            corpus.push('\n');
        }
    }
    let quoted = quoted_log_lines(&user_docs());
    assert!(quoted.len() >= 8, "the docs quote log lines: {quoted:?}");
    let missing: Vec<&String> = quoted
        .iter()
        .filter(|line| {
            line.split("...")
                .map(str::trim)
                .filter(|part| !part.is_empty())
                .any(|part| !corpus.contains(part))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "the docs quote log lines nothing prints: {missing:?}"
    );
}

/// The `| `NAME` |` rows of the table that follows `heading` in `doc`, up to the next `## `.
fn table_names(doc: &str, heading: &str) -> BTreeSet<String> {
    let start = doc
        .find(heading)
        .unwrap_or_else(|| panic!("the doc has {heading}"));
    doc[start..]
        .lines()
        .skip(1)
        .take_while(|line| !line.starts_with("## "))
        .filter_map(|line| {
            let cell = line.strip_prefix("| `")?;
            Some(cell[..cell.find('`')?].to_owned())
        })
        .collect()
}

fn the_configuration_table_lists_every_variable_and_only_those() {
    let command = Config::augment_args(clap::Command::new("processor"));
    let variables: BTreeSet<String> = command
        .get_arguments()
        .filter_map(|arg| arg.get_env())
        .map(|env| env.to_string_lossy().into_owned())
        .collect();
    assert!(variables.len() > 30, "{variables:?}");
    let documented = table_names(&read("docs/configuration.md"), "# Configuration\n");
    let undocumented: Vec<_> = variables.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&variables).collect();
    assert!(
        undocumented.is_empty(),
        "variables missing from docs/configuration.md: {undocumented:?}"
    );
    assert!(
        unknown.is_empty(),
        "docs/configuration.md documents variables that do not exist: {unknown:?}"
    );
}

fn the_metrics_table_lists_every_metric_and_only_those() {
    let metrics = processor::metrics::Metrics::new().expect("metrics");
    let exported: BTreeSet<String> = metrics.names.iter().cloned().collect();
    let documented: BTreeSet<String> = table_names(&read("docs/operating.md"), "| metric |")
        .into_iter()
        .filter(|name| name.starts_with("processor_"))
        .collect();
    let undocumented: Vec<_> = exported.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&exported).collect();
    assert!(
        undocumented.is_empty(),
        "metrics missing from docs/operating.md: {undocumented:?}"
    );
    assert!(
        unknown.is_empty(),
        "docs/operating.md documents metrics that do not exist: {unknown:?}"
    );
}
