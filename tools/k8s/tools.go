//go:build tools

// Package tools pins the Kubernetes control-plane commands triad builds from
// source: kubeadm (test data), kube-apiserver, kube-controller-manager and
// kube-scheduler (the local cloud's images).
package tools

import (
	_ "k8s.io/kubernetes/cmd/kubeadm"
)
