//go:build tools

// Package tools pins the Kubernetes control-plane commands triad builds from
// source (hack/build-k8s.sh): kubeadm (test data), kube-apiserver,
// kube-controller-manager and kube-scheduler (the local cloud's
// control-plane image), and etcdctl and etcdutl (baselines). The etcd server
// is ./cmd/etcd.
package tools

import (
	_ "go.etcd.io/etcd/etcdctl/v3"
	_ "go.etcd.io/etcd/etcdutl/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubeadm"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
