package migrate

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/triad-k8s/triad/cloudplugins/sdk"
	"github.com/triad-k8s/triad/coordinator/engine"
	agentv1 "github.com/triad-k8s/triad/proto/triad/agent/v1"
)

// Phase 3: the point of no return (3.1).

func (e *Env) openTraffic(ctx context.Context, op *engine.Op[State]) error {
	s := op.State
	if err := parallel(s.Nodes, func(n Node) error {
		return e.CallAgent(ctx, e.AgentEndpoint(n.PrivateIP), "open gate", func(ctx context.Context, c agentv1.AgentServiceClient) error {
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
		if _, err := CloudRetry(ctx, "admit traffic on "+id, func() (sdk.LoadBalancer, error) { return e.Cloud.SetLoadBalancerTraffic(ctx, id, true) }); err != nil {
			return err
		}
	}
	op.Logf("traffic admitted on %s and %s", s.PrivateIP, s.PublicIP)
	if s.FirstWriteAt == nil {
		if err := Poll(ctx, e.Options.ReadyTimeout, 100*time.Millisecond, "the first write through the load balancer", func() (bool, error) {
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
	return Poll(ctx, e.Options.HeartbeatTimeout, time.Second, "kubelet heartbeats through the new endpoint", func() (bool, error) {
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
		return e.startPods(ctx, op, e.AgentEndpoint(n.PrivateIP), []string{"kube-controller-manager", "kube-scheduler"})
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
		return e.CallAgent(ctx, e.AgentEndpoint(n.PrivateIP), "list static pods", func(ctx context.Context, c agentv1.AgentServiceClient) error {
			return podsIn(ctx, c, agentv1.StaticPodState_STATIC_POD_STATE_RUNNING, "")
		})
	})
}
