// Package server assembles triad-agent's gRPC server: mutual TLS, the
// interceptor chain (logging, panic recovery, role-based authorization,
// fencing) and the AgentService implementation. It owns no node state itself;
// each capability lives in its own package (gate, fencing, ...).
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	agentauth "github.com/triad-k8s/triad/agent/auth"
	"github.com/triad-k8s/triad/agent/bootdata"
	"github.com/triad-k8s/triad/agent/etcd"
	"github.com/triad-k8s/triad/agent/fencing"
	"github.com/triad-k8s/triad/agent/gate"
	"github.com/triad-k8s/triad/agent/health"
	"github.com/triad-k8s/triad/agent/opjournal"
	"github.com/triad-k8s/triad/agent/staticpods"
	agentv1 "github.com/triad-k8s/triad/proto/triad/agent/v1"
)

// Version is the agent build version, set at link time.
var Version = "dev"

// Config configures an agent server.
type Config struct {
	// Cluster is the cluster this agent belongs to.
	Cluster string
	// NodeName is the Kubernetes node name of this control-plane node.
	NodeName string
	// StateDir holds the agent's own state (fencing epochs, gate).
	StateDir string
	// ManifestDir is the kubelet's static-pod manifest directory.
	ManifestDir string
	// ParkedDir is where triad parks stopped manifests.
	ParkedDir string
	// EtcdDataDir is etcd's data directory, as named in its manifest.
	EtcdDataDir string
	// PKIDir is kubeadm's PKI directory (/etc/kubernetes/pki).
	PKIDir string
	// Etcd says how to reach the local etcd member.
	Etcd etcd.Config
	// SnapshotDir holds received snapshots and the spool of outgoing ones;
	// defaults to StateDir/snapshots.
	SnapshotDir string
	// APIServerURL is the local kube-apiserver, e.g. https://127.0.0.1:6443;
	// empty means the node has none to probe.
	APIServerURL string
	// APIServerCAFile is the cluster CA that signs its serving certificate.
	APIServerCAFile string
	// CRIEndpoint is the container runtime's CRI socket.
	CRIEndpoint string
	// ProbeHost, if set, replaces loopback hosts in the components' health
	// probe URLs (the local cloud's VM address stands in for localhost).
	ProbeHost string
	// Hold names static pods to park whenever the agent starts, before
	// the kubelet runs them (a flag).
	Hold []string
	// BootData is the VM's boot data, if it has any: its HoldStaticPods
	// are parked at the first start only, recorded in StateDir's ledger.
	BootData *bootdata.Data
	// Runtime overrides the CRI runtime (tests).
	Runtime staticpods.Runtime
	// TLS is the agent's serving certificate and triad's CA.
	TLS agentauth.TLSFiles
	// Logger receives structured logs.
	Logger *slog.Logger
}

// Server is a configured agent, ready to serve.
type Server struct {
	grpc    *grpc.Server
	journal *opjournal.Journal
	svc     *service
	tls     *tls.Config
}

// GatePath is the load balancers' health-check path.
const GatePath = "/gate"

// GateServer returns the HTTPS server of the load balancers' health check
// (GatePath). It presents the agent's certificate and asks for no client
// certificate: cloud health checkers have none.
func (s *Server) GateServer() *http.Server {
	mux := http.NewServeMux()
	mux.Handle(GatePath, gate.Handler(s.svc.gate, s.svc.apiserverReady))
	cfg := s.tls.Clone()
	cfg.ClientAuth = tls.NoClientCert
	cfg.ClientCAs = nil
	cfg.MinVersion = tls.VersionTLS12 // some cloud health checkers stop at 1.2
	return &http.Server{Handler: mux, TLSConfig: cfg, ReadHeaderTimeout: 5 * time.Second}
}

// New validates cfg, opens the agent's persistent state and builds the gRPC
// server. It does not listen.
func New(cfg Config) (*Server, error) {
	if err := agentauth.ValidateClusterName(cfg.Cluster); err != nil {
		return nil, err
	}
	if cfg.StateDir == "" {
		return nil, fmt.Errorf("state directory is required")
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating state directory: %w", err)
	}
	if cfg.SnapshotDir == "" {
		cfg.SnapshotDir = filepath.Join(cfg.StateDir, "snapshots")
	}
	if cfg.Logger == nil {
		cfg.Logger = discardLogger()
	}
	tlsCfg, err := agentauth.ServerTLSConfig(cfg.TLS)
	if err != nil {
		return nil, err
	}
	if err := checkServesCluster(tlsCfg, cfg.Cluster); err != nil {
		return nil, err
	}
	fence, err := fencing.Open(cfg.StateDir, cfg.Cluster)
	if err != nil {
		return nil, err
	}
	g, err := gate.Open(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	journal, err := opjournal.Open(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	unary, stream := interceptors(cfg.Logger, fence, journal)
	gs := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(tlsCfg)),
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
	)
	rt := cfg.Runtime
	if rt == nil {
		rt = &staticpods.LazyCRIRuntime{Endpoint: cfg.CRIEndpoint, NodeName: cfg.NodeName}
	}
	pods := &staticpods.Manager{ManifestDir: cfg.ManifestDir, ParkedDir: cfg.ParkedDir, Runtime: rt, Prober: staticpods.NewHTTPProber(cfg.ProbeHost)}
	if err := holdAtStart(pods, cfg); err != nil {
		journal.Close()
		return nil, err
	}
	svc := &service{cfg: cfg, fence: fence, gate: g, pods: pods}
	if cfg.APIServerURL != "" {
		if svc.apiserver, err = health.NewAPIServer(cfg.APIServerURL, cfg.APIServerCAFile); err != nil {
			journal.Close()
			return nil, err
		}
	}
	agentv1.RegisterAgentServiceServer(gs, svc)
	return &Server{grpc: gs, journal: journal, svc: svc, tls: tlsCfg}, nil
}

// holdAtStart parks the pods the VM was booted to hold, the boot data's
// only once. A name without a manifest is logged, not fatal: the agent must
// come up to be repaired.
func holdAtStart(pods *staticpods.Manager, cfg Config) error {
	hold := slices.Clone(cfg.Hold)
	ledger := bootdata.OpenLedger(cfg.StateDir)
	bd := cfg.BootData
	if bd != nil {
		applied, at, err := ledger.Applied(bd.ID)
		switch {
		case err != nil:
			return err
		case applied:
			cfg.Logger.Info("boot data already applied: static pods run as the kubelet finds them", "bootData", bd.ID, "appliedAt", at.Format(time.RFC3339))
			bd = nil
		case bd.ID == "":
			cfg.Logger.Warn("boot data has no id: it applies at every start", "holdStaticPods", bd.HoldStaticPods)
			hold = append(hold, bd.HoldStaticPods...)
		default:
			hold = append(hold, bd.HoldStaticPods...)
		}
	}
	if err := park(pods, cfg, hold); err != nil {
		return err
	}
	if bd != nil {
		if err := ledger.Record(bd.ID, time.Now()); err != nil {
			return err
		}
		if bd.ID != "" {
			cfg.Logger.Info("boot data applied", "bootData", bd.ID, "held", bd.HoldStaticPods)
		}
	}
	return nil
}

func park(pods *staticpods.Manager, cfg Config, hold []string) error {
	for _, name := range hold {
		err := pods.Park([]string{name})
		switch {
		case err == nil:
			cfg.Logger.Info("holding static pod", "cluster", cfg.Cluster, "pod", name)
		case errors.Is(err, staticpods.ErrUnknownPod):
			cfg.Logger.Warn("asked to hold a static pod that has no manifest", "cluster", cfg.Cluster, "pod", name)
		default:
			return fmt.Errorf("holding static pod %q: %w", name, err)
		}
	}
	return nil
}

// checkServesCluster refuses to start with a serving certificate that
// coordinators of the cluster would reject, so the mistake shows at start and
// not as a handshake error on the coordinator side.
func checkServesCluster(cfg *tls.Config, cluster string) error {
	leaf := cfg.Certificates[0].Leaf
	if leaf == nil {
		return fmt.Errorf("serving certificate could not be parsed")
	}
	role, err := agentauth.RoleFromCertificate(leaf)
	if err != nil {
		return fmt.Errorf("serving certificate: %w", err)
	}
	if role != agentauth.RoleAgent {
		return fmt.Errorf("serving certificate has role %q; issue one with 'triad pki issue agent --cluster %s'", role, cluster)
	}
	if err := leaf.VerifyHostname(agentauth.AgentServerName(cluster)); err != nil {
		return fmt.Errorf("serving certificate is not for cluster %q: %w", cluster, err)
	}
	return nil
}

// Serve serves on l until Stop or GracefulStop.
func (s *Server) Serve(l net.Listener) error { return s.grpc.Serve(l) }

// GracefulStop stops accepting calls, waits for running ones to finish and
// closes the agent's state files.
func (s *Server) GracefulStop() {
	s.grpc.GracefulStop()
	s.journal.Close()
}

// Stop closes every connection at once and the agent's state files.
func (s *Server) Stop() {
	s.grpc.Stop()
	s.journal.Close()
}

// service implements AgentService. RPCs not listed here answer Unimplemented
// until their capability lands (see README, "Status").
type service struct {
	agentv1.UnimplementedAgentServiceServer
	cfg       Config
	fence     *fencing.Store
	gate      *gate.Gate
	pods      *staticpods.Manager
	apiserver *health.APIServer
}

// apiserverReady reports whether the local kube-apiserver answers /readyz.
func (s *service) apiserverReady(ctx context.Context) error {
	if s.apiserver == nil {
		return errors.New("no kube-apiserver configured on this node")
	}
	return s.apiserver.Ready(ctx)
}

func (s *service) GetInfo(ctx context.Context, _ *agentv1.GetInfoRequest) (*agentv1.GetInfoResponse, error) {
	return &agentv1.GetInfoResponse{
		Cluster:      s.cfg.Cluster,
		NodeName:     s.cfg.NodeName,
		AgentVersion: Version,
		ManifestDir:  s.cfg.ManifestDir,
		ParkedDir:    s.cfg.ParkedDir,
		EtcdDataDir:  s.cfg.EtcdDataDir,
		HighestEpoch: s.fence.Highest(),
		Kubeconfigs:  kubeconfigServers(s.kubeconfigDir()),
	}, nil
}

func (s *service) GetGate(ctx context.Context, _ *agentv1.GetGateRequest) (*agentv1.GetGateResponse, error) {
	st := s.gate.State()
	resp := &agentv1.GetGateResponse{Open: st.Open, Serving: st.Open && s.apiserverReady(ctx) == nil}
	if !st.ChangedAt.IsZero() {
		resp.ChangedAt = timestamppb.New(st.ChangedAt)
	}
	return resp, nil
}

func (s *service) SetGate(ctx context.Context, req *agentv1.SetGateRequest) (*agentv1.SetGateResponse, error) {
	changed, err := s.gate.Set(req.GetOpen())
	if err != nil {
		return nil, status.Errorf(codes.Internal, "setting gate: %v", err)
	}
	s.cfg.Logger.InfoContext(ctx, "gate set", "cluster", s.cfg.Cluster, "op", req.GetHeader().GetOperationId(), "open", req.GetOpen(), "changed", changed)
	return &agentv1.SetGateResponse{Open: req.GetOpen(), Changed: changed}, nil
}
