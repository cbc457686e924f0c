package aws_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/triad-k8s/triad/cloudplugins/aws"
	"github.com/triad-k8s/triad/cloudplugins/aws/internal/awsfake"
	"github.com/triad-k8s/triad/cloudplugins/sdk"
)

// haWorld is the seed stopped and cloned into one instance per zone, with
// the private address released: what a migration has after 2.1.
type haWorld struct {
	fake  *awsfake.Server
	p     sdk.Provider
	seed  awsfake.Seed
	nodes []sdk.Instance
}

func newHAWorld(t *testing.T, cfg func(*aws.Config)) haWorld {
	t.Helper()
	fake := newFake(t)
	c := fakeConfig(fake)
	if cfg != nil {
		cfg(&c)
	}
	w := haWorld{fake: fake, p: newProvider(t, c), seed: fake.Seed()}
	ctx := t.Context()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err := w.p.StopInstance(ctx, w.seed.Instance)
	must(err)
	snap, err := w.p.CreateDiskSnapshot(ctx, sdk.CreateDiskSnapshotRequest{IdempotencyToken: "snap", InstanceID: w.seed.Instance})
	must(err)
	for _, zone := range []string{"a", "b", "c"} {
		in, err := w.p.CreateInstance(ctx, sdk.CreateInstanceRequest{IdempotencyToken: "node-" + zone, Name: "node-" + zone, Zone: region + zone, DiskSnapshotID: snap.ID})
		must(err)
		w.nodes = append(w.nodes, in)
	}
	_, err = w.p.ReleaseAddress(ctx, w.seed.PrivateAddress)
	must(err)
	_, err = w.p.ReleaseAddress(ctx, w.seed.PublicAddress)
	must(err)
	return w
}

func (w haWorld) ids() []string {
	var ids []string
	for _, n := range w.nodes {
		ids = append(ids, n.ID)
	}
	slices.Sort(ids)
	return ids
}

func (w haWorld) createLB(ctx context.Context, scheme sdk.LoadBalancerScheme) (sdk.LoadBalancer, error) {
	addr := w.seed.PrivateAddress
	if scheme == sdk.SchemePublic {
		addr = w.seed.PublicAddress
	}
	return w.p.CreateLoadBalancer(ctx, sdk.CreateLoadBalancerRequest{IdempotencyToken: "lb-" + string(scheme), Name: "api-" + string(scheme), Scheme: scheme,
		AddressID: addr, ListenerPort: 6443, BackendPort: 6443, BackendInstanceIDs: w.ids(), HealthCheck: sdk.HealthCheck{Port: 9444}})
}

func TestALoadBalancerIsEnabledInEveryZoneAndRoutesToEveryNode(t *testing.T) {
	for _, scheme := range []sdk.LoadBalancerScheme{sdk.SchemeInternal, sdk.SchemePublic} {
		t.Run(string(scheme), func(t *testing.T) {
			w := newHAWorld(t, nil)
			ctx := t.Context()
			lb, err := w.createLB(ctx, scheme)
			if err != nil {
				t.Fatal(err)
			}
			var zones []string
			for _, z := range lb.Zones {
				zones = append(zones, z.Zone)
				if z.SubnetID != w.seed.Subnets[z.Zone] || z.IP == "" || z.State != "active" {
					t.Errorf("zone %+v: want subnet %s, an address, active", z, w.seed.Subnets[z.Zone])
				}
			}
			if want := []string{region + "a", region + "b", region + "c"}; !slices.Equal(zones, want) {
				t.Fatalf("load balancer zones %v, want %v", zones, want)
			}
			// The endpoint address sits in its own zone's mapping.
			if want := map[sdk.LoadBalancerScheme]string{sdk.SchemeInternal: w.seed.PrivateAddress, sdk.SchemePublic: w.seed.PublicIP}[scheme]; lb.Zones[0].IP != want || lb.IP != want {
				t.Errorf("endpoint %s, zone a's address %s; want %s", lb.IP, lb.Zones[0].IP, want)
			}
			// No listener yet: AWS reports the targets unused, and so
			// does the plugin (not "initial", which would mean "soon").
			for _, b := range lb.Backends {
				if b.Health != sdk.BackendUnused {
					t.Errorf("backend %s before traffic: %s, want unused", b.InstanceID, b.Health)
				}
			}
			if lb, err = w.p.SetLoadBalancerTraffic(ctx, lb.ID, true); err != nil {
				t.Fatal(err)
			}
			for _, b := range lb.Backends {
				if b.Health != sdk.BackendHealthy {
					t.Errorf("backend %s with traffic: %s, want healthy", b.InstanceID, b.Health)
				}
			}
			routes := w.fake.Routes(lb.ID)
			for _, zone := range zones {
				if !slices.Equal(routes[zone], w.ids()) {
					t.Errorf("a connection entering in %s reaches %v, want every node %v", zone, routes[zone], w.ids())
				}
			}
			// A node failing its checks gets no new connections.
			w.fake.SetTargetHealthy(w.nodes[1].ID, false)
			lb, err = w.p.GetLoadBalancer(ctx, lb.ID)
			if err != nil {
				t.Fatal(err)
			}
			if i := slices.IndexFunc(lb.Backends, func(b sdk.Backend) bool { return b.InstanceID == w.nodes[1].ID }); lb.Backends[i].Health != sdk.BackendUnhealthy {
				t.Errorf("gate closed on %s: %s, want unhealthy", w.nodes[1].ID, lb.Backends[i].Health)
			}
			if r := w.fake.Routes(lb.ID)[region+"a"]; slices.Contains(r, w.nodes[1].ID) || len(r) != 2 {
				t.Errorf("with %s failing, routes %v", w.nodes[1].ID, r)
			}
		})
	}
}

func TestTheFakeRoutesNothingToAZoneWithoutAMapping(t *testing.T) {
	// The behaviour the plugin used to meet: one subnet mapping. Checked on
	// the fake itself, so that the routing model above can fail.
	w := newHAWorld(t, nil)
	one := fakeConfig(w.fake)
	one.Subnets = map[string]string{region + "a": one.Subnets[region+"a"]}
	w.p = newProvider(t, one)
	ctx := t.Context()
	lb, err := w.createLB(ctx, sdk.SchemeInternal)
	if err != nil {
		t.Fatal(err)
	}
	if len(lb.Zones) != 1 {
		t.Fatalf("zones %+v, want only a", lb.Zones)
	}
	if lb, err = w.p.SetLoadBalancerTraffic(ctx, lb.ID, true); err != nil {
		t.Fatal(err)
	}
	health := map[string]sdk.BackendHealth{}
	for _, b := range lb.Backends {
		health[b.InstanceID] = b.Health
	}
	if health[w.nodes[0].ID] != sdk.BackendHealthy || health[w.nodes[1].ID] != sdk.BackendUnused || health[w.nodes[2].ID] != sdk.BackendUnused {
		t.Errorf("one mapping in zone a: health %v, want a healthy and b, c unused", health)
	}
	if r := w.fake.Routes(lb.ID); len(r) != 1 || !slices.Equal(r[region+"a"], []string{w.nodes[0].ID}) {
		t.Errorf("routes %v, want only zone a's node", r)
	}
}

func TestDrainingMatchesTheDrainThePluginAdvises(t *testing.T) {
	for _, drain := range []time.Duration{0, 25 * time.Second} {
		t.Run(drain.String(), func(t *testing.T) {
			w := newHAWorld(t, func(c *aws.Config) { c.DrainDelay = aws.Duration{Duration: drain} })
			want := drain
			if want == 0 {
				want = 10 * time.Second // the default
			}
			info, err := w.p.PluginInfo(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if info.RecommendedDrainDelay != want || info.RecommendedAPIServerShutdownDelay < 10*time.Second {
				t.Errorf("advice: drain %s, shutdown delay %s; want drain %s and a shutdown delay covering two 5 s NLB checks", info.RecommendedDrainDelay, info.RecommendedAPIServerShutdownDelay, want)
			}
			lb, err := w.createLB(t.Context(), sdk.SchemeInternal)
			if err != nil {
				t.Fatal(err)
			}
			secs := strings.TrimSuffix(want.String(), "s")
			got := w.fake.TargetGroupAttributes(lb.ID)
			for k, v := range map[string]string{
				"deregistration_delay.timeout_seconds":                         secs,
				"deregistration_delay.connection_termination.enabled":          "true",
				"target_health_state.unhealthy.connection_termination.enabled": "false",
				"target_health_state.unhealthy.draining_interval_seconds":      secs,
				"preserve_client_ip.enabled":                                   "false",
			} {
				if got[k] != v {
					t.Errorf("target group %s = %q, want %q", k, got[k], v)
				}
			}
		})
	}
}

func TestThePublicLoadBalancerAdmitsOnlyWhatTheNodeAdmitted(t *testing.T) {
	t.Run("derived from the node's security group", func(t *testing.T) {
		w := newHAWorld(t, nil)
		lb, err := w.createLB(t.Context(), sdk.SchemePublic)
		if err != nil {
			t.Fatal(err)
		}
		groups := w.fake.LoadBalancerSecurityGroups(lb.ID)
		if len(groups) != 1 {
			t.Fatalf("public NLB security groups %v, want one", groups)
		}
		if got, want := w.fake.SecurityGroupIngress(groups[0]), []string{"tcp 6443-6443 " + awsfake.OperatorsCIDR}; !slices.Equal(got, want) {
			t.Errorf("public NLB admits %v, want %v", got, want)
		}
		// Its group goes with it.
		if err := w.p.DeleteLoadBalancer(t.Context(), lb.ID); err != nil {
			t.Fatal(err)
		}
		if got := w.fake.SecurityGroupIngress(groups[0]); got != nil {
			t.Errorf("after DeleteLoadBalancer its security group is still there: %v", got)
		}
	})
	t.Run("configured", func(t *testing.T) {
		w := newHAWorld(t, func(c *aws.Config) { c.PublicCIDRs = []string{"192.0.2.0/24"} })
		lb, err := w.createLB(t.Context(), sdk.SchemePublic)
		if err != nil {
			t.Fatal(err)
		}
		if got := w.fake.SecurityGroupIngress(w.fake.LoadBalancerSecurityGroups(lb.ID)[0]); !slices.Equal(got, []string{"tcp 6443-6443 192.0.2.0/24"}) {
			t.Errorf("public NLB admits %v, want the configured 192.0.2.0/24", got)
		}
	})
	t.Run("open to the internet is refused unless meant", func(t *testing.T) {
		for _, allow := range []bool{false, true} {
			w := newHAWorld(t, func(c *aws.Config) { c.AllowPublicFromAnywhere = allow })
			w.fake.AuthorizeIngress(w.seed.SecurityGroup, "tcp", 6443, 6443, "0.0.0.0/0")
			before := len(w.fake.Requests())
			lb, err := w.createLB(t.Context(), sdk.SchemePublic)
			if allow {
				if err != nil {
					t.Errorf("allowPublicFromAnywhere: %v", err)
				}
				continue
			}
			if !errors.Is(err, sdk.ErrFailedPrecondition) || !strings.Contains(err.Error(), "allowPublicFromAnywhere") {
				t.Fatalf("unrestricted public NLB: %+v, %v; want FailedPrecondition naming allowPublicFromAnywhere", lb, err)
			}
			for _, r := range w.fake.Requests()[before:] {
				if strings.HasPrefix(r.Action, "Create") || strings.HasPrefix(r.Action, "Authorize") {
					t.Errorf("refused create still called %s", r.Action)
				}
			}
		}
	})
}

func TestCheckControlPlaneNamesEachMissingRule(t *testing.T) {
	fake := newFake(t)
	seed := fake.Seed()
	req := sdk.CheckControlPlaneRequest{InstanceID: seed.Instance, Zones: []string{region + "a", region + "b", region + "c"},
		PrivateAddressID: seed.PrivateAddress, PublicAddressID: seed.PublicAddress, NodePorts: []int{2379, 2380, 9443}, LoadBalancerPorts: []int{6443, 9444}}
	check := func(t *testing.T, p sdk.Provider) map[string]sdk.Check {
		t.Helper()
		c, ok := p.(sdk.ControlPlaneChecker)
		if !ok {
			t.Fatal("provider does not implement sdk.ControlPlaneChecker")
		}
		checks, err := c.CheckControlPlane(t.Context(), req)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]sdk.Check{}
		for _, c := range checks {
			out[c.Name] = c
		}
		return out
	}
	inProcess := newProvider(t, fakeConfig(fake))
	plugin := openPlugin(t, fakeConfig(fake))
	// The single node's group admits only the operators on 6443 and 22.
	got := check(t, plugin)
	for _, name := range []string{"tcp 2379 between control-plane nodes", "tcp 2380 between control-plane nodes", "tcp 9443 between control-plane nodes",
		"tcp 6443 from the load balancers", "tcp 9444 from the load balancers"} {
		c, ok := got[name]
		if !ok || c.OK || !strings.Contains(c.Detail, seed.SecurityGroup) || !strings.Contains(c.Detail, "add an inbound rule") {
			t.Errorf("%s: %+v, want a failed check naming %s and the rule to add", name, c, seed.SecurityGroup)
		}
	}
	if c := got["public load balancer exposure"]; !c.OK || !strings.Contains(c.Detail, awsfake.OperatorsCIDR) {
		t.Errorf("exposure: %+v, want OK from %s", c, awsfake.OperatorsCIDR)
	}
	// The operator adds the rules preflight named.
	fake.AuthorizeIngress(seed.SecurityGroup, "tcp", 2379, 2380, seed.SecurityGroup)
	fake.AuthorizeIngress(seed.SecurityGroup, "tcp", 9443, 9443, seed.SecurityGroup)
	fake.AuthorizeIngress(seed.SecurityGroup, "tcp", 6443, 6443, "10.0.0.0/16")
	fake.AuthorizeIngress(seed.SecurityGroup, "tcp", 9444, 9444, "10.0.1.0/24") // one subnet of three is not enough
	got = check(t, inProcess)
	for name, c := range got {
		if want := name != "tcp 9444 from the load balancers"; c.OK != want {
			t.Errorf("%s: %+v, want OK %v", name, c, want)
		}
	}
	fake.AuthorizeIngress(seed.SecurityGroup, "-1", 0, 0, "10.0.0.0/8")
	fake.AuthorizeIngress(seed.SecurityGroup, "tcp", 6443, 6443, "0.0.0.0/0")
	got = check(t, inProcess)
	for name, c := range got {
		if want := name != "public load balancer exposure"; c.OK != want {
			t.Errorf("%s: %+v, want OK %v", name, c, want)
		}
	}
	if c := got["public load balancer exposure"]; !strings.Contains(c.Detail, "0.0.0.0/0") || !strings.Contains(c.Detail, "publicCIDRs") {
		t.Errorf("exposure: %+v, want it to name 0.0.0.0/0 and the fix", c)
	}
	if got["zone "+region+"a has a subnet"].Detail != seed.Subnets[region+"a"] {
		t.Errorf("zone check: %+v", got["zone "+region+"a has a subnet"])
	}
}
