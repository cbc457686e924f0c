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
	"github.com/triad-k8s/triad/coordinator/controlplane"
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

// The migration's policy: at preflight the original's local kubeconfigs
// are held to the live addresses; after 2.3 each new node's must name the
// node, and the node must carry every file the original had. The
// original VM's own address, where it is not the static one, goes.
func TestMigrationKubeconfigPolicy(t *testing.T) {
	s := &State{Original: controlplane.Node{Name: "cp-0", PrivateIP: "10.0.0.4"}, PrivateIP: "10.0.0.5", PublicIP: "203.0.113.5",
		Baseline: Baseline{ControlPlaneEndpoint: "192.0.2.10:6443", Kubeconfigs: map[string][]string{"kubelet.conf": {"https://10.0.0.5:6443"}, "admin.conf": {"https://10.0.0.5:6443"}}}}
	original := kubeconfigs([]string{"admin.conf", "https://192.0.2.10:6443"}, []string{"kubelet.conf", "https://10.0.0.5:6443"}, []string{"scheduler.conf", "https://203.0.113.5:6443"})
	if _, err := controlplane.CheckKubeconfigs(original, s.kubeconfigPolicy("")); err != nil {
		t.Errorf("preflight: %v", err)
	}
	if _, err := controlplane.CheckKubeconfigs(kubeconfigs([]string{"kubelet.conf", "https://10.0.0.4:6443"}), s.kubeconfigPolicy("")); err == nil || !strings.Contains(err.Error(), "10.0.0.4 is the original VM's private address") {
		t.Errorf("preflight with kubelet.conf on the VM's own address: %v, want it named as going with the VM", err)
	}
	_, err := controlplane.CheckKubeconfigs(kubeconfigs([]string{"kubelet.conf", "https://10.0.0.5:6443"}, []string{"scheduler.conf", "https://10.0.1.7:6443"}), s.kubeconfigPolicy("10.0.1.7"))
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
	e := &Env{Cluster: &controlplane.Cluster{Config: cfg}}
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
	s := &State{Cluster: "c", Original: controlplane.Node{Name: "cp-0", InstanceID: inst.ID, PrivateIP: inst.PrivateIP}, PrivateIP: "10.0.0.5", PublicIP: "203.0.113.5"}
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
	if _, err := controlplane.CheckKubeconfigs(nil, s.kubeconfigPolicy("10.0.1.7")); err != nil {
		t.Errorf("a node checked against an old baseline: %v", err)
	}
}
