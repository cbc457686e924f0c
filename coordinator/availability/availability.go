// Package availability measures what an operation (or maintenance triad
// does not drive, under 'triad monitor') costs the clients of a control
// plane. While it runs, a Monitor sends a real API read
// (GET /api/v1/namespaces/default, through kube-apiserver to etcd) through
// each load-balancer address and to each control-plane node directly, on a
// fresh connection every time, so a closed listener or a node dropped by a
// load balancer shows at once.
//
// Availability of a window = the percentage of successful requests through
// the load-balancer addresses — but 0 whenever more than one control-plane
// node is down (every probe to it in the window failed): with three nodes,
// two down is a lost quorum however many requests happen to succeed. The
// report after the operation has the per-window timeline, the longest
// unavailable period (consecutive windows at 0) and the failed request
// count; while it runs the same figures are Prometheus metrics.
package availability

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/client-go/rest"
)

// Kind says what a target is.
type Kind string

const (
	// LoadBalancer is an address clients use (a load balancer's, or before
	// a migration the single node's).
	LoadBalancer Kind = "lb"
	// Node is one control-plane node's kube-apiserver.
	Node Kind = "node"
)

// Target is one endpoint to probe.
type Target struct {
	Name    string `json:"name"`
	Kind    Kind   `json:"kind"`
	Address string `json:"address"` // host:port
}

// Config tunes a monitor.
type Config struct {
	// Cluster labels the metrics.
	Cluster string
	// Interval between two probes of one target; default 250ms.
	Interval time.Duration
	// Window of the availability figure; default 1s.
	Window time.Duration
	// Timeout of one probe; default 2s.
	Timeout time.Duration
}

func (c Config) withDefaults() Config {
	if c.Interval <= 0 {
		c.Interval = 250 * time.Millisecond
	}
	if c.Window <= 0 {
		c.Window = time.Second
	}
	if c.Timeout <= 0 {
		c.Timeout = 2 * time.Second
	}
	return c
}

type probe struct {
	// at is when the probe started, end when it returned.
	at, end time.Time
	target  Target
	ok      bool
	err     string
	// timedOut: no answer within the probe's timeout (slow, not refused).
	timedOut bool
}

// Monitor probes targets until its context ends.
type Monitor struct {
	cfg     Config
	client  *http.Client
	headers http.Header
	targets atomic.Pointer[[]Target]

	mu     sync.Mutex
	probes []probe
	start  time.Time
	end    time.Time

	registry  *prometheus.Registry
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	ratio     prometheus.Gauge
	nodesDown prometheus.Gauge
}

// New builds a monitor that authenticates like rest (a kubeconfig's
// credentials and CA; its host is ignored: each probe goes to its target).
func New(cfg Config, restCfg *rest.Config, targets []Target) (*Monitor, error) {
	cfg = cfg.withDefaults()
	tlsCfg, err := rest.TLSConfigFor(restCfg)
	if err != nil {
		return nil, fmt.Errorf("availability monitor: %w", err)
	}
	if tlsCfg == nil {
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	m := &Monitor{
		cfg: cfg, headers: http.Header{},
		// No keep-alive: every probe is a new connection, as a client that
		// (re)connects would make.
		client:   &http.Client{Timeout: cfg.Timeout, Transport: &http.Transport{TLSClientConfig: tlsCfg, DisableKeepAlives: true}},
		registry: prometheus.NewRegistry(),
	}
	if restCfg.BearerToken != "" {
		m.headers.Set("Authorization", "Bearer "+restCfg.BearerToken)
	}
	labels := prometheus.Labels{"cluster": cfg.Cluster}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "triad_probe_requests_total", Help: "API reads sent by the availability monitor, by target and result.", ConstLabels: labels,
	}, []string{"target", "kind", "result"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "triad_probe_duration_seconds", Help: "Latency of the monitor's API reads.", ConstLabels: labels,
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2},
	}, []string{"kind"})
	m.ratio = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "triad_availability_ratio", Help: "Availability of the last complete window (0 to 1): successful reads through the load balancers, 0 when more than one control-plane node is down.", ConstLabels: labels,
	})
	m.nodesDown = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "triad_control_plane_nodes_down", Help: "Control-plane nodes that answered no probe in the last complete window.", ConstLabels: labels,
	})
	m.registry.MustRegister(m.requests, m.latency, m.ratio, m.nodesDown)
	m.SetTargets(targets)
	return m, nil
}

// SetTargets replaces the targets, e.g. when an operation's new nodes come
// up; probes already made stay in the report.
func (m *Monitor) SetTargets(t []Target) {
	t = slices.Clone(t)
	m.targets.Store(&t)
}

// Handler serves the Prometheus metrics.
func (m *Monitor) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry})
}

// Run probes every target each Interval until ctx ends.
func (m *Monitor) Run(ctx context.Context) {
	m.mu.Lock()
	m.start = time.Now()
	m.mu.Unlock()
	tick := time.NewTicker(m.cfg.Interval)
	defer tick.Stop()
	window := time.NewTicker(m.cfg.Window)
	defer window.Stop()
	var wg sync.WaitGroup
	defer func() {
		wg.Wait()
		m.mu.Lock()
		m.end = time.Now()
		m.mu.Unlock()
	}()
	for {
		for _, t := range *m.targets.Load() {
			wg.Add(1)
			go func() { defer wg.Done(); m.probe(ctx, t) }()
		}
		select {
		case <-ctx.Done():
			return
		case <-window.C:
			m.publishLastWindow()
			<-tick.C
		case <-tick.C:
		}
	}
}

func (m *Monitor) probe(ctx context.Context, t Target) {
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+t.Address+"/api/v1/namespaces/default", nil)
	if err != nil {
		return
	}
	req.Header = m.headers.Clone()
	resp, err := m.client.Do(req)
	if ctx.Err() != nil {
		return // the monitor stopped; not the cluster's fault
	}
	p := probe{at: start, end: time.Now(), target: t}
	switch {
	case err != nil:
		p.err = err.Error()
		var ne net.Error
		p.timedOut = errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
	case resp.StatusCode != http.StatusOK:
		p.err = resp.Status
	default:
		p.ok = true
	}
	if resp != nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	result := "success"
	if !p.ok {
		result = "failure"
	}
	m.requests.WithLabelValues(t.Name, string(t.Kind), result).Inc()
	m.latency.WithLabelValues(string(t.Kind)).Observe(time.Since(start).Seconds())
	m.mu.Lock()
	m.probes = append(m.probes, p)
	m.mu.Unlock()
}

func (m *Monitor) publishLastWindow() {
	r := m.Report()
	if n := len(r.Windows); n >= 2 {
		last := r.Windows[n-2] // the last complete one
		m.ratio.Set(last.Availability / 100)
		m.nodesDown.Set(float64(len(last.NodesDown)))
	}
}

// Window is one window of the timeline.
type Window struct {
	Start    time.Time `json:"start"`
	Requests int       `json:"requests"`
	Failed   int       `json:"failed"`
	// NodesDown answered no probe in the window.
	NodesDown []string `json:"nodesDown,omitempty"`
	// Availability in percent.
	Availability float64 `json:"availability"`
}

// Report is the monitor's verdict on an operation.
type Report struct {
	Start  time.Time     `json:"start"`
	End    time.Time     `json:"end"`
	Window time.Duration `json:"windowNs"`
	// Requests and Failed count the probes through the load-balancer
	// addresses; NodeRequests and NodeFailed those sent to nodes directly.
	Requests int `json:"requests"`
	Failed   int `json:"failed"`
	// TimedOut counts the failed client-address probes that got no answer
	// within the probe timeout (a slow server, or a loaded prober), as
	// opposed to a refusal or an error status.
	TimedOut     int `json:"timedOut"`
	NodeRequests int `json:"nodeRequests"`
	NodeFailed   int `json:"nodeFailed"`
	// Availability is the mean of the windows', in percent.
	Availability    float64 `json:"availability"`
	MinAvailability float64 `json:"minAvailability"`
	// LongestUnavailable is the longest run of windows at 0.
	LongestUnavailable time.Duration `json:"longestUnavailableNs"`
	// FirstErrors are a few failures, for the operator.
	FirstErrors []string `json:"firstErrors,omitempty"`
	// Targets are the endpoints probed, each with its own tally: the
	// windows say how available the cluster was, these which endpoint
	// failed (during a rolling reboot, each node in turn).
	Targets []TargetTally `json:"targets"`
	Windows []Window      `json:"windows"`
}

// TargetTally counts one target's probes over a report.
type TargetTally struct {
	Target
	Requests int `json:"requests"`
	Failed   int `json:"failed"`
}

// Report computes the report of the probes so far.
func (m *Monitor) Report() Report {
	m.mu.Lock()
	probes := slices.Clone(m.probes)
	start, end := m.start, m.end
	m.mu.Unlock()
	if end.IsZero() {
		end = time.Now()
	}
	// A probe can wait up to its timeout; when the monitor stops (or while
	// it runs) the probes of the last Timeout have not all returned, and
	// those that never will are not recorded: those windows are not
	// complete, so they are not reported.
	if end.Sub(start) > m.cfg.Timeout {
		end = end.Add(-m.cfg.Timeout)
	}
	return compute(probes, start, end, m.cfg.Window)
}

func compute(probes []probe, start, end time.Time, window time.Duration) Report {
	r := Report{Start: start, End: end, Window: window, MinAvailability: 100}
	if start.IsZero() || !end.After(start) {
		return r
	}
	n := int((end.Sub(start) + window - 1) / window)
	r.Windows = make([]Window, n)
	type nodeTally struct{ sent, ok int }
	// failing[i] holds the nodes a failed probe was waiting on during
	// window i: a host that black-holes packets makes each probe wait out
	// its timeout, longer than a window, so a window can pass without a
	// probe of it having started, let alone answered.
	failing := make([]map[string]bool, n)
	nodes := make([]map[string]*nodeTally, n)
	targets := map[Target]*TargetTally{}
	for i := range r.Windows {
		r.Windows[i].Start = start.Add(time.Duration(i) * window)
		nodes[i] = map[string]*nodeTally{}
	}
	for _, p := range probes {
		i := int(p.at.Sub(start) / window)
		if i < 0 || i >= n {
			continue
		}
		if !p.ok && len(r.FirstErrors) < 5 {
			r.FirstErrors = append(r.FirstErrors, fmt.Sprintf("%s %s: %s", p.at.Format("15:04:05.000"), p.target.Name, p.err))
		}
		tt := targets[p.target]
		if tt == nil {
			tt = &TargetTally{Target: p.target}
			targets[p.target] = tt
		}
		tt.Requests++
		if !p.ok {
			tt.Failed++
		}
		switch p.target.Kind {
		case LoadBalancer:
			r.Windows[i].Requests++
			r.Requests++
			if !p.ok {
				r.Windows[i].Failed++
				r.Failed++
				if p.timedOut {
					r.TimedOut++
				}
			}
		case Node:
			r.NodeRequests++
			t := nodes[i][p.target.Name]
			if t == nil {
				t = &nodeTally{}
				nodes[i][p.target.Name] = t
			}
			t.sent++
			if p.ok {
				t.ok++
			} else {
				r.NodeFailed++
			}
			if !p.ok {
				last := int(p.end.Sub(start) / window)
				for j := i; j <= last && j < n; j++ {
					if failing[j] == nil {
						failing[j] = map[string]bool{}
					}
					failing[j][p.target.Name] = true
				}
			}
		}
	}
	for _, tt := range targets {
		r.Targets = append(r.Targets, *tt)
	}
	// The client addresses first, then the nodes, each by name.
	slices.SortFunc(r.Targets, func(a, b TargetTally) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Name, b.Name), cmp.Compare(a.Address, b.Address))
	})
	run, sum := 0, 0.0
	for i := range r.Windows {
		w := &r.Windows[i]
		for name, t := range nodes[i] {
			if t.ok == 0 {
				w.NodesDown = append(w.NodesDown, name)
			}
		}
		for name := range failing[i] {
			if _, probed := nodes[i][name]; !probed {
				w.NodesDown = append(w.NodesDown, name)
			}
		}
		slices.Sort(w.NodesDown)
		switch {
		case len(w.NodesDown) > 1 || w.Requests == 0:
			w.Availability = 0
		default:
			w.Availability = 100 * float64(w.Requests-w.Failed) / float64(w.Requests)
		}
		sum += w.Availability
		r.MinAvailability = min(r.MinAvailability, w.Availability)
		if w.Availability == 0 {
			run++
			r.LongestUnavailable = max(r.LongestUnavailable, time.Duration(run)*window)
		} else {
			run = 0
		}
	}
	r.Availability = sum / float64(n)
	return r
}
