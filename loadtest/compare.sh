#!/usr/bin/env bash
# Side-by-side comparison: ringshard serve and the reference servers of ../shared/anchors, each
# pinned to SERVER_CPU (default 0), driven by each load generator (ringshard load, wrk, oha;
# a missing one is skipped with a message) pinned to LOAD_CPU (default 1), keep-alive and
# 16-deep pipelined, at each of CONNS connections. Measures the server's CPU time (every
# process of its session, from /proc) and the loader's (getrusage via /usr/bin/time), and
# writes under OUT (default loadtest/out/): results.jsonl (one line per run), results.json,
# results.md, throughput and efficiency bar charts and latency percentile curves (SVG, from
# `ringshard load --hdr-out`).
#
# usage: loadtest/compare.sh
# env:   DUR=5 CONNS="64 256" MODES="keepalive pipe16" LOADERS="ringshard wrk oha"
#        SERVERS="ringshard limit_epoll nginx hyper may monoio ntex xitca"
#        SERVER_CPU=0 LOAD_CPU=1 PORT=18300 OUT=loadtest/out
#        RINGSHARD=path (load generator; default: release build of this repository)
#        RINGSHARD_SERVER=path (binary with `serve`; default: RINGSHARD)
#        ANCHORS=../shared/anchors ANCHORS_TARGET=../anchors-target if it exists, else
#        /tmp/ringshard-anchors-target (built there when missing; BUILD=never: don't)
#        ANCHORS_BIN=$ANCHORS_TARGET/release
#        APPEND=1 (add to OUT's results.jsonl instead of starting it afresh)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
anchors=${ANCHORS:-$root/../shared/anchors}
# The Rust reference servers build outside ../shared (which stays untouched).
if [[ -d $root/../anchors-target ]]; then default_target=$root/../anchors-target; else default_target=/tmp/ringshard-anchors-target; fi
anchors_target=${ANCHORS_TARGET:-$default_target}
anchors_bin=${ANCHORS_BIN:-$anchors_target/release}
dur=${DUR:-5} conns_list=${CONNS:-64 256} modes=${MODES:-keepalive pipe16}
loaders=${LOADERS:-ringshard wrk oha}
servers=${SERVERS:-ringshard limit_epoll nginx hyper may monoio ntex xitca}
server_cpu=${SERVER_CPU:-0} load_cpu=${LOAD_CPU:-1} port=${PORT:-18300}
out=${OUT:-$here/out}
tck=$(getconf CLK_TCK)
tmp=$(mktemp -d)
sid=""
note() { echo "compare: $*" >&2; }
stop_server() {
  if [[ -n $sid ]]; then
    kill -- -"$sid" 2>/dev/null || true # the process group setsid made for the server: only what we started
    sleep 0.3
    sid=""
  fi
}
trap 'stop_server; rm -rf "$tmp"' EXIT
trap 'note "interrupted"; exit 130' INT TERM HUP

for tool in python3 taskset /usr/bin/time setsid; do
  command -v "$tool" >/dev/null || { note "$tool is missing"; exit 1; }
done
if [[ -z ${RINGSHARD:-} ]]; then
  (cd "$root" && cargo build --release --quiet)
  RINGSHARD=${CARGO_TARGET_DIR:-$root/target}/release/ringshard
fi
RINGSHARD_SERVER=${RINGSHARD_SERVER:-$RINGSHARD}
# Build the Rust reference servers that are asked for and missing (BUILD=never: don't).
missing=""
for n in hyper may monoio; do
  [[ " $servers " == *" $n "* && ! -x $anchors_bin/${n}_hello ]] && missing+=" $n"
done
if [[ -n $missing && ${BUILD:-missing} != never ]]; then
  note "building the reference servers (${missing# }) into $anchors_target: a few minutes, once"
  (cd "$anchors/rs" && CARGO_TARGET_DIR=$anchors_target cargo build --release --quiet) ||
    note "could not build the reference servers; they will be skipped"
fi
avail_loaders=""
for l in $loaders; do
  case $l in
    ringshard) avail_loaders+=" ringshard" ;;
    wrk | oha) if command -v "$l" >/dev/null; then avail_loaders+=" $l"; else note "$l not installed, skipping it"; fi ;;
    *) note "unknown load generator $l, skipping it" ;;
  esac
done
mkdir -p "$out/hdr"
[[ ${APPEND:-0} == 1 ]] || : >"$out/results.jsonl"

# start_server NAME PORT: starts it in its own session pinned to SERVER_CPU; sets sid.
start_server() {
  local name=$1 p=$2
  local -a cmd
  case $name in
    ringshard)
      if ! "$RINGSHARD_SERVER" serve --help >/dev/null 2>&1; then note "$RINGSHARD_SERVER has no serve command, skipping ringshard serve"; return 1; fi
      cmd=("$RINGSHARD_SERVER" serve --shards 1 --listen "127.0.0.1:$p") ;;
    limit_epoll)
      command -v gcc >/dev/null || { note "gcc missing, skipping limit_epoll"; return 1; }
      gcc -O2 -o "$tmp/limit_epoll" "$anchors/limit_epoll.c"
      cmd=("$tmp/limit_epoll" "$p" 1) ;;
    nginx)
      command -v nginx >/dev/null || { note "nginx not installed, skipping it"; return 1; }
      sed -e "s/127.0.0.1:8082/127.0.0.1:$p/" -e "s#/tmp/anchor-nginx.pid#$tmp/nginx.pid#" "$anchors/nginx.conf" >"$tmp/nginx.conf"
      cmd=(nginx -c "$tmp/nginx.conf" -e /dev/null) ;;
    hyper | may | monoio | ntex | xitca)
      [[ -x $anchors_bin/${name}_hello ]] || { note "$anchors_bin/${name}_hello not built, skipping $name"; return 1; }
      cmd=("$anchors_bin/${name}_hello" "$p" 1) ;;
    *) note "unknown server $name, skipping it"; return 1 ;;
  esac
  setsid taskset -c "$server_cpu" "${cmd[@]}" >/dev/null 2>&1 &
  sid=$!
  for _ in $(seq 50); do
    if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $p), 0.2)" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  note "$name did not start listening on $p, skipping it"
  stop_server
  return 1
}

# CPU ticks of every process in the server's session.
# (A process may exit between the glob and the read: cat's failure must not stop the script.)
server_ticks() { { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v s="$sid" '{sub(/^.*\) /, ""); if ($4 == s) t += $12 + $13} END{print t+0}'; }

# run_one SERVER MODE CONNS LOADER PORT: one run, appended to results.jsonl.
run_one() {
  local server=$1 mode=$2 c=$3 loader=$4 p=$5 a b
  local url=http://127.0.0.1:$p/ hdr=$out/hdr/$server-$mode-c$c.hdr
  local -a cmd
  case $loader in
    ringshard)
      cmd=("$RINGSHARD" load --threads 1 -c "$c" -d "${dur}s" --json --hdr-out "$hdr")
      [[ $mode == pipe16 ]] && cmd+=(--pipeline 16) ;;
    wrk)
      cmd=(wrk -t1 -c"$c" -d"${dur}s" --latency)
      [[ $mode == pipe16 ]] && cmd+=(-s "$anchors/pipeline.lua") ;;
    oha)
      if [[ $mode == pipe16 ]]; then note "oha cannot pipeline, skipping $server $mode c=$c oha"; return 0; fi
      cmd=(oha -z "${dur}s" -c "$c" --no-tui --output-format json) ;;
  esac
  a=$(server_ticks)
  if ! DEPTH=16 /usr/bin/time -f "%U %S" -o "$tmp/time" taskset -c "$load_cpu" "${cmd[@]}" "$url" >"$tmp/out" 2>"$tmp/err"; then
    note "$loader against $server ($mode c=$c) failed: $(tail -1 "$tmp/err")"
    return 0
  fi
  b=$(server_ticks)
  python3 - "$server" "$mode" "$c" "$loader" "$tmp/out" "$(awk '{print $1 + $2}' "$tmp/time")" "$(( b - a ))" "$tck" "$dur" >>"$out/results.jsonl" <<'EOF' || { note "could not read $loader's output for $server $mode c=$c"; return 0; }
import json, re, sys
server, mode, conns, loader, path, lcpu, sticks, tck, dur = sys.argv[1:]
text = open(path).read()
r = {"server": server, "mode": mode, "conns": int(conns), "loader": loader}
if loader == "ringshard":
    j = json.loads(text)
    r.update(rps=j["rate"], requests=j["requests"], p99_ms=j["latency_us"]["p99"] / 1000,
             p50_ms=j["latency_us"]["p50"] / 1000, errors=j["errors"]["total"])
elif loader == "wrk":
    m = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    p99 = float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)] if m else None
    errs = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", text))
    r.update(rps=float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),
             requests=int(re.search(r"(\d+) requests in", text).group(1)),
             p99_ms=p99 if p99 else None, errors=errs)
else:
    j = json.loads(text)
    ok = sum(j.get("statusCodeDistribution", {}).values())
    r.update(rps=j["summary"]["requestsPerSec"], requests=ok,
             p99_ms=(j["latencyPercentiles"].get("p99") or 0) * 1000,
             errors=sum(v for k, v in j.get("errorDistribution", {}).items() if "deadline" not in k))
scpu = int(sticks) / int(tck)
r["server_cpu_s"] = round(scpu, 3)
r["loader_cpu_s"] = float(lcpu)
# Requests per CPU-second, over the measured window (req/s x duration).
done = r["rps"] * float(dur)
r["req_per_server_cpu_s"] = round(done / scpu) if scpu > 0 else None
r["req_per_loader_cpu_s"] = round(r["requests"] / float(lcpu)) if float(lcpu) > 0 else None
print(json.dumps(r))
EOF
  tail -1 "$out/results.jsonl" >&2
}

for server in $servers; do
  start_server "$server" "$port" || { port=$((port + 1)); continue; }
  for mode in $modes; do
    for c in $conns_list; do
      for loader in $avail_loaders; do
        run_one "$server" "$mode" "$c" "$loader" "$port"
      done
    done
  done
  stop_server
  port=$((port + 1))
done

python3 "$here/charts.py" "$out"
echo "compare: wrote $out/results.md, results.json and the SVG charts" >&2
