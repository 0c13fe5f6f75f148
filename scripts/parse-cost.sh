#!/usr/bin/env bash
# parse-cost.sh: time per request in the connection core (examples/core_loop.rs: parse, route,
# answer, 16-deep pipelined batches) with httparse's SIMD paths (runtime-detected SSE4.2/AVX2 on
# x86-64) against its portable 8-bytes-at-a-time (SWAR) path, for three request shapes: what wrk
# sends (49 bytes), a browser's navigation request (448 bytes), a request with a 1.3 KB cookie.
#
# Why: the build picks one of the two for every x86-64 build (.cargo/config.toml), and which is
# faster depends on more than the vector width (on x86-64 the SIMD matchers are out-of-line calls
# behind a runtime feature check; the SWAR ones inline into the parser's loop).
#
# Each build gets its own target directory under target/parse-cost/. Runs alternate between the
# builds, ROUNDS times per shape, each pinned to CPU; prints the fastest and the median ns per
# request (wall time, as this VM exposes no cycle counters) and SWAR's as a share of SIMD's. The
# fastest run is the steadier figure on a shared host: other tenants only ever add time.
# usage: scripts/parse-cost.sh    environment: ROUNDS [7], CPU [1], SHAPES ["wrk browser cookie"];
#   OUT_DIR [<repo>/scripts/out] gets a copy (parse-cost-<UTC date>.md), NO_SAVE=1 writes none
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=common.sh
source "$root/scripts/common.sh"
ROUNDS=${ROUNDS:-7} CPU=${CPU:-1} SHAPES=${SHAPES:-wrk browser cookie}
OUT_DIR=${OUT_DIR:-$root/scripts/out} NO_SAVE=${NO_SAVE:-}
cd "$root"
declare -A flags=([simd]="" [swar]='--cfg httparse_disable_simd="1"')
for b in simd swar; do
  # RUSTFLAGS, even empty, replaces the rustflags of .cargo/config.toml: each build is only its own.
  RUSTFLAGS=${flags[$b]} CARGO_TARGET_DIR=$root/target/parse-cost/$b \
    cargo build --release --quiet --example core_loop
done
bin() { echo "$root/target/parse-cost/$1/release/examples/core_loop"; }
simd_fns() { nm -C "$(bin "$1")" | grep -c 'httparse::simd::\(avx2\|sse42\)' || true; }
(($(simd_fns simd) > 0)) || echo "parse-cost: warning: the simd build has no httparse SIMD code (not x86-64?)" >&2
(($(simd_fns swar) == 0)) || { echo "parse-cost: the swar build still has SIMD code" >&2; exit 1; }
time_ns() { # build shape batches -> ns per request
  local s e
  s=$(date +%s%N)
  # (a command substitution ignores set -e: a run that fails must stop the script here)
  taskset -c "$CPU" "$(bin "$1")" "$3" "$2" >/dev/null || { echo "parse-cost: core_loop failed ($1, $2)" >&2; exit 1; }
  e=$(date +%s%N)
  awk -v t=$((e - s)) -v n="$3" 'BEGIN { printf "%.1f", t / (n * 16) }'
}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
{
echo "## parse-cost: httparse SIMD against SWAR, $(date -u '+%Y-%m-%d %H:%M UTC'), $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo
echo "- $(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo), CPU $CPU; $ROUNDS alternating runs per shape and build"
echo
echo "| request | bytes | SIMD ns/request, fastest | SWAR, fastest | SWAR ÷ SIMD, fastest | SIMD, median | SWAR, median | SWAR ÷ SIMD, median |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for shape in $SHAPES; do
  case $shape in wrk) n=300000 bytes=49 ;; browser) n=100000 bytes=448 ;; cookie) n=40000 bytes=1624 ;;
    *) echo "parse-cost: unknown shape $shape" >&2; exit 2 ;; esac
  a=() b=()
  for ((r = 0; r < ROUNDS; r++)); do a+=("$(time_ns simd "$shape" "$n")"); b+=("$(time_ns swar "$shape" "$n")"); done
  ma=$(printf '%s\n' "${a[@]}" | median) mb=$(printf '%s\n' "${b[@]}" | median)
  fa=$(printf '%s\n' "${a[@]}" | sort -n | head -1) fb=$(printf '%s\n' "${b[@]}" | sort -n | head -1)
  awk -v s="$shape" -v by="$bytes" -v fa="$fa" -v fb="$fb" -v a="$ma" -v b="$mb" \
    'BEGIN { printf "| %s | %d | %.1f | %.1f | %.3f | %.1f | %.1f | %.3f |\n", s, by, fa, fb, fb / fa, a, b, b / a }'
done
} | tee "$log"
save_report parse-cost "$log"
