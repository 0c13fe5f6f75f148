#!/usr/bin/env bash
# cpu-paths.sh: where a server's CPU time per request goes, by path through the kernel, for
# ringshard and the reference servers of ../shared/anchors, under the same wrk load.
#
# Each server runs alone on SERVER_CPUS (one CPU) under wrk -t1 on LOAD_CPUS; `perf record -g`
# samples that CPU for DUR seconds, and every sample of the server's threads is put in one class
# by its call chain: the loopback delivery of the server's responses into the client's socket
# (softirq: every server pays it on its own CPU, and /proc counts it as the server's time), the
# send path (tcp_sendmsg and below), the receive path (tcp_recvmsg), io_uring's own work, epoll,
# other syscall work, scheduling, and user space. Prints nanoseconds of server CPU per request
# for each class (samples × sampling period ÷ requests).
#
# usage: scripts/cpu-paths.sh [SERVER ...]    SERVER: ringshard may epoll hyper monoio (default: ringshard may)
# environment: MODE [pipe16] or keepalive; DUR [4]; CONNS [64]; DEPTH [16]; FREQ [4000] samples/s;
#   SERVER_CPUS [0]; LOAD_CPUS [1]; RINGSHARD_BIN [<repo>/target/release/ringshard]; RINGSHARD_ARGS [];
#   ANCHORS_TARGET [<repo>/../anchors-target] (built by scripts/bench-engine.sh);
#   OUT_DIR [<repo>/scripts/out], NO_SAVE=1 writes no file (else the table goes to cpu-paths-<UTC date>.md too)
# Needs perf (apt-get install -y linux-perf), wrk, python3; run as root (or with perf_event_paranoid <= 0).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=common.sh
source "$root/scripts/common.sh"
MODE=${MODE:-pipe16} DUR=${DUR:-4} CONNS=${CONNS:-64} DEPTH=${DEPTH:-16} FREQ=${FREQ:-4000}
SERVER_CPUS=${SERVER_CPUS:-0} LOAD_CPUS=${LOAD_CPUS:-1}
RINGSHARD_BIN=${RINGSHARD_BIN:-$root/target/release/ringshard} RINGSHARD_ARGS=${RINGSHARD_ARGS:-}
ANCHORS_TARGET=${ANCHORS_TARGET:-$root/../anchors-target}
OUT_DIR=${OUT_DIR:-$root/scripts/out} NO_SAVE=${NO_SAVE:-}
die() { echo "cpu-paths: $*" >&2; exit 1; }
for t in perf wrk python3 taskset setsid pgrep ss; do command -v "$t" >/dev/null || die "missing $t"; done
[[ $SERVER_CPUS =~ ^[0-9]+$ ]] || die "SERVER_CPUS must be one CPU"
servers=("$@"); ((${#servers[@]})) || servers=(ringshard may)
port=$(pick_port 9650) # nothing listens on it (a stray server sharing it would skew the figures)
command_of() {
  case $1 in
    ringshard) echo "$RINGSHARD_BIN serve --shards 1 --listen 127.0.0.1:$port $RINGSHARD_ARGS" ;;
    epoll) echo "$ANCHORS_TARGET/limit_epoll $port" ;;
    may | hyper | monoio) echo "$ANCHORS_TARGET/release/${1}_hello $port" ;;
    *) die "unknown server $1" ;;
  esac
}
tmp=$(mktemp -d /tmp/cpu-paths.XXXXXX)
sid=
cleanup() { [[ -n $sid ]] && pkill -KILL -s "$sid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
cat >"$tmp/classify.py" <<'EOF'
import sys
path, comm_prefix, requests, freq = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
classes = ["loopback delivery (softirq)", "send path", "receive path", "io_uring", "epoll",
           "other syscall work", "scheduling", "user space"]
count = dict.fromkeys(classes, 0)
def classify(frames):
    chain = " ".join(frames)
    if "handle_softirqs" in chain or "net_rx_action" in chain: return classes[0]
    if not any(k in f for f in frames for k in ("entry_SYSCALL", "do_syscall", "asm_", "irq")): return classes[7]
    if "tcp_sendmsg" in chain: return classes[1]
    if "tcp_recvmsg" in chain or "sock_recvmsg" in chain: return classes[2]
    if "schedule" in chain or "finish_task_switch" in chain: return classes[6]
    if "io_uring" in chain or " io_" in " " + chain: return classes[3]
    if "epoll" in chain or "ep_poll" in chain: return classes[4]
    return classes[5]
comm, frames = None, []
def flush():
    if comm is not None and comm.startswith(comm_prefix): count[classify(frames)] += 1
for line in open(path, errors="replace"):
    if not line.strip():
        flush(); comm, frames = None, []
    elif not line[0].isspace():
        flush(); comm, frames = line.split()[0], []
    else:
        parts = line.split(None, 1)
        frames.append(parts[1] if len(parts) > 1 else "?")
flush()
total = sum(count.values())
ns = lambda n: n * 1e9 / freq / requests
print("%d" % round(ns(total)), end="")
for c in classes: print(" | %d (%d%%)" % (round(ns(count[c])), round(100 * count[c] / total) if total else 0), end="")
print()
EOF
if [[ -z $NO_SAVE ]]; then
  mkdir -p "$OUT_DIR"
  exec > >(tee "$OUT_DIR/cpu-paths-$(date -u +%Y-%m-%dT%H%MZ).md")
fi
echo "## cpu-paths: server CPU per request by kernel path, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo
echo "- $(nproc) CPUs, $(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo); kernel $(uname -r)"
echo "- server alone on CPU $SERVER_CPUS, wrk -t1 -c$CONNS on CPU $LOAD_CPUS, $MODE, perf record -g -F $FREQ for $DUR s"
echo
echo "| server | req/s | ns per request | loopback delivery (softirq) | send path | receive path | io_uring | epoll | other syscall work | scheduling | user space |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for s in "${servers[@]}"; do
  cmd=$(command_of "$s")
  [[ -x ${cmd%% *} ]] || die "no binary for $s: ${cmd%% *}"
  port_free "$port" || die "port $port is taken before $s starts"
  # shellcheck disable=SC2086 # a command line
  setsid taskset -c "$SERVER_CPUS" $cmd >/dev/null 2>&1 &
  sid=$!
  for _ in $(seq 50); do taskset -c "$LOAD_CPUS" wrk -t1 -c"$CONNS" -d1 "http://127.0.0.1:$port/plaintext" >/dev/null 2>&1 && break; sleep 0.1; done
  extra=(); [[ $MODE == pipe16 ]] && extra=(-s "$root/scripts/pipeline.lua")
  DEPTH=$DEPTH taskset -c "$LOAD_CPUS" wrk -t1 -c"$CONNS" -d$((DUR + 2)) "${extra[@]+"${extra[@]}"}" \
    "http://127.0.0.1:$port/plaintext" >"$tmp/wrk.out" 2>&1 &
  w=$!
  sleep 1
  perf record -q -g -F "$FREQ" -C "$SERVER_CPUS" -o "$tmp/perf.data" -- sleep "$DUR" >/dev/null 2>&1
  wait "$w"
  pkill -TERM -s "$sid" 2>/dev/null || true
  for _ in $(seq 50); do pgrep -s "$sid" >/dev/null || break; sleep 0.1; done
  pkill -KILL -s "$sid" 2>/dev/null || true # the next server must not share the port with this one
  for _ in $(seq 50); do pgrep -s "$sid" >/dev/null || break; sleep 0.1; done
  sid=
  rps=$(awk '/Requests\/sec/{print int($2)}' "$tmp/wrk.out")
  [[ -n $rps ]] || die "$s: wrk measured nothing"
  # Requests in the sampled window: the run's rate times the window.
  comm=$(basename "${cmd%% *}"); [[ $s == ringshard ]] && comm=ringshard
  perf script -i "$tmp/perf.data" -F comm,ip,sym 2>/dev/null >"$tmp/samples.txt"
  echo "| $s | $rps | $(python3 "$tmp/classify.py" "$tmp/samples.txt" "${comm:0:15}" $((rps * DUR)) "$FREQ")|"
done
