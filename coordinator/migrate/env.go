// Package migrate is the migration of a single-node control plane to three
// nodes behind load balancers that take over the node's static addresses
// (DESIGN §2), expressed as a step list for coordinator/engine. It talks
// only to the cloud plugin, the triad-agents and the Kubernetes API.
package migrate

import (
	"context"
	"fmt"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/triad-k8s/triad/agent/etcdsnap"
	"github.com/triad-k8s/triad/cloudplugins/sdk"
	"github.com/triad-k8s/triad/coordinator/config"
	"github.com/triad-k8s/triad/coordinator/controlplane"
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
	// Options are the agent and readiness timeouts (ReadyTimeout also
	// bounds the waits for etcd quorum and the first write).
	controlplane.Options
	// HeartbeatTimeout bounds the wait for kubelet heartbeats after
	// traffic opens; default 10m.
	HeartbeatTimeout time.Duration
	// HeartbeatThreshold is the fraction of the nodes Ready at preflight
	// whose kubelets must have heartbeated through the new endpoint by
	// HeartbeatTimeout for the controllers to start without the others;
	// valid in (0, 1], default (zero) 1: all of them.
	HeartbeatThreshold float64
}

func (o Options) withDefaults() Options {
	o.Options = o.Options.WithDefaults()
	if o.HeartbeatTimeout <= 0 {
		o.HeartbeatTimeout = 10 * time.Minute
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

// Env is what the steps act through: the cluster (agents, cloud,
// Kubernetes) and the migration's own store and options.
type Env struct {
	*controlplane.Cluster
	// Snapshots is the coordinator's etcd snapshot store (0700 dir).
	Snapshots etcdsnap.Store
	Options   Options
}

// NewEnv returns an Env; Close it to drop the agent connections.
func NewEnv(cfg *config.Cluster, cloud sdk.Provider, kube kubernetes.Interface, snapshots etcdsnap.Store, opts Options) *Env {
	opts = opts.withDefaults()
	return &Env{Cluster: controlplane.New(cfg, cloud, kube, opts.Options), Snapshots: snapshots, Options: opts}
}

// header stamps a mutating agent request.
func header(op *engine.Op[State]) *agentv1.RequestHeader {
	return &agentv1.RequestHeader{OperationId: op.Record.ID, Epoch: op.Epoch(), Cluster: op.State.Cluster}
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
