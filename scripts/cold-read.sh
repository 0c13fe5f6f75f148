#!/usr/bin/env bash
# cold-read.sh: what a read from a cold disk does to everyone else on the same worker.
#
# One large file is dropped from the page cache (posix_fadvise POSIX_FADV_DONTNEED) and fetched
# once with curl while wrk fetches a small file from the same server over 16 keep-alive
# connections; the small files' latency (wrk's p50, p99, max) is reported with and without the
# cold read, ringshard (`--static`, io_uring: the file's reads go through the ring) against
# nginx (one worker, sendfile on, no thread pool, as nginx ships). Server on CPU 0, wrk and
# curl on CPU 1; interleaved rounds.
#
# usage: scripts/cold-read.sh
# environment: SIZE_MB [256] the large file, ROUNDS [3], DUR [6] s of wrk per run (the cold
#   read starts 1 s in), RINGSHARD_BIN, NO_SAVE, OUT_DIR
# Needs nginx, wrk, curl, python3 (apt-get install -y nginx-light wrk curl).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=common.sh
source "$here/common.sh"
SIZE_MB=${SIZE_MB:-256} ROUNDS=${ROUNDS:-3} DUR=${DUR:-6}
RINGSHARD_BIN=${RINGSHARD_BIN:-$root/target/release/ringshard}
OUT_DIR=${OUT_DIR:-$root/scripts/out}
for t in nginx wrk curl python3 taskset setsid; do
  command -v "$t" >/dev/null || { echo "cold-read: missing $t (apt-get install -y nginx-light wrk curl)" >&2; exit 1; }
done
[[ -x $RINGSHARD_BIN ]] || { echo "cold-read: no ringshard at $RINGSHARD_BIN (cargo build --release)" >&2; exit 1; }

# The site lives beside the repository (a real disk), not in /tmp (often memory).
tmp=$(mktemp -d "$root/target/cold-read.XXXXXX")
chmod 755 "$tmp"
sids=()
trap 'stop_sessions; rm -rf "$tmp"' EXIT
site=$tmp/site
mkdir -p "$site"
head -c 1024 /dev/urandom >"$site/small.bin"
dd if=/dev/urandom of="$site/large.bin" bs=1M count="$SIZE_MB" status=none
chmod -R a+rX "$site"
cat >"$tmp/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $tmp/nginx.pid;
error_log /dev/null crit;
events { worker_connections 4096; use epoll; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  open_file_cache max=1000 inactive=20s;
  client_body_temp_path $tmp/body; proxy_temp_path $tmp/proxy; fastcgi_temp_path $tmp/fcgi;
  uwsgi_temp_path $tmp/uwsgi; scgi_temp_path $tmp/scgi;
  server { listen 127.0.0.1:{PORT} reuseport; root $site; location / { } }
}
CONF

drop_cache() {
  python3 -c 'import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
os.fsync(fd)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
os.close(fd)' "$site/large.bin"
}

raw=$tmp/raw
: >"$raw"
run() { # name command cold(0|1) -> appends "name cold p50_ms p99_ms max_ms req/s cold_read_s bytes"
  local name=$1 cmd=$2 cold=$3 port out cpid=
  port=$(pick_port 9500)
  cmd=${cmd//\{PORT\}/$port}
  [[ $name != nginx ]] || { sed "s#{PORT}#$port#" "$tmp/nginx.conf" >"$tmp/nginx-run.conf"; cmd="nginx -p $tmp -c $tmp/nginx-run.conf"; }
  # shellcheck disable=SC2086 # split into words on purpose
  setsid taskset -c 0 $cmd </dev/null >"$tmp/server.log" 2>&1 &
  sids=("$!")
  for _ in $(seq 50); do ! port_free "$port" && break; sleep 0.1; done
  curl -s -o /dev/null "http://127.0.0.1:$port/small.bin"
  drop_cache
  taskset -c 1 wrk -t1 -c16 -d"${DUR}s" --latency "http://127.0.0.1:$port/small.bin" >"$tmp/wrk.txt" 2>&1 &
  local wpid=$!
  sleep 1
  echo 0 >"$tmp/curl.txt"
  if ((cold)); then
    taskset -c 1 curl -s -o /dev/null -w '%{time_total} %{size_download}' --max-time 60 \
      "http://127.0.0.1:$port/large.bin" >"$tmp/curl.txt" &
    cpid=$!
  fi
  wait "$wpid" || true
  [[ -z $cpid ]] || wait "$cpid" || true
  stop_sessions
  sids=()
  out=$(awk -v n="$name" -v c="$cold" -v curl="$(cat "$tmp/curl.txt")" '
    function ms(x) { if (x ~ /us$/) return x / 1000; if (x ~ /ms$/) return x + 0; if (x ~ /s$/) return x * 1000; return x + 0 }
    /^ +50%/{ p50 = ms($2) } /^ +99%/{ p99 = ms($2) } /^ +Latency +[0-9]/{ mx = ms($4) } /Requests\/sec/{ r = $2 }
    END { split(curl, k, " "); printf "%s %d %.3f %.3f %.3f %d %.2f %d\n", n, c, p50, p99, mx, r, k[1], k[2] }' "$tmp/wrk.txt")
  echo "$out" >>"$raw"
  echo "  $out" >&2
}

servers=("ringshard|$RINGSHARD_BIN serve --shards 1 --static $site --listen 127.0.0.1:{PORT}" "nginx|nginx")
t_start=$(date -u '+%Y-%m-%d %H:%M UTC')
for ((r = 1; r <= ROUNDS; r++)); do
  echo "round $r/$ROUNDS" >&2
  for ((k = 0; k < ${#servers[@]}; k++)); do
    s=${servers[$(((k + r) % ${#servers[@]}))]}
    for cold in 0 1; do run "${s%%|*}" "${s#*|}" "$cold"; done
  done
done

report=$tmp/report.md
{
  echo "## A cold read beside small files, $t_start"
  echo
  echo "- machine: $(nproc) CPUs, $(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo); kernel $(uname -r); site on $(df -P "$site" | awk 'NR==2{print $1}')"
  echo "- server on CPU 0; wrk -t1 -c16 -d${DUR}s GET /small.bin (1 KiB) on CPU 1; with a cold read: curl fetches /large.bin (${SIZE_MB} MiB, dropped from the page cache) from 1 s in; median of $ROUNDS interleaved rounds"
  echo "- ringshard: \`serve --shards 1 --static DIR\`; nginx: one worker, sendfile on, no thread pool"
  echo
  echo "| server | cold read | small files req/s | p50 | p99 | max | cold read took |"
  echo "|---|---|---:|---:|---:|---:|---:|"
  for n in ringshard nginx; do
    for c in 0 1; do
      awk -v n="$n" -v c="$c" '$1 == n && $2 == c { p50[++k] = $3; p99[k] = $4; mx[k] = $5; r[k] = $6; t[k] = $7 }
        function med(a, m,   i, j, t) { for (i = 2; i <= m; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t } return m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2 }
        END { if (k) printf "| %s | %s | %d | %.3f ms | %.3f ms | %.3f ms | %s |\n", n, (c ? "yes" : "no"), med(r, k), med(p50, k), med(p99, k), med(mx, k), (c ? sprintf("%.2f s", med(t, k)) : "") }' "$raw"
    done
  done
  echo
  echo '```'
  cat "$raw"
  echo '```'
} >"$report"
cat "$report"
save_report cold-read "$report"
