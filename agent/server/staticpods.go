package server

import (
	"context"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/triad-k8s/triad/agent/staticpods"
	agentv1 "github.com/triad-k8s/triad/proto/triad/agent/v1"
)

// Default waits when a request gives no timeout.
const (
	defaultStopTimeout  = 2 * time.Minute
	defaultStartTimeout = 5 * time.Minute
)

func (s *service) ListStaticPods(ctx context.Context, _ *agentv1.ListStaticPodsRequest) (*agentv1.ListStaticPodsResponse, error) {
	pods, err := s.pods.List(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &agentv1.ListStaticPodsResponse{Pods: podsToProto(pods)}, nil
}

func (s *service) StopStaticPods(ctx context.Context, req *agentv1.StopStaticPodsRequest) (*agentv1.StopStaticPodsResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, timeoutOr(req.GetTimeout(), defaultStopTimeout))
	defer cancel()
	pods, err := s.pods.Stop(ctx, req.GetNames())
	s.cfg.Logger.InfoContext(ctx, "static pods stopped", "cluster", s.cfg.Cluster, "op", req.GetHeader().GetOperationId(), "pods", req.GetNames(), "err", err)
	if err != nil {
		return nil, toStatus(err)
	}
	return &agentv1.StopStaticPodsResponse{Pods: podsToProto(pods)}, nil
}

func (s *service) StartStaticPods(ctx context.Context, req *agentv1.StartStaticPodsRequest) (*agentv1.StartStaticPodsResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, timeoutOr(req.GetTimeout(), defaultStartTimeout))
	defer cancel()
	start := s.pods.Start
	if req.GetRunningOnly() {
		start = s.pods.StartRunning
	}
	pods, err := start(ctx, req.GetNames())
	s.cfg.Logger.InfoContext(ctx, "static pods started", "cluster", s.cfg.Cluster, "op", req.GetHeader().GetOperationId(), "pods", req.GetNames(), "err", err)
	if err != nil {
		return nil, toStatus(err)
	}
	return &agentv1.StartStaticPodsResponse{Pods: podsToProto(pods)}, nil
}

func (s *service) HoldStaticPods(ctx context.Context, req *agentv1.HoldStaticPodsRequest) (*agentv1.HoldStaticPodsResponse, error) {
	if err := s.pods.Park(req.GetNames()); err != nil {
		return nil, toStatus(err)
	}
	pods, err := s.pods.List(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	var held []staticpods.Pod
	for _, p := range pods {
		for _, n := range req.GetNames() {
			if p.Name == n {
				held = append(held, p)
			}
		}
	}
	return &agentv1.HoldStaticPodsResponse{Pods: podsToProto(held)}, nil
}

func timeoutOr(d *durationpb.Duration, def time.Duration) time.Duration {
	if d == nil || d.AsDuration() <= 0 {
		return def
	}
	return d.AsDuration()
}

var podStates = map[staticpods.State]agentv1.StaticPodState{
	staticpods.Running:  agentv1.StaticPodState_STATIC_POD_STATE_RUNNING,
	staticpods.Starting: agentv1.StaticPodState_STATIC_POD_STATE_STARTING,
	staticpods.Stopped:  agentv1.StaticPodState_STATIC_POD_STATE_STOPPED,
	staticpods.Stopping: agentv1.StaticPodState_STATIC_POD_STATE_STOPPING,
}

func podsToProto(pods []staticpods.Pod) []*agentv1.StaticPod {
	out := make([]*agentv1.StaticPod, 0, len(pods))
	for _, p := range pods {
		out = append(out, &agentv1.StaticPod{Name: p.Name, State: podStates[p.State], ContainerIds: p.ContainerIDs, Image: p.Image})
	}
	return out
}
