#!/usr/bin/env python3
"""Benchmark of the processor on the configured Redis and PostgreSQL.

For each of --runs runs (default 3), on a fresh stream and PostgreSQL schema:
  1. preload: `processor simulate` publishes N positions (default 500,000 over 10,000 devices);
  2. pipeline: the processor (release build) runs until every row is committed and every entry
     acknowledged (the correctness check: rows == distinct valid positions published, 0 pending);
     reports rows/s, the processor's CPU per row (all --replicas summed) and its peak RSS;
  3. ceiling: the same rows, exported with COPY (FORMAT binary), are loaded back with one
     single-connection binary COPY into an empty table like `positions` (the median of three
     loads): the database's ceiling;
  4. latency: a steady stream at half the measured pipeline rate for --latency-secs; p50/p99/max
     from the processor's stream-id-to-XACK histogram (interpolated within buckets).
Prints one table (median and min-max per figure, and the ratio pipeline/ceiling) and writes the
figures as JSON (--json, default bench-results.json).

Variants (--variant LABEL:KEY=VALUE,KEY=VALUE, repeatable) compare configurations side by side in
one session: every run measures each variant in turn on the same records (same seed), so drift
between runs hits all of them alike, and the table gets one column per variant plus each one's
pipeline rate relative to the first variant's, run by run. KEY is an environment variable of the
processor, BIN for another processor binary, or PGHOST/PGPORT/PGUSER for another PostgreSQL
server (the whole run moves there, the ceiling included). Example, the cost of device_latest:
  scripts/bench.py --variant off:DEVICE_LATEST=off --variant on:DEVICE_LATEST=on

Needs: target/release/processor (cargo build --release), psql, redis-cli, /usr/bin/time.
Environment: REDIS_URL (redis://127.0.0.1:6379), PGHOST/PGPORT/PGUSER (127.0.0.1/5432/postgres).
On a TimescaleDB server (e.g. PGPORT=5433, see the README's "Tests") positions is a hypertable, and
so are the ceiling's tables (same chunk interval): the ratio compares like with like.
"""
import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "processor")
# The binary that publishes (`processor simulate`); --simulator sets another, e.g. to feed an
# older processor (--processor) exactly the same records.
SIMULATOR = BIN
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
PG = {"PGHOST": os.environ.get("PGHOST", "127.0.0.1"), "PGPORT": os.environ.get("PGPORT", "5432"),
      "PGUSER": os.environ.get("PGUSER", "postgres")}
COLUMNS = "device_id, ts, latitude, longitude, altitude, angle, speed, satellites, priority, event_id, attributes"


def psql(sql, capture=True):
    env = dict(os.environ, **PG)
    out = subprocess.run(["psql", "-qAtX", "-v", "ON_ERROR_STOP=1", "-c", sql], env=env,
                         capture_output=capture, text=True, check=True)
    return out.stdout.strip() if capture else ""


def timed_copy(command, before=None, after=None):
    """Seconds that psql's `\\copy` (and the `after` statement) took, as psql's own timing
    reports them (no process start or connection set-up); `before` runs first, untimed."""
    env = dict(os.environ, **PG)
    steps = (["-c", before] if before else []) + ["-c", "\\timing on", "-c", command]
    steps += ["-c", after] if after else []
    out = subprocess.run(["psql", "-qAtX", "-v", "ON_ERROR_STOP=1", *steps],
                         env=env, capture_output=True, text=True, check=True).stdout
    return sum(float(ms) for ms in re.findall(r"Time: ([0-9.]+) ms", out)) / 1000


def redis(*args):
    host, port = REDIS_URL.split("//", 1)[1].rsplit("@", 1)[-1].split("/")[0].split(":")
    return subprocess.run(["redis-cli", "-h", host, "-p", port, *args], capture_output=True,
                          text=True, check=True).stdout.strip()


def portable(settings):
    """The settings as the JSON records them: no path of this machine. A path inside the
    repository is written relative to it, one outside as `<its file name>`, also after `BIN=` in a
    variant."""
    def path(text):
        if not os.path.isabs(text):
            return text
        inside = os.path.relpath(text, ROOT)
        return f"<{os.path.basename(text)}>" if inside.startswith("..") else inside

    def bin_paths(variant):
        return re.sub(r"(BIN=)([^,]+)", lambda m: m.group(1) + path(m.group(2)), variant)

    def value(key, item):
        if key == "variant":
            return [bin_paths(variant) for variant in item or []]
        return path(item) if isinstance(item, str) else item
    return {key: value(key, item) for key, item in settings.items()}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def service_env(stream, schema, port, workers, name="bench", extra=None):
    env = dict(os.environ, REDIS_URL=REDIS_URL,
                DATABASE_URL=f"postgres://{PG['PGUSER']}@{PG['PGHOST']}:{PG['PGPORT']}/postgres"
                             f"?options=-csearch_path%3D{schema}",
                STREAM_KEY=stream, CONSUMER_GROUP="bench", CONSUMER_NAME=name,
                HTTP_ADDR=f"127.0.0.1:{port}", RUST_LOG="warn",
                # as the container image sets it (Dockerfile)
                MIMALLOC_ARENA_EAGER_COMMIT=os.environ.get("MIMALLOC_ARENA_EAGER_COMMIT", "0"),
                MONITOR_INTERVAL_MS="500")
    # without --workers, the service's own default (the cores); an older binary's default was 1
    if workers:
        env["WORKERS"] = str(workers)
    else:
        env.pop("WORKERS", None)
    env.update(extra or {})
    return env


def simulate(stream, count=None, duration=None, rate=0, devices=10000, seed=1, profile="fmb",
             order="in-order"):
    args = [SIMULATOR, "simulate", "--profile", profile, "--devices", str(devices), "--rate", str(rate),
            "--seed", str(seed), "--order", order]
    args += ["--count", str(count)] if count else ["--duration", str(duration)]
    env = dict(os.environ, REDIS_URL=REDIS_URL, STREAM_KEY=stream)
    out = subprocess.run(args, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def fresh(tag):
    name = f"bench_{tag}_{int(time.time() * 1000)}"
    psql(f"CREATE SCHEMA {name}")
    return f"{name}:t", name


def drop(stream, schema):
    redis("DEL", stream, stream + ":dead")
    psql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def start_service(stream, schema, workers, timing_file, name="bench", variant=None):
    variant = dict(variant or {})
    binary = variant.pop("BIN", BIN)
    port = free_port()
    proc = subprocess.Popen(["/usr/bin/time", "-f", "%U %S %M", "-o", timing_file, binary],
                            env=service_env(stream, schema, port, workers, name, variant),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, port



def metric_values(ports, name):
    """The value of an unlabelled counter or gauge on each processor on `ports`."""
    values = []
    for port in ports:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        values.append(sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ")))
    return values


def metric_sum(ports, name):
    """The sum over the processors on `ports` of an unlabelled counter or gauge."""
    return sum(metric_values(ports, name))


def wait_landed(stream, schema, ports, entries, rows, timeout, on_landed=None):
    """Waits until the processors acknowledged all `entries`, then checks the outcome: exactly
    `rows` rows, nothing pending. Polls the processors' /metrics (cheap), not the table: a
    count(*) every few milliseconds would take PostgreSQL CPU from the run it measures.
    `on_landed`, when given, is called once, the moment the last entry was acknowledged: before
    the check, whose count(*) (a scan of the whole table) is the bench's cost, not the
    pipeline's, so that what it reads (the servers' CPU, say) leaves the check out."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            acked = metric_sum(ports, "processor_entries_acked_total")
        except OSError:
            acked = -1
        if acked >= entries:
            landed = time.time()
            if on_landed is not None:
                on_landed()
                on_landed = None
            pending = redis("XPENDING", stream, "bench").splitlines()
            if pending and pending[0] == "0":
                got = int(psql(f"SELECT count(*) FROM {schema}.positions"))
                if got != rows:
                    raise SystemExit(f"bench: correctness check failed: {got} rows, want {rows}")
                return landed
        time.sleep(0.02)
    raise SystemExit(f"bench: timed out: {acked} of {entries} entries acknowledged")


def proc_cpu(stat):
    """User plus system CPU seconds from the text of a /proc/<pid>/stat."""
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_cpu(stat):
    """User plus system CPU seconds from the text of a /proc/<pid>/stat."""
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_cpu():
    """CPU seconds used so far by the local PostgreSQL and Redis server processes (all of them,
    summed; a process that exited meanwhile drops out, so sample while the run's connections
    are open). Meaningful only when the servers run on this machine."""
    used = {"postgres": 0.0, "redis-server": 0.0}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as stat_file:
                stat = stat_file.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        if comm in used:
            used[comm] += proc_cpu(stat)
    return used


WAL_COLUMNS = ["wal_records", "wal_fpi", "wal_bytes", "wal_write", "wal_sync"]


def wal_stats():
    """The server's WAL totals so far (pg_stat_wal), by column."""
    values = psql(f"SELECT {', '.join(WAL_COLUMNS)} FROM pg_stat_wal").split("|")
    return dict(zip(WAL_COLUMNS, map(float, values)))


def has_extension(name):
    """Whether the database has extension `name` created."""
    return psql(f"SELECT count(*) FROM pg_extension WHERE extname = '{name}'") != "0"


def hypertable_interval(schema):
    """The chunk interval of `schema.positions` when it is a TimescaleDB hypertable, else None."""
    if not has_extension("timescaledb"):
        return None
    interval = psql("SELECT time_interval FROM timescaledb_information.dimensions "
                    f"WHERE hypertable_schema = '{schema}' AND hypertable_name = 'positions'")
    return interval or None


def like_positions(schema, table):
    """An empty table like `schema.positions`: a hypertable with the same chunk interval when
    positions is one, so the ceiling is measured into what the pipeline writes into."""
    psql(f"CREATE TABLE {table} (LIKE {schema}.positions INCLUDING ALL)")
    interval = hypertable_interval(schema)
    if interval:
        api = psql("SELECT quote_ident(n.nspname) FROM pg_extension e "
                   "JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'timescaledb'")
        # (LIKE ... INCLUDING ALL copied the indexes positions has: no default ones on top)
        psql(f"SELECT {api}.create_hypertable('{table}', {api}.by_range('ts', interval '{interval}'), "
             "create_default_indexes => false)")


def stop_service(proc, timing_file):
    child = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    for pid in child:
        os.kill(int(pid), 15)
    proc.wait(timeout=60)
    user, system, rss_kib = open(timing_file).read().split()[-3:]
    return float(user) + float(system), int(rss_kib)


def quantiles(metrics_text):
    buckets = []
    for line in metrics_text.splitlines():
        m = re.match(r'processor_end_to_end_latency_seconds_bucket\{le="([^"]+)"\} (\S+)', line)
        if m:
            le = float("inf") if m.group(1) == "+Inf" else float(m.group(1))
            buckets.append((le, float(m.group(2))))
    buckets.sort()
    total = buckets[-1][1] if buckets else 0
    def q(p):
        rank, prev_le, prev_count = p * total, 0.0, 0.0
        for le, count in buckets:
            if count >= rank:
                if le == float("inf"):
                    return prev_le
                span = count - prev_count
                return prev_le + (le - prev_le) * ((rank - prev_count) / span if span else 1)
            prev_le, prev_count = le, count
        return prev_le
    top = next((le for le, count in buckets if count >= total), 0.0) if total else 0.0
    return q(0.5), q(0.99), top


def one_run(args, run, variant=None):
    """One run of one variant. A variant's PGHOST/PGPORT/PGUSER move the whole run to that
    server, the ceiling included (e.g. a plain PostgreSQL against a TimescaleDB side by side)."""
    saved = dict(PG)
    PG.update({key: value for key, value in (variant or {}).items() if key in PG})
    try:
        return measure(args, run, variant)
    finally:
        PG.clear()
        PG.update(saved)


def measure(args, run, variant):
    result = {}
    stream, schema = fresh("load")
    try:
        published = simulate(stream, count=args.count, devices=args.devices, seed=run + 1,
                             profile=args.profile, order=args.order)
        want = published["valid_distinct"]
        psql("CHECKPOINT")
        wal_before = wal_stats()
        started = time.time()
        servers_before = server_cpu()
        replicas, ports = [], []
        for r in range(args.replicas):
            timing = tempfile.mktemp()
            proc, port = start_service(stream, schema, args.workers, timing, f"bench{r}", variant)
            replicas.append((proc, timing))
            ports.append(port)
        servers_after = {}
        ended = wait_landed(stream, schema, ports, published["published"], want, args.timeout,
                            on_landed=lambda: servers_after.update(server_cpu()))
        # per process, like the peak RSS it is compared with (the largest of the replicas)
        devices_held = max(metric_values(ports, "processor_devices_in_state"))
        stopped = [stop_service(proc, timing) for proc, timing in replicas]
        # after the processors left: a backend reports its WAL when it goes idle or exits
        time.sleep(0.2)
        wal_after = wal_stats()
        cpu = sum(c for c, _ in stopped)
        rss = max(r for _, r in stopped)
        result["postgres_cpu_us_per_row"] = (servers_after["postgres"] - servers_before["postgres"]) / want * 1e6
        result["redis_cpu_us_per_row"] = (servers_after["redis-server"] - servers_before["redis-server"]) / want * 1e6
        result["wal_bytes_per_row"] = (wal_after["wal_bytes"] - wal_before["wal_bytes"]) / want
        result["wal_fpi_per_row"] = (wal_after["wal_fpi"] - wal_before["wal_fpi"]) / want
        result["pipeline_rows_per_s"] = want / (ended - started)
        result["cpu_us_per_row"] = cpu / want * 1e6
        # the processor's cost against the database's for the same rows, in the same run
        result["cpu_vs_postgres"] = result["cpu_us_per_row"] / result["postgres_cpu_us_per_row"]
        # what the machine's cores could do at most if processor, PostgreSQL and Redis kept them
        # all busy with this run's CPU cost per row
        every_row = result["cpu_us_per_row"] + result["postgres_cpu_us_per_row"] + result["redis_cpu_us_per_row"]
        result["cpu_bound_rows_per_s"] = os.cpu_count() * 1e6 / every_row
        result["cpu_bound_share"] = result["pipeline_rows_per_s"] / result["cpu_bound_rows_per_s"]
        result["peak_rss_mib"] = rss / 1024
        result["devices_in_state"] = devices_held
        # the memory target: 40 MB plus 300 bytes per device held in state
        result["rss_target_mib"] = (40e6 + 300 * devices_held) / 2**20
        result["hypertable"] = hypertable_interval(schema) is not None
        if args.skip_ceiling:
            return result
        # ceiling: the same rows, one binary COPY into an empty table; the median of three
        # loads, each after a CHECKPOINT like the pipeline run (so that neither pays for the
        # other's dirty pages)
        dump = tempfile.mktemp()
        psql(f"\\copy (SELECT {COLUMNS} FROM {schema}.positions) TO '{dump}' WITH (FORMAT binary)")
        loads = []
        for attempt in range(3):
            table = f"{schema}.ceiling{attempt}"
            like_positions(schema, table)
            psql("CHECKPOINT")
            loads.append(want / timed_copy(f"\\copy {table} ({COLUMNS}) FROM '{dump}' WITH (FORMAT binary)"))
            psql(f"DROP TABLE {table}")
        result["copy_ceiling_rows_per_s"] = statistics.median(loads)
        # the alternative write path, for comparison: COPY into a staging table, then
        # INSERT ... SELECT ... ON CONFLICT DO NOTHING (one session, both statements timed)
        table = f"{schema}.staged"
        like_positions(schema, table)
        psql("CHECKPOINT")
        seconds = timed_copy(f"\\copy stage ({COLUMNS}) FROM '{dump}' WITH (FORMAT binary)",
                             before=f"CREATE TEMP TABLE stage (LIKE {schema}.positions INCLUDING DEFAULTS)",
                             after=f"INSERT INTO {table} SELECT * FROM stage ON CONFLICT (device_id, ts) DO NOTHING")
        result["staged_copy_rows_per_s"] = want / seconds
        os.unlink(dump)
        result["ratio"] = result["pipeline_rows_per_s"] / result["copy_ceiling_rows_per_s"]
    finally:
        drop(stream, schema)
    if args.latency_secs <= 0:
        return result
    # latency at half the measured pipeline rate
    stream, schema = fresh("latency")
    try:
        rate = args.latency_rate or int(result["pipeline_rows_per_s"] / 2)
        timing = tempfile.mktemp()
        proc, port = start_service(stream, schema, args.workers, timing, variant=variant)
        time.sleep(1)
        published = simulate(stream, duration=args.latency_secs, rate=rate, devices=args.devices,
                             seed=100 + run, profile=args.profile)
        wait_landed(stream, schema, [port], published["published"], published["valid_distinct"], args.timeout)
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        p50, p99, top = quantiles(text)
        stop_service(proc, timing)
        result.update(latency_rate=rate, latency_p50_ms=p50 * 1000, latency_p99_ms=p99 * 1000,
                      latency_max_bucket_ms=top * 1000)
    finally:
        drop(stream, schema)
    return result


FIGURES = [
    # (key in the JSON, row label, how to show it)
    ("pipeline_rows_per_s", "pipeline rows/s (until all committed and acked)", "rate"),
    ("copy_ceiling_rows_per_s", "single-connection binary COPY ceiling, rows/s", "rate"),
    ("ratio", "pipeline / ceiling", "ratio"),
    ("vs_first", "pipeline / first variant's, run by run", "ratio"),
    ("staged_copy_rows_per_s", "COPY to staging + `INSERT ... ON CONFLICT`, rows/s", "rate"),
    ("cpu_us_per_row", "processor CPU per row", "us"),
    ("postgres_cpu_us_per_row", "PostgreSQL server CPU per row", "us"),
    ("postgres_vs_first", "PostgreSQL CPU per row / first variant's, run by run", "ratio"),
    ("redis_cpu_us_per_row", "Redis server CPU per row", "us"),
    ("wal_bytes_per_row", "WAL bytes per row (pg_stat_wal)", "count"),
    ("wal_fpi_per_row", "WAL full-page images per row", "ratio"),
    ("cpu_vs_postgres", "processor CPU / PostgreSQL CPU, run by run", "ratio"),
    ("cpu_bound_rows_per_s", "CPU-bound limit, rows/s", "rate"),
    ("cpu_bound_share", "pipeline / CPU-bound limit, run by run", "ratio"),
    ("peak_rss_mib", "processor peak RSS (per process)", "mib"),
    ("devices_in_state", "devices held in state (per process)", "count"),
    ("rss_target_mib", "RSS target, 40 MB + 300 B per device", "mib"),
    ("latency_rate", "latency test rate (half the pipeline's, or --latency-rate)", "count"),
    ("latency_p50_ms", "p50 stream-id→XACK", "ms"),
    ("latency_p99_ms", "p99 stream-id→XACK", "ms"),
    ("latency_max_bucket_ms", "max (histogram bucket)", "ms"),
]


def cell(figure, kind):
    """A figure as `median (min–max)` with its unit; `not measured` when a run lacks it."""
    if figure is None:
        return "not measured"
    formats = {"rate": lambda v: f"{round(v, -2):,.0f}", "ratio": lambda v: f"{v:.2f}",
               "us": lambda v: f"{v:.2f}", "mib": lambda v: f"{v:.1f}" if v < 100 else f"{v:.0f}",
               "count": lambda v: f"{round(v, -2) if v > 10000 else v:,.0f}", "ms": lambda v: f"{v:.1f}"}
    unit = {"us": " µs", "mib": " MiB", "ms": " ms"}.get(kind, "")
    show = formats[kind]
    if kind == "count" or figure["min"] == figure["max"]:
        return show(figure["median"]) + unit
    return f"{show(figure['median'])}{unit} ({show(figure['min'])}–{show(figure['max'])})"


def table(configs):
    """The figures of several configurations (label, figures) as one Markdown table."""
    lines = ["| figure | " + " | ".join(label for label, _ in configs) + " |",
             "|---|" + "---|" * len(configs)]
    for key, name, kind in FIGURES:
        lines.append(f"| {name} | " + " | ".join(cell(figures.get(key), kind) for _, figures in configs) + " |")
    return "\n".join(lines)


def parse_variant(text):
    """`LABEL:KEY=VALUE,KEY=VALUE` as (label, {KEY: VALUE})."""
    label, _, settings = text.partition(":")
    pairs = [pair.split("=", 1) for pair in settings.split(",") if pair]
    if not label or any(len(pair) != 2 for pair in pairs):
        sys.exit(f"bench: --variant {text!r}: expected LABEL:KEY=VALUE,KEY=VALUE")
    return label, dict(pairs)


def main():
    global BIN, SIMULATOR
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=500_000)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=None,
                        help="WORKERS for the processor (default: unset, the service's default)")
    parser.add_argument("--profile", choices=["fmb", "mixed"], default="fmb",
                        help="the simulator's record profile")
    parser.add_argument("--order", choices=["in-order", "newest-first", "late"], default="in-order",
                        help="the arrival order of the preloaded positions (simulate --order)")
    parser.add_argument("--processor", default=BIN, help="the processor binary to measure")
    parser.add_argument("--simulator", default=BIN, help="the binary whose `simulate` publishes")
    parser.add_argument("--replicas", type=int, default=1,
                        help="independent processes in the group for the throughput run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--variant", action="append", default=[],
                        help="LABEL:KEY=VALUE,... a configuration to compare (repeatable; see above)")
    parser.add_argument("--skip-ceiling", action="store_true",
                        help="measure the pipeline only (no COPY ceiling, no staged COPY)")
    parser.add_argument("--latency-secs", type=int, default=20, help="0 skips the latency test")
    parser.add_argument("--latency-rate", type=int, default=0,
                        help="entries/s of the latency test (default: half the measured pipeline rate)")
    parser.add_argument("--timeout", type=int, default=600)
    parser.add_argument("--json", default="bench-results.json")
    args = parser.parse_args()
    BIN, SIMULATOR = args.processor, args.simulator
    for binary in {BIN, SIMULATOR}:
        if not os.access(binary, os.X_OK):
            sys.exit(f"bench: {binary} is missing: build the release binary first: cargo build --release")
    variants = [parse_variant(text) for text in args.variant] or [("median (min–max)", {})]
    runs = {label: [] for label, _ in variants}
    for run in range(args.runs):
        for label, settings in variants:
            result = one_run(args, run, settings)
            first = runs[variants[0][0]]
            if len(variants) > 1 and len(first) > run:
                result["vs_first"] = result["pipeline_rows_per_s"] / first[run]["pipeline_rows_per_s"]
                result["postgres_vs_first"] = (result["postgres_cpu_us_per_row"]
                                               / first[run]["postgres_cpu_us_per_row"])
            runs[label].append(result)
            print(f"bench: run {run + 1}/{args.runs} {label}: "
                  + ", ".join(f"{k}={v:.3g}" for k, v in result.items()), file=sys.stderr)
    configs = []
    for label, _ in variants:
        figures = {}
        for key in runs[label][0]:
            if isinstance(runs[label][0][key], bool):
                continue
            values = [r[key] for r in runs[label] if key in r]
            figures[key] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
        configs.append((label, figures))
    first_run = runs[variants[0][0]][0]
    kind = "hypertable" if first_run.get("hypertable") else "plain table"
    print(f"N={args.count} devices={args.devices} profile={args.profile} workers={args.workers or 'default'} replicas={args.replicas} "
          f"runs={args.runs} positions={kind} PGPORT={PG['PGPORT']}")
    print(table(configs))
    figures = configs[0][1]
    with open(args.json, "w") as out:
        json.dump({"settings": portable(vars(args)), "runs": runs, "figures": figures,
                   "variants": dict(configs)}, out, indent=2)


if __name__ == "__main__":
    main()
