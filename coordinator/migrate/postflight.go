package migrate

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/triad-k8s/triad/coordinator/controlplane"
	"github.com/triad-k8s/triad/coordinator/engine"
	agentv1 "github.com/triad-k8s/triad/proto/triad/agent/v1"
)

func (e *Env) postflight(ctx context.Context, op *engine.Op[State]) error {
	s := op.State
	pf := &Postflight{}
	if err := e.replaceOriginalNode(ctx, op, pf); err != nil {
		return err
	}
	view := e.Etcd(ctx, s.Nodes)
	for _, n := range s.Nodes {
		if err := view.Err[n.Name]; err != nil {
			return err
		}
	}
	problems := view.Problems(3)
	for _, n := range s.Nodes {
		st := view.Status[n.Name]
		pf.Members, _ = controlplane.Voters(st)
		pf.Revision = st.GetRevision()
	}
	if pf.Revision < s.Baseline.Revision {
		problems = append(problems, fmt.Sprintf("etcd revision %d went below the baseline %d", pf.Revision, s.Baseline.Revision))
	}
	var err error
	if pf.Objects, err = e.countObjects(ctx, s.Original.Name); err != nil {
		return err
	}
	for _, r := range countedResources {
		if pf.Objects[r] < s.Baseline.Objects[r] {
			problems = append(problems, fmt.Sprintf("%d %s, fewer than the %d at preflight", pf.Objects[r], r, s.Baseline.Objects[r]))
		}
	}
	for _, lease := range []struct {
		name   string
		holder *string
	}{{"kube-controller-manager", &pf.ControllerLeader}, {"kube-scheduler", &pf.SchedulerLeader}} {
		if err := controlplane.Poll(ctx, e.Options.ReadyTimeout, time.Second, lease.name+" leader", func() (bool, error) {
			l, err := e.Kube.CoordinationV1().Leases(metav1.NamespaceSystem).Get(ctx, lease.name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			if l.Spec.HolderIdentity == nil || l.Spec.RenewTime == nil || !l.Spec.RenewTime.After(*s.OpenedAt) {
				return false, errors.New("no leader has renewed the lease since the open")
			}
			*lease.holder = *l.Spec.HolderIdentity
			return true, nil
		}); err != nil {
			problems = append(problems, err.Error())
		}
	}
	nodes, err := e.Kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, n := range nodes.Items {
		// Stragglers the operator let the controllers start without (a
		// heartbeat threshold below 1) are named in the journal, not held
		// against the migration.
		if slices.Contains(s.Baseline.ReadyNodes, n.Name) && !controlplane.NodeReady(&n) && !slices.Contains(s.HeartbeatStragglers, n.Name) {
			pf.NotReady = append(pf.NotReady, n.Name)
		}
	}
	uids, err := e.podUIDs(ctx, s.Original.Name)
	if err != nil {
		return err
	}
	for name, uid := range s.Baseline.PodUIDs {
		if uids[name] != uid {
			pf.PodsChanged = append(pf.PodsChanged, name)
		}
	}
	sort.Strings(pf.PodsChanged)
	if len(pf.NotReady) > 0 {
		problems = append(problems, "nodes NotReady: "+strings.Join(pf.NotReady, ", "))
	}
	if len(pf.PodsChanged) > 0 {
		problems = append(problems, "pods deleted or replaced: "+strings.Join(controlplane.First(pf.PodsChanged, 10), ", "))
	}
	if pf.StaleLeases, err = e.removeStaleIdentityLeases(ctx, s); err != nil {
		problems = append(problems, err.Error())
	}
	s.Postflight = pf
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	if err := controlplane.Parallel(s.Nodes, func(n controlplane.Node) error {
		return e.CallAgent(ctx, e.AgentEndpoint(n.PrivateIP), "commit restore", func(ctx context.Context, c agentv1.AgentServiceClient) error {
			_, err := c.CommitRestore(ctx, &agentv1.CommitRestoreRequest{Header: header(op)})
			return err
		})
	}); err != nil {
		return err
	}
	op.Logf("3 voting members at revision %d; kcm leader %s; scheduler leader %s; %d nodes Ready; %d pods unchanged", pf.Revision, pf.ControllerLeader, pf.SchedulerLeader, len(s.Baseline.ReadyNodes), len(s.Baseline.PodUIDs))
	return nil
}

// replaceOriginalNode makes the three new Nodes control-plane Nodes as
// kubeadm's (the original's labels and taints), retires the original's
// Node, and waits until CoreDNS has its ready replicas back: after it,
// exactly the three new Nodes are Ready control-plane Nodes.
func (e *Env) replaceOriginalNode(ctx context.Context, op *engine.Op[State], pf *Postflight) error {
	s := op.State
	meta := controlplane.KubeadmControlPlane()
	if s.Baseline.OriginalNode != nil {
		meta = *s.Baseline.OriginalNode
	}
	var names []string
	for _, n := range s.Nodes {
		names = append(names, n.Name)
	}
	var err error
	if pf.Labelled, err = controlplane.AdoptNodes(ctx, e.Kube, meta, names, e.Options.ReadyTimeout, op.Logf); err != nil {
		return err
	}
	if !slices.Contains(names, s.Original.Name) {
		if pf.RetiredPods, err = controlplane.RetireNode(ctx, e.Kube, s.Original.Name, op.Logf); err != nil {
			return err
		}
	}
	if dns := s.Baseline.CoreDNS; dns != nil {
		start := time.Now()
		if err := controlplane.WaitCoreDNS(ctx, e.Kube, dns.Ready, e.Options.ReadyTimeout); err != nil {
			return err
		}
		since := start
		if dns.OnOriginal > 0 && s.StoppedAt != nil {
			since = *s.StoppedAt // its pods there stopped serving with the original
		}
		pf.CoreDNSShortSeconds = time.Since(since).Seconds()
		op.Logf("CoreDNS Available with %d ready replicas; it had fewer for %.1fs (%d of its pods ran on %s)", dns.Ready, pf.CoreDNSShortSeconds, dns.OnOriginal, s.Original.Name)
	}
	endpoint := net.JoinHostPort(s.PrivateIP, strconv.Itoa(e.Config.ControlPlane.APIServerPort))
	if now, err := controlplane.SetControlPlaneEndpoint(ctx, e.Kube, endpoint); err != nil {
		return fmt.Errorf("recording the control-plane endpoint in %s: %w", controlplane.KubeadmConfig, err)
	} else if now != "" {
		op.Logf("kubeadm's ClusterConfiguration names %s as the control-plane endpoint", now)
	}
	return controlplane.WaitControlPlaneNodes(ctx, e.Kube, names, e.Options.ReadyTimeout)
}

// removeStaleIdentityLeases deletes the kube-apiserver identity leases
// that nothing renewed since the old kube-apiserver stopped: they belong to
// the old node, and would otherwise linger (and count as a live apiserver
// for storage-version and peer-proxy purposes) until garbage collected.
func (e *Env) removeStaleIdentityLeases(ctx context.Context, s *State) ([]string, error) {
	leases, err := e.Kube.CoordinationV1().Leases(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{LabelSelector: "apiserver.kubernetes.io/identity=kube-apiserver"})
	if err != nil {
		return nil, fmt.Errorf("listing kube-apiserver identity leases: %w", err)
	}
	var removed []string
	for _, l := range leases.Items {
		if l.Spec.RenewTime == nil || !l.Spec.RenewTime.Time.Before(*s.StoppedAt) {
			continue
		}
		if err := e.Kube.CoordinationV1().Leases(metav1.NamespaceSystem).Delete(ctx, l.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return removed, fmt.Errorf("deleting stale identity lease %s: %w", l.Name, err)
		}
		removed = append(removed, l.Name)
	}
	return removed, nil
}
