package upgrade

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/triad-k8s/triad/cloudplugins/sdk"
	"github.com/triad-k8s/triad/coordinator/controlplane"
	"github.com/triad-k8s/triad/coordinator/engine"
	agentv1 "github.com/triad-k8s/triad/proto/triad/agent/v1"
)

// replacementName names node old's replacement in operation op:
// "<old name without an earlier upgrade's suffix>-u<op suffix>".
func replacementName(old, op string) string {
	if i := strings.LastIndex(old, "-u"); i > 0 && len(old)-i == 8 {
		old = old[:i]
	}
	return old + "-u" + op[max(0, len(op)-6):]
}

func peerURL(n controlplane.Node) string {
	return "https://" + net.JoinHostPort(n.PrivateIP, "2380")
}

// voter is a serving node other than skip whose agent answers etcd status:
// where membership changes are sent.
func (e *Env) voter(ctx context.Context, s *State, skip ...string) (controlplane.Node, *agentv1.GetEtcdStatusResponse, error) {
	var errs []error
	for _, n := range s.Serving() {
		if slices.Contains(skip, n.InstanceID) {
			continue
		}
		st, err := e.EtcdStatus(ctx, e.endpoint(n))
		if err == nil && st.GetHealthy() {
			return n, st, nil
		}
		errs = append(errs, fmt.Errorf("%s: %v", n.Name, err))
	}
	return controlplane.Node{}, nil, fmt.Errorf("no healthy etcd voter to change membership through: %w", errors.Join(errs...))
}

// runsEtcd tells whether the etcd static pod runs.
func runsEtcd(pods *agentv1.ListStaticPodsResponse) bool {
	return slices.ContainsFunc(pods.GetPods(), func(p *agentv1.StaticPod) bool {
		return p.GetName() == "etcd" && p.GetState() == agentv1.StaticPodState_STATIC_POD_STATE_RUNNING
	})
}

func since(t time.Time) float64 { return time.Since(t).Round(100 * time.Millisecond).Seconds() }

// join drains the old node and brings up its replacement as an etcd
// learner.
func (e *Env) join(ctx context.Context, op *engine.Op[State], at int) error {
	s := op.State
	nu := &s.Nodes[at]
	if nu.Skipped || nu.Switched {
		return nil
	}
	if nu.StartedAt == nil {
		nu.StartedAt = now()
	}
	if !nu.Drained {
		start := time.Now()
		ids, leader, err := e.clusterHealthy(ctx, s.Serving())
		if err != nil {
			return fmt.Errorf("cluster not healthy before touching %s: %w", nu.Old.Name, err)
		}
		nu.OldMemberID = ids[nu.Old.Name]
		if leader == nu.OldMemberID {
			var target controlplane.Node
			for _, n := range s.Serving() {
				if n.InstanceID != nu.Old.InstanceID {
					target = n
					break
				}
			}
			moveStart := time.Now().UTC()
			if err := e.agentDo(ctx, nu.Old, "move etcd leader", func(ctx context.Context, c agentv1.AgentServiceClient) error {
				_, err := c.MoveEtcdLeader(ctx, &agentv1.MoveEtcdLeaderRequest{Header: header(op), TargetMemberId: ids[target.Name]})
				return err
			}); err != nil {
				return err
			}
			s.LeaderMoves = append(s.LeaderMoves, moveStart)
			op.Logf("etcd leadership moved from %s to %s", nu.Old.Name, target.Name)
		}
		if err := e.setGate(ctx, op, nu.Old, false); err != nil {
			return err
		}
		if err := e.backendHealth(ctx, s, nu.Old.InstanceID, sdk.BackendUnhealthy); err != nil {
			return err
		}
		// The cloud's load balancers may keep sending to a failing
		// backend for longer than triad's own figure: the longer wins.
		time.Sleep(max(e.Options.DrainDelay, s.CloudAdvice.DrainDelay))
		nu.Drained, nu.Timings.Drain = true, since(start)
		if err := op.Save(); err != nil {
			return err
		}
		op.Logf("%s drained: gate closed, both load balancers send it nothing new (%.1fs)", nu.Old.Name, nu.Timings.Drain)
	}
	if nu.New.InstanceID == "" {
		start := time.Now()
		name := replacementName(nu.Old.Name, op.Record.ID)
		boot, err := controlplane.BootData(op.Record.ID, name)
		if err != nil {
			return err
		}
		inst, err := controlplane.CloudRetry(ctx, "create instance "+name, func() (sdk.Instance, error) {
			return e.Cloud.CreateInstance(ctx, sdk.CreateInstanceRequest{
				IdempotencyToken: op.Record.ID + "-" + name, Name: name, Zone: nu.Old.Zone, Image: s.Image,
				DiskSnapshotID: s.DiskSnapshotID, BootData: boot, Labels: s.labels(op.Record.ID),
			})
		})
		if err != nil {
			return err
		}
		nu.New = controlplane.Node{InstanceID: inst.ID, Name: inst.Name, Zone: inst.Zone, PrivateIP: inst.PrivateIP}
		nu.Timings.CreateVM = since(start)
		if err := op.Save(); err != nil {
			return err
		}
		op.Logf("%s: instance %s of %s in %s on %s (%.1fs)", name, inst.ID, s.Image, inst.Zone, inst.PrivateIP, nu.Timings.CreateVM)
	}
	var etcdRunning bool
	if err := e.agentDo(ctx, nu.New, "certificates", func(ctx context.Context, c agentv1.AgentServiceClient) error {
		info, err := c.GetInfo(ctx, &agentv1.GetInfoRequest{})
		if err != nil {
			return err
		}
		if info.GetCluster() != s.Cluster {
			return fmt.Errorf("agent of %s belongs to cluster %q", nu.New.Name, info.GetCluster())
		}
		pods, err := c.ListStaticPods(ctx, &agentv1.ListStaticPodsRequest{})
		if err != nil {
			return err
		}
		etcdRunning = runsEtcd(pods)
		_, err = c.IssueNodeCertificates(ctx, &agentv1.IssueNodeCertificatesRequest{Header: header(op), NodeName: nu.New.Name, IpAddresses: []string{nu.New.PrivateIP, s.PrivateIP, s.PublicIP}})
		return err
	}); err != nil {
		return err
	}
	voter, st, err := e.voter(ctx, s)
	if err != nil {
		return err
	}
	members := st.GetMembers()
	if nu.LearnerID == 0 {
		if err := e.agentDo(ctx, voter, "add etcd learner", func(ctx context.Context, c agentv1.AgentServiceClient) error {
			resp, err := c.AddEtcdMember(ctx, &agentv1.AddEtcdMemberRequest{Header: header(op), PeerUrls: []string{peerURL(nu.New)}})
			if err != nil {
				return err
			}
			nu.LearnerID, members = resp.GetMember().GetId(), resp.GetMembers()
			return nil
		}); err != nil {
			return err
		}
		if err := op.Save(); err != nil {
			return err
		}
		op.Logf("etcd learner %x added for %s (through %s)", nu.LearnerID, nu.New.Name, voter.Name)
	}
	if !etcdRunning {
		var initial []string
		for _, m := range members {
			name := m.GetName()
			if m.GetId() == nu.LearnerID {
				name = nu.New.Name
			}
			if name == "" || len(m.GetPeerUrls()) == 0 {
				return fmt.Errorf("etcd member %x has no name yet (another member is joining?)", m.GetId())
			}
			initial = append(initial, name+"="+m.GetPeerUrls()[0])
		}
		m := &agentv1.EtcdMembership{MemberName: nu.New.Name, PeerUrls: []string{peerURL(nu.New)},
			ClientUrls: []string{"https://" + net.JoinHostPort(nu.New.PrivateIP, "2379")}, InitialCluster: strings.Join(initial, ",")}
		if err := e.agentDo(ctx, nu.New, "manifests", func(ctx context.Context, c agentv1.AgentServiceClient) error {
			_, err := c.ReconfigureManifests(ctx, &agentv1.ReconfigureManifestsRequest{Header: header(op), AdvertiseAddress: nu.New.PrivateIP, Membership: m,
				InitialClusterState: "existing", EtcdServers: []string{"https://127.0.0.1:2379"}, EmptyEtcdDataDir: true, KubernetesVersion: s.KubernetesVersion,
				ApiserverShutdownDelay: durationpb.New(s.CloudAdvice.ShutdownDelay())})
			return err
		}); err != nil {
			return fmt.Errorf("manifests of %s: %w", nu.New.Name, err)
		}
		if err := e.checkKubeconfigs(ctx, op, nu.New); err != nil {
			return err
		}
		// A learner never passes etcd's /readyz: wait for it to run only;
		// promote checks it caught up.
		if err := e.StartPods(ctx, e.endpoint(nu.New), header(op), []string{"etcd"}, true); err != nil {
			return err
		}
	}
	op.Logf("etcd started on %s as a learner", nu.New.Name)
	return nil
}

// checkKubeconfigs checks, before n's etcd starts, that every kubeconfig
// kubeadm wrote on n names an API server that outlives the upgrade: its
// own (controller-manager.conf and scheduler.conf name nothing else), the
// load balancers' addresses, kubeadm's controlPlaneEndpoint or loopback;
// never a node being replaced.
func (e *Env) checkKubeconfigs(ctx context.Context, op *engine.Op[State], n controlplane.Node) error {
	s := op.State
	endpoint, err := controlplane.ControlPlaneEndpoint(ctx, e.Kube)
	if err != nil {
		return err
	}
	p := s.kubeconfigPolicy(n.PrivateIP, endpoint)
	info, err := e.Info(ctx, e.endpoint(n))
	if err != nil {
		return fmt.Errorf("reading the kubeconfigs of %s: %w", n.Name, err)
	}
	check, err := controlplane.CheckKubeconfigs(info.GetKubeconfigs(), p)
	if err != nil {
		return fmt.Errorf("kubeconfigs of %s after the rewrite: %w", n.Name, err)
	}
	op.Logf("%s: kubeconfigs name its own kube-apiserver or addresses that outlive the upgrade: %s", n.Name, check)
	return nil
}

// kubeconfigPolicy is what the kubeconfigs of the new node at own may
// name: the load balancers' addresses (the migration's), kubeadm's
// controlPlaneEndpoint, its own address or loopback. The address of every
// node being replaced goes.
func (s *State) kubeconfigPolicy(own, endpoint string) controlplane.KubeconfigPolicy {
	p := controlplane.KubeconfigPolicy{Own: own, Live: []string{s.PrivateIP, s.PublicIP}, ControlPlaneEndpoint: endpoint, Gone: map[string]string{}}
	for _, nu := range s.Nodes {
		if !nu.Skipped && nu.Old.PrivateIP != "" {
			p.Gone[nu.Old.PrivateIP] = nu.Old.Name + "'s address, which this upgrade replaces"
		}
	}
	return p
}

// unjoin puts the old node back: the new member and VM go and the old
// node's gate opens. Nothing once the node is switched.
func (e *Env) unjoin(ctx context.Context, op *engine.Op[State], at int) error {
	s := op.State
	nu := &s.Nodes[at]
	if nu.Skipped || nu.Switched {
		if nu.Switched {
			op.Logf("%s was replaced by %s: it keeps the new image", nu.Old.Name, nu.New.Name)
		}
		return nil
	}
	if nu.New.PrivateIP != "" {
		voter, st, err := e.voter(ctx, s, nu.New.InstanceID)
		if err != nil {
			return err
		}
		for _, m := range st.GetMembers() {
			if m.GetId() == nu.LearnerID || slices.Contains(m.GetPeerUrls(), peerURL(nu.New)) {
				if err := e.agentDo(ctx, voter, "remove etcd member", func(ctx context.Context, c agentv1.AgentServiceClient) error {
					_, err := c.RemoveEtcdMember(ctx, &agentv1.RemoveEtcdMemberRequest{Header: header(op), MemberId: m.GetId()})
					return err
				}); err != nil {
					return err
				}
				op.Logf("etcd member %x of %s removed", m.GetId(), nu.New.Name)
			}
		}
	}
	// The new VM: by its journaled id, and by its name under the
	// operation's labels (created just before a crash, never journaled).
	name := replacementName(nu.Old.Name, op.Record.ID)
	insts, err := controlplane.CloudRetry(ctx, "list instances", func() ([]sdk.Instance, error) { return e.Cloud.ListInstances(ctx, s.labels(op.Record.ID)) })
	if err != nil {
		return err
	}
	var ids []string
	if nu.New.InstanceID != "" {
		ids = append(ids, nu.New.InstanceID)
	}
	for _, in := range insts {
		if in.Name == name && !slices.Contains(ids, in.ID) {
			ids = append(ids, in.ID)
		}
	}
	for _, id := range ids {
		if err := e.deleteInstance(ctx, id); err != nil && !errors.Is(err, sdk.ErrNotFound) {
			return fmt.Errorf("deleting instance %s: %w", id, err)
		}
		op.Logf("instance %s (%s) deleted", id, name)
	}
	nu.New, nu.LearnerID, nu.Promoted, nu.Validated, nu.StartedAt = controlplane.Node{}, 0, false, false, nil
	if err := op.Save(); err != nil {
		return err
	}
	if err := e.setGate(ctx, op, nu.Old, true); err != nil {
		return err
	}
	if err := e.backendHealth(ctx, s, nu.Old.InstanceID, sdk.BackendHealthy); err != nil {
		return err
	}
	nu.Drained = false
	op.Logf("%s serves again behind both load balancers", nu.Old.Name)
	return nil
}

// promote makes the caught-up learner a voter, starts the control plane on
// the new node and validates it directly.
func (e *Env) promote(ctx context.Context, op *engine.Op[State], at int) error {
	s := op.State
	nu := &s.Nodes[at]
	if nu.Skipped || nu.Switched {
		return nil
	}
	if !nu.Promoted {
		start := time.Now()
		// The learner's own view first: a dead learner fails here, not
		// after a promotion that would count it as a voter.
		if err := e.agentDo(ctx, nu.New, "static pods", func(ctx context.Context, c agentv1.AgentServiceClient) error {
			pods, err := c.ListStaticPods(ctx, &agentv1.ListStaticPodsRequest{})
			if err != nil {
				return err
			}
			if !runsEtcd(pods) {
				return errors.New("etcd is not running")
			}
			return nil
		}); err != nil {
			return fmt.Errorf("learner %s: %w", nu.New.Name, err)
		}
		voter, _, err := e.voter(ctx, s, nu.New.InstanceID)
		if err != nil {
			return err
		}
		if err := controlplane.Poll(ctx, e.Options.CatchUpTimeout, 500*time.Millisecond, "learner "+nu.New.Name+" to catch up and be promoted", func() (bool, error) {
			err := e.agentDo(ctx, voter, "promote", func(ctx context.Context, c agentv1.AgentServiceClient) error {
				_, err := c.PromoteEtcdMember(ctx, &agentv1.PromoteEtcdMemberRequest{Header: header(op), MemberId: nu.LearnerID})
				return err
			})
			return err == nil, err
		}); err != nil {
			return err
		}
		nu.Promoted, nu.Timings.LearnerCatchUp = true, since(start)
		if err := op.Save(); err != nil {
			return err
		}
		op.Logf("%s promoted to a voting member after %.1fs", nu.New.Name, nu.Timings.LearnerCatchUp)
	}
	start := time.Now()
	if err := e.pods(ctx, op, nu.New, true, "kube-apiserver"); err != nil {
		return err
	}
	if err := e.WaitAPIServerReady(ctx, e.endpoint(nu.New)); err != nil {
		return err
	}
	nu.Timings.APIServerReady = since(start)
	op.Logf("kube-apiserver ready on %s after %.1fs", nu.New.Name, nu.Timings.APIServerReady)
	if err := e.pods(ctx, op, nu.New, true, "kube-controller-manager", "kube-scheduler"); err != nil {
		return err
	}
	start = time.Now()
	if err := e.validate(ctx, op, nu); err != nil {
		return fmt.Errorf("validating %s: %w", nu.New.Name, err)
	}
	nu.Validated, nu.Timings.Validate = true, since(start)
	op.Logf("%s validated: readyz, etcd voting member, a write and a read through it", nu.New.Name)
	return op.Save()
}

// validate tests the new node directly, not through the load balancers:
// its kube-apiserver is ready, its etcd member votes in a healthy cluster,
// and a write through it is read back through it.
func (e *Env) validate(ctx context.Context, op *engine.Op[State], nu *NodeUpgrade) error {
	st, err := e.EtcdStatus(ctx, e.endpoint(nu.New))
	if err != nil {
		return err
	}
	voters := 0
	for _, m := range st.GetMembers() {
		if m.GetIsLearner() {
			return fmt.Errorf("etcd still has learner %x", m.GetId())
		}
		voters++
	}
	if !st.GetHealthy() || st.GetMemberId() != nu.LearnerID || voters != Nodes+1 {
		return fmt.Errorf("etcd through %s: healthy %v, member %x (want %x), %d voting members (want %d)", nu.New.Name, st.GetHealthy(), st.GetMemberId(), nu.LearnerID, voters, Nodes+1)
	}
	kube, err := e.nodeClient(nu.New)
	if err != nil {
		return err
	}
	if _, err := kube.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx); err != nil {
		return fmt.Errorf("/readyz: %w", err)
	}
	want := map[string]string{"operation": op.Record.ID, "node": nu.New.Name, "at": time.Now().UTC().Format(time.RFC3339Nano)}
	cms := kube.CoreV1().ConfigMaps("kube-system")
	cm, err := cms.Get(ctx, ProbeConfigMap, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: ProbeConfigMap, Namespace: "kube-system"}, Data: want}, metav1.CreateOptions{})
	case err == nil:
		cm.Data = want
		_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("write through %s: %w", nu.New.Name, err)
	}
	got, err := cms.Get(ctx, ProbeConfigMap, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("read through %s: %w", nu.New.Name, err)
	}
	if got.Data["at"] != want["at"] || got.Data["node"] != want["node"] {
		return fmt.Errorf("read through %s returned %v, wrote %v", nu.New.Name, got.Data, want)
	}
	return nil
}

// switchNode puts the new node behind the load balancers in the old one's
// place, then removes the old member and VM.
func (e *Env) switchNode(ctx context.Context, op *engine.Op[State], at int) error {
	s := op.State
	nu := &s.Nodes[at]
	if nu.Skipped || nu.Done {
		return nil
	}
	start := time.Now()
	if !nu.Switched {
		if err := e.setBackends(ctx, s, func(ids []string) []string { return append(ids, nu.New.InstanceID) }); err != nil {
			return err
		}
		if err := e.setGate(ctx, op, nu.New, true); err != nil {
			return err
		}
		if err := e.backendHealth(ctx, s, nu.New.InstanceID, sdk.BackendHealthy); err != nil {
			return err
		}
		op.Logf("%s serves behind both load balancers", nu.New.Name)
		// The old node is drained: its kube-apiserver finishes what is in
		// flight and answers the rest with GOAWAY / Retry-After.
		if err := e.pods(ctx, op, nu.Old, false, "kube-controller-manager", "kube-scheduler"); err != nil {
			return err
		}
		if err := e.pods(ctx, op, nu.Old, false, "kube-apiserver"); err != nil {
			return err
		}
		nu.Switched = true
		if err := op.Save(); err != nil {
			return err
		}
	}
	voter, st, err := e.voter(ctx, s, nu.Old.InstanceID)
	if err != nil {
		return err
	}
	if st.GetLeaderId() == nu.OldMemberID {
		// Removing the leader costs an election; hand it over first.
		moveStart := time.Now().UTC()
		if err := e.agentDo(ctx, voter, "move etcd leader", func(ctx context.Context, c agentv1.AgentServiceClient) error {
			_, err := c.MoveEtcdLeader(ctx, &agentv1.MoveEtcdLeaderRequest{Header: header(op), TargetMemberId: nu.LearnerID})
			return err
		}); err != nil {
			return err
		}
		s.LeaderMoves = append(s.LeaderMoves, moveStart)
		op.Logf("etcd leadership moved from %s to %s", nu.Old.Name, nu.New.Name)
	}
	if err := e.agentDo(ctx, voter, "remove etcd member", func(ctx context.Context, c agentv1.AgentServiceClient) error {
		_, err := c.RemoveEtcdMember(ctx, &agentv1.RemoveEtcdMemberRequest{Header: header(op), MemberId: nu.OldMemberID})
		return err
	}); err != nil {
		return err
	}
	op.Logf("etcd member %x of %s removed", nu.OldMemberID, nu.Old.Name)
	if err := e.setBackends(ctx, s, func(ids []string) []string {
		return slices.DeleteFunc(ids, func(id string) bool { return id == nu.Old.InstanceID })
	}); err != nil {
		return err
	}
	if err := e.deleteInstance(ctx, nu.Old.InstanceID); err != nil && !errors.Is(err, sdk.ErrNotFound) {
		return fmt.Errorf("deleting %s: %w", nu.Old.InstanceID, err)
	}
	if err := e.agentDo(ctx, nu.New, "commit", func(ctx context.Context, c agentv1.AgentServiceClient) error {
		_, err := c.CommitRestore(ctx, &agentv1.CommitRestoreRequest{Header: header(op)})
		return err
	}); err != nil {
		return err
	}
	if err := e.replaceNode(ctx, op, nu); err != nil {
		return err
	}
	nu.Done = true
	nu.Timings.Switch = since(start)
	nu.Timings.Total = since(*nu.StartedAt)
	op.Logf("%s replaced by %s (instance %s deleted)", nu.Old.Name, nu.New.Name, nu.Old.InstanceID)
	return op.Save()
}

// replaceNode gives the new Node the old one's labels and taints (kubeadm's
// control-plane ones) and retires the old Node, whose VM is gone.
func (e *Env) replaceNode(ctx context.Context, op *engine.Op[State], nu *NodeUpgrade) error {
	if nu.OldMeta == nil {
		meta := controlplane.KubeadmControlPlane()
		if old, err := e.Kube.CoreV1().Nodes().Get(ctx, nu.Old.Name, metav1.GetOptions{}); err == nil {
			meta = controlplane.MetaOf(old)
		} else if !apierrors.IsNotFound(err) {
			return fmt.Errorf("reading the old Node %s: %w", nu.Old.Name, err)
		}
		nu.OldMeta = &meta
		if err := op.Save(); err != nil {
			return err
		}
	}
	if _, err := controlplane.AdoptNodes(ctx, e.Kube, *nu.OldMeta, []string{nu.New.Name}, e.Options.ReadyTimeout, op.Logf); err != nil {
		return err
	}
	if nu.Old.Name == nu.New.Name {
		return nil
	}
	_, err := controlplane.RetireNode(ctx, e.Kube, nu.Old.Name, op.Logf)
	return err
}

// unswitch undoes a switch that has not removed the old member, and
// finishes one that has.
func (e *Env) unswitch(ctx context.Context, op *engine.Op[State], at int) error {
	s := op.State
	nu := &s.Nodes[at]
	if nu.Skipped || nu.Done {
		return nil
	}
	if nu.Switched {
		op.Logf("%s's old member may be gone: finishing the switch to %s instead", nu.Old.Name, nu.New.Name)
		return e.switchNode(ctx, op, at)
	}
	if err := e.pods(ctx, op, nu.Old, true, controlplane.ControlPlanePods...); err != nil {
		return err
	}
	if err := e.WaitAPIServerReady(ctx, e.endpoint(nu.Old)); err != nil {
		return err
	}
	if nu.New.InstanceID != "" {
		if err := e.setGate(ctx, op, nu.New, false); err != nil {
			op.Logf("closing %s's gate: %v (it is deleted next)", nu.New.Name, err)
		}
		return e.setBackends(ctx, s, func(ids []string) []string {
			return slices.DeleteFunc(ids, func(id string) bool { return id == nu.New.InstanceID })
		})
	}
	return nil
}

func (e *Env) postflight(ctx context.Context, op *engine.Op[State]) error {
	s := op.State
	nodes := s.Serving()
	for _, nu := range s.Nodes {
		if !nu.Skipped && !nu.Done {
			return fmt.Errorf("%s was not replaced", nu.Old.Name)
		}
	}
	if _, _, err := e.clusterHealthy(ctx, nodes); err != nil {
		return err
	}
	if err := e.lbsHealthy(ctx, s, nodes); err != nil {
		return err
	}
	for _, n := range nodes {
		in, err := controlplane.CloudRetry(ctx, "get instance", func() (sdk.Instance, error) { return e.Cloud.GetInstance(ctx, n.InstanceID) })
		if err != nil {
			return err
		}
		if in.Image != s.Image {
			return fmt.Errorf("%s runs image %s, want %s", n.Name, in.Image, s.Image)
		}
	}
	var names []string
	for _, n := range nodes {
		names = append(names, n.Name)
	}
	if err := controlplane.WaitControlPlaneNodes(ctx, e.Kube, names, e.Options.ReadyTimeout); err != nil {
		return err
	}
	op.Logf("%d healthy voting members, every node on %s behind both load balancers; the control-plane Nodes are exactly %s, all Ready", len(nodes), s.Image, strings.Join(names, ", "))
	return nil
}

// deleteInstance deletes instance id, retried while the cloud is
// unavailable.
func (e *Env) deleteInstance(ctx context.Context, id string) error {
	_, err := controlplane.CloudRetry(ctx, "delete instance "+id, func() (struct{}, error) { return struct{}{}, e.Cloud.DeleteInstance(ctx, id) })
	return err
}
