package local_test

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/triad-k8s/triad/cloudplugins/local"
	"github.com/triad-k8s/triad/cloudplugins/sdk"
)

// stubImage writes the "stub" image: one vmstub process per VM.
func stubImage(t *testing.T, cfg local.Config) {
	t.Helper()
	stub := filepath.Join(t.TempDir(), "vmstub")
	cmd := exec.Command("go", "build", "-o", stub, "./testdata/vmstub")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building vmstub: %v\n%s", err, out)
	}
	img := local.Image{Processes: []local.ImageProcess{{Name: "stub", Command: []string{stub, "--ip", "{{ip}}", "--id", "{{id}}", "--disk", "{{disk}}"}}}}
	imagesDir := filepath.Join(cfg.StateDir, "images")
	if err := os.MkdirAll(imagesDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := writeJSONFile(filepath.Join(imagesDir, "stub.json"), img); err != nil {
		t.Fatal(err)
	}
}

// dialID connects to addr and returns what the backend says (its VM id).
func dialID(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	b, err := io.ReadAll(c)
	if len(b) == 0 && err == nil {
		err = errors.New("connection closed without a reply")
	}
	return string(b), err
}

// eventually retries cond for up to 20s.
func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// reached returns which VM ids answered n connections through addr.
func reached(addr string, n int) (map[string]int, error) {
	seen := map[string]int{}
	for range n {
		id, err := dialID(addr)
		if err != nil {
			return seen, err
		}
		seen[id]++
	}
	return seen, nil
}

func TestLoadBalancerFollowsGatesAndVMs(t *testing.T) {
	cloud, cfg := newCloud(t)
	stubImage(t, cfg)
	ctx := t.Context()
	var vms []sdk.Instance
	for i, zone := range local.Zones {
		vm, err := cloud.CreateVM(ctx, local.VMRequest{Name: "cp-" + strconv.Itoa(i), Zone: zone, Image: "stub"})
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(cloud.DiskDir(vm.ID), "gate-open"), nil, 0o600)
		vms = append(vms, vm)
	}
	// The old single node: stopped, its private address released and
	// taken over by the load balancer.
	old, err := cloud.CreateVM(ctx, local.VMRequest{Name: "old", Zone: "local-a"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cloud.StopInstance(ctx, old.ID); err != nil {
		t.Fatal(err)
	}
	addr, err := cloud.ReleaseAddress(ctx, old.PrivateIP)
	if err != nil {
		t.Fatal(err)
	}
	lb, err := cloud.CreateLoadBalancer(ctx, sdk.CreateLoadBalancerRequest{
		IdempotencyToken: "lb", Name: "internal", Scheme: sdk.SchemeInternal, AddressID: addr.ID, ListenerPort: 16443, BackendPort: 16443,
		BackendInstanceIDs: []string{vms[0].ID, vms[1].ID, vms[2].ID},
		HealthCheck:        sdk.HealthCheck{Port: 19444, Path: "/gate", Interval: 200 * time.Millisecond, Timeout: 500 * time.Millisecond, HealthyThreshold: 2, UnhealthyThreshold: 2},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cloud.SetLoadBalancerTraffic(ctx, lb.ID, true); err != nil {
		t.Fatal(err)
	}
	front := net.JoinHostPort(old.PrivateIP, "16443")

	eventually(t, "every healthy VM gets traffic on the old address", func() error {
		seen, err := reached(front, 30)
		if err != nil {
			return err
		}
		if len(seen) != 3 {
			return errors.New("reached " + strconv.Itoa(len(seen)) + " backends")
		}
		return nil
	})

	// A VM reaches the load balancer too, as a kubelet on a new control
	// plane node reaches the old address: through the bridge, from its own
	// network namespace, where the host's addresses are not.
	fromVM, err := cloud.DialInVM(vms[0].ID, "tcp", front, 2*time.Second)
	if err != nil {
		t.Fatalf("dialing the load balancer from inside %s: %v", vms[0].ID, err)
	}
	fromVM.SetReadDeadline(time.Now().Add(2 * time.Second))
	if b, err := io.ReadAll(fromVM); err != nil || len(b) == 0 {
		t.Errorf("the load balancer answered a VM %q, %v", b, err)
	}
	fromVM.Close()
	hostOnly, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hostOnly.Close()
	if c, err := net.DialTimeout("tcp", hostOnly.Addr().String(), time.Second); err != nil {
		t.Fatalf("the host's own listener: %v", err)
	} else {
		c.Close()
	}
	if c, err := cloud.DialInVM(vms[0].ID, "tcp", hostOnly.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Error("a VM reached the host's 127.0.0.1: its loopback is not its own")
	}

	// Closing a gate drains that VM within the health-check window.
	os.Remove(filepath.Join(cloud.DiskDir(vms[1].ID), "gate-open"))
	eventually(t, "a closed gate gets no new connections", func() error {
		seen, err := reached(front, 30)
		if err != nil {
			return err
		}
		if seen[vms[1].ID] > 0 || len(seen) != 2 {
			return errors.New("still reaching the closed backend")
		}
		return nil
	})

	// A VM that loses power leaves the rotation.
	if err := cloud.KillVM(vms[2].ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a killed VM gets no new connections", func() error {
		seen, err := reached(front, 30)
		if err != nil {
			return err
		}
		if seen[vms[2].ID] > 0 || seen[vms[0].ID] != 30 {
			return errors.New("traffic not only on the last healthy VM")
		}
		return nil
	})
	got, err := cloud.GetLoadBalancer(ctx, lb.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range got.Backends {
		if want := map[bool]sdk.BackendHealth{true: sdk.BackendHealthy, false: sdk.BackendUnhealthy}[b.InstanceID == vms[0].ID]; b.Health != want {
			t.Errorf("backend %s is %s, want %s", b.InstanceID, b.Health, want)
		}
	}
	if inst, _ := cloud.GetInstance(ctx, vms[2].ID); inst.State != sdk.InstanceStopped {
		t.Errorf("a killed VM reports %s", inst.State)
	}
}

func TestPublicAddressForwardsToTheVM(t *testing.T) {
	cloud, cfg := newCloud(t)
	stubImage(t, cfg)
	// Forward the stub's port, like 6443 for a kube-apiserver.
	cfg.ForwardPorts = []int{16443}
	cloud, err := local.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	vm, err := cloud.CreateVM(t.Context(), local.VMRequest{Name: "cp", Zone: "local-a", Image: "stub"})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the public address answers as the VM", func() error {
		id, err := dialID(net.JoinHostPort(vm.PublicIP, "16443"))
		if err == nil && id != vm.ID {
			return errors.New("answered by " + id)
		}
		return err
	})
}

// tree maps each path below root to its mode and content.
func tree(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		info, _ := d.Info()
		entry := info.Mode().String()
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(path)
			entry += " -> " + target
		case info.Mode().IsRegular():
			data, _ := os.ReadFile(path)
			entry += " " + string(data)
		}
		out[rel] = entry
		return nil
	})
	return out
}

func TestDisksSurviveStopStartAndSnapshotsCopyThemExactly(t *testing.T) {
	cloud, cfg := newCloud(t)
	ctx := t.Context()
	seed := t.TempDir()
	os.MkdirAll(filepath.Join(seed, "etc/kubernetes/pki"), 0o755)
	os.WriteFile(filepath.Join(seed, "etc/kubernetes/pki/ca.key"), []byte("secret"), 0o600)
	os.Symlink("pki/ca.key", filepath.Join(seed, "etc/kubernetes/link"))
	vm, err := cloud.CreateVM(ctx, local.VMRequest{Name: "cp", Zone: "local-a", SeedDir: seed})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(cloud.DiskDir(vm.ID), "written-while-running"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(cloud.DataDiskDir(vm.ID), "on-the-data-disk"), []byte("y"), 0o600)
	if _, err := cloud.StopInstance(ctx, vm.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := cloud.StartInstance(ctx, vm.ID); err != nil {
		t.Fatal(err)
	}
	// Compared once booted and stopped: a booting VM is still writing its
	// hostname, hosts and machine id.
	waitBooted(t, cloud, vm.ID, "cp")
	if _, err := cloud.StopInstance(ctx, vm.ID); err != nil {
		t.Fatal(err)
	}
	before := tree(t, cloud.DiskDir(vm.ID))
	if before["written-while-running"] == "" || before["etc/kubernetes/pki/ca.key"] != "-rw------- secret" || before["etc/machine-id"] == "" {
		t.Fatalf("disk after stop/start: %v", before)
	}
	snap, err := cloud.CreateDiskSnapshot(ctx, sdk.CreateDiskSnapshotRequest{IdempotencyToken: "s", InstanceID: vm.ID})
	if err != nil {
		t.Fatal(err)
	}
	// The snapshot is both disks, exactly.
	data := tree(t, cloud.DataDiskDir(vm.ID))
	for disk, want := range map[string]map[string]string{"root": before, "data": data} {
		got := tree(t, filepath.Join(cfg.StateDir, "snapshots", snap.ID, disk))
		if len(got) != len(want) {
			t.Errorf("snapshot's %s disk has %d entries, source %d", disk, len(got), len(want))
		}
		for p, v := range want {
			if got[p] != v {
				t.Errorf("snapshot's %s disk: %s = %q, source %q", disk, p, got[p], v)
			}
		}
	}
	clone, err := cloud.CreateInstance(ctx, sdk.CreateInstanceRequest{IdempotencyToken: "c", Name: "clone", Zone: "local-b", DiskSnapshotID: snap.ID})
	if err != nil {
		t.Fatal(err)
	}
	// A clone boots as itself: its hostname and hosts are its own (as
	// cloud-init writes them); everything else is the source's, its machine
	// id included (as a cloned disk's).
	waitBooted(t, cloud, clone.ID, "clone")
	if _, err := cloud.StopInstance(ctx, clone.ID); err != nil {
		t.Fatal(err)
	}
	after := tree(t, cloud.DiskDir(clone.ID))
	if len(after) != len(before) {
		t.Fatalf("clone has %d entries, source %d", len(after), len(before))
	}
	for p, v := range before {
		switch p {
		case "etc/hostname", "etc/hosts":
			if !strings.Contains(after[p], "clone") {
				t.Errorf("%s of the clone: %q, want its own name", p, after[p])
			}
		default:
			if after[p] != v {
				t.Errorf("%s: clone %q, source %q", p, after[p], v)
			}
		}
	}
	if cloud.MachineID(clone.ID) != cloud.MachineID(vm.ID) || cloud.MachineID(vm.ID) == "" {
		t.Errorf("machine ids: clone %q, source %q; a cloned disk keeps its source's", cloud.MachineID(clone.ID), cloud.MachineID(vm.ID))
	}
	if got := tree(t, cloud.DataDiskDir(clone.ID)); got["on-the-data-disk"] != data["on-the-data-disk"] || got["on-the-data-disk"] == "" {
		t.Errorf("clone's data disk: %v, source %v", got, data)
	}
}

func TestInjectedFaultsFailOnce(t *testing.T) {
	cloud, _ := newCloud(t)
	vm, err := cloud.CreateVM(t.Context(), local.VMRequest{Name: "cp", Zone: "local-a"})
	if err != nil {
		t.Fatal(err)
	}
	if err := cloud.FailNext("StopInstance", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := cloud.StopInstance(t.Context(), vm.ID); !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("first StopInstance: %v, want the injected ErrUnavailable", err)
	}
	if inst, _ := cloud.GetInstance(t.Context(), vm.ID); inst.State != sdk.InstanceRunning {
		t.Fatalf("a failed stop changed the VM: %s", inst.State)
	}
	if _, err := cloud.StopInstance(t.Context(), vm.ID); err != nil {
		t.Fatalf("second StopInstance: %v", err)
	}
}

// A configuration the namespaced VMs cannot live with is refused, naming
// why, and creates nothing.
func TestConfigurationsTheVMsCannotUseAreRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  local.Config
		want string
	}{
		{"state under /var", local.Config{StateDir: "/var/tmp/triad-test-localcloud", Binary: binary}, "cannot be under /var"},
		{"state under /etc", local.Config{StateDir: "/etc/triad-test-localcloud", Binary: binary}, "cannot be under /etc"},
		{"loopback pool", local.Config{StateDir: filepath.Join(t.TempDir(), "c"), Binary: binary, PrivatePrefix: "127.0.10", PublicPrefix: "127.0.20"}, "loopback"},
		{"one pool", local.Config{StateDir: filepath.Join(t.TempDir(), "c"), Binary: binary, PrivatePrefix: "198.18.9"}, "both address pools"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := local.New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New(%+v) = %v, want an error saying %q", tc.cfg, err, tc.want)
			}
			if _, err := os.Stat(tc.cfg.StateDir); !os.IsNotExist(err) {
				t.Errorf("a refused configuration left %s: %v", tc.cfg.StateDir, err)
			}
		})
	}
}

// waitBooted waits until VM id has written its boot files for hostname
// (/etc/hosts and /etc/resolv.conf are the last).
func waitBooted(t *testing.T, cloud *local.Cloud, id, hostname string) {
	t.Helper()
	eventually(t, id+" booted", func() error {
		hosts, err := os.ReadFile(filepath.Join(cloud.DiskDir(id), "etc", "hosts"))
		if err != nil || !strings.Contains(string(hosts), " "+hostname+"\n") {
			return fmt.Errorf("/etc/hosts %q: %v", hosts, err)
		}
		if resolv, err := os.ReadFile(filepath.Join(cloud.DiskDir(id), "etc", "resolv.conf")); err != nil || !strings.Contains(string(resolv), "local cloud") {
			return fmt.Errorf("/etc/resolv.conf %q: %v", resolv, err)
		}
		return nil
	})
}

// TestAReusedAddressIsAnnounced: a cloud hands a deleted VM's private
// address to the next VM, and its network learns the new interface at once.
// A booting VM announces its address (gratuitous ARP), so another VM's
// neighbour entry for it stops naming the deleted VM's interface: without
// it, etcd peers and kube-apiservers on other VMs sent to a gone MAC until
// the entry timed out and was probed again.
func TestAReusedAddressIsAnnounced(t *testing.T) {
	cloud, cfg := newCloud(t)
	stubImage(t, cfg)
	ctx := t.Context()
	peer, err := cloud.CreateVM(ctx, local.VMRequest{Name: "peer", Zone: "local-a", Image: "stub"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cloud.StopInstance(ctx, peer.ID); err != nil {
		t.Fatal(err)
	}
	snap, err := cloud.CreateDiskSnapshot(ctx, sdk.CreateDiskSnapshotRequest{IdempotencyToken: "s", InstanceID: peer.ID})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cloud.StartInstance(ctx, peer.ID); err != nil {
		t.Fatal(err)
	}
	waitBooted(t, cloud, peer.ID, "peer")
	first, err := cloud.CreateInstance(ctx, sdk.CreateInstanceRequest{IdempotencyToken: "first", Name: "first", Zone: "local-a", Image: "stub", DiskSnapshotID: snap.ID})
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort(first.PrivateIP, "16443")
	eventually(t, "the first VM answers the peer", func() error {
		c, err := cloud.DialInVM(peer.ID, "tcp", addr, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	})
	// The peer's neighbour entry for the address: "<ip> dev eth0 lladdr <mac> STATE".
	neighbour := func() string {
		cmd, err := cloud.Command(peer.ID, "ip", "neigh", "show", first.PrivateIP)
		if err != nil {
			t.Fatal(err)
		}
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("ip neigh in the peer: %v", err)
		}
		f := strings.Fields(string(out))
		for i := range f {
			if f[i] == "lladdr" && i+1 < len(f) {
				return f[i+1]
			}
		}
		return ""
	}
	firstMAC := neighbour()
	if firstMAC == "" {
		t.Fatalf("the peer has no neighbour entry for %s after talking to it", first.PrivateIP)
	}
	if err := cloud.DeleteInstance(ctx, first.ID); err != nil {
		t.Fatal(err)
	}
	// Its console output outlives it, as a cloud keeps a terminated
	// instance's for a while.
	if b, err := os.ReadFile(filepath.Join(cloud.DeletedVMLogs(first.ID), "supervisor.log")); err != nil || !strings.Contains(string(b), "booted") {
		t.Errorf("the deleted VM's supervisor log: %v %q", err, b)
	}
	second, err := cloud.CreateInstance(ctx, sdk.CreateInstanceRequest{IdempotencyToken: "second", Name: "second", Zone: "local-a", Image: "stub", DiskSnapshotID: snap.ID, PrivateIP: first.PrivateIP})
	if err != nil {
		t.Fatal(err)
	}
	if second.PrivateIP != first.PrivateIP {
		t.Fatalf("second VM on %s, asked for %s", second.PrivateIP, first.PrivateIP)
	}
	waitBooted(t, cloud, second.ID, "second")
	if mac := neighbour(); mac == firstMAC {
		t.Fatalf("after the second VM booted on %s, the peer still sends to the deleted VM's interface %s", first.PrivateIP, mac)
	}
	eventually(t, "the second VM answers on the reused address", func() error {
		id, err := dialID(addr)
		if err == nil && id != second.ID {
			return errors.New("answered by " + id)
		}
		return err
	})
}
