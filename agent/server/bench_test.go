package server

import (
	"context"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	agentauth "github.com/triad-k8s/triad/agent/auth"
	"github.com/triad-k8s/triad/agent/fencing"
	"github.com/triad-k8s/triad/agent/gate"
	"github.com/triad-k8s/triad/agent/opjournal"
	"github.com/triad-k8s/triad/coordinator/agentclient"
	"github.com/triad-k8s/triad/coordinator/pki"
	agentv1 "github.com/triad-k8s/triad/proto/triad/agent/v1"
)

// BenchmarkSetGate measures one fenced, authorized SetGate call over mutual
// TLS through the agent's full interceptor chain ("chain"), against the same
// call on the same TLS connection setup with no interceptors ("baseline"), so
// `make bench` can report the cost of auth, fencing and logging as a ratio
// measured in one run.
func BenchmarkSetGate(b *testing.B) {
	d := pki.Dir{Path: b.TempDir()}
	if _, err := d.Init("", 0); err != nil {
		b.Fatal(err)
	}
	issue := func(role agentauth.Role, name string) agentauth.TLSFiles {
		iss, err := d.Issue(pki.IssueRequest{Role: role, Name: name})
		if err != nil {
			b.Fatal(err)
		}
		return agentauth.TLSFiles{CertFile: iss.CertFile, KeyFile: iss.KeyFile, CAFile: iss.CAFile}
	}
	agentFiles, coordFiles := issue(agentauth.RoleAgent, "bench"), issue(agentauth.RoleCoordinator, "bench")

	for _, withChain := range []bool{false, true} {
		name := "baseline"
		if withChain {
			name = "chain"
		}
		b.Run(name, func(b *testing.B) {
			stateDir := b.TempDir()
			tlsCfg, err := agentauth.ServerTLSConfig(agentFiles)
			if err != nil {
				b.Fatal(err)
			}
			fence, err := fencing.Open(stateDir, "bench")
			if err != nil {
				b.Fatal(err)
			}
			g, err := gate.Open(stateDir)
			if err != nil {
				b.Fatal(err)
			}
			opts := []grpc.ServerOption{grpc.Creds(credentials.NewTLS(tlsCfg))}
			if withChain {
				journal, err := opjournal.Open(stateDir)
				if err != nil {
					b.Fatal(err)
				}
				defer journal.Close()
				unary, stream := interceptors(discardLogger(), fence, journal)
				opts = append(opts, grpc.ChainUnaryInterceptor(unary...), grpc.ChainStreamInterceptor(stream...))
			}
			gs := grpc.NewServer(opts...)
			agentv1.RegisterAgentServiceServer(gs, &service{cfg: Config{Cluster: "bench", Logger: discardLogger()}, fence: fence, gate: g})
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			go gs.Serve(l)
			defer gs.Stop()
			c, err := agentclient.Dial(l.Addr().String(), "bench", coordFiles)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			ctx := context.Background()
			req := &agentv1.SetGateRequest{Header: &agentv1.RequestHeader{OperationId: "bench", Epoch: 1, Cluster: "bench"}}
			if _, err := c.SetGate(ctx, req); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				// Alternate so every call persists a gate change.
				req.Open = i%2 == 0
				if _, err := c.SetGate(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
