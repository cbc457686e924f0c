package server

import (
	"context"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/triad-k8s/triad/agent/etcd"
	"github.com/triad-k8s/triad/agent/health"
	agentv1 "github.com/triad-k8s/triad/proto/triad/agent/v1"
)

func (s *service) sources() health.Sources {
	src := health.Sources{
		APIServer: s.apiserver,
		Pods:      s.pods.List,
		GateOpen:  func() bool { return s.gate.State().Open },
		DataDir:   s.cfg.EtcdDataDir,
	}
	if s.cfg.Etcd.Endpoint != "" {
		src.EtcdStatus = func(ctx context.Context) (etcd.Status, error) {
			cli, err := s.cfg.Etcd.Dial(ctx)
			if err != nil {
				return etcd.Status{}, err
			}
			defer cli.Close()
			return etcd.GetStatus(ctx, cli, s.cfg.Etcd.Endpoint)
		}
	}
	return src
}

func (s *service) observe(ctx context.Context) health.Report {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return s.sources().Observe(ctx)
}

func (s *service) GetHealth(ctx context.Context, _ *agentv1.GetHealthRequest) (*agentv1.GetHealthResponse, error) {
	return &agentv1.GetHealthResponse{Health: reportToProto(s.observe(ctx))}, nil
}

// WatchHealth observes every second and sends a report when something
// changed or when interval has passed since the last one.
func (s *service) WatchHealth(req *agentv1.WatchHealthRequest, stream agentv1.AgentService_WatchHealthServer) error {
	interval := timeoutOr(req.GetInterval(), 5*time.Second)
	interval = max(interval, time.Second)
	ctx := stream.Context()
	var last health.Report
	var lastSent time.Time
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		r := s.observe(ctx)
		if lastSent.IsZero() || !health.Same(r, last) || time.Since(lastSent) >= interval {
			if err := stream.Send(&agentv1.WatchHealthResponse{Health: reportToProto(r)}); err != nil {
				return err
			}
			last, lastSent = r, time.Now()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

func reportToProto(r health.Report) *agentv1.NodeHealth {
	return &agentv1.NodeHealth{
		ObservedAt:     timestamppb.New(r.ObservedAt),
		ApiserverReady: r.APIServerReady, ApiserverLive: r.APIServerLive,
		EtcdHealthy: r.EtcdHealthy, StaticPods: podsToProto(r.Pods), GateOpen: r.GateOpen,
		DiskFreeBytes: r.DiskFreeBytes, KubernetesVersion: r.KubernetesVersion, EtcdVersion: r.EtcdVersion,
		Problems:     r.Problems,
		EtcdMemberId: r.Etcd.MemberID, EtcdLeaderId: r.Etcd.LeaderID, EtcdMembers: membersToProto(r.Etcd.Members),
		EtcdDbSizeBytes: r.Etcd.DBSize, EtcdAlarms: r.Etcd.Alarms,
	}
}
