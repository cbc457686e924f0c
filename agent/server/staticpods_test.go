package server_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/triad-k8s/triad/agent/bootdata"
	"github.com/triad-k8s/triad/agent/server"
	"github.com/triad-k8s/triad/agent/staticpods/critest"
	agentv1 "github.com/triad-k8s/triad/proto/triad/agent/v1"
)

const minimalManifest = `apiVersion: v1
kind: Pod
metadata:
  name: %s
  namespace: kube-system
spec:
  containers:
  - name: c
    image: example/c:1
`

func TestStaticPodsOverTheWire(t *testing.T) {
	p := newTestPKI(t)
	root := t.TempDir()
	manifests, parked := filepath.Join(root, "manifests"), filepath.Join(root, "parked")
	os.MkdirAll(manifests, 0o755)
	names := []string{"etcd", "kube-apiserver", "kube-controller-manager"}
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(manifests, n+".yaml"), []byte(fmt.Sprintf(minimalManifest, n)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cri := critest.Start(t)
	critest.SimulateKubelet(t, cri, manifests, "cp-0", names)
	// The VM was booted to hold kube-controller-manager.
	addr, _ := startAgentWith(t, server.Config{
		Cluster: cluster, NodeName: "cp-0", StateDir: t.TempDir(), TLS: p.agent,
		ManifestDir: manifests, ParkedDir: parked, CRIEndpoint: cri.Endpoint,
		Hold: []string{"kube-controller-manager", "not-there"},
	})
	if _, err := os.Stat(filepath.Join(parked, "kube-controller-manager.yaml")); err != nil {
		t.Fatalf("held pod not parked at start: %v", err)
	}
	coord, obs := dial(t, addr, p.coordinator), dial(t, addr, p.observer)

	if _, err := coord.StartStaticPods(ctx(t), &agentv1.StartStaticPodsRequest{Header: header(1), Names: []string{"etcd", "kube-apiserver"}}); err != nil {
		t.Fatalf("StartStaticPods: %v", err)
	}
	list, err := obs.ListStaticPods(ctx(t), &agentv1.ListStaticPodsRequest{})
	if err != nil {
		t.Fatalf("observer ListStaticPods: %v", err)
	}
	want := map[string]agentv1.StaticPodState{
		"etcd": agentv1.StaticPodState_STATIC_POD_STATE_RUNNING, "kube-apiserver": agentv1.StaticPodState_STATIC_POD_STATE_RUNNING,
		"kube-controller-manager": agentv1.StaticPodState_STATIC_POD_STATE_STOPPED,
	}
	for _, pod := range list.GetPods() {
		if want[pod.GetName()] != pod.GetState() {
			t.Errorf("%s is %v, want %v", pod.GetName(), pod.GetState(), want[pod.GetName()])
		}
	}
	if len(list.GetPods()) != 3 {
		t.Errorf("listed %d pods, want 3", len(list.GetPods()))
	}

	resp, err := coord.StopStaticPods(ctx(t), &agentv1.StopStaticPodsRequest{Header: header(1), Names: []string{"kube-apiserver"}})
	if err != nil {
		t.Fatalf("StopStaticPods: %v", err)
	}
	if cri.Running("kube-apiserver-cp-0") || resp.GetPods()[0].GetState() != agentv1.StaticPodState_STATIC_POD_STATE_STOPPED {
		t.Fatalf("after StopStaticPods: %v", resp)
	}

	for _, tc := range []struct {
		name  string
		names []string
		want  codes.Code
	}{
		{"path traversal", []string{"../../etc/kubernetes/admin"}, codes.InvalidArgument},
		{"an unknown pod", []string{"kube-proxy"}, codes.NotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := coord.StopStaticPods(ctx(t), &agentv1.StopStaticPodsRequest{Header: header(1), Names: tc.names})
			if status.Code(err) != tc.want {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := obs.StopStaticPods(ctx(t), &agentv1.StopStaticPodsRequest{Header: header(1), Names: []string{"etcd"}}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("observer StopStaticPods: %v, want PermissionDenied", err)
	}
	if !cri.Running("etcd-cp-0") {
		t.Error("etcd stopped by a refused call")
	}
}

// TestBootDataHoldsOnlyAtTheFirstStart: a cloud hands a VM the same boot
// data on every boot; the agent holds its static pods once, so a restart
// or a reboot after the coordinator started them runs them all.
func TestBootDataHoldsOnlyAtTheFirstStart(t *testing.T) {
	p := newTestPKI(t)
	root := t.TempDir()
	manifests, parked, state := filepath.Join(root, "manifests"), filepath.Join(root, "parked"), filepath.Join(root, "state")
	os.MkdirAll(manifests, 0o755)
	names := []string{"etcd", "kube-apiserver"}
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(manifests, n+".yaml"), []byte(fmt.Sprintf(minimalManifest, n)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cri := critest.Start(t)
	critest.SimulateKubelet(t, cri, manifests, "cp-0", names)
	start := func(bd *bootdata.Data) (string, *server.Server) {
		return startAgentWith(t, server.Config{
			Cluster: cluster, NodeName: "cp-0", StateDir: state, TLS: p.agent,
			ManifestDir: manifests, ParkedDir: parked, CRIEndpoint: cri.Endpoint, BootData: bd,
		})
	}
	isParked := func(name string) bool {
		_, err := os.Stat(filepath.Join(parked, name+".yaml"))
		return err == nil
	}
	boot := &bootdata.Data{ID: "migrate-1/e2e-cp-a", HoldStaticPods: names}

	_, srv := start(boot)
	for _, n := range names {
		if !isParked(n) {
			t.Fatalf("first start: %s not held", n)
		}
	}
	// A restart before the coordinator started them keeps them held.
	srv.Stop()
	addr, srv := start(boot)
	for _, n := range names {
		if !isParked(n) {
			t.Fatalf("restart before the start: %s no longer held", n)
		}
	}
	// The coordinator starts them; a restart (or a reboot: the same start
	// with the same boot data) must leave them running.
	if _, err := dial(t, addr, p.coordinator).StartStaticPods(ctx(t), &agentv1.StartStaticPodsRequest{Header: header(1), Names: names}); err != nil {
		t.Fatalf("StartStaticPods: %v", err)
	}
	srv.Stop()
	_, srv = start(boot)
	for _, n := range names {
		if isParked(n) {
			t.Errorf("restart after the coordinator started %s: held again (the boot data applied twice)", n)
		}
		if !cri.Running(n + "-cp-0") {
			t.Errorf("restart after the start: %s not running", n)
		}
	}
	// Other boot data (another operation's VM from the same disk) applies.
	srv.Stop()
	start(&bootdata.Data{ID: "upgrade-2/e2e-cp-a-x", HoldStaticPods: []string{"etcd"}})
	if !isParked("etcd") || isParked("kube-apiserver") {
		t.Errorf("new boot data: etcd parked %v (want true), kube-apiserver parked %v (want false)", isParked("etcd"), isParked("kube-apiserver"))
	}
}
