#!/usr/bin/env bash
# Benchmark: orchestrate's overhead over a graph's critical path.
#
# Runs BenchmarkRandomDAG in ./orchestrate: a 1,000-step random DAG (fixed
# seed; every step sleeps 2-6 ms and depends on 1-3 earlier steps) run with
# Parallelism 64, RUNS times (default 10). Prints the machine, the mean wall
# time, the mean critical-path duration and their ratio. The architecture's
# budget is "a plan finishes in its critical path's time": a ratio within
# 1.05.
#
# Usage: bench/orchestrate.sh        (RUNS=10 by default)
. "$(dirname "$0")/lib.sh"
runs=${RUNS:-10}

machine_info

out=$(go test -run '^$' -bench '^BenchmarkRandomDAG$' -benchtime "${runs}x" -count 1 ./orchestrate/)
line=$(echo "$out" | grep '^BenchmarkRandomDAG') || { echo "$out" >&2; exit 1; }
# metric NAME: the value printed before unit NAME on the benchmark line.
metric() { echo "$line" | awk -v unit="$1" '{ for (i = 2; i <= NF; i++) if ($i == unit) print $(i - 1) }'; }

echo
echo "1000 steps, Parallelism 64, mean of $runs runs:"
echo "wall time:           $(metric wall-ms) ms"
echo "critical path:       $(metric critical-ms) ms"
echo "ratio wall/critical: $(metric wall/critical-path) (budget: at most 1.05)"
