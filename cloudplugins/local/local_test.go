package local_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/triad-k8s/triad/cloudplugins/conformance"
	"github.com/triad-k8s/triad/cloudplugins/local"
	"github.com/triad-k8s/triad/cloudplugins/sdk"
)

// binary is triad-cloud-local built from this tree for the run.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "triad-cloud-local-bin-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "triad-cloud-local")
	cmd := exec.Command("go", "build", "-o", binary, "../../cmd/triad-cloud-local")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building triad-cloud-local:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// newCloud returns a local cloud in a fresh state directory, torn down with
// the test; the teardown asserts that nothing is left behind.
func newCloud(t *testing.T) (*local.Cloud, local.Config) {
	t.Helper()
	cfg := local.Config{StateDir: filepath.Join(t.TempDir(), "localcloud"), Binary: binary}
	cloud, err := local.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cloud.Down(); err != nil {
			t.Errorf("Down: %v", err)
		}
		assertNothingLeft(t, cfg.StateDir)
	})
	return cloud, cfg
}

// assertNothingLeft checks that no process of the local cloud runs and its
// state directory is gone.
func assertNothingLeft(t *testing.T, stateDir string) {
	t.Helper()
	if _, err := os.Stat(stateDir); !os.IsNotExist(err) {
		t.Errorf("state directory %s still exists after Down", stateDir)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		data, err := os.ReadFile(p)
		if err == nil && containsArg(data, stateDir) {
			t.Errorf("process %s still runs for %s: %q", filepath.Dir(p), stateDir, data)
		}
	}
}

func containsArg(cmdline []byte, arg string) bool {
	for _, a := range splitNul(cmdline) {
		if a == arg {
			return true
		}
	}
	return false
}

func splitNul(b []byte) []string {
	var out []string
	start := 0
	for i, c := range b {
		if c == 0 {
			out = append(out, string(b[start:i]))
			start = i + 1
		}
	}
	return out
}

func seedFixture(t *testing.T, cloud *local.Cloud, p sdk.Provider) conformance.Fixture {
	t.Helper()
	seedDisk := t.TempDir()
	os.WriteFile(filepath.Join(seedDisk, "hello"), []byte("disk contents"), 0o644)
	seed, err := cloud.CreateVM(t.Context(), local.VMRequest{Name: "seed", Zone: "local-a", SeedDir: seedDisk})
	if err != nil {
		t.Fatal(err)
	}
	var priv, pub string
	addrs, _ := cloud.ListAddresses(t.Context())
	for _, a := range addrs {
		if a.InstanceID == seed.ID && a.Kind == sdk.AddressPrivate {
			priv = a.ID
		}
		if a.InstanceID == seed.ID && a.Kind == sdk.AddressPublic {
			pub = a.ID
		}
	}
	return conformance.Fixture{Provider: p, Seed: seed.ID, PrivateAddressID: priv, PublicAddressID: pub, Backends: backends{cloud}, Settle: 15 * time.Second}
}

func TestConformanceInProcess(t *testing.T) {
	conformance.Run(t, func(t *testing.T) conformance.Fixture {
		cloud, _ := newCloud(t)
		return seedFixture(t, cloud, cloud)
	})
}

func TestConformanceThroughThePluginBinary(t *testing.T) {
	conformance.Run(t, func(t *testing.T) conformance.Fixture {
		cloud, cfg := newCloud(t)
		raw, _ := json.Marshal(cfg)
		plugin, err := sdk.Open(t.Context(), binary, sdk.OpenOptions{Config: raw})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(plugin.Close)
		if plugin.Info.Name != "local" {
			t.Fatalf("plugin info %+v", plugin.Info)
		}
		return seedFixture(t, cloud, plugin)
	})
}

// backends serves a gate and a backend on an instance's private address,
// inside the VM's network namespace, standing in for triad-agent and
// kube-apiserver.
type backends struct{ cloud *local.Cloud }

func (b backends) Serve(t *testing.T, inst sdk.Instance, hc sdk.HealthCheck, port int, healthy bool) {
	gate := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !healthy {
			http.Error(w, "gate closed", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok"))
	}))
	l, err := b.cloud.ListenInVM(inst.ID, "tcp", net.JoinHostPort(inst.PrivateIP, strconv.Itoa(hc.Port)))
	if err != nil {
		t.Fatal(err)
	}
	gate.Listener = l
	gate.StartTLS()
	t.Cleanup(gate.Close)
	bl, err := b.cloud.ListenInVM(inst.ID, "tcp", net.JoinHostPort(inst.PrivateIP, strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bl.Close() })
	go func() {
		for {
			c, err := bl.Accept()
			if err != nil {
				return
			}
			c.Write([]byte(inst.ID))
			c.Close()
		}
	}()
}

func TestWrongPluginChecksumRefusesToStart(t *testing.T) {
	_, cfg := newCloud(t)
	raw, _ := json.Marshal(cfg)
	_, err := sdk.Open(context.Background(), binary, sdk.OpenOptions{Config: raw, SHA256: "0000000000000000000000000000000000000000000000000000000000000000"})
	if err == nil {
		t.Fatal("a plugin with the wrong checksum started")
	}
}

func writeJSONFile(path string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o600)
}
