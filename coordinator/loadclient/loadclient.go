// Package loadclient is the live load that migration and upgrade tests run
// against a cluster: real client-go traffic through every given address —
// numbered writes, reads and a watch — recording every acknowledged write
// and every failed request with its time, so that afterwards a test can
// show that no acknowledged write was lost and say exactly when requests
// failed.
package loadclient

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http/httptrace"
	"sort"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Target is one address the load goes through.
type Target struct {
	Name   string
	Config *rest.Config
}

// Options tune the load.
type Options struct {
	// Namespace receives the load's ConfigMaps; created if missing.
	Namespace string
	// Interval between writes per target; default 100ms.
	Interval time.Duration
}

// Event is one request outcome worth keeping.
type Event struct {
	At     time.Time `json:"at"`
	Target string    `json:"target"`
	Op     string    `json:"op"`
	Seq    int       `json:"seq,omitempty"`
	Err    string    `json:"err,omitempty"`
	// Conn is the local address of the connection a failed request went
	// out on, to find it in a load balancer's log.
	Conn string `json:"conn,omitempty"`
}

// Report is what a run recorded.
type Report struct {
	// RunID is in the name of every object the run wrote, so that runs
	// against the same namespace never collide and Missing only counts
	// this run's objects.
	RunID       string  `json:"runID"`
	Acked       []Event `json:"acked"`
	Failures    []Event `json:"failures"`
	Reads       int     `json:"reads"`
	WatchEvents int     `json:"watchEvents"`
}

func (r *Report) add(mu *sync.Mutex, e Event, acked bool) {
	mu.Lock()
	defer mu.Unlock()
	switch {
	case e.Err != "":
		r.Failures = append(r.Failures, e)
	case acked:
		r.Acked = append(r.Acked, e)
	case e.Op == "read":
		r.Reads++
	case e.Op == "watch":
		r.WatchEvents++
	}
}

// Run drives the load until ctx ends and returns what it recorded. An error
// means the load could not start at all.
func Run(ctx context.Context, targets []Target, opts Options) (*Report, error) {
	if len(targets) == 0 {
		return nil, errors.New("no target")
	}
	if opts.Namespace == "" {
		opts.Namespace = "triad-load"
	}
	if opts.Interval <= 0 {
		opts.Interval = 100 * time.Millisecond
	}
	clients := make([]kubernetes.Interface, len(targets))
	for i, t := range targets {
		cfg := rest.CopyConfig(t.Config)
		cfg.Timeout = 5 * time.Second
		// The load measures the server, not client-go's default throttle
		// (5 QPS), which would queue requests past the end of the run.
		cfg.QPS, cfg.Burst = 1000, 1000
		c, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return nil, fmt.Errorf("client for %s: %w", t.Name, err)
		}
		clients[i] = c
	}
	_, err := clients[0].CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: opts.Namespace}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("creating namespace %s: %w", opts.Namespace, err)
	}
	id := make([]byte, 4)
	rand.Read(id)
	report := &Report{RunID: hex.EncodeToString(id)}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var seq int
	var seqMu sync.Mutex
	next := func() int { seqMu.Lock(); defer seqMu.Unlock(); seq++; return seq }

	for i, t := range targets {
		wg.Add(2)
		go func() { // writes and reads
			defer wg.Done()
			cms := clients[i].CoreV1().ConfigMaps(opts.Namespace)
			tick := time.NewTicker(opts.Interval)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				n := next()
				name := objectName(report.RunID, n)
				tctx, conn := traced(ctx)
				_, err := cms.Create(tctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"seq": strconv.Itoa(n), "via": t.Name}}, metav1.CreateOptions{})
				if ctx.Err() != nil {
					return // the run ended mid-request: neither acked nor failed
				}
				report.add(&mu, event(t.Name, "write", n, err, conn()), err == nil)
				if err != nil {
					continue
				}
				tctx, conn = traced(ctx)
				_, err = cms.Get(tctx, name, metav1.GetOptions{})
				if ctx.Err() != nil {
					return
				}
				report.add(&mu, event(t.Name, "read", n, err, conn()), false)
			}
		}()
		go func() { // a watch, restarted whenever it ends
			defer wg.Done()
			for ctx.Err() == nil {
				w, err := clients[i].CoreV1().ConfigMaps(opts.Namespace).Watch(ctx, metav1.ListOptions{})
				if err != nil {
					if ctx.Err() == nil {
						report.add(&mu, event(t.Name, "watch", 0, err, ""), false)
						time.Sleep(opts.Interval)
					}
					continue
				}
				for range w.ResultChan() {
					report.add(&mu, event(t.Name, "watch", 0, nil, ""), false)
				}
				w.Stop()
			}
		}()
	}
	wg.Wait()
	sort.Slice(report.Acked, func(i, j int) bool { return report.Acked[i].Seq < report.Acked[j].Seq })
	return report, nil
}

func objectName(runID string, seq int) string { return fmt.Sprintf("load-%s-%07d", runID, seq) }

func event(target, op string, seq int, err error, conn string) Event {
	e := Event{At: time.Now().UTC(), Target: target, Op: op, Seq: seq}
	if err != nil {
		e.Err = err.Error()
		e.Conn = conn
	}
	return e
}

// traced returns ctx with a trace that records the local address of the
// connection the request goes out on, and a function that reads it.
func traced(ctx context.Context) (context.Context, func() string) {
	var mu sync.Mutex
	var local string
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
		mu.Lock()
		defer mu.Unlock()
		local = i.Conn.LocalAddr().String()
	}})
	return ctx, func() string { mu.Lock(); defer mu.Unlock(); return local }
}

// Missing returns the acknowledged writes of r that the cluster behind cfg
// does not hold.
func Missing(ctx context.Context, cfg *rest.Config, namespace string, r *Report) ([]int, error) {
	if namespace == "" {
		namespace = "triad-load"
	}
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	list, err := c.CoreV1().ConfigMaps(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	have := map[string]bool{}
	for _, cm := range list.Items {
		have[cm.Name] = true
	}
	var missing []int
	for _, a := range r.Acked {
		if !have[objectName(r.RunID, a.Seq)] {
			missing = append(missing, a.Seq)
		}
	}
	return missing, nil
}
