//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/triad-k8s/triad/cloudplugins/local"
	"github.com/triad-k8s/triad/cloudplugins/sdk"
)

// TestLocalDownLeavesNothingBehind: VMs, a load balancer and forwarders
// started by the local cloud, and the namespaces, mounts, bridge and
// addresses they live in, are gone after 'triad local down'.
func TestLocalDownLeavesNothingBehind(t *testing.T) {
	stateDir := filepath.Join(t.TempDir(), "localcloud")
	cloud, err := local.New(local.Config{StateDir: stateDir, Binary: filepath.Join(binDir, "triad-cloud-local")})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	vm, err := cloud.CreateVM(ctx, local.VMRequest{Name: "cp", Zone: "local-a"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cloud.CreateVM(ctx, local.VMRequest{Name: "other", Zone: "local-b"}); err != nil {
		t.Fatal(err)
	}
	net := cloud.Network()
	if leftovers := hostFootprint(stateDir, net); len(leftovers) == 0 {
		t.Fatal("a running local cloud shows no bridge, address or mount: the check below proves nothing")
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
	if leftovers := hostFootprint(stateDir, net); len(leftovers) > 0 {
		t.Errorf("left after down: %s", strings.Join(leftovers, "; "))
	}
}

// hostFootprint lists what of the local cloud in stateDir this machine
// still holds: its bridge, addresses of its pools on any host interface,
// and mounts of its directories in any process's mount namespace (a VM's
// namespace lives as long as one of its processes).
func hostFootprint(stateDir string, n local.Network) []string {
	var out []string
	if _, err := netlink.LinkByName(n.Bridge); err == nil {
		out = append(out, "bridge "+n.Bridge)
	}
	addrs, _ := netlink.AddrList(nil, netlink.FAMILY_V4)
	for _, a := range addrs {
		ip := a.IP.String()
		if strings.HasPrefix(ip, n.PrivatePrefix+".") || strings.HasPrefix(ip, n.PublicPrefix+".") {
			out = append(out, "address "+ip)
		}
	}
	infos, _ := filepath.Glob("/proc/[0-9]*/mountinfo")
	seen := map[string]bool{}
	for _, p := range infos {
		data, _ := os.ReadFile(p)
		for _, line := range strings.Split(string(data), "\n") {
			if strings.Contains(line, stateDir) && !seen[line] {
				seen[line] = true
				out = append(out, "mount in "+filepath.Base(filepath.Dir(p))+": "+line)
			}
		}
	}
	return out
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
