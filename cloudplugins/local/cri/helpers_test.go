package cri_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/triad-k8s/triad/cloudplugins/local/cri"
)

// The test binary is also every process the tests need, chosen by
// TRIAD_CRI_TEST_ROLE: the runtime itself (so it can be restarted), the
// "image" containers run, the placeholder, and the holder of a network
// namespace.
const roleEnv = "TRIAD_CRI_TEST_ROLE"

// testImage maps to the test binary.
const testImage = "example.com/triad/test:1"

func TestMain(m *testing.M) {
	switch os.Getenv(roleEnv) {
	case "":
		os.Exit(m.Run())
	case "server":
		var cfg cri.Config
		if err := json.Unmarshal([]byte(os.Getenv("TRIAD_CRI_TEST_CONFIG")), &cfg); err != nil {
			fail(err)
		}
		if err := cri.Main(append([]string{"--socket", cfg.Socket, "--state-dir", cfg.StateDir, "--images", os.Getenv("TRIAD_CRI_TEST_IMAGES")},
			"--placeholder", strings.Join(cfg.Placeholder, " "), "--debug")); err != nil {
			fail(err)
		}
	case "placeholder":
		if err := cri.Placeholder(os.Args[1:]); err != nil {
			fail(err)
		}
	case "image":
		image(os.Args[1:])
	case "netns":
		holdNetns()
	}
	os.Exit(0)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}

// image is the test image's program: args[0] says what it does.
func image(args []string) {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	switch args[0] {
	case "echo-sleep": // write both streams (and a mounted file), stop on SIGTERM
		fmt.Println("hello stdout")
		fmt.Fprintln(os.Stderr, "hello stderr")
		if f := os.Getenv("SHOW_FILE"); f != "" {
			data, err := os.ReadFile(f)
			fmt.Printf("file %s: %q %v\n", f, data, err)
		}
		fmt.Printf("pod ip %q\n", os.Getenv("POD_IP"))
		<-term
		fmt.Println("got SIGTERM")
	case "stubborn": // ignore SIGTERM
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("ignoring SIGTERM")
		select {}
	case "exit-on-second-sigterm": // k8s.io/apiserver's signal handler
		fmt.Println("running")
		<-term
		fmt.Println("SIGTERM: shutting down gracefully")
		select {
		case <-term:
			fmt.Println("second SIGTERM: exiting at once")
			os.Exit(1)
		case <-time.After(time.Second):
			fmt.Println("shut down")
			os.Exit(0)
		}
	case "exit3":
		fmt.Println("exiting 3")
		os.Exit(3)
	case "serve": // HTTP 200 on 127.0.0.1:args[1] until SIGTERM
		l, err := net.Listen("tcp", "127.0.0.1:"+args[1])
		if err != nil {
			fail(err)
		}
		go http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") }))
		fmt.Println("serving on", l.Addr())
		<-term
		fmt.Println("got SIGTERM, exiting")
	}
}

// holdNetns runs inside `unshare --net --mount`: it brings lo up, gives the
// namespace an interface with an address and a default route (so a
// kubelet finds a node IP), hides the VM's /var/log behind a tmpfs (the
// kubelet writes /var/log/containers), reports readiness on stdout and
// waits to be killed.
func holdNetns() {
	lo, err := netlink.LinkByName("lo")
	if err == nil {
		err = netlink.LinkSetUp(lo)
	}
	if err != nil {
		fail(fmt.Errorf("lo up: %w", err))
	}
	// A veth pair, both ends here (this kernel may lack the dummy driver).
	dummy := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "eth0-peer"}
	if err := netlink.LinkAdd(dummy); err != nil {
		fail(fmt.Errorf("adding a veth pair: %w", err))
	}
	addr, _ := netlink.ParseAddr("10.250.0.2/24")
	if err := netlink.AddrAdd(dummy, addr); err != nil {
		fail(err)
	}
	for _, name := range []string{"eth0", "eth0-peer"} {
		l, err := netlink.LinkByName(name)
		if err == nil {
			err = netlink.LinkSetUp(l)
		}
		if err != nil {
			fail(fmt.Errorf("%s up: %w", name, err))
		}
	}
	if err := netlink.RouteAdd(&netlink.Route{LinkIndex: dummy.Attrs().Index, Gw: net.ParseIP("10.250.0.1")}); err != nil {
		fail(fmt.Errorf("default route: %w", err))
	}
	if err := unix.Mount("tmpfs", "/var/log", "tmpfs", 0, "mode=0755"); err != nil {
		fail(fmt.Errorf("tmpfs on /var/log: %w", err))
	}
	fmt.Println("ready")
	select {}
}

// netns is a network and mount namespace held by a process; commands run
// in it through nsenter.
type netns struct{ pid int }

// newNetns makes a namespace for the test, or skips it when that is
// impossible here. It goes when the test ends.
func newNetns(t *testing.T) netns {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace")
	}
	for _, tool := range []string{"unshare", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (util-linux)", tool)
		}
	}
	self, _ := os.Executable()
	cmd := exec.Command("unshare", "--net", "--mount", "--propagation", "private", "--", self)
	cmd.Env = append(os.Environ(), roleEnv+"=netns")
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("unshare: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		t.Fatalf("the namespace holder did not come up: %q %v", line, err)
	}
	return netns{pid: cmd.Process.Pid}
}

// command is name+args run inside ns (or in the test's namespaces when ns
// is the zero netns).
func (ns netns) command(name string, args ...string) *exec.Cmd {
	if ns.pid == 0 {
		return exec.Command(name, args...)
	}
	return exec.Command("nsenter", append([]string{"-t", strconv.Itoa(ns.pid), "-n", "-m", "--", name}, args...)...)
}

// runtime is a CRI server running as a process of the test binary.
type runtime struct {
	t        *testing.T
	ns       netns
	socket   string
	stateDir string
	images   string
	log      string
	cmd      *exec.Cmd
}

func newRuntime(t *testing.T, ns netns) *runtime {
	dir := t.TempDir()
	self, _ := os.Executable()
	r := &runtime{t: t, ns: ns, socket: filepath.Join(dir, "cri.sock"), stateDir: filepath.Join(dir, "state"), images: filepath.Join(dir, "images.json"), log: filepath.Join(dir, "cri.log")}
	data, _ := json.Marshal(map[string]string{testImage: self})
	os.WriteFile(r.images, data, 0o600)
	r.start()
	t.Cleanup(func() {
		r.killContainers()
		r.stop()
		if t.Failed() {
			data, _ := os.ReadFile(r.log)
			t.Logf("runtime log:\n%s", data)
		}
	})
	return r
}

func (r *runtime) start() {
	r.t.Helper()
	self, _ := os.Executable()
	cfg, _ := json.Marshal(cri.Config{Socket: r.socket, StateDir: r.stateDir, Placeholder: []string{self}})
	logf, err := os.OpenFile(r.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		r.t.Fatal(err)
	}
	defer logf.Close()
	os.Remove(r.socket)
	r.cmd = r.ns.command(self)
	r.cmd.Env = append(os.Environ(), roleEnv+"=server", "TRIAD_CRI_TEST_CONFIG="+string(cfg), "TRIAD_CRI_TEST_IMAGES="+r.images)
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	if err := r.cmd.Start(); err != nil {
		r.t.Fatalf("starting the runtime: %v", err)
	}
	for i := 0; i < 200; i++ {
		if _, err := os.Stat(r.socket); err == nil {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	r.t.Fatalf("the runtime did not create %s", r.socket)
}

// stop ends the runtime (SIGTERM), leaving its containers running.
func (r *runtime) stop() {
	if r.cmd == nil {
		return
	}
	r.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { r.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		r.cmd.Process.Kill()
		<-done
	}
	r.cmd = nil
}

// killContainers kills whatever container processes the records name, so
// nothing outlives the test even when it failed half-way.
func (r *runtime) killContainers() {
	files, _ := filepath.Glob(filepath.Join(r.stateDir, "containers", "*.json"))
	for _, f := range files {
		var c struct {
			Pid   int `json:"pid"`
			State int `json:"state"`
		}
		data, _ := os.ReadFile(f)
		if json.Unmarshal(data, &c) == nil && c.Pid > 0 && c.State == 1 {
			syscall.Kill(-c.Pid, syscall.SIGKILL)
			syscall.Kill(c.Pid, syscall.SIGKILL)
		}
	}
}

// crictl runs the real crictl against the runtime (it skips the test when
// there is no crictl).
func (r *runtime) crictl(args ...string) (string, error) {
	r.t.Helper()
	crictl := os.Getenv("TRIAD_CRICTL")
	if crictl == "" {
		r.t.Skip("TRIAD_CRICTL is not set; 'make unit' builds crictl and sets it")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, crictl, append([]string{"--runtime-endpoint", "unix://" + r.socket, "--image-endpoint", "unix://" + r.socket, "--timeout", "30s"}, args...)...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + r.t.TempDir()}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("crictl %s: %w\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), err
}

func (r *runtime) mustCrictl(args ...string) string {
	r.t.Helper()
	out, err := r.crictl(args...)
	if err != nil {
		r.t.Fatal(err)
	}
	return out
}

// jsonOut decodes crictl's JSON output (warnings may come before it).
func jsonOut(t *testing.T, out string, v any) {
	t.Helper()
	i := strings.IndexByte(out, '{')
	if i < 0 || json.Unmarshal([]byte(out[i:]), v) != nil {
		t.Fatalf("crictl printed no JSON:\n%s", out)
	}
}

func writeJSON(t *testing.T, path string, v any) string {
	t.Helper()
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
