#!/usr/bin/env bash
# accept-spread.sh: how evenly new connections spread over the shards when they share one
# listening socket (systemd socket activation, a unix socket) against a socket per shard
# (SO_REUSEPORT), with `ringshard load --no-keepalive` (a new connection per request).
#
# The shared socket is handed over as systemd does (LISTEN_FDS=1, LISTEN_PID, descriptor 3),
# by a python3 shim that binds it and execs ringshard. Each run reads every shard's
# connections_accepted_total from /metrics and prints each shard's share of the total and the
# largest share divided by a fair one (the bar: at most 2).
#
# usage: scripts/accept-spread.sh
# environment: SHARDS [2], CONNS [64], DUR [5], ENGINES ["uring epoll"], RINGSHARD_BIN, NO_SAVE,
#   SERVER_CPUS [0-(SHARDS-1)], LOAD_CPUS [last CPU]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=common.sh
source "$here/common.sh"
SHARDS=${SHARDS:-2} CONNS=${CONNS:-64} DUR=${DUR:-5} ENGINES=${ENGINES:-uring epoll}
RINGSHARD_BIN=${RINGSHARD_BIN:-$root/target/release/ringshard}
OUT_DIR=${OUT_DIR:-$root/scripts/out}
last=$(($(nproc) - 1))
SERVER_CPUS=${SERVER_CPUS:-0-$((SHARDS - 1))} LOAD_CPUS=${LOAD_CPUS:-$last}
command -v python3 >/dev/null || { echo "accept-spread: needs python3" >&2; exit 1; }
[[ -x $RINGSHARD_BIN ]] || { echo "accept-spread: no ringshard at $RINGSHARD_BIN (cargo build --release)" >&2; exit 1; }
tmp=$(mktemp -d /tmp/accept-spread.XXXXXX)
sids=()
trap 'stop_sessions; rm -rf "$tmp"' EXIT

start() { # mode engine port -> starts the server in its own session
  local mode=$1 engine=$2 port=$3
  if [[ $mode == shared ]]; then
    setsid taskset -c "$SERVER_CPUS" python3 - "$RINGSHARD_BIN" "$port" "$engine" "$SHARDS" >"$tmp/server.log" 2>&1 <<'PY' &
import os, socket, sys
binary, port, engine, shards = sys.argv[1:5]
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(port)))
s.listen(4096)
os.dup2(s.fileno(), 3)
os.set_inheritable(3, True)
os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES="http")
os.execv(binary, [binary, "serve", "--shards", shards, "--engine", engine])
PY
  else
    setsid taskset -c "$SERVER_CPUS" "$RINGSHARD_BIN" serve --shards "$SHARDS" --engine "$engine" \
      --listen "127.0.0.1:$port" >"$tmp/server.log" 2>&1 &
  fi
  sids=("$!")
  for _ in $(seq 50); do ! port_free "$port" && return 0; sleep 0.1; done
  cat "$tmp/server.log" >&2
  echo "accept-spread: the server did not listen" >&2
  exit 1
}

report=$tmp/report.md
{
  echo "## Connections per shard, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "- machine: $(nproc) CPUs, $(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo); kernel $(uname -r)"
  echo "- $SHARDS shards on CPUs $SERVER_CPUS; \`ringshard load -t1 -c$CONNS --no-keepalive -d${DUR}s\` on CPU $LOAD_CPUS"
  echo
  echo "| engine | listening socket | connections | per shard | largest share ÷ fair share |"
  echo "|---|---|---:|---|---:|"
} >"$report"
port=$(pick_port 9400)
for engine in $ENGINES; do
  for mode in reuseport shared; do
    start "$mode" "$engine" "$port"
    taskset -c "$LOAD_CPUS" "$RINGSHARD_BIN" load -t1 -c"$CONNS" --no-keepalive -d"${DUR}s" \
      "http://127.0.0.1:$port/plaintext" >"$tmp/load.txt" 2>&1 || true
    counts=$(curl -s "http://127.0.0.1:$port/metrics" |
      awk -F'[{}"= ]+' '/^ringshard_connections_accepted_total\{/{print $3, $NF}' | sort -n | awk '{print $2}')
    stop_sessions
    sids=()
    echo "$counts" | awk -v e="$engine" -v m="$mode" -v n="$SHARDS" '
      { c[NR] = $1; t += $1; if ($1 > mx) mx = $1 }
      END {
        s = ""; for (i = 1; i <= NR; i++) s = s (i > 1 ? ", " : "") c[i] " (" (t ? int(100 * c[i] / t + 0.5) : 0) "%)"
        label = (m == "shared") ? "one shared (socket activation)" : "one per shard (SO_REUSEPORT)"
        printf "| %s | %s | %d | %s | %.2f |\n", e, label, t, s, (t ? mx / (t / n) : 0)
      }' | tee -a "$report"
    sleep 0.5
  done
done
save_report accept-spread "$report"
