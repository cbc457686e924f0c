#!/usr/bin/env bash
# Regenerates the kubeadm test data of agent/manifests and agent/nodecerts
# with the real kubeadm built from the pinned Kubernetes release
# (tools/k8s/go.mod). The output is committed; CI does not run this.
#
#   hack/kubeadm-testdata.sh
#
# kubeadm writes to fixed paths under /etc/kubernetes, so it runs chrooted
# (--rootfs) into a scratch directory; that needs root.
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(cd tools/k8s && go list -m -f '{{.Version}}' k8s.io/kubernetes)
[ -n "$version" ] || { echo "no k8s.io/kubernetes pin in tools/k8s/go.mod"; exit 1; }
bin=${XDG_CACHE_HOME:-$HOME/.cache}/triad/bin/$version
if [ ! -x "$bin/kubeadm" ]; then
  echo ">> building kubeadm $version (several minutes on a cold cache)"
  (cd tools/k8s && go build -o "$bin/kubeadm" k8s.io/kubernetes/cmd/kubeadm)
fi

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/etc/kubernetes" "$root/tmp"
cat > "$root/tmp/kubeadm.yaml" <<CFG
apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: 10.0.0.10
  bindPort: 6443
nodeRegistration:
  name: cp-0
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: $version
clusterName: prod-eu1
apiServer:
  certSANs:
  - 203.0.113.10
  - api.prod-eu1.example.com
CFG
cmds=(
  "kubeadm init phase certs all --config /tmp/kubeadm.yaml"
  "kubeadm init phase control-plane all --config /tmp/kubeadm.yaml"
  "kubeadm init phase etcd local --config /tmp/kubeadm.yaml"
)
for c in "${cmds[@]}"; do
  echo ">> $c (--rootfs $root)"
  "$bin/kubeadm" ${c#kubeadm } --rootfs "$root"
done

out=testdata/kubeadm-$version
for dst in agent/manifests/$out agent/nodecerts/$out; do rm -rf "$dst"; mkdir -p "$dst"; done
cp "$root"/etc/kubernetes/manifests/*.yaml agent/manifests/$out/
cp -r "$root"/etc/kubernetes/pki agent/nodecerts/$out/pki
for dst in agent/manifests/$out agent/nodecerts/$out; do
  {
    echo "Produced by hack/kubeadm-testdata.sh with kubeadm $version (k8s.io/kubernetes, tools/k8s/go.mod):"
    echo
    echo "kubeadm config (/tmp/kubeadm.yaml):"
    sed 's/^/    /' "$root/tmp/kubeadm.yaml"
    echo
    echo "commands, each run with --rootfs <scratch dir>:"
    for c in "${cmds[@]}"; do echo "    $c"; done
    echo
    echo "The keys here are test fixtures generated for this directory only."
  } > "$dst/COMMAND.txt"
done
echo ">> wrote agent/manifests/$out and agent/nodecerts/$out"
