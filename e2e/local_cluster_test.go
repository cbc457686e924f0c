//go:build e2e

package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestLocalClusterCreate creates a single-node control plane in the local
// cloud from the pinned binaries (make k8s-binaries, TRIAD_K8S_BIN) and
// checks, through the VM's own triad-agent over mTLS, that real etcd and a
// real kube-apiserver are healthy and the four static pods run.
func TestLocalClusterCreate(t *testing.T) {
	k8sBin := os.Getenv("TRIAD_K8S_BIN")
	if k8sBin == "" {
		t.Skip("TRIAD_K8S_BIN is not set; 'make e2e' builds the control-plane binaries and sets it")
	}
	work := t.TempDir()
	stateDir, pkiDir := filepath.Join(work, "localcloud"), filepath.Join(work, "pki")
	t.Cleanup(func() {
		if r := triad(t, "local", "down", "--state-dir", stateDir); r.err != nil {
			t.Errorf("local down: %v %s", r.err, r.stderr)
		}
		if n := processesFor(stateDir); n != 0 {
			t.Errorf("%d processes left after local down", n)
		}
	})
	start := time.Now()
	r := triad(t, "local", "cluster", "create", "--name", "e2e", "--state-dir", stateDir, "--pki-dir", pkiDir,
		"--bin-dir", k8sBin, "--kubeconfig", filepath.Join(work, "kubeconfig"), "--timeout", "4m", "-o", "json",
		"--agent-binary", filepath.Join(binDir, "triad-agent"), "--cloud-binary", filepath.Join(binDir, "triad-cloud-local"))
	if r.err != nil {
		logs, _ := filepath.Glob(filepath.Join(stateDir, "vms/*/disk/var/log/pods/*.log"))
		for _, l := range logs {
			data, _ := os.ReadFile(l)
			if len(data) > 3000 {
				data = data[len(data)-3000:]
			}
			t.Logf("%s:\n%s", l, data)
		}
		t.Fatalf("local cluster create: %v\nstdout: %s\nstderr: %s", r.err, r.stdout, r.stderr)
	}
	t.Logf("local cluster create took %s\n%s", time.Since(start).Round(time.Second), r.stderr)
	var out struct {
		PrivateIP, PublicIP, Kubeconfig string
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("output %q: %v", r.stdout, err)
	}
	mustTriad(t, "pki", "issue", "observer", "--name", "e2e", "--pki-dir", pkiDir)
	var health struct {
		Health struct {
			ApiserverReady bool `json:"apiserverReady"`
			EtcdHealthy    bool `json:"etcdHealthy"`
			StaticPods     []struct {
				Name  string `json:"name"`
				State string `json:"state"`
			} `json:"staticPods"`
			KubernetesVersion string `json:"kubernetesVersion"`
		} `json:"health"`
	}
	deadline := time.Now().Add(time.Minute)
	for {
		raw := mustTriad(t, "agent", "health", "-o", "json", "--pki-dir", pkiDir, "--endpoint", out.PrivateIP+":9443", "--cluster", "e2e", "--as", "observer/e2e")
		if err := json.Unmarshal([]byte(raw), &health); err != nil {
			t.Fatal(err)
		}
		running := 0
		for _, p := range health.Health.StaticPods {
			if p.State == "STATIC_POD_STATE_RUNNING" {
				running++
			}
		}
		if health.Health.ApiserverReady && health.Health.EtcdHealthy && running == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent health: %s", raw)
		}
		time.Sleep(time.Second)
	}
	if health.Health.KubernetesVersion != "v1.36.3" {
		t.Errorf("kube-apiserver version %q", health.Health.KubernetesVersion)
	}
}
