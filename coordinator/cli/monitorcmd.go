package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/triad-k8s/triad/cloudplugins/sdk"
	"github.com/triad-k8s/triad/coordinator/availability"
	"github.com/triad-k8s/triad/coordinator/config"
	"github.com/triad-k8s/triad/coordinator/controlplane"
	"github.com/triad-k8s/triad/coordinator/engine"
	"github.com/triad-k8s/triad/coordinator/migrate"
	"github.com/triad-k8s/triad/coordinator/upgrade"
)

type monitorFlags struct {
	configPath   string
	duration     time.Duration
	interval     time.Duration
	window       time.Duration
	probeTimeout time.Duration
	reportPath   string
	failBelow    float64
	failBelowSet bool
	metricsAddr  string
}

func newMonitorCommand(g *globals) *cobra.Command {
	f := &monitorFlags{}
	cmd := &cobra.Command{
		Use:   "monitor -f cluster.yaml",
		Short: "Measure the control plane's availability to its clients during maintenance triad does not drive (VM reboots, OS patching)",
		Long: `monitor runs the availability monitor of 'triad migrate' and 'triad upgrade'
on its own, for maintenance triad does not drive: rebooting or patching the
control-plane VMs, changing a kube-apiserver flag, replacing a load balancer.

A probe is one real API read, GET /api/v1/namespaces/default (through
kube-apiserver to etcd), with the kubeconfig's credentials and on a new
connection every time, so a closed listener or a node a load balancer
dropped shows at once. Every --interval each target is probed:

  private, public  the addresses clients use: the two load balancers of a
                   migrated cluster; before a migration, the single node's
                   own static addresses
  node/<name>      each control-plane node's kube-apiserver, directly

The targets are the cluster as triad's journal (in its stateDir) knows it
now: the nodes its latest migration or upgrade left serving, or, if triad
never migrated it, the single node (node/<instance>, on its private
address). They are printed when the monitor starts.

A window is one --window of the run. Its availability is the share of
successful probes through the client addresses, but 0 whenever more than
one control-plane node answered no probe in it: two of three nodes down is
a lost quorum, however many reads happen to succeed.

It runs until Ctrl-C (SIGINT or SIGTERM) or for --duration, with a progress
line on stderr every 5 s (rewritten every window on a terminal). Then it
writes the report, in the format of the operations' reports (every window,
the mean, the lowest window, the longest run of windows at 0, the failed
reads and each target's tally), to --report or
<stateDir>/availability/monitor-<time>-<id>.json, and prints the summary on
stdout (with -o json, the report itself). Probes still waiting for an answer
when it stops are not counted, so the last --probe-timeout before a Ctrl-C
is not in the report; --duration runs that much longer to cover itself.

The exit status is 0 when the run completed: availability is reported, not
judged. With --fail-below it is 1 if any complete window fell below that
percentage, and the error names those windows.`,
		Example: `  # A rolling reboot, one control-plane VM at a time:
  triad monitor -f cluster.yaml --fail-below 99 >reboot-report.txt &
  monitor=$!
  for vm in cp-1 cp-2 cp-3; do
    ssh "$vm" sudo systemctl reboot
    sleep 60; until triad status -f cluster.yaml >/dev/null; do sleep 10; done
  done
  kill $monitor; wait $monitor   # report written; status 1 if a window fell below 99%

  # A fixed maintenance slot, the report where you want it:
  triad monitor -f cluster.yaml --duration 45m --report /var/tmp/patching.json

  # Which endpoint failed, as JSON; Prometheus metrics meanwhile:
  triad monitor -f cluster.yaml --duration 10m -o json --metrics-addr :9464 | jq '.targets'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f.failBelowSet = cmd.Flags().Changed("fail-below")
			return f.run(cmd, g)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.configPath, "file", "f", "", "cluster file (required)")
	fl.DurationVar(&f.duration, "duration", 0, "how long to measure; 0 measures until Ctrl-C (SIGINT or SIGTERM)")
	fl.DurationVar(&f.interval, "interval", 250*time.Millisecond, "time between two probes of one target")
	fl.DurationVar(&f.window, "window", time.Second, "length of one window of the availability figure; at least twice --interval")
	fl.DurationVar(&f.probeTimeout, "probe-timeout", 2*time.Second, "how long one probe may wait for its answer before it counts as failed")
	fl.StringVar(&f.reportPath, "report", "", "write the report here (default <stateDir>/availability/monitor-<time>-<id>.json)")
	fl.Float64Var(&f.failBelow, "fail-below", 0, "exit 1 if any complete window's availability fell below this percentage (0-100)")
	fl.StringVar(&f.metricsAddr, "metrics-addr", "", "serve the monitor's Prometheus metrics on this address (e.g. :9464) while it runs")
	_ = cmd.MarkFlagRequired("file")
	return cmd
}

// validate refuses bad flags, every problem at once, before anything is
// read or started.
func (f *monitorFlags) validate(g *globals) error {
	var errs []error
	if g.output != "text" && g.output != "json" {
		errs = append(errs, fmt.Errorf("--output %q: want text or json", g.output))
	}
	if f.duration < 0 {
		errs = append(errs, fmt.Errorf("--duration %s: must not be negative (0, the default, measures until Ctrl-C)", f.duration))
	}
	for _, d := range []struct {
		flag  string
		value time.Duration
	}{{"--interval", f.interval}, {"--window", f.window}, {"--probe-timeout", f.probeTimeout}} {
		if d.value <= 0 {
			errs = append(errs, fmt.Errorf("%s %s: must be positive", d.flag, d.value))
		}
	}
	if f.interval > 0 && f.window > 0 && f.window < 2*f.interval {
		errs = append(errs, fmt.Errorf("--window %s: must be at least twice --interval (%s), or some windows get no probe and count as unavailable", f.window, f.interval))
	}
	if f.failBelowSet && (math.IsNaN(f.failBelow) || f.failBelow < 0 || f.failBelow > 100) {
		errs = append(errs, fmt.Errorf("--fail-below %g: want a percentage from 0 to 100", f.failBelow))
	}
	return errors.Join(errs...)
}

func (f *monitorFlags) run(cmd *cobra.Command, g *globals) error {
	if err := f.validate(g); err != nil {
		return err
	}
	cfg, err := config.Load(f.configPath)
	if err != nil {
		return err
	}
	stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	path := f.reportPath
	if path == "" {
		path = reportPath(filepath.Join(cfg.StateDir, "availability"), newOperationID("monitor"))
	}
	// An hour of measurements is lost if the report cannot be written at
	// the end: find out now.
	if err := checkReportWritable(path); err != nil {
		return err
	}
	targets, from, err := f.targets(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "monitoring cluster %s: %s\n", cfg.Name, from)
	tw := tabwriter.NewWriter(stderr, 2, 4, 2, ' ', 0)
	for _, t := range targets {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", t.Name, t.Kind, t.Address)
	}
	tw.Flush()
	until := "until Ctrl-C"
	if f.duration > 0 {
		until = "for " + f.duration.String()
	}
	fmt.Fprintf(stderr, "probing each every %s, windows of %s, %s; report to %s\n", f.interval, f.window, until, path)

	tune := availability.Config{Interval: f.interval, Window: f.window, Timeout: f.probeTimeout}
	mon, err := startMonitor(ctx, cfg, tune, targets, f.metricsAddr, stderr)
	if err != nil {
		return err
	}
	f.wait(ctx, mon, stderr)
	stop() // from here a second Ctrl-C ends triad at once
	r := mon.end()

	werr := writeJSON(path, r)
	if werr != nil {
		werr = fmt.Errorf("writing the availability report %s: %w", path, werr)
		path = ""
	} else if g.output == "json" {
		fmt.Fprintf(stderr, "availability report: %s\n", path)
	}
	var below []belowPeriod
	if f.failBelowSet {
		below = periodsBelow(r, f.failBelow)
	}
	if err := g.print(stdout, r, func(w io.Writer) { f.printSummary(w, cfg.Name, r, below, path) }); err != nil {
		return errors.Join(werr, err)
	}
	if len(below) > 0 {
		werr = errors.Join(werr, fmt.Errorf("availability fell below --fail-below %g%% in %s", f.failBelow, describePeriods(below, r.Window)))
	}
	return werr
}

// wait returns at the end of --duration (plus one probe timeout, for the
// last probes' answers to be in the report) or when ctx ends, showing
// progress meanwhile.
func (f *monitorFlags) wait(ctx context.Context, mon *operationMonitor, stderr io.Writer) {
	var deadline <-chan time.Time
	if f.duration > 0 {
		t := time.NewTimer(f.duration + f.probeTimeout)
		defer t.Stop()
		deadline = t.C
	}
	line := progressLine{w: stderr, tty: isTerminal(stderr)}
	every := max(f.window, 5*time.Second)
	if line.tty {
		every = f.window
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	start := time.Now()
	defer line.end()
	for {
		select {
		case <-ctx.Done():
			line.show("interrupted: writing the report")
			return
		case <-deadline:
			return
		case <-tick.C:
			line.show(progress(mon.Report(), time.Since(start)))
		}
	}
}

// targets are what the cluster is now: from the journal when an operation
// recorded its nodes, else the single node on its configured addresses
// (asking the cloud plugin only for an address configured by id). It
// returns where they came from, for the operator.
func (f *monitorFlags) targets(ctx context.Context, cfg *config.Cluster, stderr io.Writer) ([]availability.Target, string, error) {
	recs, err := journalRecords(cfg)
	if err != nil {
		return nil, "", fmt.Errorf("reading the cluster's operations: %w", err)
	}
	targets, rec, err := recordedTargets(cfg, recs)
	if err != nil {
		return nil, "", err
	}
	if rec != nil {
		return targets, fmt.Sprintf("as %s (%s) left it", rec.ID, rec.Phase), nil
	}
	var cloud addressLookup
	if !addressesAreIPs(cfg) {
		plugin, err := openCloud(ctx, cfg, stderr)
		if err != nil {
			return nil, "", err
		}
		defer plugin.Close()
		cloud = plugin
	}
	targets, err = singleNodeTargets(ctx, cfg, cloud)
	if err != nil {
		return nil, "", err
	}
	return targets, fmt.Sprintf("its single node on its configured addresses (no migration in the journal in %s)", cfg.StateDir), nil
}

// journalRecords are the cluster's operations, oldest first: none if
// triad never journaled one in its state directory (which then stays
// untouched). The journal is closed again at once: an operation started
// while the monitor runs needs it.
func journalRecords(cfg *config.Cluster) ([]*engine.Record, error) {
	if _, err := os.Stat(filepath.Join(cfg.StateDir, "journal.db")); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	j, err := engine.OpenJournal(cfg.StateDir, 5*time.Second)
	if err != nil {
		return nil, err
	}
	defer j.Close()
	return j.List(cfg.Name)
}

// recordedTargets are what the newest operation that knew the cluster's
// nodes left serving: a migration past its preflight (its original node
// until traffic opened, the new nodes after), an upgrade past its
// preflight (each node's new VM once switched, its old one before) —
// exactly what that operation's own monitor probed last. A newer
// operation that stopped before it knew the nodes (a preflight that
// failed) changed nothing and is passed over. Nil when no operation got
// that far.
func recordedTargets(cfg *config.Cluster, recs []*engine.Record) ([]availability.Target, *engine.Record, error) {
	for _, rec := range slices.Backward(recs) {
		switch rec.Kind {
		case migrate.Kind:
			st, err := engine.LoadState[migrate.State](rec)
			if err != nil {
				return nil, nil, err
			}
			if st.Original.PrivateIP != "" || st.OpenedAt != nil {
				return migrationTargets(cfg, st), rec, nil
			}
		case upgrade.Kind:
			st, err := engine.LoadState[upgrade.State](rec)
			if err != nil {
				return nil, nil, err
			}
			if len(st.Nodes) > 0 {
				return upgradeTargets(cfg, st), rec, nil
			}
		}
	}
	return nil, nil, nil
}

// addressLookup resolves a configured address (a cloud id or the IP
// itself) to its IP: the cloud plugin's GetAddress.
type addressLookup interface {
	GetAddress(ctx context.Context, id string) (sdk.Address, error)
}

var _ addressLookup = (*sdk.Plugin)(nil)

func addressesAreIPs(cfg *config.Cluster) bool {
	return net.ParseIP(cfg.ControlPlane.PrivateAddress) != nil && net.ParseIP(cfg.ControlPlane.PublicAddress) != nil
}

// singleNodeTargets are a cluster triad never migrated: its configured
// client addresses, both still the single node's own, and the node itself
// through its private address (migrate's preflight refuses a private
// address that is not attached to the instance). An address configured by
// id is resolved through cloud, which may be nil when both are IPs.
func singleNodeTargets(ctx context.Context, cfg *config.Cluster, cloud addressLookup) ([]availability.Target, error) {
	resolve := func(field, ref string) (string, error) {
		if net.ParseIP(ref) != nil {
			return ref, nil
		}
		if cloud == nil {
			return "", fmt.Errorf("%s %q is not an IP and there is no cloud plugin to resolve it", field, ref)
		}
		a, err := cloud.GetAddress(ctx, ref)
		if err != nil {
			return "", fmt.Errorf("resolving %s %q through the cloud plugin: %w", field, ref, err)
		}
		if net.ParseIP(a.IP) == nil {
			return "", fmt.Errorf("%s %q: the cloud plugin gave no IP for it (%q)", field, ref, a.IP)
		}
		return a.IP, nil
	}
	privateIP, err := resolve("controlPlane.privateAddress", cfg.ControlPlane.PrivateAddress)
	if err != nil {
		return nil, err
	}
	publicIP, err := resolve("controlPlane.publicAddress", cfg.ControlPlane.PublicAddress)
	if err != nil {
		return nil, err
	}
	node := controlplane.Node{InstanceID: cfg.ControlPlane.Instance, Name: cfg.ControlPlane.Instance, PrivateIP: privateIP}
	return probeTargets(cfg, privateIP, publicIP, []controlplane.Node{node}), nil
}

// checkReportWritable makes the report's directory and checks that a file
// can be created in it.
func checkReportWritable(path string) error {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return fmt.Errorf("--report %s is a directory; name the file", path)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("report %s: %w", path, err)
	}
	probe, err := os.CreateTemp(dir, ".triad-monitor-*")
	if err != nil {
		return fmt.Errorf("report %s: cannot write in %s: %w", path, dir, err)
	}
	probe.Close()
	return os.Remove(probe.Name())
}

// belowPeriod is a run of consecutive windows below --fail-below.
type belowPeriod struct {
	Start   time.Time
	Windows int
	Lowest  float64
}

// periodsBelow are the runs of complete windows below percent. The run
// ends inside its last window, which is in the report but not judged: a
// few milliseconds of window can hold no probe at all, and a window
// without a probe counts as unavailable.
func periodsBelow(r availability.Report, percent float64) []belowPeriod {
	var out []belowPeriod
	prev := -2
	for i, w := range r.Windows {
		if w.Availability >= percent || w.Start.Add(r.Window).After(r.End) {
			continue
		}
		if i == prev+1 {
			p := &out[len(out)-1]
			p.Windows++
			p.Lowest = min(p.Lowest, w.Availability)
		} else {
			out = append(out, belowPeriod{Start: w.Start, Windows: 1, Lowest: w.Availability})
		}
		prev = i
	}
	return out
}

// describePeriods names the windows below the threshold, a run of them at
// a time; the report has them all.
func describePeriods(ps []belowPeriod, window time.Duration) string {
	const shown = 5
	total := 0
	var parts []string
	for i, p := range ps {
		total += p.Windows
		if i < shown {
			parts = append(parts, fmt.Sprintf("%s-%s (%d windows, lowest %.1f%%)",
				p.Start.Format("15:04:05.000"), p.Start.Add(time.Duration(p.Windows)*window).Format("15:04:05.000"), p.Windows, p.Lowest))
		}
	}
	if len(ps) > shown {
		parts = append(parts, fmt.Sprintf("and %d more periods (see the report)", len(ps)-shown))
	}
	periods := "1 period"
	if len(ps) > 1 {
		periods = fmt.Sprintf("%d periods", len(ps))
	}
	return fmt.Sprintf("%d windows in %s: %s", total, periods, strings.Join(parts, ", "))
}

func (f *monitorFlags) printSummary(w io.Writer, cluster string, r availability.Report, below []belowPeriod, path string) {
	fmt.Fprintf(w, "cluster %s, %s to %s: availability %s\n\n", cluster, r.Start.Format("15:04:05"), r.End.Format("15:04:05"), availabilitySummary(r))
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TARGET\tKIND\tADDRESS\tREADS\tFAILED")
	for _, t := range r.Targets {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\n", t.Name, t.Kind, t.Address, t.Requests, t.Failed)
	}
	tw.Flush()
	if len(r.FirstErrors) > 0 {
		fmt.Fprintln(w, "\nfirst failures:")
		for _, e := range r.FirstErrors {
			fmt.Fprintln(w, "  "+firstLine(e))
		}
	}
	if f.failBelowSet {
		fmt.Fprintln(w)
		if len(below) == 0 {
			fmt.Fprintf(w, "no window below %g%%\n", f.failBelow)
		} else {
			fmt.Fprintf(w, "below %g%%: %s\n", f.failBelow, describePeriods(below, r.Window))
		}
	}
	if path != "" {
		fmt.Fprintf(w, "\nreport: %s\n", path)
	}
}

// progress is the run so far in one line short enough for a terminal.
func progress(r availability.Report, elapsed time.Duration) string {
	at := fmt.Sprintf("[%8s]", elapsed.Truncate(time.Second))
	n := len(r.Windows)
	if n < 2 {
		return at + " waiting for the first complete window"
	}
	last := r.Windows[n-2] // the last complete one
	down := "-"
	if len(last.NodesDown) > 0 {
		down = strings.Join(last.NodesDown, ",")
	}
	return fmt.Sprintf("%s window %.1f%%  mean %.2f%%  lowest %.1f%%  failed %d/%d  nodes down: %s",
		at, last.Availability, r.Availability, r.MinAvailability, r.Failed, r.Requests, down)
}

// progressLine rewrites one line on a terminal and appends lines
// elsewhere (a log file, a CI job).
type progressLine struct {
	w     io.Writer
	tty   bool
	shown bool
}

func (p *progressLine) show(s string) {
	if !p.tty {
		fmt.Fprintln(p.w, s)
		return
	}
	fmt.Fprintf(p.w, "\r\033[K%s", s)
	p.shown = true
}

func (p *progressLine) end() {
	if p.shown {
		fmt.Fprintln(p.w)
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
