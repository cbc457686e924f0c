package availability

import (
	"context"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/client-go/rest"
)

var (
	lbA   = Target{Name: "private", Kind: LoadBalancer}
	nodeA = Target{Name: "node/a", Kind: Node}
	nodeB = Target{Name: "node/b", Kind: Node}
	nodeC = Target{Name: "node/c", Kind: Node}
)

func at(start time.Time, ms int) time.Time { return start.Add(time.Duration(ms) * time.Millisecond) }

func TestWindowsCountSuccessesAndZeroWhenTwoNodesAreDown(t *testing.T) {
	start := time.Unix(1000, 0)
	var probes []probe
	add := func(ms int, tg Target, ok bool) {
		probes = append(probes, probe{at: at(start, ms), target: tg, ok: ok})
	}
	// Window 0: all fine.
	for _, ms := range []int{0, 250, 500, 750} {
		add(ms, lbA, true)
		add(ms, nodeA, true)
		add(ms, nodeB, true)
		add(ms, nodeC, true)
	}
	// Window 1: node a down, one of four reads through the LB failed.
	for i, ms := range []int{1000, 1250, 1500, 1750} {
		add(ms, lbA, i != 0)
		add(ms, nodeA, false)
		add(ms, nodeB, true)
		add(ms, nodeC, true)
	}
	// Windows 2 and 3: nodes a and b down; the LB still answers every read
	// (what the LB probes see does not matter: two of three nodes down is a
	// lost quorum).
	for _, ms := range []int{2000, 2500, 3000, 3500} {
		add(ms, lbA, true)
		add(ms, nodeA, false)
		add(ms, nodeB, false)
		add(ms, nodeC, true)
	}
	r := compute(probes, start, at(start, 4000), time.Second)
	want := []float64{100, 75, 0, 0}
	if len(r.Windows) != len(want) {
		t.Fatalf("%d windows, want %d", len(r.Windows), len(want))
	}
	for i, w := range r.Windows {
		if w.Availability != want[i] {
			t.Errorf("window %d: availability %.1f, want %.1f (nodes down %v)", i, w.Availability, want[i], w.NodesDown)
		}
	}
	if got := r.Windows[2].NodesDown; len(got) != 2 || got[0] != "node/a" || got[1] != "node/b" {
		t.Errorf("nodes down in window 2: %v", got)
	}
	if r.Requests != 12 || r.Failed != 1 || r.LongestUnavailable != 2*time.Second || r.MinAvailability != 0 || r.Availability != 43.75 {
		t.Errorf("report: requests %d failed %d longest %s min %.1f mean %.2f", r.Requests, r.Failed, r.LongestUnavailable, r.MinAvailability, r.Availability)
	}
}

func TestAWindowWithoutARequestIsUnavailable(t *testing.T) {
	start := time.Unix(1000, 0)
	r := compute([]probe{{at: start, target: lbA, ok: true}}, start, at(start, 2000), time.Second)
	if r.Windows[1].Availability != 0 || r.LongestUnavailable != time.Second {
		t.Fatalf("report %+v", r)
	}
}

// TestMonitorProbesOverTLSAndExportsMetrics runs a monitor against a TLS
// server standing in for kube-apiserver that fails on demand.
func TestMonitorProbesOverTLSAndExportsMetrics(t *testing.T) {
	var failing atomic.Bool
	var paths atomic.Value
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		paths.Store(r.URL.Path)
		if failing.Load() {
			http.Error(w, "etcd unavailable", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, `{"kind":"Namespace"}`)
	}))
	defer srv.Close()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	addr := strings.TrimPrefix(srv.URL, "https://")
	m, err := New(Config{Cluster: "test", Interval: 20 * time.Millisecond, Window: 200 * time.Millisecond},
		&rest.Config{TLSClientConfig: rest.TLSClientConfig{CAData: ca}},
		[]Target{{Name: "lb", Kind: LoadBalancer, Address: addr}, {Name: "node/a", Kind: Node, Address: addr}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	// Each phase lasts until ten reads had its outcome.
	phase := func(what string, enough func(Report) bool) {
		t.Helper()
		start := time.Now()
		deadline := start.Add(30 * time.Second)
		for !enough(m.Report()) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: report %+v", what, m.Report())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	phase("reads succeeding", func(r Report) bool { return r.Requests-r.Failed >= 10 })
	failing.Store(true)
	phase("reads failing", func(r Report) bool { return r.Failed >= 10 })
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	cancel()
	<-done
	r := m.Report()
	if r.Failed == r.Requests {
		t.Fatalf("requests %d, failed %d: want some of each", r.Requests, r.Failed)
	}
	// How the reads fall into windows depends on this machine's speed;
	// the arithmetic of windows is TestWindowsCount...'s. Here: the reads
	// went over TLS, both outcomes were seen and counted in the windows.
	sum, failed := 0, 0
	for _, w := range r.Windows {
		sum += w.Requests
		failed += w.Failed
	}
	if sum != r.Requests || failed != r.Failed || len(r.FirstErrors) == 0 || !strings.Contains(r.FirstErrors[0], "503") {
		t.Errorf("windows hold %d reads (%d failed), report %d (%d); first errors %q", sum, failed, r.Requests, r.Failed, r.FirstErrors)
	}
	if p := paths.Load(); p != "/api/v1/namespaces/default" {
		t.Errorf("probe path %v", p)
	}
	for _, metric := range []string{`triad_probe_requests_total{cluster="test",kind="lb",result="failure",target="lb"}`, "triad_availability_ratio", "triad_control_plane_nodes_down"} {
		if !strings.Contains(rec.Body.String(), metric) {
			t.Errorf("metrics lack %s:\n%s", metric, rec.Body)
		}
	}
}

// A VM that lost power black-holes packets: each probe of it waits out its
// timeout (2 s), longer than a window, so windows pass without a probe of
// that node. They count it down, as its last probe failed.
func TestANodeWhoseProbesTimeOutStaysDownBetweenProbes(t *testing.T) {
	start := time.Unix(1000, 0)
	var probes []probe
	add := func(ms int, tg Target, ok bool) {
		probes = append(probes, probe{at: at(start, ms), target: tg, ok: ok})
	}
	for ms := 0; ms < 5000; ms += 250 {
		add(ms, lbA, true)
		add(ms, nodeC, true)
	}
	for _, ms := range []int{0, 250, 500, 750} {
		add(ms, nodeA, true)
		add(ms, nodeB, true)
	}
	for _, ms := range []int{4000, 4250, 4500, 4750} {
		add(ms, nodeA, true) // a is back
	}
	// From 1 s on, a and b are gone: one probe each, started at 1 s, that
	// failed at its timeout 2.5 s later; none started in windows 2 and 3.
	for _, tg := range []Target{nodeA, nodeB} {
		probes = append(probes, probe{at: at(start, 1000), end: at(start, 3500), target: tg, ok: false})
	}
	// Node b is then removed from the targets (an upgrade deleted it): no
	// more probes, and its last failure must not count past its end.
	probes = append(probes, probe{at: at(start, 3600), end: at(start, 3700), target: nodeA, ok: false})
	r := compute(probes, start, at(start, 5000), time.Second)
	for i, want := range []float64{100, 0, 0, 0, 100} {
		if got := r.Windows[i].Availability; got != want {
			t.Errorf("window %d: availability %.1f, want %.1f (nodes down %v)", i, got, want, r.Windows[i].NodesDown)
		}
	}
	if got := r.Windows[2].NodesDown; len(got) != 2 {
		t.Errorf("nodes down in window 2: %v, want node/a and node/b", got)
	}
}

// The windows say how available the cluster was; the per-target tally says
// which endpoint failed, counting the same probes as the windows.
func TestEachTargetIsTalliedOnItsOwn(t *testing.T) {
	start := time.Unix(1000, 0)
	var probes []probe
	for ms := 0; ms < 2000; ms += 250 {
		probes = append(probes,
			probe{at: at(start, ms), target: nodeB, ok: ms >= 1000},
			probe{at: at(start, ms), target: lbA, ok: true},
			probe{at: at(start, ms), target: nodeA, ok: true})
	}
	// Outside the reported span: counted nowhere.
	probes = append(probes, probe{at: at(start, 2500), target: nodeC, ok: false})
	r := compute(probes, start, at(start, 2000), time.Second)
	want := []TargetTally{{Target: lbA, Requests: 8}, {Target: nodeA, Requests: 8}, {Target: nodeB, Requests: 8, Failed: 4}}
	if len(r.Targets) != len(want) {
		t.Fatalf("targets %+v, want %+v", r.Targets, want)
	}
	for i := range want {
		if r.Targets[i] != want[i] {
			t.Errorf("target %d: %+v, want %+v", i, r.Targets[i], want[i])
		}
	}
	if r.NodeFailed != 4 || r.Failed != 0 {
		t.Errorf("node failures %d, address failures %d; want 4 and 0", r.NodeFailed, r.Failed)
	}
}

// A probe that got no answer in time is counted apart from a refused or
// erroring one: slow is not the same failure as down.
func TestTimedOutProbesAreCountedApart(t *testing.T) {
	start := time.Unix(1000, 0)
	probes := []probe{
		{at: at(start, 0), target: lbA, ok: true},
		{at: at(start, 100), target: lbA, err: "context deadline exceeded (Client.Timeout exceeded while awaiting headers)", timedOut: true},
		{at: at(start, 200), target: lbA, err: "dial tcp: connect: connection refused"},
		{at: at(start, 300), target: lbA, err: "503 Service Unavailable"},
		{at: at(start, 400), target: nodeA, err: "deadline", timedOut: true}, // nodes are tallied apart
	}
	r := compute(probes, start, at(start, 1000), time.Second)
	if r.Failed != 3 || r.TimedOut != 1 {
		t.Errorf("failed %d, timed out %d; want 3 and 1", r.Failed, r.TimedOut)
	}
}
