// Package status is the cluster's health as the agents report it: it finds
// the control-plane nodes through the cloud plugin, opens every agent's
// WatchHealth stream and folds the reports into one view — etcd members,
// leader and learners, gates, static pods, versions, database size — with
// the problems that make the cluster unhealthy.
package status

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/triad-k8s/triad/cloudplugins/sdk"
	"github.com/triad-k8s/triad/coordinator/agentclient"
	"github.com/triad-k8s/triad/coordinator/config"
	"github.com/triad-k8s/triad/coordinator/controlplane"
	agentv1 "github.com/triad-k8s/triad/proto/triad/agent/v1"
)

// LabelCluster marks every VM triad created for a cluster.
const LabelCluster = controlplane.LabelCluster

// Node is one control-plane node and its agent's latest report.
type Node struct {
	Name       string `json:"name"`
	InstanceID string `json:"instanceID"`
	Zone       string `json:"zone"`
	IP         string `json:"ip"`
	Endpoint   string `json:"agentEndpoint"`
	// Error is why the agent gave no report; empty when it did.
	Error string `json:"error,omitempty"`
	// Health is the agent's latest report.
	Health *Health `json:"health,omitempty"`
}

// Health is the part of an agent's report status shows.
type Health struct {
	ObservedAt        time.Time         `json:"observedAt"`
	APIServerReady    bool              `json:"apiserverReady"`
	EtcdHealthy       bool              `json:"etcdHealthy"`
	GateOpen          bool              `json:"gateOpen"`
	StaticPods        map[string]string `json:"staticPods"`
	KubernetesVersion string            `json:"kubernetesVersion"`
	EtcdVersion       string            `json:"etcdVersion"`
	EtcdMemberID      string            `json:"etcdMemberID,omitempty"`
	EtcdLeaderID      string            `json:"etcdLeaderID,omitempty"`
	EtcdDBSizeBytes   int64             `json:"etcdDBSizeBytes"`
	DiskFreeBytes     uint64            `json:"diskFreeBytes"`
	Problems          []string          `json:"problems,omitempty"`

	members []*agentv1.EtcdMember
	alarms  []string
}

// Member is one etcd member as the nodes see it.
type Member struct {
	ID       string   `json:"id"`
	Name     string   `json:"name"`
	PeerURLs []string `json:"peerURLs"`
	Learner  bool     `json:"learner"`
	Leader   bool     `json:"leader"`
}

// Cluster is the folded view.
type Cluster struct {
	Name       string    `json:"name"`
	ObservedAt time.Time `json:"observedAt"`
	Healthy    bool      `json:"healthy"`
	Nodes      []Node    `json:"nodes"`
	Members    []Member  `json:"members"`
	Voters     int       `json:"voters"`
	Learners   int       `json:"learners"`
	Leader     string    `json:"leader,omitempty"`
	Alarms     []string  `json:"alarms,omitempty"`
	// Problems make the cluster unhealthy, each naming its node.
	Problems []string `json:"problems,omitempty"`
}

func hexID(id uint64) string {
	if id == 0 {
		return ""
	}
	return strconv.FormatUint(id, 16)
}

// Discover returns the cluster's running control-plane nodes: the VMs
// triad created for it (label triad.dev/cluster) and the configured
// instance if it runs, sorted by name.
func Discover(ctx context.Context, cfg *config.Cluster, cloud sdk.Provider) ([]Node, error) {
	insts, err := cloud.ListInstances(ctx, map[string]string{LabelCluster: cfg.Name})
	if err != nil {
		return nil, fmt.Errorf("listing the cluster's instances: %w", err)
	}
	if orig, err := cloud.GetInstance(ctx, cfg.ControlPlane.Instance); err == nil && !slices.ContainsFunc(insts, func(i sdk.Instance) bool { return i.ID == orig.ID }) {
		insts = append(insts, orig)
	}
	var nodes []Node
	for _, i := range insts {
		if i.State != sdk.InstanceRunning {
			continue
		}
		nodes = append(nodes, Node{Name: i.Name, InstanceID: i.ID, Zone: i.Zone, IP: i.PrivateIP, Endpoint: net.JoinHostPort(i.PrivateIP, strconv.Itoa(cfg.Agent.Port))})
	}
	if len(nodes) == 0 {
		return nil, fmt.Errorf("cluster %s has no running control-plane instance (neither %s nor any labelled %s=%s)", cfg.Name, cfg.ControlPlane.Instance, LabelCluster, cfg.Name)
	}
	slices.SortFunc(nodes, func(a, b Node) int { return strings.Compare(a.Name, b.Name) })
	return nodes, nil
}

// Watch opens every node's WatchHealth stream and calls update with the
// folded view after each report, until ctx ends. A node whose stream fails
// is retried every few seconds and shown with its error meanwhile.
func Watch(ctx context.Context, cfg *config.Cluster, nodes []Node, interval time.Duration, update func(Cluster)) {
	var mu sync.Mutex
	nodes = slices.Clone(nodes)
	publish := func(i int, h *agentv1.NodeHealth, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			nodes[i].Error, nodes[i].Health = err.Error(), nil
		} else {
			nodes[i].Error = ""
			nodes[i].Health = fromProto(h)
		}
		update(fold(cfg.Name, nodes))
	}
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				err := watchOne(ctx, cfg, nodes[i].Endpoint, interval, func(h *agentv1.NodeHealth) { publish(i, h, nil) })
				if ctx.Err() != nil {
					return
				}
				publish(i, nil, err)
				select {
				case <-ctx.Done():
				case <-time.After(2 * time.Second):
				}
			}
		}()
	}
	wg.Wait()
}

// watchOne streams one agent's reports until the stream fails.
func watchOne(ctx context.Context, cfg *config.Cluster, endpoint string, interval time.Duration, report func(*agentv1.NodeHealth)) error {
	c, err := agentclient.Dial(endpoint, cfg.Name, cfg.TLSFiles())
	if err != nil {
		return err
	}
	defer c.Close()
	stream, err := c.WatchHealth(ctx, &agentv1.WatchHealthRequest{Interval: durationpb.New(interval)})
	if err != nil {
		return fmt.Errorf("agent %s: %w", endpoint, err)
	}
	for {
		msg, err := stream.Recv()
		if err != nil {
			return fmt.Errorf("agent %s: %w", endpoint, err)
		}
		report(msg.GetHealth())
	}
}

// Collect waits for one report from every node (or timeout) and returns
// the folded view.
func Collect(ctx context.Context, cfg *config.Cluster, nodes []Node, timeout time.Duration) Cluster {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var mu sync.Mutex
	var last Cluster
	Watch(ctx, cfg, nodes, 5*time.Second, func(c Cluster) {
		mu.Lock()
		defer mu.Unlock()
		last = c
		for _, n := range c.Nodes {
			if n.Health == nil && n.Error == "" {
				return
			}
		}
		cancel()
	})
	mu.Lock()
	defer mu.Unlock()
	if last.Nodes == nil {
		// Not one report before the timeout.
		last = fold(cfg.Name, nodes)
	}
	for i, n := range last.Nodes {
		if n.Health == nil && n.Error == "" {
			last.Nodes[i].Error = fmt.Sprintf("no report within %s", timeout)
		}
	}
	return refold(last)
}

func fromProto(h *agentv1.NodeHealth) *Health {
	out := &Health{
		ObservedAt: h.GetObservedAt().AsTime(), APIServerReady: h.GetApiserverReady(), EtcdHealthy: h.GetEtcdHealthy(),
		GateOpen: h.GetGateOpen(), StaticPods: map[string]string{}, KubernetesVersion: h.GetKubernetesVersion(),
		EtcdVersion: h.GetEtcdVersion(), EtcdMemberID: hexID(h.GetEtcdMemberId()), EtcdLeaderID: hexID(h.GetEtcdLeaderId()),
		EtcdDBSizeBytes: h.GetEtcdDbSizeBytes(), DiskFreeBytes: h.GetDiskFreeBytes(), Problems: h.GetProblems(),
		members: h.GetEtcdMembers(), alarms: h.GetEtcdAlarms(),
	}
	for _, p := range h.GetStaticPods() {
		out.StaticPods[p.GetName()] = strings.ToLower(strings.TrimPrefix(p.GetState().String(), "STATIC_POD_STATE_"))
	}
	return out
}

// fold builds the cluster view from the nodes' latest reports.
func fold(name string, nodes []Node) Cluster {
	return refold(Cluster{Name: name, ObservedAt: time.Now().UTC(), Nodes: slices.Clone(nodes)})
}

// refold recomputes everything derived from the nodes' reports.
func refold(c Cluster) Cluster {
	c.Problems, c.Members, c.Voters, c.Learners, c.Leader, c.Alarms = nil, nil, 0, 0, "", nil
	leaders := map[string]bool{}
	// The membership as the leader sees it, else as any member does.
	var members []*agentv1.EtcdMember
	for _, n := range c.Nodes {
		switch {
		case n.Error != "":
			c.Problems = append(c.Problems, fmt.Sprintf("%s: %s", n.Name, n.Error))
			continue
		case n.Health == nil:
			continue
		}
		h := n.Health
		if !h.APIServerReady {
			c.Problems = append(c.Problems, n.Name+": kube-apiserver not ready")
		}
		if !h.EtcdHealthy {
			c.Problems = append(c.Problems, n.Name+": etcd not healthy")
		}
		if !h.GateOpen {
			c.Problems = append(c.Problems, n.Name+": gate closed (the load balancers send it nothing)")
		}
		for pod, state := range h.StaticPods {
			if state != "running" {
				c.Problems = append(c.Problems, fmt.Sprintf("%s: static pod %s %s", n.Name, pod, state))
			}
		}
		if h.EtcdHealthy {
			leaders[h.EtcdLeaderID] = true
		}
		if members == nil || (h.EtcdMemberID != "" && h.EtcdMemberID == h.EtcdLeaderID) {
			members = h.members
		}
		for _, a := range h.alarms {
			if !slices.Contains(c.Alarms, a) {
				c.Alarms = append(c.Alarms, a)
				c.Problems = append(c.Problems, "etcd alarm "+a)
			}
		}
	}
	for _, m := range members {
		mm := Member{ID: hexID(m.GetId()), Name: m.GetName(), PeerURLs: m.GetPeerUrls(), Learner: m.GetIsLearner()}
		if leaders[mm.ID] && len(leaders) == 1 {
			mm.Leader, c.Leader = true, mm.Name
		}
		if mm.Learner {
			c.Learners++
		} else {
			c.Voters++
		}
		c.Members = append(c.Members, mm)
	}
	switch {
	case len(leaders) > 1:
		c.Problems = append(c.Problems, fmt.Sprintf("nodes disagree on the etcd leader: %v", keys(leaders)))
	case len(leaders) == 0 && len(c.Nodes) > 0, leaders[""]:
		c.Problems = append(c.Problems, "etcd has no leader")
	}
	if c.Learners > 0 {
		c.Problems = append(c.Problems, fmt.Sprintf("%d etcd learner(s): a membership change is in progress", c.Learners))
	}
	slices.Sort(c.Problems)
	c.Healthy = len(c.Problems) == 0 && len(c.Nodes) > 0
	return c
}

func keys(m map[string]bool) []string {
	var k []string
	for key := range m {
		k = append(k, key)
	}
	slices.Sort(k)
	return k
}
