package server

import (
	"context"
	"errors"
	"io"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/triad-k8s/triad/agent/etcd"
	"github.com/triad-k8s/triad/agent/etcdsnap"
	agentv1 "github.com/triad-k8s/triad/proto/triad/agent/v1"
)

func (s *service) snapshots() etcdsnap.Store {
	return etcdsnap.Store{Dir: s.cfg.SnapshotDir}
}

func (s *service) GetEtcdStatus(ctx context.Context, _ *agentv1.GetEtcdStatusRequest) (*agentv1.GetEtcdStatusResponse, error) {
	cli, err := s.cfg.Etcd.Dial(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	defer cli.Close()
	st, err := etcd.GetStatus(ctx, cli, s.cfg.Etcd.Endpoint)
	if err != nil {
		return nil, toStatus(err)
	}
	return &agentv1.GetEtcdStatusResponse{
		MemberId: st.MemberID, LeaderId: st.LeaderID, ClusterId: st.ClusterID, RaftTerm: st.RaftTerm,
		Members: membersToProto(st.Members), Revision: st.Revision, DbSizeBytes: st.DBSize,
		DbSizeInUseBytes: st.DBSizeInUse, Alarms: st.Alarms, Healthy: st.Healthy, Version: st.Version,
	}, nil
}

// maxChunkSize keeps one message under gRPC's default 4 MiB limit.
const maxChunkSize = 3 << 20

func (s *service) TakeSnapshot(req *agentv1.TakeSnapshotRequest, stream agentv1.AgentService_TakeSnapshotServer) error {
	chunk := int(req.GetChunkSizeBytes())
	if chunk > maxChunkSize {
		return status.Errorf(codes.InvalidArgument, "chunk size %d exceeds %d bytes", chunk, maxChunkSize)
	}
	ctx := stream.Context()
	cli, err := s.cfg.Etcd.Dial(ctx)
	if err != nil {
		return toStatus(err)
	}
	defer cli.Close()
	t, err := etcdsnap.Take(ctx, cli.Maintenance, s.cfg.SnapshotDir, chunk, func(p []byte) error {
		return stream.Send(&agentv1.TakeSnapshotResponse{Msg: &agentv1.TakeSnapshotResponse_Data{Data: p}})
	})
	if err != nil {
		return toStatus(err)
	}
	s.cfg.Logger.InfoContext(ctx, "snapshot streamed", "cluster", s.cfg.Cluster, "op", req.GetHeader().GetOperationId(),
		"bytes", t.Size, "revision", t.Revision, "sha256", t.SHA256)
	return stream.Send(&agentv1.TakeSnapshotResponse{Msg: &agentv1.TakeSnapshotResponse_Trailer{Trailer: trailerToProto(t)}})
}

func (s *service) UploadSnapshot(stream agentv1.AgentService_UploadSnapshotServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	md := first.GetMetadata()
	if md == nil {
		return status.Error(codes.InvalidArgument, "the first message of an upload must be its metadata")
	}
	t, err := s.snapshots().Receive(md.GetSnapshotId(), func() ([]byte, *etcdsnap.Trailer, error) {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil, nil, status.Error(codes.InvalidArgument, "upload ended without a trailer")
		}
		if err != nil {
			return nil, nil, err
		}
		switch m := msg.GetMsg().(type) {
		case *agentv1.UploadSnapshotRequest_Data:
			return m.Data, nil, nil
		case *agentv1.UploadSnapshotRequest_Trailer:
			return nil, &etcdsnap.Trailer{SHA256: m.Trailer.GetSha256(), Size: m.Trailer.GetSizeBytes(), EtcdVersion: m.Trailer.GetEtcdVersion()}, nil
		default:
			return nil, nil, status.Error(codes.InvalidArgument, "metadata may only be sent once, first")
		}
	})
	if err != nil {
		return toStatus(err)
	}
	s.cfg.Logger.InfoContext(stream.Context(), "snapshot stored", "cluster", s.cfg.Cluster,
		"op", md.GetHeader().GetOperationId(), "snapshot", md.GetSnapshotId(), "bytes", t.Size, "revision", t.Revision)
	return stream.SendAndClose(&agentv1.UploadSnapshotResponse{SnapshotId: md.GetSnapshotId(), Sha256: t.SHA256, SizeBytes: t.Size})
}

func (s *service) RestoreSnapshot(ctx context.Context, req *agentv1.RestoreSnapshotRequest) (*agentv1.RestoreSnapshotResponse, error) {
	if err := etcdsnap.ValidateID(req.GetSnapshotId()); err != nil {
		return nil, toStatus(err)
	}
	if req.GetSha256() == "" {
		return nil, status.Error(codes.InvalidArgument, "the expected sha256 of the snapshot is required")
	}
	m := req.GetMembership()
	res, err := etcdsnap.Restore(etcdsnap.RestoreRequest{
		SnapshotPath: s.snapshots().Path(req.GetSnapshotId()),
		SHA256:       req.GetSha256(),
		DataDir:      s.cfg.EtcdDataDir,
		OperationID:  req.GetHeader().GetOperationId(),
		Membership: etcdsnap.Membership{
			Name: m.GetMemberName(), PeerURLs: m.GetPeerUrls(),
			InitialCluster: m.GetInitialCluster(), ClusterToken: m.GetClusterToken(),
		},
		BumpRevision:  req.GetBumpRevision(),
		MarkCompacted: req.GetMarkCompacted(),
	})
	if err != nil {
		return nil, toStatus(err)
	}
	s.cfg.Logger.InfoContext(ctx, "snapshot restored", "cluster", s.cfg.Cluster, "op", req.GetHeader().GetOperationId(),
		"dataDir", res.DataDir, "previous", res.PreviousDataDir, "revision", res.Revision)
	return &agentv1.RestoreSnapshotResponse{DataDir: res.DataDir, PreviousDataDir: res.PreviousDataDir, Revision: res.Revision}, nil
}

func (s *service) CommitRestore(ctx context.Context, req *agentv1.CommitRestoreRequest) (*agentv1.CommitRestoreResponse, error) {
	removed, err := etcdsnap.Commit(s.cfg.EtcdDataDir)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &agentv1.CommitRestoreResponse{}
	if len(removed) > 0 {
		resp.RemovedDataDir = removed[0]
	}
	return resp, nil
}

func (s *service) AddEtcdMember(ctx context.Context, req *agentv1.AddEtcdMemberRequest) (*agentv1.AddEtcdMemberResponse, error) {
	if len(req.GetPeerUrls()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "peer URLs of the new member are required")
	}
	for _, u := range req.GetPeerUrls() {
		if _, err := etcdsnap.ParseInitialCluster("new=" + u); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "peer URL %q: %v", u, err)
		}
	}
	var resp *agentv1.AddEtcdMemberResponse
	err := s.withEtcd(ctx, func(cli *clientv3.Client) error {
		added, members, err := etcd.AddLearner(ctx, cli, req.GetPeerUrls())
		resp = &agentv1.AddEtcdMemberResponse{Member: memberToProto(added), Members: membersToProto(members)}
		return err
	})
	return resp, err
}

func (s *service) PromoteEtcdMember(ctx context.Context, req *agentv1.PromoteEtcdMemberRequest) (*agentv1.PromoteEtcdMemberResponse, error) {
	var resp *agentv1.PromoteEtcdMemberResponse
	err := s.withEtcd(ctx, func(cli *clientv3.Client) error {
		members, err := etcd.Promote(ctx, cli, req.GetMemberId())
		resp = &agentv1.PromoteEtcdMemberResponse{Members: membersToProto(members)}
		return err
	})
	return resp, err
}

func (s *service) RemoveEtcdMember(ctx context.Context, req *agentv1.RemoveEtcdMemberRequest) (*agentv1.RemoveEtcdMemberResponse, error) {
	var resp *agentv1.RemoveEtcdMemberResponse
	err := s.withEtcd(ctx, func(cli *clientv3.Client) error {
		members, err := etcd.Remove(ctx, cli, req.GetMemberId())
		resp = &agentv1.RemoveEtcdMemberResponse{Members: membersToProto(members)}
		return err
	})
	return resp, err
}

func (s *service) MoveEtcdLeader(ctx context.Context, req *agentv1.MoveEtcdLeaderRequest) (*agentv1.MoveEtcdLeaderResponse, error) {
	var resp *agentv1.MoveEtcdLeaderResponse
	err := s.withEtcd(ctx, func(cli *clientv3.Client) error {
		leader, err := etcd.MoveLeader(ctx, s.cfg.Etcd, cli, req.GetTargetMemberId())
		resp = &agentv1.MoveEtcdLeaderResponse{LeaderId: leader}
		return err
	})
	return resp, err
}

// withEtcd dials the local member, runs f and maps its error.
func (s *service) withEtcd(ctx context.Context, f func(*clientv3.Client) error) error {
	cli, err := s.cfg.Etcd.Dial(ctx)
	if err != nil {
		return toStatus(err)
	}
	defer cli.Close()
	return toStatus(f(cli))
}

func trailerToProto(t etcdsnap.Trailer) *agentv1.SnapshotTrailer {
	return &agentv1.SnapshotTrailer{Sha256: t.SHA256, SizeBytes: t.Size, Revision: t.Revision, EtcdVersion: t.EtcdVersion}
}

func memberToProto(m etcd.Member) *agentv1.EtcdMember {
	return &agentv1.EtcdMember{Id: m.ID, Name: m.Name, PeerUrls: m.PeerURLs, ClientUrls: m.ClientURLs, IsLearner: m.IsLearner}
}

func membersToProto(ms []etcd.Member) []*agentv1.EtcdMember {
	out := make([]*agentv1.EtcdMember, 0, len(ms))
	for _, m := range ms {
		out = append(out, memberToProto(m))
	}
	return out
}
