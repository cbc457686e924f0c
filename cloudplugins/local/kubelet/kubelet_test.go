package kubelet_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	criclient "k8s.io/cri-client/pkg"

	"github.com/triad-k8s/triad/agent/staticpods"
	"github.com/triad-k8s/triad/cloudplugins/local/kubelet"
)

const vmIP = "127.0.40.7"

type vm struct {
	root, manifests, socket string
	mgr                     *staticpods.Manager
}

// startVM runs a kubelet stand-in in a fresh VM directory and returns the
// agent's static-pod manager talking to it over CRI, as in a real VM.
func startVM(t *testing.T) vm {
	t.Helper()
	root := t.TempDir()
	v := vm{root: root, manifests: filepath.Join(root, "etc/kubernetes/manifests"), socket: filepath.Join(root, "run/triad/cri.sock")}
	os.MkdirAll(v.manifests, 0o755)
	k := kubelet.New(kubelet.Config{
		NodeName: "cp-0", IP: vmIP, Root: root, ManifestDir: v.manifests, Socket: v.socket,
		Images: map[string]string{"example/shell:1": "/bin/sh"}, DefaultGracePeriod: 2 * time.Second,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { k.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(v.socket); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	rt, err := staticpods.NewCRIRuntime(t.Context(), "unix://"+v.socket, "cp-0")
	if err != nil {
		t.Fatal(err)
	}
	v.mgr = &staticpods.Manager{ManifestDir: v.manifests, ParkedDir: filepath.Join(root, "var/lib/triad-agent/parked"), Runtime: rt, PollInterval: 50 * time.Millisecond}
	return v
}

func (v vm) manifest(t *testing.T, name, script string, grace int) {
	t.Helper()
	m := fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
  namespace: kube-system
spec:
  terminationGracePeriodSeconds: %d
  containers:
  - name: main
    image: example/shell:1
    command: ["sh", "-c", %q, "https://127.0.0.1:2379"]
    volumeMounts:
    - name: data
      mountPath: /var/lib/data
  volumes:
  - name: data
    hostPath:
      path: /var/lib/data
`, name, grace, script)
	if err := os.WriteFile(filepath.Join(v.manifests, name+".yaml"), []byte(m), 0o600); err != nil {
		t.Fatal(err)
	}
}

func timeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestStaticPodRunsAsAProcessInsideTheVM(t *testing.T) {
	v := startVM(t)
	os.MkdirAll(filepath.Join(v.root, "var/lib/data"), 0o755)
	v.manifest(t, "etcd", `echo "$0" > /var/lib/data/args; exec sleep 1000`, 2)
	pods, err := v.mgr.Start(timeout(t, 10*time.Second), []string{"etcd"})
	if err != nil {
		t.Fatalf("agent Start through the stand-in's CRI: %v", err)
	}
	if pods[0].State != staticpods.Running {
		t.Fatalf("pod %+v", pods[0])
	}
	var args []byte
	for i := 0; i < 50 && len(args) == 0; i++ {
		args, _ = os.ReadFile(filepath.Join(v.root, "var/lib/data/args"))
		time.Sleep(20 * time.Millisecond)
	}
	if got := strings.TrimSpace(string(args)); got != "https://"+vmIP+":2379" {
		t.Fatalf("the container wrote %q into the VM's hostPath; want the VM address for 127.0.0.1", got)
	}
	if _, err := v.mgr.Stop(timeout(t, 10*time.Second), []string{"etcd"}); err != nil {
		t.Fatalf("agent Stop: %v", err)
	}
}

func TestExitedContainersRestart(t *testing.T) {
	v := startVM(t)
	v.manifest(t, "crasher", `exit 3`, 1)
	cli, err := criclient.NewRemoteRuntimeService(t.Context(), "unix://"+v.socket, 5*time.Second, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		cs, err := cli.ListContainers(t.Context(), &runtimeapi.ContainerFilter{LabelSelector: map[string]string{"io.kubernetes.pod.name": "crasher-cp-0"}})
		if err != nil {
			t.Fatal(err)
		}
		if len(cs) >= 3 {
			st, err := cli.ContainerStatus(t.Context(), cs[0].Id, false)
			if err != nil {
				t.Fatal(err)
			}
			if st.Status.State == runtimeapi.ContainerState_CONTAINER_EXITED && st.Status.ExitCode != 3 {
				t.Fatalf("exit code %d, want 3", st.Status.ExitCode)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d container attempts after 15s; a crashing container must be restarted", len(cs))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestAContainerIgnoringSIGTERMIsKilledAfterItsGracePeriod(t *testing.T) {
	v := startVM(t)
	v.manifest(t, "stubborn", `trap "" TERM; while true; do sleep 0.1; done`, 1)
	if _, err := v.mgr.Start(timeout(t, 10*time.Second), []string{"stubborn"}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := v.mgr.Stop(timeout(t, 20*time.Second), []string{"stubborn"}); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if time.Since(start) < time.Second {
		t.Errorf("stopped in %s, before the 1s grace period: SIGTERM was not ignored, the test proves nothing", time.Since(start))
	}
}

// crictl is the real cri-tools client; make builds it (TRIAD_CRICTL).
func TestCrictlListsTheVMsContainers(t *testing.T) {
	crictl := os.Getenv("TRIAD_CRICTL")
	if crictl == "" {
		t.Skip("TRIAD_CRICTL is not set; 'make unit' builds crictl and sets it")
	}
	v := startVM(t)
	v.manifest(t, "kube-apiserver", `exec sleep 1000`, 1)
	if _, err := v.mgr.Start(timeout(t, 10*time.Second), []string{"kube-apiserver"}); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(crictl, "--runtime-endpoint", "unix://"+v.socket, "--image-endpoint", "unix://"+v.socket, "ps", "-o", "json")
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + t.TempDir()}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("crictl ps: %v\n%s", err, out)
	}
	// crictl prints protojson, whose whitespace is deliberately unstable:
	// decode it rather than match bytes (warnings come before the JSON).
	type container struct {
		State  string            `json:"state"`
		Labels map[string]string `json:"labels"`
	}
	var ps struct {
		Containers []container `json:"containers"`
	}
	i := bytes.IndexByte(out, '{')
	if i < 0 || json.Unmarshal(out[i:], &ps) != nil {
		t.Fatalf("crictl ps printed no JSON:\n%s", out)
	}
	if !slices.ContainsFunc(ps.Containers, func(c container) bool {
		return c.State == "CONTAINER_RUNNING" && c.Labels["io.kubernetes.pod.name"] == "kube-apiserver-cp-0"
	}) {
		t.Fatalf("crictl ps does not show the running kube-apiserver container:\n%s", out)
	}
	out, err = exec.Command(crictl, "--runtime-endpoint", "unix://"+v.socket, "pods").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "kube-apiserver-cp-0") {
		t.Fatalf("crictl pods: %v\n%s", err, out)
	}
}
