package controlplane

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/yaml"
)

// KubeadmConfig is kubeadm's record of the cluster (kube-system), which
// 'kubeadm join' and 'kubeadm upgrade' read.
const KubeadmConfig = "kubeadm-config"

// ControlPlaneEndpoint is the controlPlaneEndpoint (host or host:port)
// kubeadm's ClusterConfiguration names: "" if it names none or the cluster
// has no kubeadm-config (not made by kubeadm).
func ControlPlaneEndpoint(ctx context.Context, kube kubernetes.Interface) (string, error) {
	cm, err := kube.CoreV1().ConfigMaps(metav1.NamespaceSystem).Get(ctx, KubeadmConfig, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", KubeadmConfig, err)
	}
	cc, err := clusterConfiguration(cm)
	if err != nil {
		return "", err
	}
	endpoint, _ := cc["controlPlaneEndpoint"].(string)
	return endpoint, nil
}

// clusterConfiguration decodes kubeadm-config's ClusterConfiguration,
// every field kept.
func clusterConfiguration(cm *corev1.ConfigMap) (map[string]any, error) {
	raw, ok := cm.Data["ClusterConfiguration"]
	if !ok {
		return nil, fmt.Errorf("%s has no ClusterConfiguration", KubeadmConfig)
	}
	var cc map[string]any
	if err := yaml.Unmarshal([]byte(raw), &cc); err != nil {
		return nil, fmt.Errorf("%s's ClusterConfiguration: %w", KubeadmConfig, err)
	}
	return cc, nil
}

// SetControlPlaneEndpoint makes kubeadm's ClusterConfiguration name
// endpoint (host:port) as the cluster's controlPlaneEndpoint, as it would
// had the cluster been created highly available: a single-node cluster
// made by 'kubeadm init' without one has its node's address there
// implicitly, and after a migration that address is the load balancer's.
// An endpoint already set is left alone (the operator chose it). It
// returns the endpoint the configuration names afterwards; a cluster
// without kubeadm-config (not made by kubeadm) gives "" and no error.
func SetControlPlaneEndpoint(ctx context.Context, kube kubernetes.Interface, endpoint string) (string, error) {
	var now string
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cm, err := kube.CoreV1().ConfigMaps(metav1.NamespaceSystem).Get(ctx, KubeadmConfig, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			now = ""
			return nil
		}
		if err != nil {
			return err
		}
		cc, err := clusterConfiguration(cm)
		if err != nil {
			return err
		}
		if set, _ := cc["controlPlaneEndpoint"].(string); set != "" {
			now = set
			return nil
		}
		cc["controlPlaneEndpoint"] = endpoint
		out, err := yaml.Marshal(cc)
		if err != nil {
			return err
		}
		cm.Data["ClusterConfiguration"] = string(out)
		if _, err := kube.CoreV1().ConfigMaps(metav1.NamespaceSystem).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			return err
		}
		now = endpoint
		return nil
	})
	return now, err
}
