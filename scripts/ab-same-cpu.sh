#!/usr/bin/env bash
# ab-same-cpu.sh: compares the CPU cost per request of two servers (two ringshard builds, or one
# build with two sets of flags) by running them AT THE SAME TIME on the same CPU, each under its
# own wrk, so that whatever the host does to that CPU (other tenants, frequency, cache pollution)
# hits both alike.
#
# Why: on a shared VM the CPU cost of one server swings by up to ±10% between 5-second runs a
# minute apart, far more than most single changes are worth; two servers measured side by side in
# time differ by about ±0.5% run to run. The figures are not the benchmark's (each server gets
# about half the CPU, and the two evict each other's cache lines, which exaggerates cache
# effects): use this to decide whether a change helps, scripts/bench-engine.sh for the bars.
#
# usage: scripts/ab-same-cpu.sh "NAME|COMMAND" "NAME|COMMAND"
#   COMMAND runs the server, with {PORT} where its port goes, e.g.
#   scripts/ab-same-cpu.sh "old|/tmp/ringshard-old serve --shards 1 --listen 127.0.0.1:{PORT}" \
#                          "new|target/release/ringshard serve --shards 1 --listen 127.0.0.1:{PORT}"
#
# environment (defaults in brackets): RUNS [4] runs of DUR [10] seconds, servers started afresh
#   each run, the order swapped every run; MODE [pipe16], keepalive or close (a new connection per
#   request: `Connection: close`); CONNS [64] connections per
#   wrk, DEPTH [16] requests per pipelined write; URL_PATH [/plaintext]; SERVER_CPUS [0],
#   LOAD_CPUS [1]; OUT_DIR [<repo>/scripts/out], NO_SAVE=1 writes no file.
# Prints each run and the median ratio B/A of requests per server CPU-second (CPU ticks of each
# server's session, from /proc). Needs wrk, taskset, setsid, pgrep/pkill, ss.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=common.sh
source "$root/scripts/common.sh"
RUNS=${RUNS:-4} DUR=${DUR:-10} MODE=${MODE:-pipe16} CONNS=${CONNS:-64} DEPTH=${DEPTH:-16}
URL_PATH=${URL_PATH:-/plaintext} SERVER_CPUS=${SERVER_CPUS:-0} LOAD_CPUS=${LOAD_CPUS:-1}
OUT_DIR=${OUT_DIR:-$root/scripts/out} NO_SAVE=${NO_SAVE:-}
die() { echo "ab-same-cpu: $*" >&2; exit 1; }
(($# == 2)) || die 'give two servers: "NAME|COMMAND with {PORT}" "NAME|COMMAND with {PORT}"'
for t in wrk taskset setsid pgrep pkill ss; do command -v "$t" >/dev/null || die "missing $t (apt-get install -y wrk)"; done
case $MODE in pipe16 | keepalive | close) ;; *) die "MODE must be pipe16, keepalive or close" ;; esac
names=("${1%%|*}" "${2%%|*}") cmds=("${1#*|}" "${2#*|}")
for c in "${cmds[@]}"; do [[ $c == *'{PORT}'* ]] || die "no {PORT} in: $c"; done
lua=$root/scripts/pipeline.lua
sids=()
cleanup() { local s; for s in "${sids[@]}"; do pkill -KILL -s "$s" 2>/dev/null || true; done; }
trap cleanup EXIT
load() { # PORT SECONDS
  local args=(-t1 -c"$CONNS" -d"$2" "http://127.0.0.1:$1$URL_PATH")
  [[ $MODE == pipe16 ]] && args=(-s "$lua" "${args[@]}")
  [[ $MODE == close ]] && args=(-H "Connection: close" "${args[@]}")
  DEPTH=$DEPTH taskset -c "$LOAD_CPUS" wrk "${args[@]}"
}
# Two ports nothing listens on (a stray server sharing one would inflate that side's figures).
p0=$(pick_port 9700) p1=$(pick_port $((p0 + 1)))
ports=("$p0" "$p1")
port_of() { echo "${ports[$1]}"; }

log=$(mktemp)
report() { printf '%s\n' "$*" | tee -a "$log"; }
report "## ab-same-cpu: ${names[1]} against ${names[0]}, $(date -u '+%Y-%m-%d %H:%M UTC')"
report ""
report "- $(nproc) CPUs, $(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo); kernel $(uname -r)"
report "- both servers on CPU $SERVER_CPUS at once, one wrk -t1 each on CPU $LOAD_CPUS, $MODE, $CONNS connections, $RUNS runs of $DUR s"
report "- A = ${names[0]} (port ${ports[0]}): \`${cmds[0]}\`"
report "- B = ${names[1]} (port ${ports[1]}): \`${cmds[1]}\`"
report ""
report "| run | A req/s | A req per CPU-s | B req/s | B req per CPU-s | B/A |"
report "|---:|---:|---:|---:|---:|---:|"
ratios=()
for ((run = 1; run <= RUNS; run++)); do
  order=(0 1); ((run % 2 == 0)) && order=(1 0)
  sids=()
  for i in 0 1; do port_free "$(port_of "$i")" || die "run $run: port $(port_of "$i") is taken"; done
  for i in "${order[@]}"; do
    cmd=${cmds[i]//\{PORT\}/$(port_of "$i")}
    # shellcheck disable=SC2086 # the command is a command line
    setsid taskset -c "$SERVER_CPUS" $cmd >/dev/null 2>&1 &
    sids[i]=$!
  done
  for i in 0 1; do
    for _ in $(seq 50); do load "$(port_of "$i")" 1 >/dev/null 2>&1 && break; sleep 0.1; done
  done
  t0=($(session_ticks "${sids[0]}") $(session_ticks "${sids[1]}"))
  out0=$(mktemp) out1=$(mktemp)
  load "$(port_of "${order[0]}")" "$DUR" >"$( ((order[0] == 0)) && echo "$out0" || echo "$out1")" 2>&1 &
  w=$!
  load "$(port_of "${order[1]}")" "$DUR" >"$( ((order[1] == 0)) && echo "$out0" || echo "$out1")" 2>&1
  wait "$w"
  t1=($(session_ticks "${sids[0]}") $(session_ticks "${sids[1]}"))
  for i in 0 1; do pkill -TERM -s "${sids[i]}" 2>/dev/null || true; done
  for i in 0 1; do for _ in $(seq 50); do pgrep -s "${sids[i]}" >/dev/null || break; sleep 0.1; done; done
  # Whatever did not stop goes now: the next run's servers must not share these ports with it.
  for i in 0 1; do pkill -KILL -s "${sids[i]}" 2>/dev/null || true; done
  for i in 0 1; do for _ in $(seq 50); do pgrep -s "${sids[i]}" >/dev/null || break; sleep 0.1; done; done
  row=$(awk -v ta=$((t1[0] - t0[0])) -v tb=$((t1[1] - t0[1])) -v hz="$(getconf CLK_TCK)" -v run="$run" '
    FNR == 1 { f++ } /requests in/ { n[f] = $1 } /Requests\/sec/ { r[f] = $2 }
    END { if (!n[1] || !n[2] || ta <= 0 || tb <= 0) { print "fail"; exit }
          a = n[1] * hz / ta; b = n[2] * hz / tb
          printf "| %d | %d | %d | %d | %d | %.3f |", run, r[1], a, r[2], b, b / a }' "$out0" "$out1")
  rm -f "$out0" "$out1"
  [[ $row == fail ]] && die "run $run: a server answered nothing (is {PORT} in its command?)"
  report "$row"
  ratios+=("$(awk -F'|' '{gsub(/ /, "", $7); print $7}' <<<"$row")")
done
median=$(printf '%s\n' "${ratios[@]}" | median)
report ""
report "median B/A requests per server CPU-second: $median (${names[1]} against ${names[0]})"
save_report ab-same-cpu "$log"
rm -f "$log"
