#!/usr/bin/env bash
# bench-engine.sh: ringshard against the reference servers of ../shared/anchors on a small machine.
#
# Each server runs in its own session on SERVER_CPUS (`setsid taskset -c 0 ...`), one at a time (all at once with
# ROUNDS); wrk runs on LOAD_CPUS.
# Per server, mode (keep-alive, 16-deep pipelining) and connection count it reports the median of RUNS runs of
# DUR seconds: req/s, p99 latency and requests per server CPU-second (CPU ticks of every process in the server's
# session, from /proc, as ../shared/anchors/bench.sh measures). It prints a Markdown table, ringshard's ratios to
# may_minihttp and to the C epoll ceiling, and a PASS/FAIL line per performance bar, and writes the same to
# scripts/out/bench-engine-<UTC date>.md.
#
# usage: scripts/bench-engine.sh [SERVER ...]     (from anywhere; paths are relative to the repository root)
#   SERVER: ringshard epoll may hyper monoio nginx ntex xitca     (default: all; ntex and xitca only if built)
#
# environment (defaults in brackets):
#   RUNS [3], DUR [5]        median of RUNS runs of DUR seconds per server, mode and connection count
#   ROUNDS                   interleaved mode for a noisy machine: all servers up at once, ROUNDS rounds of one run
#                            per server in rotated order (as ../shared/anchors/interleave.sh); RUNS is then unused
#   CONNS ["64"]             connection counts, e.g. CONNS="64 256"
#   MODES ["keepalive pipe16"], DEPTH [16]   pipelining depth of pipe16
#   WARMUP [1]               seconds of unrecorded keep-alive load on each server before its first run (0: none)
#   SERVER_CPUS [0], LOAD_CPUS [1], WRK_THREADS [1]
#   URL_PATH [/plaintext]    requested path (every anchor answers any path)
#   START_TIMEOUT [5]        seconds a server has to answer 200 before it is skipped
#   ANCHORS_DIR [<repo>/../shared/anchors]
#   ANCHORS_TARGET [<repo>/../anchors-target if it exists, else /tmp/ringshard-anchors-target]
#                            where the anchors are built (never inside ANCHORS_DIR): release/*_hello, limit_epoll
#   RINGSHARD_BIN [<repo>/target/release/ringshard]
#   RINGSHARD_ARGS []        extra flags for `ringshard serve` (e.g. knobs to compare)
#   BUILD [missing]          missing: build what is missing; always: also `cargo build --release` ringshard and
#                            the anchors (no-ops when up to date); never: build nothing
#   OUT_DIR [<repo>/scripts/out]; NO_SAVE=1 writes no file
#
# The last table column, "other work on server CPU", is the median share of the server CPU's time that went to
# processes other than the server during the runs (user + system ticks from /proc/stat): above a few percent, other
# work is disturbing the figures; use ROUNDS or wait for a quiet machine.
#
# Installs nothing. Needs wrk, taskset, setsid, pgrep/pkill, ss, awk; nginx (Debian nginx-light) and gcc optional:
#   apt-get install -y wrk nginx-light
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd) # the repository root (same as `git rev-parse --show-toplevel`, without running git)
# shellcheck source=common.sh
source "$here/common.sh"
ANCHORS_DIR=${ANCHORS_DIR:-$root/../shared/anchors}
if [[ -z ${ANCHORS_TARGET:-} ]]; then
  if [[ -d $root/../anchors-target ]]; then ANCHORS_TARGET=$(cd "$root/../anchors-target" && pwd)
  else ANCHORS_TARGET=/tmp/ringshard-anchors-target; fi
fi
RINGSHARD_BIN=${RINGSHARD_BIN:-$root/target/release/ringshard}
RINGSHARD_ARGS=${RINGSHARD_ARGS:-}
RUNS=${RUNS:-3} DUR=${DUR:-5} ROUNDS=${ROUNDS:-} CONNS=${CONNS:-64} MODES=${MODES:-keepalive pipe16} DEPTH=${DEPTH:-16}
WARMUP=${WARMUP:-1} SERVER_CPUS=${SERVER_CPUS:-0} LOAD_CPUS=${LOAD_CPUS:-1} WRK_THREADS=${WRK_THREADS:-1}
URL_PATH=${URL_PATH:-/plaintext} START_TIMEOUT=${START_TIMEOUT:-5} BUILD=${BUILD:-missing}
OUT_DIR=${OUT_DIR:-$root/scripts/out} NO_SAVE=${NO_SAVE:-}

say() { printf '%s\n' "$*" >&2; }
die() { say "bench-engine: $*"; exit 1; }

# ---------------------------------------------------------------- tools
missing=()
for t in wrk taskset setsid pgrep pkill ss awk; do command -v "$t" >/dev/null || missing+=("$t"); done
if ((${#missing[@]})); then
  say "bench-engine: missing: ${missing[*]}"
  say "  install the load generator and nginx with:  apt-get install -y wrk nginx-light"
  say "  (taskset, setsid: util-linux; pgrep, pkill: procps; ss: iproute2)"
  exit 1
fi
[[ -d $ANCHORS_DIR ]] || die "no anchors directory at $ANCHORS_DIR (set ANCHORS_DIR)"
ANCHORS_DIR=$(cd "$ANCHORS_DIR" && pwd)
case $BUILD in missing | always | never) ;; *) die "BUILD must be missing, always or never" ;; esac

tmp=$(mktemp -d /tmp/bench-engine.XXXXXX)
sids=() # sessions of the servers this script started
stop_session() { # SID: TERM the whole session, then KILL what is left; reap the leader
  local sid=$1 i
  pkill -TERM -s "$sid" 2>/dev/null || true
  for i in $(seq 50); do pgrep -s "$sid" >/dev/null || break; sleep 0.1; done
  if pgrep -s "$sid" >/dev/null; then pkill -KILL -s "$sid" 2>/dev/null || true; sleep 0.2; fi
  wait "$sid" 2>/dev/null || true
  if pgrep -s "$sid" >/dev/null; then say "warning: session $sid still has processes: $(pgrep -s "$sid" | tr '\n' ' ')"; return 1; fi
}
cleanup() {
  local sid
  for sid in "${sids[@]}"; do stop_session "$sid" || true; done
  # wrk is a foreground child; if we were interrupted mid-run, make sure it is gone too
  pkill -P $$ wrk 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- builds
build_ringshard() {
  if [[ $BUILD == always || ( $BUILD == missing && ! -x $RINGSHARD_BIN ) ]]; then
    if [[ $RINGSHARD_BIN != "$root/target/release/ringshard" ]]; then say "not building: RINGSHARD_BIN=$RINGSHARD_BIN is set"
    elif command -v cargo >/dev/null; then
      say "building ringshard: cargo build --release (in $root)"
      (cd "$root" && cargo build --release) >"$tmp/build-ringshard.log" 2>&1 ||
        { say "ringshard build failed (last lines below); it will be skipped"; tail -n 15 "$tmp/build-ringshard.log" >&2; }
    else say "cargo not found: cannot build ringshard"; fi
  fi
  if [[ -x $RINGSHARD_BIN ]] && [[ -n $(find "$root/src" "$root/Cargo.toml" "$root/Cargo.lock" -newer "$RINGSHARD_BIN" -print -quit 2>/dev/null) ]]; then
    say "warning: $RINGSHARD_BIN is older than the sources; BUILD=always rebuilds it"
  fi
}
build_anchors() {
  local need=0 b
  for b in may_hello hyper_hello monoio_hello; do [[ -x $ANCHORS_TARGET/release/$b ]] || need=1; done
  if [[ $BUILD == always || ( $BUILD == missing && $need == 1 ) ]]; then
    if command -v cargo >/dev/null; then
      say "building the anchors: cargo build --release --locked in $ANCHORS_DIR/rs, CARGO_TARGET_DIR=$ANCHORS_TARGET"
      mkdir -p "$ANCHORS_TARGET"
      (cd "$ANCHORS_DIR/rs" && CARGO_TARGET_DIR=$ANCHORS_TARGET cargo build --release --locked) >"$tmp/build-anchors.log" 2>&1 ||
        { say "anchor build failed (last lines below)"; tail -n 15 "$tmp/build-anchors.log" >&2; }
    else say "cargo not found: cannot build the Rust anchors"; fi
  fi
  if [[ $BUILD == always || ( $BUILD == missing && ! -x $ANCHORS_TARGET/limit_epoll ) ]]; then
    if command -v gcc >/dev/null; then
      mkdir -p "$ANCHORS_TARGET"
      gcc -O2 -o "$ANCHORS_TARGET/limit_epoll" "$ANCHORS_DIR/limit_epoll.c" || say "gcc failed on limit_epoll.c"
    else say "gcc not found: cannot build the C epoll ceiling (apt-get install -y gcc)"; fi
  fi
}

# ---------------------------------------------------------------- servers
lockver() { awk -v n="$1" '$0 == "name = \"" n "\"" { getline; gsub(/version = |"/, ""); print " " $0; exit }' "$ANCHORS_DIR/rs/Cargo.lock" 2>/dev/null || true; }
label() {
  case $1 in
    ringshard) echo "ringshard (serve --shards 1${RINGSHARD_ARGS:+ $RINGSHARD_ARGS})" ;;
    epoll) echo "C epoll ceiling (no parsing)" ;;
    may) echo "may_minihttp$(lockver may_minihttp)" ;;
    hyper) echo "hyper$(lockver hyper) (tokio current-thread)" ;;
    monoio) echo "monoio$(lockver monoio) + httparse" ;;
    nginx) echo "nginx $(nginx -v 2>&1 | sed -n 's#.*nginx/\([0-9.]*\).*#\1#p') (1 worker)" ;;
    ntex) echo "ntex (neon-uring)" ;;
    xitca) echo "xitca-http (io-uring)" ;;
    *) echo "$1" ;;
  esac
}
base_port() { case $1 in ringshard) echo 8090 ;; epoll) echo 8081 ;; nginx) echo 8082 ;; hyper) echo 8083 ;;
  may) echo 8084 ;; monoio) echo 8085 ;; xitca) echo 8086 ;; ntex) echo 8087 ;; *) echo 8100 ;; esac; }
binary() { # name -> path of its binary ('' if none)
  case $1 in
    ringshard) echo "$RINGSHARD_BIN" ;;
    epoll) echo "$ANCHORS_TARGET/limit_epoll" ;;
    may | hyper | monoio | ntex | xitca) echo "$ANCHORS_TARGET/release/${1}_hello" ;;
    nginx) command -v nginx || true ;;
    *) echo "" ;;
  esac
}
available() { # name -> 0 if it can be started, else prints why
  local b; b=$(binary "$1")
  if [[ -n $b && -x $b ]]; then return 0; fi
  case $1 in
    nginx) say "skip nginx: not installed (apt-get install -y nginx-light)" ;;
    ntex | xitca) say "skip $1: not built (cargo build --release --features ntex,xitca in $ANCHORS_DIR/rs with CARGO_TARGET_DIR=$ANCHORS_TARGET)" ;;
    ringshard) say "skip ringshard: no binary at $RINGSHARD_BIN" ;;
    *) say "skip $1: no binary at ${b:-?}" ;;
  esac
  return 1
}
probe() { # port -> prints the status line of GET URL_PATH; 0 if it is a 200
  local line
  line=$( (exec 3<>"/dev/tcp/127.0.0.1/$1" && printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n' "$URL_PATH" >&3 &&
    IFS= read -r -t 1 l <&3 && printf '%s' "${l%$'\r'}") 2>/dev/null) || true
  printf '%s' "$line"
  [[ $line =~ ^HTTP/1\.[01]\ 200 ]]
}
leader_alive() { local st; st=$(awk '{sub(/^.*\) /, ""); print $1}' "/proc/$1/stat" 2>/dev/null) || return 1; [[ -n $st && $st != Z ]]; }
started_sid='' started_port=''
start_server() { # name -> sets started_sid, started_port; 1 if it did not answer 200 within START_TIMEOUT
  local name=$1 port cmd pid i status='' log
  log=$tmp/$name.log
  port=$(pick_port "$(base_port "$name")")
  case $name in
    ringshard) cmd=("$RS_EXEC" serve --shards 1 --listen "127.0.0.1:$port" $RINGSHARD_ARGS) ;;
    epoll) cmd=("$ANCHORS_TARGET/limit_epoll" "$port" 1) ;;
    nginx)
      mkdir -p "$tmp/nginx"
      sed -e "s#^pid .*#pid $tmp/nginx/nginx.pid;#" -e "s#127\.0\.0\.1:8082#127.0.0.1:$port#" \
        -e "s#^http {#http {\n  client_body_temp_path $tmp/nginx/body; proxy_temp_path $tmp/nginx/proxy; fastcgi_temp_path $tmp/nginx/fcgi; uwsgi_temp_path $tmp/nginx/uwsgi; scgi_temp_path $tmp/nginx/scgi;#" \
        "$ANCHORS_DIR/nginx.conf" >"$tmp/nginx/nginx.conf"
      cmd=(nginx -p "$tmp/nginx" -e "$tmp/nginx/error.log" -c "$tmp/nginx/nginx.conf") ;;
    *) cmd=("$(binary "$name")" "$port" 1) ;;
  esac
  setsid taskset -c "$SERVER_CPUS" "${cmd[@]}" </dev/null >"$log" 2>&1 &
  pid=$!
  sids+=("$pid")
  for ((i = 0; i < START_TIMEOUT * 10; i++)); do
    if ! leader_alive "$pid"; then break; fi
    if status=$(probe "$port"); then
      if [[ $(awk '{sub(/^.*\) /, ""); print $4}' "/proc/$pid/stat" 2>/dev/null) != "$pid" ]]; then
        say "skip $name: setsid did not make pid $pid a session leader"; stop_session "$pid" || true; return 1
      fi
      started_sid=$pid started_port=$port
      say "started $name on 127.0.0.1:$port (session $pid): ${cmd[*]}"
      return 0
    fi
    sleep 0.1
  done
  if leader_alive "$pid"; then
    say "skip $name: no 200 for GET $URL_PATH on 127.0.0.1:$port within ${START_TIMEOUT}s${status:+ (got: $status)}"
  else
    say "skip $name: exited before answering: ${cmd[*]}"
  fi
  [[ -s $log ]] && sed 's/^/  | /' "$log" | tail -n 5 >&2
  stop_session "$pid" || true
  return 1
}
stop_server() { # name sid port
  stop_session "$2" || true
  port_free "$3" || say "warning: something still listens on port $3 after stopping $1"
  local s new=()
  for s in "${sids[@]}"; do [[ $s == "$2" ]] || new+=("$s"); done
  sids=("${new[@]+"${new[@]}"}")
}

# ---------------------------------------------------------------- measuring
tck=$(getconf CLK_TCK)
cpu_ticks() { # SID -> user+system ticks of every process in the session
  { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v s="$1" '{sub(/^.*\) /, ""); if ($4 == s) t += $12 + $13} END{print t+0}'
}
cpu_list=$(awk -v l="$SERVER_CPUS" 'BEGIN { n = split(l, p, ","); for (i = 1; i <= n; i++) { if (split(p[i], r, "-") == 2) for (c = r[1]; c <= r[2]; c++) printf "cpu%d ", c; else printf "cpu%d ", p[i] } }')
cpu_busy() { # -> "busy total" ticks of SERVER_CPUS from /proc/stat (busy: user + nice + system, as per-process ticks count)
  awk -v l=" $cpu_list" 'index(l, " " $1 " ") { b += $2 + $3 + $4; for (i = 2; i <= 9; i++) t += $i } END { print b + 0, t + 0 }' /proc/stat
}
raw=$tmp/raw
: >"$raw"
one_run() { # name port sid mode conns [record] -> appends "name mode c rps p99_ms req_per_cpu_s errors other%" to $raw
  # other%: share of SERVER_CPUS' time that went to processes other than the server during the run (noise)
  local name=$1 port=$2 sid=$3 mode=$4 c=$5 record=${6:-1} dur=$DUR extra=() a b out s0 s1
  [[ $record == 1 ]] || dur=$WARMUP
  [[ $mode == pipe* ]] && extra=(-s "$here/pipeline.lua")
  s0=$(cpu_busy)
  a=$(cpu_ticks "$sid")
  out=$(DEPTH=$DEPTH taskset -c "$LOAD_CPUS" wrk -t"$WRK_THREADS" -c"$c" -d"${dur}s" --latency "${extra[@]+"${extra[@]}"}" \
    "http://127.0.0.1:$port$URL_PATH" 2>&1) || true
  b=$(cpu_ticks "$sid")
  s1=$(cpu_busy)
  [[ $record == 1 ]] || return 0
  echo "$out" | awk -v n="$name" -v m="$mode" -v c="$c" -v t=$((b - a)) -v tck="$tck" -v s0="$s0" -v s1="$s1" '
    function ms(s) { if (s ~ /us$/) return s / 1000; if (s ~ /ms$/) return s + 0; if (s ~ /m$/) return s * 60000; if (s ~ /s$/) return s * 1000; return s + 0 }
    / requests in /{ total = $1 } /Requests\/sec/{ r = $2 } /^ +99%/{ p = ms($2) }
    /Socket errors/{ gsub(/,/, ""); e += $4 + $6 + $8 + $10 } /Non-2xx/{ e += $NF }
    END { split(s0, x, " "); split(s1, y, " "); tot = y[2] - x[2]; other = tot > 0 ? 100 * (y[1] - x[1] - t) / tot : 0
          printf "%s %s %s %d %.3f %d %d %d\n", n, m, c, r, p, (t > 0 ? total / (t / tck) : 0), e + 0, (other > 0 ? other + 0.5 : 0) }' >>"$raw"
  tail -n 1 "$raw" | awk '{printf "  %-9s %-9s c=%-4s %9d req/s  p99 %8.3f ms  %9d req per server CPU-s  other work on server CPU %2d%%%s\n", $1, $2, $3, $4, $5, $6, $8, ($7 ? "  errors " $7 : "")}' >&2
}
measure() { # name port sid runs
  local name=$1 port=$2 sid=$3 runs=$4 mode c i
  for mode in $MODES; do
    for c in $CONNS; do
      for ((i = 0; i < runs; i++)); do
        if ! pgrep -s "$sid" >/dev/null; then say "  $name died during the measurements"; echo "$name died" >>"$tmp/died"; return 1; fi
        one_run "$name" "$port" "$sid" "$mode" "$c"
      done
    done
  done
}
warmup() { if [[ $WARMUP != 0 ]]; then one_run "$1" "$2" "$3" keepalive "${CONNS%% *}" 0; fi; }

# the body is one function, so that editing this file while it runs cannot derail the run
main() {
# ---------------------------------------------------------------- run
requested=("$@")
((${#requested[@]})) || read -r -a requested <<<"${SERVERS:-ringshard epoll may hyper monoio nginx ntex xitca}"
want() { local s; for s in "${requested[@]}"; do [[ $s == "$1" ]] && return 0; done; return 1; }
RS_EXEC=$RINGSHARD_BIN rs_info=''
if want ringshard; then
  build_ringshard
  if [[ -x $RINGSHARD_BIN ]]; then # run a copy: a rebuild during the run must not change what is measured
    cp -p "$RINGSHARD_BIN" "$tmp/ringshard"
    RS_EXEC=$tmp/ringshard
    rs_info="$RINGSHARD_BIN, built $(date -u -r "$RS_EXEC" '+%Y-%m-%d %H:%M UTC'), sha256 $(sha256sum "$RS_EXEC" | cut -c1-12) (copied at start; the copy ran)"
  fi
fi
build_anchors
servers=()
for s in "${requested[@]}"; do
  case $s in ringshard | epoll | may | hyper | monoio | nginx | ntex | xitca) ;; *) die "unknown server '$s'" ;; esac
  if available "$s"; then servers+=("$s"); fi
done
((${#servers[@]})) || die "no server to measure"

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
t_start=$(date -u '+%Y-%m-%d %H:%M UTC')
ran=()
declare -A port_of sid_of
if [[ -n $ROUNDS ]]; then
  say "interleaved: $ROUNDS rounds × one ${DUR}s run per server, mode and connection count"
  for s in "${servers[@]}"; do
    if start_server "$s"; then ran+=("$s"); port_of[$s]=$started_port sid_of[$s]=$started_sid; warmup "$s" "$started_port" "$started_sid"; fi
  done
  n=${#ran[@]}
  for ((r = 1; r <= ROUNDS; r++)); do
    say "round $r/$ROUNDS"
    for ((k = 0; k < n; k++)); do
      s=${ran[$(((k + r) % n))]}
      grep -qx "$s died" "$tmp/died" 2>/dev/null && continue
      measure "$s" "${port_of[$s]}" "${sid_of[$s]}" 1 || true
    done
  done
  for s in "${ran[@]}"; do stop_server "$s" "${sid_of[$s]}" "${port_of[$s]}"; done
else
  for s in "${servers[@]}"; do
    if start_server "$s"; then
      ran+=("$s")
      warmup "$s" "$started_port" "$started_sid"
      measure "$s" "$started_port" "$started_sid" "$RUNS" || true
      stop_server "$s" "$started_sid" "$started_port"
    fi
  done
fi
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- report
labels=''
for s in "${ran[@]}"; do labels+="$s=$(label "$s");"; done
cpu_model=$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)
if [[ -n $ROUNDS ]]; then how="median of $ROUNDS interleaved rounds × ${DUR} s (rotated order)"; else how="median of $RUNS × ${DUR} s"; fi
report=$tmp/report.md
{
  echo "## ringshard engine bench, $t_start"
  echo
  echo "- machine: $(nproc) CPUs, $cpu_model; kernel $(uname -r); load average $load_start at start, $load_end at end"
  echo "- server on CPU $SERVER_CPUS (\`setsid taskset -c $SERVER_CPUS\`), \`$(wrk -v 2>&1 | awk 'NR==1{print $1, $2}')\` -t$WRK_THREADS on CPU $LOAD_CPUS, GET $URL_PATH; $how; each figure is the median of its own runs; pipelined = $DEPTH requests per write"
  if [[ " ${ran[*]} " == *" ringshard "* ]]; then
    echo "- ringshard: $rs_info"
  fi
  echo
  awk -v order="${ran[*]}" -v modes="$MODES" -v conns="$CONNS" -v labels="$labels" -v depth="$DEPTH" '
    function med(key, f,   i, j, t, v, n) {
      n = cnt[key]; for (i = 1; i <= n; i++) v[i] = val[key, i, f]
      for (i = 2; i <= n; i++) for (j = i; j > 1 && v[j - 1] > v[j]; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
      return v[int((n + 1) / 2)]
    }
    function medo(s,   i, j, t, v, n) {
      n = nother[s]; for (i = 1; i <= n; i++) v[i] = oth[s, i]
      for (i = 2; i <= n; i++) for (j = i; j > 1 && v[j - 1] > v[j]; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
      return v[int((n + 1) / 2)] + 0
    }
    function fmt(x,   s) { x = sprintf("%d", x + 0.5); s = ""; while (length(x) > 3) { s = "," substr(x, length(x) - 2) s; x = substr(x, 1, length(x) - 3) } return x s }
    function mname(m) { return m == "keepalive" ? "keep-alive" : (m ~ /^pipe/ ? "pipelined ×" depth : m) }
    function lat(p) { return p > 0 ? sprintf("%.2f ms", p) : "n/a" } # wrk -s pipelining often prints 99% as 0.00us
    { seen[$1] = 1; key = $1 SUBSEP $2 SUBSEP $3; c = ++cnt[key]; val[key, c, 4] = $4; val[key, c, 5] = $5; val[key, c, 6] = $6; err[$1] += $7; no = ++nother[$1]; oth[$1, no] = $8 }
    END {
      ns = split(order, S, " "); nm = split(modes, M, " "); nc = split(conns, C, " ")
      nl = split(labels, L, ";"); for (i = 1; i <= nl; i++) { split(L[i], kv, "="); lab[kv[1]] = substr(L[i], length(kv[1]) + 2) }
      hdr = "| server |"; sep = "|---|"
      for (a = 1; a <= nm; a++) for (b = 1; b <= nc; b++) {
        hdr = hdr " " mname(M[a]) " c=" C[b] " req/s | p99 | req per server CPU-s |"; sep = sep "---:|---:|---:|" }
      print hdr " runs | errors | other work on server CPU |"; print sep "---:|---:|---:|"
      for (i = 1; i <= ns; i++) {
        s = S[i]; line = "| " lab[s] " |"; runs = 0
        for (a = 1; a <= nm; a++) for (b = 1; b <= nc; b++) {
          key = s SUBSEP M[a] SUBSEP C[b]
          if (cnt[key]) { line = line " " fmt(med(key, 4)) " | " lat(med(key, 5)) " | " fmt(med(key, 6)) " |"; if (cnt[key] > runs) runs = cnt[key]
                          E[s, M[a], C[b]] = med(key, 6); P[s, M[a], C[b]] = med(key, 5) }
          else line = line " – | – | – |"
        }
        print line " " runs " | " err[s] + 0 " | " medo(s) "% |"; if (medo(s) > maxo) maxo = medo(s)
      }
      has_rs = ("ringshard" in seen)
      print ""
      if (has_rs) {
        print "ringshard ÷ reference, requests per server CPU-second (p99 ratio in brackets, lower is better):"
        print ""
        hdr = "| ringshard ÷ |"; sep = "|---|"
        for (a = 1; a <= nm; a++) for (b = 1; b <= nc; b++) { hdr = hdr " " mname(M[a]) " c=" C[b] " |"; sep = sep "---:|" }
        print hdr; print sep
        for (i = 1; i <= ns; i++) {
          s = S[i]; if (s == "ringshard") continue
          line = "| " lab[s] " |"
          for (a = 1; a <= nm; a++) for (b = 1; b <= nc; b++) {
            k = s SUBSEP M[a] SUBSEP C[b]; r = "ringshard" SUBSEP M[a] SUBSEP C[b]
            if ((k in E) && (r in E) && E[k] > 0) line = line sprintf(" %.2f%s |", E[r] / E[k], (P[k] > 0 && P[r] > 0 ? sprintf(" (%.2f)", P[r] / P[k]) : ""))
            else line = line " – |"
          }
          print line
        }
        print ""
      }
      print "Bars (keep-alive and pipelined at 64 connections):"
      print ""
      bar("keepalive", 64, "may", 1.2, "keep-alive c=64: req per server CPU-s ≥ 1.2 × may_minihttp")
      bar("keepalive", 64, "epoll", 1.0, "keep-alive c=64: req per server CPU-s ≥ the C epoll ceiling")
      bar("pipe16", 64, "may", 1.3, "pipelined ×16 c=64: req per server CPU-s ≥ 1.3 × may_minihttp")
      r = "ringshard" SUBSEP "keepalive" SUBSEP 64; k = "may" SUBSEP "keepalive" SUBSEP 64
      what = "keep-alive c=64: p99 ≤ may_minihttp p99"
      if (!(r in P)) print "- n/a  " what " (ringshard not measured)"
      else if (!(k in P)) print "- n/a  " what " (may_minihttp not measured)"
      else printf "- %s  %s: %.3f ms vs %.3f ms\n", (P[r] <= P[k] ? "PASS" : "FAIL"), what, P[r], P[k]
      if (maxo > 5) printf "\nWarning: other work took up to %d%% of the server CPU during the runs (last column): the figures, p99 above all, are disturbed; rerun on a quiet machine.\n", maxo
    }
    function bar(m, c, ref, f, what,   r, k) {
      r = "ringshard" SUBSEP m SUBSEP c; k = ref SUBSEP m SUBSEP c
      if (!(r in E)) { print "- n/a  " what " (ringshard not measured)"; return }
      if (!(k in E)) { print "- n/a  " what " (" ref " not measured)"; return }
      printf "- %s  %s: %s vs %s (%.2f ×)\n", (E[r] >= f * E[k] ? "PASS" : "FAIL"), what, fmt(E[r]), fmt(E[k]), (E[k] > 0 ? E[r] / E[k] : 0)
    }' "$raw"
  if [[ -s $tmp/died ]]; then echo; echo "Died during the measurements: $(awk '{print $1}' "$tmp/died" | sort -u | tr '\n' ' ')"; fi
} >"$report"
cat "$report"
if [[ -z $NO_SAVE ]]; then
  mkdir -p "$OUT_DIR"
  out=$OUT_DIR/bench-engine-$(date -u '+%Y-%m-%dT%H%MZ').md
  {
    cat "$report"
    echo
    echo "<details><summary>every run: server mode conns req/s p99_ms req_per_server_cpu_s errors</summary>"
    echo
    echo '```'
    cat "$raw"
    echo '```'
    echo "</details>"
  } >"$out"
  say "wrote $out"
fi
}
main "$@"; exit # on one line: bash must not read past it if this file changes while it runs
