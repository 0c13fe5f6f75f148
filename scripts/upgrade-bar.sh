#!/usr/bin/env bash
# upgrade-bar.sh: three binary upgrades under load, nothing lost. The server (on CPU 0) serves a
# static file under /static/ and proxies everything else to an app pool of PROCS processes
# (tests/proxy_app.py, which logs every request it executes). On CPU 1, `ringshard load` asks for
# the static file with 64 connections: KEEPALIVE_SECONDS s keep-alive, then CLOSE_SECONDS s with
# a new connection per request (--no-keepalive); beside it, scripts/app-chaos.py sends the app
# GET and POST requests each with a unique id over 4 keep-alive connections. Three upgrades are
# sent during each run, evenly spaced.
#   ringshard: SIGUSR2 (its new process takes over the listening sockets and starts its own app
#     processes; the old one drains and stops its own).
#   nginx (the comparison): USR2 (a new master on the same sockets), WINCH (the old workers stop
#     gracefully), QUIT (the old master exits); its app processes are kept alive by shell loops.
# Printed per run: static requests sent, answered, failed, refused (connection refused); the app
# requests sent, answered, failed, executed twice; the server pids that served (the first and its
# successors: 4 when every upgrade took).
#
# usage: scripts/upgrade-bar.sh    environment: KEEPALIVE_SECONDS [20] CLOSE_SECONDS [10]
#   PROCS [4] RINGSHARD_BIN; NO_NGINX=1 leaves nginx out; NO_SAVE=1 (default: saved to
#   scripts/out/upgrade-bar-DATE.md)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
source "$here/common.sh"
KEEPALIVE_SECONDS=${KEEPALIVE_SECONDS:-20} CLOSE_SECONDS=${CLOSE_SECONDS:-10} PROCS=${PROCS:-4}
RINGSHARD_BIN=${RINGSHARD_BIN:-$root/target/release/ringshard}
OUT_DIR=${OUT_DIR:-$here/out}
app=$root/tests/proxy_app.py
tmp=$(mktemp -d /tmp/upgrade-bar.XXXXXX)
chmod 755 "$tmp"
mkdir -p "$tmp/site/static"
head -c 1024 /dev/urandom | base64 -w 100 > "$tmp/site/static/page.txt"
sids=()
cleanup() {
  stop_sessions
  [[ -f $tmp/nginx.pid ]] && kill -TERM "$(cat "$tmp/nginx.pid")" 2>/dev/null
  pkill -f "$tmp/" 2>/dev/null || true
  sleep 0.3
  rm -rf "$tmp"
}
trap cleanup EXIT

# upgrades SECONDS COMMAND...: runs COMMAND three times, at a quarter, half and three quarters
# of SECONDS.
upgrades() {
  local seconds=$1 step
  shift
  step=$(awk -v s="$seconds" 'BEGIN { print s / 4 }')
  for _ in 1 2 3; do sleep "$step"; "$@"; done
}

# Records every pid the pid file $1 names, into $1.seen, until killed.
watch_pids() {
  : > "$1.seen"
  local p
  while sleep 0.05; do
    p=$(cat "$1" 2>/dev/null) || continue
    [[ -n $p ]] && ! grep -qx "$p" "$1.seen" && echo "$p" >> "$1.seen"
  done
}

# One run: load and app clients for SECONDS s with three upgrades (UPGRADE is a function name).
# Prints a table row.
one_run() { # one_run NAME PORT SECONDS LOAD_FLAGS UPGRADE PIDFILE APPLOG
  local name=$1 port=$2 seconds=$3 flags=$4 upgrade=$5 pidfile=$6 applog=$7
  : > "$applog" # the ids of each run start again at c0-1
  watch_pids "$pidfile" & local w=$!
  taskset -c 1 python3 "$here/app-chaos.py" --port "$port" --clients 4 --seconds "$seconds" --log "$applog" > "$tmp/app.json" &
  local a=$!
  taskset -c 1 "$RINGSHARD_BIN" load "http://127.0.0.1:$port/static/page.txt" -c 64 -t 1 -d "${seconds}s" $flags --json > "$tmp/load.json" &
  local l=$!
  upgrades "$seconds" "$upgrade"
  wait "$l" "$a"
  sleep 0.5
  kill "$w" 2>/dev/null; wait "$w" 2>/dev/null || true
  python3 - "$tmp/load.json" "$tmp/app.json" "$pidfile.seen" "$name" <<'PY'
import json, sys
load = json.load(open(sys.argv[1]))
app = json.load(open(sys.argv[2]))
pids = [l.strip() for l in open(sys.argv[3]) if l.strip()]
ok = sum(c for s, c in load["status"].items() if s.startswith("2"))
errors = load["errors"]
failed = errors["total"] - errors["connect"] + (load["requests"] - ok)
app_ok = sum(c for s, c in app["statuses"].items() if s.startswith("2"))
print("| %s | %d | %d | %d | %d | %d / %d / %d / %d | %d (%s) |" % (
    sys.argv[4], load["sent"], ok, failed, errors["connect"],
    app["sent"], app_ok, app["failed"], app["posts_executed_twice"] + app["gets_executed_twice"],
    len(pids), " ".join(pids)))
PY
}

ringshard_upgrade() { kill -USR2 "$(cat "$tmp/rs.pid")"; }

nginx_upgrade() {
  local old new
  old=$(cat "$tmp/nginx.pid")
  kill -USR2 "$old"
  for _ in $(seq 100); do [[ -f $tmp/nginx.pid.oldbin && -f $tmp/nginx.pid ]] && break; sleep 0.05; done
  new=$(cat "$tmp/nginx.pid")
  [[ $new != "$old" ]] || return 0
  sleep 0.2 # the new master's workers start
  kill -WINCH "$old"
  kill -QUIT "$old"
}

report=$tmp/report.md
{
  echo "# upgrade-bar $(date -u +%Y-%m-%dT%H:%MZ): three upgrades during each run; static file (1.4 KB) on 64 connections by \`ringshard load\` and an app pool of $PROCS processes (4 keep-alive clients, GET and POST with unique ids); server on CPU 0, clients on CPU 1; $(nproc) CPUs, $(uname -r), ringshard $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo
  echo "| run | static sent | answered | failed | refused | app sent / answered / failed / executed twice | server pids |"
  echo "|---|---|---|---|---|---|---|"
} > "$report"

port=$(pick_port 18770)
applog=$tmp/rs-app.log
: > "$applog"
cat > "$tmp/rs.toml" <<CONF
[server]
listen = "127.0.0.1:$port"
shards = 1
pid_file = "$tmp/rs.pid"
[app.web]
command = 'exec python3 $app --unix "\$RINGSHARD_SOCKET" --log $applog'
processes = $PROCS
[[route]]
prefix = "/static/"
static = "$tmp/site/static"
[[route]]
prefix = "/"
app = "web"
CONF
setsid taskset -c 0 "$RINGSHARD_BIN" serve --config "$tmp/rs.toml" > "$tmp/rs.stderr" 2>&1 < /dev/null &
sids+=($!)
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/echo" && break; sleep 0.1; done
one_run "ringshard, keep-alive ${KEEPALIVE_SECONDS} s" "$port" "$KEEPALIVE_SECONDS" "" ringshard_upgrade "$tmp/rs.pid" "$applog" >> "$report"
sleep 2
one_run "ringshard, new connection per request ${CLOSE_SECONDS} s" "$port" "$CLOSE_SECONDS" --no-keepalive ringshard_upgrade "$tmp/rs.pid" "$applog" >> "$report"
stop_sessions
sids=()
grep -E "upgrade|SIGUSR2" "$tmp/rs.stderr" | sed 's/^/    /' > "$tmp/rs-upgrades.txt" || true

if [[ -z ${NO_NGINX:-} ]] && command -v nginx > /dev/null; then
  port=$(pick_port 18790)
  applog=$tmp/nginx-app.log
  : > "$applog"
  servers=""
  for i in $(seq "$PROCS"); do
    p=$(pick_port $((18800 + i * 3)))
    servers+="server 127.0.0.1:$p; "
    setsid taskset -c 0 bash -c "while true; do python3 $app --port $p --log $applog; done" < /dev/null > /dev/null 2>&1 &
    sids+=($!)
  done
  cat > "$tmp/nginx.conf" <<CONF
worker_processes 1;
worker_cpu_affinity 1;
pid $tmp/nginx.pid;
error_log $tmp/nginx-error.log error;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $tmp/body; proxy_temp_path $tmp/proxy; fastcgi_temp_path $tmp/f; uwsgi_temp_path $tmp/u; scgi_temp_path $tmp/s;
  upstream u { $servers keepalive 32; }
  server {
    listen 127.0.0.1:$port reuseport;
    location /static/ { root $tmp/site; }
    location / { proxy_pass http://u; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
CONF
  # Daemonized: nginx ignores USR2 while its parent is the process that started it.
  taskset -c 0 "$(command -v nginx)" -p "$tmp" -c "$tmp/nginx.conf"
  for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/echo" && break; sleep 0.1; done
  one_run "nginx, keep-alive ${KEEPALIVE_SECONDS} s" "$port" "$KEEPALIVE_SECONDS" "" nginx_upgrade "$tmp/nginx.pid" "$applog" >> "$report"
  sleep 2
  one_run "nginx, new connection per request ${CLOSE_SECONDS} s" "$port" "$CLOSE_SECONDS" --no-keepalive nginx_upgrade "$tmp/nginx.pid" "$applog" >> "$report"
  kill -QUIT "$(cat "$tmp/nginx.pid")" 2>/dev/null || true
fi
{
  echo
  echo "ringshard's log of the upgrades:"
  echo
  cat "$tmp/rs-upgrades.txt"
} >> "$report"
cat "$report"
save_report upgrade-bar "$report"
