#!/usr/bin/env python3
"""Turns compare.sh's results.jsonl (and the --hdr-out files) into results.json, results.md
and SVG charts, with the standard library only.

usage: charts.py OUT_DIR
"""
import html
import json
import math
import os
import sys
import time

PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f"]


def fmt(v, unit=""):
    if v is None:
        return "n/a"
    if unit == "ms":
        return f"{v:.2f} ms"
    return f"{round(v):,}"


def load(out):
    rows = []
    with open(os.path.join(out, "results.jsonl")) as f:
        for line in f:
            line = line.strip()
            if line:
                rows.append(json.loads(line))
    return rows


def groups(rows):
    seen = []
    for r in rows:
        g = (r["mode"], r["conns"])
        if g not in seen:
            seen.append(g)
    return seen


def label(g):
    return f"{'keep-alive' if g[0] == 'keepalive' else 'pipelined x16'} c={g[1]}"


def uniq(rows, key):
    out = []
    for r in rows:
        if r[key] not in out:
            out.append(r[key])
    return out


def markdown(rows):
    lines = [f"# ringshard compare, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", ""]
    lines.append("Servers pinned to one CPU, load generators to another; req/server-CPU-s is requests per CPU-second of the server's processes, req/loader-CPU-s the same for the load generator.")
    for g in groups(rows):
        sub = [r for r in rows if (r["mode"], r["conns"]) == g]
        lines += ["", f"## {label(g)}", "", "| server | load generator | req/s | p99 | req/server-CPU-s | req/loader-CPU-s | errors |", "|---|---|---|---|---|---|---|"]
        for r in sub:
            lines.append(f"| {r['server']} | {r['loader']} | {fmt(r['rps'])} | {fmt(r.get('p99_ms'), 'ms')} | {fmt(r.get('req_per_server_cpu_s'))} | {fmt(r.get('req_per_loader_cpu_s'))} | {r.get('errors', 0)} |")
    return "\n".join(lines) + "\n"


def svg_bars(rows, value_key, title, series_key, pick_loader=None):
    """Grouped bars: one group per (mode, conns), one bar per series (server or loader)."""
    gs = groups(rows)
    data = {}
    for r in rows:
        if pick_loader and r["loader"] != pick_loader:
            continue
        v = r.get(value_key)
        if v is None:
            continue
        data.setdefault((r["mode"], r["conns"]), {}).setdefault(r[series_key], []).append(v)
    series = [s for s in uniq(rows, series_key) if any(s in d for d in data.values())]
    if not series:
        return None
    vals = {g: {s: sorted(v)[len(v) // 2] for s, v in d.items()} for g, d in data.items()}
    vmax = max(v for d in vals.values() for v in d.values()) or 1
    step = 10 ** math.floor(math.log10(vmax))
    top = math.ceil(vmax / step) * step
    W, H, L, T, B = 960, 420, 90, 50, 70
    gw = (W - L - 20) / max(len(gs), 1)
    bw = gw * 0.8 / max(len(series), 1)
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H + 20 * ((len(series) + 4) // 5)}" font-family="sans-serif" font-size="12">',
         f'<rect width="100%" height="100%" fill="white"/>',
         f'<text x="{W / 2}" y="24" text-anchor="middle" font-size="16">{html.escape(title)}</text>']
    for k in range(6):
        v = top * k / 5
        y = H - B - (H - B - T) * k / 5
        o.append(f'<line x1="{L}" y1="{y:.1f}" x2="{W - 20}" y2="{y:.1f}" stroke="#ddd"/>')
        o.append(f'<text x="{L - 6}" y="{y + 4:.1f}" text-anchor="end">{v:,.0f}</text>')
    for gi, g in enumerate(gs):
        x0 = L + gi * gw + gw * 0.1
        for si, s in enumerate(series):
            v = vals.get(g, {}).get(s)
            if v is None:
                continue
            h = (H - B - T) * v / top
            x = x0 + si * bw
            o.append(f'<rect x="{x:.1f}" y="{H - B - h:.1f}" width="{bw * 0.9:.1f}" height="{h:.1f}" fill="{PALETTE[si % len(PALETTE)]}"><title>{html.escape(s)}: {v:,.0f}</title></rect>')
        o.append(f'<text x="{L + gi * gw + gw / 2:.1f}" y="{H - B + 18}" text-anchor="middle">{html.escape(label(g))}</text>')
    for si, s in enumerate(series):
        x = L + (si % 5) * 170
        y = H - 20 + 20 * (si // 5)
        o.append(f'<rect x="{x}" y="{y - 10}" width="12" height="12" fill="{PALETTE[si % len(PALETTE)]}"/><text x="{x + 18}" y="{y}">{html.escape(s)}</text>')
    o.append("</svg>")
    return "\n".join(o)


def read_hdr(path):
    """(percentile in [0, 1), value in ms) points from HdrHistogram's text format."""
    pts = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and not line.startswith("#") and parts[0] != "Value":
                try:
                    v, p = float(parts[0]), float(parts[1])
                except ValueError:
                    continue
                if p < 1.0:
                    pts.append((p, v))
    return pts


def svg_latency(out, g, servers):
    """Latency by percentile, x on the 1/(1-p) log scale HdrHistogram's plotter uses."""
    curves = []
    for s in servers:
        path = os.path.join(out, "hdr", f"{s}-{g[0]}-c{g[1]}.hdr")
        if os.path.exists(path):
            pts = read_hdr(path)
            if pts:
                curves.append((s, pts))
    if not curves:
        return None
    xmax_dec = 5  # up to 99.999%
    vmax = max(v for _, pts in curves for p, v in pts if p <= 1 - 10 ** -xmax_dec) or 1
    W, H, L, T, B = 960, 440, 80, 50, 90
    X = lambda p: L + (W - L - 30) * min(-math.log10(max(1 - p, 10 ** -xmax_dec)), xmax_dec) / xmax_dec
    Y = lambda v: H - B - (H - B - T) * v / vmax
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
         '<rect width="100%" height="100%" fill="white"/>',
         f'<text x="{W / 2}" y="24" text-anchor="middle" font-size="16">Latency by percentile, {html.escape(label(g))} (ringshard load)</text>']
    for k, name in enumerate(["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]):
        x = X(1 - 10 ** -k)
        o.append(f'<line x1="{x:.1f}" y1="{T}" x2="{x:.1f}" y2="{H - B}" stroke="#ddd"/><text x="{x:.1f}" y="{H - B + 16}" text-anchor="middle">{name}</text>')
    for k in range(6):
        v = vmax * k / 5
        o.append(f'<line x1="{L}" y1="{Y(v):.1f}" x2="{W - 30}" y2="{Y(v):.1f}" stroke="#eee"/><text x="{L - 6}" y="{Y(v) + 4:.1f}" text-anchor="end">{v:.2f} ms</text>')
    for si, (s, pts) in enumerate(curves):
        d = " ".join(f"{X(p):.1f},{Y(v):.1f}" for p, v in pts if p <= 1 - 10 ** -xmax_dec)
        o.append(f'<polyline fill="none" stroke="{PALETTE[si % len(PALETTE)]}" stroke-width="2" points="{d}"><title>{html.escape(s)}</title></polyline>')
        x = L + (si % 5) * 170
        y = H - 40 + 20 * (si // 5)
        o.append(f'<rect x="{x}" y="{y - 10}" width="12" height="12" fill="{PALETTE[si % len(PALETTE)]}"/><text x="{x + 18}" y="{y}">{html.escape(s)}</text>')
    o.append("</svg>")
    return "\n".join(o)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "out")
    rows = load(out)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(rows, f, indent=1)
    md = markdown(rows)
    charts = []
    for name, key, title, series, loader in [
        ("throughput.svg", "rps", "Requests/s (ringshard load, 1 thread)", "server", "ringshard"),
        ("server-efficiency.svg", "req_per_server_cpu_s", "Requests per server CPU-second (ringshard load)", "server", "ringshard"),
        ("loader-efficiency.svg", "req_per_loader_cpu_s", "Requests per load-generator CPU-second (median over servers)", "loader", None),
    ]:
        svg = svg_bars(rows, key, title, series, loader)
        if svg:
            with open(os.path.join(out, name), "w") as f:
                f.write(svg)
            charts.append(name)
    for g in groups(rows):
        svg = svg_latency(out, g, uniq(rows, "server"))
        if svg:
            name = f"latency-{g[0]}-c{g[1]}.svg"
            with open(os.path.join(out, name), "w") as f:
                f.write(svg)
            charts.append(name)
    md += "\n## Charts\n\n" + "\n".join(f"![{c}]({c})" for c in charts) + "\n"
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(md)


if __name__ == "__main__":
    main()
