#!/usr/bin/env bash
# bench-static.sh: ringshard and nginx serving the same files, side by side in interleaved
# rounds (scripts/sweep-conns.sh), server on CPU 0 and wrk on CPU 1.
#
# nginx is configured as a user would for static files: sendfile on, tcp_nopush, open_file_cache
# (1,000 entries, revalidated each second), etag on, access_log off. ringshard serves the same
# directory with `--static`, its defaults.
#   small: a 1 KiB file, keep-alive, at SMALL_CONNS connections (the bar: 64, and 8 and 16)
#   large: a 1 MiB file, keep-alive, at LARGE_CONNS connections (bytes per server CPU-second is
#          requests per server CPU-second times 1 MiB, so the ratio is the same)
#
# usage: scripts/bench-static.sh
# environment: SMALL_CONNS ["8 16 64"], LARGE_CONNS ["16"], ROUNDS [3], DUR [3], RINGSHARD_BIN,
#   NO_SAVE (as sweep-conns.sh); EXTRA_SERVERS: more "NAME|COMMAND" specs separated by ';'
#   ({PORT}, {ROOT}: the site's directory)
# Needs nginx and wrk (apt-get install -y nginx-light wrk).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
SMALL_CONNS=${SMALL_CONNS:-8 16 64} LARGE_CONNS=${LARGE_CONNS:-16}
RINGSHARD_BIN=${RINGSHARD_BIN:-$root/target/release/ringshard}
command -v nginx >/dev/null || { echo "bench-static: missing nginx (apt-get install -y nginx-light)" >&2; exit 1; }
[[ -x $RINGSHARD_BIN ]] || { echo "bench-static: no ringshard at $RINGSHARD_BIN (cargo build --release)" >&2; exit 1; }

tmp=$(mktemp -d /tmp/bench-static.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"
site=$tmp/site
mkdir -p "$site"
head -c 1024 /dev/urandom >"$site/1k.bin"
head -c $((1 << 20)) /dev/urandom >"$site/1m.bin"
chmod -R a+rX "$site" # nginx's worker runs as nobody
cat >"$tmp/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid /tmp/bench-static-nginx.pid;
error_log /dev/null crit;
events { worker_connections 4096; use epoll; multi_accept on; }
http {
  access_log off;
  keepalive_requests 100000000;
  sendfile on;
  tcp_nopush on;
  etag on;
  open_file_cache max=1000 inactive=20s;
  open_file_cache_valid 1s;
  default_type application/octet-stream;
  server {
    listen 127.0.0.1:8082 reuseport backlog=4096;
    root $site;
    location / { }
  }
}
CONF
servers=("ringshard|$RINGSHARD_BIN serve --shards 1 --static $site --listen 127.0.0.1:{PORT}" nginx)
IFS=';' read -ra extra <<<"${EXTRA_SERVERS:-}"
for s in "${extra[@]}"; do [[ -z $s ]] || servers+=("${s//\{ROOT\}/$site}"); done
export NGINX_CONF=$tmp/nginx.conf REF=nginx MODES=keepalive SAVE_AS=bench-static
TITLE="Static files, a 1 KiB file" URL_PATH=/1k.bin CONNS=$SMALL_CONNS "$here/sweep-conns.sh" "${servers[@]}"
TITLE="Static files, a 1 MiB file" URL_PATH=/1m.bin CONNS=$LARGE_CONNS "$here/sweep-conns.sh" "${servers[@]}"
