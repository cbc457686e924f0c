package cli

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/triad-k8s/triad/agent/etcdsnap"
	"github.com/triad-k8s/triad/cloudplugins/sdk"
	"github.com/triad-k8s/triad/coordinator/availability"
	"github.com/triad-k8s/triad/coordinator/config"
	"github.com/triad-k8s/triad/coordinator/controlplane"
	"github.com/triad-k8s/triad/coordinator/engine"
	"github.com/triad-k8s/triad/coordinator/migrate"
	"github.com/triad-k8s/triad/coordinator/upgrade"
)

// testCluster is a cluster.yaml in a temporary directory with everything
// it names (kubeconfig, agent TLS files, plugin path) and a state
// directory nothing has created yet.
type testCluster struct {
	path string
	cfg  *config.Cluster
}

// newTestCluster writes the cluster file through config's own writer;
// its kubeconfig trusts caPEM and authenticates with token.
func newTestCluster(t *testing.T, port int, privateAddress, publicAddress string, caPEM []byte, token string) testCluster {
	t.Helper()
	dir := t.TempDir()
	file := func(name string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("not read by the monitor\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	kubeconfig := filepath.Join(dir, "admin.conf")
	kc := clientcmdapi.NewConfig()
	kc.Clusters["test"] = &clientcmdapi.Cluster{Server: fmt.Sprintf("https://127.0.0.1:%d", port), CertificateAuthorityData: caPEM}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: token}
	kc.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "admin"}
	kc.CurrentContext = "test"
	if err := clientcmd.WriteToFile(*kc, kubeconfig); err != nil {
		t.Fatal(err)
	}
	c := &config.Cluster{
		APIVersion: config.APIVersion, Kind: config.Kind, Name: "test",
		Cloud: config.Cloud{Plugin: file("triad-cloud-never-started")},
		ControlPlane: config.ControlPlane{Instance: "i-0abc", Zones: []string{"a", "b", "c"},
			PrivateAddress: privateAddress, PublicAddress: publicAddress, APIServerPort: port},
		Agent:      config.Agent{TLS: config.TLS{Cert: file("coordinator.crt"), Key: file("coordinator.key"), CA: file("ca.crt")}},
		Kubeconfig: kubeconfig,
		StateDir:   filepath.Join(dir, "state"),
	}
	path := filepath.Join(dir, "cluster.yaml")
	if err := c.Write(path); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return testCluster{path: path, cfg: cfg}
}

// journal records an operation the way migrate and upgrade do: a new
// record through the runner of the operation's plan, then its phase.
func journal[S any](t *testing.T, cfg *config.Cluster, plan engine.Plan[S], state *S, phase engine.Phase) *engine.Record {
	t.Helper()
	j, err := engine.OpenJournal(cfg.StateDir, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	epoch, err := j.NextEpoch(cfg.Name)
	if err != nil {
		t.Fatal(err)
	}
	runner := &engine.Runner[S]{Plan: plan, Journal: j}
	rec, err := runner.NewRecord(newOperationID(plan.Kind), cfg.Name, epoch, state)
	if err != nil {
		t.Fatal(err)
	}
	rec.Phase = phase
	if err := j.Save(rec); err != nil {
		t.Fatal(err)
	}
	// Records are ordered by creation time.
	time.Sleep(2 * time.Millisecond)
	return rec
}

func journalMigration(t *testing.T, cfg *config.Cluster, st *migrate.State, phase engine.Phase) *engine.Record {
	return journal(t, cfg, migrate.Plan(migrate.NewEnv(cfg, nil, nil, etcdsnap.Store{}, migrate.Options{})), st, phase)
}

func journalUpgrade(t *testing.T, cfg *config.Cluster, st *upgrade.State, phase engine.Phase) *engine.Record {
	return journal(t, cfg, upgrade.Plan(upgrade.NewEnv(cfg, nil, nil, upgrade.Options{})), st, phase)
}

// migratedState is a migration that opened traffic: the original node at
// originalIP, the load balancers on the two addresses, the new nodes.
func migratedState(privateIP, publicIP, originalIP string, nodes ...controlplane.Node) *migrate.State {
	opened := time.Now().UTC()
	return &migrate.State{Cluster: "test", Original: controlplane.Node{InstanceID: "i-0abc", Name: "cp-0", PrivateIP: originalIP},
		PrivateIP: privateIP, PublicIP: publicIP, Nodes: nodes, OpenedAt: &opened, InternalLB: "lb-int", PublicLB: "lb-pub", DiskSnapshotID: "snap-1"}
}

func node(name, ip string) controlplane.Node {
	return controlplane.Node{InstanceID: "i-" + name, Name: name, PrivateIP: ip}
}

func runTriad(ctx context.Context, args ...string) (stdout, stderr string, err error) {
	root := NewRootCommand()
	var out, errOut bytes.Buffer
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errOut)
	err = root.ExecuteContext(ctx)
	return out.String(), errOut.String(), err
}

func TestMonitorRefusesBadInputBeforeStartingAnything(t *testing.T) {
	c := newTestCluster(t, 6443, "10.0.0.10", "52.1.2.3", nil, "")
	invalid := filepath.Join(t.TempDir(), "invalid.yaml")
	if err := os.WriteFile(invalid, []byte("apiVersion: triad.dev/v1alpha1\nkind: Cluster\nname: test\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no cluster file is named", []string{"monitor"}, `required flag(s) "file" not set`},
		{"a missing cluster file is named", []string{"monitor", "-f", filepath.Join(t.TempDir(), "nope.yaml")}, "reading cluster config"},
		{"an unreadable cluster file is named", []string{"monitor", "-f", t.TempDir()}, "reading cluster config"},
		{"an invalid cluster file names its problems", []string{"monitor", "-f", invalid}, "controlPlane.instance: required"},
		{"a negative duration is refused", []string{"monitor", "-f", c.path, "--duration", "-5s"}, "--duration -5s: must not be negative"},
		{"an unknown output format is refused", []string{"monitor", "-f", c.path, "-o", "yaml"}, `--output "yaml": want text or json`},
		{"a fail-below above 100 is refused", []string{"monitor", "-f", c.path, "--fail-below", "101"}, "--fail-below 101: want a percentage from 0 to 100"},
		{"a negative fail-below is refused", []string{"monitor", "-f", c.path, "--fail-below=-1"}, "--fail-below -1: want a percentage"},
		{"a fail-below that is not a number is refused", []string{"monitor", "-f", c.path, "--fail-below", "NaN"}, "--fail-below NaN"},
		{"a zero interval is refused", []string{"monitor", "-f", c.path, "--interval", "0s"}, "--interval 0s: must be positive"},
		{"a window shorter than two intervals is refused", []string{"monitor", "-f", c.path, "--window", "400ms"}, "--window 400ms: must be at least twice --interval (250ms)"},
		{"a report path that is a directory is refused", []string{"monitor", "-f", c.path, "--report", t.TempDir()}, "is a directory"},
		{"every bad flag is named at once", []string{"monitor", "-f", c.path, "--duration", "-1s", "-o", "yaml"}, "--output \"yaml\": want text or json\n--duration -1s: must not be negative"},
		{"arguments are refused", []string{"monitor", "-f", c.path, "cp-1"}, `unknown command "cp-1"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			// A monitor started by mistake is interrupted, and found out below.
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
			defer cancel()
			_, _, err := runTriad(ctx, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
			if _, err := os.Stat(c.cfg.StateDir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the state directory %s exists (%v): something was started", c.cfg.StateDir, err)
				os.RemoveAll(c.cfg.StateDir) // for the next case
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("refusing took %s: something ran first", d)
			}
		})
	}
}

func TestMonitorTargetsAreWhatTheJournalSaysServesNow(t *testing.T) {
	const port = 6443
	lbs := func() []availability.Target {
		return []availability.Target{
			{Name: "private", Kind: availability.LoadBalancer, Address: "10.0.0.10:6443"},
			{Name: "public", Kind: availability.LoadBalancer, Address: "52.1.2.3:6443"},
		}
	}
	nodeTarget := func(name, ip string) availability.Target {
		return availability.Target{Name: "node/" + name, Kind: availability.Node, Address: ip + ":6443"}
	}
	newNodes := []controlplane.Node{node("cp-1", "10.0.1.1"), node("cp-2", "10.0.1.2"), node("cp-3", "10.0.1.3")}
	for _, tc := range []struct {
		name string
		// journal records the cluster's operations; it returns the one the
		// targets must come from (nil: none, the configured addresses).
		journal func(t *testing.T, cfg *config.Cluster) *engine.Record
		want    []availability.Target
	}{{
		name:    "a cluster triad never operated on is its single node on its configured addresses",
		journal: func(*testing.T, *config.Cluster) *engine.Record { return nil },
		want:    append(lbs(), nodeTarget("i-0abc", "10.0.0.10")),
	}, {
		name: "a migration whose preflight failed changed nothing: still the configured single node",
		journal: func(t *testing.T, cfg *config.Cluster) *engine.Record {
			journalMigration(t, cfg, migrate.NewState(migrate.NewEnv(cfg, nil, nil, etcdsnap.Store{}, migrate.Options{})), engine.PhaseRolledBack)
			return nil
		},
		want: append(lbs(), nodeTarget("i-0abc", "10.0.0.10")),
	}, {
		name: "a migration paused before traffic opened still serves from the original node",
		journal: func(t *testing.T, cfg *config.Cluster) *engine.Record {
			st := migratedState("10.0.0.10", "52.1.2.3", "10.0.0.5", newNodes...)
			st.OpenedAt = nil
			return journalMigration(t, cfg, st, engine.PhasePaused)
		},
		want: append(lbs(), nodeTarget("cp-0", "10.0.0.5")),
	}, {
		name: "a migrated cluster is both load balancers and the three new nodes",
		journal: func(t *testing.T, cfg *config.Cluster) *engine.Record {
			return journalMigration(t, cfg, migratedState("10.0.0.10", "52.1.2.3", "10.0.0.5", newNodes...), engine.PhaseSucceeded)
		},
		want: append(lbs(), nodeTarget("cp-1", "10.0.1.1"), nodeTarget("cp-2", "10.0.1.2"), nodeTarget("cp-3", "10.0.1.3")),
	}, {
		name: "after an upgrade stopped half-way, switched nodes are their new VMs and the others their old",
		journal: func(t *testing.T, cfg *config.Cluster) *engine.Record {
			mig := journalMigration(t, cfg, migratedState("10.0.0.10", "52.1.2.3", "10.0.0.5", newNodes...), engine.PhaseSucceeded)
			st := upgrade.NewState(cfg.Name, migrated(mig.ID, migratedState("10.0.0.10", "52.1.2.3", "10.0.0.5", newNodes...)), "image-2", "", "")
			st.Nodes = []upgrade.NodeUpgrade{
				{Old: newNodes[0], New: node("cp-4", "10.0.1.4"), Switched: true, Done: true},
				{Old: newNodes[1], New: node("cp-5", "10.0.1.5")}, // rolled back: the new VM never served
				{Old: newNodes[2]},
			}
			return journalUpgrade(t, cfg, st, engine.PhasePaused)
		},
		want: append(lbs(), nodeTarget("cp-4", "10.0.1.4"), nodeTarget("cp-2", "10.0.1.2"), nodeTarget("cp-3", "10.0.1.3")),
	}, {
		name: "an upgrade whose preflight failed leaves the nodes the migration left",
		journal: func(t *testing.T, cfg *config.Cluster) *engine.Record {
			mig := journalMigration(t, cfg, migratedState("10.0.0.10", "52.1.2.3", "10.0.0.5", newNodes...), engine.PhaseSucceeded)
			st := upgrade.NewState(cfg.Name, migrated(mig.ID, migratedState("10.0.0.10", "52.1.2.3", "10.0.0.5", newNodes...)), "image-2", "", "")
			journalUpgrade(t, cfg, st, engine.PhaseRolledBack)
			return mig
		},
		want: append(lbs(), nodeTarget("cp-1", "10.0.1.1"), nodeTarget("cp-2", "10.0.1.2"), nodeTarget("cp-3", "10.0.1.3")),
	}} {
		t.Run(tc.name, func(t *testing.T) {
			c := newTestCluster(t, port, "10.0.0.10", "52.1.2.3", nil, "")
			from := tc.journal(t, c.cfg)
			// Another cluster's operations in the same journal do not count.
			other := *c.cfg
			other.Name = "other"
			journalMigration(t, &other, migratedState("10.9.0.1", "10.9.0.2", "10.9.0.3", node("x", "10.9.0.4")), engine.PhaseSucceeded)

			got, desc, err := (&monitorFlags{}).targets(t.Context(), c.cfg, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("targets\n  %v\nwant\n  %v", got, tc.want)
			}
			wantDesc := "no migration in the journal"
			if from != nil {
				wantDesc = from.ID
			}
			if !strings.Contains(desc, wantDesc) {
				t.Errorf("targets from %q, want it to name %q", desc, wantDesc)
			}
		})
	}
}

// fakeAddresses is the cloud's address book.
type fakeAddresses map[string]string

func (f fakeAddresses) GetAddress(_ context.Context, id string) (sdk.Address, error) {
	ip, ok := f[id]
	if !ok {
		return sdk.Address{}, fmt.Errorf("%w: address %s", sdk.ErrNotFound, id)
	}
	return sdk.Address{ID: id, IP: ip}, nil
}

func TestSingleNodeAddressesConfiguredByIDAreResolvedThroughTheCloud(t *testing.T) {
	c := newTestCluster(t, 6443, "10.0.0.10", "eipalloc-1", nil, "")
	got, err := singleNodeTargets(t.Context(), c.cfg, fakeAddresses{"eipalloc-1": "52.1.2.3"})
	if err != nil {
		t.Fatal(err)
	}
	want := []availability.Target{
		{Name: "private", Kind: availability.LoadBalancer, Address: "10.0.0.10:6443"},
		{Name: "public", Kind: availability.LoadBalancer, Address: "52.1.2.3:6443"},
		{Name: "node/i-0abc", Kind: availability.Node, Address: "10.0.0.10:6443"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("targets %v, want %v", got, want)
	}
	if _, err := singleNodeTargets(t.Context(), c.cfg, fakeAddresses{}); err == nil || !strings.Contains(err.Error(), `controlPlane.publicAddress "eipalloc-1"`) || !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("an address the cloud does not know: %v, want the field named and ErrNotFound", err)
	}
}

// apiservers are kube-apiservers standing in for a migrated cluster: one
// per address, all on the same port (the cluster's apiServerPort) of
// 127.0.0.1-5, answering the monitor's read when it carries the token.
type apiservers struct {
	port    int
	caPEM   []byte
	token   string
	failing map[string]*atomic.Bool // by IP
}

func startAPIServers(t *testing.T, ips ...string) *apiservers {
	t.Helper()
	cert, caPEM := selfSignedCert(t, ips)
	a := &apiservers{caPEM: caPEM, token: "monitor-token", failing: map[string]*atomic.Bool{}}
	for attempt := 0; ; attempt++ {
		lns, err := listenSamePort(ips)
		if err == nil {
			a.port = lns[0].Addr().(*net.TCPAddr).Port
			for i, ln := range lns {
				failing := &atomic.Bool{}
				a.failing[ips[i]] = failing
				srv := httptest.NewUnstartedServer(a.handler(failing))
				srv.Listener.Close()
				srv.Listener = ln
				srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
				// The monitor abandons the handshakes in flight when it stops.
				srv.Config.ErrorLog = log.New(io.Discard, "", 0)
				srv.StartTLS()
				t.Cleanup(srv.Close)
			}
			return a
		}
		if attempt == 10 {
			t.Fatalf("no port free on all of %v: %v", ips, err)
		}
	}
}

func (a *apiservers) handler(failing *atomic.Bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Header.Get("Authorization") != "Bearer "+a.token:
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
		case r.Method != http.MethodGet || r.URL.Path != "/api/v1/namespaces/default":
			http.NotFound(w, r)
		case failing.Load():
			http.Error(w, "etcdserver: request timed out", http.StatusInternalServerError)
		default:
			io.WriteString(w, `{"kind":"Namespace","apiVersion":"v1","metadata":{"name":"default"}}`)
		}
	})
}

func listenSamePort(ips []string) ([]net.Listener, error) {
	first, err := net.Listen("tcp", net.JoinHostPort(ips[0], "0"))
	if err != nil {
		return nil, err
	}
	lns := []net.Listener{first}
	port := fmt.Sprint(first.Addr().(*net.TCPAddr).Port)
	for _, ip := range ips[1:] {
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, port))
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, err
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

// selfSignedCert is a serving certificate for ips that is its own CA, as
// kube-apiserver's carries the node's and the load balancers' IPs.
func selfSignedCert(t *testing.T, ips []string) (tls.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kube-apiserver"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true,
	}
	for _, ip := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func readReport(t *testing.T, path string) availability.Report {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("report: %v", err)
	}
	var r availability.Report
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("report %s: %v", path, err)
	}
	return r
}

// TestMonitorRunsAgainstTheClusterAndReports runs the command twice
// against real TLS endpoints of a migrated cluster: once for --duration,
// all healthy; once until interrupted, with the public address failing
// every read and --fail-below set.
func TestMonitorRunsAgainstTheClusterAndReports(t *testing.T) {
	ips := []string{"127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"}
	api := startAPIServers(t, ips...)
	c := newTestCluster(t, api.port, ips[0], ips[1], api.caPEM, api.token)
	journalMigration(t, c.cfg, migratedState(ips[0], ips[1], "127.0.0.9", node("cp-1", ips[2]), node("cp-2", ips[3]), node("cp-3", ips[4])), engine.PhaseSucceeded)
	tuning := []string{"--interval", "100ms", "--window", "500ms", "--probe-timeout", "1s"}

	// A loaded machine may time a probe out now and then: the assertions
	// hold whatever the odd probe does.
	t.Run("for a duration, every endpoint healthy", func(t *testing.T) {
		report := filepath.Join(t.TempDir(), "reports", "reboot.json")
		stdout, stderr, err := runTriad(t.Context(), append([]string{"monitor", "-f", c.path, "--duration", "2s", "--report", report, "-o", "json"}, tuning...)...)
		if err != nil {
			t.Fatalf("monitor: %v\nstderr:\n%s", err, stderr)
		}
		r := readReport(t, report)
		if len(r.Targets) != 5 {
			t.Fatalf("report has %d targets, want 5 (2 addresses, 3 nodes): %+v", len(r.Targets), r.Targets)
		}
		// Each answered over TLS with the kubeconfig's CA and token.
		for _, tt := range r.Targets {
			if tt.Requests == 0 || tt.Failed == tt.Requests {
				t.Errorf("target %s (%s): %d reads, %d failed; want some answered", tt.Name, tt.Address, tt.Requests, tt.Failed)
			}
		}
		// --duration covers itself: 2 s of 500 ms windows (give or take
		// the milliseconds of starting and stopping).
		complete := 0
		for _, w := range r.Windows {
			if !w.Start.Add(r.Window).After(r.End) {
				complete++
			}
		}
		if complete < 3 || len(r.Windows) > 5 || r.Availability == 0 {
			t.Errorf("report: %d windows (%d complete), mean %.1f%%; want 4 windows of 500ms, available", len(r.Windows), complete, r.Availability)
		}
		var printed availability.Report
		if err := json.Unmarshal([]byte(stdout), &printed); err != nil || len(printed.Targets) != 5 || len(printed.Windows) != len(r.Windows) {
			t.Errorf("stdout is not the report (%v):\n%s", err, stdout)
		}
		for _, want := range []string{"node/cp-2", ips[3], "availability report: " + report} {
			if !strings.Contains(stderr, want) {
				t.Errorf("stderr lacks %q:\n%s", want, stderr)
			}
		}
	})

	t.Run("until interrupted, the public address failing, below --fail-below", func(t *testing.T) {
		api.failing[ips[1]].Store(true)
		defer api.failing[ips[1]].Store(false)
		ctx, cancel := context.WithTimeout(t.Context(), 2500*time.Millisecond) // the operator's Ctrl-C
		defer cancel()
		report := filepath.Join(t.TempDir(), "patching.json")
		stdout, stderr, err := runTriad(ctx, append([]string{"monitor", "-f", c.path, "--report", report, "--fail-below", "90"}, tuning...)...)
		if err == nil || !strings.Contains(err.Error(), "availability fell below --fail-below 90% in") || !strings.Contains(err.Error(), "lowest") {
			t.Fatalf("monitor: %v, want the windows below 90%% named\nstderr:\n%s", err, stderr)
		}
		r := readReport(t, report)
		if len(r.Targets) != 5 || len(r.Windows) == 0 {
			t.Fatalf("report: %d targets, %d windows", len(r.Targets), len(r.Windows))
		}
		for _, tt := range r.Targets {
			if failing := tt.Address == net.JoinHostPort(ips[1], fmt.Sprint(api.port)); (tt.Failed == tt.Requests) != failing || tt.Requests == 0 {
				t.Errorf("target %s (%s): %d of %d reads failed; want all to fail for the public address only", tt.Name, tt.Address, tt.Failed, tt.Requests)
			}
		}
		if r.MinAvailability >= 90 {
			t.Errorf("lowest window %.1f%%, want below 90%%", r.MinAvailability)
		}
		for _, want := range []string{"below 90%:", "public", "report: " + report} {
			if !strings.Contains(stdout, want) {
				t.Errorf("summary lacks %q:\n%s", want, stdout)
			}
		}
	})
}

func TestFailBelowNamesRunsOfCompleteWindowsBelowIt(t *testing.T) {
	start := time.Unix(1000, 0)
	var r availability.Report
	r.Window = time.Second
	for i, a := range []float64{100, 50, 40, 100, 89, 100, 0} {
		r.Windows = append(r.Windows, availability.Window{Start: start.Add(time.Duration(i) * time.Second), Availability: a})
	}
	// The run ended 3 ms into the last window: it held no probe.
	r.End = start.Add(6*time.Second + 3*time.Millisecond)
	got := periodsBelow(r, 90)
	want := []belowPeriod{{Start: start.Add(time.Second), Windows: 2, Lowest: 40}, {Start: start.Add(4 * time.Second), Windows: 1, Lowest: 89}}
	if !slices.Equal(got, want) {
		t.Fatalf("periods below 90%%: %+v, want %+v", got, want)
	}
	if d := describePeriods(got, r.Window); !strings.HasPrefix(d, "3 windows in 2 periods: ") || !strings.Contains(d, "(2 windows, lowest 40.0%)") {
		t.Errorf("described as %q", d)
	}
	if got := periodsBelow(r, 0); len(got) != 0 {
		t.Errorf("below 0%%: %+v, want none", got)
	}
}
