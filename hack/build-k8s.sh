#!/usr/bin/env bash
# Builds the control-plane binaries triad runs locally from the pinned
# sources (tools/k8s/go.mod, tools/kwok/go.mod) into
#   ${XDG_CACHE_HOME:-$HOME/.cache}/triad/bin/<kubernetes version>/
# once per version: etcd, etcdctl, etcdutl, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubeadm, kubectl and kwok. Nothing is
# downloaded but Go modules. The Kubernetes build takes about 8 minutes on a
# cold 2-core machine; a warm cache returns at once.
#
#   hack/build-k8s.sh          build what is missing, print the directory
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(cd tools/k8s && go list -m -f '{{.Version}}' k8s.io/kubernetes)
kwok_version=$(cd tools/kwok && go list -m -f '{{.Version}}' sigs.k8s.io/kwok)
[ -n "$version" ] && [ -n "$kwok_version" ] || { echo "pins not found in tools/k8s or tools/kwok" >&2; exit 1; }
out=${XDG_CACHE_HOME:-$HOME/.cache}/triad/bin/$version
mkdir -p "$out/next"

# Kubernetes binaries report their version through component-base, as a
# release build stamps it (hack/lib/version.sh upstream).
minor=${version#v*.}; minor=${minor%%.*}
k8s_ldflags="-X k8s.io/component-base/version.gitVersion=$version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
k8s_ldflags="$k8s_ldflags -X k8s.io/client-go/pkg/version.gitVersion=$version -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"

build() { # name module-dir package [ldflags]
  local name=$1 dir=$2 pkg=$3 ldflags=${4:-}
  if [ -x "$out/$name" ]; then return; fi
  local start=$SECONDS
  echo ">> building $name ($pkg) into $out" >&2
  local tmp="$out/$(dirname "$name")/.$(basename "$name").tmp"
  (cd "$dir" && go build -trimpath -ldflags "$ldflags" -o "$tmp" "$pkg")
  mv "$tmp" "$out/$name"
  echo "   $name built in $((SECONDS - start))s" >&2
}

build etcd                    tools/k8s  ./cmd/etcd
build etcdctl                 tools/k8s  go.etcd.io/etcd/etcdctl/v3
build etcdutl                 tools/k8s  go.etcd.io/etcd/etcdutl/v3
build kube-apiserver          tools/k8s  k8s.io/kubernetes/cmd/kube-apiserver "$k8s_ldflags"
build kube-controller-manager tools/k8s  k8s.io/kubernetes/cmd/kube-controller-manager "$k8s_ldflags"
build kube-scheduler          tools/k8s  k8s.io/kubernetes/cmd/kube-scheduler "$k8s_ldflags"
build kubeadm                 tools/k8s  k8s.io/kubernetes/cmd/kubeadm "$k8s_ldflags"
build kubectl                 tools/k8s  k8s.io/kubernetes/cmd/kubectl "$k8s_ldflags"
build kubelet                 tools/k8s  k8s.io/kubernetes/cmd/kubelet "$k8s_ldflags"
build kwok                    tools/kwok sigs.k8s.io/kwok/cmd/kwok

# The release the local cloud's second image upgrades to: the same pinned
# sources re-linked as <version>+triad.1 (build metadata: same precedence,
# a rebuild, not a new Kubernetes release). Only the link step runs again,
# so it costs seconds instead of a second 8-minute build; the upgrade is
# observable (/version, image tags, triad status) while no code differs.
next=${version}+triad.1
next_ldflags=${k8s_ldflags//$version/$next}
for c in kube-apiserver kube-controller-manager kube-scheduler; do
  build "next/$c" tools/k8s "k8s.io/kubernetes/cmd/$c" "$next_ldflags"
done
echo "$next" > "$out/next/version"
echo "$kwok_version" > "$out/kwok.version"
# kwok refuses to act without Stage objects: take the node-initialize,
# node-heartbeat-with-lease and pod stages its module ships.
# (go list -m names no directory until the module is in the module cache,
# which a warm binary cache lets the builds above skip: download it first.)
stages=$(cd tools/kwok && go mod download -json sigs.k8s.io/kwok | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')/kustomize/stage
[ -d "$stages" ] || { echo "kwok's stages not found (module directory: '$stages')" >&2; exit 1; }
for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
         pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
  echo "---"; cat "$stages/$f"
done > "$out/kwok-stages.yaml"
echo "$out"
