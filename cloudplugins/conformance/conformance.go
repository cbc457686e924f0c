// Package conformance is the test suite every triad cloud plugin must
// pass: conformance.Run(t, factory). It drives a Provider only through the
// SDK interface, so the same cases run against a provider in-process and
// against its plugin binary started by go-plugin.
package conformance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/triad-k8s/triad/cloudplugins/sdk"
)

// Fixture is what a provider under test offers the suite.
type Fixture struct {
	Provider sdk.Provider
	// Seed is a running instance holding the two static addresses below;
	// the suite stops, snapshots and restarts it.
	Seed             string
	PrivateAddressID string
	PublicAddressID  string
	// Backends, if set, lets the suite decide the health-check verdict of
	// an instance and serve a backend on it. Without it the cases that
	// need traffic through a load balancer are skipped (with the reason).
	Backends BackendHarness
	// NoBackends says why Backends is nil; the skipped cases report it.
	NoBackends string
	// Settle is how long health checks need to reach a verdict; default 10s.
	Settle time.Duration
}

// BackendHarness stands in for what triad-agent and kube-apiserver do on a
// real instance.
type BackendHarness interface {
	// Serve makes inst answer health checks at hc with 200 when healthy
	// (503 otherwise) and accept TCP connections on port, answering each
	// with inst's id. It is stopped when the test ends.
	Serve(t *testing.T, inst sdk.Instance, hc sdk.HealthCheck, port int, healthy bool)
}

// Factory returns a fresh fixture for one case.
type Factory func(t *testing.T) Fixture

// Run runs every case.
func Run(t *testing.T, factory Factory) {
	cases := []struct {
		name string
		run  func(*testing.T, Fixture)
	}{
		{"PluginInfoNamesAPIv1AndZones", pluginInfo},
		{"UnknownResourcesAreNotFoundAndDeletesAreIdempotent", notFound},
		{"InstancesStopAndStartIdempotently", instanceLifecycle},
		{"DiskSnapshotsHonourIdempotencyTokens", diskSnapshots},
		{"InstancesFromASnapshotHonourTokensAndLabels", instancesFromSnapshot},
		{"BadCreateRequestsAreRefused", badCreates},
		{"AddressesMoveBetweenInstancesAndLoadBalancers", addressMoves},
		{"LoadBalancersStartWithTrafficDisabled", loadBalancerDefaults},
		{"HealthChecksDecideWhichBackendsGetTraffic", healthChecks},
		{"ControlPlaneChecksChangeNothing", controlPlaneChecks},
		{"ConcurrentCallsAreSafe", concurrency},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.run(t, factory(t)) })
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

// result lets a (value, error) call be checked inline:
// ok(p.GetInstance(c, id)).get(t, "GetInstance").
type result[T any] struct {
	v   T
	err error
}

func ok[T any](v T, err error) result[T] { return result[T]{v, err} }

func (r result[T]) get(t *testing.T, what string) T {
	t.Helper()
	if r.err != nil {
		t.Fatalf("%s: %v", what, r.err)
	}
	return r.v
}

func pluginInfo(t *testing.T, f Fixture) {
	info := ok(f.Provider.PluginInfo(ctx(t))).get(t, "PluginInfo")
	if info.Name == "" || !slices.Contains(info.APIVersions, sdk.APIVersion) || len(info.Zones) == 0 {
		t.Fatalf("PluginInfo = %+v: want a name, API %s and at least one zone", info, sdk.APIVersion)
	}
}

func notFound(t *testing.T, f Fixture) {
	p, c := f.Provider, ctx(t)
	for name, call := range map[string]func() error{
		"GetInstance":     func() error { _, err := p.GetInstance(c, "i-does-not-exist"); return err },
		"GetDiskSnapshot": func() error { _, err := p.GetDiskSnapshot(c, "snap-does-not-exist"); return err },
		"GetAddress":      func() error { _, err := p.GetAddress(c, "addr-does-not-exist"); return err },
		"GetLoadBalancer": func() error { _, err := p.GetLoadBalancer(c, "lb-does-not-exist"); return err },
		"StopInstance":    func() error { _, err := p.StopInstance(c, "i-does-not-exist"); return err },
	} {
		if err := call(); !errors.Is(err, sdk.ErrNotFound) {
			t.Errorf("%s of an unknown id: %v, want ErrNotFound", name, err)
		}
	}
	for name, call := range map[string]func() error{
		"DeleteInstance":     func() error { return p.DeleteInstance(c, "i-does-not-exist") },
		"DeleteDiskSnapshot": func() error { return p.DeleteDiskSnapshot(c, "snap-does-not-exist") },
		"DeleteLoadBalancer": func() error { return p.DeleteLoadBalancer(c, "lb-does-not-exist") },
	} {
		if err := call(); err != nil {
			t.Errorf("%s of an unknown id: %v, want success (already gone)", name, err)
		}
	}
}

func instanceLifecycle(t *testing.T, f Fixture) {
	p, c := f.Provider, ctx(t)
	for range 2 {
		if i := ok(p.StopInstance(c, f.Seed)).get(t, "StopInstance"); i.State != sdk.InstanceStopped {
			t.Fatalf("after StopInstance: %s", i.State)
		}
	}
	for range 2 {
		if i := ok(p.StartInstance(c, f.Seed)).get(t, "StartInstance"); i.State != sdk.InstanceRunning {
			t.Fatalf("after StartInstance: %s", i.State)
		}
	}
	if i := ok(p.GetInstance(c, f.Seed)).get(t, "GetInstance"); i.State != sdk.InstanceRunning || i.PrivateIP == "" {
		t.Fatalf("GetInstance after start = %+v", i)
	}
}

func snapshotSeed(t *testing.T, f Fixture, token string) sdk.DiskSnapshot {
	t.Helper()
	c := ctx(t)
	ok(f.Provider.StopInstance(c, f.Seed)).get(t, "StopInstance")
	return ok(f.Provider.CreateDiskSnapshot(c, sdk.CreateDiskSnapshotRequest{IdempotencyToken: token, InstanceID: f.Seed, Labels: map[string]string{"conformance": t.Name()}})).get(t, "CreateDiskSnapshot")
}

func diskSnapshots(t *testing.T, f Fixture) {
	p, c := f.Provider, ctx(t)
	first := snapshotSeed(t, f, "snap-token-1")
	if first.State != sdk.DiskSnapshotReady || first.SourceInstanceID != f.Seed {
		t.Fatalf("CreateDiskSnapshot = %+v", first)
	}
	// A retry after a lost reply: the same token, the same snapshot.
	again := snapshotSeed(t, f, "snap-token-1")
	if again.ID != first.ID {
		t.Fatalf("retried CreateDiskSnapshot made %s, first call %s", again.ID, first.ID)
	}
	if got := ok(p.GetDiskSnapshot(c, first.ID)).get(t, "GetDiskSnapshot"); got.ID != first.ID {
		t.Fatalf("GetDiskSnapshot = %+v", got)
	}
	list := ok(p.ListDiskSnapshots(c, map[string]string{"conformance": t.Name()})).get(t, "ListDiskSnapshots")
	if len(list) != 1 || list[0].ID != first.ID {
		t.Fatalf("ListDiskSnapshots by label = %+v", list)
	}
	if _, err := p.CreateDiskSnapshot(c, sdk.CreateDiskSnapshotRequest{IdempotencyToken: "snap-running", InstanceID: ok(p.StartInstance(c, f.Seed)).get(t, "start").ID}); !errors.Is(err, sdk.ErrFailedPrecondition) {
		t.Errorf("snapshot of a running instance: %v, want ErrFailedPrecondition", err)
	}
	for range 2 {
		if err := p.DeleteDiskSnapshot(c, first.ID); err != nil {
			t.Fatalf("DeleteDiskSnapshot: %v", err)
		}
	}
	if _, err := p.GetDiskSnapshot(c, first.ID); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("GetDiskSnapshot after delete: %v", err)
	}
}

func instancesFromSnapshot(t *testing.T, f Fixture) {
	p, c := f.Provider, ctx(t)
	snap := snapshotSeed(t, f, "snap-for-instances")
	zones := ok(p.PluginInfo(c)).get(t, "PluginInfo").Zones
	labels := map[string]string{"conformance": strings.ReplaceAll(t.Name(), "/", "-")}
	var ids []string
	for i, zone := range zones[:min(3, len(zones))] {
		req := sdk.CreateInstanceRequest{
			IdempotencyToken: fmt.Sprintf("vm-token-%d", i), Name: fmt.Sprintf("conformance-%d", i), Zone: zone,
			DiskSnapshotID: snap.ID, BootData: []byte(`{"holdStaticPods":["etcd"]}`), Labels: labels,
		}
		inst := ok(p.CreateInstance(c, req)).get(t, "CreateInstance")
		if inst.State != sdk.InstanceRunning || inst.Zone != zone || inst.PrivateIP == "" {
			t.Fatalf("CreateInstance = %+v", inst)
		}
		if retry := ok(p.CreateInstance(c, req)).get(t, "retried CreateInstance"); retry.ID != inst.ID {
			t.Fatalf("retry with the same token made %s, first call %s", retry.ID, inst.ID)
		}
		ids = append(ids, inst.ID)
	}
	listed := ok(p.ListInstances(c, labels)).get(t, "ListInstances")
	var got []string
	for _, i := range listed {
		got = append(got, i.ID)
	}
	slices.Sort(got)
	slices.Sort(ids)
	if !slices.Equal(got, ids) {
		t.Fatalf("ListInstances by label = %v, want %v", got, ids)
	}
	for _, id := range ids {
		for range 2 {
			if err := p.DeleteInstance(c, id); err != nil {
				t.Fatalf("DeleteInstance: %v", err)
			}
		}
	}
	if left := ok(p.ListInstances(c, labels)).get(t, "ListInstances"); len(left) != 0 {
		t.Fatalf("instances left after delete: %+v", left)
	}
}

func badCreates(t *testing.T, f Fixture) {
	p, c := f.Provider, ctx(t)
	snap := snapshotSeed(t, f, "snap-for-bad")
	zone := ok(p.PluginInfo(c)).get(t, "PluginInfo").Zones[0]
	cases := []struct {
		name string
		req  sdk.CreateInstanceRequest
		want error
	}{
		{"an unknown snapshot", sdk.CreateInstanceRequest{IdempotencyToken: "bad-1", Name: "x", Zone: zone, DiskSnapshotID: "snap-does-not-exist"}, sdk.ErrNotFound},
		{"an unknown zone", sdk.CreateInstanceRequest{IdempotencyToken: "bad-2", Name: "x", Zone: "zone-does-not-exist", DiskSnapshotID: snap.ID}, sdk.ErrInvalidArgument},
		{"oversized boot data", sdk.CreateInstanceRequest{IdempotencyToken: "bad-3", Name: "x", Zone: zone, DiskSnapshotID: snap.ID, BootData: make([]byte, sdk.MaxBootData+1)}, sdk.ErrInvalidArgument},
		{"no idempotency token", sdk.CreateInstanceRequest{Name: "x", Zone: zone, DiskSnapshotID: snap.ID}, sdk.ErrInvalidArgument},
	}
	for _, tc := range cases {
		if _, err := p.CreateInstance(c, tc.req); !errors.Is(err, tc.want) {
			t.Errorf("CreateInstance with %s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if all := ok(p.ListInstances(c, nil)).get(t, "ListInstances"); len(all) != 1 {
		t.Errorf("refused creates left instances: %+v", all)
	}
}

func addressMoves(t *testing.T, f Fixture) {
	p, c := f.Provider, ctx(t)
	if _, err := p.ReleaseAddress(c, f.PrivateAddressID); !errors.Is(err, sdk.ErrFailedPrecondition) {
		t.Errorf("releasing the address of a running instance: %v, want ErrFailedPrecondition", err)
	}
	ok(p.StopInstance(c, f.Seed)).get(t, "StopInstance")
	for range 2 {
		a := ok(p.ReleaseAddress(c, f.PrivateAddressID)).get(t, "ReleaseAddress")
		if a.InstanceID != "" || a.LoadBalancerID != "" {
			t.Fatalf("released address still held: %+v", a)
		}
	}
	lb := ok(p.CreateLoadBalancer(c, sdk.CreateLoadBalancerRequest{
		IdempotencyToken: "lb-on-old-ip", Name: "conformance-internal", Scheme: sdk.SchemeInternal, AddressID: f.PrivateAddressID,
		ListenerPort: 6443, BackendPort: 6443, HealthCheck: sdk.HealthCheck{Port: 9444, Path: "/gate"},
	})).get(t, "CreateLoadBalancer")
	if a := ok(p.GetAddress(c, f.PrivateAddressID)).get(t, "GetAddress"); a.LoadBalancerID != lb.ID {
		t.Fatalf("address after CreateLoadBalancer: %+v", a)
	}
	if _, err := p.AttachAddress(c, f.PrivateAddressID, f.Seed); !errors.Is(err, sdk.ErrFailedPrecondition) {
		t.Errorf("attaching an address a load balancer holds: %v, want ErrFailedPrecondition", err)
	}
	for range 2 {
		if err := p.DeleteLoadBalancer(c, lb.ID); err != nil {
			t.Fatalf("DeleteLoadBalancer: %v", err)
		}
	}
	if a := ok(p.GetAddress(c, f.PrivateAddressID)).get(t, "GetAddress"); a.LoadBalancerID != "" || a.InstanceID != "" {
		t.Fatalf("address after DeleteLoadBalancer: %+v", a)
	}
	for range 2 {
		if a := ok(p.AttachAddress(c, f.PrivateAddressID, f.Seed)).get(t, "AttachAddress"); a.InstanceID != f.Seed {
			t.Fatalf("address after AttachAddress: %+v", a)
		}
	}
	inst := ok(p.StartInstance(c, f.Seed)).get(t, "StartInstance")
	addr := ok(p.GetAddress(c, f.PrivateAddressID)).get(t, "GetAddress")
	if inst.PrivateIP != addr.IP {
		t.Fatalf("instance private IP %s, re-attached address %s", inst.PrivateIP, addr.IP)
	}
}

func loadBalancerDefaults(t *testing.T, f Fixture) {
	p, c := f.Provider, ctx(t)
	ok(p.StopInstance(c, f.Seed)).get(t, "StopInstance")
	ok(p.ReleaseAddress(c, f.PublicAddressID)).get(t, "ReleaseAddress")
	// Backends are running instances (ELBv2, for one, refuses to register
	// a stopped one).
	ok(p.StartInstance(c, f.Seed)).get(t, "StartInstance")
	req := sdk.CreateLoadBalancerRequest{
		IdempotencyToken: "lb-public", Name: "conformance-public", Scheme: sdk.SchemePublic, AddressID: f.PublicAddressID,
		ListenerPort: 6443, BackendPort: 6443, BackendInstanceIDs: []string{f.Seed}, HealthCheck: sdk.HealthCheck{Port: 9444, Path: "/gate"},
	}
	lb := ok(p.CreateLoadBalancer(c, req)).get(t, "CreateLoadBalancer")
	if lb.TrafficEnabled {
		t.Fatal("a new load balancer admits traffic")
	}
	if retry := ok(p.CreateLoadBalancer(c, req)).get(t, "retried CreateLoadBalancer"); retry.ID != lb.ID {
		t.Fatalf("retry made %s, first %s", retry.ID, lb.ID)
	}
	if len(lb.Backends) != 1 || lb.Backends[0].InstanceID != f.Seed {
		t.Fatalf("backends = %+v", lb.Backends)
	}
	// Zones, where the cloud has them, are the plugin's, each once.
	offered := ok(p.PluginInfo(c)).get(t, "PluginInfo").Zones
	seen := map[string]bool{}
	for _, z := range lb.Zones {
		if !slices.Contains(offered, z.Zone) || seen[z.Zone] {
			t.Errorf("load balancer zone %+v: not one of the plugin's zones %v, or listed twice", z, offered)
		}
		seen[z.Zone] = true
	}
	if lb = ok(p.SetLoadBalancerTraffic(c, lb.ID, true)).get(t, "SetLoadBalancerTraffic"); !lb.TrafficEnabled {
		t.Fatal("traffic not enabled")
	}
	if lb = ok(p.SetLoadBalancerBackends(c, lb.ID, nil)).get(t, "SetLoadBalancerBackends"); len(lb.Backends) != 0 {
		t.Fatalf("backends after clearing: %+v", lb.Backends)
	}
	if _, err := p.SetLoadBalancerBackends(c, lb.ID, []string{"i-does-not-exist"}); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("unknown backend: %v, want ErrNotFound", err)
	}
	wrong := req
	wrong.IdempotencyToken, wrong.Scheme, wrong.AddressID = "lb-wrong-scheme", sdk.SchemeInternal, f.PublicAddressID
	if _, err := p.CreateLoadBalancer(c, wrong); err == nil {
		t.Error("an internal load balancer on a public address (already in use) was created")
	}
	if err := p.DeleteLoadBalancer(c, lb.ID); err != nil {
		t.Fatalf("DeleteLoadBalancer: %v", err)
	}
	ok(p.AttachAddress(c, f.PublicAddressID, f.Seed)).get(t, "AttachAddress")
}

func healthChecks(t *testing.T, f Fixture) {
	if f.Backends == nil {
		reason := f.NoBackends
		if reason == "" {
			reason = "the provider offers no backend harness; health checks are verified by its own tests"
		}
		t.Skip(reason)
	}
	p, c := f.Provider, ctx(t)
	snap := snapshotSeed(t, f, "snap-for-backends")
	zones := ok(p.PluginInfo(c)).get(t, "PluginInfo").Zones
	hc := sdk.HealthCheck{Port: 19444, Path: "/gate", Interval: 200 * time.Millisecond, Timeout: 200 * time.Millisecond, HealthyThreshold: 2, UnhealthyThreshold: 2}
	var healthy, sick sdk.Instance
	for i, name := range []string{"healthy", "sick"} {
		inst := ok(p.CreateInstance(c, sdk.CreateInstanceRequest{IdempotencyToken: "backend-" + name, Name: name, Zone: zones[i%len(zones)], DiskSnapshotID: snap.ID})).get(t, "CreateInstance")
		f.Backends.Serve(t, inst, hc, 16443, name == "healthy")
		if name == "healthy" {
			healthy = inst
		} else {
			sick = inst
		}
	}
	ok(p.ReleaseAddress(c, f.PrivateAddressID)).get(t, "ReleaseAddress")
	lb := ok(p.CreateLoadBalancer(c, sdk.CreateLoadBalancerRequest{
		IdempotencyToken: "lb-health", Name: "health", Scheme: sdk.SchemeInternal, AddressID: f.PrivateAddressID,
		ListenerPort: 16443, BackendPort: 16443, BackendInstanceIDs: []string{healthy.ID, sick.ID}, HealthCheck: hc,
	})).get(t, "CreateLoadBalancer")
	settle := f.Settle
	if settle == 0 {
		settle = 10 * time.Second
	}
	deadline := time.Now().Add(settle)
	for {
		lb = ok(p.GetLoadBalancer(c, lb.ID)).get(t, "GetLoadBalancer")
		verdict := map[string]sdk.BackendHealth{}
		for _, b := range lb.Backends {
			verdict[b.InstanceID] = b.Health
		}
		if verdict[healthy.ID] == sdk.BackendHealthy && verdict[sick.ID] == sdk.BackendUnhealthy {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("health checks did not settle: %v", verdict)
		}
		time.Sleep(100 * time.Millisecond)
	}
	addr := net.JoinHostPort(lb.IP, fmt.Sprint(lb.ListenerPort))
	if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		// Disabled traffic may accept and close, but must never reach a backend.
		conn.SetReadDeadline(time.Now().Add(time.Second))
		if b, _ := io.ReadAll(conn); len(b) > 0 {
			t.Fatalf("traffic reached backend %q before it was enabled", b)
		}
		conn.Close()
	}
	ok(p.SetLoadBalancerTraffic(c, lb.ID, true)).get(t, "SetLoadBalancerTraffic")
	for i := range 10 {
		var reply []byte
		for attempt := 0; ; attempt++ {
			conn, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				conn.SetReadDeadline(time.Now().Add(2 * time.Second))
				reply, err = io.ReadAll(conn)
				conn.Close()
			}
			if err == nil && len(reply) > 0 {
				break
			}
			if attempt > 50 {
				t.Fatalf("connection %d through the load balancer: %v", i, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if string(reply) != healthy.ID {
			t.Fatalf("connection %d reached %q; only the healthy backend %s may get traffic", i, reply, healthy.ID)
		}
	}
}

func concurrency(t *testing.T, f Fixture) {
	p, c := f.Provider, ctx(t)
	snap := snapshotSeed(t, f, "snap-for-concurrency")
	zone := ok(p.PluginInfo(c)).get(t, "PluginInfo").Zones[0]
	var wg sync.WaitGroup
	ids := make([]string, 8)
	errs := make([]error, 8)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Half the callers share one token: they must all get one instance.
			token := fmt.Sprintf("concurrent-%d", i)
			if i%2 == 0 {
				token = "concurrent-shared"
			}
			inst, err := p.CreateInstance(c, sdk.CreateInstanceRequest{IdempotencyToken: token, Name: token, Zone: zone, DiskSnapshotID: snap.ID, Labels: map[string]string{"conc": "yes"}})
			ids[i], errs[i] = inst.ID, err
			_, _ = p.ListInstances(c, nil)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("concurrent CreateInstance %d: %v", i, err)
		}
	}
	for i := 2; i < len(ids); i += 2 {
		if ids[i] != ids[0] {
			t.Fatalf("callers sharing a token got %s and %s", ids[0], ids[i])
		}
	}
	listed := ok(p.ListInstances(c, map[string]string{"conc": "yes"})).get(t, "ListInstances")
	if len(listed) != 5 {
		t.Fatalf("%d instances for 5 distinct tokens", len(listed))
	}
	for _, inst := range listed {
		wg.Add(1)
		go func() { defer wg.Done(); _ = p.DeleteInstance(c, inst.ID) }()
	}
	wg.Wait()
	if left := ok(p.ListInstances(c, map[string]string{"conc": "yes"})).get(t, "ListInstances"); len(left) != 0 {
		t.Fatalf("%d instances left after concurrent deletes", len(left))
	}
}

// controlPlaneChecks: the optional CheckControlPlane answers either
// ErrUnimplemented or named checks, and changes nothing.
func controlPlaneChecks(t *testing.T, f Fixture) {
	p, c := f.Provider, ctx(t)
	checker, isChecker := p.(sdk.ControlPlaneChecker)
	if !isChecker {
		t.Skip("the provider does not implement sdk.ControlPlaneChecker")
	}
	zones := ok(p.PluginInfo(c)).get(t, "PluginInfo").Zones
	world := func() string {
		return fmt.Sprint(ok(p.ListInstances(c, nil)).get(t, "ListInstances"), ok(p.ListLoadBalancers(c, nil)).get(t, "ListLoadBalancers"),
			ok(p.ListDiskSnapshots(c, nil)).get(t, "ListDiskSnapshots"), ok(p.ListAddresses(c)).get(t, "ListAddresses"))
	}
	before := world()
	checks, err := checker.CheckControlPlane(c, sdk.CheckControlPlaneRequest{InstanceID: f.Seed, Zones: zones, PrivateAddressID: f.PrivateAddressID,
		PublicAddressID: f.PublicAddressID, NodePorts: []int{2379, 2380, 9443}, LoadBalancerPorts: []int{6443, 9444}})
	if errors.Is(err, sdk.ErrUnimplemented) {
		t.Skip("the plugin does not implement CheckControlPlane")
	}
	if err != nil {
		t.Fatalf("CheckControlPlane: %v", err)
	}
	if len(checks) == 0 {
		t.Error("CheckControlPlane returned no checks")
	}
	for _, ch := range checks {
		if ch.Name == "" || (!ch.OK && ch.Detail == "") {
			t.Errorf("check %+v: every check needs a name, and a failed one a detail saying what to change", ch)
		}
	}
	if after := world(); after != before {
		t.Errorf("CheckControlPlane changed the world:\nbefore %s\nafter  %s", before, after)
	}
}
