package cli

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/triad-k8s/triad/coordinator/availability"
	"github.com/triad-k8s/triad/coordinator/config"
	"github.com/triad-k8s/triad/coordinator/engine"
	"github.com/triad-k8s/triad/coordinator/migrate"
	"github.com/triad-k8s/triad/coordinator/upgrade"
)

type upgradeFlags struct {
	configPath        string
	image             string
	kubernetesVersion string
	diskSnapshot      string
	until             string
	operation         string
	metricsAddr       string
	opts              upgrade.Options
}

func newUpgradeCommand(g *globals) *cobra.Command {
	f := &upgradeFlags{}
	cmd := &cobra.Command{
		Use:   "upgrade",
		Short: "Replace the HA control plane's nodes one at a time with VMs of a new image, with no failed request",
		Long: `upgrade replaces each control-plane node of a migrated cluster with a VM of a
new image, one node at a time, followers first and the etcd leader last.

` + upgradeStepsHelp() + `

A failure rolls the node in progress back (new member removed, new VM
deleted, old node serving again) and stops the upgrade with the cluster
healthy; nodes already replaced keep the new image, and running the upgrade
again skips them. Once a node's old member is being removed it cannot come
back: its undo finishes the switch instead.

The new VMs' data disks come from the migration's disk snapshot (the
cluster's PKI, kubeconfigs and manifests); --disk-snapshot names another.

Kube-apiserver must shut down gracefully for no request to fail. On each
new node triad sets --shutdown-delay-duration (3s, or longer if the cloud
plugin advises it: the load balancers see the gate fail and stop sending
before the server stops accepting), --shutdown-watch-termination-grace-period
to the same (open watches end instead of
holding the server until its kill) and --shutdown-send-retry-after=false: a
request on a draining server's open connection is served, not answered
429 with a Retry-After of 5 s, which clients with short timeouts fail on.

While run, resume or rollback acts, the availability monitor probes both
client addresses and every control-plane node (see 'triad migrate --help');
its report goes to <stateDir>/availability/<operation>.json.`,
		Example: `  triad upgrade plan -f cluster.yaml --image control-plane-v1.36.3_triad.1
  triad upgrade run  -f cluster.yaml --image control-plane-v1.36.3_triad.1 --kubernetes-version v1.36.3+triad.1
  triad upgrade status -f cluster.yaml -o json`,
	}
	cmd.PersistentFlags().StringVarP(&f.configPath, "file", "f", "cluster.yaml", "cluster config (apiVersion triad.dev/v1alpha1, kind Cluster)")
	target := func(c *cobra.Command) {
		c.Flags().StringVar(&f.image, "image", "", "cloud image the nodes move to (required)")
		c.Flags().StringVar(&f.kubernetesVersion, "kubernetes-version", "", "retag kube-apiserver, kube-controller-manager and kube-scheduler to this version (e.g. v1.36.3+triad.1); empty keeps the manifests' images")
		c.Flags().StringVar(&f.diskSnapshot, "disk-snapshot", "", "disk snapshot seeding the new VMs (default: the migration's)")
	}
	acting := func(c *cobra.Command) {
		fl := c.Flags()
		fl.DurationVar(&f.opts.AgentTimeout, "agent-timeout", 2*time.Minute, "how long to retry an unreachable agent before the step fails")
		fl.DurationVar(&f.opts.ReadyTimeout, "ready-timeout", 5*time.Minute, "how long to wait for kube-apiserver readiness and load-balancer health")
		fl.DurationVar(&f.opts.CatchUpTimeout, "catch-up-timeout", 10*time.Minute, "how long a learner may take to catch up with the leader")
		fl.DurationVar(&f.opts.DrainDelay, "drain-delay", 2*time.Second, "extra wait once both load balancers report the drained node unhealthy, for connections they were opening to it (the cloud plugin's advice, if longer, wins: 10s on AWS by default)")
		fl.StringVar(&f.metricsAddr, "metrics-addr", "", "serve the availability monitor's Prometheus metrics on this address while the operation runs")
	}
	plan := &cobra.Command{
		Use:   "plan",
		Short: "Print the steps, what each touches and how each is undone; touches nothing",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, st, err := f.newState()
			if err != nil {
				return err
			}
			if err := st.Validate(); err != nil {
				return err
			}
			type planStep struct {
				Name    string   `json:"name"`
				Summary string   `json:"summary"`
				Touches []string `json:"touches"`
				Undo    string   `json:"undo,omitempty"`
			}
			var steps []planStep
			for _, s := range upgrade.Plan(upgrade.NewEnv(cfg, nil, nil, f.opts)).Steps {
				steps = append(steps, planStep{s.Name, s.Summary, s.Touches(st), s.UndoSummary})
			}
			return g.print(cmd.OutOrStdout(), map[string]any{"cluster": cfg.Name, "image": st.Image, "kubernetesVersion": st.KubernetesVersion, "diskSnapshot": st.DiskSnapshotID, "steps": steps}, func(w io.Writer) {
				fmt.Fprintf(w, "upgrade plan for cluster %s: every node to image %s", cfg.Name, st.Image)
				if st.KubernetesVersion != "" {
					fmt.Fprintf(w, ", Kubernetes %s", st.KubernetesVersion)
				}
				fmt.Fprintf(w, " (disks from snapshot %s)\n\n", st.DiskSnapshotID)
				for _, s := range steps {
					fmt.Fprintf(w, "%s\n    %s\n    touches: %s\n", s.Name, s.Summary, strings.Join(s.Touches, "; "))
					if s.Undo != "" {
						fmt.Fprintf(w, "    undo:    %s\n", s.Undo)
					}
				}
				fmt.Fprintf(w, "\nnothing was changed; 'triad upgrade run' with the same flags runs it\n")
			})
		},
	}
	target(plan)
	verbs := map[string]*cobra.Command{}
	for _, c := range []struct{ verb, short string }{
		{"run", "Run the upgrade; a failure rolls back the node in progress and stops"},
		{"resume", "Continue the cluster's unfinished upgrade from its journal (or finish an interrupted rollback)"},
		{"rollback", "Roll back the node in progress of the cluster's unfinished upgrade; replaced nodes keep the new image"},
	} {
		verbs[c.verb] = &cobra.Command{Use: c.verb, Short: c.short, Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error { return f.act(cmd, g, c.verb) }}
		acting(verbs[c.verb])
	}
	target(verbs["run"])
	verbs["run"].Flags().StringVar(&f.until, "until", "", "stop after this step (phase paused); continue with resume or undo with rollback")
	verbs["resume"].Flags().StringVar(&f.until, "until", "", "stop after this step (phase paused)")
	status := statusCommand(g, "upgrade", &f.configPath, f.record, printUpgrade)
	for _, c := range []*cobra.Command{verbs["resume"], verbs["rollback"], status} {
		c.Flags().StringVar(&f.operation, "operation", "", "operation id (default: the cluster's latest)")
	}
	cmd.AddCommand(plan, verbs["run"], verbs["resume"], verbs["rollback"], status)
	return cmd
}

// newState reads the config and the cluster's latest succeeded migration
// from the journal: its load balancers, addresses and disk snapshot.
func (f *upgradeFlags) newState() (*config.Cluster, *upgrade.State, error) {
	cfg, err := config.Load(f.configPath)
	if err != nil {
		return nil, nil, err
	}
	j, err := engine.OpenJournal(cfg.StateDir, 5*time.Second)
	if err != nil {
		return nil, nil, err
	}
	defer j.Close()
	recs, err := j.List(cfg.Name)
	if err != nil {
		return nil, nil, err
	}
	var from *upgrade.Migrated
	for _, r := range recs {
		if r.Kind == migrate.Kind && r.Phase == engine.PhaseSucceeded {
			m, err := engine.LoadState[migrate.State](r)
			if err != nil {
				return nil, nil, err
			}
			from = migrated(r.ID, m)
		}
	}
	return cfg, upgrade.NewState(cfg.Name, from, f.image, f.kubernetesVersion, f.diskSnapshot), nil
}

// migrated is what migration id left for the upgrades after it.
func migrated(id string, m *migrate.State) *upgrade.Migrated {
	return &upgrade.Migrated{Operation: id, PrivateIP: m.PrivateIP, PublicIP: m.PublicIP, InternalLB: m.InternalLB, PublicLB: m.PublicLB, DiskSnapshotID: m.DiskSnapshotID}
}

func (f *upgradeFlags) record(j *engine.Journal, cfg *config.Cluster) (*engine.Record, error) {
	return latest(j, cfg, f.operation, upgrade.Kind)
}

func (f *upgradeFlags) act(cmd *cobra.Command, g *globals, what string) error {
	stderr := cmd.ErrOrStderr()
	cfg, state, err := f.newState()
	if err != nil {
		return err
	}
	if what == "run" {
		// Bad input is refused before anything is journaled or started.
		if err := state.Validate(); err != nil {
			return err
		}
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	j, err := engine.OpenJournal(cfg.StateDir, 5*time.Second)
	if err != nil {
		return err
	}
	defer j.Close()
	rec, epoch, err := begin(j, cfg, what, upgrade.Kind, f.until, f.record)
	if err != nil {
		return err
	}
	if rec != nil {
		if state, err = engine.LoadState[upgrade.State](rec); err != nil {
			return err
		}
	}
	plugin, kube, err := connect(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	defer plugin.Close()
	env := upgrade.NewEnv(cfg, plugin, kube, f.opts)
	defer env.Close()
	start := time.Now()
	runner := &engine.Runner[upgrade.State]{Plan: upgrade.Plan(env), Journal: j, Until: f.until, Progress: progressPrinter(stderr, start)}
	if what == "run" {
		if rec, err = runner.NewRecord(newOperationID(upgrade.Kind), cfg.Name, epoch, state); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "upgrade %s of cluster %s to image %s (epoch %d, journal %s)\n", rec.ID, cfg.Name, state.Image, epoch, filepath.Join(cfg.StateDir, "journal.db"))
	} else {
		rec.Epoch = epoch
		fmt.Fprintf(stderr, "%s of upgrade %s of cluster %s (was %s; epoch %d)\n", what, rec.ID, cfg.Name, rec.Phase, epoch)
	}
	err = drive(ctx, cfg, runner, rec, state, what, func() []availability.Target { return upgradeTargets(cfg, state) }, f.metricsAddr, stderr)
	if perr := printUpgrade(cmd.OutOrStdout(), g, rec); perr != nil && err == nil {
		err = perr
	}
	return err
}

// upgradeTargets are the client addresses and every node that serves:
// each node's new VM once it is switched, its old one before.
func upgradeTargets(cfg *config.Cluster, st *upgrade.State) []availability.Target {
	return probeTargets(cfg, st.PrivateIP, st.PublicIP, st.Serving())
}

// printUpgrade prints an upgrade: the record as JSON, or a step table and
// the nodes.
func printUpgrade(w io.Writer, g *globals, rec *engine.Record) error {
	state, err := engine.LoadState[upgrade.State](rec)
	if err != nil {
		return err
	}
	return g.print(w, rec, func(w io.Writer) {
		fmt.Fprintf(w, "\nupgrade %s of cluster %s to %s: %s\n", rec.ID, rec.Cluster, state.Image, rec.Phase)
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "STEP\tSTATE\tSECONDS\tERROR")
		for _, s := range rec.Steps {
			msg := s.Error
			if s.UndoError != "" {
				msg = "undo: " + s.UndoError
			}
			fmt.Fprintf(tw, "%s\t%s\t%.1f\t%s\n", s.Name, s.State, s.Seconds, firstLine(msg))
		}
		tw.Flush()
		tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "\nOLD NODE\tIMAGE\tNEW NODE\tRESULT\tDRAIN\tCREATE VM\tCATCH-UP\tAPISERVER\tVALIDATE\tSWITCH\tTOTAL")
		for _, n := range state.Nodes {
			result := "pending"
			switch {
			case n.Skipped:
				result = "already on image"
			case n.Done:
				result = "replaced"
			case n.Switched:
				result = "switching"
			case n.New.InstanceID != "":
				result = "in progress"
			}
			t := n.Timings
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.1fs\t%.1fs\t%.1fs\t%.1fs\t%.1fs\t%.1fs\t%.1fs\n", n.Old.Name, n.OldImage, orDash(n.New.Name), result, t.Drain, t.CreateVM, t.LearnerCatchUp, t.APIServerReady, t.Validate, t.Switch, t.Total)
		}
		tw.Flush()
		if rec.Error != "" && rec.Phase != engine.PhaseSucceeded {
			fmt.Fprintf(w, "error: %s\n", rec.Error)
		}
	})
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
