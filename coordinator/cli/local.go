package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	agentauth "github.com/triad-k8s/triad/agent/auth"
	"github.com/triad-k8s/triad/cloudplugins/local"
	"github.com/triad-k8s/triad/cloudplugins/local/localcluster"
	"github.com/triad-k8s/triad/cloudplugins/sdk"
	"github.com/triad-k8s/triad/coordinator/config"
	"github.com/triad-k8s/triad/coordinator/controlplane"
	"github.com/triad-k8s/triad/coordinator/pki"
)

func newLocalCommand(g *globals) *cobra.Command {
	var stateDir string
	cmd := &cobra.Command{
		Use:   "local",
		Short: "Manage the embedded local cloud (VMs and load balancers on this machine)",
		Long: `The local cloud is triad's default cloud plugin (it needs root). A VM is its
own host: network, mount and UTS namespaces of its own, one address on a bridge
the local cloud creates, a root and a data disk, a real kubelet on a container
runtime that runs containers as processes. A load balancer is a TCP proxy on
the bridge that health-checks each VM's agent gate; a public address is a
forwarder, as an elastic IP is NAT. VMs and load balancers are long-lived
processes that outlive every triad command; 'triad local vm' and 'triad local
lb' look inside, 'triad local down' removes everything.`,
	}
	cmd.PersistentFlags().StringVar(&stateDir, "state-dir", "", "local cloud state directory (default $XDG_STATE_HOME/triad/localcloud)")
	down := &cobra.Command{
		Use:   "down",
		Short: "Stop every VM, load balancer and forwarder of the local cloud and delete its state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cloud, err := openLocal(stateDir)
			if errors.Is(err, errNoLocalCloud) {
				// Idempotent: a second down, or one after a failed create.
				cfg, _ := local.Config{StateDir: stateDir}.WithDefaults()
				if err := os.RemoveAll(cfg.StateDir); err != nil {
					return err
				}
				return g.print(cmd.OutOrStdout(), map[string]string{"removed": cfg.StateDir}, func(w io.Writer) {
					fmt.Fprintf(w, "no local cloud in %s: nothing to stop\n", cfg.StateDir)
				})
			}
			if err != nil {
				return err
			}
			dir := cloud.StateDir()
			if err := cloud.Down(); err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), map[string]string{"removed": dir}, func(w io.Writer) {
				fmt.Fprintf(w, "local cloud in %s is down: no VM, load balancer or forwarder left\n", dir)
			})
		},
	}
	cmd.AddCommand(down, newLocalClusterCommand(g, &stateDir), newLocalVMCommand(g, &stateDir), newLocalLBCommand(g, &stateDir))
	return cmd
}

func newLocalClusterCommand(g *globals, stateDir *string) *cobra.Command {
	opts := localcluster.Options{}
	var kubeconfig, clusterConfig string
	var timeout time.Duration
	var kwokNodes int
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Single-node Kubernetes control planes in the local cloud",
	}
	create := &cobra.Command{
		Use:   "create --name NAME",
		Short: "Create a VM holding a kubeadm-layout single-node control plane and wait until it is ready",
		Long: `Create a local-cloud VM (a host of its own: namespaces, root and data disks)
running triad-agent, the local container runtime and the real kubelet, then run
the whole 'kubeadm init' inside it: PKI, kubeconfigs, static pods for etcd,
kube-apiserver, kube-controller-manager and kube-scheduler (binaries built from
pinned sources, 'make k8s-binaries'), the control-plane Node with its label and
taint, kubeadm-config, cluster-info, a bootstrap token, CoreDNS and kube-proxy.
Waits for /readyz through the VM's public address and writes an admin
kubeconfig that points at it. Needs root.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opts.AgentBinary == "" || opts.CloudBinary == "" {
				self, err := os.Executable()
				if err != nil {
					return err
				}
				dir := filepath.Dir(self)
				if opts.AgentBinary == "" {
					opts.AgentBinary = filepath.Join(dir, "triad-agent")
				}
				if opts.CloudBinary == "" {
					opts.CloudBinary = filepath.Join(dir, "triad-cloud-local")
				}
			}
			// The local cloud's long-lived processes are triad-cloud-local.
			cloud, err := local.New(local.Config{StateDir: *stateDir, Binary: opts.CloudBinary})
			if err != nil {
				return err
			}
			opts.PKI = pki.Dir{Path: g.pkiDir}
			if _, err := os.Stat(opts.PKI.CAFile()); os.IsNotExist(err) {
				if _, err := opts.PKI.Init("", 0); err != nil {
					return err
				}
			}
			opts.Progress = cmd.ErrOrStderr()
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			fmt.Fprintf(cmd.ErrOrStderr(), "creating local cluster %q\n", opts.Name)
			c, err := localcluster.Create(ctx, cloud, opts)
			if err != nil {
				return err
			}
			if err := os.WriteFile(kubeconfig, c.AdminKubeconfig, 0o600); err != nil {
				return err
			}
			cfgPath, err := writeClusterConfig(clusterConfig, kubeconfig, cloud, c, opts)
			if err != nil {
				return err
			}
			if kwokNodes > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "  starting kwok with %d simulated nodes\n", kwokNodes)
				if err := localcluster.StartKwok(ctx, cloud, c, opts.BinDir, kwokNodes); err != nil {
					return err
				}
			}
			return g.print(cmd.OutOrStdout(), map[string]string{"instance": c.Instance.ID, "privateIP": c.Instance.PrivateIP, "publicIP": c.Instance.PublicIP, "kubeconfig": kubeconfig, "clusterConfig": cfgPath}, func(w io.Writer) {
				fmt.Fprintf(w, "cluster %s ready on %s (public %s); admin kubeconfig: %s\n", opts.Name, c.Instance.PrivateIP, c.Instance.PublicIP, kubeconfig)
				fmt.Fprintf(w, "cluster config for 'triad migrate': %s\n", cfgPath)
			})
		},
	}
	f := create.Flags()
	f.StringVar(&opts.Name, "name", "demo", "cluster name")
	f.StringVar(&opts.KubernetesVersion, "kubernetes-version", "v1.36.3", "version of the binaries in --bin-dir")
	f.StringVar(&opts.BinDir, "bin-dir", "", "directory of the control-plane binaries (default ~/.cache/triad/bin/<version>)")
	f.StringVar(&opts.AgentBinary, "agent-binary", "", "triad-agent binary (default: next to triad)")
	f.StringVar(&opts.CloudBinary, "cloud-binary", "", "triad-cloud-local binary (default: next to triad)")
	f.DurationVar(&opts.NodeMonitorGracePeriod, "node-monitor-grace-period", 0, "kube-controller-manager --node-monitor-grace-period (0 keeps the default)")
	f.BoolVar(&opts.UngracefulAPIServer, "ungraceful-apiserver", false, "run kube-apiserver without --shutdown-send-retry-after=true, as kubeadm lays it out (a migration's 1.1 then waits out open watches, ~30 s)")
	f.StringVar(&kubeconfig, "kubeconfig", "kubeconfig", "where to write the admin kubeconfig")
	f.StringVar(&clusterConfig, "cluster-config", "cluster.yaml", "where to write the cluster config ('triad migrate -f')")
	f.IntVar(&kwokNodes, "kwok-nodes", 0, "simulated nodes (kwok) to add, connecting through the private address")
	f.DurationVar(&timeout, "timeout", 5*time.Minute, "how long to wait for the control plane")
	create.PreRunE = func(cmd *cobra.Command, _ []string) (err error) {
		opts.BinDir, err = binDirFor(opts.BinDir, opts.KubernetesVersion)
		return err
	}
	cmd.AddCommand(create, newLocalJoinWorkerCommand(g, stateDir))
	return cmd
}

func newLocalJoinWorkerCommand(g *globals, stateDir *string) *cobra.Command {
	opts := localcluster.WorkerOptions{}
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "join-worker --name CLUSTER --worker NAME",
		Short: "Add a worker VM (container runtime and a real kubelet) that joins the cluster with 'kubeadm join'",
		Long: `Make a bootstrap token with 'kubeadm token create --print-join-command' on one of
the cluster's running control-plane VMs, create a worker VM and run the printed
'kubeadm join' inside it, as an operator adds a node: discovery and the kubelet's
TLS bootstrap go through the address the join command names (the control-plane
endpoint: after a migration, the load balancers on the original address). Returns
once kubeadm join has; the Node becomes Ready shortly after. Needs root.`,
		Example: `  triad local cluster join-worker --name demo --worker demo-worker-0`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opts.Name == "" {
				return fmt.Errorf("--worker is required: the worker VM's hostname and Node name")
			}
			cloud, err := openLocal(*stateDir)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			if opts.ControlPlane == "" {
				insts, err := cloud.ListInstances(ctx, map[string]string{controlplane.LabelCluster: opts.Cluster})
				if err != nil {
					return err
				}
				for _, in := range insts {
					if in.State == sdk.InstanceRunning {
						opts.ControlPlane = in.ID
						break
					}
				}
				if opts.ControlPlane == "" {
					return fmt.Errorf("cluster %q has no running control-plane VM in %s (see 'triad local vm list')", opts.Cluster, *stateDir)
				}
			}
			opts.Progress = cmd.ErrOrStderr()
			fmt.Fprintf(cmd.ErrOrStderr(), "joining worker %s to cluster %q\n", opts.Name, opts.Cluster)
			w, err := localcluster.JoinWorker(ctx, cloud, opts)
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), map[string]string{"instance": w.Instance.ID, "privateIP": w.Instance.PrivateIP, "node": opts.Name, "apiserver": w.APIServer}, func(w2 io.Writer) {
				fmt.Fprintf(w2, "worker %s (%s, %s) joined through %s\n", opts.Name, w.Instance.ID, w.Instance.PrivateIP, w.APIServer)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Cluster, "name", "demo", "cluster name")
	f.StringVar(&opts.Name, "worker", "", "the worker VM's hostname and Node name (required)")
	f.StringVar(&opts.Zone, "zone", "local-a", "zone of the worker VM")
	f.StringVar(&opts.ControlPlane, "control-plane", "", "instance to run 'kubeadm token create' on (default: a running control-plane VM of the cluster)")
	f.StringVar(&opts.KubernetesVersion, "kubernetes-version", "v1.36.3", "the cluster's release: the worker image and kubeadm")
	f.StringVar(&opts.BinDir, "bin-dir", "", "directory of kubeadm and the kubelet (default ~/.cache/triad/bin/<version>)")
	f.DurationVar(&timeout, "timeout", 5*time.Minute, "how long the join may take")
	cmd.PreRunE = func(cmd *cobra.Command, _ []string) (err error) {
		opts.BinDir, err = binDirFor(opts.BinDir, opts.KubernetesVersion)
		return err
	}
	return cmd
}

// binDirFor is --bin-dir, by default where 'make k8s-binaries' caches a
// release: ~/.cache/triad/bin/<version>.
func binDirFor(flag, version string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(cache, "triad", "bin", version), nil
}

// writeClusterConfig writes the cluster config a migration of the new
// cluster needs: the local cloud plugin, the VM and its addresses, the
// coordinator's certificate (issued if missing) and the admin kubeconfig.
func writeClusterConfig(path, kubeconfig string, cloud *local.Cloud, c *localcluster.Cluster, opts localcluster.Options) (string, error) {
	abs := func(p string) string {
		a, err := filepath.Abs(p)
		if err != nil {
			return p
		}
		return a
	}
	cert, key := opts.PKI.LeafFiles(agentauth.RoleCoordinator, "default")
	if _, err := os.Stat(cert); os.IsNotExist(err) {
		if _, err := opts.PKI.Issue(pki.IssueRequest{Role: agentauth.RoleCoordinator, Name: "default"}); err != nil {
			return "", err
		}
	}
	cloudCfg, err := json.Marshal(local.Config{StateDir: cloud.StateDir(), Binary: abs(opts.CloudBinary)})
	if err != nil {
		return "", err
	}
	cfg := &config.Cluster{
		APIVersion: config.APIVersion, Kind: config.Kind, Name: opts.Name,
		Cloud: config.Cloud{Plugin: abs(opts.CloudBinary), Config: cloudCfg},
		ControlPlane: config.ControlPlane{Instance: c.Instance.ID, Zones: local.Zones,
			PrivateAddress: c.Instance.PrivateIP, PublicAddress: c.Instance.PublicIP},
		Agent:      config.Agent{TLS: config.TLS{Cert: abs(cert), Key: abs(key), CA: abs(opts.PKI.CAFile())}},
		Kubeconfig: abs(kubeconfig),
		// Next to the local cloud's state: 'triad local down' removes both.
		StateDir: filepath.Join(cloud.StateDir(), "clusters", opts.Name),
	}
	path = abs(path)
	return path, cfg.Write(path)
}
