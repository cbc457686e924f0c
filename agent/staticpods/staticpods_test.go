package staticpods_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/triad-k8s/triad/agent/staticpods"
	"github.com/triad-k8s/triad/agent/staticpods/critest"
)

const node = "cp-0"

// healthEndpoint answers 503 for the first fail requests, then 200.
type healthEndpoint struct {
	fail  int64
	calls atomic.Int64
}

func (h *healthEndpoint) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	if h.calls.Add(1) <= h.fail {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	fmt.Fprint(w, "ok")
}

type fixture struct {
	mgr     *staticpods.Manager
	cri     *critest.Server
	kubelet *critest.Kubelet
	health  *healthEndpoint
}

var components = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"}

func newFixture(t *testing.T) fixture {
	t.Helper()
	root := t.TempDir()
	return newFixtureIn(t, filepath.Join(root, "manifests"), filepath.Join(root, "parked"))
}

func newFixtureIn(t *testing.T, manifests, parked string) fixture {
	t.Helper()
	if err := os.MkdirAll(manifests, 0o755); err != nil {
		t.Fatal(err)
	}
	health := &healthEndpoint{fail: 3}
	srv := httptest.NewServer(health)
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	for _, c := range components {
		writeManifest(t, filepath.Join(manifests, c+".yaml"), c, port)
	}
	cri := critest.Start(t)
	k := critest.SimulateKubelet(t, cri, manifests, node, components)
	rt, err := staticpods.NewCRIRuntime(t.Context(), cri.Endpoint, node)
	if err != nil {
		t.Fatal(err)
	}
	mgr := &staticpods.Manager{ManifestDir: manifests, ParkedDir: parked, Runtime: rt, Prober: staticpods.NewHTTPProber(""), PollInterval: 20 * time.Millisecond}
	// Wait for the simulated kubelet to start everything.
	waitCtx, waitCancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer waitCancel()
	if _, err := mgr.Start(waitCtx, components); err != nil {
		t.Fatal(err)
	}
	return fixture{mgr: mgr, cri: cri, kubelet: k, health: health}
}

func writeManifest(t *testing.T, path, name, port string) {
	t.Helper()
	m := fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %[1]s
  namespace: kube-system
spec:
  hostNetwork: true
  containers:
  - name: %[1]s
    image: registry.k8s.io/%[1]s:v1.36.3
    startupProbe:
      httpGet:
        host: 127.0.0.1
        path: /healthz
        port: %[2]s
        scheme: HTTP
`, name, port)
	if err := os.WriteFile(path, []byte(m), 0o600); err != nil {
		t.Fatal(err)
	}
}

func timeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestStopReturnsOnlyAfterTheContainersAreGone(t *testing.T) {
	f := newFixture(t)
	pods, err := f.mgr.Stop(timeout(t, 10*time.Second), []string{"kube-apiserver", "kube-controller-manager"})
	if err != nil {
		t.Fatalf("Stop: %v", err)
	}
	for _, name := range []string{"kube-apiserver", "kube-controller-manager"} {
		if f.cri.Running(name + "-" + node) {
			t.Errorf("Stop returned while %s still runs", name)
		}
	}
	for _, p := range pods {
		if p.State != staticpods.Stopped || len(p.ContainerIDs) != 0 {
			t.Errorf("after Stop: %+v", p)
		}
	}
	if !f.cri.Running("etcd-" + node) {
		t.Error("Stop of other pods stopped etcd")
	}
	// Stopping again is a no-op.
	if _, err := f.mgr.Stop(timeout(t, 5*time.Second), []string{"kube-apiserver"}); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}

func TestStartWaitsForRunningContainersAndAHealthyEndpoint(t *testing.T) {
	f := newFixture(t)
	if _, err := f.mgr.Stop(timeout(t, 10*time.Second), []string{"kube-scheduler"}); err != nil {
		t.Fatal(err)
	}
	f.health.calls.Store(0) // the next three probes fail
	pods, err := f.mgr.Start(timeout(t, 10*time.Second), []string{"kube-scheduler"})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if pods[0].State != staticpods.Running || !f.cri.Running("kube-scheduler-"+node) {
		t.Fatalf("after Start: %+v", pods[0])
	}
	if n := f.health.calls.Load(); n <= 3 {
		t.Errorf("Start returned after %d probe(s); the first three failed", n)
	}
	if pods[0].Image != "registry.k8s.io/kube-scheduler:v1.36.3" {
		t.Errorf("image %q", pods[0].Image)
	}
}

func TestStopTimesOutNamingWhatStillRuns(t *testing.T) {
	f := newFixture(t)
	f.kubelet.Stuck.Store(true)
	_, err := f.mgr.Stop(timeout(t, time.Second), []string{"kube-apiserver"})
	if !errors.Is(err, staticpods.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stop with a stuck runtime: %v, want ErrTimeout and DeadlineExceeded", err)
	}
	if !strings.Contains(err.Error(), "kube-apiserver") {
		t.Errorf("error does not name the pod: %v", err)
	}
	pods, err := f.mgr.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods {
		if p.Name == "kube-apiserver" && p.State != staticpods.Stopping {
			t.Errorf("kube-apiserver is %s, want stopping", p.State)
		}
	}
}

func TestBadNamesAreRefusedAndMoveNothing(t *testing.T) {
	f := newFixture(t)
	for _, names := range [][]string{{"../../etc/passwd"}, {"kube-apiserver/../etcd"}, {"unknown-pod"}, {"KUBE"}, {}} {
		_, err := f.mgr.Stop(timeout(t, 2*time.Second), names)
		if !errors.Is(err, staticpods.ErrInvalidName) && !errors.Is(err, staticpods.ErrUnknownPod) {
			t.Errorf("Stop(%q): %v, want ErrInvalidName or ErrUnknownPod", names, err)
		}
	}
	// A valid name listed with an invalid one: nothing moves.
	if _, err := f.mgr.Stop(timeout(t, 2*time.Second), []string{"etcd", "../x"}); err == nil {
		t.Fatal("accepted a list with an invalid name")
	}
	pods, err := f.mgr.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(pods) != len(components) {
		t.Fatalf("List = %+v", pods)
	}
	for _, p := range pods {
		if p.State != staticpods.Running {
			t.Errorf("%s is %s after refused calls", p.Name, p.State)
		}
	}
}

func TestHealthURLFromKubeadmProbe(t *testing.T) {
	dir := t.TempDir()
	writeManifest(t, filepath.Join(dir, "x.yaml"), "x", "10257")
	m, err := staticpods.ReadManifest(filepath.Join(dir, "x.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if u, ok := m.HealthURL(); !ok || u != "http://127.0.0.1:10257/healthz" {
		t.Fatalf("HealthURL = %q, %v", u, ok)
	}
}

// An etcd learner never passes etcd's /readyz: StartRunning must not wait
// for the health endpoint, only for the containers.
func TestStartRunningDoesNotWaitForHealth(t *testing.T) {
	f := newFixture(t)
	if _, err := f.mgr.Stop(timeout(t, 10*time.Second), []string{"kube-scheduler"}); err != nil {
		t.Fatal(err)
	}
	f.health.calls.Store(-1 << 30) // every probe fails
	pods, err := f.mgr.StartRunning(timeout(t, 10*time.Second), []string{"kube-scheduler"})
	if err != nil {
		t.Fatalf("StartRunning: %v", err)
	}
	if pods[0].State != staticpods.Running || !f.cri.Running("kube-scheduler-"+node) {
		t.Fatalf("after StartRunning: %+v", pods[0])
	}
	// Start, with its health check, times out on the same pod.
	if _, err := f.mgr.Start(timeout(t, time.Second), []string{"kube-scheduler"}); !errors.Is(err, staticpods.ErrTimeout) {
		t.Fatalf("Start with failing health: %v, want a timeout", err)
	}
}

// On many nodes /etc (the manifests) and /var (the agent's parked
// manifests) are separate filesystems: a rename between them fails with
// EXDEV. A tmpfs holding the parked directory is such a node.
func TestParkAndStartAcrossFilesystems(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a second filesystem needs root")
	}
	root := t.TempDir()
	varDir := filepath.Join(root, "var")
	os.MkdirAll(varDir, 0o755)
	if err := syscall.Mount("tmpfs", varDir, "tmpfs", 0, "size=16m"); err != nil {
		t.Skipf("mounting a tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(varDir, syscall.MNT_DETACH) })
	manifests, parked := filepath.Join(root, "etc", "manifests"), filepath.Join(varDir, "parked")
	f := newFixtureIn(t, manifests, parked)
	os.MkdirAll(parked, 0o700)
	if err := os.Rename(filepath.Join(manifests, "etcd.yaml"), filepath.Join(parked, "probe")); !errors.Is(err, syscall.EXDEV) {
		t.Fatalf("rename across the two filesystems: %v, want EXDEV", err)
	}
	before, _ := os.ReadFile(filepath.Join(manifests, "kube-scheduler.yaml"))
	if _, err := f.mgr.Stop(timeout(t, 10*time.Second), []string{"kube-scheduler"}); err != nil {
		t.Fatalf("Stop across filesystems: %v", err)
	}
	if _, err := os.Stat(filepath.Join(manifests, "kube-scheduler.yaml")); !os.IsNotExist(err) {
		t.Fatalf("manifest still in the manifest directory: %v", err)
	}
	if f.cri.Running("kube-scheduler-" + node) {
		t.Fatal("kube-scheduler still runs after Stop")
	}
	if _, err := f.mgr.Start(timeout(t, 10*time.Second), []string{"kube-scheduler"}); err != nil {
		t.Fatalf("Start across filesystems: %v", err)
	}
	after, err := os.ReadFile(filepath.Join(manifests, "kube-scheduler.yaml"))
	if err != nil || string(after) != string(before) {
		t.Fatalf("manifest after Start = %q, %v; want it unchanged", after, err)
	}
	if _, err := os.Stat(filepath.Join(parked, "kube-scheduler.yaml")); !os.IsNotExist(err) {
		t.Errorf("parked copy left behind: %v", err)
	}
}
