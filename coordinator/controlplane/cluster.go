// Package controlplane is a triad-managed control plane as every operation
// sees it: its nodes and the labels that find them, the agents on them
// (reached through one retried and fenced facade), etcd through those
// agents, the cloud through a retrying wrapper, and what kubeadm keeps in
// the Kubernetes API. The migration and the upgrade both stand on it and
// import neither each other nor anything above them.
package controlplane

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"k8s.io/client-go/kubernetes"

	"github.com/triad-k8s/triad/agent/bootdata"
	"github.com/triad-k8s/triad/cloudplugins/sdk"
	"github.com/triad-k8s/triad/coordinator/agentclient"
	"github.com/triad-k8s/triad/coordinator/config"
	"github.com/triad-k8s/triad/coordinator/engine"
	agentv1 "github.com/triad-k8s/triad/proto/triad/agent/v1"
)

// Labels put on everything an operation creates, so that an undo finds it
// even if the coordinator died between creating it and journaling its id.
const (
	LabelCluster   = "triad.dev/cluster"
	LabelOperation = "triad.dev/operation"
)

// Labels are the labels of what operation op creates for cluster.
func Labels(cluster, op string) map[string]string {
	return map[string]string{LabelCluster: cluster, LabelOperation: op}
}

// ControlPlanePods are the static pods of a kubeadm control-plane node.
var ControlPlanePods = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"}

// Node is one control-plane VM.
type Node struct {
	InstanceID string `json:"instanceID"`
	Name       string `json:"name"`
	Zone       string `json:"zone"`
	PrivateIP  string `json:"privateIP"`
}

// InstanceIDs are the nodes' cloud instance ids.
func InstanceIDs(nodes []Node) []string {
	var ids []string
	for _, n := range nodes {
		ids = append(ids, n.InstanceID)
	}
	return ids
}

// BootData is what a new control-plane VM is booted with: hold the static
// pods at its first start, until the coordinator starts them. Its id is
// unique to the operation and the node, so the agent applies it once.
func BootData(operation, node string) ([]byte, error) {
	return bootdata.Data{ID: operation + "/" + node, HoldStaticPods: ControlPlanePods}.Marshal()
}

// The load balancers' health check of the gate.
const (
	LBCheckInterval      = time.Second
	LBUnhealthyThreshold = 2
)

// APIServerShutdownDelay is the --shutdown-delay-duration of the HA
// kube-apiservers: a stopping server keeps serving until the load balancers
// have seen its /readyz (behind the gate) fail, plus a second.
const APIServerShutdownDelay = LBUnhealthyThreshold*LBCheckInterval + time.Second

// CloudAdvice is the cloud plugin's advice on timings behind its load
// balancers (zero: none).
type CloudAdvice struct {
	DrainDelay             time.Duration `json:"drainDelay,omitempty"`
	APIServerShutdownDelay time.Duration `json:"apiServerShutdownDelay,omitempty"`
}

// ShutdownDelay is kube-apiserver's --shutdown-delay-duration on the HA
// nodes: triad's own figure for its health checks, or the cloud's if
// longer (an NLB checks every 5 s at best).
func (a CloudAdvice) ShutdownDelay() time.Duration {
	return max(APIServerShutdownDelay, a.APIServerShutdownDelay)
}

// Options tune how the cluster is reached.
type Options struct {
	// AgentTimeout bounds how long an unreachable agent is retried;
	// default 2m.
	AgentTimeout time.Duration
	// ReadyTimeout bounds the wait for a kube-apiserver to be ready;
	// default 5m.
	ReadyTimeout time.Duration
	// CallTimeout bounds one attempt of an agent call that only reads;
	// default DefaultCallTimeout.
	CallTimeout time.Duration
}

// WithDefaults fills in the defaults of the options left zero.
func (o Options) WithDefaults() Options {
	if o.AgentTimeout <= 0 {
		o.AgentTimeout = 2 * time.Minute
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = 5 * time.Minute
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = DefaultCallTimeout
	}
	return o
}

// Cluster is what an operation acts through: the cluster's configuration,
// its cloud, its Kubernetes API and a pool of agent connections.
type Cluster struct {
	Config *config.Cluster
	Cloud  sdk.Provider
	Kube   kubernetes.Interface

	opts   Options
	mu     sync.Mutex
	agents map[string]*agentclient.Client
}

// New returns a Cluster; Close it to drop the agent connections.
func New(cfg *config.Cluster, cloud sdk.Provider, kube kubernetes.Interface, opts Options) *Cluster {
	return &Cluster{Config: cfg, Cloud: cloud, Kube: kube, opts: opts.WithDefaults(), agents: map[string]*agentclient.Client{}}
}

// Close closes every agent connection.
func (c *Cluster) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, a := range c.agents {
		a.Close()
	}
	c.agents = map[string]*agentclient.Client{}
}

// CallTimeout bounds one attempt of an agent call that only reads.
func (c *Cluster) CallTimeout() time.Duration { return c.opts.WithDefaults().CallTimeout }

// AgentEndpoint is the agent's address on the node with private address ip.
func (c *Cluster) AgentEndpoint(ip string) string {
	return net.JoinHostPort(ip, strconv.Itoa(c.Config.Agent.Port))
}

func (c *Cluster) agent(endpoint string) (*agentclient.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.agents == nil {
		c.agents = map[string]*agentclient.Client{}
	}
	if a, ok := c.agents[endpoint]; ok {
		return a, nil
	}
	a, err := agentclient.Dial(endpoint, c.Config.Name, c.Config.TLSFiles())
	if err != nil {
		return nil, err
	}
	c.agents[endpoint] = a
	return a, nil
}

// DefaultCallTimeout bounds one attempt of an agent call that only reads (info,
// health, etcd status, static pods, the gate): an agent that stopped
// answering (a VM that lost power, a network that drops everything) fails
// the attempt instead of holding the operation, and the attempt is retried
// like an unreachable agent.
const DefaultCallTimeout = 20 * time.Second

// CallAgent runs f against the agent at endpoint, retrying while the agent
// is unreachable (a restarting agent, a booting VM) for up to AgentTimeout.
// A stale epoch becomes engine.ErrFenced. An attempt has no deadline of
// its own beyond ctx's: the mutating calls (restore, membership,
// certificates) must not be cut half-way, as a cut call may have acted.
// Calls that only read go through CallAgentWithin and CallTimeout.
func (c *Cluster) CallAgent(ctx context.Context, endpoint, what string, f func(context.Context, agentv1.AgentServiceClient) error) error {
	return c.CallAgentWithin(ctx, endpoint, what, 0, f)
}

// CallAgentWithin is CallAgent with each attempt bounded by perCall (0:
// unbounded); an attempt that runs out of it is retried like an
// unreachable agent. For calls that are safe to cut: reads, and calls the
// agent itself bounds (static pods starting or stopping).
func (c *Cluster) CallAgentWithin(ctx context.Context, endpoint, what string, perCall time.Duration, f func(context.Context, agentv1.AgentServiceClient) error) error {
	a, err := c.agent(endpoint)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(c.opts.WithDefaults().AgentTimeout)
	for n := 1; ; n++ {
		err = attempt(ctx, perCall, func(ctx context.Context) error { return f(ctx, a) })
		if err == nil {
			return nil
		}
		st, _ := status.FromError(err)
		if agentclient.Fenced(err) {
			return fmt.Errorf("agent %s, %s: %w: %s", endpoint, what, engine.ErrFenced, st.Message())
		}
		// The attempt's own deadline, not the caller's: the agent did not
		// answer in time.
		unanswered := st.Code() == codes.DeadlineExceeded && ctx.Err() == nil
		if st.Code() != codes.Unavailable && !unanswered || time.Now().After(deadline) || ctx.Err() != nil {
			if unanswered {
				return fmt.Errorf("agent %s, %s: no answer within %s: %w", endpoint, what, perCall, err)
			}
			return fmt.Errorf("agent %s, %s: %w", endpoint, what, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("agent %s, %s: %w", endpoint, what, ctx.Err())
		case <-time.After(min(time.Duration(n)*500*time.Millisecond, 3*time.Second)):
		}
	}
}

// attempt runs f within perCall (0: within ctx alone).
func attempt(ctx context.Context, perCall time.Duration, f func(context.Context) error) error {
	if perCall <= 0 {
		return f(ctx)
	}
	ctx, cancel := context.WithTimeout(ctx, perCall)
	defer cancel()
	return f(ctx)
}

// EtcdStatus is etcd as the agent at endpoint sees it.
func (c *Cluster) EtcdStatus(ctx context.Context, endpoint string) (*agentv1.GetEtcdStatusResponse, error) {
	var st *agentv1.GetEtcdStatusResponse
	err := c.CallAgentWithin(ctx, endpoint, "etcd status", c.CallTimeout(), func(ctx context.Context, a agentv1.AgentServiceClient) (err error) {
		st, err = a.GetEtcdStatus(ctx, &agentv1.GetEtcdStatusRequest{})
		return err
	})
	return st, err
}

// Info is the agent's GetInfo: its cluster, node, versions, kubeconfigs.
func (c *Cluster) Info(ctx context.Context, endpoint string) (*agentv1.GetInfoResponse, error) {
	var info *agentv1.GetInfoResponse
	err := c.CallAgentWithin(ctx, endpoint, "get info", c.CallTimeout(), func(ctx context.Context, a agentv1.AgentServiceClient) (err error) {
		info, err = a.GetInfo(ctx, &agentv1.GetInfoRequest{})
		return err
	})
	return info, err
}

// Health is the node's health as its agent reports it.
func (c *Cluster) Health(ctx context.Context, endpoint string) (*agentv1.NodeHealth, error) {
	var h *agentv1.GetHealthResponse
	err := c.CallAgentWithin(ctx, endpoint, "health", c.CallTimeout(), func(ctx context.Context, a agentv1.AgentServiceClient) (err error) {
		h, err = a.GetHealth(ctx, &agentv1.GetHealthRequest{})
		return err
	})
	return h.GetHealth(), err
}

// SetGate opens or closes the node's gate, the load balancers' health
// check.
func (c *Cluster) SetGate(ctx context.Context, endpoint string, h *agentv1.RequestHeader, open bool) error {
	return c.CallAgent(ctx, endpoint, fmt.Sprintf("set gate open=%v", open), func(ctx context.Context, a agentv1.AgentServiceClient) error {
		_, err := a.SetGate(ctx, &agentv1.SetGateRequest{Header: h, Open: open})
		return err
	})
}

// StartPods starts the named static pods and waits up to ReadyTimeout for
// them to be ready (runningOnly: running; an etcd learner is never ready).
func (c *Cluster) StartPods(ctx context.Context, endpoint string, h *agentv1.RequestHeader, names []string, runningOnly bool) error {
	ready := c.opts.WithDefaults().ReadyTimeout
	return c.CallAgentWithin(ctx, endpoint, "start "+strings.Join(names, ", "), ready+c.CallTimeout(), func(ctx context.Context, a agentv1.AgentServiceClient) error {
		_, err := a.StartStaticPods(ctx, &agentv1.StartStaticPodsRequest{Header: h, Names: names, RunningOnly: runningOnly, Timeout: durationpb.New(ready)})
		return err
	})
}

// StopTimeout bounds how long a static pod is given to stop.
const StopTimeout = 2 * time.Minute

// StopPods stops the named static pods, each within StopTimeout.
func (c *Cluster) StopPods(ctx context.Context, endpoint string, h *agentv1.RequestHeader, names []string) error {
	return c.CallAgentWithin(ctx, endpoint, "stop "+strings.Join(names, ", "), StopTimeout+c.CallTimeout(), func(ctx context.Context, a agentv1.AgentServiceClient) error {
		_, err := a.StopStaticPods(ctx, &agentv1.StopStaticPodsRequest{Header: h, Names: names, Timeout: durationpb.New(StopTimeout)})
		return err
	})
}

// WaitAPIServerReady waits up to ReadyTimeout for the agent at endpoint to
// report its kube-apiserver ready.
func (c *Cluster) WaitAPIServerReady(ctx context.Context, endpoint string) error {
	return Poll(ctx, c.opts.WithDefaults().ReadyTimeout, time.Second, "kube-apiserver ready on "+endpoint, func() (bool, error) {
		h, err := c.Health(ctx, endpoint)
		if err != nil {
			return false, err
		}
		if !h.GetApiserverReady() {
			return false, errors.New(strings.Join(h.GetProblems(), "; "))
		}
		return true, nil
	})
}

// CloudRetry retries a cloud call that failed with ErrUnavailable, three
// attempts in all. Every cloud call of the SDK is safe to retry.
func CloudRetry[T any](ctx context.Context, what string, f func() (T, error)) (T, error) {
	var zero T
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		var v T
		if v, err = f(); err == nil {
			return v, nil
		}
		if !errors.Is(err, sdk.ErrUnavailable) {
			break
		}
		select {
		case <-ctx.Done():
			return zero, ctx.Err()
		case <-time.After(time.Duration(attempt) * time.Second):
		}
	}
	return zero, fmt.Errorf("cloud %s: %w", what, err)
}

// Poll calls f every interval until it returns true, an error, or timeout;
// on timeout the error names what was awaited and f's last complaint.
func Poll(ctx context.Context, timeout, interval time.Duration, what string, f func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := f()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s (last: %v)", timeout, what, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-time.After(interval):
		}
	}
}

// Parallel runs f for every node at once and joins the errors.
func Parallel(nodes []Node, f func(n Node) error) error {
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() {
			if err := f(n); err != nil {
				errs[i] = fmt.Errorf("%s (%s): %w", n.Name, n.PrivateIP, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
