#!/usr/bin/env python3
"""One backend's CPU per row for a single-connection binary COPY of the same rows into variants of
`positions`: how a table choice (collation, indexes, row order, batch size) changes what
PostgreSQL spends, without the pipeline around it.

    python3 scripts/copy_cost.py [--count N] [--profile fmb|mixed] [--loads K] CASE [CASE ...]
    python3 scripts/copy_cost.py default c icu                 # collations, rows in arrival order
    python3 scripts/copy_cost.py c-sorted:1000 c-sorted:5000 c-sorted:20000   # batch sizes
    PGPORT=5433 python3 scripts/copy_cost.py hyper-ts hyper   # the hypertable's default index

The processor (bench.py's environment) first writes --count `processor simulate` records into a
fresh schema; those rows, in the order it stored them or re-sorted by `(device_id, ts)` within
batches of B rows (`...-sorted:B`), are exported once. Each load is one psql `\\copy` into a fresh
table after a `CHECKPOINT`, and its cost is the CPU its backend used (`/proc`), per row. The
cases take turns, --loads times (default 5); the median and every load are printed. Cases:
`default` (the primary key, the database's collation), `c` (`device_id COLLATE "C"`), `icu`
(`COLLATE "en-US-x-icu"`, when the server has ICU), each optionally `-sorted:B`; `hyper` and
`hyper-ts` (a hypertable of 1-day chunks without and with TimescaleDB's default `ts` index, `C`).
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile

import bench

COLLATIONS = {"default": None, "c": '"C"', "icu": '"en-US-x-icu"'}


def backend_cpu(pid):
    with open(f"/proc/{pid}/stat") as stat:
        return bench.proc_cpu(stat.read())


def create(schema, table, case):
    """The table of `case` (a name from the docstring, without its `-sorted:B`)."""
    collation = '"C"' if case.startswith("hyper") else COLLATIONS[case]
    bench.psql(f"CREATE TABLE {table} (LIKE {schema}.positions INCLUDING DEFAULTS)")
    if collation:
        bench.psql(f"ALTER TABLE {table} ALTER COLUMN device_id TYPE text COLLATE {collation}")
    bench.psql(f"ALTER TABLE {table} ADD PRIMARY KEY (device_id, ts)")
    if case.startswith("hyper"):
        bench.psql(f"SELECT public.create_hypertable('{table}', public.by_range('ts', interval '1 day'), "
                   f"create_default_indexes => {'true' if case == 'hyper-ts' else 'false'})")


def load(table, dump, rows):
    """One `\\copy` of `dump` into `table`; its backend's CPU per row, in µs."""
    psql = subprocess.Popen(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", "postgres"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
                            env=dict(os.environ, **bench.PG))
    psql.stdin.write("SELECT pg_backend_pid();\n")
    psql.stdin.flush()
    pid = psql.stdout.readline().strip()
    before = backend_cpu(pid)
    psql.stdin.write(f"\\copy {table} ({bench.COLUMNS}) FROM '{dump}' WITH (FORMAT binary)\nSELECT 'done';\n")
    psql.stdin.flush()
    while psql.stdout.readline().strip() != "done":
        pass
    after = backend_cpu(pid)
    psql.stdin.close()
    psql.wait()
    return (after - before) / rows * 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cases", nargs="+")
    parser.add_argument("--count", type=int, default=200000)
    parser.add_argument("--profile", default="fmb", choices=["fmb", "mixed"])
    parser.add_argument("--loads", type=int, default=5)
    args = parser.parse_args()
    for case in args.cases:
        name = case.split("-sorted:")[0]
        if name not in COLLATIONS and name not in ("hyper", "hyper-ts"):
            sys.exit(f"copy_cost: unknown case {case!r} (see --help)")

    stream, schema = bench.fresh("copycost")
    out = tempfile.mkdtemp()
    try:
        published = bench.simulate(stream, count=args.count, profile=args.profile)
        rows = published["valid_distinct"]
        timing = tempfile.mktemp()
        proc, port = bench.start_service(stream, schema, None, timing)
        bench.wait_landed(stream, schema, [port], published["published"], rows, 600)
        bench.stop_service(proc, timing)
        dumps = {}
        for case in args.cases:
            batch = case.split("-sorted:")[1] if "-sorted:" in case else None
            if batch in dumps:
                continue
            dump = os.path.join(out, f"rows-{batch or 'stored'}.bin")
            select = f"SELECT {bench.COLUMNS} FROM {schema}.positions"
            if batch:
                select = (f"SELECT {bench.COLUMNS} FROM (SELECT *, (row_number() OVER ()) / {int(batch)} AS b "
                          f"FROM {schema}.positions) x ORDER BY b, device_id, ts")
            bench.psql(f"\\copy ({select}) TO '{dump}' WITH (FORMAT binary)")
            dumps[batch] = dump
        costs = {case: [] for case in args.cases}
        for _ in range(args.loads):
            for case in args.cases:
                name, _, batch = case.partition("-sorted:")
                table = f"{schema}.variant"
                create(schema, table, name)
                bench.psql("CHECKPOINT")
                costs[case].append(load(table, dumps[batch or None], rows))
                bench.psql(f"DROP TABLE {table}")
        for case, values in costs.items():
            print(f"{case}: {statistics.median(values):.2f} µs per row (loads: "
                  + ", ".join(f"{v:.2f}" for v in values) + ")")
    finally:
        bench.drop(stream, schema)


if __name__ == "__main__":
    main()
