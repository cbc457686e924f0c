package upgrade

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/triad-k8s/triad/cloudplugins/sdk"
	"github.com/triad-k8s/triad/coordinator/controlplane"
	"github.com/triad-k8s/triad/coordinator/engine"
)

// Migrated is what the migration that built the HA control plane left for
// the upgrades after it: the static addresses the load balancers serve, the
// load balancers, and the disk snapshot that seeds new VMs.
type Migrated struct {
	Operation      string
	PrivateIP      string
	PublicIP       string
	InternalLB     string
	PublicLB       string
	DiskSnapshotID string
}

// NewState is an upgrade's state before preflight: the target and what the
// migration built (nil: the cluster has no succeeded migration).
func NewState(cluster string, from *Migrated, image, kubernetesVersion, diskSnapshotID string) *State {
	s := &State{Cluster: cluster, Image: image, KubernetesVersion: kubernetesVersion, DiskSnapshotID: diskSnapshotID}
	if from != nil {
		s.Migration, s.PrivateIP, s.PublicIP, s.InternalLB, s.PublicLB = from.Operation, from.PrivateIP, from.PublicIP, from.InternalLB, from.PublicLB
		if s.DiskSnapshotID == "" {
			s.DiskSnapshotID = from.DiskSnapshotID
		}
	}
	return s
}

// Validate refuses an upgrade that cannot start, before anything is
// journaled.
func (s *State) Validate() error {
	var errs []error
	if s.Image == "" {
		errs = append(errs, errors.New("--image is required: the cloud image the nodes move to"))
	}
	if s.InternalLB == "" || s.PublicLB == "" {
		errs = append(errs, fmt.Errorf("cluster %s has no succeeded migration in its journal: an upgrade replaces the nodes of the HA control plane a migration built", s.Cluster))
	}
	if s.DiskSnapshotID == "" {
		errs = append(errs, errors.New("no disk snapshot to seed the new VMs: the migration kept none; pass --disk-snapshot (a snapshot of a control-plane node's data disk)"))
	}
	if v := s.KubernetesVersion; v != "" && (!strings.HasPrefix(v, "v") || strings.ContainsAny(v, " /:@")) {
		errs = append(errs, fmt.Errorf("--kubernetes-version %q: want v<major>.<minor>.<patch>[+build]", v))
	}
	return errors.Join(errs...)
}

// currentNodes are the instances behind the internal load balancer.
func (e *Env) currentNodes(ctx context.Context, s *State) ([]controlplane.Node, map[string]string, error) {
	lb, err := controlplane.CloudRetry(ctx, "get load balancer", func() (sdk.LoadBalancer, error) { return e.Cloud.GetLoadBalancer(ctx, s.InternalLB) })
	if err != nil {
		return nil, nil, err
	}
	var nodes []controlplane.Node
	images := map[string]string{}
	for _, b := range lb.Backends {
		in, err := controlplane.CloudRetry(ctx, "get instance", func() (sdk.Instance, error) { return e.Cloud.GetInstance(ctx, b.InstanceID) })
		if err != nil {
			return nil, nil, err
		}
		if in.State != sdk.InstanceRunning {
			return nil, nil, fmt.Errorf("backend %s (%s) is %s", in.ID, in.Name, in.State)
		}
		if b.Health != sdk.BackendHealthy {
			return nil, nil, fmt.Errorf("backend %s (%s) is %s on load balancer %s", in.ID, in.Name, b.Health, lb.ID)
		}
		nodes = append(nodes, controlplane.Node{InstanceID: in.ID, Name: in.Name, Zone: in.Zone, PrivateIP: in.PrivateIP})
		images[in.ID] = in.Image
	}
	return nodes, images, nil
}

func (e *Env) preflight(ctx context.Context, op *engine.Op[State]) error {
	s := op.State
	if err := s.Validate(); err != nil {
		return err
	}
	info, err := controlplane.CloudRetry(ctx, "plugin info", func() (sdk.PluginInfo, error) { return e.Cloud.PluginInfo(ctx) })
	if err != nil {
		return err
	}
	s.CloudAdvice = controlplane.CloudAdvice{DrainDelay: info.RecommendedDrainDelay, APIServerShutdownDelay: info.RecommendedAPIServerShutdownDelay}
	if len(info.Images) > 0 && !slices.Contains(info.Images, s.Image) {
		return fmt.Errorf("image %q is not offered by cloud %s (it offers %s)", s.Image, info.Name, strings.Join(info.Images, ", "))
	}
	snap, err := controlplane.CloudRetry(ctx, "get disk snapshot", func() (sdk.DiskSnapshot, error) { return e.Cloud.GetDiskSnapshot(ctx, s.DiskSnapshotID) })
	if err != nil {
		return fmt.Errorf("disk snapshot %s: %w", s.DiskSnapshotID, err)
	}
	if snap.State != sdk.DiskSnapshotReady {
		return fmt.Errorf("disk snapshot %s is %s", snap.ID, snap.State)
	}
	nodes, images, err := e.currentNodes(ctx, s)
	if err != nil {
		return err
	}
	if len(nodes) != Nodes {
		return fmt.Errorf("load balancer %s has %d backends, want %d", s.InternalLB, len(nodes), Nodes)
	}
	ids, leader, err := e.clusterHealthy(ctx, nodes)
	if err != nil {
		return fmt.Errorf("cluster not healthy: %w", err)
	}
	if err := e.lbsHealthy(ctx, s, nodes); err != nil {
		return err
	}
	// Followers first (by name, for a stable plan), the leader last.
	slices.SortFunc(nodes, func(a, b controlplane.Node) int {
		if (ids[a.Name] == leader) != (ids[b.Name] == leader) {
			if ids[a.Name] == leader {
				return 1
			}
			return -1
		}
		return strings.Compare(a.Name, b.Name)
	})
	s.Nodes = nil
	for _, n := range nodes {
		nu := NodeUpgrade{Old: n, OldImage: images[n.InstanceID], OldMemberID: ids[n.Name], Leader: ids[n.Name] == leader, Skipped: images[n.InstanceID] == s.Image}
		s.Nodes = append(s.Nodes, nu)
		role := "follower"
		if ids[n.Name] == leader {
			role = "leader"
		}
		what := "replace"
		if nu.Skipped {
			what = "skip (already on " + s.Image + ")"
		}
		op.Logf("%s (%s, %s, etcd %s): %s", n.Name, n.InstanceID, nu.OldImage, role, what)
	}
	s.StartedAt = now()
	return nil
}

// lbsHealthy checks that both load balancers send traffic to exactly nodes,
// all healthy.
func (e *Env) lbsHealthy(ctx context.Context, s *State, nodes []controlplane.Node) error {
	var want []string
	for _, n := range nodes {
		want = append(want, n.InstanceID)
	}
	slices.Sort(want)
	for _, id := range []string{s.InternalLB, s.PublicLB} {
		lb, err := controlplane.CloudRetry(ctx, "get load balancer", func() (sdk.LoadBalancer, error) { return e.Cloud.GetLoadBalancer(ctx, id) })
		if err != nil {
			return err
		}
		if !lb.TrafficEnabled {
			return fmt.Errorf("load balancer %s does not admit traffic", id)
		}
		var got []string
		for _, b := range lb.Backends {
			if b.Health != sdk.BackendHealthy {
				return fmt.Errorf("load balancer %s: backend %s is %s", id, b.InstanceID, b.Health)
			}
			got = append(got, b.InstanceID)
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			return fmt.Errorf("load balancer %s has backends %v, want %v", id, got, want)
		}
	}
	return nil
}
