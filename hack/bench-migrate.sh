#!/usr/bin/env bash
# The migration's write-unavailability window for an etcd of ~N MB
# (TRIAD_BENCH_MIGRATE_MB, default 500) next to its floor measured in the
# same run on the same cluster: etcdctl snapshot save + etcdutl snapshot
# restore + a kube-apiserver restart until /readyz. Printed as a ratio.
set -euo pipefail
cd "$(dirname "$0")/.."

mb=${TRIAD_BENCH_MIGRATE_MB:-500}
bin=${TRIAD_K8S_BIN:?set TRIAD_K8S_BIN (make bench does)}
dist=$PWD/dist
work=$(mktemp -d /tmp/triad-bench-migrate.XXXXXX)
export HOME=$work/home
cleanup() {
  "$dist/triad" local down --state-dir "$work/cloud" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc; }

echo ">> migration window with a ${mb} MB etcd vs. its floor (same cluster, same run)"
cd "$work"
"$dist/triad" --pki-dir pki local --state-dir "$work/cloud" cluster create --name bench --bin-dir "$bin" \
  --agent-binary "$dist/triad-agent" --cloud-binary "$dist/triad-cloud-local" --kwok-nodes 3 -o json >create.json 2>create.log
ip=$(sed -n 's/.*"privateIP": "\([^"]*\)".*/\1/p' create.json)
inst=$(sed -n 's/.*"instance": "\([^"]*\)".*/\1/p' create.json)
pki=$work/cloud/vms/$inst/disks/root/etc/kubernetes/pki
etcdctl() { "$bin/etcdctl" --endpoints "https://$ip:2379" --cacert "$pki/etcd/ca.crt" --cert "$pki/apiserver-etcd-client.crt" --key "$pki/apiserver-etcd-client.key" "$@"; }

head -c 1000000 /dev/urandom >value
t=$(now)
for i in $(seq 1 "$mb"); do etcdctl put "/triad-bench/fill-$i" <value >/dev/null; done
db=$(etcdctl endpoint status -w json | grep -o '"dbSize":[0-9]*' | cut -d: -f2)
echo "   filled etcd with ${mb} x 1 MB in $(since "$t" | xargs printf '%.0f')s: database $((db / 1000000)) MB"

# Floor, part 1 and 2: what a hand-run migration cannot avoid for this data.
t=$(now); etcdctl snapshot save floor.db >/dev/null 2>&1; save=$(since "$t")
t=$(now); "$bin/etcdutl" snapshot restore floor.db --data-dir restored >/dev/null 2>&1; restore=$(since "$t")
# Part 3: kube-apiserver from process start to /readyz (the kubelet
# restarts it once killed).
ca=$pki/ca.crt
pkill -KILL -f "kube-apiserver.*--advertise-address=$ip" || true
t=$(now)
sleep 0.2
until curl -sf --cacert "$ca" "https://$ip:6443/readyz" >/dev/null 2>&1; do sleep 0.1; done
apiserver=$(since "$t")
floor=$(echo "$save + $restore + $apiserver" | bc)

sleep 5
"$dist/triad" migrate run -f cluster.yaml >migrate.log 2>&1 || { cat migrate.log; exit 1; }
window=$("$dist/triad" migrate status -f cluster.yaml -o json | sed -n 's/.*"windowSeconds": \([0-9.]*\).*/\1/p')
grep -E 'done in' migrate.log | sed 's/^/   /'
printf '\nfloor: snapshot save %.1fs + restore %.1fs + kube-apiserver start %.1fs = %.1fs\n' "$save" "$restore" "$apiserver" "$floor"
printf 'migration write-unavailability window %.1fs, ratio window/floor = %.2f\n' "$window" "$(echo "$window / $floor" | bc -l)"

# The rolling upgrade of the same cluster (a ${mb} MB etcd each learner
# must catch up with) to the local cloud's second image: per node, the
# total next to its parts, all measured in this run.
next=$(cat "$bin/next/version")
image=control-plane-${next//+/_}
echo
echo ">> rolling upgrade of the same cluster to $image (etcd ${mb} MB)"
t=$(now)
"$dist/triad" upgrade run -f cluster.yaml --image "$image" --kubernetes-version "$next" >upgrade.log 2>&1 || { cat upgrade.log; exit 1; }
total=$(since "$t")
"$dist/triad" upgrade status -f cluster.yaml | sed -n '/^OLD NODE/,$p' | sed 's/^/   /'
"$dist/triad" upgrade status -f cluster.yaml | awk '
  /^OLD NODE/ { on = 1; next }
  on && NF >= 11 {
    gsub("s", "", $5); gsub("s", "", $6); gsub("s", "", $7); gsub("s", "", $8); gsub("s", "", $11)
    parts = $6 + $7 + $8
    printf "node %s: %.1fs; VM create %.1fs + learner catch-up %.1fs + kube-apiserver ready %.1fs = %.1fs, ratio node/parts = %.2f\n", $1, $11, $6, $7, $8, parts, $11 / parts
  }'
grep -o 'availability: .*failed' upgrade.log | sed 's/^/   /'
printf 'upgrade of 3 nodes: %.1fs\n' "$total"
