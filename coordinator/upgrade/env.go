package upgrade

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/triad-k8s/triad/cloudplugins/sdk"
	"github.com/triad-k8s/triad/coordinator/config"
	"github.com/triad-k8s/triad/coordinator/controlplane"
	"github.com/triad-k8s/triad/coordinator/engine"
	agentv1 "github.com/triad-k8s/triad/proto/triad/agent/v1"
)

// Options tune an upgrade.
type Options struct {
	// Options are the agent and readiness timeouts (ReadyTimeout also
	// bounds the waits for load balancer health).
	controlplane.Options
	// CatchUpTimeout bounds the wait for a learner to catch up with the
	// leader; default 10m.
	CatchUpTimeout time.Duration
	// DrainDelay is the extra wait once both load balancers report the
	// drained node unhealthy, for connections they were opening to it;
	// default 2s. Its open connections move at its kube-apiserver's
	// graceful shutdown (GOAWAY), in the switch.
	DrainDelay time.Duration
}

func (o Options) withDefaults() Options {
	o.Options = o.Options.WithDefaults()
	if o.CatchUpTimeout <= 0 {
		o.CatchUpTimeout = 10 * time.Minute
	}
	if o.DrainDelay <= 0 {
		o.DrainDelay = 2 * time.Second
	}
	return o
}

// Env is what the steps act through: the cluster (agents, cloud,
// Kubernetes) and the upgrade's options.
type Env struct {
	*controlplane.Cluster
	Options Options
}

// NewEnv returns an Env; Close it to drop the agent connections.
func NewEnv(cfg *config.Cluster, cloud sdk.Provider, kube kubernetes.Interface, opts Options) *Env {
	opts = opts.withDefaults()
	return &Env{Cluster: controlplane.New(cfg, cloud, kube, opts.Options), Options: opts}
}

// header stamps a mutating agent request.
func header(op *engine.Op[State]) *agentv1.RequestHeader {
	return &agentv1.RequestHeader{OperationId: op.Record.ID, Epoch: op.Epoch(), Cluster: op.State.Cluster}
}

func (e *Env) endpoint(n controlplane.Node) string { return e.AgentEndpoint(n.PrivateIP) }

// agentDo calls one agent RPC through CallAgent.
func (e *Env) agentDo(ctx context.Context, n controlplane.Node, what string, f func(context.Context, agentv1.AgentServiceClient) error) error {
	return e.CallAgent(ctx, e.endpoint(n), what, f)
}

func (e *Env) setGate(ctx context.Context, op *engine.Op[State], n controlplane.Node, open bool) error {
	return e.SetGate(ctx, e.endpoint(n), header(op), open)
}

func (e *Env) pods(ctx context.Context, op *engine.Op[State], n controlplane.Node, start bool, names ...string) error {
	if start {
		return e.StartPods(ctx, e.endpoint(n), header(op), names, false)
	}
	return e.StopPods(ctx, e.endpoint(n), header(op), names)
}

// clusterHealthy checks the cluster-level preconditions over the nodes
// that serve now: every agent answers, etcd has exactly their members, all
// voting, one leader, no alarm, and every kube-apiserver is ready. It
// returns the members' ids by node and the leader's id.
func (e *Env) clusterHealthy(ctx context.Context, nodes []controlplane.Node) (map[string]uint64, uint64, error) {
	view := e.Etcd(ctx, nodes)
	problems := view.Problems(len(nodes))
	for _, n := range nodes {
		if h, err := e.Health(ctx, e.endpoint(n)); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", n.Name, err))
		} else if !h.GetApiserverReady() {
			problems = append(problems, n.Name+": kube-apiserver not ready: "+strings.Join(h.GetProblems(), "; "))
		}
	}
	if len(problems) > 0 {
		return nil, 0, errors.New(strings.Join(problems, "; "))
	}
	return view.MemberIDs(), view.Leader(), nil
}

// backendHealth waits until instance id has health want on both load
// balancers.
func (e *Env) backendHealth(ctx context.Context, s *State, id string, want sdk.BackendHealth) error {
	return controlplane.Poll(ctx, e.Options.ReadyTimeout, 250*time.Millisecond, fmt.Sprintf("instance %s %s on both load balancers", id, want), func() (bool, error) {
		for _, lbID := range []string{s.InternalLB, s.PublicLB} {
			lb, err := e.Cloud.GetLoadBalancer(ctx, lbID)
			if err != nil {
				return false, err
			}
			i := slices.IndexFunc(lb.Backends, func(b sdk.Backend) bool { return b.InstanceID == id })
			if i < 0 {
				return false, fmt.Errorf("%s is not a backend of %s", id, lbID)
			}
			if lb.Backends[i].Health != want {
				return false, fmt.Errorf("%s is %s on %s", id, lb.Backends[i].Health, lbID)
			}
		}
		return true, nil
	})
}

// setBackends changes both load balancers' backends with edit.
func (e *Env) setBackends(ctx context.Context, s *State, edit func([]string) []string) error {
	for _, lbID := range []string{s.InternalLB, s.PublicLB} {
		lb, err := controlplane.CloudRetry(ctx, "get load balancer", func() (sdk.LoadBalancer, error) { return e.Cloud.GetLoadBalancer(ctx, lbID) })
		if err != nil {
			return err
		}
		var ids []string
		for _, b := range lb.Backends {
			ids = append(ids, b.InstanceID)
		}
		want := edit(slices.Clone(ids))
		slices.Sort(want)
		want = slices.Compact(want)
		if slices.Equal(want, sortedCopy(ids)) {
			continue
		}
		if _, err := controlplane.CloudRetry(ctx, "set backends of "+lbID, func() (sdk.LoadBalancer, error) { return e.Cloud.SetLoadBalancerBackends(ctx, lbID, want) }); err != nil {
			return err
		}
	}
	return nil
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

// nodeClient is a Kubernetes client that talks to one node's
// kube-apiserver directly, with the cluster's kubeconfig credentials.
func (e *Env) nodeClient(n controlplane.Node) (kubernetes.Interface, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", e.Config.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", e.Config.Kubeconfig, err)
	}
	cfg.Host = "https://" + net.JoinHostPort(n.PrivateIP, fmt.Sprint(e.Config.ControlPlane.APIServerPort))
	cfg.Timeout = 10 * time.Second
	return kubernetes.NewForConfig(cfg)
}
