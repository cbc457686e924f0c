package server_test

import (
	"crypto/tls"
	"google.golang.org/protobuf/types/known/durationpb"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/triad-k8s/triad/agent/server"
	agentv1 "github.com/triad-k8s/triad/proto/triad/agent/v1"
)

// fakeAPIServer answers /readyz, /livez and /version; ready toggles /readyz.
func fakeAPIServer(t *testing.T) (*httptest.Server, *atomic.Bool) {
	ready := &atomic.Bool{}
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/readyz":
			if !ready.Load() {
				http.Error(w, "[-]etcd failed", http.StatusInternalServerError)
				return
			}
			w.Write([]byte("ok"))
		case "/livez":
			w.Write([]byte("ok"))
		case "/version":
			w.Write([]byte(`{"gitVersion":"v1.36.3"}`))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(ts.Close)
	return ts, ready
}

func TestGateAdmitsTrafficOnlyWhenOpenAndTheAPIServerIsReady(t *testing.T) {
	p := newTestPKI(t)
	apiserver, ready := fakeAPIServer(t)
	addr, srv := startAgentWith(t, server.Config{Cluster: cluster, NodeName: "cp-0", StateDir: t.TempDir(), TLS: p.agent, APIServerURL: apiserver.URL})
	c := dial(t, addr, p.coordinator)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gateSrv := srv.GateServer()
	go gateSrv.ServeTLS(l, "", "")
	t.Cleanup(func() { gateSrv.Close() })
	// Like a cloud health checker: HTTPS, no client certificate, no CA.
	checker := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	probe := func() int {
		resp, err := checker.Get("https://" + l.Addr().String() + server.GatePath)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	serving := func() bool {
		g, err := c.GetGate(ctx(t), &agentv1.GetGateRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return g.GetServing()
	}

	ready.Store(true)
	if code := probe(); code != http.StatusServiceUnavailable || serving() {
		t.Fatalf("closed gate, ready apiserver: %d, serving=%v; want 503 and not serving", code, serving())
	}
	if _, err := c.SetGate(ctx(t), &agentv1.SetGateRequest{Header: header(1), Open: true}); err != nil {
		t.Fatal(err)
	}
	if code := probe(); code != http.StatusOK || !serving() {
		t.Fatalf("open gate, ready apiserver: %d, serving=%v; want 200 and serving", code, serving())
	}
	ready.Store(false)
	if code := probe(); code != http.StatusServiceUnavailable || serving() {
		t.Fatalf("open gate, apiserver not ready: %d, serving=%v; want 503 and not serving", code, serving())
	}

	h, err := c.GetHealth(ctx(t), &agentv1.GetHealthRequest{})
	if err != nil {
		t.Fatal(err)
	}
	nh := h.GetHealth()
	if nh.GetApiserverReady() || !nh.GetApiserverLive() || !nh.GetGateOpen() || nh.GetKubernetesVersion() != "v1.36.3" || len(nh.GetProblems()) == 0 {
		t.Fatalf("health with an unready apiserver: %v", nh)
	}
}

func TestWatchHealthSendsAReportWhenSomethingChanges(t *testing.T) {
	p := newTestPKI(t)
	apiserver, ready := fakeAPIServer(t)
	ready.Store(true)
	addr, _ := startAgentWith(t, server.Config{Cluster: cluster, NodeName: "cp-0", StateDir: t.TempDir(), TLS: p.agent, APIServerURL: apiserver.URL})
	c := dial(t, addr, p.observer)
	// No regular report within the test: only a change can send one.
	stream, err := c.WatchHealth(ctx(t), &agentv1.WatchHealthRequest{Interval: durationpb.New(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if !first.GetHealth().GetApiserverReady() {
		t.Fatalf("first report: %v", first)
	}
	ready.Store(false)
	got := make(chan *agentv1.WatchHealthResponse, 1)
	go func() {
		msg, err := stream.Recv()
		if err != nil {
			t.Error(err)
		}
		got <- msg
	}()
	select {
	case msg := <-got:
		if msg.GetHealth().GetApiserverReady() {
			t.Fatalf("a report that changed nothing arrived: %v", msg)
		}
	case <-time.After(8 * time.Second): // the change is seen within a second
		t.Fatal("no report of the apiserver becoming unready")
	}
}
