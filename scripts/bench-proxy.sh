#!/usr/bin/env bash
# bench-proxy.sh: ringshard as a reverse proxy beside nginx (and Pingora, when built), through
# ../shared/anchors/proxy.sh: the C epoll loop as the upstream and wrk -t1 on CPU 1, each proxy
# on CPU 0, interleaved rounds, requests per proxy CPU-second. ringshard runs one shard with a
# proxy route at / to the upstream, its defaults otherwise, and publishes /metrics on a port of
# its own, from which the script reports how many upstream connections it opened per 1,000
# requests it sent upstream.
#
# usage: scripts/bench-proxy.sh
# environment: CONNS ["8 16 64"], MODES ["keepalive pipe16"], ROUNDS [3], DUR [5],
#   RINGSHARD_BIN, ANCHORS [../shared/anchors], SAVE_AS (a file for the report; default
#   scripts/out/bench-proxy-DATE.md, NO_SAVE=1: none); the rest as proxy.sh (PINGORA=... etc.)
# Needs nginx, wrk and gcc; Pingora: `apt-get install -y cmake` and
# `cargo build --release --features pingora` in the anchors' rs/.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
anchors=${ANCHORS:-$root/../shared/anchors}
RINGSHARD_BIN=${RINGSHARD_BIN:-$root/target/release/ringshard}
export CONNS=${CONNS:-8 16 64} MODES=${MODES:-keepalive pipe16} ROUNDS=${ROUNDS:-3} DUR=${DUR:-5}
up=${UP_PORT:-18700} port=18705 metrics=18706
[[ -x $RINGSHARD_BIN ]] || { echo "bench-proxy: no ringshard at $RINGSHARD_BIN (cargo build --release)" >&2; exit 1; }
[[ -x $anchors/proxy.sh ]] || { echo "bench-proxy: no proxy.sh in $anchors" >&2; exit 1; }

tmp=$(mktemp -d /tmp/bench-proxy.XXXXXX)
cat > "$tmp/proxy.toml" <<CONF
[server]
listen = "127.0.0.1:$port"
shards = 1
[metrics]
listen = "127.0.0.1:$metrics"
[health]
enabled = false
[[route]]
prefix = "/"
proxy = "http://127.0.0.1:$up"
CONF
setsid taskset -c "${PROXY_CPU:-0}" "$RINGSHARD_BIN" serve --config "$tmp/proxy.toml" > "$tmp/ringshard.log" 2>&1 < /dev/null &
sid=$!
trap 'kill -TERM -- "-$sid" 2>/dev/null; sleep 0.3; rm -rf "$tmp"' EXIT
sleep 0.3

out=${SAVE_AS:-$root/scripts/out/bench-proxy-$(date -u +%Y-%m-%dT%H%MZ).md}
report=$({
  echo "# bench-proxy $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, $(uname -r), ringshard $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')"
  "$anchors/proxy.sh" "ringshard:$port:$sid"
  page=$(curl -s "http://127.0.0.1:$metrics/metrics")
  total() { echo "$page" | awk -v m="ringshard_$1" 'index($1, m "{") == 1 {t += $2} END {print t + 0}'; }
  c=$(total upstream_connects_total) n=$(total upstream_requests_total)
  echo
  echo "ringshard upstream connections: $c opened for $n requests sent upstream ($(awk -v c="$c" -v n="$n" 'BEGIN{printf "%.4f", (n > 0 ? 1000 * c / n : 0)}') per 1,000); retries $(total upstream_retries_total), failures $(total upstream_failures_total)"
})
echo "$report"
[[ -n ${NO_SAVE:-} ]] || { mkdir -p "$(dirname "$out")"; echo "$report" > "$out"; echo "saved to $out" >&2; }
