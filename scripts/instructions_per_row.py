#!/usr/bin/env python3
"""The processor's user-space instructions per row, counted by valgrind's callgrind: a measure
that does not move with the host's load (timings here drift by a third within a session), for
comparing two builds of the processor on the same rows.

    python3 scripts/instructions_per_row.py [--binary B] [--profile fmb|mixed] [--count N]
    python3 scripts/instructions_per_row.py --binary target/release/processor --profile fmb

Publishes --count `processor simulate` records (10,000 devices, seed 1) into a fresh stream, runs
the binary under callgrind with WORKERS=1 into a fresh schema, with the environment bench.py gives
it, until every entry is acknowledged, stops it with SIGTERM and prints the instructions of the
whole process (start-up and drain included) divided by the count. Kernel work (system calls, page
faults) is not counted, and neither are cache misses: read it beside the timed bench, not instead
of it. About 15 s per 100,000 rows. Needs valgrind, and what bench.py needs.
"""
import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import bench

# /metrics is read this often: every scrape costs the processor instructions of its own, which a
# run under valgrind (about 15 s) must not add up.
POLL_SECONDS = 0.5


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", default=bench.BIN, help="the processor to count")
    parser.add_argument("--profile", default="fmb", choices=["fmb", "mixed"])
    parser.add_argument("--count", type=int, default=100000)
    parser.add_argument("--timeout", type=int, default=1200, help="seconds")
    args = parser.parse_args()

    stream, schema = bench.fresh("ipr")
    out = tempfile.mkdtemp()
    try:
        published = bench.simulate(stream, count=args.count, profile=args.profile)
        port = bench.free_port()
        env = bench.service_env(stream, schema, port, workers=1)
        log = os.path.join(out, "valgrind.log")
        with open(log, "w") as errors:
            proc = subprocess.Popen(
                ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/callgrind.out",
                 args.binary], env=env, stdout=subprocess.DEVNULL, stderr=errors)
        acked, deadline = 0, time.time() + args.timeout
        while acked < published["published"] and time.time() < deadline:
            time.sleep(POLL_SECONDS)
            try:
                acked = bench.metric_sum([port], "processor_entries_acked_total")
            except OSError:
                pass
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
        if acked < published["published"]:
            sys.exit(f"instructions_per_row: only {acked:.0f} of {published['published']} "
                     "entries were acknowledged")
        collected = re.search(r"Collected : ([0-9,]+)", open(log).read())
        if not collected:
            sys.exit(f"instructions_per_row: callgrind reported no total (see {log})")
        total = int(collected.group(1).replace(",", ""))
        print(f"{args.profile}: {total / args.count:.0f} instructions per row")
    finally:
        bench.drop(stream, schema)
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
