//! Every environment variable the compose file and the Kubernetes example set is one the binary
//! accepts, with a value its configuration parser takes.

use clap::Args;
use processor::config::{Config, ConfigError};
use serde_yaml::Value;

use crate::support::harness::Test;

/// This module's tests, as the suite runs them (see `main.rs`).
pub fn tests() -> Vec<Test> {
    [
        trial!(compose_sets_only_accepted_variables),
        trial!(the_kubernetes_example_sets_only_accepted_variables),
        trial!(an_unknown_variable_is_refused),
        trial!(the_image_builds_a_stripped_binary),
        trial!(the_dashboard_and_the_alerts_query_only_exported_metrics),
        trial!(every_alert_fires_on_its_scenario_and_only_there),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Parses environment variables as the service reads them, without touching the process
/// environment: each is turned into its flag (found through the real parser's definitions), so
/// an unknown variable is an error naming it.
fn parse_vars(vars: &[(String, String)]) -> Result<Config, ConfigError> {
    let command = Config::augment_args(clap::Command::new("processor"));
    let mut args = vec!["processor".to_owned()];
    for (name, value) in vars {
        let flag = command
            .get_arguments()
            .find(|arg| arg.get_env().is_some_and(|env| env == name.as_str()))
            .and_then(|arg| arg.get_long())
            .ok_or_else(|| ConfigError::new(name, "not a setting of this service"))?;
        args.push(format!("--{flag}={value}"));
    }
    Config::from_args(args)
}

/// A stand-in for values the manifests take from Secrets or the downward API.
fn placeholder(name: &str) -> String {
    match name {
        "REDIS_URL" => "rediss://:secret@redis.example.svc:6379".to_owned(),
        "DATABASE_URL" => {
            "postgres://processor:secret@db.example.svc:5432/telemetry?sslmode=verify-full"
                .to_owned()
        }
        "CONSUMER_NAME" => "processor-7d9f8-abcde".to_owned(),
        other => panic!("no placeholder for {other}, which is taken from a reference"),
    }
}

fn check(file: &str, vars: Vec<(String, String)>) {
    assert!(!vars.is_empty(), "{file}: no variables found");
    if let Err(error) = parse_vars(&vars) {
        panic!("{file}: {error}");
    }
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("unexpected env value {other:?}"),
    }
}

fn compose_sets_only_accepted_variables() {
    let text = include_str!("../../compose.dev.yaml");
    let compose: Value = serde_yaml::from_str(text).expect("compose YAML");
    let env = compose["services"]["processor"]["environment"]
        .as_mapping()
        .expect("processor environment");
    let vars = env.iter().map(|(k, v)| (scalar(k), scalar(v))).collect();
    check("compose.dev.yaml", vars);
}

fn the_kubernetes_example_sets_only_accepted_variables() {
    let text = include_str!("../../deploy/kubernetes/deployment.yaml");
    let deployment: Value = serde_yaml::from_str(text).expect("deployment YAML");
    let pod = &deployment["spec"]["template"]["spec"];
    let containers = pod["containers"].as_sequence().expect("containers");
    // the schema is migrated by an init container running `processor migrate` with a secret of
    // its own, so the service's role needs no DDL rights
    let init = pod["initContainers"].as_sequence().expect("initContainers");
    assert_eq!(init.len(), 1);
    assert_eq!(init[0]["args"][0], Value::from("migrate"));
    let secret = |container: &Value| {
        container["env"]
            .as_sequence()
            .expect("env list")
            .iter()
            .find(|var| var["name"] == "DATABASE_URL")
            .map(|var| scalar(&var["valueFrom"]["secretKeyRef"]["name"]))
            .expect("DATABASE_URL from a secret")
    };
    assert_ne!(secret(&init[0]), secret(&containers[0]));
    for container in containers.iter().chain(init) {
        let vars = container["env"]
            .as_sequence()
            .expect("env list")
            .iter()
            .map(|var| {
                let name = scalar(&var["name"]);
                let value = match &var["value"] {
                    Value::Null => placeholder(&name),
                    value => scalar(value),
                };
                (name, value)
            })
            .collect();
        check("deploy/kubernetes/deployment.yaml", vars);
    }
}

fn an_unknown_variable_is_refused() {
    let error =
        parse_vars(&[("WORKER".to_owned(), "2".to_owned())]).expect_err("WORKER is not a setting");
    assert_eq!(error.variable, "WORKER");
}

/// The image ships a stripped binary: the build stage turns the release profile's line tables
/// and symbols off (a developer's own release build keeps them for profiling).
fn the_image_builds_a_stripped_binary() {
    let dockerfile = include_str!("../../Dockerfile");
    let build = dockerfile
        .split("FROM ")
        .find(|stage| stage.contains("AS build"))
        .expect("a build stage");
    for setting in [
        "CARGO_PROFILE_RELEASE_DEBUG=false",
        "CARGO_PROFILE_RELEASE_STRIP=symbols",
    ] {
        assert!(build.contains(setting), "the build stage sets {setting}");
    }
    let cargo_toml = include_str!("../../Cargo.toml");
    assert!(
        cargo_toml.contains("debug = \"line-tables-only\""),
        "developers keep line tables in their own release builds"
    );
}

/// The `processor_*` names in `text`, with a histogram's `_bucket`, `_count` and `_sum` suffixes
/// taken back to the histogram.
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("processor_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let name = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name);
        names.insert(name.to_owned());
        rest = &tail[end..];
    }
    names
}

/// Every series the dashboard and the alert rules query is one the service exports: a renamed
/// metric cannot leave an empty panel or an alert that never fires.
fn the_dashboard_and_the_alerts_query_only_exported_metrics() {
    let metrics = processor::metrics::Metrics::new().expect("metrics");
    let exported: std::collections::BTreeSet<&str> =
        metrics.names.iter().map(String::as_str).collect();
    for file in [
        "deploy/grafana/dashboards/processor.json",
        "deploy/prometheus/alerts.yml",
    ] {
        let text = std::fs::read_to_string(file).expect(file);
        let used = metric_names(&text);
        assert!(!used.is_empty(), "{file} names no metric");
        let unknown: Vec<&String> = used
            .iter()
            .filter(|name| !exported.contains(name.as_str()))
            .collect();
        assert!(
            unknown.is_empty(),
            "{file} queries unknown metrics: {unknown:?}"
        );
    }
}

/// `promtool test rules`: each alert of `deploy/prometheus/alerts.yml` has a unit test in
/// `alerts.test.yml` that it fires on its scenario and stays silent on a healthy one, and they
/// pass.
fn every_alert_fires_on_its_scenario_and_only_there() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus");
    let rules: Value = serde_yaml::from_str(
        &std::fs::read_to_string(root.join("alerts.yml")).expect("alerts.yml"),
    )
    .expect("alerts.yml parses");
    let tests = std::fs::read_to_string(root.join("alerts.test.yml")).expect("alerts.test.yml");
    let alerts: Vec<String> = rules["groups"]
        .as_sequence()
        .into_iter()
        .flatten()
        .flat_map(|group| group["rules"].as_sequence().cloned().unwrap_or_default())
        .filter_map(|rule| rule["alert"].as_str().map(str::to_owned))
        .collect();
    assert!(alerts.len() >= 6, "{alerts:?}");
    for alert in &alerts {
        let expected = format!("alertname: {alert}\n");
        let cases = tests.matches(&expected).count();
        assert!(
            cases >= 2,
            "{alert}: a case where it fires and one where it stays silent ({cases} found)"
        );
    }
    let output = std::process::Command::new("promtool")
        .args(["test", "rules", "alerts.test.yml"])
        .current_dir(&root)
        .output()
        .expect("promtool must be installed (Debian package `prometheus`; .ci/run installs it)");
    assert!(
        output.status.success(),
        "promtool test rules:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
