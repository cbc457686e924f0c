package server_test

import (
	"context"
	"crypto/tls"
	"net"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	agentauth "github.com/triad-k8s/triad/agent/auth"
	"github.com/triad-k8s/triad/agent/server"
	"github.com/triad-k8s/triad/coordinator/agentclient"
	"github.com/triad-k8s/triad/coordinator/pki"
	agentv1 "github.com/triad-k8s/triad/proto/triad/agent/v1"
)

const cluster = "prod-eu1"

// testPKI is one CA with an agent, a coordinator and an observer certificate.
type testPKI struct {
	dir                          pki.Dir
	agent, coordinator, observer agentauth.TLSFiles
}

func newTestPKI(t testing.TB) testPKI {
	t.Helper()
	d := pki.Dir{Path: t.TempDir()}
	if _, err := d.Init("test-ca", 0); err != nil {
		t.Fatal(err)
	}
	files := func(role agentauth.Role, name string) agentauth.TLSFiles {
		iss, err := d.Issue(pki.IssueRequest{Role: role, Name: name})
		if err != nil {
			t.Fatal(err)
		}
		return agentauth.TLSFiles{CertFile: iss.CertFile, KeyFile: iss.KeyFile, CAFile: iss.CAFile}
	}
	return testPKI{
		dir:         d,
		agent:       files(agentauth.RoleAgent, cluster),
		coordinator: files(agentauth.RoleCoordinator, "ci"),
		observer:    files(agentauth.RoleObserver, "dashboards"),
	}
}

// startAgent serves a real agent on a loopback port and returns its address.
func startAgent(t *testing.T, p testPKI, stateDir string) string {
	t.Helper()
	addr, _ := startAgentWith(t, server.Config{Cluster: cluster, NodeName: "cp-0", StateDir: stateDir, TLS: p.agent})
	return addr
}

// startAgentWith serves a real agent with cfg and returns its address and
// server.
func startAgentWith(t testing.TB, cfg server.Config) (string, *server.Server) {
	t.Helper()
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	return l.Addr().String(), srv
}

func dial(t testing.TB, addr string, files agentauth.TLSFiles) *agentclient.Client {
	t.Helper()
	c, err := agentclient.Dial(addr, cluster, files)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func header(epoch uint64) *agentv1.RequestHeader {
	return &agentv1.RequestHeader{OperationId: "op-1", Epoch: epoch, Cluster: cluster}
}

func TestCoordinatorCertificateMayReadAndMutate(t *testing.T) {
	p := newTestPKI(t)
	c := dial(t, startAgent(t, p, t.TempDir()), p.coordinator)

	info, err := c.GetInfo(ctx(t), &agentv1.GetInfoRequest{})
	if err != nil {
		t.Fatalf("GetInfo: %v", err)
	}
	if info.GetCluster() != cluster || info.GetNodeName() != "cp-0" {
		t.Errorf("GetInfo = %v, want cluster %q node cp-0", info, cluster)
	}
	set, err := c.SetGate(ctx(t), &agentv1.SetGateRequest{Header: header(1), Open: true})
	if err != nil {
		t.Fatalf("SetGate: %v", err)
	}
	if !set.GetOpen() || !set.GetChanged() {
		t.Errorf("SetGate = %v, want open and changed", set)
	}
	got, err := c.GetGate(ctx(t), &agentv1.GetGateRequest{})
	if err != nil {
		t.Fatalf("GetGate: %v", err)
	}
	if !got.GetOpen() || got.GetChangedAt() == nil {
		t.Errorf("GetGate = %v, want open with a change time", got)
	}
}

func TestObserverMayReadButNotMutate(t *testing.T) {
	p := newTestPKI(t)
	c := dial(t, startAgent(t, p, t.TempDir()), p.observer)

	if _, err := c.GetGate(ctx(t), &agentv1.GetGateRequest{}); err != nil {
		t.Fatalf("observer GetGate: %v", err)
	}
	_, err := c.SetGate(ctx(t), &agentv1.SetGateRequest{Header: header(1), Open: true})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("observer SetGate: got %v, want PermissionDenied", err)
	}
	// A denied call must not have reached the fencing store or the gate.
	info, err := c.GetInfo(ctx(t), &agentv1.GetInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if info.GetHighestEpoch() != 0 {
		t.Errorf("denied call recorded epoch %d", info.GetHighestEpoch())
	}
	g, err := c.GetGate(ctx(t), &agentv1.GetGateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if g.GetOpen() {
		t.Error("denied SetGate opened the gate")
	}
}

func TestObserverStreamingMutationIsDenied(t *testing.T) {
	p := newTestPKI(t)
	c := dial(t, startAgent(t, p, t.TempDir()), p.observer)
	stream, err := c.TakeSnapshot(ctx(t), &agentv1.TakeSnapshotRequest{Header: header(1)})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("observer TakeSnapshot: got %v, want PermissionDenied", err)
	}
}

func TestFencingRefusesStaleEpochAcrossRestarts(t *testing.T) {
	p := newTestPKI(t)
	state := t.TempDir()
	addr, first := startAgentWith(t, server.Config{Cluster: cluster, NodeName: "cp-0", StateDir: state, TLS: p.agent})
	c := dial(t, addr, p.coordinator)

	if _, err := c.SetGate(ctx(t), &agentv1.SetGateRequest{Header: header(7), Open: true}); err != nil {
		t.Fatalf("epoch 7: %v", err)
	}
	if _, err := c.SetGate(ctx(t), &agentv1.SetGateRequest{Header: header(7), Open: true}); err != nil {
		t.Fatalf("same epoch again: %v", err)
	}
	_, err := c.SetGate(ctx(t), &agentv1.SetGateRequest{Header: header(6), Open: false})
	if status.Code(err) != codes.FailedPrecondition || !agentclient.Fenced(err) || agentclient.WrongCluster(err) {
		t.Fatalf("epoch 6 after 7: got %v, want FailedPrecondition with the stale-epoch reason", err)
	}
	// Another cluster's request: refused with its own reason, not "fenced".
	_, err = c.SetGate(ctx(t), &agentv1.SetGateRequest{Header: &agentv1.RequestHeader{OperationId: "op-x", Epoch: 8, Cluster: "other"}, Open: false})
	if status.Code(err) != codes.FailedPrecondition || agentclient.Fenced(err) || !agentclient.WrongCluster(err) {
		t.Fatalf("another cluster's request: got %v, want FailedPrecondition with the wrong-cluster reason", err)
	}
	// A refusal for any other reason is neither.
	if other := status.Error(codes.FailedPrecondition, "stale epoch: but not from the fencing store"); agentclient.Fenced(other) {
		t.Error("a FailedPrecondition without the detail counts as fenced: text is matched")
	}

	// A new agent process on the same state directory remembers epoch 7.
	first.Stop()
	c2 := dial(t, startAgent(t, p, state), p.coordinator)
	_, err = c2.SetGate(ctx(t), &agentv1.SetGateRequest{Header: header(6), Open: false})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("epoch 6 after restart: got %v, want FailedPrecondition", err)
	}
	g, err := c2.GetGate(ctx(t), &agentv1.GetGateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !g.GetOpen() {
		t.Error("stale request changed the gate, or the gate state did not survive the restart")
	}
}

func TestBadHeadersAreRefusedAndChangeNothing(t *testing.T) {
	p := newTestPKI(t)
	c := dial(t, startAgent(t, p, t.TempDir()), p.coordinator)
	cases := []struct {
		name   string
		header *agentv1.RequestHeader
		want   codes.Code
	}{
		{"a missing header", nil, codes.InvalidArgument},
		{"a zero epoch", &agentv1.RequestHeader{OperationId: "op", Epoch: 0, Cluster: cluster}, codes.InvalidArgument},
		{"an empty operation id", &agentv1.RequestHeader{Epoch: 1, Cluster: cluster}, codes.InvalidArgument},
		{"an operation id with a path", &agentv1.RequestHeader{OperationId: "../x", Epoch: 1, Cluster: cluster}, codes.InvalidArgument},
		{"another cluster", &agentv1.RequestHeader{OperationId: "op", Epoch: 1, Cluster: "other"}, codes.FailedPrecondition},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.SetGate(ctx(t), &agentv1.SetGateRequest{Header: tc.header, Open: true})
			if status.Code(err) != tc.want {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	g, err := c.GetGate(ctx(t), &agentv1.GetGateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if g.GetOpen() {
		t.Error("a refused request opened the gate")
	}
}

func TestCertificateFromAnotherCAIsRefused(t *testing.T) {
	p := newTestPKI(t)
	foreign := newTestPKI(t)
	addr := startAgent(t, p, t.TempDir())

	t.Run("client certificate from another CA", func(t *testing.T) {
		// The client trusts the right CA but presents a foreign certificate.
		files := foreign.coordinator
		files.CAFile = p.dir.CAFile()
		c := dial(t, addr, files)
		_, err := c.GetInfo(ctx(t), &agentv1.GetInfoRequest{})
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("got %v, want the handshake to fail (Unavailable)", err)
		}
	})
	t.Run("agent certificate from another CA", func(t *testing.T) {
		c := dial(t, addr, foreign.coordinator)
		_, err := c.GetInfo(ctx(t), &agentv1.GetInfoRequest{})
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("got %v, want the handshake to fail (Unavailable)", err)
		}
	})
}

func TestConnectionsWithoutMutualTLSFail(t *testing.T) {
	p := newTestPKI(t)
	addr := startAgent(t, p, t.TempDir())

	t.Run("plaintext", func(t *testing.T) {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, err = agentv1.NewAgentServiceClient(conn).GetInfo(ctx(t), &agentv1.GetInfoRequest{})
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("got %v, want Unavailable", err)
		}
	})
	t.Run("TLS without a client certificate", func(t *testing.T) {
		cfg, err := agentauth.ClientTLSConfig(p.coordinator, cluster)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = nil
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, err = agentv1.NewAgentServiceClient(conn).GetInfo(ctx(t), &agentv1.GetInfoRequest{})
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("got %v, want Unavailable", err)
		}
	})
	t.Run("TLS 1.2", func(t *testing.T) {
		cfg, err := agentauth.ClientTLSConfig(p.coordinator, cluster)
		if err != nil {
			t.Fatal(err)
		}
		cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, err = agentv1.NewAgentServiceClient(conn).GetInfo(ctx(t), &agentv1.GetInfoRequest{})
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("got %v, want Unavailable", err)
		}
	})
}

func TestAgentRefusesToStartWithWrongServingCertificate(t *testing.T) {
	p := newTestPKI(t)
	cases := []struct {
		name    string
		cluster string
		tls     agentauth.TLSFiles
	}{
		{"a coordinator certificate", cluster, p.coordinator},
		{"another cluster's agent certificate", "other", p.agent},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := server.New(server.Config{Cluster: tc.cluster, StateDir: t.TempDir(), TLS: tc.tls})
			if err == nil {
				t.Fatal("server started")
			}
		})
	}
}

func TestMissingTLSMaterialIsAClearError(t *testing.T) {
	_, err := server.New(server.Config{Cluster: cluster, StateDir: t.TempDir(), TLS: agentauth.TLSFiles{
		CertFile: filepath.Join(t.TempDir(), "missing.crt"), KeyFile: "k", CAFile: "c",
	}})
	if err == nil {
		t.Fatal("server started without TLS material")
	}
}
