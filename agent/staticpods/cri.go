package staticpods

import (
	"context"
	"fmt"
	"sync"
	"time"

	internalapi "k8s.io/cri-api/pkg/apis"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	criclient "k8s.io/cri-client/pkg"
)

// Labels the kubelet puts on every container it creates for a pod.
const (
	LabelPodName      = "io.kubernetes.pod.name"
	LabelPodNamespace = "io.kubernetes.pod.namespace"
)

// DefaultCRIEndpoint is containerd's CRI socket.
const DefaultCRIEndpoint = "unix:///run/containerd/containerd.sock"

// CRIRuntime answers Runtime through the container runtime's CRI socket,
// the same view the kubelet has. A static pod named n on node N is the
// mirror pod "n-N" in kube-system.
type CRIRuntime struct {
	svc      internalapi.RuntimeService
	nodeName string
}

// NewCRIRuntime connects to the CRI runtime service at endpoint.
func NewCRIRuntime(ctx context.Context, endpoint, nodeName string) (*CRIRuntime, error) {
	svc, err := criclient.NewRemoteRuntimeService(ctx, endpoint, 10*time.Second, nil, false)
	if err != nil {
		return nil, fmt.Errorf("connecting to the container runtime at %s: %w", endpoint, err)
	}
	return &CRIRuntime{svc: svc, nodeName: nodeName}, nil
}

// RunningContainers implements Runtime.
func (r *CRIRuntime) RunningContainers(ctx context.Context, name string) ([]string, error) {
	cs, err := r.svc.ListContainers(ctx, &runtimeapi.ContainerFilter{
		State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING},
		LabelSelector: map[string]string{
			LabelPodName:      name + "-" + r.nodeName,
			LabelPodNamespace: "kube-system",
		},
	})
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(cs))
	for _, c := range cs {
		ids = append(ids, c.Id)
	}
	return ids, nil
}

// LazyCRIRuntime connects to the CRI socket on first use and keeps the
// connection, so the agent can start before the container runtime does.
type LazyCRIRuntime struct {
	Endpoint, NodeName string

	mu sync.Mutex
	rt *CRIRuntime
}

func (l *LazyCRIRuntime) get(ctx context.Context) (*CRIRuntime, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.rt == nil {
		rt, err := NewCRIRuntime(ctx, l.Endpoint, l.NodeName)
		if err != nil {
			return nil, err
		}
		l.rt = rt
	}
	return l.rt, nil
}

// RunningContainers implements Runtime.
func (l *LazyCRIRuntime) RunningContainers(ctx context.Context, name string) ([]string, error) {
	rt, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	return rt.RunningContainers(ctx, name)
}
