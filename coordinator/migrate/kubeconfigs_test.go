package migrate

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/triad-k8s/triad/cloudplugins/sdk"
	"github.com/triad-k8s/triad/coordinator/config"
	"github.com/triad-k8s/triad/coordinator/engine"
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

// The migration's policy: at preflight the original's local kubeconfigs
// are held to the live addresses; after 2.3 each new node's must name the
// node, and the node must carry every file the original had. The
// original VM's own address, where it is not the static one, goes.
func TestMigrationKubeconfigPolicy(t *testing.T) {
	s := &State{Original: Node{Name: "cp-0", PrivateIP: "10.0.0.4"}, PrivateIP: "10.0.0.5", PublicIP: "203.0.113.5",
		Baseline: Baseline{ControlPlaneEndpoint: "192.0.2.10:6443", Kubeconfigs: map[string][]string{"kubelet.conf": {"https://10.0.0.5:6443"}, "admin.conf": {"https://10.0.0.5:6443"}}}}
	original := kubeconfigs([]string{"admin.conf", "https://192.0.2.10:6443"}, []string{"kubelet.conf", "https://10.0.0.5:6443"}, []string{"scheduler.conf", "https://203.0.113.5:6443"})
	if _, err := CheckKubeconfigs(original, s.kubeconfigPolicy("")); err != nil {
		t.Errorf("preflight: %v", err)
	}
	if _, err := CheckKubeconfigs(kubeconfigs([]string{"kubelet.conf", "https://10.0.0.4:6443"}), s.kubeconfigPolicy("")); err == nil || !strings.Contains(err.Error(), "10.0.0.4 is the original VM's private address") {
		t.Errorf("preflight with kubelet.conf on the VM's own address: %v, want it named as going with the VM", err)
	}
	_, err := CheckKubeconfigs(kubeconfigs([]string{"kubelet.conf", "https://10.0.0.5:6443"}, []string{"scheduler.conf", "https://10.0.1.7:6443"}), s.kubeconfigPolicy("10.0.1.7"))
	if err == nil || !strings.Contains(err.Error(), "admin.conf is missing") || strings.Contains(err.Error(), "kubelet.conf") {
		t.Errorf("new node without admin.conf: %v, want admin.conf (only) named missing", err)
	}
}

// runOriginalKubeconfigs runs preflight's kubeconfig check of the original
// as the one step of a plan, and returns the state it left, the step's
// error and the progress lines.
func runOriginalKubeconfigs(t *testing.T, inst sdk.Instance, reported []*agentv1.Kubeconfig) (*State, error, []string) {
	t.Helper()
	cfg := &config.Cluster{}
	cfg.ControlPlane.APIServerPort = 6443
	e := &Env{Config: cfg}
	j, err := engine.OpenJournal(t.TempDir(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	var lines []string
	do := func(ctx context.Context, op *engine.Op[State]) (err error) {
		op.State.Baseline.Kubeconfigs, err = e.originalKubeconfigs(op, inst, reported)
		return err
	}
	r := &engine.Runner[State]{Journal: j, Plan: engine.Plan[State]{Kind: "test", Steps: []engine.Step[State]{{Name: "kubeconfigs", Do: do}}},
		Progress: func(ev engine.Event) {
			if ev.Kind == engine.EventInfo {
				lines = append(lines, ev.Message)
			}
		}}
	s := &State{Cluster: "c", Original: Node{Name: "cp-0", InstanceID: inst.ID, PrivateIP: inst.PrivateIP}, PrivateIP: "10.0.0.5", PublicIP: "203.0.113.5"}
	rec, err := r.NewRecord("op-1", "c", 1, s)
	if err != nil {
		t.Fatal(err)
	}
	err = r.Forward(t.Context(), rec, s)
	return s, err, lines
}

func TestPreflightRecordsWhereTheOriginalsKubeconfigsPoint(t *testing.T) {
	inst := sdk.Instance{ID: "i-1", PrivateIP: "10.0.0.5", PublicIP: "203.0.113.5"}
	s, err, lines := runOriginalKubeconfigs(t, inst, kubeconfigs(
		[]string{"admin.conf", "https://10.0.0.5:6443"}, []string{"kubelet.conf", "https://api.example.com:6443"},
		[]string{"controller-manager.conf", "https://10.0.0.5:6443"}))
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Baseline.Kubeconfigs; len(got) != 3 || !slices.Equal(got["kubelet.conf"], []string{"https://api.example.com:6443"}) {
		t.Errorf("baseline kubeconfigs %v, want the three files and their servers", got)
	}
	if log := strings.Join(lines, "\n"); !strings.Contains(log, "admin.conf, controller-manager.conf → https://10.0.0.5:6443") || !strings.Contains(log, "DNS names not checked: api.example.com") {
		t.Errorf("progress %q: want one line naming each file's server and the unchecked DNS name", lines)
	}
}

func TestPreflightFailsOnAKubeconfigNamingAnAddressThatGoesWithTheOriginal(t *testing.T) {
	// The VM's own address is not the static one the load balancer takes
	// over: a kubelet.conf naming it stops working with the VM.
	inst := sdk.Instance{ID: "i-1", PrivateIP: "10.0.0.4", PublicIP: "198.51.100.4"}
	_, err, _ := runOriginalKubeconfigs(t, inst, kubeconfigs(
		[]string{"kubelet.conf", "https://10.0.0.4:6443"}, []string{"admin.conf", "https://198.51.100.4:6443"},
		[]string{"super-admin.conf", "https://10.0.0.5:6443"}))
	if err == nil {
		t.Fatal("preflight passed with kubeconfigs naming the original VM's own addresses")
	}
	for _, want := range []string{"kubeconfigs on cp-0", "kubelet.conf names https://10.0.0.4:6443", "admin.conf names https://198.51.100.4:6443", "point its server at 10.0.0.5:6443"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "super-admin.conf") {
		t.Errorf("error names super-admin.conf, which names the load balancers' address:\n%v", err)
	}
}

func TestABaselineFromBeforeKubeconfigsWereRecordedLoads(t *testing.T) {
	var b Baseline
	if err := json.Unmarshal([]byte(`{"revision":7,"dbSizeBytes":1,"etcdVersion":"3.6.0","objects":{},"readyNodes":[],"leaseRenew":{},"podUIDs":{}}`), &b); err != nil {
		t.Fatal(err)
	}
	if b.Revision != 7 || b.Kubeconfigs != nil || b.ControlPlaneEndpoint != "" {
		t.Errorf("old baseline loaded as %+v", b)
	}
	// And a new node checked against it wants no particular file.
	s := &State{PrivateIP: "10.0.0.5", Baseline: b}
	if _, err := CheckKubeconfigs(nil, s.kubeconfigPolicy("10.0.1.7")); err != nil {
		t.Errorf("a node checked against an old baseline: %v", err)
	}
}
