package migrate

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/triad-k8s/triad/cloudplugins/sdk"
	"github.com/triad-k8s/triad/coordinator/controlplane"
	"github.com/triad-k8s/triad/coordinator/engine"
	agentv1 "github.com/triad-k8s/triad/proto/triad/agent/v1"
)

// Phase 3: the point of no return (3.1).

func (e *Env) openTraffic(ctx context.Context, op *engine.Op[State]) error {
	s := op.State
	if err := controlplane.Parallel(s.Nodes, func(n controlplane.Node) error {
		return e.SetGate(ctx, e.AgentEndpoint(n.PrivateIP), header(op), true)
	}); err != nil {
		return err
	}
	if s.OpenedAt == nil {
		s.OpenedAt = now()
		if err := op.Save(); err != nil {
			return err
		}
	}
	for _, id := range []string{s.InternalLB, s.PublicLB} {
		if _, err := controlplane.CloudRetry(ctx, "admit traffic on "+id, func() (sdk.LoadBalancer, error) { return e.Cloud.SetLoadBalancerTraffic(ctx, id, true) }); err != nil {
			return err
		}
	}
	op.Logf("traffic admitted on %s and %s", s.PrivateIP, s.PublicIP)
	if s.FirstWriteAt == nil {
		if err := controlplane.Poll(ctx, e.Options.ReadyTimeout, 100*time.Millisecond, "the first write through the load balancer", func() (bool, error) {
			err := e.writeProbe(ctx, op)
			return err == nil, err
		}); err != nil {
			return err
		}
		s.FirstWriteAt = now()
		s.WindowSeconds = s.FirstWriteAt.Sub(*s.StoppedAt).Seconds()
		if err := op.Save(); err != nil {
			return err
		}
		op.Logf("write-unavailability window: %.1fs (kube-apiserver stopped → first write through the load balancer)", s.WindowSeconds)
	}
	if e.Options.UnsafeStartControllersBeforeHeartbeats {
		op.Logf("UNSAFE: starting kube-controller-manager and kube-scheduler without waiting for kubelet heartbeats")
		if err := e.startControllers(ctx, op); err != nil {
			return err
		}
		return nil
	}
	if err := e.waitHeartbeats(ctx, op); err != nil {
		return err
	}
	return e.startControllers(ctx, op)
}

func (e *Env) writeProbe(ctx context.Context, op *engine.Op[State]) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cms := e.Kube.CoreV1().ConfigMaps(metav1.NamespaceSystem)
	data := map[string]string{"operation": op.Record.ID, "at": time.Now().UTC().Format(time.RFC3339Nano)}
	cm, err := cms.Get(ctx, ProbeConfigMap, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: ProbeConfigMap}, Data: data}, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	cm.Data = data
	_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
	return err
}

// waitHeartbeats holds kube-controller-manager back until the kubelets
// reach the new endpoint: started earlier, its node-lifecycle controller
// finds leases last renewed before the stop and marks the nodes NotReady,
// evicting their pods. It returns once every node Ready at preflight has
// heartbeated, or at HeartbeatTimeout once HeartbeatThreshold of them have;
// otherwise it fails, and the step stops for a resume (it is past the point
// of no return).
func (e *Env) waitHeartbeats(ctx context.Context, op *engine.Op[State]) error {
	s := op.State
	if s.HeartbeatsPassedAt != nil {
		// The controllers may already run on some node; waiting again
		// would protect nothing.
		op.Logf("heartbeat gate already passed at %s", s.HeartbeatsPassedAt.Format(time.RFC3339))
		return nil
	}
	threshold := e.Options.HeartbeatThreshold
	if err := CheckHeartbeatThreshold(threshold); err != nil {
		return err
	}
	if s.HeartbeatLeaseVersions == nil {
		// Recorded once, after the first write through the load balancer,
		// and kept across resumes. A kubelet that renewed between the open
		// and now must renew once more (its renew interval, 10 s by
		// default): late is safe, early is not.
		var leases []coordinationv1.Lease
		if err := controlplane.Poll(ctx, e.Options.ReadyTimeout, time.Second, "the kubelets' leases to record", func() (bool, error) {
			var err error
			leases, err = e.nodeLeases(ctx)
			return err == nil, err
		}); err != nil {
			return err
		}
		s.HeartbeatLeaseVersions = leaseVersions(s.Baseline.ReadyNodes, leases)
		if err := op.Save(); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(e.Options.HeartbeatTimeout)
	var hb heartbeats
	var judged bool
	var listErr error
	var lastReport time.Time
	for {
		leases, err := e.nodeLeases(ctx)
		if err == nil {
			hb, judged = judgeHeartbeats(s.HeartbeatLeaseVersions, leases, threshold), true
		} else {
			listErr = err
		}
		if judged && len(hb.Stragglers) == 0 {
			op.Logf("all %d kubelets heartbeated through the new endpoint", len(hb.Heartbeated))
			return e.passHeartbeatGate(op, nil)
		}
		if time.Now().After(deadline) {
			break
		}
		if time.Since(lastReport) > 5*time.Second {
			lastReport = time.Now()
			if judged {
				op.Logf("waiting for %d of %d kubelets to heartbeat through the new endpoint: %s", len(hb.Stragglers), len(s.HeartbeatLeaseVersions), strings.Join(controlplane.First(hb.Stragglers, 5), ", "))
			} else {
				op.Logf("waiting for the kubelets' leases: %v", listErr)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for kubelet heartbeats through the new endpoint: %w", ctx.Err())
		case <-time.After(min(time.Second, time.Until(deadline))):
		}
	}
	// Past the deadline. Heartbeats only accumulate (a Lease never returns
	// to its recorded resourceVersion), so the last listing that answered
	// still stands if the latest did not.
	stop := fmt.Sprintf("kube-controller-manager and kube-scheduler were not started, so no node is marked NotReady; "+
		"3.1 is past the point of no return, so the migration stops here and is not rolled back (traffic already goes to the new control plane). "+
		"Once the kubelets reach the API server on %s, run 'triad migrate resume' (it waits another --heartbeat-timeout)", s.PrivateIP)
	if !judged {
		return fmt.Errorf("could not list the kubelets' leases in %s within %s: %w; %s", corev1.NamespaceNodeLease, e.Options.HeartbeatTimeout, listErr, stop)
	}
	if !hb.enough() {
		return fmt.Errorf("only %d of %d kubelets heartbeated through the new endpoint within %s, %d needed (--heartbeat-threshold %g); no heartbeat from %s. %s, "+
			"or, if those nodes are gone for good, resume with a lower --heartbeat-threshold and a short --heartbeat-timeout (the controllers will then mark them NotReady and evict their pods)",
			len(hb.Heartbeated), len(s.HeartbeatLeaseVersions), e.Options.HeartbeatTimeout, hb.Needed, threshold, strings.Join(controlplane.First(hb.Stragglers, 5), ", "), stop)
	}
	op.Logf("%d of %d kubelets heartbeated within %s, at least the %d needed (--heartbeat-threshold %g): starting the controllers without %s, which they will mark NotReady",
		len(hb.Heartbeated), len(s.HeartbeatLeaseVersions), e.Options.HeartbeatTimeout, hb.Needed, threshold, strings.Join(hb.Stragglers, ", "))
	return e.passHeartbeatGate(op, hb.Stragglers)
}

// passHeartbeatGate journals that the controllers may start, and without
// which nodes' heartbeats.
func (e *Env) passHeartbeatGate(op *engine.Op[State], stragglers []string) error {
	op.State.HeartbeatsPassedAt, op.State.HeartbeatStragglers = now(), stragglers
	return op.Save()
}

// nodeLeases lists the kubelets' leases with a consistent read (no
// ResourceVersion in the options): a watch-cache read could answer with a
// version older than the recorded one, which would differ from it and pass
// for a heartbeat.
func (e *Env) nodeLeases(ctx context.Context) ([]coordinationv1.Lease, error) {
	l, err := e.Kube.CoordinationV1().Leases(corev1.NamespaceNodeLease).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing leases in %s: %w", corev1.NamespaceNodeLease, err)
	}
	return l.Items, nil
}

// leaseVersions is each node's Lease resourceVersion, "" for a node that
// has no Lease.
func leaseVersions(nodes []string, leases []coordinationv1.Lease) map[string]string {
	byName := map[string]string{}
	for _, l := range leases {
		byName[l.Name] = l.ResourceVersion
	}
	versions := make(map[string]string, len(nodes))
	for _, n := range nodes {
		versions[n] = byName[n]
	}
	return versions
}

// heartbeats is what judgeHeartbeats found.
type heartbeats struct {
	// Heartbeated and Stragglers are the recorded nodes that have and have
	// not heartbeated since the record, sorted.
	Heartbeated, Stragglers []string
	// Needed is how many must have heartbeated at the deadline.
	Needed int
}

// enough reports whether the controllers may start at the deadline.
func (h heartbeats) enough() bool { return len(h.Heartbeated) >= h.Needed }

// judgeHeartbeats decides which of the recorded nodes (node name →
// resourceVersion of its Lease at the record, "" if it had none) have
// heartbeated since, given their Leases now.
//
// A node has heartbeated when its Lease's resourceVersion differs from the
// recorded one: the API server changes it on every write, in the order
// etcd committed the writes, so a changed version proves that the kubelet
// wrote through the new endpoint after the record; nothing else writes a
// node's Lease before the controllers start. Spec.RenewTime is ignored: it
// is the kubelet's clock, and comparing it with the coordinator's lets a
// kubelet whose clock runs ahead look as if it had heartbeated. Versions
// are compared for equality only, as the API asks of clients.
func judgeHeartbeats(recorded map[string]string, leases []coordinationv1.Lease, threshold float64) heartbeats {
	current := map[string]string{}
	for _, l := range leases {
		current[l.Name] = l.ResourceVersion
	}
	h := heartbeats{Needed: neededHeartbeats(threshold, len(recorded))}
	for _, node := range slices.Sorted(maps.Keys(recorded)) {
		if rv, ok := current[node]; ok && rv != recorded[node] {
			h.Heartbeated = append(h.Heartbeated, node)
		} else {
			h.Stragglers = append(h.Stragglers, node)
		}
	}
	return h
}

// neededHeartbeats is ceil(threshold × nodes), at least one of at least
// one node. The product is nudged down first so that float error does not
// round a whole number up (0.07 × 100 is 7.000000000000001).
func neededHeartbeats(threshold float64, nodes int) int {
	if nodes == 0 {
		return 0
	}
	return min(nodes, max(1, int(math.Ceil(threshold*float64(nodes)-1e-9))))
}

func (e *Env) startControllers(ctx context.Context, op *engine.Op[State]) error {
	if err := controlplane.Parallel(op.State.Nodes, func(n controlplane.Node) error {
		return e.startPods(ctx, op, e.AgentEndpoint(n.PrivateIP), []string{"kube-controller-manager", "kube-scheduler"})
	}); err != nil {
		return err
	}
	if op.State.ControllersStartedAt == nil {
		op.State.ControllersStartedAt = now()
	}
	op.Logf("kube-controller-manager and kube-scheduler running on every node")
	return nil
}

func (e *Env) allPodsRunning(ctx context.Context, op *engine.Op[State]) error {
	return controlplane.Parallel(op.State.Nodes, func(n controlplane.Node) error {
		return e.CallAgentWithin(ctx, e.AgentEndpoint(n.PrivateIP), "list static pods", e.CallTimeout(), func(ctx context.Context, c agentv1.AgentServiceClient) error {
			return podsIn(ctx, c, agentv1.StaticPodState_STATIC_POD_STATE_RUNNING, "")
		})
	})
}
