package cli

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/triad-k8s/triad/coordinator/config"
	"github.com/triad-k8s/triad/coordinator/status"
)

func newStatusCommand(g *globals) *cobra.Command {
	var (
		configPath string
		watch      bool
		timeout    time.Duration
	)
	cmd := &cobra.Command{
		Use:   "status -f cluster.yaml",
		Short: "Show the control plane's health from its agents: etcd members, leader, gates, static pods, versions",
		Long: `Find the cluster's running control-plane VMs through its cloud plugin (the
configured instance and every VM labelled triad.dev/cluster=<name>), open each
triad-agent's WatchHealth stream and show one table: per node, kube-apiserver
readiness, the etcd member's role, the load-balancer gate, the static pods,
versions and database size; for the cluster, the etcd members (voters,
learners, leader) and every problem that makes it unhealthy.

Exit status is 0 when the cluster is healthy, 1 otherwise, so scripts and
fleet tooling can gate on it. --watch redraws on every report until Ctrl-C.`,
		Example: `  triad status -f cluster.yaml
  triad status -f cluster.yaml -o json | jq '.members[] | select(.leader)'
  triad status -f cluster.yaml --watch`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(configPath)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			plugin, err := openCloud(ctx, cfg, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			nodes, err := status.Discover(ctx, cfg, plugin)
			plugin.Close()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if watch {
				status.Watch(ctx, cfg, nodes, 5*time.Second, func(c status.Cluster) {
					if g.output == "text" {
						fmt.Fprint(out, "\033[H\033[2J")
					}
					_ = g.print(out, c, func(w io.Writer) { printStatus(w, c) })
				})
				return nil
			}
			c := status.Collect(ctx, cfg, nodes, timeout)
			if err := g.print(out, c, func(w io.Writer) { printStatus(w, c) }); err != nil {
				return err
			}
			if !c.Healthy {
				return fmt.Errorf("cluster %s is not healthy (%d problems)", c.Name, len(c.Problems))
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&configPath, "file", "f", "", "cluster file (required)")
	cmd.Flags().BoolVar(&watch, "watch", false, "keep the streams open and redraw on every report")
	cmd.Flags().DurationVar(&timeout, "timeout", 15*time.Second, "how long to wait for every agent's first report")
	_ = cmd.MarkFlagRequired("file")
	return cmd
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func printStatus(w io.Writer, c status.Cluster) {
	verdict := "healthy"
	if !c.Healthy {
		verdict = "NOT HEALTHY"
	}
	leader := c.Leader
	if leader == "" {
		leader = "none"
	}
	fmt.Fprintf(w, "cluster %s: %s — %d voting etcd members, %d learners, leader %s\n\n", c.Name, verdict, c.Voters, c.Learners, leader)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tINSTANCE\tIP\tAPISERVER\tETCD\tGATE\tSTATIC PODS\tKUBERNETES\tETCD VERSION\tDB")
	for _, n := range c.Nodes {
		if n.Health == nil {
			fmt.Fprintf(tw, "%s\t%s\t%s\t-\t-\t-\t%s\t\t\t\n", n.Name, n.InstanceID, n.IP, n.Error)
			continue
		}
		h := n.Health
		api, role, gate := "not ready", "unhealthy", "closed"
		if h.APIServerReady {
			api = "ready"
		}
		if h.EtcdHealthy {
			role = "follower"
			if h.EtcdMemberID != "" && h.EtcdMemberID == h.EtcdLeaderID {
				role = "leader"
			}
			for _, m := range c.Members {
				if m.ID == h.EtcdMemberID && m.Learner {
					role = "learner"
				}
			}
		}
		if h.GateOpen {
			gate = "open"
		}
		var pods []string
		running := 0
		for name, state := range h.StaticPods {
			if state == "running" {
				running++
			} else {
				pods = append(pods, name+" "+state)
			}
		}
		slices.Sort(pods)
		podText := fmt.Sprintf("%d/%d running", running, len(h.StaticPods))
		if len(pods) > 0 {
			podText += " (" + strings.Join(pods, ", ") + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, n.InstanceID, n.IP, api, role, gate, podText, h.KubernetesVersion, h.EtcdVersion, mib(h.EtcdDBSizeBytes))
	}
	tw.Flush()
	if len(c.Members) > 0 {
		fmt.Fprintln(w, "\netcd members:")
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, m := range c.Members {
			role := "voter"
			if m.Learner {
				role = "learner"
			}
			if m.Leader {
				role += ", leader"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", m.ID, m.Name, role, strings.Join(m.PeerURLs, ","))
		}
		tw.Flush()
	}
	if len(c.Problems) > 0 {
		fmt.Fprintln(w, "\nproblems:")
		for _, p := range c.Problems {
			fmt.Fprintln(w, "  "+p)
		}
	}
}
