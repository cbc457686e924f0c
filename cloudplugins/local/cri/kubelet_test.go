package cri_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestTheRealKubeletRunsStaticPods runs the real kubelet, standalone, in a
// network and mount namespace of its own with the runtime beside it, on
// testdata/kubelet-config.yaml: a hostNetwork pod with an HTTP liveness
// probe stays up, a crashing one is restarted, and a removed manifest's pod
// is stopped with SIGTERM.
func TestTheRealKubeletRunsStaticPods(t *testing.T) {
	bin := os.Getenv("TRIAD_K8S_BIN")
	if bin == "" || os.Geteuid() != 0 {
		t.Skip("needs root and TRIAD_K8S_BIN (the directory holding kubelet)")
	}
	kubeletBin := filepath.Join(bin, "kubelet")
	if _, err := os.Stat(kubeletBin); err != nil {
		t.Skipf("no kubelet in TRIAD_K8S_BIN: %v", err)
	}
	if os.Getenv("TRIAD_CRICTL") == "" {
		t.Skip("TRIAD_CRICTL is not set; 'make unit' builds crictl and sets it")
	}
	ns := newNetns(t)
	r := newRuntime(t, ns)
	dir := t.TempDir()
	manifests, podLogs, root := filepath.Join(dir, "manifests"), filepath.Join(dir, "pods"), filepath.Join(dir, "kubelet")
	for _, d := range []string{manifests, podLogs, root} {
		os.MkdirAll(d, 0o755)
	}
	tmpl, err := os.ReadFile("testdata/kubelet-config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.NewReplacer("{{SOCKET}}", r.socket, "{{MANIFESTS}}", manifests, "{{POD_LOGS}}", podLogs).Replace(string(tmpl))
	cfgPath := filepath.Join(dir, "kubelet-config.yaml")
	os.WriteFile(cfgPath, []byte(cfg), 0o600)

	self, _ := os.Executable()
	images, _ := json.Marshal(map[string]string{testImage: self})
	os.WriteFile(r.images, images, 0o600)

	pod := func(name string, hostNetwork bool, args string, extra string) string {
		return `apiVersion: v1
kind: Pod
metadata:
  name: ` + name + `
  namespace: kube-system
spec:
  hostNetwork: ` + strconv.FormatBool(hostNetwork) + `
  terminationGracePeriodSeconds: 5
  containers:
  - name: main
    image: ` + testImage + `
    imagePullPolicy: IfNotPresent
    command: ["test-image", ` + args + `]
    env:
    - name: ` + roleEnv + `
      value: image
` + extra
	}
	web := pod("web", true, `"serve", "18080"`, `    livenessProbe:
      httpGet:
        host: 127.0.0.1
        port: 18080
        path: /healthz
      periodSeconds: 2
      failureThreshold: 1
`)
	os.WriteFile(filepath.Join(manifests, "web.yaml"), []byte(web), 0o600)
	os.WriteFile(filepath.Join(manifests, "crash.yaml"), []byte(pod("crash", false, `"exit3"`, "")), 0o600)

	klog := filepath.Join(dir, "kubelet.log")
	logf, _ := os.Create(klog)
	kubelet := ns.command(kubeletBin, "--config", cfgPath, "--root-dir", root, "--hostname-override", "node-0", "--node-ip", "10.250.0.2", "--v", "4")
	kubelet.Stdout, kubelet.Stderr = logf, logf
	if err := kubelet.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		kubelet.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { kubelet.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			kubelet.Process.Kill()
			<-done
		}
		logf.Close()
		r.crictl("rmp", "--all", "--force")
		if t.Failed() || os.Getenv("TRIAD_CRI_TEST_KUBELET_LOG") != "" {
			data, _ := os.ReadFile(klog)
			if len(data) > 200000 {
				data = data[len(data)-200000:]
			}
			t.Logf("kubelet log (tail):\n%s", data)
		}
	})

	type ctr struct {
		ID       string            `json:"id"`
		State    string            `json:"state"`
		Labels   map[string]string `json:"labels"`
		Metadata struct {
			Attempt int `json:"attempt"`
		} `json:"metadata"`
	}
	list := func(pod string) []ctr {
		var ps struct {
			Containers []ctr `json:"containers"`
		}
		out, err := r.crictl("ps", "-a", "-o", "json", "--label", "io.kubernetes.pod.name="+pod)
		if err != nil {
			return nil
		}
		jsonOut(t, out, &ps)
		return ps.Containers
	}
	running := func(pod string) *ctr {
		for _, c := range list(pod) {
			if c.State == "CONTAINER_RUNNING" {
				return &c
			}
		}
		return nil
	}
	eventually(t, 90*time.Second, "the kubelet runs web-node-0", func() bool { return running("web-node-0") != nil })
	webCtr := running("web-node-0")

	// The probe passes: no restart over 20s, while crash is restarted.
	time.Sleep(20 * time.Second)
	if cs := list("web-node-0"); len(cs) != 1 || cs[0].ID != webCtr.ID || cs[0].State != "CONTAINER_RUNNING" {
		t.Fatalf("web was restarted or stopped (liveness probe failing?): %+v", cs)
	}
	eventually(t, 60*time.Second, "the kubelet restarts the crashing container", func() bool {
		for _, c := range list("crash-node-0") {
			if c.Metadata.Attempt >= 1 {
				return true
			}
		}
		return false
	})

	// Logs: in podLogsDir, CRI format, readable by crictl.
	logs, _ := filepath.Glob(filepath.Join(podLogs, "kube-system_web-node-0_*", "main", "0.log"))
	if len(logs) != 1 {
		t.Fatalf("no CRI log for web under %s: %v", podLogs, logs)
	}
	data, _ := os.ReadFile(logs[0])
	if !criLine.Match(data) || !strings.Contains(string(data), "serving on 127.0.0.1:18080") {
		t.Fatalf("web's log %s:\n%s", logs[0], data)
	}
	if out := r.mustCrictl("logs", webCtr.ID); !strings.Contains(out, "serving on") {
		t.Fatalf("crictl logs: %q", out)
	}
	var crashLog string
	eventually(t, 10*time.Second, "crash's log", func() bool {
		// Older attempts' logs go with their containers: read what is left.
		logs, _ := filepath.Glob(filepath.Join(podLogs, "kube-system_crash-node-0_*", "main", "*.log"))
		crashLog = ""
		for _, l := range logs {
			data, _ := os.ReadFile(l)
			crashLog += string(data)
		}
		return strings.Contains(crashLog, "exiting 3")
	})

	// Removing the manifest stops the pod: SIGTERM, honoured well within
	// the 5s grace period (a SIGKILL would make exit code 137).
	in := r.inspect(webCtr.ID)
	os.Remove(filepath.Join(manifests, "web.yaml"))
	removed := time.Now()
	eventually(t, 30*time.Second, "web's process goes", func() bool {
		return syscall.Kill(in.Info.Pid, 0) != nil
	})
	eventually(t, 10*time.Second, "web's container is exited", func() bool {
		c := list("web-node-0")
		return len(c) == 0 || c[0].State == "CONTAINER_EXITED"
	})
	if cs := list("web-node-0"); len(cs) == 1 {
		if st := r.inspect(cs[0].ID).Status; st.ExitCode != 0 {
			t.Fatalf("web exited %d (%s), not 0 on SIGTERM", st.ExitCode, st.Reason)
		}
	}
	t.Logf("web stopped %s after its manifest went", time.Since(removed))
	calls := map[string]int{}
	rlog, _ := os.ReadFile(r.log)
	for _, line := range strings.Split(string(rlog), "\n") {
		var e struct{ Msg, Method string }
		if json.Unmarshal([]byte(line), &e) == nil && e.Method != "" {
			calls[e.Msg+" "+e.Method]++
		}
	}
	t.Logf("CRI calls: %v", calls)
	if out, _ := exec.Command("sh", "-c", "grep -c 'serving on' "+logs[0]).Output(); strings.TrimSpace(string(out)) != "1" {
		t.Fatalf("web started more than once: %s", out)
	}
}
