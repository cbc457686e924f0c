package upgrade

import (
	"strings"
	"testing"

	"github.com/triad-k8s/triad/coordinator/controlplane"
	agentv1 "github.com/triad-k8s/triad/proto/triad/agent/v1"
)

// A replacement's kubeconfigs may name the load balancers' addresses, the
// controlPlaneEndpoint, the replacement itself or loopback; never a node
// being replaced, whether or not it is the one this replacement replaces.
func TestAReplacementsKubeconfigsNameOnlyAddressesThatOutliveTheUpgrade(t *testing.T) {
	s := &State{PrivateIP: "10.0.0.5", PublicIP: "203.0.113.5", Nodes: []NodeUpgrade{
		{Old: controlplane.Node{Name: "cp-a", PrivateIP: "10.0.1.1"}, New: controlplane.Node{Name: "cp-a-u1", PrivateIP: "10.0.1.11"}, Switched: true},
		{Old: controlplane.Node{Name: "cp-b", PrivateIP: "10.0.1.2"}, New: controlplane.Node{Name: "cp-b-u1", PrivateIP: "10.0.1.12"}},
		{Old: controlplane.Node{Name: "cp-c", PrivateIP: "10.0.1.3"}, Skipped: true},
	}}
	p := s.kubeconfigPolicy("10.0.1.12", "192.0.2.10:6443")
	check := func(servers ...string) error {
		var kcs []*agentv1.Kubeconfig
		for i, server := range servers {
			kcs = append(kcs, &agentv1.Kubeconfig{Name: []string{"admin.conf", "kubelet.conf", "super-admin.conf", "controller-manager.conf", "scheduler.conf"}[i], Servers: []string{server}})
		}
		_, err := controlplane.CheckKubeconfigs(kcs, p)
		return err
	}
	if err := check("https://10.0.0.5:6443", "https://203.0.113.5:6443", "https://192.0.2.10:6443", "https://10.0.1.12:6443", "https://10.0.1.12:6443"); err != nil {
		t.Errorf("a replacement as kubeadm lays out an HA node: %v", err)
	}
	if err := check("https://127.0.0.1:6443", "https://10.0.1.12:6443"); err != nil {
		t.Errorf("shared kubeconfigs on loopback and the node's own address: %v", err)
	}
	err := check("https://10.0.1.1:6443", "https://10.0.1.2:6443", "https://10.0.0.5:6443", "https://10.0.1.2:6443")
	if err == nil {
		t.Fatal("kubeconfigs naming the nodes being replaced passed")
	}
	for _, want := range []string{
		"admin.conf names https://10.0.1.1:6443: 10.0.1.1 is cp-a's address, which this upgrade replaces",
		"kubelet.conf names https://10.0.1.2:6443: 10.0.1.2 is cp-b's address, which this upgrade replaces",
		"controller-manager.conf names https://10.0.1.2:6443, not the node's own kube-apiserver (10.0.1.12)",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q:\n%v", want, err)
		}
	}
	// A node the upgrade skips is not replaced, but is no load balancer
	// either.
	if err := check("https://10.0.1.3:6443"); err == nil || strings.Contains(err.Error(), "replaces") || !strings.Contains(err.Error(), "none of the addresses that outlive the operation") {
		t.Errorf("admin.conf naming the skipped cp-c: %v, want it refused as no live address", err)
	}
}
