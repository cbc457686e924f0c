//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/triad-k8s/triad/coordinator/loadclient"
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
		"--bin-dir", k8sBin, "--kubeconfig", filepath.Join(work, "kubeconfig"), "--timeout", "4m", "-o", "json", "--kwok-nodes", "3",
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
		PrivateIP  string `json:"privateIP"`
		PublicIP   string `json:"publicIP"`
		Kubeconfig string `json:"kubeconfig"`
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

	// Through the public address, as a user: kwok nodes Ready, a
	// Deployment's pods Running on them, CRUD, and 30s of live load
	// through both addresses without a failure or a lost write.
	kc, err := os.ReadFile(out.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	public, err := clientcmd.RESTConfigFromKubeConfig(kc)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(public.Host, out.PublicIP) {
		t.Fatalf("admin kubeconfig points at %s, want the public address %s", public.Host, out.PublicIP)
	}
	client := kubernetes.NewForConfigOrDie(public)
	ctx := t.Context()
	eventuallyE2E(t, 2*time.Minute, "3 kwok nodes Ready", func() error {
		nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: "type=kwok"})
		if err != nil {
			return err
		}
		ready := 0
		for _, n := range nodes.Items {
			for _, c := range n.Status.Conditions {
				if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
					ready++
				}
			}
		}
		if ready != 3 {
			return fmt.Errorf("%d of %d nodes Ready", ready, len(nodes.Items))
		}
		return nil
	})
	deploy := webDeployment()
	if _, err := client.AppsV1().Deployments("default").Create(ctx, deploy, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventuallyE2E(t, 2*time.Minute, "3 pods Running on kwok nodes", func() error {
		pods, err := client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return err
		}
		running := 0
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning && strings.HasPrefix(p.Spec.NodeName, "kwok-node-") {
				running++
			}
		}
		if running != 3 {
			return fmt.Errorf("%d of %d pods Running", running, len(pods.Items))
		}
		return nil
	})

	cms := client.CoreV1().ConfigMaps("default")
	cm, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "crud"}, Data: map[string]string{"v": "1"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data["v"] = "2"
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, err := cms.Get(ctx, "crud", metav1.GetOptions{}); err != nil || got.Data["v"] != "2" {
		t.Fatalf("read back after update: %v %v", got, err)
	}
	if err := cms.Delete(ctx, "crud", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	private := rest.CopyConfig(public)
	private.Host = "https://" + out.PrivateIP + ":6443"
	loadCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	report, err := loadclient.Run(loadCtx, []loadclient.Target{{Name: "private", Config: private}, {Name: "public", Config: public}}, loadclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(report.Failures) != 0 {
		t.Errorf("%d failed requests, first: %+v", len(report.Failures), report.Failures[0])
	}
	if len(report.Acked) < 50 || report.Reads == 0 || report.WatchEvents == 0 {
		t.Errorf("load too thin to prove anything: %d writes, %d reads, %d watch events", len(report.Acked), report.Reads, report.WatchEvents)
	}
	missing, err := loadclient.Missing(ctx, public, "", report)
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) != 0 {
		t.Errorf("acknowledged writes missing: %v", missing)
	}
	t.Logf("load: %d acknowledged writes, %d reads, %d watch events, %d failures", len(report.Acked), report.Reads, report.WatchEvents, len(report.Failures))
}

func eventuallyE2E(t *testing.T, d time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
