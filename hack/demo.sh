#!/usr/bin/env bash
# make demo — the main job on the local cloud:
#   1. triad's PKI and an agent over mutual TLS (roles, fencing);
#   2. a single-node Kubernetes control plane in a local-cloud VM, from
#      binaries built from pinned sources, checked through its triad-agent;
#   3. its migration to three nodes behind load balancers, then a rolling
#      upgrade of the three nodes to the local cloud's second image.
# Set DEMO_KEEP=1 to leave the local cluster running ('triad local down'
# removes it).
set -euo pipefail
cd "$(dirname "$0")/.."

dist=$PWD/dist
work=$(mktemp -d "${TMPDIR:-/tmp}/triad-demo.XXXXXX")
state=$work/localcloud
agent_pid=
cleanup() {
  if [ -n "$agent_pid" ]; then kill "$agent_pid" 2>/dev/null || true; wait "$agent_pid" 2>/dev/null || true; fi
  if [ -z "${DEMO_KEEP:-}" ]; then
    "$dist/triad" local down --state-dir "$state" >/dev/null 2>&1 || true
    rm -rf "$work"
  fi
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
triad() { "$dist/triad" --pki-dir "$work/pki" "$@"; }

step "1. create triad's CA and certificates (triad pki)"
triad pki init
triad pki issue agent --name demo
triad pki issue coordinator --name default
triad pki issue observer --name dashboards

step "2. start a standalone triad-agent for cluster 'demo' on 127.0.0.1:19443 (mTLS only)"
"$dist/triad-agent" --cluster demo --node-name demo-cp-0 --listen 127.0.0.1:19443 --gate-listen 127.0.0.1:19444 \
  --apiserver-url "" --etcd-endpoint "" \
  --state-dir "$work/agent-state" --log-format text \
  --tls-cert "$work/pki/agents/demo.crt" --tls-key "$work/pki/agents/demo.key" --tls-ca "$work/pki/ca.crt" \
  2> "$work/agent.log" &
agent_pid=$!
up=
for _ in $(seq 100); do
  if triad agent info --endpoint 127.0.0.1:19443 --cluster demo --timeout 1s >/dev/null 2>&1; then up=1; break; fi
  if ! kill -0 "$agent_pid" 2>/dev/null; then break; fi
  sleep 0.1
done
if [ -z "$up" ]; then echo "triad-agent did not come up:"; cat "$work/agent.log"; exit 1; fi

step "3. the coordinator opens the gate (epoch 1); an observer may read but not mutate"
triad agent gate set open --endpoint 127.0.0.1:19443 --cluster demo --operation-id demo-1 --epoch 1
triad agent gate get --endpoint 127.0.0.1:19443 --cluster demo --as observer/dashboards
if triad agent gate set closed --endpoint 127.0.0.1:19443 --cluster demo --as observer/dashboards --operation-id demo-2 --epoch 1; then
  echo "UNEXPECTED: observer changed the gate"; exit 1
fi

step "4. a second coordinator takes over with epoch 5; the first one (epoch 4) is now refused"
triad agent gate set closed --endpoint 127.0.0.1:19443 --cluster demo --operation-id demo-3 --epoch 5
if triad agent gate set open --endpoint 127.0.0.1:19443 --cluster demo --operation-id demo-4 --epoch 4; then
  echo "UNEXPECTED: stale epoch accepted"; exit 1
fi
kill "$agent_pid"; wait "$agent_pid" 2>/dev/null || true; agent_pid=

step "5. a single-node control plane in the local cloud (kubeadm layout, real etcd and kube-apiserver)"
s=$SECONDS
created=$(triad local cluster create --name demo --state-dir "$state" --kubeconfig "$work/kubeconfig" --cluster-config "$work/cluster.yaml" -o json \
  --agent-binary "$dist/triad-agent" --cloud-binary "$dist/triad-cloud-local" --bin-dir "$K8S_BIN" --kwok-nodes 3)
echo "$created"
echo "(took $((SECONDS - s))s)"
private=$(printf '%s' "$created" | grep -o '"privateIP": *"[^"]*"' | cut -d'"' -f4)

step "6. the node as its triad-agent sees it (real etcd, real kube-apiserver, static pods over CRI)"
triad agent health --endpoint "$private:9443" --cluster demo --as observer/dashboards

step "7. through the public address: kwok nodes and a Deployment's pods on them"
kubectl() { "$K8S_BIN/kubectl" --kubeconfig "$work/kubeconfig" "$@"; }
kubectl create deployment web --image=example/web:1 --replicas=3 >/dev/null
kubectl patch deployment web -p '{"spec":{"template":{"spec":{"nodeSelector":{"type":"kwok"}}}}}' >/dev/null
kubectl wait --for=condition=Ready node -l type=kwok --timeout=120s >/dev/null
kubectl rollout status deployment/web --timeout=120s
kubectl get nodes -o wide
kubectl get pods -o wide

step "8. the migration plan: single node -> 3 nodes behind load balancers on the old addresses"
triad migrate plan -f "$work/cluster.yaml"

step "9. the migration, live (progress on stderr; the journal is in the cluster's stateDir)"
s=$SECONDS
triad migrate run -f "$work/cluster.yaml"
echo "(took $((SECONDS - s))s)"

step "10. the same clients, the same addresses: nodes Ready, the same pods; triad status from the agents"
kubectl get nodes
kubectl get pods -o wide
triad status -f "$work/cluster.yaml"

next=$(cat "$K8S_BIN/next/version")
image=control-plane-${next//+/_}
step "11. day 2: a rolling upgrade to image $image (Kubernetes $next), one node at a time"
s=$SECONDS
triad upgrade run -f "$work/cluster.yaml" --image "$image" --kubernetes-version "$next"
echo "(took $((SECONDS - s))s)"
triad status -f "$work/cluster.yaml"

if [ -n "${DEMO_KEEP:-}" ]; then
  echo; echo "left running; remove with: $dist/triad local down --state-dir $state"
fi
