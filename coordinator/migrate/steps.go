package migrate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/triad-k8s/triad/agent/bootdata"
	"github.com/triad-k8s/triad/agent/etcdsnap"
	"github.com/triad-k8s/triad/cloudplugins/sdk"
	"github.com/triad-k8s/triad/coordinator/engine"
	agentv1 "github.com/triad-k8s/triad/proto/triad/agent/v1"
)

// Step names are part of the UI.
const (
	StepPreflight           = "preflight"
	StepStopControlPlane    = "1.1-stop-control-plane"
	StepSnapshotEtcd        = "1.2-snapshot-etcd"
	StepStopVM              = "1.3-stop-vm"
	StepSnapshotDisk        = "1.4-snapshot-disk"
	StepCreateHAVMs         = "2.1-create-ha-vms"
	StepCreateLoadBalancers = "2.2-create-load-balancers"
	StepRestoreEtcd         = "2.3-restore-etcd"
	StepOpenTraffic         = "3.1-open-traffic"
	StepPostflight          = "postflight"
)

// ProbeConfigMap is the object the coordinator writes through the new
// load balancer to measure the end of the write-unavailability window.
const ProbeConfigMap = "triad-migration-probe"

// Plan is the migration as a step list over e.
func Plan(e *Env) engine.Plan[State] {
	return engine.Plan[State]{Kind: Kind, Steps: []engine.Step[State]{
		{Name: StepPreflight, Summary: "check agent, etcd, apiserver, addresses, zones and disk; record the baseline",
			Touches: func(s *State) []string {
				return []string{"reads only: instance " + s.Original.InstanceID, "addresses " + s.PrivateAddressID + ", " + s.PublicAddressID, "Kubernetes API (nodes, leases, object counts)"}
			},
			Do: e.preflight},
		{Name: StepStopControlPlane, Summary: "stop kube-apiserver, kube-controller-manager and kube-scheduler on the node; etcd keeps running and its revision must be stable",
			Touches:     func(s *State) []string { return []string{"static pods of " + s.Original.InstanceID} },
			UndoSummary: "start them again",
			Do:          e.stopControlPlane, Verify: e.revisionStable, Undo: e.startOriginalPods},
		{Name: StepSnapshotEtcd, Summary: "stream an etcd snapshot to the coordinator's store, verified with its sha256",
			Touches: func(s *State) []string {
				return []string{"etcd of " + s.Original.InstanceID + " (read)", "snapshot store"}
			},
			Do: e.snapshotEtcd, UndoSummary: "keep the snapshot"},
		{Name: StepStopVM, Summary: "stop etcd and the VM; release its static private and public addresses",
			Touches: func(s *State) []string {
				return []string{"instance " + s.Original.InstanceID, "address " + s.PrivateIP, "address " + s.PublicIP}
			},
			UndoSummary: "re-attach the addresses, start the VM and every static pod, wait for kube-apiserver",
			Do:          e.stopVM, Verify: e.vmStopped, Undo: e.restartOriginal},
		{Name: StepSnapshotDisk, Summary: "snapshot the stopped VM's data disk",
			Touches:     func(s *State) []string { return []string{"new disk snapshot of " + s.Original.InstanceID} },
			UndoSummary: "delete the disk snapshot",
			Do:          e.snapshotDisk, Undo: e.deleteDiskSnapshot},
		{Name: StepCreateHAVMs, Summary: "create 3 VMs from the disk snapshot, one per zone, holding etcd and the control plane",
			Touches:     func(s *State) []string { return []string{"3 new instances in " + strings.Join(s.Zones, ", ")} },
			UndoSummary: "delete the VMs",
			Do:          e.createVMs, Verify: e.vmsHeld, Undo: e.deleteVMs},
		{Name: StepCreateLoadBalancers, Summary: "internal LB on the old private address, public LB on the old public address; traffic not admitted",
			Touches: func(s *State) []string {
				return []string{"new load balancer on " + s.PrivateIP, "new load balancer on " + s.PublicIP}
			},
			UndoSummary: "delete the load balancers (frees the addresses)",
			Do:          e.createLBs, Verify: e.lbsClosed, Undo: e.deleteLBs},
		{Name: StepRestoreEtcd, Summary: "re-issue node certificates, restore etcd with the new 3-member membership and token, start etcd, then kube-apiservers behind closed gates",
			Touches:     func(s *State) []string { return []string{"the 3 new nodes: certificates, etcd data, manifests, gates"} },
			UndoSummary: "nothing (the VMs go with create-ha-vms' undo)",
			Do:          e.restoreEtcd, Verify: e.gatesClosed},
		{Name: StepOpenTraffic, PointOfNoReturn: true,
			Summary: "POINT OF NO RETURN: open gates and admit LB traffic; wait for every kubelet's heartbeat through the new endpoint, then start kube-controller-manager and kube-scheduler",
			Touches: func(s *State) []string {
				return []string{"gates of the 3 nodes", "both load balancers", "ConfigMap kube-system/" + ProbeConfigMap}
			},
			Do: e.openTraffic, Verify: e.allPodsRunning},
		{Name: StepPostflight, Summary: "3 voting members, revision and object counts ≥ baseline, controller leaders, no node NotReady, no pod replaced; commit the restores",
			Touches: func(s *State) []string { return []string{"old etcd data kept aside on the new nodes (deleted)"} },
			Do:      e.postflight},
	}}
}

// NewState is a migration's state before preflight, from the config.
func NewState(e *Env) *State {
	cp := e.Config.ControlPlane
	return &State{Cluster: e.Config.Name, Original: Node{InstanceID: cp.Instance}, Zones: cp.Zones,
		PrivateAddressID: cp.PrivateAddress, PublicAddressID: cp.PublicAddress, PrivateIP: cp.PrivateAddress, PublicIP: cp.PublicAddress, Image: cp.Image}
}

func (e *Env) originalAgent(s *State) string {
	if e.Config.Agent.Endpoint != "" {
		return e.Config.Agent.Endpoint
	}
	return e.agentEndpoint(s.PrivateIP)
}

// --- preflight ---------------------------------------------------------

func (e *Env) preflight(ctx context.Context, op *engine.Op[State]) error {
	s := op.State
	info, err := cloudRetry(ctx, "plugin info", func() (sdk.PluginInfo, error) { return e.Cloud.PluginInfo(ctx) })
	if err != nil {
		return err
	}
	if len(info.Zones) > 0 {
		for _, z := range s.Zones {
			if !slices.Contains(info.Zones, z) {
				return fmt.Errorf("zone %q is not offered by cloud %s (zones: %s)", z, info.Name, strings.Join(info.Zones, ", "))
			}
		}
	}
	inst, err := cloudRetry(ctx, "get instance", func() (sdk.Instance, error) { return e.Cloud.GetInstance(ctx, s.Original.InstanceID) })
	if errors.Is(err, sdk.ErrNotFound) {
		return fmt.Errorf("instance %q not found in cloud %s: check controlPlane.instance", s.Original.InstanceID, info.Name)
	}
	if err != nil {
		return err
	}
	if inst.State != sdk.InstanceRunning {
		return fmt.Errorf("instance %s is %s; the migration starts from a running control plane", inst.ID, inst.State)
	}
	s.Original = Node{InstanceID: inst.ID, Name: inst.Name, Zone: inst.Zone, PrivateIP: inst.PrivateIP}
	if s.Image == "" {
		s.Image = inst.Image
	}
	for _, a := range []struct {
		ref      string
		kind     sdk.AddressKind
		id, ip   *string
		field    string
		instIP   string
		clientOf string
	}{
		{e.Config.ControlPlane.PrivateAddress, sdk.AddressPrivate, &s.PrivateAddressID, &s.PrivateIP, "controlPlane.privateAddress", inst.PrivateIP, "kubelets and in-cluster clients"},
		{e.Config.ControlPlane.PublicAddress, sdk.AddressPublic, &s.PublicAddressID, &s.PublicIP, "controlPlane.publicAddress", inst.PublicIP, "external clients"},
	} {
		addr, err := cloudRetry(ctx, "get address", func() (sdk.Address, error) { return e.Cloud.GetAddress(ctx, a.ref) })
		if errors.Is(err, sdk.ErrNotFound) {
			return fmt.Errorf("%s %q: no such static address in cloud %s", a.field, a.ref, info.Name)
		}
		if err != nil {
			return err
		}
		if addr.Kind != a.kind {
			return fmt.Errorf("%s %q is a %s address, want %s", a.field, a.ref, addr.Kind, a.kind)
		}
		if addr.InstanceID != inst.ID {
			holder := addr.InstanceID + addr.LoadBalancerID
			if holder == "" {
				holder = "nothing"
			}
			return fmt.Errorf("%s %s (%s) is not attached to instance %s (it is held by %s): the load balancer can only take over the address %s use today", a.field, a.ref, addr.IP, inst.ID, holder, a.clientOf)
		}
		*a.id, *a.ip = addr.ID, addr.IP
	}

	endpoint := e.originalAgent(s)
	var agentInfo *agentv1.GetInfoResponse
	if err := e.callAgent(ctx, endpoint, "get info", func(ctx context.Context, c agentv1.AgentServiceClient) (err error) {
		agentInfo, err = c.GetInfo(ctx, &agentv1.GetInfoRequest{})
		return err
	}); err != nil {
		return fmt.Errorf("agent of %s unreachable: %w", inst.ID, err)
	}
	if agentInfo.GetCluster() != s.Cluster {
		return fmt.Errorf("agent at %s belongs to cluster %q, not %q", endpoint, agentInfo.GetCluster(), s.Cluster)
	}
	if agentInfo.GetHighestEpoch() >= op.Epoch() {
		return fmt.Errorf("%w: agent at %s has accepted epoch %d, newer than ours (%d): another coordinator is working on cluster %s", engine.ErrFenced, endpoint, agentInfo.GetHighestEpoch(), op.Epoch(), s.Cluster)
	}
	if agentInfo.GetNodeName() != "" {
		s.Original.Name = agentInfo.GetNodeName()
	}
	var health *agentv1.NodeHealth
	var etcdStatus *agentv1.GetEtcdStatusResponse
	if err := e.callAgent(ctx, endpoint, "health", func(ctx context.Context, c agentv1.AgentServiceClient) error {
		h, err := c.GetHealth(ctx, &agentv1.GetHealthRequest{})
		if err != nil {
			return err
		}
		health = h.GetHealth()
		etcdStatus, err = c.GetEtcdStatus(ctx, &agentv1.GetEtcdStatusRequest{})
		return err
	}); err != nil {
		return err
	}
	if !health.GetApiserverReady() {
		return fmt.Errorf("kube-apiserver on %s is not ready: %s", inst.ID, strings.Join(health.GetProblems(), "; "))
	}
	if n := len(etcdStatus.GetMembers()); n != 1 {
		return fmt.Errorf("etcd has %d members; migrate starts from a single-member etcd", n)
	}
	if !etcdStatus.GetHealthy() || len(etcdStatus.GetAlarms()) > 0 {
		return fmt.Errorf("etcd on %s is not healthy (alarms: %v)", inst.ID, etcdStatus.GetAlarms())
	}
	if free, need := health.GetDiskFreeBytes(), uint64(2*etcdStatus.GetDbSizeBytes()); free < need {
		return fmt.Errorf("%d bytes free next to the etcd data dir; a restore needs at least %d (twice the database)", free, need)
	}
	b := Baseline{Revision: etcdStatus.GetRevision(), DBSizeBytes: etcdStatus.GetDbSizeBytes(), EtcdVersion: etcdStatus.GetVersion(), LeaseRenew: map[string]time.Time{}}
	if b.Objects, err = e.countObjects(ctx); err != nil {
		return err
	}
	nodes, err := e.Kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("listing nodes: %w", err)
	}
	for _, n := range nodes.Items {
		if n.Name == s.Original.Name || !nodeReady(&n) {
			continue // the old control-plane node goes away with its VM
		}
		b.ReadyNodes = append(b.ReadyNodes, n.Name)
		if l, err := e.Kube.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, n.Name, metav1.GetOptions{}); err == nil && l.Spec.RenewTime != nil {
			b.LeaseRenew[n.Name] = l.Spec.RenewTime.Time
		}
	}
	if b.PodUIDs, err = e.podUIDs(ctx); err != nil {
		return err
	}
	s.Baseline = b
	s.ClusterToken = "triad-" + op.Record.ID
	op.Logf("etcd revision %d, db %d bytes; %d Ready nodes; %d pods; agent %s", b.Revision, b.DBSizeBytes, len(b.ReadyNodes), len(b.PodUIDs), agentInfo.GetAgentVersion())
	return nil
}

// countedResources are the object counts compared before and after.
var countedResources = []string{"namespaces", "configmaps", "secrets", "serviceaccounts", "services", "pods", "deployments", "nodes"}

func (e *Env) countObjects(ctx context.Context) (map[string]int, error) {
	c, all := e.Kube.CoreV1(), metav1.ListOptions{}
	lists := map[string]func() (runtime.Object, error){
		"namespaces":      func() (runtime.Object, error) { return c.Namespaces().List(ctx, all) },
		"configmaps":      func() (runtime.Object, error) { return c.ConfigMaps("").List(ctx, all) },
		"secrets":         func() (runtime.Object, error) { return c.Secrets("").List(ctx, all) },
		"serviceaccounts": func() (runtime.Object, error) { return c.ServiceAccounts("").List(ctx, all) },
		"services":        func() (runtime.Object, error) { return c.Services("").List(ctx, all) },
		"pods":            func() (runtime.Object, error) { return c.Pods("").List(ctx, all) },
		"deployments":     func() (runtime.Object, error) { return e.Kube.AppsV1().Deployments("").List(ctx, all) },
		"nodes":           func() (runtime.Object, error) { return c.Nodes().List(ctx, all) },
	}
	out := map[string]int{}
	for _, r := range countedResources {
		l, err := lists[r]()
		if err != nil {
			return nil, fmt.Errorf("counting %s: %w", r, err)
		}
		out[r] = meta.LenList(l)
	}
	return out, nil
}

func (e *Env) podUIDs(ctx context.Context) (map[string]string, error) {
	pods, err := e.Kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing pods: %w", err)
	}
	out := map[string]string{}
	for _, p := range pods.Items {
		out[p.Namespace+"/"+p.Name] = string(p.UID)
	}
	return out, nil
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// --- 1.1 ---------------------------------------------------------------

func (e *Env) stopControlPlane(ctx context.Context, op *engine.Op[State]) error {
	s := op.State
	stop := func(names ...string) error {
		return e.callAgent(ctx, e.originalAgent(s), "stop static pods", func(ctx context.Context, c agentv1.AgentServiceClient) error {
			_, err := c.StopStaticPods(ctx, &agentv1.StopStaticPodsRequest{Header: header(op), Names: names, Timeout: durationpb.New(2 * time.Minute)})
			return err
		})
	}
	// The controllers first, while kube-apiserver still answers: they
	// release their leader leases and exit at once, where without an
	// apiserver they would hang until killed at the end of their grace
	// period.
	if err := stop("kube-controller-manager", "kube-scheduler"); err != nil {
		return err
	}
	if s.StoppedAt == nil {
		s.StoppedAt = now()
		if err := op.Save(); err != nil {
			return err
		}
	}
	return stop("kube-apiserver")
}

func (e *Env) etcdStatus(ctx context.Context, endpoint string) (*agentv1.GetEtcdStatusResponse, error) {
	var st *agentv1.GetEtcdStatusResponse
	err := e.callAgent(ctx, endpoint, "etcd status", func(ctx context.Context, c agentv1.AgentServiceClient) (err error) {
		st, err = c.GetEtcdStatus(ctx, &agentv1.GetEtcdStatusRequest{})
		return err
	})
	return st, err
}

// revisionStable checks that nothing writes to etcd any more.
func (e *Env) revisionStable(ctx context.Context, op *engine.Op[State]) error {
	endpoint := e.originalAgent(op.State)
	first, err := e.etcdStatus(ctx, endpoint)
	if err != nil {
		return err
	}
	time.Sleep(time.Second)
	second, err := e.etcdStatus(ctx, endpoint)
	if err != nil {
		return err
	}
	if first.GetRevision() != second.GetRevision() {
		return fmt.Errorf("etcd revision still moving (%d, then %d a second later) with kube-apiserver stopped: something else writes to etcd", first.GetRevision(), second.GetRevision())
	}
	op.State.StableRevision = second.GetRevision()
	op.Logf("etcd revision stable at %d", second.GetRevision())
	return nil
}

func (e *Env) startPods(ctx context.Context, op *engine.Op[State], endpoint string, names []string) error {
	return e.callAgent(ctx, endpoint, "start static pods", func(ctx context.Context, c agentv1.AgentServiceClient) error {
		_, err := c.StartStaticPods(ctx, &agentv1.StartStaticPodsRequest{Header: header(op), Names: names, Timeout: durationpb.New(e.Options.ReadyTimeout)})
		return err
	})
}

// startOriginalPods brings the original node back: its VM is started if it
// is not running (a host that crashed mid-migration), then every static
// pod, and kube-apiserver must be ready.
func (e *Env) startOriginalPods(ctx context.Context, op *engine.Op[State]) error {
	inst, err := cloudRetry(ctx, "get instance", func() (sdk.Instance, error) { return e.Cloud.GetInstance(ctx, op.State.Original.InstanceID) })
	if err != nil {
		return err
	}
	if inst.State != sdk.InstanceRunning && inst.PrivateIP != "" {
		op.Logf("instance %s is %s; starting it", inst.ID, inst.State)
		if _, err := cloudRetry(ctx, "start instance", func() (sdk.Instance, error) { return e.Cloud.StartInstance(ctx, inst.ID) }); err != nil {
			return err
		}
	}
	if err := e.startPods(ctx, op, e.originalAgent(op.State), ControlPlanePods); err != nil {
		return err
	}
	return e.waitAPIServerReady(ctx, e.originalAgent(op.State))
}

func (e *Env) waitAPIServerReady(ctx context.Context, endpoint string) error {
	return poll(ctx, e.Options.ReadyTimeout, time.Second, "kube-apiserver ready on "+endpoint, func() (bool, error) {
		var h *agentv1.GetHealthResponse
		err := e.callAgent(ctx, endpoint, "health", func(ctx context.Context, c agentv1.AgentServiceClient) (err error) {
			h, err = c.GetHealth(ctx, &agentv1.GetHealthRequest{})
			return err
		})
		if err != nil {
			return false, err
		}
		if !h.GetHealth().GetApiserverReady() {
			return false, errors.New(strings.Join(h.GetHealth().GetProblems(), "; "))
		}
		return true, nil
	})
}

// --- 1.2 ---------------------------------------------------------------

func (e *Env) snapshotEtcd(ctx context.Context, op *engine.Op[State]) error {
	s := op.State
	var trailer etcdsnap.Trailer
	err := e.callAgent(ctx, e.originalAgent(s), "take snapshot", func(ctx context.Context, c agentv1.AgentServiceClient) error {
		stream, err := c.TakeSnapshot(ctx, &agentv1.TakeSnapshotRequest{Header: header(op)})
		if err != nil {
			return err
		}
		trailer, err = e.Snapshots.Receive(op.Record.ID, func() ([]byte, *etcdsnap.Trailer, error) {
			msg, err := stream.Recv()
			if err == io.EOF {
				return nil, nil, errors.New("stream ended without a trailer")
			}
			if err != nil {
				return nil, nil, err
			}
			if t := msg.GetTrailer(); t != nil {
				return nil, &etcdsnap.Trailer{SHA256: t.GetSha256(), Size: t.GetSizeBytes(), Revision: t.GetRevision(), EtcdVersion: t.GetEtcdVersion()}, nil
			}
			return msg.GetData(), nil, nil
		})
		return err
	})
	if err != nil {
		return err
	}
	if s.StableRevision != 0 && trailer.Revision != s.StableRevision {
		return fmt.Errorf("snapshot holds revision %d, but etcd was stable at %d", trailer.Revision, s.StableRevision)
	}
	s.Snapshot = &Snapshot{ID: op.Record.ID, Path: e.Snapshots.Path(op.Record.ID), SHA256: trailer.SHA256, SizeBytes: trailer.Size, Revision: trailer.Revision, EtcdVersion: trailer.EtcdVersion}
	op.Logf("snapshot %s: %d bytes, revision %d, sha256 %s", s.Snapshot.Path, trailer.Size, trailer.Revision, trailer.SHA256)
	return nil
}

// --- 1.3 ---------------------------------------------------------------

func (e *Env) stopVM(ctx context.Context, op *engine.Op[State]) error {
	s := op.State
	inst, err := cloudRetry(ctx, "get instance", func() (sdk.Instance, error) { return e.Cloud.GetInstance(ctx, s.Original.InstanceID) })
	if err != nil {
		return err
	}
	if inst.State == sdk.InstanceRunning {
		// etcd first, cleanly, through the agent: the disk snapshot must
		// hold a closed database.
		if err := e.callAgent(ctx, e.originalAgent(s), "stop etcd", func(ctx context.Context, c agentv1.AgentServiceClient) error {
			_, err := c.StopStaticPods(ctx, &agentv1.StopStaticPodsRequest{Header: header(op), Names: []string{"etcd"}, Timeout: durationpb.New(2 * time.Minute)})
			return err
		}); err != nil {
			return err
		}
		if _, err := cloudRetry(ctx, "stop instance", func() (sdk.Instance, error) { return e.Cloud.StopInstance(ctx, s.Original.InstanceID) }); err != nil {
			return err
		}
	}
	if err := poll(ctx, e.Options.ReadyTimeout, time.Second, "instance "+s.Original.InstanceID+" stopped", func() (bool, error) {
		inst, err := e.Cloud.GetInstance(ctx, s.Original.InstanceID)
		return err == nil && inst.State == sdk.InstanceStopped, err
	}); err != nil {
		return err
	}
	for _, id := range []string{s.PrivateAddressID, s.PublicAddressID} {
		if _, err := cloudRetry(ctx, "release address "+id, func() (sdk.Address, error) { return e.Cloud.ReleaseAddress(ctx, id) }); err != nil {
			return err
		}
	}
	return nil
}

func (e *Env) vmStopped(ctx context.Context, op *engine.Op[State]) error {
	s := op.State
	for _, id := range []string{s.PrivateAddressID, s.PublicAddressID} {
		a, err := e.Cloud.GetAddress(ctx, id)
		if err != nil {
			return err
		}
		if a.InstanceID != "" || a.LoadBalancerID != "" {
			return fmt.Errorf("address %s still held by %s%s", a.IP, a.InstanceID, a.LoadBalancerID)
		}
	}
	return nil
}

// restartOriginal undoes 1.3: the addresses go back to the VM (a load
// balancer holding one is an error: its undo runs first), the VM starts,
// and the agent starts every static pod.
func (e *Env) restartOriginal(ctx context.Context, op *engine.Op[State]) error {
	s := op.State
	for _, id := range []string{s.PrivateAddressID, s.PublicAddressID} {
		a, err := cloudRetry(ctx, "get address", func() (sdk.Address, error) { return e.Cloud.GetAddress(ctx, id) })
		if err != nil {
			return err
		}
		switch {
		case a.InstanceID == s.Original.InstanceID:
		case a.InstanceID != "" || a.LoadBalancerID != "":
			return fmt.Errorf("address %s is held by %s%s, not by the original instance %s", a.IP, a.InstanceID, a.LoadBalancerID, s.Original.InstanceID)
		default:
			if _, err := cloudRetry(ctx, "attach address "+a.IP, func() (sdk.Address, error) { return e.Cloud.AttachAddress(ctx, id, s.Original.InstanceID) }); err != nil {
				return err
			}
		}
	}
	if _, err := cloudRetry(ctx, "start instance", func() (sdk.Instance, error) { return e.Cloud.StartInstance(ctx, s.Original.InstanceID) }); err != nil {
		return err
	}
	return e.startOriginalPods(ctx, op)
}

// --- 1.4 ---------------------------------------------------------------

func (e *Env) snapshotDisk(ctx context.Context, op *engine.Op[State]) error {
	s := op.State
	snap, err := cloudRetry(ctx, "create disk snapshot", func() (sdk.DiskSnapshot, error) {
		return e.Cloud.CreateDiskSnapshot(ctx, sdk.CreateDiskSnapshotRequest{IdempotencyToken: op.Record.ID + "-disk", InstanceID: s.Original.InstanceID, Labels: s.labels(op.Record.ID)})
	})
	if err != nil {
		return err
	}
	s.DiskSnapshotID = snap.ID
	if err := op.Save(); err != nil {
		return err
	}
	return poll(ctx, e.Options.ReadyTimeout, time.Second, "disk snapshot "+snap.ID+" ready", func() (bool, error) {
		snap, err := e.Cloud.GetDiskSnapshot(ctx, snap.ID)
		if err == nil && snap.State == sdk.DiskSnapshotError {
			return false, fmt.Errorf("disk snapshot %s failed", snap.ID)
		}
		return err == nil && snap.State == sdk.DiskSnapshotReady, err
	})
}

func (e *Env) deleteDiskSnapshot(ctx context.Context, op *engine.Op[State]) error {
	ids := map[string]bool{}
	if op.State.DiskSnapshotID != "" {
		ids[op.State.DiskSnapshotID] = true
	}
	found, err := cloudRetry(ctx, "list disk snapshots", func() ([]sdk.DiskSnapshot, error) {
		return e.Cloud.ListDiskSnapshots(ctx, op.State.labels(op.Record.ID))
	})
	if err != nil {
		return err
	}
	for _, s := range found {
		ids[s.ID] = true
	}
	for id := range ids {
		if _, err := cloudRetry(ctx, "delete disk snapshot "+id, func() (struct{}, error) { return struct{}{}, e.Cloud.DeleteDiskSnapshot(ctx, id) }); err != nil && !errors.Is(err, sdk.ErrNotFound) {
			return err
		}
	}
	op.State.DiskSnapshotID = ""
	return nil
}

// --- 2.1 ---------------------------------------------------------------

func (e *Env) createVMs(ctx context.Context, op *engine.Op[State]) error {
	s := op.State
	boot, err := bootdata.Data{HoldStaticPods: ControlPlanePods}.Marshal()
	if err != nil {
		return err
	}
	for i, zone := range s.Zones {
		name := fmt.Sprintf("%s-cp-%s", s.Cluster, zoneSuffix(zone, i))
		if slices.ContainsFunc(s.Nodes, func(n Node) bool { return n.Name == name && n.InstanceID != "" && n.PrivateIP != "" }) {
			continue
		}
		inst, err := cloudRetry(ctx, "create instance "+name, func() (sdk.Instance, error) {
			return e.Cloud.CreateInstance(ctx, sdk.CreateInstanceRequest{
				IdempotencyToken: fmt.Sprintf("%s-vm-%d", op.Record.ID, i), Name: name, Zone: zone, Image: s.Image,
				DiskSnapshotID: s.DiskSnapshotID, BootData: boot, Labels: s.labels(op.Record.ID),
			})
		})
		if err != nil {
			return err
		}
		s.Nodes = append(slices.DeleteFunc(s.Nodes, func(n Node) bool { return n.Name == name }), Node{InstanceID: inst.ID, Name: inst.Name, Zone: inst.Zone, PrivateIP: inst.PrivateIP})
		if err := op.Save(); err != nil {
			return err
		}
		op.Logf("%s: instance %s in %s on %s", name, inst.ID, zone, inst.PrivateIP)
	}
	return nil
}

// zoneSuffix names a node after its zone's last letter ("eu-west-1b" → b).
func zoneSuffix(zone string, i int) string {
	if zone != "" {
		last := zone[len(zone)-1]
		if last >= 'a' && last <= 'z' {
			return string(last)
		}
	}
	return strconv.Itoa(i + 1)
}

// vmsHeld checks each new node's agent answers and holds every static pod.
func (e *Env) vmsHeld(ctx context.Context, op *engine.Op[State]) error {
	return parallel(op.State.Nodes, func(n Node) error {
		return e.callAgent(ctx, e.agentEndpoint(n.PrivateIP), "list static pods", func(ctx context.Context, c agentv1.AgentServiceClient) error {
			info, err := c.GetInfo(ctx, &agentv1.GetInfoRequest{})
			if err != nil {
				return err
			}
			if info.GetCluster() != op.State.Cluster {
				return fmt.Errorf("agent belongs to cluster %q", info.GetCluster())
			}
			pods, err := c.ListStaticPods(ctx, &agentv1.ListStaticPodsRequest{})
			if err != nil {
				return err
			}
			for _, p := range pods.GetPods() {
				if p.GetState() != agentv1.StaticPodState_STATIC_POD_STATE_STOPPED {
					return fmt.Errorf("static pod %s is %s; the boot data should have held it", p.GetName(), p.GetState())
				}
			}
			return nil
		})
	})
}

func (e *Env) deleteVMs(ctx context.Context, op *engine.Op[State]) error {
	s := op.State
	ids := map[string]bool{}
	for _, n := range s.Nodes {
		ids[n.InstanceID] = true
	}
	found, err := cloudRetry(ctx, "list instances", func() ([]sdk.Instance, error) { return e.Cloud.ListInstances(ctx, s.labels(op.Record.ID)) })
	if err != nil {
		return err
	}
	for _, in := range found {
		ids[in.ID] = true
	}
	for id := range ids {
		if _, err := cloudRetry(ctx, "delete instance "+id, func() (struct{}, error) { return struct{}{}, e.Cloud.DeleteInstance(ctx, id) }); err != nil && !errors.Is(err, sdk.ErrNotFound) {
			return err
		}
	}
	s.Nodes = nil
	return nil
}

// --- 2.2 ---------------------------------------------------------------

func (e *Env) createLBs(ctx context.Context, op *engine.Op[State]) error {
	s := op.State
	var backends []string
	for _, n := range s.Nodes {
		backends = append(backends, n.InstanceID)
	}
	port := e.Config.ControlPlane.APIServerPort
	for _, lb := range []struct {
		id      *string
		scheme  sdk.LoadBalancerScheme
		address string
	}{{&s.InternalLB, sdk.SchemeInternal, s.PrivateAddressID}, {&s.PublicLB, sdk.SchemePublic, s.PublicAddressID}} {
		created, err := cloudRetry(ctx, "create "+string(lb.scheme)+" load balancer", func() (sdk.LoadBalancer, error) {
			return e.Cloud.CreateLoadBalancer(ctx, sdk.CreateLoadBalancerRequest{
				IdempotencyToken: op.Record.ID + "-lb-" + string(lb.scheme), Name: s.Cluster + "-" + string(lb.scheme),
				Scheme: lb.scheme, AddressID: lb.address, ListenerPort: port, BackendPort: port, BackendInstanceIDs: backends,
				HealthCheck: sdk.HealthCheck{Port: e.Config.Agent.GatePort, Path: "/gate", Interval: time.Second, HealthyThreshold: 2, UnhealthyThreshold: 2},
				Labels:      s.labels(op.Record.ID),
			})
		})
		if err != nil {
			return err
		}
		*lb.id = created.ID
		if err := op.Save(); err != nil {
			return err
		}
		op.Logf("%s load balancer %s on %s:%d", lb.scheme, created.ID, created.IP, created.ListenerPort)
	}
	return nil
}

func (e *Env) lbsClosed(ctx context.Context, op *engine.Op[State]) error {
	for _, id := range []string{op.State.InternalLB, op.State.PublicLB} {
		lb, err := e.Cloud.GetLoadBalancer(ctx, id)
		if err != nil {
			return err
		}
		if lb.TrafficEnabled {
			return fmt.Errorf("load balancer %s admits traffic before the HA control plane is ready", id)
		}
		if len(lb.Backends) != len(op.State.Nodes) {
			return fmt.Errorf("load balancer %s has %d backends, want %d", id, len(lb.Backends), len(op.State.Nodes))
		}
	}
	return nil
}

func (e *Env) deleteLBs(ctx context.Context, op *engine.Op[State]) error {
	s := op.State
	ids := map[string]bool{}
	for _, id := range []string{s.InternalLB, s.PublicLB} {
		if id != "" {
			ids[id] = true
		}
	}
	found, err := cloudRetry(ctx, "list load balancers", func() ([]sdk.LoadBalancer, error) { return e.Cloud.ListLoadBalancers(ctx, s.labels(op.Record.ID)) })
	if err != nil {
		return err
	}
	for _, lb := range found {
		ids[lb.ID] = true
	}
	for id := range ids {
		if _, err := cloudRetry(ctx, "delete load balancer "+id, func() (struct{}, error) { return struct{}{}, e.Cloud.DeleteLoadBalancer(ctx, id) }); err != nil && !errors.Is(err, sdk.ErrNotFound) {
			return err
		}
	}
	s.InternalLB, s.PublicLB = "", ""
	return nil
}

// --- 2.3 ---------------------------------------------------------------

func (e *Env) membership(s *State, n Node) *agentv1.EtcdMembership {
	var initial []string
	for _, m := range s.Nodes {
		initial = append(initial, m.Name+"=https://"+net.JoinHostPort(m.PrivateIP, "2380"))
	}
	return &agentv1.EtcdMembership{
		MemberName: n.Name, PeerUrls: []string{"https://" + net.JoinHostPort(n.PrivateIP, "2380")},
		ClientUrls: []string{"https://" + net.JoinHostPort(n.PrivateIP, "2379")}, InitialCluster: strings.Join(initial, ","), ClusterToken: s.ClusterToken,
	}
}

func (e *Env) restoreEtcd(ctx context.Context, op *engine.Op[State]) error {
	s := op.State
	if s.Snapshot == nil {
		return errors.New("no etcd snapshot recorded (1.2-snapshot-etcd did not finish)")
	}
	// Verified before anything depends on it.
	st, err := etcdsnap.VerifyFile(s.Snapshot.Path, s.Snapshot.SHA256)
	if err != nil {
		return fmt.Errorf("snapshot %s: %w", s.Snapshot.Path, err)
	}
	if st.Revision != s.Snapshot.Revision {
		return fmt.Errorf("snapshot %s holds revision %d, journal says %d", s.Snapshot.Path, st.Revision, s.Snapshot.Revision)
	}
	op.Logf("snapshot verified (sha256 %s, revision %d); restoring on %d nodes", s.Snapshot.SHA256, st.Revision, len(s.Nodes))
	if err := parallel(s.Nodes, func(n Node) error {
		return e.callAgent(ctx, e.agentEndpoint(n.PrivateIP), "restore", func(ctx context.Context, c agentv1.AgentServiceClient) error {
			if _, err := c.SetGate(ctx, &agentv1.SetGateRequest{Header: header(op), Open: false}); err != nil {
				return err
			}
			// The serving certificates keep the old addresses, which the
			// load balancers take over: clients are never reconfigured.
			if _, err := c.IssueNodeCertificates(ctx, &agentv1.IssueNodeCertificatesRequest{Header: header(op), NodeName: n.Name, IpAddresses: []string{n.PrivateIP, s.PrivateIP, s.PublicIP}}); err != nil {
				return fmt.Errorf("certificates: %w", err)
			}
			if err := e.upload(ctx, op, c); err != nil {
				return fmt.Errorf("snapshot upload: %w", err)
			}
			m := e.membership(s, n)
			if _, err := c.RestoreSnapshot(ctx, &agentv1.RestoreSnapshotRequest{Header: header(op), SnapshotId: s.Snapshot.ID, Sha256: s.Snapshot.SHA256, Membership: m}); err != nil {
				return fmt.Errorf("restore: %w", err)
			}
			if _, err := c.ReconfigureManifests(ctx, &agentv1.ReconfigureManifestsRequest{Header: header(op), AdvertiseAddress: n.PrivateIP, Membership: m, InitialClusterState: "new", EtcdServers: []string{"https://127.0.0.1:2379"}}); err != nil {
				return fmt.Errorf("manifests: %w", err)
			}
			return nil
		})
	}); err != nil {
		return err
	}
	// etcd on all three at once: each member waits for its peers.
	if err := parallel(s.Nodes, func(n Node) error { return e.startPods(ctx, op, e.agentEndpoint(n.PrivateIP), []string{"etcd"}) }); err != nil {
		return fmt.Errorf("starting etcd: %w", err)
	}
	if err := poll(ctx, e.Options.ReadyTimeout, time.Second, "etcd quorum with every member at the snapshot's revision", func() (bool, error) {
		var leader uint64
		for _, n := range s.Nodes {
			st, err := e.etcdStatus(ctx, e.agentEndpoint(n.PrivateIP))
			if err != nil {
				return false, err
			}
			if len(st.GetMembers()) != len(s.Nodes) || st.GetLeaderId() == 0 || !st.GetHealthy() {
				return false, fmt.Errorf("%s: %d members, leader %x, healthy %v", n.Name, len(st.GetMembers()), st.GetLeaderId(), st.GetHealthy())
			}
			if leader != 0 && st.GetLeaderId() != leader {
				return false, fmt.Errorf("members disagree on the leader")
			}
			leader = st.GetLeaderId()
			if st.GetRevision() != s.Snapshot.Revision {
				return false, fmt.Errorf("%s reports revision %d, snapshot %d", n.Name, st.GetRevision(), s.Snapshot.Revision)
			}
		}
		return true, nil
	}); err != nil {
		return err
	}
	op.Logf("etcd: %d members, quorum, every member at revision %d", len(s.Nodes), s.Snapshot.Revision)
	if err := parallel(s.Nodes, func(n Node) error {
		endpoint := e.agentEndpoint(n.PrivateIP)
		if err := e.startPods(ctx, op, endpoint, []string{"kube-apiserver"}); err != nil {
			return err
		}
		return e.waitAPIServerReady(ctx, endpoint)
	}); err != nil {
		return fmt.Errorf("kube-apiservers: %w", err)
	}
	op.Logf("kube-apiserver /readyz on every node, gates closed")
	return nil
}

// upload streams the verified snapshot to one agent.
func (e *Env) upload(ctx context.Context, op *engine.Op[State], c agentv1.AgentServiceClient) error {
	s := op.State
	f, err := os.Open(s.Snapshot.Path)
	if err != nil {
		return err
	}
	defer f.Close()
	stream, err := c.UploadSnapshot(ctx)
	if err != nil {
		return err
	}
	if err := stream.Send(&agentv1.UploadSnapshotRequest{Msg: &agentv1.UploadSnapshotRequest_Metadata{Metadata: &agentv1.SnapshotUploadMetadata{Header: header(op), SnapshotId: s.Snapshot.ID}}}); err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			if err := stream.Send(&agentv1.UploadSnapshotRequest{Msg: &agentv1.UploadSnapshotRequest_Data{Data: buf[:n]}}); err != nil {
				return err
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if err := stream.Send(&agentv1.UploadSnapshotRequest{Msg: &agentv1.UploadSnapshotRequest_Trailer{Trailer: &agentv1.SnapshotTrailer{
		Sha256: s.Snapshot.SHA256, SizeBytes: s.Snapshot.SizeBytes, Revision: s.Snapshot.Revision, EtcdVersion: s.Snapshot.EtcdVersion,
	}}}); err != nil {
		return err
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return err
	}
	if resp.GetSha256() != s.Snapshot.SHA256 {
		return fmt.Errorf("agent stored sha256 %s, want %s", resp.GetSha256(), s.Snapshot.SHA256)
	}
	return nil
}

func (e *Env) gatesClosed(ctx context.Context, op *engine.Op[State]) error {
	return parallel(op.State.Nodes, func(n Node) error {
		return e.callAgent(ctx, e.agentEndpoint(n.PrivateIP), "get gate", func(ctx context.Context, c agentv1.AgentServiceClient) error {
			g, err := c.GetGate(ctx, &agentv1.GetGateRequest{})
			if err != nil {
				return err
			}
			if g.GetOpen() {
				return errors.New("gate open before 3.1")
			}
			return nil
		})
	})
}

// --- 3.1 ---------------------------------------------------------------

func (e *Env) openTraffic(ctx context.Context, op *engine.Op[State]) error {
	s := op.State
	if err := parallel(s.Nodes, func(n Node) error {
		return e.callAgent(ctx, e.agentEndpoint(n.PrivateIP), "open gate", func(ctx context.Context, c agentv1.AgentServiceClient) error {
			_, err := c.SetGate(ctx, &agentv1.SetGateRequest{Header: header(op), Open: true})
			return err
		})
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
		if _, err := cloudRetry(ctx, "admit traffic on "+id, func() (sdk.LoadBalancer, error) { return e.Cloud.SetLoadBalancerTraffic(ctx, id, true) }); err != nil {
			return err
		}
	}
	op.Logf("traffic admitted on %s and %s", s.PrivateIP, s.PublicIP)
	if s.FirstWriteAt == nil {
		if err := poll(ctx, e.Options.ReadyTimeout, 100*time.Millisecond, "the first write through the load balancer", func() (bool, error) {
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

// waitHeartbeats waits until every node Ready at preflight has renewed its
// lease after traffic was admitted: its kubelet reaches the new endpoint.
func (e *Env) waitHeartbeats(ctx context.Context, op *engine.Op[State]) error {
	s := op.State
	lastReport := time.Time{}
	return poll(ctx, e.Options.HeartbeatTimeout, time.Second, "kubelet heartbeats through the new endpoint", func() (bool, error) {
		var waiting []string
		for _, name := range s.Baseline.ReadyNodes {
			l, err := e.Kube.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, name, metav1.GetOptions{})
			if err != nil || l.Spec.RenewTime == nil || !l.Spec.RenewTime.After(*s.OpenedAt) {
				waiting = append(waiting, name)
			}
		}
		if len(waiting) == 0 {
			op.Logf("all %d kubelets heartbeated after the open", len(s.Baseline.ReadyNodes))
			return true, nil
		}
		if time.Since(lastReport) > 5*time.Second {
			lastReport = time.Now()
			op.Logf("waiting for %d of %d kubelets to heartbeat through the new endpoint: %s", len(waiting), len(s.Baseline.ReadyNodes), strings.Join(first(waiting, 5), ", "))
		}
		return false, fmt.Errorf("no heartbeat since %s from %s", s.OpenedAt.Format(time.RFC3339), strings.Join(first(waiting, 5), ", "))
	})
}

func first(s []string, n int) []string {
	if len(s) > n {
		return append(slices.Clone(s[:n]), fmt.Sprintf("and %d more", len(s)-n))
	}
	return s
}

func (e *Env) startControllers(ctx context.Context, op *engine.Op[State]) error {
	if err := parallel(op.State.Nodes, func(n Node) error {
		return e.startPods(ctx, op, e.agentEndpoint(n.PrivateIP), []string{"kube-controller-manager", "kube-scheduler"})
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
	return parallel(op.State.Nodes, func(n Node) error {
		return e.callAgent(ctx, e.agentEndpoint(n.PrivateIP), "list static pods", func(ctx context.Context, c agentv1.AgentServiceClient) error {
			pods, err := c.ListStaticPods(ctx, &agentv1.ListStaticPodsRequest{})
			if err != nil {
				return err
			}
			for _, p := range pods.GetPods() {
				if p.GetState() != agentv1.StaticPodState_STATIC_POD_STATE_RUNNING {
					return fmt.Errorf("static pod %s is %s", p.GetName(), p.GetState())
				}
			}
			return nil
		})
	})
}

// --- postflight ----------------------------------------------------------

func (e *Env) postflight(ctx context.Context, op *engine.Op[State]) error {
	s := op.State
	pf := &Postflight{}
	var problems []string
	var leader uint64
	for _, n := range s.Nodes {
		st, err := e.etcdStatus(ctx, e.agentEndpoint(n.PrivateIP))
		if err != nil {
			return err
		}
		voters := 0
		for _, m := range st.GetMembers() {
			if !m.GetIsLearner() {
				voters++
			}
		}
		if voters != 3 || len(st.GetMembers()) != 3 || !st.GetHealthy() || len(st.GetAlarms()) > 0 {
			problems = append(problems, fmt.Sprintf("etcd on %s: %d voting of %d members, healthy %v, alarms %v", n.Name, voters, len(st.GetMembers()), st.GetHealthy(), st.GetAlarms()))
		}
		if leader != 0 && st.GetLeaderId() != leader {
			problems = append(problems, "etcd members disagree on the leader")
		}
		leader = st.GetLeaderId()
		pf.Members, pf.Revision = voters, st.GetRevision()
	}
	if pf.Revision < s.Baseline.Revision {
		problems = append(problems, fmt.Sprintf("etcd revision %d went below the baseline %d", pf.Revision, s.Baseline.Revision))
	}
	var err error
	if pf.Objects, err = e.countObjects(ctx); err != nil {
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
		if err := poll(ctx, e.Options.ReadyTimeout, time.Second, lease.name+" leader", func() (bool, error) {
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
		if slices.Contains(s.Baseline.ReadyNodes, n.Name) && !nodeReady(&n) {
			pf.NotReady = append(pf.NotReady, n.Name)
		}
	}
	uids, err := e.podUIDs(ctx)
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
		problems = append(problems, "pods deleted or replaced: "+strings.Join(first(pf.PodsChanged, 10), ", "))
	}
	if pf.StaleLeases, err = e.removeStaleIdentityLeases(ctx, s); err != nil {
		problems = append(problems, err.Error())
	}
	s.Postflight = pf
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	if err := parallel(s.Nodes, func(n Node) error {
		return e.callAgent(ctx, e.agentEndpoint(n.PrivateIP), "commit restore", func(ctx context.Context, c agentv1.AgentServiceClient) error {
			_, err := c.CommitRestore(ctx, &agentv1.CommitRestoreRequest{Header: header(op)})
			return err
		})
	}); err != nil {
		return err
	}
	op.Logf("3 voting members at revision %d; kcm leader %s; scheduler leader %s; %d nodes Ready; %d pods unchanged", pf.Revision, pf.ControllerLeader, pf.SchedulerLeader, len(s.Baseline.ReadyNodes), len(s.Baseline.PodUIDs))
	return nil
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
