package migrate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/triad-k8s/triad/agent/etcdsnap"
	"github.com/triad-k8s/triad/cloudplugins/sdk"
	"github.com/triad-k8s/triad/coordinator/controlplane"
	"github.com/triad-k8s/triad/coordinator/engine"
	"github.com/triad-k8s/triad/coordinator/failpoint"
	agentv1 "github.com/triad-k8s/triad/proto/triad/agent/v1"
)

// Phase 2: build the HA control plane behind closed gates (2.1 to 2.3).

func (e *Env) createVMs(ctx context.Context, op *engine.Op[State]) error {
	s := op.State
	for i, zone := range s.Zones {
		name := fmt.Sprintf("%s-cp-%s", s.Cluster, zoneSuffix(zone, i))
		if slices.ContainsFunc(s.Nodes, func(n controlplane.Node) bool { return n.Name == name && n.InstanceID != "" && n.PrivateIP != "" }) {
			continue
		}
		boot, err := controlplane.BootData(op.Record.ID, name)
		if err != nil {
			return err
		}
		inst, err := controlplane.CloudRetry(ctx, "create instance "+name, func() (sdk.Instance, error) {
			return e.Cloud.CreateInstance(ctx, sdk.CreateInstanceRequest{
				IdempotencyToken: fmt.Sprintf("%s-vm-%d", op.Record.ID, i), Name: name, Zone: zone, Image: s.Image,
				DiskSnapshotID: s.DiskSnapshotID, BootData: boot, Labels: s.labels(op.Record.ID),
			})
		})
		if err != nil {
			return err
		}
		s.Nodes = append(slices.DeleteFunc(s.Nodes, func(n controlplane.Node) bool { return n.Name == name }), controlplane.Node{InstanceID: inst.ID, Name: inst.Name, Zone: inst.Zone, PrivateIP: inst.PrivateIP})
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
	return controlplane.Parallel(op.State.Nodes, func(n controlplane.Node) error {
		return e.CallAgentWithin(ctx, e.AgentEndpoint(n.PrivateIP), "list static pods", e.CallTimeout(), func(ctx context.Context, c agentv1.AgentServiceClient) error {
			info, err := c.GetInfo(ctx, &agentv1.GetInfoRequest{})
			if err != nil {
				return err
			}
			if info.GetCluster() != op.State.Cluster {
				return fmt.Errorf("agent belongs to cluster %q", info.GetCluster())
			}
			return podsIn(ctx, c, agentv1.StaticPodState_STATIC_POD_STATE_STOPPED, "; the boot data should have held it")
		})
	})
}

func (e *Env) deleteVMs(ctx context.Context, op *engine.Op[State]) error {
	s := op.State
	list := func() ([]sdk.Instance, error) { return e.Cloud.ListInstances(ctx, s.labels(op.Record.ID)) }
	if err := deleteCreated(ctx, "instance", controlplane.InstanceIDs(s.Nodes), list, func(in sdk.Instance) string { return in.ID }, e.Cloud.DeleteInstance); err != nil {
		return err
	}
	s.Nodes, s.EtcdRestoredAt = nil, nil
	return nil
}

func (e *Env) createLBs(ctx context.Context, op *engine.Op[State]) error {
	s := op.State
	backends := controlplane.InstanceIDs(s.Nodes)
	port := e.Config.ControlPlane.APIServerPort
	for _, lb := range []struct {
		id      *string
		scheme  sdk.LoadBalancerScheme
		address string
	}{{&s.InternalLB, sdk.SchemeInternal, s.PrivateAddressID}, {&s.PublicLB, sdk.SchemePublic, s.PublicAddressID}} {
		created, err := controlplane.CloudRetry(ctx, "create "+string(lb.scheme)+" load balancer", func() (sdk.LoadBalancer, error) {
			return e.Cloud.CreateLoadBalancer(ctx, sdk.CreateLoadBalancerRequest{
				IdempotencyToken: op.Record.ID + "-lb-" + string(lb.scheme), Name: s.Cluster + "-" + string(lb.scheme),
				Scheme: lb.scheme, AddressID: lb.address, ListenerPort: port, BackendPort: port, BackendInstanceIDs: backends,
				HealthCheck: sdk.HealthCheck{Port: e.Config.Agent.GatePort, Path: "/gate", Interval: controlplane.LBCheckInterval, HealthyThreshold: 2, UnhealthyThreshold: controlplane.LBUnhealthyThreshold},
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
	list := func() ([]sdk.LoadBalancer, error) { return e.Cloud.ListLoadBalancers(ctx, s.labels(op.Record.ID)) }
	if err := deleteCreated(ctx, "load balancer", []string{s.InternalLB, s.PublicLB}, list,
		func(lb sdk.LoadBalancer) string { return lb.ID }, e.Cloud.DeleteLoadBalancer); err != nil {
		return err
	}
	s.InternalLB, s.PublicLB = "", ""
	return nil
}

func (e *Env) membership(s *State, n controlplane.Node) *agentv1.EtcdMembership {
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
	var mu sync.Mutex
	checked := map[string]controlplane.KubeconfigCheck{}
	err = controlplane.Parallel(s.Nodes, func(n controlplane.Node) error {
		return e.CallAgent(ctx, e.AgentEndpoint(n.PrivateIP), "restore", func(ctx context.Context, c agentv1.AgentServiceClient) error {
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
			if _, err := c.ReconfigureManifests(ctx, &agentv1.ReconfigureManifestsRequest{Header: header(op), AdvertiseAddress: n.PrivateIP, Membership: m, InitialClusterState: "new", EtcdServers: []string{"https://127.0.0.1:2379"},
				ApiserverShutdownDelay: durationpb.New(s.CloudAdvice.ShutdownDelay())}); err != nil {
				return fmt.Errorf("manifests: %w", err)
			}
			info, err := c.GetInfo(ctx, &agentv1.GetInfoRequest{})
			if err != nil {
				return fmt.Errorf("reading the kubeconfigs: %w", err)
			}
			check, err := controlplane.CheckKubeconfigs(info.GetKubeconfigs(), s.kubeconfigPolicy(n.PrivateIP))
			if err != nil {
				return fmt.Errorf("kubeconfigs after the rewrite: %w", err)
			}
			mu.Lock()
			checked[n.Name] = check
			mu.Unlock()
			return nil
		})
	})
	for _, n := range s.Nodes {
		if check, ok := checked[n.Name]; ok {
			op.Logf("%s: kubeconfigs name its own kube-apiserver or addresses that outlive the original: %s", n.Name, check)
		}
	}
	if err != nil {
		return err
	}
	// etcd on all three at once: each member waits for its peers.
	if err := controlplane.Parallel(s.Nodes, func(n controlplane.Node) error {
		return e.startPods(ctx, op, e.AgentEndpoint(n.PrivateIP), []string{"etcd"})
	}); err != nil {
		return fmt.Errorf("starting etcd: %w", err)
	}
	// A first run sees exactly the snapshot's revision: nothing writes
	// before the kube-apiservers start. A resumed run may find them
	// started by the run it resumes, their writes on top of the restore.
	atLeast := s.EtcdRestoredAt != nil
	if err := controlplane.Poll(ctx, e.Options.ReadyTimeout, time.Second, "etcd quorum with every member at the snapshot's revision", func() (bool, error) {
		view := e.Etcd(ctx, s.Nodes)
		if problems := view.Problems(len(s.Nodes)); len(problems) > 0 {
			return false, errors.New(strings.Join(problems, "; "))
		}
		for _, n := range s.Nodes {
			if rev := view.Status[n.Name].GetRevision(); rev != s.Snapshot.Revision && !(atLeast && rev > s.Snapshot.Revision) {
				return false, fmt.Errorf("%s reports revision %d, snapshot %d", n.Name, rev, s.Snapshot.Revision)
			}
		}
		return true, nil
	}); err != nil {
		return err
	}
	if atLeast {
		op.Logf("etcd: %d members, quorum, every member at or past the snapshot's revision %d (restored by the run this one resumes)", len(s.Nodes), s.Snapshot.Revision)
	} else {
		now := time.Now()
		s.EtcdRestoredAt = &now
		if err := op.Save(); err != nil {
			return err
		}
		op.Logf("etcd: %d members, quorum, every member at revision %d", len(s.Nodes), s.Snapshot.Revision)
	}
	failpoint.Hit("migrate/2.3-etcd-restored")
	if err := controlplane.Parallel(s.Nodes, func(n controlplane.Node) error {
		endpoint := e.AgentEndpoint(n.PrivateIP)
		if err := e.startPods(ctx, op, endpoint, []string{"kube-apiserver"}); err != nil {
			return err
		}
		return e.WaitAPIServerReady(ctx, endpoint)
	}); err != nil {
		return fmt.Errorf("kube-apiservers: %w", err)
	}
	failpoint.Hit("migrate/2.3-apiservers-ready")
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
	return controlplane.Parallel(op.State.Nodes, func(n controlplane.Node) error {
		return e.CallAgentWithin(ctx, e.AgentEndpoint(n.PrivateIP), "get gate", e.CallTimeout(), func(ctx context.Context, c agentv1.AgentServiceClient) error {
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
