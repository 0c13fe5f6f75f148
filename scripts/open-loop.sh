#!/usr/bin/env bash
# open-loop.sh: latency at a fixed request rate (open loop), servers side by side in one run.
#
# Why: wrk keeps a fixed number of requests in flight and sends the next only when an answer
# arrives (a closed loop), so at one wrk thread every server that keeps up shows about the same
# p99 (one trip round the loop; README, "Performance"). Clients that do not wait for each other
# (an open loop) show what a server adds to each request's time: here `ringshard load -R RATE`
# sends on a fixed schedule and counts latency from each request's intended send time, so a
# server that holds requests to batch them pays for it in these figures.
#
# usage: scripts/open-loop.sh ["NAME|COMMAND" ...]
#   COMMAND runs a server, with {PORT} where its port goes. Default: ringshard as `serve` starts
#   it, ringshard with --wait-usec 0 (no batched waits), and may_minihttp from the anchors.
#
# environment (defaults in brackets): RATES ["20000 60000 100000"] requests per second;
#   ROUNDS [3] interleaved rounds (every server at every rate once per round, rotated order);
#   DUR [5] seconds a run; CONNS [64]; URL_PATH [/plaintext]; SERVER_CPUS [0], LOAD_CPUS [1];
#   RINGSHARD_BIN [<repo>/target/release/ringshard] (also the load generator);
#   ANCHORS_TARGET [<repo>/../anchors-target] (where scripts/bench-engine.sh builds the anchors);
#   OUT_DIR [<repo>/scripts/out], NO_SAVE=1 writes no file.
# Prints, per rate and server, the median over rounds of p50, p99 and p99.9 latency, of the rate
# reached, and of requests per server CPU-second (CPU ticks of the server's session from /proc);
# for ringshard, how often its waits started to batch in a run (wait_batching_starts_total from
# its /metrics; the first run at a rate starts from the previous rate's state).
# Needs taskset, setsid, pgrep/pkill, ss; curl for the batching column.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=common.sh
source "$root/scripts/common.sh"
RATES=${RATES:-20000 60000 100000} ROUNDS=${ROUNDS:-3} DUR=${DUR:-5} CONNS=${CONNS:-64}
URL_PATH=${URL_PATH:-/plaintext} SERVER_CPUS=${SERVER_CPUS:-0} LOAD_CPUS=${LOAD_CPUS:-1}
RINGSHARD_BIN=${RINGSHARD_BIN:-$root/target/release/ringshard}
ANCHORS_TARGET=${ANCHORS_TARGET:-$root/../anchors-target}
OUT_DIR=${OUT_DIR:-$root/scripts/out} NO_SAVE=${NO_SAVE:-}
die() { echo "open-loop: $*" >&2; exit 1; }
for t in taskset setsid pgrep pkill ss; do command -v "$t" >/dev/null || die "missing $t"; done
[[ -x $RINGSHARD_BIN ]] || die "no ringshard at $RINGSHARD_BIN (cargo build --release)"

specs=("$@")
if ((${#specs[@]} == 0)); then
  specs=("ringshard|$RINGSHARD_BIN serve --shards 1 --listen 127.0.0.1:{PORT}"
    "ringshard --wait-usec 0|$RINGSHARD_BIN serve --shards 1 --listen 127.0.0.1:{PORT} --wait-usec 0")
  may=$ANCHORS_TARGET/release/may_hello
  if [[ -x $may ]]; then specs+=("may_minihttp|$may {PORT} 1")
  else echo "open-loop: no may_minihttp at $may (scripts/bench-engine.sh may builds it); measuring without it" >&2; fi
fi
n=${#specs[@]}
names=() cmds=() ports=() sids=()
for s in "${specs[@]}"; do
  [[ $s == *'|'* && $s == *'{PORT}'* ]] || die "not NAME|COMMAND with {PORT}: $s"
  names+=("${s%%|*}") cmds+=("${s#*|}")
done
for r in $RATES; do [[ $r =~ ^[1-9][0-9]*$ ]] || die "RATES must be whole numbers of requests per second, not '$r'"; done

tmp=$(mktemp -d /tmp/open-loop.XXXXXX)
cleanup() {
  stop_sessions
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Every server up at once, each in its own session on the server CPUs, on a port nothing else has.
port=9800
for ((i = 0; i < n; i++)); do
  port=$(pick_port "$port")
  ports+=("$port")
  # shellcheck disable=SC2086 # the command is a command line
  setsid taskset -c "$SERVER_CPUS" ${cmds[i]//\{PORT\}/$port} </dev/null >"$tmp/server-$i.log" 2>&1 &
  sids+=("$!")
  port=$((port + 1))
done
load() { # PORT RATE DURATION -> the loader's JSON line
  taskset -c "$LOAD_CPUS" "$RINGSHARD_BIN" load -t1 -c"$CONNS" -d"$3" -R "$2" --json "http://127.0.0.1:$1$URL_PATH"
}
for ((i = 0; i < n; i++)); do
  ok=''
  for _ in $(seq 50); do
    if load "${ports[i]}" 1000 200ms 2>/dev/null | grep -q '"200":'; then ok=1; break; fi
    sleep 0.1
  done
  [[ -n $ok ]] || { sed 's/^/  | /' "$tmp/server-$i.log" | tail -n 5 >&2; die "${names[i]} does not answer 200 on port ${ports[i]}"; }
done

# wait_batching_starts_total of the server on port $1 ('' if it has none, e.g. not ringshard)
starts() {
  command -v curl >/dev/null || return 0
  curl -s --max-time 2 "http://127.0.0.1:$1/metrics" 2>/dev/null |
    awk '/^ringshard_wait_batching_starts_total/ { s += $2; n++ } END { if (n) print s }'
}
raw=$tmp/raw
hz=$(getconf CLK_TCK)
for ((round = 1; round <= ROUNDS; round++)); do
  for rate in $RATES; do
    for ((k = 0; k < n; k++)); do
      i=$(((k + round) % n))
      s0=$(starts "${ports[i]}")
      a=$(session_ticks "${sids[i]}")
      out=$(load "${ports[i]}" "$rate" "${DUR}s") || die "the loader failed against ${names[i]} at $rate/s"
      b=$(session_ticks "${sids[i]}")
      s1=$(starts "${ports[i]}")
      st=-; [[ -n $s0 && -n $s1 ]] && st=$((s1 - s0))
      # JSON fields by name: rate reached, completed requests, latency percentiles, errors.
      row=$(awk -v RS=',' -v FS=':' -v t=$((b - a)) -v hz="$hz" '
        { gsub(/[{}"]/, ""); k = $(NF - 1); v = $NF }
        k == "rate" { rate = v } k == "requests" { req = v } k == "p50" { p50 = v } k == "p99" { p99 = v }
        k == "p99_9" { p999 = v } k == "total" { err = v }
        END { printf "%.0f %d %d %d %.0f %d\n", rate, p50, p99, p999, (t > 0 ? req * hz / t : 0), err }' <<<"$out")
      echo "$i $rate $row $st" >>"$raw"
      echo "round $round: ${names[i]} at $rate/s: $row $st (rate p50 p99 p99.9 us, req per CPU-s, errors, batching starts)" >&2
    done
  done
done

log=$tmp/report.md
{
  echo "## open-loop latency, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "- $(nproc) CPUs, $(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo); kernel $(uname -r); load average $(cut -d' ' -f1-3 /proc/loadavg) at end"
  echo "- servers on CPU $SERVER_CPUS, all up at once; \`ringshard load -t1 -c$CONNS -R RATE\` on CPU $LOAD_CPUS (latency from each request's intended send time); median of $ROUNDS interleaved rounds × $DUR s"
  for ((i = 0; i < n; i++)); do echo "- ${names[i]}: \`${cmds[i]//\{PORT\}/${ports[i]}}\`"; done
  echo
  echo "| rate (req/s) | server | reached | p50 | p99 | p99.9 | req per server CPU-s | errors | batching starts |"
  echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|"
  for rate in $RATES; do
    for ((i = 0; i < n; i++)); do
      col() { awk -v i="$i" -v r="$rate" -v c="$1" '$1 == i && $2 == r { print $c }' "$raw" | median; }
      printf '| %s | %s | %.0f | %.3f ms | %.3f ms | %.3f ms | %.0f | %s | %s |\n' "$rate" "${names[i]}" "$(col 3)" \
        "$(awk -v x="$(col 4)" 'BEGIN { print x / 1000 }')" "$(awk -v x="$(col 5)" 'BEGIN { print x / 1000 }')" \
        "$(awk -v x="$(col 6)" 'BEGIN { print x / 1000 }')" "$(col 7)" \
        "$(awk -v i="$i" -v r="$rate" '$1 == i && $2 == r { e += $8 } END { print e + 0 }' "$raw")" \
        "$(awk -v i="$i" -v r="$rate" '$1 == i && $2 == r { printf "%s%s", (n++ ? " " : ""), $9 }' "$raw")"
    done
  done
} >"$log"
cat "$log"
save_report open-loop "$log"
