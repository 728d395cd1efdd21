#!/usr/bin/env python3
"""Draws the latency scenario of a compare.sh run as an SVG bar chart.

Usage: scripts/plot-latency.py <compare results dir> <out.svg>

Reads latency-<server>-<round>.json (written by linechat-load --json) and
plots, per server, delivery latency at p50, p99, p99.9 and max in
milliseconds, each the median over the rounds, as compare.sh's table does.
Plain SVG written by hand, so it needs nothing beyond Python.
"""
import json
import pathlib
import re
import statistics
import sys

PERCENTILES = [("latency_p50_us", "p50"), ("latency_p99_us", "p99"),
               ("latency_p99.9_us", "p99.9"), ("latency_max_us", "max")]
COLOURS = ["#4c78a8", "#f58518", "#e45756", "#72b7b2"]


def main():
    src, dst = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    rounds = {}
    for f in sorted(src.glob("latency-*.json")):
        m = json.loads(f.read_text())["metrics"]
        name = re.sub(r"-[0-9]+$", "", f.stem.removeprefix("latency-"))
        rounds.setdefault(name, []).append([m.get(k, 0) / 1000.0 for k, _ in PERCENTILES])
    runs = [(name, [statistics.median(col) for col in zip(*rs)])
            for name, rs in rounds.items()]
    runs.sort(key=lambda r: (r[0] != "linechat", r[0]))
    top = max(max(v) for _, v in runs) * 1.1
    w, h, left, bottom, top_pad = 760, 360, 60, 50, 40
    plot_w, plot_h = w - left - 20, h - bottom - top_pad
    group = plot_w / len(runs)
    bar = group * 0.8 / len(PERCENTILES)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{w / 2}" y="20" text-anchor="middle" font-size="14">'
           'Delivery latency, 50 msg/s to 1000 subscribers (ms, lower is better)</text>']
    for tick in range(6):
        v = top * tick / 5
        y = top_pad + plot_h - plot_h * tick / 5
        out.append(f'<line x1="{left}" x2="{w - 20}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{v:.0f}</text>')
    for g, (name, values) in enumerate(runs):
        x0 = left + g * group + group * 0.1
        for k, v in enumerate(values):
            bh = plot_h * v / top
            x = x0 + k * bar
            y = top_pad + plot_h - bh
            out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar - 2:.1f}" '
                       f'height="{bh:.1f}" fill="{COLOURS[k]}"><title>{name} '
                       f'{PERCENTILES[k][1]}: {v:.1f} ms</title></rect>')
        out.append(f'<text x="{left + g * group + group / 2:.1f}" y="{h - bottom + 18}" '
                   f'text-anchor="middle">{name}</text>')
    for k, (_, label) in enumerate(PERCENTILES):
        x = left + 10 + k * 90
        out.append(f'<rect x="{x}" y="{h - 22}" width="12" height="12" fill="{COLOURS[k]}"/>')
        out.append(f'<text x="{x + 16}" y="{h - 12}">{label}</text>')
    out.append("</svg>")
    dst.write_text("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
