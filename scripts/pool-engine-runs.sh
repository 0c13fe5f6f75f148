#!/usr/bin/env bash
# pool-engine-runs.sh: pools the runs of several saved scripts/bench-engine.sh reports and prints,
# per server, mode and connection count, the median over all of them (requests per server
# CPU-second, p99), ringshard's ratios to may_minihttp and to the C epoll ceiling, and the bars of
# the engine issue at 64 connections. On a VM whose speed drifts within the hour, one report's
# medians move by a few percent; pooling reports made at different times says where the figures
# really sit. It also pairs the runs of one round (the j-th run of each server in a report) and
# prints the median of the within-round ratios, which the drift between rounds moves less.
#
# p99 is also given in closed-loop cycles: wrk keeps each connection's next request until the
# last response is read, so with one wrk thread at full load a connection comes round once every
# conns ÷ req/s seconds (Little's law), and any server that keeps wrk saturated shows a p99 of
# about one cycle at least (a request written just after its connection's previous response was
# read waits almost all of it). p99 ÷ cycle says how much the server, and the host's stalls, add
# to the tail beyond wrk's own turn-taking; where both servers sit near 1, their p99s differ as
# their req/s do, which wrk, not the server, sets.
#
# usage: scripts/pool-engine-runs.sh scripts/out/bench-engine-2026-11-26T*.md
set -euo pipefail
(($#)) || { echo "usage: $0 REPORT.md ..." >&2; exit 2; }
for f in "$@"; do [[ -r $f ]] || { echo "pool-engine-runs: cannot read $f" >&2; exit 1; }; done

awk '
  FNR == 1 { inruns = 0; fence = 0; files++ }
  /^<details><summary>every run:/ { inruns = 1; next }
  inruns && /^```/ { if (++fence == 2) inruns = 0; next }
  inruns && fence == 1 && NF >= 6 {
    k = $1 " " $2 " " $3
    n[k]++; eff[k, n[k]] = $6; p99[k, n[k]] = $5
    if (!(k in seen)) { seen[k] = 1; keys[++nk] = k }
    # The j-th run of a server in a report went with the j-th run of every other (same round
    # when the report was interleaved): the pairs give ratios measured close together in time.
    cyc[k, n[k]] = $5 * $4 / ($3 * 1000) # p99 in cycles of conns / req/s
    j = ++nth[FILENAME, k]; at[FILENAME, j, k] = $6; atp[FILENAME, j, k] = $5
    if (!((FILENAME, j) in slot)) { slot[FILENAME, j] = 1; slots[++ns] = FILENAME SUBSEP j }
  }
  function median(arr, k, m,    i, j, t, v) {
    for (i = 1; i <= m; i++) v[i] = arr[k, i] + 0
    for (i = 2; i <= m; i++) { t = v[i]; for (j = i - 1; j >= 1 && v[j] > t; j--) v[j + 1] = v[j]; v[j + 1] = t }
    return (m % 2) ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2
  }
  END {
    if (!nk) { print "pool-engine-runs: no runs found in these reports" > "/dev/stderr"; exit 1 }
    printf "%d reports pooled\n\n| server | mode | conns | runs | req per server CPU-s (median) | p99 (median) | p99 ÷ cycle (median) |\n|---|---|---:|---:|---:|---:|---:|\n", files
    for (i = 1; i <= nk; i++) {
      k = keys[i]; split(k, p, " ")
      e[k] = median(eff, k, n[k]); q[k] = median(p99, k, n[k])
      ka = p[2] == "keepalive"
      printf "| %s | %s | %s | %d | %d | %s | %s |\n", p[1], p[2], p[3], n[k], e[k], (ka ? sprintf("%.3f ms", q[k]) : "n/a"), (ka ? sprintf("%.2f", median(cyc, k, n[k])) : "n/a")
    }
    print ""
    bar("ringshard keepalive 64", "may keepalive 64", 1.2, "keep-alive c=64: req per server CPU-s >= 1.2 x may_minihttp")
    bar("ringshard keepalive 64", "epoll keepalive 64", 1.0, "keep-alive c=64: req per server CPU-s >= the C epoll ceiling")
    bar("ringshard pipe16 64", "may pipe16 64", 1.3, "pipelined x16 c=64: req per server CPU-s >= 1.3 x may_minihttp")
    a = "ringshard keepalive 64"; b = "may keepalive 64"
    if ((a in e) && (b in e))
      printf "- %s  keep-alive c=64: p99 <= may_minihttp p99: %.3f ms vs %.3f ms\n", (q[a] <= q[b] ? "PASS" : "FAIL"), q[a], q[b]
    print "\nPaired (the median over rounds of the ratio within a round, which the host'"'"'s drift between rounds moves less):\n"
    paired("ringshard keepalive 64", "may keepalive 64", 1.2, "keep-alive c=64 vs may_minihttp", 0)
    paired("ringshard keepalive 64", "epoll keepalive 64", 1.0, "keep-alive c=64 vs the C epoll ceiling", 0)
    paired("ringshard pipe16 64", "may pipe16 64", 1.3, "pipelined x16 c=64 vs may_minihttp", 0)
    paired("ringshard keepalive 64", "may keepalive 64", 1.0, "keep-alive c=64 p99, may_minihttp over ringshard", 1)
  }
  function paired(a, b, x, what, lat,    i, m, r, v, below) {
    m = 0
    for (i = 1; i <= ns; i++) {
      if (!((slots[i], a) in at) || !((slots[i], b) in at)) continue
      v = lat ? atp[slots[i], b] / atp[slots[i], a] : at[slots[i], a] / at[slots[i], b]
      r["", ++m] = v; below += (v < x)
    }
    if (!m) return
    v = median(r, "", m)
    printf "- %s  %s: %.3f x (median of %d pairs; %d of them below %.2f)\n", (v >= x ? "PASS" : "FAIL"), what, v, m, below, x
  }
  function bar(a, b, x, what,    r) {
    if (!((a in e) && (b in e))) return
    r = e[a] / e[b]
    printf "- %s  %s: %d vs %d (%.3f x)\n", (r >= x ? "PASS" : "FAIL"), what, e[a], e[b], r
  }
' "$@"
