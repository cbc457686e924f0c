package localcluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/triad-k8s/triad/agent/atomicfile"
	"github.com/triad-k8s/triad/cloudplugins/local"
)

// KwokAnnotation marks the nodes kwok simulates.
const KwokAnnotation = "kwok.x-k8s.io/node"

// StartKwok creates n nodes and runs kwok, outside the control-plane VM and
// talking to it through its private address as kubelets do, with the
// stages kwok's module ships (hack/build-k8s.sh puts them next to kwok).
func StartKwok(ctx context.Context, cloud *local.Cloud, c *Cluster, binDir string, n int) error {
	kubeconfig := KwokKubeconfig(cloud, c.Instance.ID)
	if err := atomicfile.Write(kubeconfig, c.PrivateKubeconfig, 0o600); err != nil {
		return err
	}
	names := make([]string, n)
	for i := range n {
		names[i] = fmt.Sprintf("kwok-node-%d", i)
	}
	return StartKwokGroup(ctx, cloud, c.Instance.ID, binDir, KwokDefaultGroup, names)
}

// KwokDefaultGroup is the group of the nodes 'cluster create' simulates.
const KwokDefaultGroup = "fake"

// KwokKubeconfig is where StartKwok keeps the kubeconfig of cluster
// instance's kwok processes.
func KwokKubeconfig(cloud *local.Cloud, instance string) string {
	return filepath.Join(cloud.StateDir(), "kwok", instance+".kubeconfig")
}

// KwokProcess is the local cloud's auxiliary process that simulates the
// kubelets of one group of a cluster's kwok nodes (SignalAux freezes it).
func KwokProcess(instance, group string) string {
	if group == KwokDefaultGroup {
		return "kwok-" + instance
	}
	return "kwok-" + instance + "-" + group
}

// StartKwokGroup creates the nodes named and runs a kwok process of their
// own that simulates exactly them (annotation KwokAnnotation=group), so a
// test can stop one group's heartbeats and not the others'. StartKwok
// must have run for the cluster first (it writes the kubeconfig).
func StartKwokGroup(ctx context.Context, cloud *local.Cloud, instance, binDir, group string, names []string) error {
	kubeconfig := KwokKubeconfig(cloud, instance)
	raw, err := os.ReadFile(kubeconfig)
	if err != nil {
		return fmt.Errorf("kwok's kubeconfig for %s (StartKwok writes it): %w", instance, err)
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(raw)
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	for _, name := range names {
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{
				Name:        name,
				Annotations: map[string]string{KwokAnnotation: group},
				Labels:      map[string]string{"type": "kwok", "kubernetes.io/role": "agent", "kubernetes.io/hostname": name},
			},
			Status: corev1.NodeStatus{
				Capacity:    corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("32"), corev1.ResourceMemory: resource.MustParse("256Gi"), corev1.ResourcePods: resource.MustParse("110")},
				Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("32"), corev1.ResourceMemory: resource.MustParse("256Gi"), corev1.ResourcePods: resource.MustParse("110")},
			},
		}
		if _, err := client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating node %s: %w", node.Name, err)
		}
	}
	kwok := filepath.Join(binDir, "kwok")
	stages := filepath.Join(binDir, "kwok-stages.yaml")
	for _, f := range []string{kwok, stages} {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("%s (run 'make k8s-binaries'): %w", f, err)
		}
	}
	return cloud.RunAux(KwokProcess(instance, group), []string{kwok,
		"--kubeconfig", kubeconfig, "--config", stages,
		"--manage-all-nodes=false", "--manage-nodes-with-annotation-selector", KwokAnnotation + "=" + group,
		"--node-lease-duration-seconds", "40"})
}
