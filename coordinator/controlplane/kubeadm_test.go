package controlplane

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/triad-k8s/triad/internal/testkube"
)

// kubeadm init of a single node without controlPlaneEndpoint writes none.
const singleNodeClusterConfiguration = `apiServer: {}
apiVersion: kubeadm.k8s.io/v1beta4
clusterName: e2e
controllerManager: {}
kind: ClusterConfiguration
kubernetesVersion: v1.36.3
networking:
  dnsDomain: cluster.local
  serviceSubnet: 10.96.0.0/12
`

func TestSetControlPlaneEndpoint(t *testing.T) {
	kube := testkube.Start(t).Client
	ctx := context.Background()
	endpointOf := func() string {
		cm, err := kube.CoreV1().ConfigMaps(metav1.NamespaceSystem).Get(ctx, KubeadmConfig, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var cc map[string]any
		if err := yaml.Unmarshal([]byte(cm.Data["ClusterConfiguration"]), &cc); err != nil {
			t.Fatal(err)
		}
		if cc["clusterName"] != "e2e" || cc["kubernetesVersion"] != "v1.36.3" {
			t.Errorf("the rest of the ClusterConfiguration changed: %v", cc)
		}
		s, _ := cc["controlPlaneEndpoint"].(string)
		return s
	}

	// Not a kubeadm cluster: nothing to do, no error.
	if got, err := ControlPlaneEndpoint(ctx, kube); err != nil || got != "" {
		t.Fatalf("reading without kubeadm-config: %q, %v", got, err)
	}
	if got, err := SetControlPlaneEndpoint(ctx, kube, "10.0.0.1:6443"); err != nil || got != "" {
		t.Fatalf("without kubeadm-config: %q, %v", got, err)
	}
	if _, err := kube.CoreV1().ConfigMaps(metav1.NamespaceSystem).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: KubeadmConfig},
		Data:       map[string]string{"ClusterConfiguration": singleNodeClusterConfiguration},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, err := ControlPlaneEndpoint(ctx, kube); err != nil || got != "" {
		t.Fatalf("reading a single node's kubeadm-config: %q, %v", got, err)
	}
	if got, err := SetControlPlaneEndpoint(ctx, kube, "10.0.0.1:6443"); err != nil || got != "10.0.0.1:6443" {
		t.Fatalf("first set: %q, %v", got, err)
	}
	if got, err := ControlPlaneEndpoint(ctx, kube); err != nil || got != "10.0.0.1:6443" {
		t.Fatalf("reading after the set: %q, %v", got, err)
	}
	if got := endpointOf(); got != "10.0.0.1:6443" {
		t.Fatalf("kubeadm-config names %q", got)
	}
	// One the operator (or the first run) set is kept.
	if got, err := SetControlPlaneEndpoint(ctx, kube, "10.9.9.9:6443"); err != nil || got != "10.0.0.1:6443" || endpointOf() != "10.0.0.1:6443" {
		t.Fatalf("second set: %q, %v; kubeadm-config %q", got, err, endpointOf())
	}
	// A corrupt ClusterConfiguration is an error, not a silent rewrite.
	cm, err := kube.CoreV1().ConfigMaps(metav1.NamespaceSystem).Get(ctx, KubeadmConfig, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data["ClusterConfiguration"] = "{not yaml"
	if _, err := kube.CoreV1().ConfigMaps(metav1.NamespaceSystem).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := SetControlPlaneEndpoint(ctx, kube, "10.0.0.1:6443"); err == nil || !strings.Contains(err.Error(), "ClusterConfiguration") {
		t.Fatalf("corrupt ClusterConfiguration: %v, want an error naming it", err)
	}
	if _, err := ControlPlaneEndpoint(ctx, kube); err == nil || !strings.Contains(err.Error(), "ClusterConfiguration") {
		t.Fatalf("reading a corrupt ClusterConfiguration: %v, want an error naming it", err)
	}
}
