package controlplane

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	agentauth "github.com/triad-k8s/triad/agent/auth"
	"github.com/triad-k8s/triad/coordinator/config"
	"github.com/triad-k8s/triad/coordinator/pki"
	agentv1 "github.com/triad-k8s/triad/proto/triad/agent/v1"
)

// stuckAgent answers the TLS handshake and then never answers a call, as
// an agent on a VM whose network started dropping everything after the
// connection was made, or an agent wedged behind a lock.
type stuckAgent struct {
	agentv1.UnimplementedAgentServiceServer
	calls atomic.Int32
}

func (s *stuckAgent) GetInfo(ctx context.Context, _ *agentv1.GetInfoRequest) (*agentv1.GetInfoResponse, error) {
	s.calls.Add(1)
	<-ctx.Done()
	return nil, ctx.Err()
}

func (s *stuckAgent) GetHealth(ctx context.Context, _ *agentv1.GetHealthRequest) (*agentv1.GetHealthResponse, error) {
	s.calls.Add(1)
	<-ctx.Done()
	return nil, ctx.Err()
}

// startStuckAgent serves a stuck agent of cluster c1 over mTLS on loopback
// and returns a Cluster that reaches it.
func startStuckAgent(t *testing.T, opts Options) (*Cluster, *stuckAgent, string) {
	t.Helper()
	d := pki.Dir{Path: t.TempDir()}
	if _, err := d.Init("test-ca", 0); err != nil {
		t.Fatal(err)
	}
	agent, err := d.Issue(pki.IssueRequest{Role: agentauth.RoleAgent, Name: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	coord, err := d.Issue(pki.IssueRequest{Role: agentauth.RoleCoordinator, Name: "ci"})
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := agentauth.ServerTLSConfig(agentauth.TLSFiles{CertFile: agent.CertFile, KeyFile: agent.KeyFile, CAFile: agent.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(tlsCfg)))
	stuck := &stuckAgent{}
	agentv1.RegisterAgentServiceServer(srv, stuck)
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	host, port, _ := net.SplitHostPort(l.Addr().String())
	cfg := &config.Cluster{Name: "c1"}
	cfg.Agent.Port, _ = strconv.Atoi(port)
	cfg.Agent.TLS = config.TLS{Cert: coord.CertFile, Key: coord.KeyFile, CA: coord.CAFile}
	c := New(cfg, nil, nil, opts)
	t.Cleanup(c.Close)
	return c, stuck, c.AgentEndpoint(host)
}

// A read of an agent that stopped answering fails within AgentTimeout
// (plus one attempt), naming the wait, instead of holding the operation;
// each attempt is cut at CallTimeout and tried again meanwhile.
func TestAReadOfAStuckAgentFailsInsteadOfHanging(t *testing.T) {
	c, stuck, endpoint := startStuckAgent(t, Options{AgentTimeout: 2 * time.Second, CallTimeout: 500 * time.Millisecond})
	for name, call := range map[string]func(context.Context) error{
		"info":   func(ctx context.Context) error { _, err := c.Info(ctx, endpoint); return err },
		"health": func(ctx context.Context) error { _, err := c.Health(ctx, endpoint); return err },
	} {
		t.Run(name, func(t *testing.T) {
			before := stuck.calls.Load()
			done := make(chan error, 1)
			start := time.Now()
			go func() { done <- call(context.Background()) }()
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), "no answer within 500ms") {
					t.Errorf("error %v, want one naming the per-call wait", err)
				}
				if took := time.Since(start); took > 10*time.Second {
					t.Errorf("took %s", took)
				}
				if n := stuck.calls.Load() - before; n < 2 {
					t.Errorf("%d attempts within the agent timeout, want it retried", n)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("the call to a stuck agent still waits after 30 s")
			}
		})
	}
}

// The caller's own deadline is not taken for the agent's silence: it ends
// the call at once, without a retry.
func TestTheCallersDeadlineEndsTheCall(t *testing.T) {
	c, _, endpoint := startStuckAgent(t, Options{AgentTimeout: time.Minute, CallTimeout: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Info(ctx, endpoint)
	if err == nil || time.Since(start) > 10*time.Second {
		t.Fatalf("err %v after %s", err, time.Since(start))
	}
	if strings.Contains(err.Error(), "no answer within") || !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Errorf("error %v: the caller's deadline was taken for the agent's", err)
	}
}
