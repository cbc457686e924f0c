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
	kubeconfig := filepath.Join(cloud.StateDir(), "kwok", c.Instance.ID+".kubeconfig")
	if err := atomicfile.Write(kubeconfig, c.PrivateKubeconfig, 0o600); err != nil {
		return err
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(c.PrivateKubeconfig)
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	for i := range n {
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{
				Name:        fmt.Sprintf("kwok-node-%d", i),
				Annotations: map[string]string{KwokAnnotation: "fake"},
				Labels:      map[string]string{"type": "kwok", "kubernetes.io/role": "agent", "kubernetes.io/hostname": fmt.Sprintf("kwok-node-%d", i)},
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
	return cloud.RunAux("kwok-"+c.Instance.ID, []string{kwok,
		"--kubeconfig", kubeconfig, "--config", stages,
		"--manage-all-nodes=false", "--manage-nodes-with-annotation-selector", KwokAnnotation + "=fake",
		"--node-lease-duration-seconds", "40"})
}
