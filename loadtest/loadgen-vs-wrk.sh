#!/usr/bin/env bash
# Load generator efficiency: `ringshard load --threads 1` against `wrk -t1`, both pinned to
# LOAD_CPU (default 1), driving the C epoll ceiling server (one process) pinned to SERVER_CPU
# (default 0), in keep-alive and 16-deep pipelined mode at CONNS (default 64) connections.
# Prints a Markdown table of the median of RUNS (default 3) runs of DUR (default 5) seconds:
# requests/s, p99, requests per load-generator CPU-second (the loader's own user+system time,
# from getrusage of the child via /usr/bin/time), that figure's ratio to wrk's, and the
# requests the server answered (bytes it wrote / response size, from /proc/PID/io) against the
# requests the loader counted.
# usage: loadtest/loadgen-vs-wrk.sh     (env: DUR RUNS CONNS PORT SERVER_CPU LOAD_CPU ANCHORS RINGSHARD)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
anchors=${ANCHORS:-$root/../shared/anchors}
dur=${DUR:-5} runs=${RUNS:-3} conns=${CONNS:-64} port=${PORT:-18181}
server_cpu=${SERVER_CPU:-0} load_cpu=${LOAD_CPU:-1}
tmp=$(mktemp -d)

for tool in wrk gcc python3 taskset /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "loadgen-vs-wrk: $tool is missing" >&2; exit 1; }
done
gcc -O2 -o "$tmp/limit_epoll" "$anchors/limit_epoll.c"
if [[ -z ${RINGSHARD:-} ]]; then
  (cd "$root" && cargo build --release --quiet)
  RINGSHARD=${CARGO_TARGET_DIR:-$root/target}/release/ringshard
fi

setsid taskset -c "$server_cpu" "$tmp/limit_epoll" "$port" 1 &
spid=$!
trap 'kill $spid 2>/dev/null; rm -rf "$tmp"' EXIT
sleep 0.3
url=http://127.0.0.1:$port/
# Size of the server's fixed response, to turn the bytes it wrote into responses.
resp_len=$(python3 - "$port" <<'EOF'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
d = b""
while not d.endswith(b"Hello, World!"):
    d += s.recv(4096)
print(len(d))
EOF
)
wchar() { awk '/^wchar/{print $2}' "/proc/$spid/io"; }

# one TOOL MODE -> "rps p99_ms requests cpu_s answered" (one run)
one() {
  local tool=$1 mode=$2 w0 w1 cpu
  local -a cmd
  if [[ $tool == wrk ]]; then
    cmd=(wrk -t1 -c"$conns" -d"${dur}s" --latency)
    [[ $mode == pipe16 ]] && cmd+=(-s "$anchors/pipeline.lua")
  else
    cmd=("$RINGSHARD" load --threads 1 -c "$conns" -d "${dur}s" --json)
    [[ $mode == pipe16 ]] && cmd+=(--pipeline 16)
  fi
  w0=$(wchar)
  DEPTH=16 /usr/bin/time -f "%U %S" -o "$tmp/time" taskset -c "$load_cpu" "${cmd[@]}" "$url" >"$tmp/out" 2>"$tmp/err"
  sleep 0.3 # let the server answer what was still in flight when the loader stopped
  w1=$(wchar)
  cpu=$(awk '{print $1 + $2}' "$tmp/time")
  python3 - "$tool" "$tmp/out" "$cpu" "$(( (w1 - w0) / resp_len ))" <<'EOF'
import json, re, sys
tool, path, cpu, answered = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
text = open(path).read()
if tool == "wrk":
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    reqs = int(re.search(r"(\d+) requests in", text).group(1))
    m = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    p99 = float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)] if m else float("nan")
else:
    j = json.loads(text)
    rps, reqs, p99 = j["rate"], j["requests"], j["latency_us"]["p99"] / 1000
print(f"{rps:.0f} {p99:.3f} {reqs} {cpu:.2f} {answered}")
EOF
}

median() { sort -g -k"$1" | awk -v k="$1" '{a[NR]=$k} END{print a[int((NR+1)/2)]}'; }

# Rounds alternate the two load generators, so drift in what else the machine is doing
# (a shared machine) falls on both alike.
declare -A res
for mode in keepalive pipe16; do
  : >"$tmp/runs.wrk"; : >"$tmp/runs.ringshard"
  for _ in $(seq "$runs"); do
    for tool in wrk ringshard; do
      one "$tool" "$mode" | awk '{printf "%s %s\n", $0, ($4 > 0 ? $3 / $4 : 0)}' | tee -a "$tmp/runs.$tool" | sed "s/^/$mode $tool: /" >&2
    done
  done
  for tool in wrk ringshard; do
    # Median of each figure; answered/counted of the run with the median efficiency.
    rps=$(median 1 <"$tmp/runs.$tool"); p99=$(median 2 <"$tmp/runs.$tool"); eff=$(median 6 <"$tmp/runs.$tool")
    row=$(sort -g -k6 "$tmp/runs.$tool" | awk -v n="$runs" 'NR == int((n+1)/2)')
    res[$mode.$tool]="$rps $p99 $eff $(awk '{print $5, $3}' <<<"$row")"
  done
done

echo
cpu_model=$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)
echo "limit_epoll (1 process) on CPU $server_cpu, load generator on CPU $load_cpu, 1 thread, c=$conns, median of $runs x ${dur}s, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(nproc) CPUs, $cpu_model; kernel $(uname -r)"
echo
for mode in keepalive pipe16; do
  for tool in wrk ringshard; do echo "$mode $tool ${res[$mode.$tool]}"; done
done | python3 -c '
import sys
rows = [l.split() for l in sys.stdin]
wrk = {r[0]: float(r[4]) for r in rows if r[1] == "wrk"}
print("| mode | load generator | requests/s | p99 | requests per loader CPU-s | vs wrk | server answered / loader counted |")
print("|---|---|---|---|---|---|---|")
for mode, tool, rps, p99, eff, ans, cnt in rows:
    p99 = float(p99)
    print("| %s | %s | %s | %s | %s | %.2fx | %s / %s |" % (
        "keep-alive" if mode == "keepalive" else "pipelined x16",
        "wrk -t1" if tool == "wrk" else "ringshard load --threads 1",
        format(round(float(rps)), ","),
        "%.2f ms" % p99 if p99 > 0 else "n/a (wrk reports 0)",
        format(round(float(eff)), ","),
        float(eff) / wrk[mode] if wrk[mode] else 0,
        format(int(ans), ","), format(int(cnt), ",")))
'
