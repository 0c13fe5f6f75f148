#!/usr/bin/env bash
# core-instructions.sh: instructions per pipelined request in the connection core, counted by
# callgrind on examples/core_loop.rs (16-deep batches of GET /plaintext, release build with the
# repository's profile), with the functions that execute them.
# usage: scripts/core-instructions.sh [BATCHES]    (default 20000; needs valgrind: apt-get install -y valgrind)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
batches=${1:-20000}
command -v valgrind >/dev/null || { echo "core-instructions: valgrind is missing (apt-get install -y valgrind)" >&2; exit 1; }
cd "$root"
cargo build --release --quiet --example core_loop
out=$(mktemp)
trap 'rm -f "$out"' EXIT
valgrind --tool=callgrind --callgrind-out-file="$out" target/release/examples/core_loop "$batches" >/dev/null 2>&1
total=$(callgrind_annotate "$out" | awk '/PROGRAM TOTALS/{gsub(",","",$1); print $1}')
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(git rev-parse --short HEAD 2>/dev/null || echo '?'): $((total / (batches * 16))) instructions per pipelined request ($total for $batches batches of 16)"
echo "inclusive, per request:"
callgrind_annotate --inclusive=yes "$out" | awk -v n=$((batches * 16)) '
  /^ *[0-9,]+ \(/ { v=$1; gsub(",","",v); if (v/n >= 20 && $0 ~ /(ringshard|httparse|memcpy|memmove|from_utf8)/) { sub(/^ *[0-9,]+ \([ 0-9.%]+\) +/, ""); sub(/ \[.*$/, ""); sub(/^.*registry\/src\/[^\/]*\//, ""); sub(/^\/rustc\/[0-9a-f]*\/library\//, ""); printf "%6d  %s\n", v/n, $0 } }' | head -15
