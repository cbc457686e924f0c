package migrate

import (
	"context"
	"maps"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/triad-k8s/triad/coordinator/config"
	"github.com/triad-k8s/triad/coordinator/controlplane"
	"github.com/triad-k8s/triad/coordinator/engine"
	"github.com/triad-k8s/triad/internal/testkube"
)

// lease is node's Lease in kube-node-lease at resourceVersion rv, renewed
// at renew by the kubelet's clock.
func lease(node, rv string, renew time.Time) coordinationv1.Lease {
	return coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: node, Namespace: corev1.NamespaceNodeLease, ResourceVersion: rv},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: &node, RenewTime: &metav1.MicroTime{Time: renew}},
	}
}

func TestJudgeHeartbeats(t *testing.T) {
	now := time.Now()
	abc := map[string]string{"node-a": "10", "node-b": "20", "node-c": "30"}
	for _, tc := range []struct {
		name        string
		recorded    map[string]string
		leases      []coordinationv1.Lease
		threshold   float64
		heartbeated []string
		stragglers  []string
		enough      bool
	}{
		{name: "every kubelet that wrote its lease since the record has heartbeated",
			recorded: abc, threshold: 1,
			leases:      []coordinationv1.Lease{lease("node-a", "11", now), lease("node-b", "25", now), lease("node-c", "31", now)},
			heartbeated: []string{"node-a", "node-b", "node-c"}, enough: true},
		{name: "no kubelet has heartbeated while every lease is at its recorded version",
			recorded: abc, threshold: 1,
			leases:     []coordinationv1.Lease{lease("node-a", "10", now), lease("node-b", "20", now), lease("node-c", "30", now)},
			stragglers: []string{"node-a", "node-b", "node-c"}},
		{name: "a lease renewed an hour ahead by a skewed kubelet clock but not written since the record does not count",
			recorded: abc, threshold: 1,
			leases:      []coordinationv1.Lease{lease("node-a", "11", now), lease("node-b", "21", now), lease("node-c", "30", now.Add(time.Hour))},
			heartbeated: []string{"node-a", "node-b"}, stragglers: []string{"node-c"}},
		{name: "a lease written long ago by a kubelet clock running behind counts once its version changed",
			recorded: abc, threshold: 1,
			leases:      []coordinationv1.Lease{lease("node-a", "11", now.Add(-time.Hour)), lease("node-b", "21", now), lease("node-c", "31", now)},
			heartbeated: []string{"node-a", "node-b", "node-c"}, enough: true},
		{name: "a lease missing at the record counts once it exists",
			recorded: map[string]string{"node-a": "10", "node-new": ""}, threshold: 1,
			leases:      []coordinationv1.Lease{lease("node-a", "11", now), lease("node-new", "12", now)},
			heartbeated: []string{"node-a", "node-new"}, enough: true},
		{name: "a lease missing at the record and still missing does not count",
			recorded: map[string]string{"node-a": "10", "node-new": ""}, threshold: 1,
			leases:      []coordinationv1.Lease{lease("node-a", "11", now)},
			heartbeated: []string{"node-a"}, stragglers: []string{"node-new"}},
		{name: "a lease deleted since the record does not count",
			recorded: abc, threshold: 1,
			leases:      []coordinationv1.Lease{lease("node-a", "11", now), lease("node-b", "21", now)},
			heartbeated: []string{"node-a", "node-b"}, stragglers: []string{"node-c"}},
		{name: "leases of nodes not Ready at preflight neither count nor straggle",
			recorded: map[string]string{"node-a": "10"}, threshold: 1,
			leases:      []coordinationv1.Lease{lease("node-a", "11", now), lease("node-x", "99", now)},
			heartbeated: []string{"node-a"}, enough: true},
		{name: "2 of 3 meet a threshold of 0.6 at the deadline",
			recorded: abc, threshold: 0.6,
			leases:      []coordinationv1.Lease{lease("node-a", "11", now), lease("node-b", "21", now), lease("node-c", "30", now)},
			heartbeated: []string{"node-a", "node-b"}, stragglers: []string{"node-c"}, enough: true},
		{name: "2 of 3 miss a threshold of 0.7 at the deadline",
			recorded: abc, threshold: 0.7,
			leases:      []coordinationv1.Lease{lease("node-a", "11", now), lease("node-b", "21", now), lease("node-c", "30", now)},
			heartbeated: []string{"node-a", "node-b"}, stragglers: []string{"node-c"}},
		{name: "a cluster without worker nodes has nothing to wait for",
			recorded: map[string]string{}, threshold: 1, enough: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := judgeHeartbeats(tc.recorded, tc.leases, tc.threshold)
			if !slices.Equal(got.Heartbeated, tc.heartbeated) || !slices.Equal(got.Stragglers, tc.stragglers) {
				t.Errorf("heartbeated %v, stragglers %v; want %v, %v", got.Heartbeated, got.Stragglers, tc.heartbeated, tc.stragglers)
			}
			if got.enough() != tc.enough {
				t.Errorf("enough at the deadline: %v (%d heartbeated, %d needed), want %v", got.enough(), len(got.Heartbeated), got.Needed, tc.enough)
			}
		})
	}
}

func TestNeededHeartbeatsRoundsThresholdUp(t *testing.T) {
	for _, tc := range []struct {
		threshold float64
		nodes     int
		want      int
	}{
		{1, 3, 3},
		{0.6, 3, 2},
		{0.7, 3, 3},
		{0.95, 20, 19},
		{0.95, 21, 20},
		// 0.07 × 100 is 7.000000000000001 in float64; 8 would be wrong.
		{0.07, 100, 7},
		{0.001, 3, 1},
		{0.5, 0, 0},
	} {
		if got := neededHeartbeats(tc.threshold, tc.nodes); got != tc.want {
			t.Errorf("threshold %g of %d nodes needs %d, want %d", tc.threshold, tc.nodes, got, tc.want)
		}
	}
}

func TestCheckHeartbeatThreshold(t *testing.T) {
	for _, bad := range []float64{0, -0.5, 1.0000001, 2, math.NaN(), math.Inf(1)} {
		if err := CheckHeartbeatThreshold(bad); err == nil {
			t.Errorf("threshold %g accepted", bad)
		}
	}
	for _, good := range []float64{1, 0.95, 0.5, 0.001} {
		if err := CheckHeartbeatThreshold(good); err != nil {
			t.Errorf("threshold %g refused: %v", good, err)
		}
	}
}

// gateRun is the outcome of waitHeartbeats run as the one step of a plan,
// marked point of no return as 3.1 is.
type gateRun struct {
	err   error
	phase engine.Phase
	state *State // as the journal holds it
	lines []string
}

// runGate runs waitHeartbeats against the API server of kube, from state s,
// with options opts.
func runGate(t *testing.T, kube kubernetes.Interface, s *State, opts Options) gateRun {
	t.Helper()
	e := &Env{Cluster: &controlplane.Cluster{Config: &config.Cluster{}, Kube: kube}, Options: opts.withDefaults()}
	j, err := engine.OpenJournal(t.TempDir(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	var run gateRun
	r := &engine.Runner[State]{Journal: j,
		Plan: engine.Plan[State]{Kind: "test", Steps: []engine.Step[State]{{Name: "gate", PointOfNoReturn: true, Do: e.waitHeartbeats}}},
		Progress: func(ev engine.Event) {
			if ev.Kind == engine.EventInfo {
				run.lines = append(run.lines, ev.Message)
			}
		}}
	rec, err := r.NewRecord("op-1", "c", 1, s)
	if err != nil {
		t.Fatal(err)
	}
	// A gate that waits for its deadline when it should not fails here
	// instead of hanging the test.
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	run.err = r.Forward(ctx, rec, s)
	if ctx.Err() != nil {
		t.Fatalf("the gate was still waiting after 20s: %v", run.err)
	}
	stored, err := j.Get(rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	run.phase = stored.Phase
	if run.state, err = engine.LoadState[State](stored); err != nil {
		t.Fatal(err)
	}
	return run
}

// kubelets writes the kubelets' Leases through a real API server, which
// gives every write a new resourceVersion, as the gate expects.
type kubelets struct {
	t    *testing.T
	kube kubernetes.Interface
}

// none deletes every Lease in kube-node-lease: each case starts from a
// cluster without kubelets.
func (k kubelets) none() {
	k.t.Helper()
	if err := k.kube.CoordinationV1().Leases(corev1.NamespaceNodeLease).DeleteCollection(k.t.Context(), metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
		k.t.Fatalf("deleting the leases of the previous case: %v", err)
	}
}

// register creates node's Lease, renewed at renew by the kubelet's clock.
func (k kubelets) register(node string, renew time.Time) coordinationv1.Lease {
	k.t.Helper()
	l := lease(node, "", renew)
	created, err := k.kube.CoordinationV1().Leases(corev1.NamespaceNodeLease).Create(k.t.Context(), &l, metav1.CreateOptions{})
	if err != nil {
		k.t.Fatalf("creating the lease of %s: %v", node, err)
	}
	return *created
}

// heartbeat renews l as its kubelet does, by an update that the API server
// gives a new resourceVersion.
func (k kubelets) heartbeat(l coordinationv1.Lease) coordinationv1.Lease {
	k.t.Helper()
	l.Spec.RenewTime = &metav1.MicroTime{Time: time.Now()}
	renewed, err := k.kube.CoordinationV1().Leases(corev1.NamespaceNodeLease).Update(k.t.Context(), &l, metav1.UpdateOptions{})
	if err != nil {
		k.t.Fatalf("renewing the lease of %s: %v", l.Name, err)
	}
	if renewed.ResourceVersion == l.ResourceVersion {
		k.t.Fatalf("renewing the lease of %s kept resourceVersion %s", l.Name, l.ResourceVersion)
	}
	return *renewed
}

// versions is the gate's record of leases: node → resourceVersion.
func versions(leases ...coordinationv1.Lease) map[string]string {
	out := map[string]string{}
	for _, l := range leases {
		out[l.Name] = l.ResourceVersion
	}
	return out
}

// recordedState is a migration resumed in 3.1 after it recorded the leases.
func recordedState(recorded map[string]string) *State {
	now := time.Now().UTC()
	return &State{Cluster: "c", PrivateIP: "10.0.0.10", OpenedAt: &now, FirstWriteAt: &now,
		Baseline:               Baseline{ReadyNodes: slices.Sorted(maps.Keys(recorded))},
		HeartbeatLeaseVersions: recorded}
}

func TestHeartbeatGate(t *testing.T) {
	kube := testkube.Start(t).Client
	now := time.Now()

	// threeRecorded registers node-a, node-b and node-c and returns the
	// record of their leases; node-c's kubelet clock runs an hour ahead.
	threeRecorded := func(k kubelets) ([]coordinationv1.Lease, map[string]string) {
		abc := []coordinationv1.Lease{k.register("node-a", now), k.register("node-b", now), k.register("node-c", now.Add(time.Hour))}
		return abc, versions(abc...)
	}
	// twoOfThree is the record of node-a, node-b and node-c, after which
	// only node-a and node-b heartbeated; node-c's lease, renewed an hour
	// ahead by its clock but not written since, must not count.
	twoOfThree := func(k kubelets) map[string]string {
		abc, recorded := threeRecorded(k)
		k.heartbeat(abc[0])
		k.heartbeat(abc[1])
		return recorded
	}
	// subtest runs body on a cluster without kubelets' leases.
	subtest := func(name string, body func(t *testing.T, k kubelets)) {
		t.Run(name, func(t *testing.T) {
			k := kubelets{t: t, kube: kube}
			k.none()
			body(t, k)
		})
	}

	subtest("starts the controllers at once when every kubelet heartbeated, long before the deadline", func(t *testing.T, k kubelets) {
		abc, recorded := threeRecorded(k)
		for _, l := range abc {
			k.heartbeat(l)
		}
		run := runGate(t, kube, recordedState(recorded), Options{HeartbeatTimeout: time.Hour})
		if run.err != nil || run.phase != engine.PhaseSucceeded {
			t.Fatalf("gate: %v (phase %s)", run.err, run.phase)
		}
		if run.state.HeartbeatsPassedAt == nil || run.state.HeartbeatStragglers != nil {
			t.Errorf("journal: passed at %v, stragglers %v; want passed, none", run.state.HeartbeatsPassedAt, run.state.HeartbeatStragglers)
		}
	})

	subtest("at the deadline starts the controllers without the stragglers when enough heartbeated, and journals them", func(t *testing.T, k kubelets) {
		run := runGate(t, kube, recordedState(twoOfThree(k)), Options{HeartbeatTimeout: 50 * time.Millisecond, HeartbeatThreshold: 0.6})
		if run.err != nil {
			t.Fatalf("gate: %v", run.err)
		}
		if run.state.HeartbeatsPassedAt == nil || !slices.Equal(run.state.HeartbeatStragglers, []string{"node-c"}) {
			t.Errorf("journal: passed at %v, stragglers %v; want passed without node-c", run.state.HeartbeatsPassedAt, run.state.HeartbeatStragglers)
		}
		if log := strings.Join(run.lines, "\n"); !strings.Contains(log, "2 of 3 kubelets heartbeated") || !strings.Contains(log, "without node-c") {
			t.Errorf("progress does not name the straggler: %q", log)
		}
	})

	subtest("at the deadline stops without rolling back and names the stragglers when too few heartbeated", func(t *testing.T, k kubelets) {
		run := runGate(t, kube, recordedState(twoOfThree(k)), Options{HeartbeatTimeout: 50 * time.Millisecond, HeartbeatThreshold: 0.7})
		if run.err == nil {
			t.Fatal("the gate passed with 2 of 3 kubelets and a threshold of 0.7")
		}
		if run.phase != engine.PhaseFailed {
			t.Errorf("phase %s, want %s: past the point of no return a failure stops for a resume", run.phase, engine.PhaseFailed)
		}
		for _, want := range []string{"only 2 of 3 kubelets", "3 needed", "--heartbeat-threshold 0.7", "no heartbeat from node-c.", "not rolled back", "10.0.0.10", "'triad migrate resume'", "lower --heartbeat-threshold"} {
			if !strings.Contains(run.err.Error(), want) {
				t.Errorf("error %q does not say %q", run.err, want)
			}
		}
		if strings.Contains(run.err.Error(), "node-a") || run.state.HeartbeatsPassedAt != nil {
			t.Errorf("error %q names a node that heartbeated, or the gate was journaled as passed (%v)", run.err, run.state.HeartbeatsPassedAt)
		}
	})

	subtest("names the first five stragglers and counts the rest", func(t *testing.T, k kubelets) {
		var leases []coordinationv1.Lease
		for _, n := range []string{"n1", "n2", "n3", "n4", "n5", "n6", "n7"} {
			leases = append(leases, k.register(n, now))
		}
		run := runGate(t, kube, recordedState(versions(leases...)), Options{HeartbeatTimeout: 10 * time.Millisecond})
		if run.err == nil || !strings.Contains(run.err.Error(), "no heartbeat from n1, n2, n3, n4, n5, and 2 more.") {
			t.Errorf("error %v: want the first five stragglers and 2 more", run.err)
		}
	})

	subtest("records the leases after the first write and does not take the record for a heartbeat", func(t *testing.T, k kubelets) {
		a, b := k.register("node-a", now), k.register("node-b", now)
		s := recordedState(nil)
		s.Baseline.ReadyNodes = []string{"node-a", "node-b", "node-new"}
		run := runGate(t, kube, s, Options{HeartbeatTimeout: 10 * time.Millisecond})
		want := map[string]string{"node-a": a.ResourceVersion, "node-b": b.ResourceVersion, "node-new": ""}
		if !maps.Equal(run.state.HeartbeatLeaseVersions, want) {
			t.Errorf("journaled record %v, want %v", run.state.HeartbeatLeaseVersions, want)
		}
		if run.err == nil || !strings.Contains(run.err.Error(), "only 0 of 3 kubelets") {
			t.Errorf("gate: %v; want it to wait for writes after the record", run.err)
		}
	})

	subtest("a resumed gate judges against the record it journaled, not a new one", func(t *testing.T, k kubelets) {
		// Were the leases recorded again, every version would match and
		// nobody would have heartbeated.
		abc, recorded := threeRecorded(k)
		for _, l := range abc {
			k.heartbeat(l)
		}
		run := runGate(t, kube, recordedState(maps.Clone(recorded)), Options{HeartbeatTimeout: time.Hour})
		if run.err != nil || !maps.Equal(run.state.HeartbeatLeaseVersions, recorded) {
			t.Errorf("gate: %v, record %v; want passed against %v", run.err, run.state.HeartbeatLeaseVersions, recorded)
		}
	})

	subtest("a gate that passed before is not waited on again", func(t *testing.T, k kubelets) {
		_, recorded := threeRecorded(k)
		s := recordedState(recorded)
		s.HeartbeatsPassedAt = &now
		if run := runGate(t, kube, s, Options{HeartbeatTimeout: time.Hour}); run.err != nil {
			t.Errorf("gate: %v", run.err)
		}
	})

	subtest("refuses an invalid threshold before waiting", func(t *testing.T, k kubelets) {
		_, recorded := threeRecorded(k)
		run := runGate(t, kube, recordedState(recorded), Options{HeartbeatTimeout: time.Hour, HeartbeatThreshold: 1.5})
		if run.err == nil || !strings.Contains(run.err.Error(), "not a fraction in (0, 1]") {
			t.Errorf("gate: %v", run.err)
		}
	})
}
