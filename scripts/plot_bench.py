#!/usr/bin/env python3
"""Plots figures written by scripts/bench.py (its --json files) into one PNG, and prints them as
one Markdown table (a column per configuration, median and min-max), as the README shows them.

    python3 scripts/plot_bench.py --out docs/bench.png "1 worker=w1.json" "2 workers=w2.json"

Each argument is LABEL=FILE (the label may itself contain '='; the file is after the last one).
Four panels per configuration: throughput (pipeline, the single-connection COPY ceiling and the
CPU-bound limit, medians with min-max bars), CPU per row split by process, latency (p50 and p99
at half the measured rate) and the processor's peak RSS against its target. Needs matplotlib.
"""
import argparse
import json

import matplotlib

from bench import table

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def load(spec):
    label, path = spec.rsplit("=", 1)
    with open(path) as source:
        return label, json.load(source)["figures"]


def bars(axis, configs, keys, scale=1.0, stacked=False):
    width = 0.8 / (1 if stacked else len(keys))
    bottoms = [0.0] * len(configs)
    for k, (key, name) in enumerate(keys):
        medians = [figures[key]["median"] * scale for _, figures in configs]
        offsets = [i + (0 if stacked else (k - (len(keys) - 1) / 2) * width) for i in range(len(configs))]
        if stacked:
            axis.bar(offsets, medians, width, bottom=bottoms, label=name)
            bottoms = [b + m for b, m in zip(bottoms, medians)]
        else:
            low = [m - figures[key]["min"] * scale for m, (_, figures) in zip(medians, configs)]
            high = [figures[key]["max"] * scale - m for m, (_, figures) in zip(medians, configs)]
            axis.bar(offsets, medians, width, yerr=[low, high], capsize=3, label=name)
    axis.set_xticks(range(len(configs)), [label for label, _ in configs])
    axis.legend(fontsize=8, loc="lower right" if stacked else "best")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench.png")
    parser.add_argument("configs", nargs="+", help="LABEL=bench JSON file")
    args = parser.parse_args()
    configs = [load(spec) for spec in args.configs]
    figure, (rate, cpu, latency, memory) = plt.subplots(1, 4, figsize=(19, 4.5))
    bars(rate, configs, [("pipeline_rows_per_s", "pipeline"), ("copy_ceiling_rows_per_s", "1-connection COPY ceiling"),
                         ("cpu_bound_rows_per_s", "CPU-bound limit (2 cores)")], scale=1e-3)
    rate.set_title("throughput (median, min-max)")
    rate.set_ylabel("thousand rows/s")
    bars(cpu, configs, [("cpu_us_per_row", "processor"), ("postgres_cpu_us_per_row", "PostgreSQL"),
                        ("redis_cpu_us_per_row", "Redis")], stacked=True)
    cpu.set_title("CPU per row, by process (median)")
    cpu.set_ylabel("µs per row")
    bars(latency, configs, [("latency_p50_ms", "p50"), ("latency_p99_ms", "p99")])
    latency.set_title("stream id → XACK at half the max rate")
    latency.set_ylabel("ms")
    bars(memory, configs, [("peak_rss_mib", "processor peak RSS"), ("rss_target_mib", "target: 40 MB + 300 B/device")])
    memory.set_title("memory")
    memory.set_ylabel("MiB")
    memory.set_yscale("log")
    figure.tight_layout()
    figure.savefig(args.out, dpi=90)
    print(table(configs))


if __name__ == "__main__":
    main()
