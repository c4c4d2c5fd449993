#!/usr/bin/env python3
"""Plots figures written by scripts/bench.py (its --json files) into one SVG, and prints them as
one Markdown table (a column per configuration, median and min-max), as the docs show them.

    python3 scripts/plot_bench.py --out docs/bench.svg "fmb=fmb.json" "mixed=mixed.json"

Each argument is LABEL=FILE (the label may itself contain '='; the file is after the last one),
or LABEL=FILE#VARIANT for one variant of a run with several (bench.py --variant).
Four panels, one group of bars per configuration: throughput (pipeline, the single-connection
COPY ceiling and the CPU-bound limit, medians with min-max whiskers), CPU per row stacked by
process, latency (p50 and p99 at half the measured rate) and the processor's peak RSS against its
target. Python 3's standard library only: nothing to install.
"""
import argparse
import json
from html import escape

from bench import table

COLOURS = ["#4C72B0", "#DD8452", "#55A868", "#C44E52"]
PANEL_W, PANEL_H, MARGIN, TOP, BOTTOM = 330, 300, 55, 40, 70


def load(spec):
    label, path = spec.rsplit("=", 1)
    path, _, variant = path.partition("#")
    with open(path) as source:
        data = json.load(source)
    return label, data["variants"][variant] if variant else data["figures"]


def nice_top(value):
    """A round axis maximum at or above `value`."""
    if value <= 0:
        return 1.0
    step = 10 ** (len(str(int(value))) - 1) if value >= 1 else 0.1
    top = step
    while top < value:
        top += step
    return top


def panel(x0, title, unit, configs, keys, scale=1.0, stacked=False):
    """One panel's SVG elements: bars per configuration, an axis, a legend."""
    out = []
    plot_w, plot_h = PANEL_W - MARGIN - 10, PANEL_H - TOP - BOTTOM
    left, base = x0 + MARGIN, TOP + plot_h

    def value(figures, key, which="median"):
        figure = figures.get(key)
        return figure[which] * scale if figure else 0.0

    if stacked:
        highest = max(sum(value(f, k) for k, _ in keys) for _, f in configs)
    else:
        highest = max(value(f, k, "max") for _, f in configs for k, _ in keys)
    top = nice_top(highest)
    y = lambda v: base - plot_h * (v / top)  # noqa: E731
    out.append(f'<text x="{x0 + PANEL_W / 2}" y="20" text-anchor="middle" font-weight="bold">{escape(title)}</text>')
    for i in range(5):
        tick = top * i / 4
        out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 5}" y="{y(tick) + 4:.1f}" text-anchor="end" font-size="10">{tick:g}</text>')
    out.append(f'<text x="{x0 + 12}" y="{TOP + plot_h / 2}" font-size="10" transform="rotate(-90 {x0 + 12} '
               f'{TOP + plot_h / 2})" text-anchor="middle">{escape(unit)}</text>')
    group_w = plot_w / len(configs)
    bar_w = group_w * 0.8 / (1 if stacked else len(keys))
    for c, (label, figures) in enumerate(configs):
        gx = left + c * group_w + group_w * 0.1
        bottom = 0.0
        for k, (key, _) in enumerate(keys):
            median = value(figures, key)
            bx = gx if stacked else gx + k * bar_w
            low, high = (bottom, bottom + median) if stacked else (0.0, median)
            out.append(f'<rect x="{bx:.1f}" y="{y(high):.1f}" width="{bar_w:.1f}" height="{y(low) - y(high):.1f}" '
                       f'fill="{COLOURS[k % len(COLOURS)]}"/>')
            if stacked:
                bottom += median
            elif key in figures:
                lo, hi, mid = y(value(figures, key, "min")), y(value(figures, key, "max")), bx + bar_w / 2
                out.append(f'<line x1="{mid:.1f}" x2="{mid:.1f}" y1="{lo:.1f}" y2="{hi:.1f}" stroke="#222"/>')
        out.append(f'<text x="{gx + group_w * 0.4:.1f}" y="{base + 14}" text-anchor="middle" font-size="10">'
                   f'{escape(label)}</text>')
    for k, (_, name) in enumerate(keys):
        ly = base + 30 + 12 * k
        out.append(f'<rect x="{left}" y="{ly - 8}" width="9" height="9" fill="{COLOURS[k % len(COLOURS)]}"/>')
        out.append(f'<text x="{left + 13}" y="{ly}" font-size="10">{escape(name)}</text>')
    out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{base}" y2="{base}" stroke="#222"/>')
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench.svg")
    parser.add_argument("configs", nargs="+", help="LABEL=bench JSON file")
    args = parser.parse_args()
    configs = [load(spec) for spec in args.configs]
    panels = [
        ("throughput (median, min–max)", "thousand rows/s", [
            ("pipeline_rows_per_s", "pipeline"), ("copy_ceiling_rows_per_s", "1-connection COPY ceiling"),
            ("cpu_bound_rows_per_s", "CPU-bound limit")], 1e-3, False),
        ("CPU per row, by process", "µs per row", [
            ("cpu_us_per_row", "processor"), ("postgres_cpu_us_per_row", "PostgreSQL"),
            ("redis_cpu_us_per_row", "Redis")], 1.0, True),
        ("stream id → XACK at half the max rate", "ms", [
            ("latency_p50_ms", "p50"), ("latency_p99_ms", "p99")], 1.0, False),
        ("memory", "MiB", [
            ("peak_rss_mib", "processor peak RSS"), ("rss_target_mib", "target: 40 MB + 300 B/device")], 1.0, False),
    ]
    body = []
    for i, (title, unit, keys, scale, stacked) in enumerate(panels):
        body += panel(i * PANEL_W, title, unit, configs, keys, scale, stacked)
    width = PANEL_W * len(panels)
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{PANEL_H}" '
           f'font-family="sans-serif" font-size="12">\n<rect width="100%" height="100%" fill="white"/>\n'
           + "\n".join(body) + "\n</svg>\n")
    with open(args.out, "w") as out:
        out.write(svg)
    print(table(configs))


if __name__ == "__main__":
    main()
