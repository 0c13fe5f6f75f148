#!/usr/bin/env bash
# sweep-conns.sh: servers (or load generators) side by side across the connection counts and
# connection patterns a user tries first, in interleaved rounds.
#
# A figure at one connection count says little about another: a default tuned for 64
# connections can halve the rate at 8. This sweeps every count in CONNS for every mode in MODES:
#   keepalive  one request in flight per connection (wrk's default)
#   pipe16     DEPTH (16) requests per write
#   close      a new connection per request (`Connection: close`; ringshard load --no-keepalive)
# Each round runs every server once per mode and count, servers in rotated order, so the host's
# swings hit every server alike. Server on SERVER_CPUS, load generator on LOAD_CPUS.
#
# usage: scripts/sweep-conns.sh [SERVER ...]
#   SERVER: ringshard, ringshard-epoll, may_minihttp, limit_epoll (the C epoll loop), nginx, or
#   "NAME|COMMAND" with {PORT} where the port goes. Default: ringshard may_minihttp.
#
# environment (defaults in brackets):
#   CONNS ["1 4 8 16 32 64 256"], MODES ["keepalive pipe16"], DEPTH [16], ROUNDS [3], DUR [3] s
#   LOADERS ["wrk"]: the load generators, each against every server: wrk and/or ringshard
#     (`ringshard load -t1`); with two, the table compares them, per loader CPU-second too
#   REF [may_minihttp; wrk with two loaders]: the server (with two loaders, the loader) the
#     ratios divide by
#   URL_PATH [/plaintext], SERVER_CPUS [0], LOAD_CPUS [1]
#   RINGSHARD_BIN [<repo>/target/release/ringshard] (copied at start: a rebuild mid-run changes
#     nothing), ANCHORS_TARGET [<repo>/../anchors-target] (scripts/bench-engine.sh builds there)
#   NGINX_CONF [../shared/anchors/nginx.conf]: nginx's configuration, listening on 127.0.0.1:8082
#     (replaced by the port)
#   OUT_DIR [<repo>/scripts/out]; NO_SAVE=1 writes no file; TITLE and SAVE_AS name the report
#     and its file (for the scripts that call this one)
# Prints, per mode, count and server (and loader), the median over rounds of requests/s, p99,
# requests per server CPU-second and per loader CPU-second (CPU ticks from /proc), the errors
# summed over rounds (socket errors and non-2xx), and the ratios to REF.
# Needs wrk, taskset, setsid, pgrep/pkill, ss (apt-get install -y wrk).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=common.sh
source "$here/common.sh"
CONNS=${CONNS:-1 4 8 16 32 64 256} MODES=${MODES:-keepalive pipe16} DEPTH=${DEPTH:-16}
ROUNDS=${ROUNDS:-3} DUR=${DUR:-3} LOADERS=${LOADERS:-wrk}
if [[ $LOADERS == *' '* ]]; then REF=${REF:-wrk}; else REF=${REF:-may_minihttp}; fi
URL_PATH=${URL_PATH:-/plaintext} SERVER_CPUS=${SERVER_CPUS:-0} LOAD_CPUS=${LOAD_CPUS:-1}
RINGSHARD_BIN=${RINGSHARD_BIN:-$root/target/release/ringshard}
ANCHORS_TARGET=${ANCHORS_TARGET:-$root/../anchors-target}
OUT_DIR=${OUT_DIR:-$root/scripts/out} NO_SAVE=${NO_SAVE:-}
die() { echo "sweep-conns: $*" >&2; exit 1; }
for t in wrk taskset setsid pgrep pkill ss; do command -v "$t" >/dev/null || die "missing $t (apt-get install -y wrk)"; done
[[ -x $RINGSHARD_BIN ]] || die "no ringshard at $RINGSHARD_BIN (cargo build --release)"
for m in $MODES; do case $m in keepalive | pipe16 | close) ;; *) die "unknown mode '$m' (keepalive, pipe16, close)" ;; esac; done
for l in $LOADERS; do case $l in wrk | ringshard) ;; *) die "unknown loader '$l' (wrk, ringshard)" ;; esac; done
for c in $CONNS; do [[ $c =~ ^[1-9][0-9]*$ ]] || die "CONNS must be whole numbers, not '$c'"; done

tmp=$(mktemp -d /tmp/sweep-conns.XXXXXX)
cp -p "$RINGSHARD_BIN" "$tmp/ringshard"
RS=$tmp/ringshard
# A server named alone: ringshard, ringshard-epoll, may_minihttp, limit_epoll (the C epoll loop),
# nginx (the anchors' nginx.conf on the port).
known() {
  case $1 in
    ringshard) echo "$RS serve --shards 1 --listen 127.0.0.1:{PORT}" ;;
    ringshard-epoll) echo "$RS serve --shards 1 --engine epoll --listen 127.0.0.1:{PORT}" ;;
    may_minihttp) [[ -x $ANCHORS_TARGET/release/may_hello ]] && echo "$ANCHORS_TARGET/release/may_hello {PORT} 1" ;;
    limit_epoll) [[ -x $ANCHORS_TARGET/limit_epoll ]] && echo "$ANCHORS_TARGET/limit_epoll {PORT} 1" ;;
    nginx)
      command -v nginx >/dev/null || return 0
      mkdir -p "$tmp/nginx"
      sed -e "s#^pid .*#pid $tmp/nginx/nginx.pid;#" -e "s#127\.0\.0\.1:8082#127.0.0.1:{PORT}#" \
        -e "s#^http {#http {\n  client_body_temp_path $tmp/nginx/body; proxy_temp_path $tmp/nginx/proxy; fastcgi_temp_path $tmp/nginx/fcgi; uwsgi_temp_path $tmp/nginx/uwsgi; scgi_temp_path $tmp/nginx/scgi;#" \
        "${NGINX_CONF:-$root/../shared/anchors/nginx.conf}" >"$tmp/nginx/nginx.conf.in"
      echo "nginx -p $tmp/nginx -e $tmp/nginx/error.log -c $tmp/nginx/nginx.conf" ;;
  esac
}
specs=("$@")
((${#specs[@]})) || specs=(ringshard may_minihttp)
names=() cmds=() ports=() sids=()
for s in "${specs[@]}"; do
  if [[ $s != *'|'* ]]; then
    c=$(known "$s")
    [[ -n $c ]] || die "cannot run '$s' here (not built or not installed; scripts/bench-engine.sh builds the anchors)"
    s="$s|$c"
  fi
  [[ $s == *'{PORT}'* || $s == nginx'|'* ]] || die "not NAME|COMMAND with {PORT}: $s"
  names+=("${s%%|*}") cmds+=("${s#*|}")
done
n=${#specs[@]}
cleanup() {
  stop_sessions
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port=9300
for ((i = 0; i < n; i++)); do
  port=$(pick_port $((port + 1)))
  cmd=${cmds[$i]//\{PORT\}/$port}
  [[ ${names[$i]} != nginx ]] || sed "s#{PORT}#$port#" "$tmp/nginx/nginx.conf.in" >"$tmp/nginx/nginx.conf"
  # shellcheck disable=SC2086 # the command is split into words on purpose
  setsid taskset -c "$SERVER_CPUS" $cmd </dev/null >"$tmp/server-$i.log" 2>&1 &
  sids+=("$!") ports+=("$port")
  for _ in $(seq 50); do ! port_free "$port" && break; sleep 0.1; done
  port_free "$port" && { cat "$tmp/server-$i.log" >&2; die "${names[$i]} did not listen on $port"; }
  echo "started ${names[$i]} on 127.0.0.1:$port (session ${sids[$i]}): $cmd" >&2
done

load_cmd() { # loader mode conns port -> sets LC, the command line
  local url=http://127.0.0.1:$4$URL_PATH
  case $1/$2 in
    wrk/keepalive) LC=(wrk -t1 -c"$3" -d"${DUR}s" --latency "$url") ;;
    wrk/pipe16) LC=(env DEPTH="$DEPTH" wrk -t1 -c"$3" -d"${DUR}s" --latency -s "$here/pipeline.lua" "$url") ;;
    wrk/close) LC=(wrk -t1 -c"$3" -d"${DUR}s" --latency -H "Connection: close" "$url") ;;
    ringshard/keepalive) LC=("$RS" load -t1 -c"$3" -d"${DUR}s" "$url") ;;
    ringshard/pipe16) LC=("$RS" load -t1 -c"$3" -d"${DUR}s" --pipeline "$DEPTH" "$url") ;;
    ringshard/close) LC=("$RS" load -t1 -c"$3" -d"${DUR}s" --no-keepalive "$url") ;;
  esac
}
raw=$tmp/raw
: >"$raw"
one_run() { # i loader mode conns -> appends "name loader mode conns rps p99_ms req/server-CPU-s req/loader-CPU-s errors"
  local i=$1 l=$2 m=$3 c=$4 a b out lt
  a=$(session_ticks "${sids[$i]}")
  load_cmd "$l" "$m" "$c" "${ports[$i]}"
  # The loader's CPU ticks come from the shell that waited for it: its children's time.
  # shellcheck disable=SC2016 # the inner shell expands $$ itself
  out=$(taskset -c "$LOAD_CPUS" bash -c '"$@" 2>&1; echo "LOADER_TICKS $(awk "{print \$16 + \$17}" /proc/$$/stat)"' _ "${LC[@]}") || true
  b=$(session_ticks "${sids[$i]}")
  echo "$out" | awk -v n="${names[$i]}" -v l="$l" -v m="$m" -v c="$c" -v t=$((b - a)) -v dur="$DUR" '
    function ms(s) { if (s ~ /us$/) return s / 1000; if (s ~ /ms$/) return s + 0; if (s ~ /s$/) return s * 1000; return s + 0 }
    # wrk
    / requests in /{ total = $1 } /Requests\/sec/{ r = $2 } /^ +99%/{ p = ms($2) }
    /Socket errors/{ gsub(/,/, ""); e += $4 + $6 + $8 + $10 } /Non-2xx/{ e += $NF }
    # ringshard load
    /^  requests /{ total = $2; gsub(/,/, "", total); for (k = 1; k < NF; k++) if ($(k + 1) == "req/s") r = $k }
    /^  latency /{ for (k = 1; k <= NF; k++) if ($k == "p99") p = ms($(k + 1)) }
    /^  errors /{ e += $2 }
    /^  status /{ for (k = 2; k < NF; k += 2) if ($k !~ /^2/) { x = $(k + 1); gsub(/,/, "", x); e += x } }
    /^LOADER_TICKS/{ lt = $2 }
    END { if (r == "" || r == 0) { r = 0; e += 1 }
          printf "%s %s %s %s %d %.3f %d %d %d\n", n, l, m, c, r, p, (t > 0 ? total / (t / 100) : 0), (lt > 0 ? total / (lt / 100) : 0), e + 0 }' >>"$raw"
  tail -n 1 "$raw" | awk '{printf "  %-14s %-9s %-9s c=%-4s %9d req/s  p99 %7.3f ms  %9d /server CPU-s  %9d /loader CPU-s%s\n", $1, $2, $3, $4, $5, $6, $7, $8, ($9 ? "  errors " $9 : "")}' >&2
}

t_start=$(date -u '+%Y-%m-%d %H:%M UTC')
for ((i = 0; i < n; i++)); do one_run "$i" "${LOADERS%% *}" keepalive 64 >/dev/null 2>&1; done # warm-up
: >"$raw"
for ((r = 1; r <= ROUNDS; r++)); do
  echo "round $r/$ROUNDS" >&2
  for m in $MODES; do
    for c in $CONNS; do
      for ((k = 0; k < n; k++)); do
        i=$(((k + r) % n))
        for l in $LOADERS; do one_run "$i" "$l" "$m" "$c"; done
      done
    done
  done
done

report=$tmp/report.md
{
  echo "## ${TITLE:-Connection sweep}, $t_start"
  echo
  echo "- machine: $(nproc) CPUs, $(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo); kernel $(uname -r)"
  echo "- servers on CPU $SERVER_CPUS, load generator ($LOADERS, one thread) on CPU $LOAD_CPUS; GET $URL_PATH; median of $ROUNDS interleaved rounds × ${DUR} s; pipelined = $DEPTH requests per write; close = a new connection per request"
  echo "- ringshard: $(sha256sum "$RS" | cut -c1-12) (sha256 of the binary), built $(date -u -r "$RINGSHARD_BIN" '+%Y-%m-%d %H:%M UTC')"
  for ((i = 0; i < n; i++)); do echo "- ${names[$i]}: \`${cmds[$i]//$tmp\/ringshard/ringshard}\`"; done
  echo
  awk -v names="$(printf '%s\n' "${names[@]}" | paste -sd'|')" -v loaders="$LOADERS" -v modes="$MODES" -v conns="$CONNS" -v ref="$REF" '
    function med(k, f,   i, j, t, v, m) {
      m = cnt[k]; for (i = 1; i <= m; i++) v[i] = val[k, i, f]
      for (i = 2; i <= m; i++) for (j = i; j > 1 && v[j - 1] > v[j]; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
      return m % 2 ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2
    }
    function fmt(x,   s) { x = sprintf("%d", x + 0.5); s = ""; while (length(x) > 3) { s = "," substr(x, length(x) - 2) s; x = substr(x, 1, length(x) - 3) } return x s }
    { k = $1 SUBSEP $2 SUBSEP $3 SUBSEP $4; c = ++cnt[k]; for (f = 5; f <= 8; f++) val[k, c, f] = $f; err[k] += $9 }
    END {
      ns = split(names, S, "|"); nl = split(loaders, L, " "); nm = split(modes, M, " "); nc = split(conns, C, " ")
      two = nl > 1
      for (a = 1; a <= nm; a++) {
        print "### " (M[a] == "keepalive" ? "keep-alive" : M[a] == "close" ? "a new connection per request" : "pipelined") 
        print ""
        print "| connections | server | loader | req/s | p99 | req per server CPU-s | req per loader CPU-s | errors | req/s ÷ " ref " | per server CPU-s ÷ " ref " | per loader CPU-s ÷ " ref " |"
        print "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
        for (b = 1; b <= nc; b++) for (i = 1; i <= ns; i++) for (j = 1; j <= nl; j++) {
          k = S[i] SUBSEP L[j] SUBSEP M[a] SUBSEP C[b]; if (!cnt[k]) continue
          r = two ? S[i] SUBSEP ref SUBSEP M[a] SUBSEP C[b] : ref SUBSEP L[j] SUBSEP M[a] SUBSEP C[b]
          q1 = q2 = q3 = "–"
          if (cnt[r] && r != k) {
            q1 = med(r, 5) > 0 ? sprintf("%.2f", med(k, 5) / med(r, 5)) : "–"
            q2 = med(r, 7) > 0 ? sprintf("%.2f", med(k, 7) / med(r, 7)) : "–"
            q3 = med(r, 8) > 0 ? sprintf("%.2f", med(k, 8) / med(r, 8)) : "–"
          }
          printf "| %s | %s | %s | %s | %.3f ms | %s | %s | %d | %s | %s | %s |\n", C[b], S[i], L[j], fmt(med(k, 5)), med(k, 6), fmt(med(k, 7)), fmt(med(k, 8)), err[k], q1, q2, q3
        }
        print ""
      }
    }' "$raw"
  echo "<details><summary>every run: server loader mode conns req/s p99_ms req_per_server_cpu_s req_per_loader_cpu_s errors</summary>"
  echo
  echo '```'
  cat "$raw"
  echo '```'
  echo "</details>"
} >"$report"
cat "$report"
save_report "${SAVE_AS:-sweep-conns}" "$report"
