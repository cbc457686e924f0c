//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/triad-k8s/triad/cloudplugins/local"
	"github.com/triad-k8s/triad/cloudplugins/sdk"
)

// TestLocalDownLeavesNothingBehind: VMs, a load balancer and forwarders
// started by the local cloud are gone after 'triad local down'.
func TestLocalDownLeavesNothingBehind(t *testing.T) {
	stateDir := filepath.Join(t.TempDir(), "localcloud")
	cloud, err := local.New(local.Config{StateDir: stateDir, Binary: filepath.Join(binDir, "triad-cloud-local"), PrivatePrefix: "127.0.30", PublicPrefix: "127.0.31"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	vm, err := cloud.CreateVM(ctx, local.VMRequest{Name: "cp", Zone: "local-a"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cloud.StopInstance(ctx, vm.ID); err != nil {
		t.Fatal(err)
	}
	addr, err := cloud.ReleaseAddress(ctx, vm.PrivateIP)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cloud.StartInstance(ctx, vm.ID); err == nil {
		t.Fatal("a VM without a private address started")
	}
	if _, err := cloud.CreateLoadBalancer(ctx, sdk.CreateLoadBalancerRequest{IdempotencyToken: "lb", Name: "lb", Scheme: sdk.SchemeInternal, AddressID: addr.ID, ListenerPort: 6443, BackendPort: 6443, HealthCheck: sdk.HealthCheck{Port: 9444}}); err != nil {
		t.Fatal(err)
	}
	if n := processesFor(stateDir); n < 2 {
		t.Fatalf("%d local cloud processes before down; want the load balancer and the forwarder", n)
	}

	out := mustTriad(t, "local", "down", "--state-dir", stateDir)
	if !strings.Contains(out, "is down") {
		t.Errorf("output: %q", out)
	}
	if n := processesFor(stateDir); n != 0 {
		t.Errorf("%d local cloud processes left after down", n)
	}
	if _, err := os.Stat(stateDir); !os.IsNotExist(err) {
		t.Errorf("state directory left after down: %v", err)
	}
}

// processesFor counts live processes whose arguments name stateDir.
func processesFor(stateDir string) int {
	n := 0
	cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range cmdlines {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		stat, _ := os.ReadFile(filepath.Join(filepath.Dir(p), "stat"))
		if strings.Contains(string(stat), ") Z ") {
			continue
		}
		for _, arg := range strings.Split(string(data), "\x00") {
			if arg == stateDir {
				n++
				break
			}
		}
	}
	return n
}

// pluginProcessesFor counts the live cloud-plugin processes (started by
// triad through go-plugin: no arguments) configured for stateDir.
func pluginProcessesFor(stateDir string) int {
	n := 0
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		cmdline, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err != nil || len(strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")) != 1 {
			continue
		}
		stat, _ := os.ReadFile(filepath.Join(d, "stat"))
		if strings.Contains(string(stat), ") Z ") {
			continue
		}
		environ, _ := os.ReadFile(filepath.Join(d, "environ"))
		if strings.Contains(string(environ), "TRIAD_CLOUD_CONFIG=") && strings.Contains(string(environ), stateDir) {
			n++
		}
	}
	return n
}
