#!/usr/bin/env bash
# app-chaos.sh: an app pool of PROCS processes (tests/proxy_app.py, python3's standard library,
# logging each request's X-Test-Id) behind ringshard, CLIENTS keep-alive clients for RUN_SECONDS s
# (half GET, half POST, each with a unique id; scripts/app-chaos.py), while one app process is
# killed with SIGKILL every KILL_EVERY s. Then the same behind nginx, with the PROCS processes
# each kept alive by a shell loop (`while true; do python3 ...; done`) and nginx's upstream
# block over their ports. For each: requests sent, their statuses, the failed share (5xx and
# connection errors), ids executed twice (POST, then GET), processes killed, processes running
# at the end.
#
# usage: scripts/app-chaos.sh        environment: PROCS [4] CLIENTS [16] RUN_SECONDS [20]
#   KILL_EVERY [2] SHARDS [2] POOL [auto] RINGSHARD_BIN; NO_NGINX=1 leaves nginx out; SAVE_AS / NO_SAVE as
#   the other scripts (default scripts/out/app-chaos-DATE.md)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
PROCS=${PROCS:-4} CLIENTS=${CLIENTS:-16} RUN_SECONDS=${RUN_SECONDS:-20} KILL_EVERY=${KILL_EVERY:-2} SHARDS=${SHARDS:-2} POOL=${POOL:-auto}
RINGSHARD_BIN=${RINGSHARD_BIN:-$root/target/release/ringshard}
app=$root/tests/proxy_app.py
tmp=$(mktemp -d /tmp/app-chaos.XXXXXX)
chmod 755 "$tmp"
pids_to_stop=()
cleanup() {
  for p in "${pids_to_stop[@]}"; do kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null || true; done
  sleep 0.5
  pkill -f "$tmp/" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

# The app processes of a run: python3 running proxy_app.py with this run's log.
app_pids() { pgrep -f "python3 $app .*--log $1\$" || true; }

killer() { # killer LOG: SIGKILL one app process every KILL_EVERY s; counts them in $tmp/killed.LOG
  local log=$1 n=0
  while sleep "$KILL_EVERY"; do
    local victim
    victim=$(app_pids "$log" | shuf -n 1)
    [[ -n $victim ]] && kill -KILL "$victim" 2>/dev/null && n=$((n + 1)) && echo $n > "$log.killed"
  done
}

run() { # run NAME PORT LOG
  local name=$1 port=$2 log=$3
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/echo" && break; sleep 0.1; done
  : > "$log.warm"
  killer "$log" > /dev/null 2>&1 & local k=$!
  local out
  out=$(python3 "$here/app-chaos.py" --port "$port" --clients "$CLIENTS" --seconds "$RUN_SECONDS" --log "$log")
  kill "$k" 2>/dev/null; wait "$k" 2>/dev/null || true
  # Processes killed near the end are being replaced: give them up to 5 s.
  local running=0
  for _ in $(seq 50); do
    running=$(app_pids "$log" | wc -l)
    ((running >= PROCS)) && break
    sleep 0.1
  done
  echo "| $name | $out | killed $(cat "$log.killed" 2>/dev/null || echo 0) | running at the end $running |"
}

report=$({
  echo "# app-chaos $(date -u +%Y-%m-%dT%H:%MZ): $PROCS processes, $CLIENTS keep-alive clients, ${RUN_SECONDS} s, one process SIGKILLed every ${KILL_EVERY} s; $(nproc) CPUs, $(uname -r), ringshard $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo
  # ringshard: an app pool
  log=$tmp/ringshard.log
  cat > "$tmp/app.toml" <<CONF
[server]
listen = "127.0.0.1:18730"
shards = $SHARDS
[app.web]
command = 'exec python3 $app --unix "\$RINGSHARD_SOCKET" --log $log'
processes = $PROCS
pool = "$POOL"
[[route]]
prefix = "/"
app = "web"
CONF
  setsid "$RINGSHARD_BIN" serve --config "$tmp/app.toml" > "$tmp/ringshard.stderr" 2>&1 < /dev/null &
  pids_to_stop+=($!)
  run "ringshard $SHARDS shards, app pool ($POOL)" 18730 "$log"
  kill -TERM -- "-${pids_to_stop[-1]}" 2>/dev/null || true
  sleep 1
  if [[ -z ${NO_NGINX:-} ]] && command -v nginx > /dev/null; then
    log=$tmp/nginx.log
    servers=""
    for i in $(seq "$PROCS"); do
      port=$((18740 + i))
      servers+="server 127.0.0.1:$port; "
      setsid bash -c "while true; do python3 $app --port $port --log $log; done" < /dev/null > /dev/null 2>&1 &
      pids_to_stop+=($!)
    done
    cat > "$tmp/nginx.conf" <<CONF
worker_processes $SHARDS;
daemon off;
pid $tmp/nginx.pid;
error_log $tmp/nginx-error.log crit;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $tmp/body; proxy_temp_path $tmp/proxy; fastcgi_temp_path $tmp/f; uwsgi_temp_path $tmp/u; scgi_temp_path $tmp/s;
  upstream u { $servers keepalive 32; }
  server { listen 127.0.0.1:18739; location / { proxy_pass http://u; proxy_http_version 1.1; proxy_set_header Connection ""; } }
}
CONF
    setsid nginx -p "$tmp" -c "$tmp/nginx.conf" < /dev/null > /dev/null 2>&1 &
    pids_to_stop+=($!)
    run "nginx $SHARDS workers, shell loops" 18739 "$log"
  fi
})
echo "$report"
out=${SAVE_AS:-$root/scripts/out/app-chaos-$(date -u +%Y-%m-%dT%H%MZ).md}
base=${out%.md} n=1
while [[ -z ${SAVE_AS:-} && -e $out ]]; do n=$((n + 1)); out=$base-$n.md; done
[[ -n ${NO_SAVE:-} ]] || { mkdir -p "$(dirname "$out")"; echo "$report" > "$out"; echo "saved to $out" >&2; }
