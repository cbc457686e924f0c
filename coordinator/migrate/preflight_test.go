package migrate

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/triad-k8s/triad/cloudplugins/sdk"
	"github.com/triad-k8s/triad/coordinator/config"
	"github.com/triad-k8s/triad/coordinator/controlplane"
	"github.com/triad-k8s/triad/coordinator/engine"
)

// checkingCloud is a cloud whose CheckControlPlane answers what the test
// says and records the request; every other method is unused here.
type checkingCloud struct {
	sdk.Provider
	checks []sdk.Check
	err    error
	got    *sdk.CheckControlPlaneRequest
}

func (c *checkingCloud) CheckControlPlane(_ context.Context, req sdk.CheckControlPlaneRequest) ([]sdk.Check, error) {
	c.got = &req
	return c.checks, c.err
}

// runCheckCloud runs checkCloud as the one step of a plan, so that it sees
// a real Op, and returns the step's error and the progress lines.
func runCheckCloud(t *testing.T, cloud sdk.Provider) (error, []string) {
	t.Helper()
	cfg := &config.Cluster{}
	cfg.ControlPlane.APIServerPort, cfg.Agent.Port, cfg.Agent.GatePort = 6443, 9443, 9444
	e := &Env{Cluster: &controlplane.Cluster{Config: cfg, Cloud: cloud}}
	j, err := engine.OpenJournal(t.TempDir(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	var lines []string
	r := &engine.Runner[State]{Journal: j, Plan: engine.Plan[State]{Kind: "test", Steps: []engine.Step[State]{{Name: "check", Do: e.checkCloud}}},
		Progress: func(ev engine.Event) {
			if ev.Kind == engine.EventInfo {
				lines = append(lines, ev.Message)
			}
		}}
	s := &State{Cluster: "c", Original: controlplane.Node{InstanceID: "i-1"}, Zones: []string{"a", "b", "c"}, PrivateAddressID: "10.0.0.10", PublicAddressID: "eip-1"}
	rec, err := r.NewRecord("op-1", "c", 1, s)
	if err != nil {
		t.Fatal(err)
	}
	err = r.Forward(t.Context(), rec, s)
	return err, lines
}

func TestPreflightNamesEveryFailedCloudCheck(t *testing.T) {
	cloud := &checkingCloud{checks: []sdk.Check{
		{Name: "tcp 2380 between control-plane nodes", OK: false, Detail: "add an inbound rule tcp 2380 from sg-1"},
		{Name: "tcp 9443 between control-plane nodes", OK: true, Detail: "sg-1 admits it"},
		{Name: "tcp 9444 from the load balancers", OK: false, Detail: "add an inbound rule tcp 9444 from 10.0.1.0/24"},
	}}
	err, _ := runCheckCloud(t, cloud)
	if err == nil {
		t.Fatal("preflight passed with two failed cloud checks")
	}
	for _, want := range []string{"2 of 3 checks failed", "tcp 2380 between control-plane nodes: add an inbound rule tcp 2380 from sg-1", "tcp 9444 from the load balancers"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "9443") {
		t.Errorf("error %q names a check that passed", err)
	}
	if g := cloud.got; g == nil || fmt.Sprintf("%v %v %v %s", g.NodePorts, g.LoadBalancerPorts, g.Zones, g.InstanceID) != "[2379 2380 9443] [6443 9444] [a b c] i-1" {
		t.Errorf("request %+v: want the etcd and agent ports between nodes, the API and gate ports from the load balancers, the zones, the instance", g)
	}
}

func TestPreflightPassesWhenEveryCloudCheckPassesOrThePluginHasNone(t *testing.T) {
	err, lines := runCheckCloud(t, &checkingCloud{checks: []sdk.Check{{Name: "zone a has a subnet", OK: true}}})
	if err != nil || !strings.Contains(strings.Join(lines, "\n"), "cloud checks: 1 passed") {
		t.Errorf("all checks pass: %v, progress %q", err, lines)
	}
	err, lines = runCheckCloud(t, &checkingCloud{err: fmt.Errorf("%w: CheckControlPlane", sdk.ErrUnimplemented)})
	if err != nil || !strings.Contains(strings.Join(lines, "\n"), "the plugin offers none") {
		t.Errorf("plugin without checks: %v, progress %q", err, lines)
	}
	if err, _ = runCheckCloud(t, &checkingCloud{err: fmt.Errorf("%w: ec2:DescribeSecurityGroups", sdk.ErrPermissionDenied)}); err == nil || !strings.Contains(err.Error(), "ec2:DescribeSecurityGroups") {
		t.Errorf("a failing check call must fail preflight with its cause: %v", err)
	}
}
