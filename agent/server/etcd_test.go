package server_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.etcd.io/etcd/api/v3/version"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/triad-k8s/triad/agent/etcd"
	"github.com/triad-k8s/triad/agent/etcd/etcdtest"
	"github.com/triad-k8s/triad/agent/etcdsnap/etcdsnaptest"
	"github.com/triad-k8s/triad/agent/server"
	agentv1 "github.com/triad-k8s/triad/proto/triad/agent/v1"
)

// etcdNode is an agent in front of a real embedded etcd member.
type etcdNode struct {
	client  agentv1.AgentServiceClient
	dataDir string
}

func startEtcdNode(t *testing.T, p testPKI, ip string) etcdNode {
	t.Helper()
	dataDir := filepath.Join(t.TempDir(), "etcd")
	_, m := etcdtest.StartSingle(t, etcdtest.Member{Name: "cp-0", IP: ip, DataDir: dataDir})
	cli := etcdtest.Client(t, m.ClientURL())
	for _, k := range []string{"/registry/a", "/registry/b", "/registry/c"} {
		if _, err := cli.Put(t.Context(), k, "v"); err != nil {
			t.Fatal(err)
		}
	}
	addr, _ := startAgentWith(t, server.Config{
		Cluster: cluster, NodeName: "cp-0", StateDir: t.TempDir(), TLS: p.agent,
		EtcdDataDir: dataDir, Etcd: etcd.Config{Endpoint: m.ClientURL()},
	})
	return etcdNode{client: dial(t, addr, p.coordinator), dataDir: dataDir}
}

// takeSnapshot streams a snapshot and returns the data and the trailer.
func takeSnapshot(t *testing.T, c agentv1.AgentServiceClient) ([]byte, *agentv1.SnapshotTrailer) {
	t.Helper()
	stream, err := c.TakeSnapshot(ctx(t), &agentv1.TakeSnapshotRequest{Header: header(1), ChunkSizeBytes: 8192})
	if err != nil {
		t.Fatal(err)
	}
	var data []byte
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			t.Fatal("stream ended without a trailer")
		}
		if err != nil {
			t.Fatalf("TakeSnapshot: %v", err)
		}
		if tr := msg.GetTrailer(); tr != nil {
			return data, tr
		}
		data = append(data, msg.GetData()...)
	}
}

func upload(t *testing.T, c agentv1.AgentServiceClient, id string, data []byte, tr *agentv1.SnapshotTrailer) (*agentv1.UploadSnapshotResponse, error) {
	t.Helper()
	stream, err := c.UploadSnapshot(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	msgs := []*agentv1.UploadSnapshotRequest{{Msg: &agentv1.UploadSnapshotRequest_Metadata{Metadata: &agentv1.SnapshotUploadMetadata{Header: header(1), SnapshotId: id}}}}
	for len(data) > 0 {
		n := min(10000, len(data))
		msgs = append(msgs, &agentv1.UploadSnapshotRequest{Msg: &agentv1.UploadSnapshotRequest_Data{Data: data[:n]}})
		data = data[n:]
	}
	msgs = append(msgs, &agentv1.UploadSnapshotRequest{Msg: &agentv1.UploadSnapshotRequest_Trailer{Trailer: tr}})
	for _, m := range msgs {
		if err := stream.Send(m); err != nil {
			break // the server ended the stream; CloseAndRecv says why
		}
	}
	return stream.CloseAndRecv()
}

func TestEtcdSnapshotTravelsFromOneAgentToAnotherAndRestoresOnce(t *testing.T) {
	p := newTestPKI(t)
	src := startEtcdNode(t, p, "127.0.0.31")

	st, err := src.client.GetEtcdStatus(ctx(t), &agentv1.GetEtcdStatusRequest{})
	if err != nil {
		t.Fatalf("GetEtcdStatus: %v", err)
	}
	if !st.GetHealthy() || len(st.GetMembers()) != 1 || st.GetRevision() < 4 || st.GetLeaderId() == 0 {
		t.Fatalf("status of a healthy single member: %v", st)
	}

	data, tr := takeSnapshot(t, src.client)
	sum := sha256.Sum256(data)
	if tr.GetSha256() != hex.EncodeToString(sum[:]) || tr.GetSizeBytes() != int64(len(data)) {
		t.Fatalf("trailer %v does not describe the %d bytes received", tr, len(data))
	}
	if tr.GetRevision() != st.GetRevision() {
		t.Errorf("snapshot revision %d, status revision %d", tr.GetRevision(), st.GetRevision())
	}

	// The destination node has no etcd yet, only a data directory to fill.
	dstDataDir := filepath.Join(t.TempDir(), "etcd")
	addr, _ := startAgentWith(t, server.Config{Cluster: cluster, NodeName: "cp-a", StateDir: t.TempDir(), TLS: p.agent, EtcdDataDir: dstDataDir})
	dst := dial(t, addr, p.coordinator)
	up, err := upload(t, dst, "op-1-snap", data, tr)
	if err != nil {
		t.Fatalf("UploadSnapshot: %v", err)
	}
	if up.GetSha256() != tr.GetSha256() {
		t.Fatalf("stored sha256 %s, sent %s", up.GetSha256(), tr.GetSha256())
	}

	req := &agentv1.RestoreSnapshotRequest{
		Header: header(1), SnapshotId: "op-1-snap", Sha256: tr.GetSha256(),
		Membership: &agentv1.EtcdMembership{
			MemberName: "cp-a", PeerUrls: []string{"https://127.0.0.41:2380"},
			InitialCluster: "cp-a=https://127.0.0.41:2380,cp-b=https://127.0.0.42:2380,cp-c=https://127.0.0.43:2380",
			ClusterToken:   "triad-op-1",
		},
	}
	first, err := dst.RestoreSnapshot(ctx(t), req)
	if err != nil {
		t.Fatalf("RestoreSnapshot: %v", err)
	}
	if first.GetRevision() != tr.GetRevision() || first.GetDataDir() != dstDataDir {
		t.Fatalf("RestoreSnapshot = %v", first)
	}
	// A coordinator that lost the reply retries, even after a takeover with
	// a higher epoch: the agent answers with the first result and does not
	// restore again (which would move the restored data aside).
	req.Header = header(2)
	again, err := dst.RestoreSnapshot(ctx(t), req)
	if err != nil {
		t.Fatalf("retried RestoreSnapshot: %v", err)
	}
	if !proto.Equal(first, again) {
		t.Errorf("retry returned %v, first call %v", again, first)
	}
	if moved, _ := filepath.Glob(filepath.Join(dstDataDir, ".triad-previous-*")); len(moved) != 0 {
		t.Errorf("the retry restored a second time, moving %v aside", moved)
	}
}

func TestBadSnapshotRequestsAreRefusedAndChangeNothing(t *testing.T) {
	p := newTestPKI(t)
	src := startEtcdNode(t, p, "127.0.0.32")
	data, tr := takeSnapshot(t, src.client)
	membership := &agentv1.EtcdMembership{MemberName: "cp-0", PeerUrls: []string{"https://127.0.0.32:2380"}, InitialCluster: "cp-0=https://127.0.0.32:2380", ClusterToken: "new"}
	if _, err := upload(t, src.client, "good", data, tr); err != nil {
		t.Fatal(err)
	}

	t.Run("an upload whose bytes do not match its trailer", func(t *testing.T) {
		bad := proto.Clone(tr).(*agentv1.SnapshotTrailer)
		bad.Sha256 = hex.EncodeToString(make([]byte, 32))
		_, err := upload(t, src.client, "mismatch", data, bad)
		if status.Code(err) != codes.DataLoss {
			t.Fatalf("got %v, want DataLoss", err)
		}
	})
	cases := []struct {
		name string
		req  *agentv1.RestoreSnapshotRequest
		want codes.Code
	}{
		{"a snapshot id with a path", &agentv1.RestoreSnapshotRequest{Header: header(1), SnapshotId: "../../etc/passwd", Sha256: tr.GetSha256(), Membership: membership}, codes.InvalidArgument},
		{"an unknown snapshot", &agentv1.RestoreSnapshotRequest{Header: header(1), SnapshotId: "mismatch", Sha256: tr.GetSha256(), Membership: membership}, codes.NotFound},
		{"a wrong expected hash", &agentv1.RestoreSnapshotRequest{Header: header(1), SnapshotId: "good", Sha256: hex.EncodeToString(make([]byte, 32)), Membership: membership}, codes.DataLoss},
		{"a membership without a new token", &agentv1.RestoreSnapshotRequest{Header: header(1), SnapshotId: "good", Sha256: tr.GetSha256(), Membership: &agentv1.EtcdMembership{MemberName: "cp-0", PeerUrls: membership.PeerUrls, InitialCluster: membership.InitialCluster}}, codes.InvalidArgument},
		{"another cluster", &agentv1.RestoreSnapshotRequest{Header: &agentv1.RequestHeader{OperationId: "op", Epoch: 1, Cluster: "other"}, SnapshotId: "good", Sha256: tr.GetSha256(), Membership: membership}, codes.FailedPrecondition},
		{"the live data directory of a running etcd", &agentv1.RestoreSnapshotRequest{Header: header(1), SnapshotId: "good", Sha256: tr.GetSha256(), Membership: membership}, codes.FailedPrecondition},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := src.client.RestoreSnapshot(ctx(t), tc.req)
			if status.Code(err) != tc.want {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if moved, _ := filepath.Glob(src.dataDir + ".triad-*"); len(moved) != 0 {
				t.Errorf("refused restore left %v", moved)
			}
			if _, err := os.Stat(filepath.Join(src.dataDir, "member", "snap", "db")); err != nil {
				t.Errorf("live data directory damaged: %v", err)
			}
		})
	}
	t.Run("a stale epoch", func(t *testing.T) {
		if _, err := src.client.SetGate(ctx(t), &agentv1.SetGateRequest{Header: header(5)}); err != nil {
			t.Fatal(err)
		}
		_, err := src.client.RestoreSnapshot(ctx(t), &agentv1.RestoreSnapshotRequest{Header: header(4), SnapshotId: "good", Sha256: tr.GetSha256(), Membership: membership})
		if status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("got %v, want FailedPrecondition", err)
		}
	})
	st, err := src.client.GetEtcdStatus(ctx(t), &agentv1.GetEtcdStatusRequest{})
	if err != nil || !st.GetHealthy() {
		t.Fatalf("etcd unhealthy after refused requests: %v %v", st, err)
	}
}

func TestASnapshotOfANewerEtcdIsRefusedWithFailedPreconditionAndChangesNothing(t *testing.T) {
	p := newTestPKI(t)
	src := startEtcdNode(t, p, "127.0.0.33")
	data, _ := takeSnapshot(t, src.client)
	newer := etcdsnaptest.WithStorageVersion(t, data, "3.7.0")
	sum := sha256.Sum256(newer)
	tr := &agentv1.SnapshotTrailer{Sha256: hex.EncodeToString(sum[:]), SizeBytes: int64(len(newer))}

	dstDataDir := filepath.Join(t.TempDir(), "etcd")
	if err := os.MkdirAll(filepath.Join(dstDataDir, "member"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dstDataDir, "member", "marker"), []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr, _ := startAgentWith(t, server.Config{Cluster: cluster, NodeName: "cp-a", StateDir: t.TempDir(), TLS: p.agent, EtcdDataDir: dstDataDir})
	dst := dial(t, addr, p.coordinator)
	if _, err := upload(t, dst, "newer", newer, tr); err != nil {
		t.Fatalf("UploadSnapshot: %v", err)
	}
	_, err := dst.RestoreSnapshot(ctx(t), &agentv1.RestoreSnapshotRequest{
		Header: header(1), SnapshotId: "newer", Sha256: tr.GetSha256(),
		Membership: &agentv1.EtcdMembership{MemberName: "cp-a", PeerUrls: []string{"https://127.0.0.41:2380"}, InitialCluster: "cp-a=https://127.0.0.41:2380", ClusterToken: "new"},
	})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("got %v, want FailedPrecondition", err)
	}
	for _, want := range []string{`"3.7.0"`, version.Version} {
		if !strings.Contains(status.Convert(err).Message(), want) {
			t.Errorf("message %q does not name %s", status.Convert(err).Message(), want)
		}
	}
	entries, _ := os.ReadDir(dstDataDir)
	member, _ := os.ReadDir(filepath.Join(dstDataDir, "member"))
	if len(entries) != 1 || len(member) != 1 || member[0].Name() != "marker" {
		t.Errorf("refused restore changed the data directory: %v, member/ %v", entries, member)
	}
}

func TestHealthCarriesTheLocalMembersViewOfEtcd(t *testing.T) {
	p := newTestPKI(t)
	node := startEtcdNode(t, p, "127.0.0.1")
	h, err := node.client.GetHealth(ctx(t), &agentv1.GetHealthRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got := h.GetHealth()
	if got.GetEtcdMemberId() == 0 || got.GetEtcdLeaderId() != got.GetEtcdMemberId() || len(got.GetEtcdMembers()) != 1 ||
		got.GetEtcdMembers()[0].GetName() != "cp-0" || got.GetEtcdDbSizeBytes() <= 0 {
		t.Fatalf("health = member %x, leader %x, members %v, db %d", got.GetEtcdMemberId(), got.GetEtcdLeaderId(), got.GetEtcdMembers(), got.GetEtcdDbSizeBytes())
	}
}
