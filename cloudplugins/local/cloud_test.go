package local_test

import (
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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
	cloud, _ := newCloud(t)
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
	if _, err := cloud.StopInstance(ctx, vm.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := cloud.StartInstance(ctx, vm.ID); err != nil {
		t.Fatal(err)
	}
	before := tree(t, cloud.DiskDir(vm.ID))
	if before["written-while-running"] == "" || before["etc/kubernetes/pki/ca.key"] != "-rw------- secret" {
		t.Fatalf("disk after stop/start: %v", before)
	}
	if _, err := cloud.StopInstance(ctx, vm.ID); err != nil {
		t.Fatal(err)
	}
	snap, err := cloud.CreateDiskSnapshot(ctx, sdk.CreateDiskSnapshotRequest{IdempotencyToken: "s", InstanceID: vm.ID})
	if err != nil {
		t.Fatal(err)
	}
	clone, err := cloud.CreateInstance(ctx, sdk.CreateInstanceRequest{IdempotencyToken: "c", Name: "clone", Zone: "local-b", DiskSnapshotID: snap.ID})
	if err != nil {
		t.Fatal(err)
	}
	after := tree(t, cloud.DiskDir(clone.ID))
	if len(after) != len(before) {
		t.Fatalf("clone has %d entries, source %d", len(after), len(before))
	}
	for p, v := range before {
		if after[p] != v {
			t.Errorf("%s: clone %q, source %q", p, after[p], v)
		}
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
