#!/usr/bin/env bash
# make bench: Go benchmarks, each reported as a ratio against a baseline
# measured in the same run (never against a fixed number: machines are shared
# and noisy).
set -euo pipefail
cd "$(dirname "$0")/.."

count=${BENCH_COUNT:-5}
out=$(mktemp)
trap 'rm -f "$out"' EXIT

echo ">> agent: SetGate over mTLS, full interceptor chain vs. no interceptors (${count} runs each)"
go test -run '^$' -bench 'BenchmarkSetGate' -benchtime 2000x -count "$count" ./agent/server/ | tee "$out"

awk '
  /^BenchmarkSetGate\/baseline/ { b += $3; nb++ }
  /^BenchmarkSetGate\/chain/    { c += $3; nc++ }
  END {
    if (nb == 0 || nc == 0) { print "missing benchmark results"; exit 1 }
    printf "\nSetGate: baseline %.0f ns/op, chain %.0f ns/op, ratio chain/baseline = %.2f\n", b/nb, c/nc, (c/nc)/(b/nb)
  }' "$out"
