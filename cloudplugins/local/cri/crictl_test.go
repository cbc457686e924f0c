package cri_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

type inspect struct {
	Status struct {
		ID       string            `json:"id"`
		State    string            `json:"state"`
		ExitCode int               `json:"exitCode"`
		Reason   string            `json:"reason"`
		LogPath  string            `json:"logPath"`
		Labels   map[string]string `json:"labels"`
		Annots   map[string]string `json:"annotations"`
		Mounts   []struct {
			ContainerPath string `json:"containerPath"`
			HostPath      string `json:"hostPath"`
		} `json:"mounts"`
		StartedAt  string `json:"startedAt"`
		FinishedAt string `json:"finishedAt"`
	} `json:"status"`
	Info struct {
		Pid int `json:"pid"`
	} `json:"info"`
}

func (r *runtime) inspect(id string) inspect {
	r.t.Helper()
	var in inspect
	jsonOut(r.t, r.mustCrictl("inspect", "-o", "json", id), &in)
	return in
}

func podConfig(t *testing.T, dir, name string, hostNetwork bool) string {
	network := 0 // POD
	if hostNetwork {
		network = 2 // NODE
	}
	return writeJSON(t, filepath.Join(dir, name+"-pod.json"), map[string]any{
		"metadata":      map[string]any{"name": name, "namespace": "default", "uid": name + "-uid", "attempt": 0},
		"log_directory": filepath.Join(dir, "logs", name),
		"labels":        map[string]string{"app": name},
		"annotations":   map[string]string{"note": "a sandbox annotation"},
		"linux":         map[string]any{"security_context": map[string]any{"namespace_options": map[string]any{"network": network}}},
	})
}

func containerConfig(t *testing.T, dir, name string, args []string, mounts []map[string]any) string {
	return writeJSON(t, filepath.Join(dir, name+"-ctr.json"), map[string]any{
		"metadata":    map[string]any{"name": name},
		"image":       map[string]string{"image": testImage},
		"command":     append([]string{"test-image"}, args...),
		"envs":        []map[string]string{{"key": roleEnv, "value": "image"}, {"key": "SHOW_FILE", "value": filepath.Join(dir, "mnt", "file")}},
		"log_path":    name + ".log",
		"labels":      map[string]string{"io.kubernetes.container.name": name, "tier": "test"},
		"annotations": map[string]string{"exact": "as given", "io.kubernetes.container.restartCount": "0"},
		"mounts":      mounts,
	})
}

var criLine = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d) (stdout|stderr) [FP] `)

// TestCrictlDrivesTheWholeLifecycle runs a pod through the real crictl:
// sandbox, containers, logs, exec, images, stats, a runtime restart that
// re-adopts the running containers, a graceful and a forced stop, removal.
func TestCrictlDrivesTheWholeLifecycle(t *testing.T) {
	if os.Getenv("TRIAD_CRICTL") == "" {
		t.Skip("TRIAD_CRICTL is not set; 'make unit' builds crictl and sets it")
	}
	ns := newNetns(t) // a pod network sandbox adds its address to lo
	r := newRuntime(t, ns)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "file"), []byte("bound"), 0o644)

	pod := podConfig(t, dir, "web", false)
	sb := strings.TrimSpace(r.mustCrictl("runp", pod))
	var sbStatus struct {
		Status struct {
			State   string `json:"state"`
			Network struct {
				IP string `json:"ip"`
			} `json:"network"`
		} `json:"status"`
	}
	jsonOut(t, r.mustCrictl("inspectp", "-o", "json", sb), &sbStatus)
	ip := sbStatus.Status.Network.IP
	if sbStatus.Status.State != "SANDBOX_READY" || !strings.HasPrefix(ip, "10.88.") {
		t.Fatalf("sandbox %+v: want ready with an address from 10.88.0.0/16", sbStatus)
	}
	if out, _ := ns.command("ip", "-o", "addr", "show", "lo").CombinedOutput(); !strings.Contains(string(out), ip+"/32") {
		t.Fatalf("pod address %s is not on lo:\n%s", ip, out)
	}

	// The mount point does not exist: the runtime creates it (in the test's
	// directory, so nothing is left on the machine).
	mnt := filepath.Join(dir, "mnt")
	mounts := []map[string]any{{"host_path": src, "container_path": mnt, "readonly": true}}
	main := strings.TrimSpace(r.mustCrictl("create", sb, containerConfig(t, dir, "main", []string{"echo-sleep"}, mounts), pod))
	stubborn := strings.TrimSpace(r.mustCrictl("create", sb, containerConfig(t, dir, "stubborn", []string{"stubborn"}, nil), pod))
	crasher := strings.TrimSpace(r.mustCrictl("create", sb, containerConfig(t, dir, "crasher", []string{"exit3"}, nil), pod))
	if st := r.inspect(main).Status.State; st != "CONTAINER_CREATED" {
		t.Fatalf("a created container is %s", st)
	}
	r.mustCrictl("start", main)
	r.mustCrictl("start", stubborn)
	// As kube-apiserver: a second SIGTERM makes it exit at once, skipping
	// its graceful shutdown.
	graceful := strings.TrimSpace(r.mustCrictl("create", sb, containerConfig(t, dir, "graceful", []string{"exit-on-second-sigterm"}, nil), pod))
	r.mustCrictl("start", graceful)
	r.mustCrictl("start", crasher)

	in := r.inspect(main)
	if in.Status.State != "CONTAINER_RUNNING" || in.Info.Pid == 0 {
		t.Fatalf("after start: %+v", in)
	}
	if in.Status.Labels["tier"] != "test" || in.Status.Annots["exact"] != "as given" || len(in.Status.Mounts) != 1 ||
		in.Status.LogPath != filepath.Join(dir, "logs", "web", "main.log") {
		t.Fatalf("status does not echo the config: %+v", in.Status)
	}
	eventually(t, 10*time.Second, "crasher exits 3", func() bool {
		c := r.inspect(crasher).Status
		return c.State == "CONTAINER_EXITED" && c.ExitCode == 3 && c.Reason == "Error" && c.FinishedAt != ""
	})

	var ps struct {
		Containers []struct {
			ID    string `json:"id"`
			State string `json:"state"`
		} `json:"containers"`
	}
	jsonOut(t, r.mustCrictl("ps", "-o", "json", "--label", "tier=test"), &ps)
	if len(ps.Containers) != 3 { // running ones only (main, stubborn, graceful), without -a
		t.Fatalf("crictl ps: %+v", ps)
	}

	// Logs: the CRI format on disk, and crictl reads them.
	eventually(t, 10*time.Second, "the log has the container's output", func() bool {
		out, _ := r.crictl("logs", main)
		return strings.Contains(out, "hello stdout") && strings.Contains(out, `file `+mnt+`/file: "bound"`) && strings.Contains(out, `pod ip "`+ip+`"`)
	})
	out, err := r.crictl("logs", main)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(in.Status.LogPath)
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if !criLine.MatchString(line) {
			t.Fatalf("log line %q is not in the CRI format; log:\n%s", line, data)
		}
	}
	if !strings.Contains(string(data), " stderr F hello stderr") {
		t.Fatalf("stderr missing from the log:\n%s\ncrictl logs:\n%s", data, out)
	}

	// ExecSync runs in the container's mount namespace and environment.
	out = r.mustCrictl("exec", "-s", main, "sh", "-c", "cat "+mnt+`/file; echo " $POD_IP"; touch `+mnt+`/ro 2>/dev/null || echo read-only`)
	if !strings.Contains(out, "bound "+ip) || !strings.Contains(out, "read-only") {
		t.Fatalf("crictl exec: %q", out)
	}
	if _, err := os.Stat(filepath.Join(mnt, "file")); err == nil {
		t.Fatal("the container's bind mount leaked into the VM's mount namespace")
	}

	// Images.
	if out := r.mustCrictl("images"); !strings.Contains(out, "example.com/triad/test") {
		t.Fatalf("crictl images does not list the mapped image:\n%s", out)
	}
	r.mustCrictl("pull", "registry.k8s.io/pause:3.10")
	if out := r.mustCrictl("images", "-q"); strings.Count(out, "sha256:") != 2 {
		t.Fatalf("after a pull, crictl images -q:\n%s", out)
	}
	if out := r.mustCrictl("inspecti", "registry.k8s.io/pause:3.10"); !strings.Contains(out, "registry.k8s.io/pause:3.10") {
		t.Fatalf("crictl inspecti:\n%s", out)
	}
	r.mustCrictl("rmi", "registry.k8s.io/pause:3.10")
	if out, err := r.crictl("inspecti", "registry.k8s.io/pause:3.10"); err == nil && strings.Contains(out, "pause") {
		t.Fatalf("removed image still present:\n%s", out)
	}
	var fsInfo struct {
		Status struct {
			ImageFilesystems []struct {
				FsID struct {
					Mountpoint string `json:"mountpoint"`
				} `json:"fsId"`
				UsedBytes struct {
					Value string `json:"value"`
				} `json:"usedBytes"`
				InodesUsed struct {
					Value string `json:"value"`
				} `json:"inodesUsed"`
			} `json:"imageFilesystems"`
		} `json:"status"`
	}
	jsonOut(t, r.mustCrictl("imagefsinfo", "-o", "json"), &fsInfo)
	if f := fsInfo.Status.ImageFilesystems; len(f) != 1 || f[0].FsID.Mountpoint == "" || f[0].UsedBytes.Value == "" || f[0].UsedBytes.Value == "0" || f[0].InodesUsed.Value == "0" {
		t.Fatalf("crictl imagefsinfo: %+v", fsInfo)
	}

	// Stats from /proc.
	var stats struct {
		Stats []struct {
			Memory struct {
				WorkingSetBytes struct {
					Value string `json:"value"`
				} `json:"workingSetBytes"`
			} `json:"memory"`
		} `json:"stats"`
	}
	jsonOut(t, r.mustCrictl("stats", "-o", "json", main), &stats)
	if len(stats.Stats) != 1 || stats.Stats[0].Memory.WorkingSetBytes.Value == "" || stats.Stats[0].Memory.WorkingSetBytes.Value == "0" {
		t.Fatalf("crictl stats: %+v", stats)
	}
	r.mustCrictl("statsp", sb)

	// A runtime restart keeps the containers running and re-adopts them.
	pid := in.Info.Pid
	r.stop()
	if syscall.Kill(pid, 0) != nil {
		t.Fatal("stopping the runtime killed a container")
	}
	r.start()
	if in := r.inspect(main); in.Status.State != "CONTAINER_RUNNING" || in.Info.Pid != pid {
		t.Fatalf("after a restart the runtime reports %+v (pid %d before)", in.Status, pid)
	}
	if c := r.inspect(crasher).Status; c.ExitCode != 3 {
		t.Fatalf("after a restart the exited container's code is %d", c.ExitCode)
	}
	os.WriteFile(filepath.Join(src, "file"), []byte("again"), 0o644)
	r.mustCrictl("exec", "-s", main, "true")

	// A graceful stop: SIGTERM is honoured at once.
	start := time.Now()
	r.mustCrictl("stop", "--timeout", "10", main)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("a container that exits on SIGTERM took %s to stop", d)
	}
	if in := r.inspect(main); in.Status.State != "CONTAINER_EXITED" || in.Status.Reason != "Unknown" || in.Status.ExitCode != 255 {
		t.Fatalf("a re-adopted container stopped as %+v; want exited, 255, Unknown", in.Status)
	}
	if syscall.Kill(pid, 0) == nil {
		if st, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); !strings.Contains(string(st), ") Z ") {
			t.Fatalf("the stopped container's process %d still runs", pid)
		}
	}
	// One SIGTERM, as a runtime signals a container's init: the container
	// that dies on a second one shuts down gracefully.
	eventually(t, 10*time.Second, "the graceful container running", func() bool { return r.inspect(graceful).Status.State == "CONTAINER_RUNNING" })
	r.mustCrictl("stop", "--timeout", "10", graceful)
	// (Re-adopted after the runtime's restart, its exit code is unknown:
	// its log says how it ended.)
	eventually(t, 10*time.Second, "the graceful container's last words in its log", func() bool {
		out, _ := r.crictl("logs", graceful)
		return strings.Contains(out, "shut down\n") || strings.Contains(out, "second SIGTERM")
	})
	if out, _ := r.crictl("logs", graceful); !strings.Contains(out, "shut down\n") || strings.Contains(out, "second SIGTERM") {
		t.Fatalf("a container stopped with one SIGTERM logged %q; it got two and skipped its graceful shutdown", out)
	}
	// A container ignoring SIGTERM is killed after the grace period.
	start = time.Now()
	r.mustCrictl("stop", "--timeout", "2", stubborn)
	if d := time.Since(start); d < 2*time.Second || d > 8*time.Second {
		t.Fatalf("a container ignoring SIGTERM stopped after %s; want the 2s grace period", d)
	}

	r.mustCrictl("rm", main)
	if _, err := r.crictl("inspect", main); err == nil {
		t.Fatal("a removed container is still inspectable")
	}
	r.mustCrictl("stopp", sb)
	if out, _ := ns.command("ip", "-o", "addr", "show", "lo").CombinedOutput(); strings.Contains(string(out), ip+"/") {
		t.Fatalf("stopping the sandbox left %s on lo:\n%s", ip, out)
	}
	r.mustCrictl("rmp", sb)
	if out := r.mustCrictl("pods", "-q"); strings.TrimSpace(out) != "" {
		t.Fatalf("pods left after rmp: %q", out)
	}
	if out := r.mustCrictl("ps", "-a", "-q"); strings.TrimSpace(out) != "" {
		t.Fatalf("containers left after rmp: %q", out)
	}
}

// TestPlaceholderAnswersOnTheContainersPorts runs an image that maps to no
// binary: the placeholder listens on its declared ports.
func TestPlaceholderAnswersOnTheContainersPorts(t *testing.T) {
	if os.Getenv("TRIAD_CRICTL") == "" {
		t.Skip("TRIAD_CRICTL is not set; 'make unit' builds crictl and sets it")
	}
	ns := newNetns(t)
	r := newRuntime(t, ns)
	dir := t.TempDir()
	pod := podConfig(t, dir, "dns", true)
	sb := strings.TrimSpace(r.mustCrictl("runp", pod))
	ctr := writeJSON(t, filepath.Join(dir, "coredns.json"), map[string]any{
		"metadata":    map[string]any{"name": "coredns"},
		"image":       map[string]string{"image": "registry.k8s.io/coredns/coredns:v1.12.0"},
		"args":        []string{"-conf", "/etc/coredns/Corefile"},
		"envs":        []map[string]string{{"key": roleEnv, "value": "placeholder"}},
		"log_path":    "coredns.log",
		"annotations": map[string]string{"io.kubernetes.container.ports": `[{"name":"metrics","containerPort":19153,"protocol":"TCP"},{"name":"dns","containerPort":53,"protocol":"UDP"}]`},
	})
	id := strings.TrimSpace(r.mustCrictl("create", sb, ctr, pod))
	r.mustCrictl("start", id)
	for _, port := range []string{"19153", "8080", "8181"} {
		eventually(t, 10*time.Second, "the placeholder answers on "+port, func() bool {
			out, err := ns.command("curl", "-sf", "http://127.0.0.1:"+port+"/health").CombinedOutput()
			if err != nil && strings.Contains(err.Error(), "executable file not found") {
				t.Skip("needs curl")
			}
			return err == nil && strings.Contains(string(out), "ok")
		})
	}
	r.mustCrictl("rmp", "-f", sb)
}
