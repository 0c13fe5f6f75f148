#!/usr/bin/env bash
# app-balance.sh: per-shard against shared app pools, with one slow endpoint among fast ones.
# ringshard (SHARDS shards, on CPU 0 with its app) runs an app pool of N single-threaded
# processes (scripts/app-balance.py: /fast answers at once, /slow holds the process SLOW_MS ms),
# for N in PROCS (fewer than, equal to and more than the shards), with `pool = "per-shard"` and
# `pool = "shared"`. On CPU 1, for RUN_SECONDS s: `ringshard load` asks for /fast on FAST
# connections, and beside it another asks for /slow on SLOW connections (each keeps one slow
# request in flight). Printed per pool: /fast requests/s, p50, p99, errors; /slow requests/s.
# The rounds alternate the two pools for each N (ROUNDS of them), and the table gives medians.
#
# usage: scripts/app-balance.sh    environment: SHARDS [2] PROCS ["1 2 4"] SLOW_MS [50]
#   MIX [0] FAST [16] SLOW [2] RUN_SECONDS [8] ROUNDS [3] RINGSHARD_BIN; NO_SAVE=1 (default: saved to
#   scripts/out/app-balance-DATE.md)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
source "$here/common.sh"
MIX=${MIX:-0} SHARDS=${SHARDS:-2} PROCS=${PROCS:-"1 2 4"} SLOW_MS=${SLOW_MS:-50} FAST=${FAST:-16} SLOW=${SLOW:-2}
RUN_SECONDS=${RUN_SECONDS:-8} ROUNDS=${ROUNDS:-3}
RINGSHARD_BIN=${RINGSHARD_BIN:-$root/target/release/ringshard}
OUT_DIR=${OUT_DIR:-$here/out}
tmp=$(mktemp -d /tmp/app-balance.XXXXXX)
chmod 755 "$tmp"
sids=()
cleanup() { stop_sessions; rm -rf "$tmp"; }
trap cleanup EXIT

# run PROCS POOL: one measurement; appends "fast_rps fast_p50_us fast_p99_us errors slow_rps"
# to $tmp/POOL-PROCS.
run() {
  local n=$1 pool=$2 port
  port=$(pick_port 18830)
  cat > "$tmp/site.toml" <<CONF
[server]
listen = "127.0.0.1:$port"
shards = $SHARDS
[app.web]
command = 'exec python3 $here/app-balance.py --unix "\$RINGSHARD_SOCKET" --slow-ms $SLOW_MS'
processes = $n
pool = "$pool"
queue = 1000
[[route]]
prefix = "/"
app = "web"
CONF
  setsid taskset -c 0 "$RINGSHARD_BIN" serve --config "$tmp/site.toml" > "$tmp/server.log" 2>&1 < /dev/null &
  local sid=$!
  sids=("$sid")
  for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/fast" && break; sleep 0.1; done
  if ((MIX)); then
    { for _ in $(seq 19); do echo /fast; done; echo /slow; } > "$tmp/paths"
    taskset -c 1 "$RINGSHARD_BIN" load "http://127.0.0.1:$port/fast" --paths "$tmp/paths" -c "$FAST" -t 1 -d "${RUN_SECONDS}s" --json > "$tmp/fast.json"
    python3 -c 'import json,sys; f=json.load(open(sys.argv[1])); f["rate"]=f["rate"]/20; print(json.dumps(f))' "$tmp/fast.json" > "$tmp/slow.json"
  else
    taskset -c 1 "$RINGSHARD_BIN" load "http://127.0.0.1:$port/slow" -c "$SLOW" -t 1 -d "${RUN_SECONDS}s" --json > "$tmp/slow.json" &
    local s=$!
    taskset -c 1 "$RINGSHARD_BIN" load "http://127.0.0.1:$port/fast" -c "$FAST" -t 1 -d "${RUN_SECONDS}s" --json > "$tmp/fast.json"
    wait "$s"
  fi
  stop_sessions
  sids=()
  python3 - "$tmp/fast.json" "$tmp/slow.json" >> "$tmp/$pool-$n" <<'PY'
import json, sys
f, s = (json.load(open(p)) for p in sys.argv[1:3])
bad = f["errors"]["total"] + sum(c for k, c in f["status"].items() if not k.startswith("2"))
print(f["rate"], f["latency_us"]["p50"], f["latency_us"]["p99"], bad, s["rate"])
PY
}

report=$tmp/report.md
{
  if ((MIX)); then load="/slow once in 20 requests on each of $FAST connections"; else load="/fast on $FAST connections, /slow on $SLOW"; fi
  echo "# app-balance $(date -u +%Y-%m-%dT%H:%MZ): $SHARDS shards, single-threaded app processes, /slow holds one ${SLOW_MS} ms; $load, ${RUN_SECONDS} s, medians of $ROUNDS alternating rounds; server and app on CPU 0, load on CPU 1; $(nproc) CPUs, $(uname -r), ringshard $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo
  if ((MIX)); then
    echo "| processes | pool | req/s | p50 | p99 | errors | of which /slow req/s |"
  else
    echo "| processes | pool | /fast req/s | /fast p50 | /fast p99 | /fast errors | /slow req/s |"
  fi
  echo "|---:|---|---:|---:|---:|---:|---:|"
} > "$report"
for n in $PROCS; do
  for r in $(seq "$ROUNDS"); do
    if ((r % 2)); then order="per-shard shared"; else order="shared per-shard"; fi
    for pool in $order; do run "$n" "$pool"; done
  done
  for pool in per-shard shared; do
    col() { awk -v c="$1" '{ print $c }' "$tmp/$pool-$n" | median; }
    printf '| %s | %s | %.0f | %.2f ms | %.2f ms | %s | %.1f |\n' "$n" "$pool" "$(col 1)" \
      "$(echo "$(col 2)" | awk '{ print $1 / 1000 }')" "$(echo "$(col 3)" | awk '{ print $1 / 1000 }')" \
      "$(col 4)" "$(col 5)" >> "$report"
  done
done
cat "$report"
save_report "app-balance$( ((MIX)) && echo -mixed)" "$report"
