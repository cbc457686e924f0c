// Package cli is the triad-agent command line: flags, logging set-up, signal
// handling. The agent's behaviour lives in agent/server and the capability
// packages.
package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/triad-k8s/triad/agent/auth"
	"github.com/triad-k8s/triad/agent/bootdata"
	"github.com/triad-k8s/triad/agent/nodecerts"
	"github.com/triad-k8s/triad/agent/nodeidentity"
	"github.com/triad-k8s/triad/agent/server"
	"github.com/triad-k8s/triad/agent/staticpods"
)

// Default listen addresses.
const (
	DefaultListenAddress     = ":9443" // gRPC, mutual TLS
	DefaultGateListenAddress = ":9444" // HTTPS health check for load balancers
)

// NewRootCommand builds the triad-agent command.
func NewRootCommand() *cobra.Command {
	cfg := server.Config{}
	var listen, gateListen, logFormat, logLevel, bootData, kubeletKubeconfig, kubeletCertDir, kubeletFlags, machineID string
	var shutdownGrace time.Duration
	cmd := &cobra.Command{
		Use:   "triad-agent --cluster NAME",
		Short: "triad's node agent: the only part of triad that touches a control-plane node",
		Long: `triad-agent runs on every control-plane VM, started before the kubelet. It
serves gRPC over mutual TLS (TLS 1.3, no plaintext mode) to the triad
coordinator: stop and start static pods, take, stream and restore etcd
snapshots, manage etcd membership and node certificates, gate the
kube-apiserver behind the load balancers, and report health.

Callers are authorized per RPC by the role in their client certificate,
issued by 'triad pki': a coordinator may call everything, an observer may only
read health and status. Every mutating call carries a fencing epoch; the
agent persists the highest epoch per cluster in --state-dir and refuses lower
ones, so two coordinators can never interleave.

The serving certificate must be the cluster's agent certificate
('triad pki issue agent --name <cluster>'); the agent refuses to start with
any other.`,
		Example: `  triad-agent --cluster prod-eu1 \
    --tls-cert /etc/triad/pki/agent.crt --tls-key /etc/triad/pki/agent.key \
    --tls-ca /etc/triad/pki/ca.crt`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       server.Version,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := newLogger(logFormat, logLevel)
			if err != nil {
				return err
			}
			cfg.Logger = logger
			if bootData != "" {
				bd, err := bootdata.Read(bootData)
				if err != nil {
					return err
				}
				cfg.BootData = &bd
			}
			hostname, err := os.Hostname()
			if err != nil && cfg.NodeName == "" {
				return fmt.Errorf("--node-name not given and hostname unknown: %w", err)
			}
			// A VM booted with boot data it has not applied yet is new,
			// made from another node's disks: before its kubelet first
			// starts (it is ordered after the agent) it gets a machine id
			// and a node name of its own.
			if fresh, err := firstBoot(cfg); err != nil {
				return err
			} else if fresh {
				changed, err := nodeidentity.Renew(nodeidentity.Renewal{Hostname: hostname, FlagsEnv: kubeletFlags, MachineIDFile: machineID})
				if err != nil {
					return fmt.Errorf("giving this new VM an identity of its own: %w", err)
				}
				logger.Info("new VM: renewed its identity", "bootData", cfg.BootData.ID, "changed", changed)
			}
			if cfg.NodeName == "" {
				name, source, err := nodeidentity.NodeName(kubeletFlags, hostname)
				if err != nil {
					return fmt.Errorf("--node-name not given: %w", err)
				}
				cfg.NodeName = name
				logger.Info("node name derived as the kubelet derives it", "node", name, "from", source)
			}
			// A VM cloned from another node's disks gets a kubelet client
			// certificate (and serving certificate) of its own.
			if changed, err := nodecerts.EnsureKubeletIdentity(nodecerts.KubeletIdentity{
				NodeName: cfg.NodeName, PKIDir: cfg.PKIDir, Kubeconfig: kubeletKubeconfig, CertDir: kubeletCertDir,
			}); err != nil {
				logger.Error("the kubelet may carry another node's identity", "node", cfg.NodeName, "err", err)
			} else if changed {
				logger.Info("issued the kubelet a client certificate of its own", "node", cfg.NodeName, "kubeconfig", kubeletKubeconfig)
			}
			return run(cmd.Context(), cfg, listen, gateListen, shutdownGrace)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Cluster, "cluster", "", "name of the cluster this node belongs to (required)")
	f.StringVar(&cfg.NodeName, "node-name", "", "Kubernetes node name of this node (default: as the kubelet derives it, see --kubelet-flags-env)")
	f.StringVar(&listen, "listen", DefaultListenAddress, "address to serve gRPC on")
	f.StringVar(&gateListen, "gate-listen", DefaultGateListenAddress, "address of the HTTPS load-balancer health check ("+server.GatePath+"); empty disables it")
	f.StringVar(&cfg.APIServerURL, "apiserver-url", "https://127.0.0.1:6443", "the local kube-apiserver, probed for /readyz and /livez")
	f.StringVar(&cfg.APIServerCAFile, "apiserver-ca", "/etc/kubernetes/pki/ca.crt", "cluster CA that signs the kube-apiserver's serving certificate")
	f.StringVar(&cfg.StateDir, "state-dir", "/var/lib/triad-agent", "the agent's own state: fencing epochs, gate, journals")
	f.StringVar(&cfg.ManifestDir, "manifest-dir", "/etc/kubernetes/manifests", "the kubelet's static-pod manifest directory")
	f.StringVar(&cfg.ParkedDir, "parked-dir", "/var/lib/triad-agent/parked-manifests", "where stopped static-pod manifests are parked")
	f.StringVar(&cfg.EtcdDataDir, "etcd-data-dir", "/var/lib/etcd", "etcd data directory")
	f.StringVar(&cfg.PKIDir, "pki-dir", "/etc/kubernetes/pki", "kubeadm's PKI directory; its CA keys sign re-issued node certificates")
	f.StringVar(&kubeletKubeconfig, "kubelet-kubeconfig", "/etc/kubernetes/kubelet.conf", "the kubelet's kubeconfig; at start the agent gives a kubelet that is another node's (a cloned disk) a client certificate of its own")
	f.StringVar(&kubeletCertDir, "kubelet-cert-dir", "/var/lib/kubelet/pki", "the kubelet's certificate directory")
	f.StringVar(&kubeletFlags, "kubelet-flags-env", nodeidentity.KubeadmFlagsEnv, "kubeadm's kubelet flags; its --hostname-override, if any, is the node name (else the lower-cased hostname)")
	f.StringVar(&machineID, "machine-id-file", nodeidentity.MachineIDFile, "the machine id a new VM (first boot with boot data) gets afresh: a cloned disk carries its source's")
	f.StringVar(&cfg.Etcd.Endpoint, "etcd-endpoint", "https://127.0.0.1:2379", "client URL of the local etcd member")
	f.StringVar(&cfg.Etcd.CAFile, "etcd-ca", "/etc/kubernetes/pki/etcd/ca.crt", "etcd CA (kubeadm layout)")
	f.StringVar(&cfg.Etcd.CertFile, "etcd-cert", "/etc/kubernetes/pki/etcd/healthcheck-client.crt", "etcd client certificate (kubeadm layout)")
	f.StringVar(&cfg.Etcd.KeyFile, "etcd-key", "/etc/kubernetes/pki/etcd/healthcheck-client.key", "etcd client key (kubeadm layout)")
	f.StringVar(&cfg.SnapshotDir, "snapshot-dir", "", "where received snapshots are kept, 0600 (default <state-dir>/snapshots)")
	f.StringVar(&cfg.CRIEndpoint, "cri-endpoint", staticpods.DefaultCRIEndpoint, "the container runtime's CRI socket")
	f.StringVar(&cfg.ProbeHost, "probe-host", "", "replace loopback hosts in health probe URLs with this address (local cloud)")
	f.StringSliceVar(&cfg.Hold, "hold", nil, "static pods to park at start, before the kubelet runs them (e.g. etcd,kube-apiserver)")
	f.StringVar(&bootData, "boot-data", "", "JSON boot data from the cloud, e.g. {\"id\":\"op-1/node-a\",\"holdStaticPods\":[\"etcd\"]}: its pods are held at the first start only (recorded in --state-dir), so a reboot or a restart runs them")
	f.StringVar(&cfg.TLS.CertFile, "tls-cert", "/etc/triad/pki/agent.crt", "agent serving certificate")
	f.StringVar(&cfg.TLS.KeyFile, "tls-key", "/etc/triad/pki/agent.key", "agent serving key")
	f.StringVar(&cfg.TLS.CAFile, "tls-ca", "/etc/triad/pki/ca.crt", "triad CA that signs coordinator and observer certificates")
	f.StringVar(&logFormat, "log-format", "json", "log format: json or text")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	f.DurationVar(&shutdownGrace, "shutdown-grace", 30*time.Second, "how long running calls may finish after SIGTERM")
	return cmd
}

// Execute runs the agent and returns the process exit code.
func Execute() int {
	if err := NewRootCommand().Execute(); err != nil {
		fmt.Fprintf(os.Stderr, "triad-agent: %v\n", err)
		return 1
	}
	return 0
}

func run(ctx context.Context, cfg server.Config, listen, gateListen string, grace time.Duration) error {
	if err := auth.ValidateClusterName(cfg.Cluster); err != nil {
		return fmt.Errorf("--cluster: %w", err)
	}
	srv, err := server.New(cfg)
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", listen)
	if err != nil {
		srv.Stop()
		return fmt.Errorf("listening on %s: %w", listen, err)
	}
	served := make(chan error, 2)
	var gate *http.Server
	if gateListen != "" {
		gl, err := net.Listen("tcp", gateListen)
		if err != nil {
			l.Close()
			srv.Stop()
			return fmt.Errorf("listening on %s for the gate: %w", gateListen, err)
		}
		gate = srv.GateServer()
		go func() { served <- gate.ServeTLS(gl, "", "") }()
		cfg.Logger.Info("gate health check serving", "addr", gl.Addr().String(), "path", server.GatePath)
	}
	cfg.Logger.Info("triad-agent serving", "cluster", cfg.Cluster, "node", cfg.NodeName, "addr", l.Addr().String(), "version", server.Version)

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() { served <- srv.Serve(l) }()
	select {
	case err := <-served:
		srv.Stop()
		return err
	case <-ctx.Done():
	}
	cfg.Logger.Info("shutting down", "grace", grace.String())
	if gate != nil {
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
		gate.Shutdown(shutdownCtx)
		cancel()
	}
	done := make(chan struct{})
	go func() { srv.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		srv.Stop()
	}
	return nil
}

// firstBoot reports whether the VM's boot data is yet to be applied: the
// VM is new. Boot data without an id never makes a VM new.
func firstBoot(cfg server.Config) (bool, error) {
	if cfg.BootData == nil || cfg.BootData.ID == "" {
		return false, nil
	}
	applied, _, err := bootdata.OpenLedger(cfg.StateDir).Applied(cfg.BootData.ID)
	return !applied, err
}

func newLogger(format, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	default:
		return nil, fmt.Errorf("--log-format %q: want json or text", format)
	}
}
