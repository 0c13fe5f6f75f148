#!/usr/bin/env bash
# idle-memory.sh: the resident memory that CONNS idle keep-alive connections add to one ringshard shard.
#
# Starts `ringshard serve --shards 1 --listen 127.0.0.1:PORT --keepalive-timeout 300s` in its own session on
# SERVER_CPUS, reads its VmRSS, opens CONNS connections from a Python client on CLIENT_CPUS (in batches, so the
# listen backlog never overflows), sends `GET /plaintext HTTP/1.1` on each and reads the whole response (each is a
# real keep-alive connection that served a request), leaves them all idle for IDLE seconds, checks that the server
# still holds them (ss), reads VmRSS again and prints before / after / delta in MiB, bytes per connection, and
# PASS / FAIL against LIMIT_MIB. Bar: 10,000 idle keep-alive connections on one shard add at most 10 MiB.
#
# usage: scripts/idle-memory.sh          (from anywhere; exit 0 PASS, 1 FAIL, 2 could not measure)
# environment (defaults in brackets):
#   CONNS [10000], LIMIT_MIB [10], IDLE [2] seconds idle before the second reading
#   PORT [8095, or the next free port], SERVER_CPUS [0], CLIENT_CPUS [1], URL_PATH [/plaintext]
#   RINGSHARD_BIN [<repo>/target/release/ringshard]  (built with `cargo build --release` if missing; BUILD=never: don't)
#   SERVER_CMD   the whole server command instead of ringshard, {PORT} replaced by the port; to check the client
#                against a reference server that keeps idle connections:
#                  SERVER_CMD='../anchors-target/limit_epoll {PORT} 1' scripts/idle-memory.sh
#                  SERVER_CMD='../anchors-target/release/may_hello {PORT} 1' scripts/idle-memory.sh
#   BATCH [500]  connections opened at a time (capped at half the listen backlog)
#   CLIENT_PROCS client processes (default: as few as the open-files limit allows)
#   START_TIMEOUT [10] seconds the server has to answer 200
#   OUT_DIR [<repo>/scripts/out]  the report is also written to OUT_DIR/idle-memory-<UTC date>.md; NO_SAVE=1: not
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=common.sh
source "$here/common.sh"
CONNS=${CONNS:-10000} LIMIT_MIB=${LIMIT_MIB:-10} IDLE=${IDLE:-2} SERVER_CPUS=${SERVER_CPUS:-0} CLIENT_CPUS=${CLIENT_CPUS:-1}
URL_PATH=${URL_PATH:-/plaintext} RINGSHARD_BIN=${RINGSHARD_BIN:-$root/target/release/ringshard} BUILD=${BUILD:-missing}
SERVER_CMD=${SERVER_CMD:-} BATCH=${BATCH:-500} CLIENT_PROCS=${CLIENT_PROCS:-} START_TIMEOUT=${START_TIMEOUT:-10}
OUT_DIR=${OUT_DIR:-$root/scripts/out} NO_SAVE=${NO_SAVE:-}

say() { printf '%s\n' "$*" >&2; }
die() { say "idle-memory: $*"; exit 2; }
for t in python3 taskset setsid pgrep pkill ss awk; do command -v "$t" >/dev/null || die "missing $t (python3; util-linux; procps; iproute2)"; done

# the body is one function, so that editing this file while it runs cannot derail the run
main() {
# ---------------------------------------------------------------- limits
hard=$(ulimit -Hn)
want=30000
if [[ $hard == unlimited ]] || ((hard >= want)); then nofile=$want; else nofile=$hard; fi
ulimit -n "$nofile" || die "cannot raise the open-files limit to $nofile"
say "open files: soft limit $(ulimit -n) (hard $hard), inherited by the server and the client"
((nofile >= CONNS + 64)) || say "warning: the server may run out of file descriptors: $CONNS connections, limit $nofile"
per_proc=$((nofile - 64))
[[ -n $CLIENT_PROCS ]] || CLIENT_PROCS=$(((CONNS + per_proc - 1) / per_proc))
((CONNS / CLIENT_PROCS + 64 <= nofile)) || die "CLIENT_PROCS=$CLIENT_PROCS: $((CONNS / CLIENT_PROCS)) connections per process exceed the limit $nofile"
read -r lo hi </proc/sys/net/ipv4/ip_local_port_range
somaxconn=$(cat /proc/sys/net/core/somaxconn) synbacklog=$(cat /proc/sys/net/ipv4/tcp_max_syn_backlog)
say "net.ipv4.ip_local_port_range $lo-$hi ($((hi - lo + 1)) ports); net.core.somaxconn $somaxconn; net.ipv4.tcp_max_syn_backlog $synbacklog"
# all connections go from 127.0.0.1 to one port: each needs its own local port (TIME_WAIT ports from earlier runs count)
((hi - lo + 1 >= CONNS + 1000)) || die "local port range $lo-$hi is too small for $CONNS connections (sysctl -w net.ipv4.ip_local_port_range='1024 65535')"

# ---------------------------------------------------------------- server
tmp=$(mktemp -d /tmp/idle-memory.XXXXXX)
sid='' clients=()
cleanup() {
  local p i
  for p in "${clients[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${clients[@]}"; do wait "$p" 2>/dev/null || true; done
  if [[ -n $sid ]]; then
    pkill -TERM -s "$sid" 2>/dev/null || true
    for i in $(seq 50); do pgrep -s "$sid" >/dev/null || break; sleep 0.1; done
    pkill -KILL -s "$sid" 2>/dev/null || true
    wait "$sid" 2>/dev/null || true
    if pgrep -s "$sid" >/dev/null; then say "warning: server session $sid still has processes"; fi
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
PORT=$(pick_port "${PORT:-8095}")
if [[ -n $SERVER_CMD ]]; then
  read -r -a cmd <<<"${SERVER_CMD//\{PORT\}/$PORT}"
  desc=${cmd[*]} info=''
else
  if [[ ! -x $RINGSHARD_BIN && $BUILD != never && $RINGSHARD_BIN == "$root/target/release/ringshard" ]]; then
    say "building ringshard: cargo build --release"
    (cd "$root" && cargo build --release) >&2 || die "ringshard does not build"
  fi
  [[ -x $RINGSHARD_BIN ]] || die "no ringshard binary at $RINGSHARD_BIN"
  cp -p "$RINGSHARD_BIN" "$tmp/ringshard" # run a copy: a rebuild during the run must not change what is measured
  say "ringshard: $RINGSHARD_BIN, built $(date -u -r "$tmp/ringshard" '+%Y-%m-%d %H:%M UTC'), sha256 $(sha256sum "$tmp/ringshard" | cut -c1-12)"
  cmd=("$tmp/ringshard" serve --shards 1 --listen "127.0.0.1:$PORT" --keepalive-timeout 300s)
  desc="$RINGSHARD_BIN ${cmd[*]:1}"
  info=" (built $(date -u -r "$tmp/ringshard" '+%Y-%m-%d %H:%M UTC'), sha256 $(sha256sum "$tmp/ringshard" | cut -c1-12); a copy of it ran)"
fi

setsid taskset -c "$SERVER_CPUS" "${cmd[@]}" </dev/null >"$tmp/server.log" 2>&1 &
sid=$!
probe() {
  local line
  line=$( (exec 3<>"/dev/tcp/127.0.0.1/$PORT" && printf 'GET %s HTTP/1.1\r\nHost: x\r\n\r\n' "$URL_PATH" >&3 &&
    IFS= read -r -t 1 l <&3 && printf '%s' "${l%$'\r'}") 2>/dev/null) || true
  [[ $line =~ ^HTTP/1\.[01]\ 200 ]]
}
alive() { [[ -e /proc/$sid ]] && [[ $(awk '{sub(/^.*\) /, ""); print $1}' "/proc/$sid/stat" 2>/dev/null) != Z ]]; }
up=0
for ((i = 0; i < START_TIMEOUT * 10; i++)); do
  alive || break
  if probe; then up=1; break; fi
  sleep 0.1
done
if ((!up)); then
  say "idle-memory: the server did not answer 200 for GET $URL_PATH on 127.0.0.1:$PORT within ${START_TIMEOUT}s: ${cmd[*]}"
  sed 's/^/  | /' "$tmp/server.log" | tail -n 5 >&2
  exit 2
fi
say "server: ${cmd[*]} (session $sid)"
backlog=$(ss -Hltn "sport = :$PORT" | awk 'NR==1{print $3}')
batch=$BATCH
if [[ -n $backlog ]] && ((backlog / 2 < batch)); then batch=$((backlog / 2 > 8 ? backlog / 2 : 8)); fi
say "listen backlog $backlog (capped by somaxconn $somaxconn); opening $CONNS connections in batches of $batch from $CLIENT_PROCS client process(es) on CPU $CLIENT_CPUS"

rss_kib() { # VmRSS summed over the server's session
  local p t=0 v
  for p in $(pgrep -s "$sid"); do v=$(awk '/^VmRSS:/{print $2}' "/proc/$p/status" 2>/dev/null) || v=0; t=$((t + ${v:-0})); done
  echo "$t"
}
field_kib() { awk -v f="$1:" '$1 == f {print $2}' "/proc/$sid/status" 2>/dev/null || echo 0; }
tcp_mem_pages() { awk '$1 == "TCP:" {for (i = 2; i < NF; i++) if ($i == "mem") print $(i + 1)}' /proc/net/sockstat; }

sleep 0.5
before=$(rss_kib) before_anon=$(field_kib RssAnon) tcp_before=$(tcp_mem_pages)

# ---------------------------------------------------------------- client
cat >"$tmp/client.py" <<'EOF'
# Opens COUNT connections to HOST:PORT, BATCH at a time; on each sends one GET and reads the whole response,
# then keeps every socket open and idle until killed. Writes "ok=N failed=M ..." to READY when done.
import errno, os, selectors, signal, socket, sys, time
host, port, count, batch, path, ready = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
req = ("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path).encode()
sel = selectors.EpollSelector()
keep, why = [], {}
ok = 0
def fail(reason, s=None):
    why[reason] = why.get(reason, 0) + 1
    if s is not None:
        try: sel.unregister(s)
        except (KeyError, ValueError): pass
        s.close()
def done(buf):  # status line once the head and a Content-Length body are complete, else None
    i = buf.find(b"\r\n\r\n")
    if i < 0: return None
    lines = buf[:i].decode("latin-1").split("\r\n")
    n = 0
    for l in lines[1:]:
        k, _, v = l.partition(":")
        if k.strip().lower() == "content-length": n = int(v)
    return lines[0] if len(buf) >= i + 4 + n else None
t0 = time.monotonic()
left = count
while left > 0:
    n = min(batch, left); left -= n
    pending = {}
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        r = s.connect_ex((host, port))
        if r not in (0, errno.EINPROGRESS):
            fail("connect: " + os.strerror(r), s); continue
        pending[s.fileno()] = [s, b"", False]
        sel.register(s, selectors.EVENT_WRITE)
    deadline = time.monotonic() + 15
    while pending and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=1):
            st = pending[key.fd]; s = st[0]
            if not st[2]:
                e = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if e: del pending[key.fd]; fail("connect: " + os.strerror(e), s); continue
                s.send(req); st[2] = True
                sel.modify(s, selectors.EVENT_READ)
                continue
            try: d = s.recv(65536)
            except BlockingIOError: continue
            except OSError as e: del pending[key.fd]; fail("recv: " + str(e), s); continue
            if not d: del pending[key.fd]; fail("closed by the server before the response", s); continue
            st[1] += d
            status = done(st[1])
            if status is None: continue
            del pending[key.fd]
            sel.unregister(s)
            if status.split(" ")[1:2] == ["200"]: ok += 1; keep.append(s)
            else: fail("status: " + status, s)
    for st in pending.values(): fail("no response within 15 s", st[0])
with open(ready + ".tmp", "w") as f:
    f.write("ok=%d failed=%d seconds=%.1f %s\n" % (ok, count - ok, time.monotonic() - t0, "; ".join("%s: %d" % kv for kv in why.items())))
os.rename(ready + ".tmp", ready)
signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
while True: signal.pause()
EOF
for ((k = 0; k < CLIENT_PROCS; k++)); do
  n=$((CONNS / CLIENT_PROCS + (k < CONNS % CLIENT_PROCS ? 1 : 0)))
  taskset -c "$CLIENT_CPUS" python3 "$tmp/client.py" 127.0.0.1 "$PORT" "$n" "$batch" "$URL_PATH" "$tmp/ready.$k" </dev/null 2>"$tmp/client.$k.err" &
  clients+=("$!")
done
t0=$SECONDS
for ((k = 0; k < CLIENT_PROCS; k++)); do
  while [[ ! -e $tmp/ready.$k ]]; do
    if ! kill -0 "${clients[$k]}" 2>/dev/null; then say "client $k exited:"; cat "$tmp/client.$k.err" >&2; exit 2; fi
    ((SECONDS - t0 < 300)) || die "the clients took more than 300 s"
    sleep 0.2
  done
done
ok=0
for ((k = 0; k < CLIENT_PROCS; k++)); do
  say "client $k: $(cat "$tmp/ready.$k")"
  ok=$((ok + $(sed -n 's/^ok=\([0-9]*\).*/\1/p' "$tmp/ready.$k")))
done
alive || die "the server died while the connections were opened"

sleep "$IDLE"
after=$(rss_kib) after_anon=$(field_kib RssAnon) tcp_after=$(tcp_mem_pages) hwm=$(field_kib VmHWM)
held=$(ss -Htn state established "( sport = :$PORT )" | wc -l)

# ---------------------------------------------------------------- report
delta=$((after - before))
page=$(getconf PAGESIZE)
awk -v b="$before" -v a="$after" -v d="$delta" -v ba="$before_anon" -v aa="$after_anon" -v hwm="$hwm" -v ok="$ok" -v n="$CONNS" \
  -v held="$held" -v lim="$LIMIT_MIB" -v tb="$tcp_before" -v ta="$tcp_after" -v page="$page" -v idle="$IDLE" -v cmd="$desc" -v info="$info" -v now="$(date -u '+%Y-%m-%d %H:%M UTC')" 'BEGIN {
  printf "## idle keep-alive memory, %s\n\n", now
  printf "- server: `%s`%s\n", cmd, info
  printf "- %d of %d connections served GET and stayed open; %d still established on the server side after %s s idle\n", ok, n, held, idle
  printf "- VmRSS before %.2f MiB, after %.2f MiB, delta %.2f MiB (RssAnon delta %.2f MiB); peak VmHWM %.2f MiB\n", b / 1024, a / 1024, d / 1024, (aa - ba) / 1024, hwm / 1024
  printf "- per connection: %d bytes of server RSS\n", (ok > 0 ? d * 1024 / ok : 0)
  printf "- kernel TCP buffer memory (both ends, not in RSS): %.2f MiB before, %.2f MiB after\n", tb * page / 1048576, ta * page / 1048576
  verdict = (ok == n && held >= n && d <= lim * 1024) ? "PASS" : "FAIL"
  why = ok < n ? " (not every connection was served)" : (held < n ? " (the server closed idle connections)" : "")
  printf "\n%s  %d idle keep-alive connections add %.2f MiB of resident memory (bar: at most %s MiB)%s\n", verdict, n, d / 1024, lim, why
  exit verdict == "PASS" ? 0 : 1
}' >"$tmp/report.md" && rc=0 || rc=$?
cat "$tmp/report.md"
if [[ -z $NO_SAVE ]]; then
  mkdir -p "$OUT_DIR"
  out=$OUT_DIR/idle-memory-$(date -u '+%Y-%m-%dT%H%MZ').md
  cp "$tmp/report.md" "$out"
  say "wrote $out"
fi
exit "$rc"
}
main "$@"; exit # on one line: bash must not read past it if this file changes while it runs
