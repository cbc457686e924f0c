package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/triad-k8s/triad/agent/etcdsnap"
	"github.com/triad-k8s/triad/cloudplugins/sdk"
	"github.com/triad-k8s/triad/coordinator/availability"
	"github.com/triad-k8s/triad/coordinator/config"
	"github.com/triad-k8s/triad/coordinator/engine"
	"github.com/triad-k8s/triad/coordinator/migrate"
)

type migrateFlags struct {
	configPath  string
	until       string
	operation   string
	metricsAddr string
	opts        migrate.Options
}

func newMigrateCommand(g *globals) *cobra.Command {
	f := &migrateFlags{}
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Move a single-node control plane to three nodes behind load balancers on its old addresses",
		Long: `migrate turns a single-node control plane into a highly available one
without reconfiguring any client: the internal and public load balancers take
over the node's static private and public addresses.

` + migrateStepsHelp() + `

Any failure before 3.1 rolls back automatically to the original VM, which
then serves with exactly the data it had. Every step is journaled (bbolt in
the cluster's stateDir) before it acts; after a crash or Ctrl-C, 'resume'
continues and 'rollback' undoes. Every agent call carries a fencing epoch, so
a second coordinator takes over cleanly and the first one stops.

  triad migrate plan     -f cluster.yaml    # what will happen; touches nothing
  triad migrate run      -f cluster.yaml
  triad migrate status   -f cluster.yaml
  triad migrate resume   -f cluster.yaml
  triad migrate rollback -f cluster.yaml

Progress goes to stderr; the result (the journal record with -o json) to
stdout. TRIAD_PLUGIN_LOG=1 also prints the cloud plugin's own logs.

While run, resume or rollback acts, an availability monitor reads
/api/v1/namespaces/default through both client addresses and from each
control-plane node, four times a second, on fresh connections. Availability
per 1 s window is the share of successful reads through the addresses, and 0
whenever more than one control-plane node is down. The summary is printed at
the end and the timeline written to <stateDir>/availability/<operation>.json;
--metrics-addr serves it as Prometheus metrics meanwhile.`,
	}
	cmd.PersistentFlags().StringVarP(&f.configPath, "file", "f", "cluster.yaml", "cluster config (apiVersion triad.dev/v1alpha1, kind Cluster)")
	addRunFlags := func(c *cobra.Command) {
		fl := c.Flags()
		fl.DurationVar(&f.opts.AgentTimeout, "agent-timeout", 2*time.Minute, "how long to retry an unreachable agent before the step fails")
		fl.DurationVar(&f.opts.HeartbeatTimeout, "heartbeat-timeout", 10*time.Minute, "how long 3.1 waits for the kubelets to heartbeat through the new endpoint before it starts the controllers without the missing ones (see --heartbeat-threshold) or stops")
		fl.DurationVar(&f.opts.ReadyTimeout, "ready-timeout", 5*time.Minute, "how long to wait for etcd quorum, kube-apiserver readiness and the first write")
		fl.StringVar(&f.metricsAddr, "metrics-addr", "", "serve the availability monitor's Prometheus metrics on this address (e.g. :9464) while the operation runs")
	}
	plan := &cobra.Command{
		Use:   "plan",
		Short: "Print the steps, what each touches and how each is undone; touches nothing",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(f.configPath)
			if err != nil {
				return err
			}
			env := migrate.NewEnv(cfg, nil, nil, etcdsnap.Store{}, f.opts)
			st := migrate.NewState(env)
			type planStep struct {
				Name            string   `json:"name"`
				Summary         string   `json:"summary"`
				Touches         []string `json:"touches"`
				Undo            string   `json:"undo,omitempty"`
				PointOfNoReturn bool     `json:"pointOfNoReturn,omitempty"`
			}
			var steps []planStep
			for _, s := range migrate.Plan(env).Steps {
				steps = append(steps, planStep{s.Name, s.Summary, s.Touches(st), s.UndoSummary, s.PointOfNoReturn})
			}
			return g.print(cmd.OutOrStdout(), map[string]any{"cluster": cfg.Name, "stateDir": cfg.StateDir, "steps": steps}, func(w io.Writer) {
				fmt.Fprintf(w, "migration plan for cluster %s (journal in %s)\n\n", cfg.Name, cfg.StateDir)
				for _, s := range steps {
					fmt.Fprintf(w, "%s\n    %s\n    touches: %s\n", s.Name, s.Summary, strings.Join(s.Touches, "; "))
					if s.Undo != "" {
						fmt.Fprintf(w, "    undo:    %s\n", s.Undo)
					}
				}
				fmt.Fprintf(w, "\nnothing was changed; 'triad migrate run -f %s' runs it\n", f.configPath)
			})
		},
	}
	// run, resume and rollback act on the cluster; they share their flags.
	acting := map[string]*cobra.Command{}
	for _, c := range []struct{ verb, short string }{
		{"run", "Run the migration; roll back automatically on any failure before 3.1-open-traffic"},
		{"resume", "Continue the cluster's unfinished migration from its journal (or finish an interrupted rollback)"},
		{"rollback", "Undo every started step of the cluster's unfinished migration, last first; refused after 3.1-open-traffic"},
	} {
		acting[c.verb] = &cobra.Command{Use: c.verb, Short: c.short, Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error { return f.act(cmd, g, c.verb) }}
		addRunFlags(acting[c.verb])
	}
	run, resume, rollback := acting["run"], acting["resume"], acting["rollback"]
	f.opts.HeartbeatThreshold = 1
	for _, c := range []*cobra.Command{run, resume} {
		c.Flags().Var(heartbeatThresholdFlag{&f.opts.HeartbeatThreshold}, "heartbeat-threshold",
			"fraction in (0, 1] of the nodes Ready at preflight whose kubelets must heartbeat through the new endpoint before 3.1 starts kube-controller-manager and kube-scheduler. "+
				"Once all have, they start at once; at --heartbeat-timeout they start if at least this fraction has (the controllers then mark the missing nodes NotReady and evict their pods), "+
				"otherwise 3.1 stops for a resume. Lower it (e.g. 0.95) only when some nodes are known to be down or cut off from the new endpoint")
		c.Flags().BoolVar(&f.opts.UnsafeStartControllersBeforeHeartbeats, "unsafe-start-controllers-before-heartbeats", false,
			"UNSAFE, for demonstrations only: start kube-controller-manager as soon as traffic opens; its node-lifecycle controller may mark nodes NotReady and evict pods")
	}
	run.Flags().StringVar(&f.until, "until", "", "stop after this step (phase paused); continue with resume or undo with rollback")
	resume.Flags().StringVar(&f.until, "until", "", "stop after this step (phase paused)")
	status := statusCommand(g, "migration", &f.configPath, f.record, printRecord)
	for _, c := range []*cobra.Command{resume, rollback, status} {
		c.Flags().StringVar(&f.operation, "operation", "", "operation id (default: the cluster's latest)")
	}
	cmd.AddCommand(plan, run, resume, rollback, status)
	return cmd
}

// heartbeatThresholdFlag is --heartbeat-threshold, checked as the flags
// are parsed: a bad value stops the command before it journals or touches
// anything.
type heartbeatThresholdFlag struct{ threshold *float64 }

func (f heartbeatThresholdFlag) String() string {
	return strconv.FormatFloat(*f.threshold, 'g', -1, 64)
}

func (heartbeatThresholdFlag) Type() string { return "fraction" }

func (f heartbeatThresholdFlag) Set(v string) error {
	t, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return fmt.Errorf("%q is not a number: give a fraction in (0, 1], e.g. 0.95", v)
	}
	if err := migrate.CheckHeartbeatThreshold(t); err != nil {
		return err
	}
	*f.threshold = t
	return nil
}

func (f *migrateFlags) record(j *engine.Journal, cfg *config.Cluster) (*engine.Record, error) {
	return latest(j, cfg, f.operation, migrate.Kind)
}

// latest is operation from the journal, or the cluster's latest operation,
// which must be of kind.
func latest(j *engine.Journal, cfg *config.Cluster, operation, kind string) (*engine.Record, error) {
	if operation != "" {
		return j.Get(operation)
	}
	rec, err := j.Current(cfg.Name)
	if errors.Is(err, engine.ErrNotFound) {
		return nil, fmt.Errorf("no %s of cluster %s in %s", kind, cfg.Name, cfg.StateDir)
	}
	if err == nil && rec.Kind != kind {
		return nil, fmt.Errorf("the latest operation of cluster %s is %s %s (%s): see 'triad %s status'", cfg.Name, rec.Kind, rec.ID, rec.Phase, rec.Kind)
	}
	return rec, err
}

// statusCommand prints the cluster's latest operation (or --operation)
// from the journal.
func statusCommand(g *globals, what string, configPath *string, record func(*engine.Journal, *config.Cluster) (*engine.Record, error), print func(io.Writer, *globals, *engine.Record) error) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the cluster's latest " + what + " (or --operation) from the journal",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(*configPath)
			if err != nil {
				return err
			}
			j, err := engine.OpenJournal(cfg.StateDir, 5*time.Second)
			if err != nil {
				return err
			}
			defer j.Close()
			rec, err := record(j, cfg)
			if err != nil {
				return err
			}
			return print(cmd.OutOrStdout(), g, rec)
		},
	}
}

// act runs, resumes or rolls back.
func (f *migrateFlags) act(cmd *cobra.Command, g *globals, what string) error {
	cfg, err := config.Load(f.configPath)
	if err != nil {
		return err
	}
	stderr := cmd.ErrOrStderr()
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	j, err := engine.OpenJournal(cfg.StateDir, 5*time.Second)
	if err != nil {
		return err
	}
	defer j.Close()
	rec, epoch, err := begin(j, cfg, what, migrate.Kind, f.until, f.record)
	if err != nil {
		return err
	}
	plugin, kube, err := connect(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	defer plugin.Close()
	env := migrate.NewEnv(cfg, plugin, kube, etcdsnap.Store{Dir: filepath.Join(cfg.StateDir, "snapshots")}, f.opts)
	defer env.Close()
	start := time.Now()
	runner := &engine.Runner[migrate.State]{Plan: migrate.Plan(env), Journal: j, Until: f.until, Progress: progressPrinter(stderr, start)}

	var state *migrate.State
	if what == "run" {
		state = migrate.NewState(env)
		if rec, err = runner.NewRecord(newOperationID(migrate.Kind), cfg.Name, epoch, state); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "migration %s of cluster %s (epoch %d, journal %s)\n", rec.ID, cfg.Name, epoch, filepath.Join(cfg.StateDir, "journal.db"))
	} else {
		if state, err = engine.LoadState[migrate.State](rec); err != nil {
			return err
		}
		rec.Epoch = epoch
		fmt.Fprintf(stderr, "%s of migration %s of cluster %s (was %s; epoch %d)\n", what, rec.ID, cfg.Name, rec.Phase, epoch)
	}
	err = drive(ctx, cfg, runner, rec, state, what, func() []availability.Target { return migrationTargets(cfg, state) }, f.metricsAddr, stderr)
	if perr := printRecord(cmd.OutOrStdout(), g, rec); perr != nil && err == nil {
		err = perr
	}
	return err
}

// begin checks the journal before an operation acts: run needs the
// cluster to have no unfinished operation; resume and rollback need its
// unfinished operation of kind, which is returned. Either way a new
// fencing epoch is handed out.
func begin(j *engine.Journal, cfg *config.Cluster, what, kind, until string, record func(*engine.Journal, *config.Cluster) (*engine.Record, error)) (*engine.Record, uint64, error) {
	var rec *engine.Record
	if what == "run" {
		if cur, err := j.Current(cfg.Name); err == nil && !cur.Phase.Finished() {
			return nil, 0, fmt.Errorf("cluster %s has an unfinished %s %s (%s): 'triad %s resume' or 'triad %s rollback' it first", cfg.Name, cur.Kind, cur.ID, cur.Phase, cur.Kind, cur.Kind)
		}
	} else {
		var err error
		if rec, err = record(j, cfg); err != nil {
			return nil, 0, err
		}
		if rec.Phase.Finished() {
			return nil, 0, fmt.Errorf("%s %s of cluster %s is already %s", kind, rec.ID, cfg.Name, rec.Phase)
		}
		// Before anything acts (no epoch handed out): a typo must not
		// resume past the point of no return.
		var steps []string
		for _, s := range rec.Steps {
			steps = append(steps, s.Name)
		}
		if err := engine.CheckUntil(until, steps); err != nil {
			return nil, 0, fmt.Errorf("%w: nothing resumed", err)
		}
	}
	epoch, err := j.NextEpoch(cfg.Name)
	return rec, epoch, err
}

// connect starts the cloud plugin and a Kubernetes client.
func connect(ctx context.Context, cfg *config.Cluster, stderr io.Writer) (*sdk.Plugin, kubernetes.Interface, error) {
	plugin, err := openCloud(ctx, cfg, stderr)
	if err != nil {
		return nil, nil, err
	}
	kube, err := kubeClient(cfg.Kubeconfig)
	if err != nil {
		plugin.Close()
		return nil, nil, err
	}
	return plugin, kube, nil
}

// openCloud starts the cluster's cloud plugin; TRIAD_PLUGIN_LOG=1 shows
// its logs on stderr.
func openCloud(ctx context.Context, cfg *config.Cluster, stderr io.Writer) (*sdk.Plugin, error) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("TRIAD_PLUGIN_LOG") != "" {
		logger = slog.New(slog.NewTextHandler(stderr, nil))
	}
	return sdk.Open(ctx, cfg.Cloud.Plugin, sdk.OpenOptions{Config: cfg.Cloud.Config, SHA256: cfg.Cloud.PluginSHA256, Env: cfg.PluginEnv(), Logger: logger})
}

func kubeClient(path string) (kubernetes.Interface, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	cfg.QPS, cfg.Burst, cfg.Timeout = 50, 100, 15*time.Second
	return kubernetes.NewForConfig(cfg)
}

func newOperationID(kind string) string {
	b := make([]byte, 3)
	rand.Read(b)
	return kind + "-" + time.Now().UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b)
}

// progressPrinter prints one line per event, with the time since start.
func progressPrinter(w io.Writer, start time.Time) func(engine.Event) {
	return func(e engine.Event) {
		at := fmt.Sprintf("[%6.1fs]", e.Time.Sub(start).Seconds())
		switch e.Kind {
		case engine.EventStepStart:
			fmt.Fprintf(w, "%s ==> %s: %s\n", at, e.Step, e.Message)
		case engine.EventStepDone:
			fmt.Fprintf(w, "%s     %s done in %.1fs\n", at, e.Step, e.Elapsed.Seconds())
		case engine.EventStepFailed:
			fmt.Fprintf(w, "%s     %s FAILED after %.1fs: %s\n", at, e.Step, e.Elapsed.Seconds(), e.Message)
		case engine.EventUndoStart:
			fmt.Fprintf(w, "%s <== undo %s: %s\n", at, e.Step, e.Message)
		case engine.EventUndoDone:
			fmt.Fprintf(w, "%s     undo %s done in %.1fs\n", at, e.Step, e.Elapsed.Seconds())
		case engine.EventUndoFailed:
			fmt.Fprintf(w, "%s     undo %s FAILED after %.1fs: %s\n", at, e.Step, e.Elapsed.Seconds(), e.Message)
		default:
			if e.Step != "" {
				fmt.Fprintf(w, "%s     %s: %s\n", at, e.Step, e.Message)
			} else {
				fmt.Fprintf(w, "%s %s\n", at, e.Message)
			}
		}
	}
}

// printRecord prints an operation: the record as JSON, or a step table.
func printRecord(w io.Writer, g *globals, rec *engine.Record) error {
	state, err := engine.LoadState[migrate.State](rec)
	if err != nil {
		return err
	}
	return g.print(w, rec, func(w io.Writer) {
		fmt.Fprintf(w, "\nmigration %s of cluster %s: %s\n", rec.ID, rec.Cluster, rec.Phase)
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
		if state.WindowSeconds > 0 {
			fmt.Fprintf(w, "write-unavailability window: %.1fs (kube-apiserver stopped %s, first write through the load balancer %s)\n",
				state.WindowSeconds, state.StoppedAt.Format(time.RFC3339), state.FirstWriteAt.Format(time.RFC3339))
		}
		if rec.Phase == engine.PhaseSucceeded {
			for _, n := range state.Nodes {
				fmt.Fprintf(w, "node %s: instance %s in %s on %s\n", n.Name, n.InstanceID, n.Zone, n.PrivateIP)
			}
			fmt.Fprintf(w, "load balancers: internal %s on %s, public %s on %s\n", state.InternalLB, state.PrivateIP, state.PublicLB, state.PublicIP)
			fmt.Fprintf(w, "kept for you to delete once satisfied: stopped instance %s, disk snapshot %s, etcd snapshot %s\n", state.Original.InstanceID, state.DiskSnapshotID, state.Snapshot.Path)
		}
		if rec.Error != "" && rec.Phase != engine.PhaseSucceeded {
			fmt.Fprintf(w, "error: %s\n", rec.Error)
		}
	})
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 160 {
		s = s[:157] + "..."
	}
	return s
}
