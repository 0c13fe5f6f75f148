#!/usr/bin/env python3
"""Which io_uring features pay off on this kernel, and by how much.

Runs one workload against `ringshard serve --engine epoll`, `--engine uring` with default knobs,
and uring with each knob switched, side by side in one run: the server pinned to SERVER_CPU,
wrk (one thread) pinned to LOAD_CPU. For each configuration and mode (keep-alive, 16-deep
pipelining; 64 connections) it reports the median of RUNS runs of DUR seconds: requests/s,
p99, requests per server CPU-second (server CPU time from /proc), and syscalls per request
(the server's own count of io_uring_enter calls, or of epoll_wait and I/O syscalls, from
/metrics). Writes loadtest/out/engines-<date>.{md,json,svg}.

usage: loadtest/engines.py            env: RUNS [3] DUR [5] CONNS [64] SERVER_CPU [0] LOAD_CPU [1]
                                           CONFIGS (names to run, separated by ";", default all)
"""
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "loadtest", "out")
RUNS = int(os.environ.get("RUNS", "3"))
DUR = int(os.environ.get("DUR", "5"))
CONNS = int(os.environ.get("CONNS", "64"))
SERVER_CPU = os.environ.get("SERVER_CPU", "0")
LOAD_CPU = os.environ.get("LOAD_CPU", "1")
TCK = os.sysconf("SC_CLK_TCK")

# (name, flags): epoll, uring defaults, then one knob switched at a time.
CONFIGS = [
    ("epoll", ["--engine", "epoll"]),
    ("uring (defaults)", ["--engine", "uring"]),
    ("uring, no DEFER_TASKRUN (coop)", ["--engine", "uring", "--taskrun", "coop"]),
    ("uring, plain task running", ["--engine", "uring", "--taskrun", "plain"]),
    ("uring, single-shot recv", ["--engine", "uring", "--recv", "single"]),
    ("uring, plain descriptors", ["--engine", "uring", "--registered-files", "0"]),
    ("uring, SQPOLL", ["--engine", "uring", "--sqpoll", "1s"]),
    ("uring, SEND_ZC for every send", ["--engine", "uring", "--send-zc", "1"]),
    ("uring, no batched waits", ["--engine", "uring", "--wait-usec", "0"]),
    ("uring, 64 buffers of 4 KiB", ["--engine", "uring", "--buf-count", "64"]),
    ("uring, reap 8 per turn", ["--engine", "uring", "--reap", "8"]),
]

PIPELINE_LUA = """
init = function(args)
  local r = {}
  for i = 1, 16 do r[i] = wrk.format(nil, "/plaintext") end
  req = table.concat(r)
end
request = function() return req end
"""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def cpu_ticks(pid):
    """utime+stime of every thread of pid (SQPOLL's kernel thread included)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total


def metrics(port):
    """(requests_total, enter_calls_total) summed over shards."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
    text = data.decode(errors="replace")
    def total(name):
        return sum(int(v) for v in re.findall(rf"^ringshard_{name}{{[^}}]*}} (\d+)$", text, re.M))
    return total("requests_total"), total("enter_calls_total")


def start(binary, flags):
    port = free_port()
    cmd = ["taskset", "-c", SERVER_CPU, binary, "serve", "--shards", "1", "--listen", f"127.0.0.1:{port}"] + flags
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 10
    while time.time() < deadline:
        if p.poll() is not None:
            return None, port, p.stderr.read().decode(errors="replace").strip()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return p, port, ""
        except OSError:
            time.sleep(0.05)
    p.kill()
    return None, port, "did not start within 10 s"


def wrk(port, mode, lua):
    args = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{CONNS}", f"-d{DUR}s", "--latency"]
    if mode == "pipelined":
        args += ["-s", lua]
    out = subprocess.run(args + [f"http://127.0.0.1:{port}/plaintext"], capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    p99 = None
    if m:
        p99 = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
    return rps, p99


def one(binary, flags, mode, lua):
    p, port, err = start(binary, flags)
    if p is None:
        return None, err
    try:
        r0, e0 = metrics(port)
        t0 = cpu_ticks(p.pid)
        rps, p99 = wrk(port, mode, lua)
        t1 = cpu_ticks(p.pid)
        r1, e1 = metrics(port)
    finally:
        os.killpg(p.pid, 9)
        p.wait()
    reqs = max(r1 - r0 - 1, 1)
    cpu = (t1 - t0) / TCK
    return {
        "rps": rps,
        "p99_ms": p99,
        "req_per_cpu_s": rps * DUR / cpu if cpu > 0 else None,
        "syscalls_per_req": (e1 - e0) / reqs,
    }, ""


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def svg(results, path):
    """Bars of requests per server CPU-second relative to the epoll engine, per mode."""
    names = [r["name"] for r in results]
    modes = ["keep-alive", "pipelined"]
    base = {m: next((r[m]["req_per_cpu_s"] for r in results if r["name"] == "epoll" and r.get(m)), None) for m in modes}
    w, row, left = 760, 26, 250
    h = 60 + row * len(names) * 2
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
             f'<text x="10" y="20" font-size="14" font-weight="bold">Requests per server CPU-second, relative to the epoll engine</text>']
    y = 40
    colors = {"keep-alive": "#4472c4", "pipelined": "#ed7d31"}
    for r in results:
        for m in modes:
            v = r.get(m) and r[m]["req_per_cpu_s"]
            ratio = v / base[m] if v and base[m] else 0
            bw = min(ratio / 2.0, 1.0) * (w - left - 80)
            parts.append(f'<text x="10" y="{y + 15}">{r["name"]} ({m})</text>')
            parts.append(f'<rect x="{left}" y="{y + 3}" width="{bw:.0f}" height="{row - 8}" fill="{colors[m]}"/>')
            parts.append(f'<text x="{left + bw + 5:.0f}" y="{y + 15}">{ratio:.2f}×</text>')
            y += row
    one_x = left + 0.5 * (w - left - 80)
    parts.append(f'<line x1="{one_x:.0f}" y1="35" x2="{one_x:.0f}" y2="{h - 10}" stroke="#888" stroke-dasharray="4"/>')
    parts.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(parts))


def main():
    if not shutil.which("wrk"):
        sys.exit("engines.py: wrk is not installed (apt-get install -y wrk)")
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    binary = os.path.join(ROOT, "target", "release", "ringshard")
    os.makedirs(OUT, exist_ok=True)
    lua = os.path.join(OUT, "pipeline16.lua")
    with open(lua, "w") as f:
        f.write(PIPELINE_LUA)
    wanted = os.environ.get("CONFIGS")
    configs = [c for c in CONFIGS if not wanted or c[0] in wanted.split(";")]
    runs = {(name, mode): [] for name, _ in configs for mode in ("keep-alive", "pipelined")}
    skipped = {}
    # Interleaved: one run of every configuration per round, so drift hits all alike.
    for rnd in range(RUNS):
        for name, flags in configs:
            if name in skipped:
                continue
            for mode in ("keep-alive", "pipelined"):
                res, err = one(binary, flags, mode, lua)
                if res is None:
                    skipped[name] = err
                    print(f"skip {name}: {err}", file=sys.stderr)
                    break
                runs[(name, mode)].append(res)
                print(f"round {rnd + 1} {name} {mode}: {res}", file=sys.stderr)
    results = []
    for name, flags in configs:
        r = {"name": name, "flags": " ".join(flags)}
        for mode in ("keep-alive", "pipelined"):
            xs = runs[(name, mode)]
            if xs:
                r[mode] = {k: med([x[k] for x in xs]) for k in xs[0]}
        if name in skipped:
            r["skipped"] = skipped[name]
        results.append(r)
    stamp = datetime.now(timezone.utc)
    date = stamp.strftime("%Y-%m-%d")
    kernel = os.uname().release
    base = {m: next((r[m]["req_per_cpu_s"] for r in results if r["name"] == "epoll" and r.get(m)), None)
            for m in ("keep-alive", "pipelined")}
    lines = [f"## io_uring knobs vs the epoll engine, {stamp:%Y-%m-%d %H:%M} UTC", "",
             f"Kernel {kernel}, {os.cpu_count()} CPUs; `ringshard serve --shards 1` on CPU {SERVER_CPU}, wrk -t1 -c{CONNS} on CPU {LOAD_CPU}, "
             f"GET /plaintext, median of {RUNS} interleaved runs × {DUR} s; pipelined = 16 requests per write. "
             "Syscalls per request: the server's own count (io_uring_enter, or epoll_wait plus I/O syscalls) from /metrics.", "",
             "| configuration | keep-alive req/s | p99 | req per server CPU-s | ÷ epoll | syscalls/req | pipelined req/s | req per server CPU-s | ÷ epoll | syscalls/req |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    def fmt(v, f):
        return f.format(v) if v is not None else "n/a"
    for r in results:
        if "skipped" in r:
            lines.append(f"| {r['name']} | skipped: {r['skipped']} |||||||||")
            continue
        k, p = r.get("keep-alive", {}), r.get("pipelined", {})
        rk = k.get("req_per_cpu_s") / base["keep-alive"] if base["keep-alive"] and k.get("req_per_cpu_s") else None
        rp = p.get("req_per_cpu_s") / base["pipelined"] if base["pipelined"] and p.get("req_per_cpu_s") else None
        lines.append(f"| {r['name']} (`{r['flags']}`) | {fmt(k.get('rps'), '{:,.0f}')} | {fmt(k.get('p99_ms'), '{:.2f} ms')} | "
                     f"{fmt(k.get('req_per_cpu_s'), '{:,.0f}')} | {fmt(rk, '{:.2f}')} | {fmt(k.get('syscalls_per_req'), '{:.3f}')} | "
                     f"{fmt(p.get('rps'), '{:,.0f}')} | {fmt(p.get('req_per_cpu_s'), '{:,.0f}')} | {fmt(rp, '{:.2f}')} | "
                     f"{fmt(p.get('syscalls_per_req'), '{:.4f}')} |")
    md = "\n".join(lines) + "\n"
    base_name = os.path.join(OUT, f"engines-{date}")
    with open(base_name + ".md", "w") as f:
        f.write(md)
    with open(base_name + ".json", "w") as f:
        json.dump({"date": stamp.isoformat(), "kernel": kernel, "runs": RUNS, "duration_s": DUR,
                   "connections": CONNS, "results": results}, f, indent=1)
    svg(results, base_name + ".svg")
    print(md)
    print(f"wrote {base_name}.md, .json, .svg", file=sys.stderr)


if __name__ == "__main__":
    main()
