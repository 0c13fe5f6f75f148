# common.sh: helpers the measuring scripts share; sourced, never run.

# Whether nothing listens on TCP port $1. A server left on a port would, with SO_REUSEPORT, take
# a share of the next one's connections unseen.
port_free() { [[ -z $(ss -Hltn "sport = :$1" 2>/dev/null) ]]; }

# The first port from $1 up that nothing listens on.
pick_port() { local p=$1; while ! port_free "$p"; do p=$((p + 1)); done; echo "$p"; }

# The median of the numbers on standard input, one per line.
median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# User + system CPU ticks of every process in session $1 (a server started with setsid).
session_ticks() {
  local t=0 p
  for p in $(pgrep -s "$1"); do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done
  echo "$t"
}

# Copies report $2 to OUT_DIR/$1-<UTC date>.md (a suffix where that exists: never overwrites a
# run) unless NO_SAVE is set.
save_report() {
  [[ -z ${NO_SAVE:-} ]] || return 0
  mkdir -p "$OUT_DIR"
  local stamp f n=1
  stamp=$(date -u +%Y-%m-%dT%H%MZ)
  f=$OUT_DIR/$1-$stamp.md
  while [[ -e $f ]]; do n=$((n + 1)); f=$OUT_DIR/$1-$stamp-$n.md; done
  cp "$2" "$f" && echo "saved: $f" >&2
}

# Stops every process in the sessions listed in the array `sids` (TERM, then KILL after 0.5 s).
stop_sessions() {
  local s
  for s in "${sids[@]}"; do pkill -TERM -s "$s" 2>/dev/null || true; done
  sleep 0.5
  for s in "${sids[@]}"; do pkill -KILL -s "$s" 2>/dev/null || true; done
}
