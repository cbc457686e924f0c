package controlplane

import (
	"slices"
	"strings"
	"testing"

	agentv1 "github.com/triad-k8s/triad/proto/triad/agent/v1"
)

// kubeconfigs builds an agent's report: file, then its servers.
func kubeconfigs(fileServers ...[]string) []*agentv1.Kubeconfig {
	var out []*agentv1.Kubeconfig
	for _, fs := range fileServers {
		out = append(out, &agentv1.Kubeconfig{Name: fs[0], Servers: fs[1:]})
	}
	return out
}

// haNode is a new node (10.0.1.7) as kubeadm lays out an HA control-plane
// node, behind load balancers on the original's 10.0.0.5 and 203.0.113.5.
var haNode = KubeconfigPolicy{Own: "10.0.1.7", Live: []string{"10.0.0.5", "203.0.113.5"}}

func TestCheckKubeconfigs(t *testing.T) {
	upgrade := KubeconfigPolicy{Own: "10.0.1.7", Live: []string{"10.0.0.5", "203.0.113.5"},
		Gone: map[string]string{"10.0.1.2": "cp-b's address, which this upgrade replaces"}}
	for _, tc := range []struct {
		name        string
		kubeconfigs []*agentv1.Kubeconfig
		policy      KubeconfigPolicy
		// want are substrings of the error, one violation each; none
		// means the check passes.
		want       []string
		unresolved []string
	}{
		{
			name: "an HA node as kubeadm writes it passes",
			kubeconfigs: kubeconfigs(
				[]string{"admin.conf", "https://10.0.0.5:6443"}, []string{"super-admin.conf", "https://10.0.0.5:6443"},
				[]string{"kubelet.conf", "https://10.0.0.5:6443"},
				[]string{"controller-manager.conf", "https://10.0.1.7:6443"}, []string{"scheduler.conf", "https://10.0.1.7:6443"}),
			policy: haNode,
		},
		{
			name: "the shared kubeconfigs may name the public address, the node's own, loopback or localhost",
			kubeconfigs: kubeconfigs(
				[]string{"admin.conf", "https://203.0.113.5:6443"}, []string{"super-admin.conf", "https://10.0.1.7:6443"},
				[]string{"kubelet.conf", "https://127.0.0.1:6443", "https://[::1]:6443", "https://localhost:6443"}),
			policy: haNode,
		},
		{
			name: "a controller-manager.conf left at the original's address fails: kubeadm points it at the node's own",
			kubeconfigs: kubeconfigs(
				[]string{"controller-manager.conf", "https://10.0.0.5:6443"}, []string{"scheduler.conf", "https://10.0.1.7:6443"}),
			policy: haNode,
			want:   []string{"controller-manager.conf names https://10.0.0.5:6443, not the node's own kube-apiserver (10.0.1.7)"},
		},
		{
			name:        "a scheduler.conf on loopback or a DNS name fails on an HA node",
			kubeconfigs: kubeconfigs([]string{"scheduler.conf", "https://127.0.0.1:6443", "https://cp.example.com:6443"}),
			policy:      haNode,
			want:        []string{"scheduler.conf names https://127.0.0.1:6443, not the node's own", "scheduler.conf names https://cp.example.com:6443, not the node's own"},
		},
		{
			name:        "without an own address (the original at preflight) the local kubeconfigs may name any live address",
			kubeconfigs: kubeconfigs([]string{"controller-manager.conf", "https://10.0.0.5:6443"}, []string{"scheduler.conf", "https://127.0.0.1:6443"}),
			policy:      KubeconfigPolicy{Live: []string{"10.0.0.5", "203.0.113.5"}},
		},
		{
			name:        "without an own address a local kubeconfig naming an address that goes fails",
			kubeconfigs: kubeconfigs([]string{"scheduler.conf", "https://10.0.0.9:6443"}),
			policy:      KubeconfigPolicy{Live: []string{"10.0.0.5", "203.0.113.5"}},
			want:        []string{"scheduler.conf names https://10.0.0.9:6443: 10.0.0.9 is none of the addresses that outlive the operation (10.0.0.5, 203.0.113.5, loopback)"},
		},
		{
			name:        "a kubelet.conf naming a node being replaced fails, and says whose the address is",
			kubeconfigs: kubeconfigs([]string{"kubelet.conf", "https://10.0.1.2:6443"}),
			policy:      upgrade,
			want:        []string{"kubelet.conf names https://10.0.1.2:6443: 10.0.1.2 is cp-b's address, which this upgrade replaces"},
		},
		{
			name:        "an address known to go fails even on loopback",
			kubeconfigs: kubeconfigs([]string{"admin.conf", "https://127.0.0.40:6443"}),
			policy:      KubeconfigPolicy{Live: []string{"127.0.0.41"}, Gone: map[string]string{"127.0.0.40": "the original VM's private address"}},
			want:        []string{"admin.conf names https://127.0.0.40:6443: 127.0.0.40 is the original VM's private address"},
		},
		{
			name:        "a super-admin.conf naming an unknown IP fails, its port kept in the error",
			kubeconfigs: kubeconfigs([]string{"super-admin.conf", "https://10.9.9.9:8443"}),
			policy:      haNode,
			want:        []string{"super-admin.conf names https://10.9.9.9:8443: 10.9.9.9 is none of the addresses that outlive the operation (10.0.0.5, 203.0.113.5, 10.0.1.7, loopback)"},
		},
		{
			name:        "a live address on another port passes: only the host is compared",
			kubeconfigs: kubeconfigs([]string{"admin.conf", "https://10.0.0.5:443"}, []string{"kubelet.conf", "https://10.0.0.5"}),
			policy:      haNode,
		},
		{
			name:        "a DNS name passes unchecked, and is reported",
			kubeconfigs: kubeconfigs([]string{"admin.conf", "https://api.example.com:6443"}, []string{"kubelet.conf", "https://api.example.com:6443"}),
			policy:      haNode,
			unresolved:  []string{"api.example.com"},
		},
		{
			name:        "the controlPlaneEndpoint's IP is live",
			kubeconfigs: kubeconfigs([]string{"admin.conf", "https://192.0.2.10:6443"}),
			policy:      KubeconfigPolicy{Live: []string{"10.0.0.5"}, ControlPlaneEndpoint: "192.0.2.10:6443"},
		},
		{
			name:        "a controlPlaneEndpoint without a port is live too",
			kubeconfigs: kubeconfigs([]string{"admin.conf", "https://192.0.2.10:6443"}),
			policy:      KubeconfigPolicy{Live: []string{"10.0.0.5"}, ControlPlaneEndpoint: "192.0.2.10"},
		},
		{
			name:        "without a controlPlaneEndpoint its address is not live",
			kubeconfigs: kubeconfigs([]string{"admin.conf", "https://192.0.2.10:6443"}),
			policy:      KubeconfigPolicy{Live: []string{"10.0.0.5"}},
			want:        []string{"admin.conf names https://192.0.2.10:6443: 192.0.2.10 is none of the addresses that outlive the operation (10.0.0.5, loopback)"},
		},
		{
			name:        "an IPv6 controlPlaneEndpoint is live",
			kubeconfigs: kubeconfigs([]string{"kubelet.conf", "https://[2001:db8::10]:6443"}),
			policy:      KubeconfigPolicy{Live: []string{"10.0.0.5"}, ControlPlaneEndpoint: "[2001:db8::10]:6443"},
		},
		{
			name: "every violation is reported at once",
			kubeconfigs: kubeconfigs(
				[]string{"admin.conf", "https://10.9.9.9:6443"}, []string{"kubelet.conf", "https://10.0.1.2:6443"},
				[]string{"controller-manager.conf", "https://10.0.0.5:6443"}, []string{"scheduler.conf", "https://10.0.1.7:6443"}),
			policy: upgrade,
			want:   []string{"admin.conf names https://10.9.9.9:6443", "kubelet.conf names https://10.0.1.2:6443", "controller-manager.conf names https://10.0.0.5:6443"},
		},
		{
			name: "a file the agent could not parse, one naming no server and a server that is no URL fail",
			kubeconfigs: append(kubeconfigs([]string{"admin.conf"}, []string{"kubelet.conf", "10.0.0.5:6443"}),
				&agentv1.Kubeconfig{Name: "super-admin.conf", Error: "parsing super-admin.conf: yaml: line 1"}),
			policy: haNode,
			want:   []string{"super-admin.conf: unreadable, so where it points is unknown: parsing super-admin.conf: yaml: line 1", "admin.conf names no API server", `kubelet.conf: server "10.0.0.5:6443" is not a URL`},
		},
		{
			name:        "a file the original had and the node lacks fails",
			kubeconfigs: kubeconfigs([]string{"kubelet.conf", "https://10.0.0.5:6443"}),
			policy:      KubeconfigPolicy{Own: "10.0.1.7", Live: []string{"10.0.0.5"}, Want: []string{"admin.conf", "kubelet.conf"}},
			want:        []string{"admin.conf is missing: the original had it"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			check, err := CheckKubeconfigs(tc.kubeconfigs, tc.policy)
			if len(tc.want) == 0 && err != nil {
				t.Fatalf("check failed: %v", err)
			}
			if len(tc.want) > 0 && err == nil {
				t.Fatalf("check passed, want %d violations: %q", len(tc.want), tc.want)
			}
			if len(check.Violations) != len(tc.want) {
				t.Errorf("%d violations, want %d: %q", len(check.Violations), len(tc.want), check.Violations)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q:\n%v", w, err)
				}
			}
			if !slices.Equal(check.Unresolved, tc.unresolved) {
				t.Errorf("unresolved %q, want %q", check.Unresolved, tc.unresolved)
			}
		})
	}
}

func TestKubeconfigCheckSummarisesWhichFilesNameWhichServer(t *testing.T) {
	check, err := CheckKubeconfigs(kubeconfigs(
		[]string{"kubelet.conf", "https://10.0.0.5:6443"}, []string{"admin.conf", "https://10.0.0.5:6443"},
		[]string{"scheduler.conf", "https://10.0.1.7:6443"}, []string{"controller-manager.conf", "https://10.0.1.7:6443"},
		[]string{"super-admin.conf", "https://api.example.com:6443"}), haNode)
	if err != nil {
		t.Fatal(err)
	}
	want := "admin.conf, kubelet.conf → https://10.0.0.5:6443; controller-manager.conf, scheduler.conf → https://10.0.1.7:6443; super-admin.conf → https://api.example.com:6443 (DNS names not checked: api.example.com)"
	if got := check.String(); got != want {
		t.Errorf("summary:\n %s\nwant:\n %s", got, want)
	}
	if got := check.Servers["kubelet.conf"]; !slices.Equal(got, []string{"https://10.0.0.5:6443"}) {
		t.Errorf("kubelet.conf recorded as %q", got)
	}
}
