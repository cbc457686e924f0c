#!/usr/bin/env bash
# make bench: Go benchmarks, each reported as a ratio against a baseline
# measured in the same run (never against a fixed number: machines are shared
# and noisy).
set -euo pipefail
cd "$(dirname "$0")/.."

count=${BENCH_COUNT:-3}
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

mb=${TRIAD_BENCH_DB_MB:-500}
echo
echo ">> agent: etcd snapshot of a ${mb} MiB database, agent stream (verified, over mTLS) vs. client v3 snapshot.Save to a file"
TRIAD_BENCH_DB_MB=$mb go test -run '^$' -bench 'BenchmarkSnapshot' -benchtime 3x -count 1 ./agent/server/ 2>&1 | grep -v '^E[0-9]' | tee "$out"
awk '
  /^BenchmarkSnapshot\/client-v3-save/ { for (i = 1; i <= NF; i++) if ($(i+1) == "MB/s") s = $i }
  /^BenchmarkSnapshot\/agent-stream/   { for (i = 1; i <= NF; i++) if ($(i+1) == "MB/s") a = $i }
  END {
    if (s == "" || a == "") { print "missing benchmark results"; exit 1 }
    printf "\nsnapshot throughput: client v3 Save %.0f MB/s, agent stream %.0f MB/s, ratio agent/Save = %.2f\n", s, a, a/s
  }' "$out"

echo
./hack/bench-migrate.sh
