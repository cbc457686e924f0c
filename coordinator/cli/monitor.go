package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/triad-k8s/triad/coordinator/availability"
	"github.com/triad-k8s/triad/coordinator/config"
	"github.com/triad-k8s/triad/coordinator/controlplane"
	"github.com/triad-k8s/triad/coordinator/engine"
	"github.com/triad-k8s/triad/coordinator/migrate"
)

// migrationTargets are what the availability monitor probes during a
// migration: the two addresses clients use (the node's, then the load
// balancers'), and the original node until traffic is open, the new
// nodes after.
func migrationTargets(cfg *config.Cluster, st *migrate.State) []availability.Target {
	nodes := []controlplane.Node{st.Original}
	if st.OpenedAt != nil {
		nodes = st.Nodes
	}
	return probeTargets(cfg, st.PrivateIP, st.PublicIP, nodes)
}

// probeTargets are the client addresses (load balancers, or the single
// node before a migration opens traffic) and each control-plane node.
func probeTargets(cfg *config.Cluster, privateIP, publicIP string, nodes []controlplane.Node) []availability.Target {
	port := strconv.Itoa(cfg.ControlPlane.APIServerPort)
	var t []availability.Target
	for _, a := range []struct{ name, ip string }{{"private", privateIP}, {"public", publicIP}} {
		if a.ip != "" {
			t = append(t, availability.Target{Name: a.name, Kind: availability.LoadBalancer, Address: net.JoinHostPort(a.ip, port)})
		}
	}
	for _, n := range nodes {
		if n.PrivateIP != "" {
			t = append(t, availability.Target{Name: "node/" + n.Name, Kind: availability.Node, Address: net.JoinHostPort(n.PrivateIP, port)})
		}
	}
	return t
}

// operationMonitor runs an availability monitor for one operation (or for
// 'triad monitor').
type operationMonitor struct {
	*availability.Monitor
	cancel context.CancelFunc
	done   chan struct{}
	server *http.Server
}

// startMonitor starts probing targets (tuned by tune; zero fields take
// the monitor's defaults) and, if metricsAddr is set, serving Prometheus
// metrics there until stop or end.
func startMonitor(ctx context.Context, cfg *config.Cluster, tune availability.Config, targets []availability.Target, metricsAddr string, stderr io.Writer) (*operationMonitor, error) {
	restCfg, err := clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", cfg.Kubeconfig, err)
	}
	tune.Cluster = cfg.Name
	m, err := availability.New(tune, restCfg, targets)
	if err != nil {
		return nil, err
	}
	om := &operationMonitor{Monitor: m, done: make(chan struct{})}
	if metricsAddr != "" {
		ln, err := net.Listen("tcp", metricsAddr)
		if err != nil {
			return nil, fmt.Errorf("--metrics-addr: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", m.Handler())
		om.server = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go om.server.Serve(ln)
		fmt.Fprintf(stderr, "availability metrics on http://%s/metrics\n", ln.Addr())
	}
	var mctx context.Context
	mctx, om.cancel = context.WithCancel(context.WithoutCancel(ctx))
	go func() { defer close(om.done); m.Run(mctx) }()
	return om, nil
}

// stop ends the monitor, writes its report to
// <stateDir>/availability/<operation>.json (<operation>.2.json for a
// resume, and so on), prints a summary and returns
// the report.
func (om *operationMonitor) stop(cfg *config.Cluster, operation string, stderr io.Writer) availability.Report {
	r := om.end()
	path := reportPath(filepath.Join(cfg.StateDir, "availability"), operation)
	if err := writeJSON(path, r); err != nil {
		fmt.Fprintf(stderr, "writing the availability report: %v\n", err)
		path = ""
	}
	fmt.Fprintf(stderr, "availability: %s", availabilitySummary(r))
	if path != "" {
		fmt.Fprintf(stderr, "; report %s", path)
	}
	fmt.Fprintln(stderr)
	return r
}

// end stops probing and serving metrics and returns the final report.
func (om *operationMonitor) end() availability.Report {
	om.cancel()
	<-om.done
	if om.server != nil {
		om.server.Close()
	}
	return om.Report()
}

// availabilitySummary is a report in one sentence.
func availabilitySummary(r availability.Report) string {
	return fmt.Sprintf("%.2f%% (mean of %d windows of %s), lowest %.1f%%, longest unavailable %s; %d of %d reads through the client addresses failed",
		r.Availability, len(r.Windows), r.Window, r.MinAvailability, r.LongestUnavailable, r.Failed, r.Requests)
}

func writeJSON(path string, v any) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o600)
}

// reportPath is dir/<operation>.json, or the first free
// dir/<operation>.<n>.json when an earlier run of the operation (before a
// resume) wrote that.
func reportPath(dir, operation string) string {
	path := filepath.Join(dir, operation+".json")
	for n := 2; ; n++ {
		if _, err := os.Stat(path); os.IsNotExist(err) {
			return path
		}
		path = filepath.Join(dir, fmt.Sprintf("%s.%d.json", operation, n))
	}
}

// drive runs, resumes or rolls back an operation under an availability
// monitor whose targets follow the operation's state.
func drive[S any](ctx context.Context, cfg *config.Cluster, runner *engine.Runner[S], rec *engine.Record, state *S, what string, targets func() []availability.Target, metricsAddr string, stderr io.Writer) error {
	mon, err := startMonitor(ctx, cfg, availability.Config{}, targets(), metricsAddr, stderr)
	if err != nil {
		return err
	}
	progress := runner.Progress
	runner.Progress = func(e engine.Event) {
		progress(e)
		// Between steps: the state is the engine's to read.
		mon.SetTargets(targets())
	}
	switch what {
	case "rollback":
		err = runner.Rollback(ctx, rec, state)
	case "resume":
		err = runner.Resume(ctx, rec, state)
	default:
		err = runner.Forward(ctx, rec, state)
	}
	mon.stop(cfg, rec.ID, stderr)
	return err
}
