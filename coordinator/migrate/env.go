// Package migrate is the migration of a single-node control plane to three
// nodes behind load balancers that take over the node's static addresses
// (DESIGN §2), expressed as a step list for coordinator/engine. It talks
// only to the cloud plugin, the triad-agents and the Kubernetes API.
package migrate

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/client-go/kubernetes"

	"github.com/triad-k8s/triad/agent/etcdsnap"
	"github.com/triad-k8s/triad/cloudplugins/sdk"
	"github.com/triad-k8s/triad/coordinator/agentclient"
	"github.com/triad-k8s/triad/coordinator/config"
	"github.com/triad-k8s/triad/coordinator/engine"
	agentv1 "github.com/triad-k8s/triad/proto/triad/agent/v1"
)

// Options tune a migration.
type Options struct {
	// UnsafeStartControllersBeforeHeartbeats starts kube-controller-manager
	// and kube-scheduler as soon as traffic is admitted, without waiting for
	// the kubelets' heartbeats through the new endpoint. UNSAFE: the
	// node-lifecycle controller may mark nodes NotReady and evict their
	// pods. It exists to demonstrate why the wait matters.
	UnsafeStartControllersBeforeHeartbeats bool
	// AgentTimeout bounds how long an unreachable agent is retried;
	// default 2m.
	AgentTimeout time.Duration
	// HeartbeatTimeout bounds the wait for kubelet heartbeats after
	// traffic opens; default 10m.
	HeartbeatTimeout time.Duration
	// HeartbeatThreshold is the fraction of the nodes Ready at preflight
	// whose kubelets must have heartbeated through the new endpoint by
	// HeartbeatTimeout for the controllers to start without the others;
	// valid in (0, 1], default (zero) 1: all of them.
	HeartbeatThreshold float64
	// ReadyTimeout bounds waits for etcd quorum, kube-apiserver readiness
	// and the first write; default 5m.
	ReadyTimeout time.Duration
}

func (o Options) withDefaults() Options {
	if o.AgentTimeout <= 0 {
		o.AgentTimeout = 2 * time.Minute
	}
	if o.HeartbeatTimeout <= 0 {
		o.HeartbeatTimeout = 10 * time.Minute
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = 5 * time.Minute
	}
	if o.HeartbeatThreshold == 0 {
		o.HeartbeatThreshold = 1
	}
	return o
}

// CheckHeartbeatThreshold fails unless t is a valid HeartbeatThreshold.
func CheckHeartbeatThreshold(t float64) error {
	if !(t > 0 && t <= 1) { // also rejects NaN
		return fmt.Errorf("heartbeat threshold %g is not a fraction in (0, 1]: it is the share of the nodes Ready at preflight that must heartbeat, 1 for all of them", t)
	}
	return nil
}

// Env is what the steps act through.
type Env struct {
	Config *config.Cluster
	Cloud  sdk.Provider
	Kube   kubernetes.Interface
	// Snapshots is the coordinator's etcd snapshot store (0700 dir).
	Snapshots etcdsnap.Store
	Options   Options

	mu     sync.Mutex
	agents map[string]*agentclient.Client
}

// NewEnv returns an Env; Close it to drop the agent connections.
func NewEnv(cfg *config.Cluster, cloud sdk.Provider, kube kubernetes.Interface, snapshots etcdsnap.Store, opts Options) *Env {
	return &Env{Config: cfg, Cloud: cloud, Kube: kube, Snapshots: snapshots, Options: opts.withDefaults(), agents: map[string]*agentclient.Client{}}
}

// Close closes every agent connection.
func (e *Env) Close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, c := range e.agents {
		c.Close()
	}
	e.agents = map[string]*agentclient.Client{}
}

func (e *Env) AgentEndpoint(ip string) string {
	return net.JoinHostPort(ip, strconv.Itoa(e.Config.Agent.Port))
}

func (e *Env) agent(endpoint string) (*agentclient.Client, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if c, ok := e.agents[endpoint]; ok {
		return c, nil
	}
	c, err := agentclient.Dial(endpoint, e.Config.Name, e.Config.TLSFiles())
	if err != nil {
		return nil, err
	}
	e.agents[endpoint] = c
	return c, nil
}

// header stamps a mutating agent request.
func header(op *engine.Op[State]) *agentv1.RequestHeader {
	return &agentv1.RequestHeader{OperationId: op.Record.ID, Epoch: op.Epoch(), Cluster: op.State.Cluster}
}

// CallAgent runs f against the agent at endpoint, retrying while the agent
// is unreachable (a restarting agent or a booting VM) for up to
// AgentTimeout. A stale epoch becomes engine.ErrFenced.
func (e *Env) CallAgent(ctx context.Context, endpoint, what string, f func(context.Context, agentv1.AgentServiceClient) error) error {
	c, err := e.agent(endpoint)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(e.Options.AgentTimeout)
	for attempt := 1; ; attempt++ {
		err = f(ctx, c)
		if err == nil {
			return nil
		}
		st, _ := status.FromError(err)
		if agentclient.Fenced(err) {
			return fmt.Errorf("agent %s, %s: %w: %s", endpoint, what, engine.ErrFenced, st.Message())
		}
		if st.Code() != codes.Unavailable || time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("agent %s, %s: %w", endpoint, what, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("agent %s, %s: %w", endpoint, what, ctx.Err())
		case <-time.After(min(time.Duration(attempt)*500*time.Millisecond, 3*time.Second)):
		}
	}
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

// parallel runs f for every node at once and joins the errors.
func parallel(nodes []Node, f func(n Node) error) error {
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

// instanceIDs are the nodes' cloud instance ids.
func instanceIDs(nodes []Node) []string {
	var ids []string
	for _, n := range nodes {
		ids = append(ids, n.InstanceID)
	}
	return ids
}

// podsIn fails unless every static pod the agent manages is in state want;
// hint is appended to the complaint.
func podsIn(ctx context.Context, c agentv1.AgentServiceClient, want agentv1.StaticPodState, hint string) error {
	pods, err := c.ListStaticPods(ctx, &agentv1.ListStaticPodsRequest{})
	if err != nil {
		return err
	}
	for _, p := range pods.GetPods() {
		if p.GetState() != want {
			return fmt.Errorf("static pod %s is %s%s", p.GetName(), p.GetState(), hint)
		}
	}
	return nil
}
