//go:build e2e

// Package e2e runs triad's real binaries as an operator would: built from
// this tree, started as processes, talking over real mTLS on loopback.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// binDir holds the binaries built once for the whole run.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "triad-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	for _, b := range []string{"triad", "triad-agent", "triad-cloud-local"} {
		args := []string{"build", "-o", filepath.Join(dir, b)}
		// TRIAD_E2E_RACE=1 builds the agent with the race detector: a race
		// it reports goes to its log (vms/<id>/triad-agent.log), and a fatal
		// one shows as the supervisor restarting it.
		if b == "triad-agent" && os.Getenv("TRIAD_E2E_RACE") == "1" {
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, "./cmd/"+b)...)
		cmd.Dir = ".."
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "building %s: %v\n", b, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is the outcome of one CLI invocation.
type result struct {
	stdout, stderr string
	err            error
}

// triad runs the coordinator CLI with args.
func triad(t *testing.T, args ...string) result {
	t.Helper()
	// Not t.Context(): cleanups (local down) run after it is canceled.
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "triad"), args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	return result{stdout: out.String(), stderr: errOut.String(), err: err}
}

// mustTriad runs triad and fails the test if it fails.
func mustTriad(t *testing.T, args ...string) string {
	t.Helper()
	r := triad(t, args...)
	if r.err != nil {
		t.Fatalf("triad %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.err, r.stdout, r.stderr)
	}
	return r.stdout
}

// agentProcess is a running triad-agent.
type agentProcess struct {
	addr string
	cmd  *exec.Cmd
	logs *bytes.Buffer
}

// startAgent starts triad-agent on a free loopback port and waits until it
// accepts TCP connections.
func startAgent(t *testing.T, args ...string) *agentProcess {
	t.Helper()
	addr, gateAddr := freeAddr(t), freeAddr(t)
	logs := &bytes.Buffer{}
	cmd := exec.Command(filepath.Join(binDir, "triad-agent"), append([]string{"--listen", addr, "--gate-listen", gateAddr}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	cmd.Stdout, cmd.Stderr = logs, logs
	// These agents run without a kube-apiserver on their node.
	cmd.Args = append(cmd.Args, "--apiserver-url", "")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// exited is closed when the process is gone; waitErr is then set.
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	p := &agentProcess{addr: addr, cmd: cmd, logs: logs}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("agent logs:\n%s", logs.String())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			t.Fatalf("triad-agent exited: %v\n%s", waitErr, logs.String())
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return p
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("triad-agent did not listen on %s\n%s", addr, logs.String())
	return nil
}

// runAgentToExit runs triad-agent expecting it to exit on its own.
func runAgentToExit(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "triad-agent"), args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// freeAddr returns a loopback address with a port free right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
