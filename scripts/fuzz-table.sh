#!/usr/bin/env bash
# Prints, from fuzz/runs.tsv, one Markdown row per fuzz target: runs, executions and
# core-seconds summed over its runs, executions per core-second, the largest queue (paths) any
# run ended with, and the crashes and hangs found.
set -euo pipefail
runs="$(dirname "$0")/../fuzz/runs.tsv"
[ -f "$runs" ] || { echo "fuzz-table: no $runs (run scripts/fuzz.sh first)" >&2; exit 1; }
echo "| target | runs | executions | core-seconds | execs/s | paths | crashes | hangs |"
echo "|---|---|---|---|---|---|---|---|"
awk -F'\t' 'NR > 1 {
    n[$2]++; e[$2] += $3; c[$2] += $6; h[$2] += $7; s[$2] += $8
    if ($5 > p[$2]) p[$2] = $5
} END {
    for (t in n) printf "| %s | %d | %.2fM | %d | %.0f | %d | %d | %d |\n",
        t, n[t], e[t] / 1e6, s[t], (s[t] > 0 ? e[t] / s[t] : 0), p[t], c[t], h[t]
}' "$runs" | sort
