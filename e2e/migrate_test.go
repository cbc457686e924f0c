//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	agentauth "github.com/triad-k8s/triad/agent/auth"
	"github.com/triad-k8s/triad/cloudplugins/local"
	"github.com/triad-k8s/triad/cloudplugins/sdk"
	"github.com/triad-k8s/triad/coordinator/agentclient"
	"github.com/triad-k8s/triad/coordinator/availability"
	"github.com/triad-k8s/triad/coordinator/config"
	"github.com/triad-k8s/triad/coordinator/controlplane"
	"github.com/triad-k8s/triad/coordinator/engine"
	"github.com/triad-k8s/triad/coordinator/failpoint"
	"github.com/triad-k8s/triad/coordinator/loadclient"
	"github.com/triad-k8s/triad/coordinator/migrate"
	"github.com/triad-k8s/triad/coordinator/pki"
	"github.com/triad-k8s/triad/coordinator/status"
	agentv1 "github.com/triad-k8s/triad/proto/triad/agent/v1"
)

// cluster is a single-node local cluster with kwok nodes and a Deployment.
type cluster struct {
	name, work, stateDir, pkiDir, cfgPath string
	instance, privateIP, publicIP         string
	cloud                                 *local.Cloud
	public, private                       *rest.Config
	client                                kubernetes.Interface
}

func needK8s(t *testing.T) string {
	t.Helper()
	k8sBin := os.Getenv("TRIAD_K8S_BIN")
	if k8sBin == "" {
		t.Skip("TRIAD_K8S_BIN is not set; 'make e2e' builds the control-plane binaries and sets it")
	}
	return k8sBin
}

// newCluster creates the cluster, waits for its kwok nodes to be Ready and
// a 3-replica Deployment to run on them. Teardown removes everything and
// asserts no process is left.
func newCluster(t *testing.T, kwokNodes int, createArgs ...string) *cluster {
	t.Helper()
	k8sBin := needK8s(t)
	work := t.TempDir()
	c := &cluster{name: "e2e", work: work, stateDir: filepath.Join(work, "localcloud"), pkiDir: filepath.Join(work, "pki"), cfgPath: filepath.Join(work, "cluster.yaml")}
	t.Cleanup(func() {
		if os.Getenv("TRIAD_E2E_RACE") == "1" {
			logs, _ := filepath.Glob(filepath.Join(c.stateDir, "vms/*/triad-agent.log"))
			deleted, _ := filepath.Glob(filepath.Join(c.stateDir, "deleted-vms/*/triad-agent.log"))
			logs = append(logs, deleted...)
			for _, l := range logs {
				if b, _ := os.ReadFile(l); bytes.Contains(b, []byte("WARNING: DATA RACE")) {
					t.Errorf("the race detector reported a data race in %s", l)
				}
			}
		}
		if t.Failed() {
			dumpLogs(t, c.stateDir)
		}
		if r := triad(t, "local", "down", "--state-dir", c.stateDir); r.err != nil {
			t.Errorf("local down: %v %s", r.err, r.stderr)
		}
		if n := processesFor(c.stateDir); n != 0 {
			t.Errorf("%d processes left after local down", n)
		}
	})
	// kube-controller-manager's node-monitor-grace-period is 20s (above
	// kwok's 10s lease renewals) so that the negative control shows its
	// effect within a test.
	r := triad(t, append([]string{"local", "cluster", "create", "--name", c.name, "--state-dir", c.stateDir, "--pki-dir", c.pkiDir,
		"--bin-dir", k8sBin, "--kubeconfig", filepath.Join(work, "kubeconfig"), "--cluster-config", c.cfgPath, "--timeout", "4m", "-o", "json",
		"--kwok-nodes", fmt.Sprint(kwokNodes), "--node-monitor-grace-period", "20s",
		"--agent-binary", filepath.Join(binDir, "triad-agent"), "--cloud-binary", filepath.Join(binDir, "triad-cloud-local")}, createArgs...)...)
	if r.err != nil {
		t.Fatalf("local cluster create: %v\nstdout: %s\nstderr: %s", r.err, r.stdout, r.stderr)
	}
	var out struct{ Instance, PrivateIP, PublicIP, Kubeconfig string }
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("output %q: %v", r.stdout, err)
	}
	c.instance, c.privateIP, c.publicIP = out.Instance, out.PrivateIP, out.PublicIP
	cloud, err := local.Open(c.stateDir)
	if err != nil {
		t.Fatal(err)
	}
	c.cloud = cloud
	kc, err := os.ReadFile(out.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if c.public, err = clientcmd.RESTConfigFromKubeConfig(kc); err != nil {
		t.Fatal(err)
	}
	c.public.QPS, c.public.Burst = 100, 200
	c.private = rest.CopyConfig(c.public)
	c.private.Host = "https://" + c.privateIP + ":6443"
	c.client = kubernetes.NewForConfigOrDie(c.public)
	ctx := context.Background()
	eventuallyE2E(t, 2*time.Minute, "kwok nodes Ready", func() error {
		nodes, err := c.client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: "type=kwok"})
		if err != nil {
			return err
		}
		if ready := countReady(nodes.Items); ready != kwokNodes {
			return fmt.Errorf("%d of %d nodes Ready", ready, len(nodes.Items))
		}
		return nil
	})
	deploy := webDeployment()
	if _, err := c.client.AppsV1().Deployments("default").Create(ctx, deploy, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventuallyE2E(t, 2*time.Minute, "3 pods Running", func() error {
		pods, err := c.client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return err
		}
		running := 0
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning {
				running++
			}
		}
		if running != 3 {
			return fmt.Errorf("%d of %d pods Running", running, len(pods.Items))
		}
		return nil
	})
	return c
}

func countReady(nodes []corev1.Node) int {
	ready := 0
	for _, n := range nodes {
		if nodeIsReady(&n) {
			ready++
		}
	}
	return ready
}

func nodeIsReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func dumpLogs(t *testing.T, stateDir string) {
	logs, _ := filepath.Glob(filepath.Join(stateDir, "vms/*/*.log"))
	deleted, _ := filepath.Glob(filepath.Join(stateDir, "deleted-vms/*/*.log"))
	logs = append(logs, deleted...)
	more, _ := filepath.Glob(filepath.Join(stateDir, "vms/*/disks/root/var/log/pods/*/*/*.log"))
	lbs, _ := filepath.Glob(filepath.Join(stateDir, "*", "*.log"))
	all := append(append(logs, more...), lbs...)
	// Everything, whole, where it outlives the test's temporary directory:
	// CI keeps only the tail of the output.
	archive := os.Getenv("TRIAD_E2E_ARTIFACTS")
	if archive == "" {
		archive = filepath.Join(os.TempDir(), "triad-e2e-artifacts")
	}
	archive = filepath.Join(archive, strings.ReplaceAll(t.Name(), "/", "_")+"-"+time.Now().UTC().Format("20060102-150405"))
	for _, l := range all {
		rel, err := filepath.Rel(stateDir, l)
		if err != nil {
			continue
		}
		if data, err := os.ReadFile(l); err == nil {
			dst := filepath.Join(archive, rel)
			if os.MkdirAll(filepath.Dir(dst), 0o700) == nil {
				os.WriteFile(dst, data, 0o600)
			}
		}
	}
	// The archive has every log whole; the output only what says where to
	// look: every process a VM's supervisor saw exit, every agent error
	// other than the retried ones, every panic.
	var lines []string
	for _, l := range logs {
		data, _ := os.ReadFile(l)
		for _, line := range strings.Split(string(data), "\n") {
			if strings.Contains(line, "process exited") || (strings.HasSuffix(l, "triad-agent.log") && strings.Contains(line, `"level":"ERROR"`) && !retriedAgentError(line)) ||
				strings.Contains(line, "panic") || strings.Contains(line, "triad-agent:") {
				rel, _ := filepath.Rel(stateDir, l)
				lines = append(lines, rel+": "+line)
			}
		}
	}
	if len(lines) > 40 {
		lines = append(lines[:20:20], append([]string{fmt.Sprintf("[… %d more in the archive …]", len(lines)-40)}, lines[len(lines)-20:]...)...)
	}
	t.Logf("every log of the local cloud is kept in %s; %d exits, agent errors and panics in them:\n%s", archive, len(lines), strings.Join(lines, "\n"))
}

// retriedAgentError reports an agent error that the coordinator expects and
// retries (a learner promoted before it caught up).
func retriedAgentError(line string) bool {
	return strings.Contains(line, "can only promote a learner member which is in sync with leader")
}

// migrate runs 'triad migrate <args> -f cluster.yaml'.
func (c *cluster) migrate(t *testing.T, args ...string) result {
	t.Helper()
	return triad(t, append(append([]string{"migrate"}, args...), "-f", c.cfgPath)...)
}

// record reads the cluster's latest migration through 'triad migrate status'.
func (c *cluster) record(t *testing.T) (*engine.Record, *migrate.State) {
	t.Helper()
	out := mustTriad(t, "migrate", "status", "-f", c.cfgPath, "-o", "json")
	var rec engine.Record
	if err := json.Unmarshal([]byte(out), &rec); err != nil {
		t.Fatalf("status output %q: %v", out, err)
	}
	st, err := engine.LoadState[migrate.State](&rec)
	if err != nil {
		t.Fatal(err)
	}
	return &rec, st
}

// load is the live load client running through both addresses.
type load struct {
	cancel context.CancelFunc
	done   chan struct{}
	report *loadclient.Report
	err    error
}

func (c *cluster) startLoad(t *testing.T) *load {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		l.report, l.err = loadclient.Run(ctx, []loadclient.Target{{Name: "private", Config: c.private}, {Name: "public", Config: c.public}}, loadclient.Options{Namespace: "load"})
	}()
	t.Cleanup(l.stop)
	return l
}

func (l *load) stop() {
	l.cancel()
	<-l.done
}

// checkWrites stops the load and fails the test if any acknowledged write
// is missing; it returns the report.
func (c *cluster) checkWrites(t *testing.T, l *load) *loadclient.Report {
	t.Helper()
	l.stop()
	if l.err != nil {
		t.Fatal(l.err)
	}
	if len(l.report.Acked) < 10 {
		t.Fatalf("load too thin to prove anything: %d acknowledged writes", len(l.report.Acked))
	}
	var missing []int
	eventuallyE2E(t, time.Minute, "reading back every acknowledged write", func() (err error) {
		missing, err = loadclient.Missing(context.Background(), c.public, "load", l.report)
		return err
	})
	if len(missing) != 0 {
		t.Errorf("%d acknowledged writes missing: %v", len(missing), missing)
	}
	targets := map[string]bool{}
	for _, e := range l.report.Acked {
		targets[e.Target] = true
	}
	if !targets["private"] || !targets["public"] {
		t.Errorf("writes acknowledged through %v, want both addresses", targets)
	}
	return l.report
}

// logConnections prints what the load balancers and forwarders logged
// about the connections the failed requests went out on: which backend
// each reached and which side ended it.
func (c *cluster) logConnections(t *testing.T, failures []loadclient.Event) {
	t.Helper()
	logs, _ := filepath.Glob(filepath.Join(c.stateDir, "*", "*.log"))
	for _, f := range failures {
		if f.Conn == "" {
			continue
		}
		for _, path := range logs {
			b, err := os.ReadFile(path)
			if err != nil {
				continue
			}
			for _, line := range strings.Split(string(b), "\n") {
				if strings.Contains(line, `"`+f.Conn+`"`) {
					t.Logf("%s %s via %s: %s: %s", f.At.Format("15:04:05.000"), f.Op, f.Conn, filepath.Base(path), line)
				}
			}
		}
	}
	for _, path := range logs {
		if strings.Contains(path, string(filepath.Separator)+"lbs"+string(filepath.Separator)) {
			b, _ := os.ReadFile(path)
			for _, line := range strings.Split(string(b), "\n") {
				if strings.Contains(line, "health changed") || strings.Contains(line, "refused") {
					t.Logf("%s: %s", filepath.Base(path), line)
				}
			}
		}
	}
}

// plugin opens the local cloud through its plugin binary, as triad does.
func (c *cluster) plugin(t *testing.T) sdk.Provider {
	t.Helper()
	cfg, err := config.Load(c.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	p, err := sdk.Open(context.Background(), cfg.Cloud.Plugin, sdk.OpenOptions{Config: cfg.Cloud.Config})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// assertRolledBack checks the original node serves again on both
// addresses and nothing the migration created is left, listed through the
// plugin.
func (c *cluster) assertRolledBack(t *testing.T, opID string) {
	t.Helper()
	ctx := context.Background()
	p := c.plugin(t)
	labels := map[string]string{controlplane.LabelOperation: opID}
	if vms, err := p.ListInstances(ctx, labels); err != nil || len(vms) != 0 {
		t.Errorf("instances left: %v %v", vms, err)
	}
	if lbs, err := p.ListLoadBalancers(ctx, nil); err != nil || len(lbs) != 0 {
		t.Errorf("load balancers left: %v %v", lbs, err)
	}
	if snaps, err := p.ListDiskSnapshots(ctx, nil); err != nil || len(snaps) != 0 {
		t.Errorf("disk snapshots left: %v %v", snaps, err)
	}
	all, err := p.ListInstances(ctx, nil)
	if err != nil || len(all) != 1 || all[0].ID != c.instance || all[0].State != sdk.InstanceRunning {
		t.Errorf("instances after rollback: %+v %v (want only %s, running)", all, err, c.instance)
	}
	for _, ip := range []string{c.privateIP, c.publicIP} {
		a, err := p.GetAddress(ctx, ip)
		if err != nil || a.InstanceID != c.instance {
			t.Errorf("address %s: %+v %v (want attached to %s)", ip, a, err, c.instance)
		}
	}
	for _, cfg := range []*rest.Config{c.public, c.private} {
		client := kubernetes.NewForConfigOrDie(cfg)
		eventuallyE2E(t, time.Minute, "the original node serving through "+cfg.Host, func() error {
			_, err := client.CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{})
			return err
		})
	}
}

// runMigrate starts 'triad migrate' in the background; lines of its
// progress arrive on the returned channel.
func (c *cluster) runMigrate(t *testing.T, args ...string) (*exec.Cmd, <-chan string, *bytes.Buffer) {
	t.Helper()
	return c.runMigrateEnv(t, nil, args...)
}

// runMigrateEnv is runMigrate with extra environment (e.g. failpoints).
func (c *cluster) runMigrateEnv(t *testing.T, env []string, args ...string) (*exec.Cmd, <-chan string, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "triad"), append(append([]string{"migrate"}, args...), "-f", c.cfgPath)...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1000)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			t.Log(sc.Text())
			lines <- sc.Text()
		}
	}()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, lines, &out
}

// waitLine waits for a progress line containing s.
func waitLine(t *testing.T, lines <-chan string, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("triad exited before printing %q", s)
			}
			if strings.Contains(l, s) {
				return
			}
		case <-deadline:
			t.Fatalf("no line with %q within %s", s, timeout)
		}
	}
}

func drain(lines <-chan string) {
	go func() {
		for range lines {
		}
	}()
}

// nodeWatch records every moment a kwok node is seen not Ready.
type nodeWatch struct {
	mu       sync.Mutex
	notReady map[string]time.Time
	cancel   context.CancelFunc
}

func (c *cluster) watchNodes(t *testing.T) *nodeWatch {
	ctx, cancel := context.WithCancel(context.Background())
	w := &nodeWatch{notReady: map[string]time.Time{}, cancel: cancel}
	t.Cleanup(cancel)
	go func() {
		for ctx.Err() == nil {
			wi, err := c.client.CoreV1().Nodes().Watch(ctx, metav1.ListOptions{LabelSelector: "type=kwok"})
			if err != nil {
				time.Sleep(200 * time.Millisecond)
				continue
			}
			for ev := range wi.ResultChan() {
				if n, ok := ev.Object.(*corev1.Node); ok && ev.Type != watch.Deleted && !nodeIsReady(n) {
					w.mu.Lock()
					if _, seen := w.notReady[n.Name]; !seen {
						w.notReady[n.Name] = time.Now()
					}
					w.mu.Unlock()
				}
			}
		}
	}()
	return w
}

func (w *nodeWatch) seen() map[string]time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return maps.Clone(w.notReady)
}

func (c *cluster) podUIDs(t *testing.T) map[string]string {
	t.Helper()
	pods, err := c.client.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, p := range pods.Items {
		out[p.Name] = string(p.UID)
	}
	return out
}

// freezeKubelets stops kwok's kubelets when 3.1 starts and thaws them
// `for` later: kubelets that take longer than the node-monitor grace
// period to reach the new endpoint, as behind a cloud load balancer that
// takes its time to program and clients that back off.
func (c *cluster) freezeKubelets(t *testing.T, lines <-chan string, d time.Duration) {
	t.Helper()
	waitLine(t, lines, "==> "+migrate.StepOpenTraffic, 5*time.Minute)
	if err := c.cloud.SignalAux("kwok-"+c.instance, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Logf("kwok frozen for %s", d)
	thaw := func() { c.cloud.SignalAux("kwok-"+c.instance, syscall.SIGCONT) }
	t.Cleanup(thaw)
	time.AfterFunc(d, thaw)
}

// TestMigrateHappyPath migrates a live single-node cluster to HA and
// proves nothing was lost or disturbed.
func TestMigrateHappyPath(t *testing.T) {
	c := newCluster(t, 3)
	uids := c.podUIDs(t)
	nodes := c.watchNodes(t)
	l := c.startLoad(t)
	time.Sleep(3 * time.Second) // some writes before 1.1

	cmd, lines, stdout := c.runMigrate(t, "run", "--agent-timeout", "30s", "-o", "json")
	c.freezeKubelets(t, lines, 45*time.Second)
	drain(lines)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("migrate run: %v\n%s", err, stdout)
	}
	time.Sleep(3 * time.Second) // some writes after 3.1
	report := c.checkWrites(t, l)

	rec, st := c.record(t)
	if rec.Phase != engine.PhaseSucceeded {
		t.Fatalf("phase %s: %s", rec.Phase, rec.Error)
	}
	t.Logf("write-unavailability window: %.1fs; load: %d acknowledged writes, %d failures (while the control plane was down)", st.WindowSeconds, len(report.Acked), len(report.Failures))
	if st.WindowSeconds <= 0 || st.FirstWriteAt == nil {
		t.Errorf("no window measured: %+v", st)
	}
	if !strings.Contains(mustTriad(t, "migrate", "status", "-f", c.cfgPath), "write-unavailability window") {
		t.Error("status does not print the window")
	}
	// Writes acknowledged after the point of no return went through the
	// new load balancers, on the same two addresses as before.
	after := map[string]int{}
	for _, e := range report.Acked {
		if e.At.After(*st.OpenedAt) {
			after[e.Target]++
		}
	}
	if after["private"] == 0 || after["public"] == 0 {
		t.Errorf("writes acknowledged after 3.1 per address: %v, want both", after)
	}
	if pf := st.Postflight; pf == nil || pf.Members != 3 || pf.ControllerLeader == "" || pf.SchedulerLeader == "" {
		t.Errorf("postflight: %+v", st.Postflight)
	}
	// etcd: 3 voting members and one leader, asked of every new node's
	// agent directly (not the coordinator's own postflight report).
	cert, key := pki.Dir{Path: c.pkiDir}.LeafFiles(agentauth.RoleCoordinator, "default")
	leaders := map[uint64]bool{}
	for _, n := range st.Nodes {
		ac, err := agentclient.Dial(n.PrivateIP+":9443", c.name, agentauth.TLSFiles{CertFile: cert, KeyFile: key, CAFile: pki.Dir{Path: c.pkiDir}.CAFile()})
		must(t, err)
		es, err := ac.GetEtcdStatus(context.Background(), &agentv1.GetEtcdStatusRequest{})
		ac.Close()
		must(t, err)
		voters := 0
		for _, m := range es.GetMembers() {
			if !m.GetIsLearner() {
				voters++
			}
		}
		if voters != 3 || len(es.GetMembers()) != 3 || !es.GetHealthy() {
			t.Errorf("etcd as %s sees it: %d voters of %d members, healthy %v", n.Name, voters, len(es.GetMembers()), es.GetHealthy())
		}
		leaders[es.GetLeaderId()] = true
		out := mustTriad(t, "agent", "health", "-o", "json", "--pki-dir", c.pkiDir, "--endpoint", n.PrivateIP+":9443", "--cluster", c.name)
		if !strings.Contains(out, `"apiserverReady": true`) {
			t.Errorf("%s health: %s", n.Name, out)
		}
	}
	if len(leaders) != 1 || leaders[0] {
		t.Errorf("etcd leaders seen: %v, want one", leaders)
	}
	if got := len(st.Nodes); got != 3 {
		t.Fatalf("%d nodes", got)
	}
	leases := c.client.CoordinationV1().Leases("kube-system")
	for _, name := range []string{"kube-controller-manager", "kube-scheduler"} {
		l, err := leases.Get(context.Background(), name, metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil || !l.Spec.RenewTime.After(*st.OpenedAt) {
			t.Errorf("%s leader lease: %+v %v", name, l, err)
		}
	}
	if seen := nodes.seen(); len(seen) != 0 {
		t.Errorf("nodes went NotReady: %v", seen)
	}
	if now := c.podUIDs(t); !equalMaps(now, uids) {
		t.Errorf("pods changed: before %v after %v", uids, now)
	}
	c.checkAvailabilityReport(t, rec.ID, st)
	c.checkStatus(t)
	c.checkOwnIdentities(t, c.instance, st.Nodes)
	if _, err := c.client.CoreV1().Nodes().Get(context.Background(), st.Original.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the original Node %s after the migration: %v, want it retired", st.Original.Name, err)
	}
	if pf := st.Postflight; pf.CoreDNSShortSeconds <= 0 {
		t.Errorf("postflight did not measure CoreDNS: %+v", pf)
	} else {
		t.Logf("CoreDNS had fewer ready replicas for %.1fs; pods of the original replaced: %v", pf.CoreDNSShortSeconds, pf.RetiredPods)
	}
	c.checkKubeadm(t, st.Nodes, "e2e-worker-m")
	c.survivesRestarts(t, st.Nodes)
	c.twoNodesDownIsZeroAvailability(t, st)
}

// checkAvailabilityReport reads the monitor's report of the migration and
// holds it against the coordinator's own measure of the window: the longest
// unavailable run covers most of it, the windows before kube-apiserver
// stopped are fully available, and so is the last complete one.
func (c *cluster) checkAvailabilityReport(t *testing.T, op string, st *migrate.State) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(c.stateDir, "clusters", c.name, "availability", op+".json"))
	if err != nil {
		t.Fatalf("availability report: %v", err)
	}
	var r availability.Report
	must(t, json.Unmarshal(raw, &r))
	t.Logf("availability during the migration: %.1f%% mean, longest unavailable %s (window %.1fs), %d of %d reads failed; first failures %q",
		r.Availability, r.LongestUnavailable, st.WindowSeconds, r.Failed, r.Requests, r.FirstErrors)
	n := len(r.Windows)
	if r.Requests == 0 || n < 3 {
		t.Fatalf("availability report: %d requests, %d windows", r.Requests, n)
	}
	if r.LongestUnavailable.Seconds() < 0.8*st.WindowSeconds {
		t.Errorf("longest unavailable period %s, but the write-unavailability window was %.1fs", r.LongestUnavailable, st.WindowSeconds)
	}
	for _, w := range r.Windows {
		if w.Start.Add(r.Window).Before(*st.StoppedAt) && w.Availability != 100 {
			t.Errorf("window at %s, before kube-apiserver stopped: %+v", w.Start.Format("15:04:05.000"), w)
		}
	}
	if last := r.Windows[n-2]; last.Availability != 100 {
		t.Errorf("last complete window: %+v", last)
	}
}

// checkStatus: triad status sees three healthy nodes, three voting etcd
// members and one leader.
func (c *cluster) checkStatus(t *testing.T) {
	t.Helper()
	var s status.Cluster
	must(t, json.Unmarshal([]byte(mustTriad(t, "status", "-f", c.cfgPath, "-o", "json")), &s))
	if !s.Healthy || s.Voters != 3 || s.Learners != 0 || s.Leader == "" || len(s.Nodes) != 3 {
		t.Errorf("triad status: %+v", s)
	}
	for _, n := range s.Nodes {
		if n.Health == nil || !n.Health.GateOpen || n.Health.StaticPods["kube-apiserver"] != "running" || n.Health.EtcdDBSizeBytes == 0 {
			t.Errorf("triad status, node %s: %+v", n.Name, n.Health)
		}
	}
	text := mustTriad(t, "status", "-f", c.cfgPath)
	if !strings.Contains(text, "healthy — 3 voting etcd members, 0 learners") {
		t.Errorf("triad status text:\n%s", text)
	}
}

// twoNodesDownIsZeroAvailability kills two of the three new VMs under an
// availability monitor: the windows after are reported at 0, whatever the
// survivor still answers. It leaves the cluster broken: run it last.
func (c *cluster) twoNodesDownIsZeroAvailability(t *testing.T, st *migrate.State) {
	t.Helper()
	targets := []availability.Target{
		{Name: "private", Kind: availability.LoadBalancer, Address: st.PrivateIP + ":6443"},
		{Name: "public", Kind: availability.LoadBalancer, Address: st.PublicIP + ":6443"},
	}
	for _, n := range st.Nodes {
		targets = append(targets, availability.Target{Name: n.Name, Kind: availability.Node, Address: n.PrivateIP + ":6443"})
	}
	m, err := availability.New(availability.Config{Cluster: c.name}, c.private, targets)
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	time.Sleep(3 * time.Second)
	killed := time.Now()
	must(t, c.cloud.KillVM(st.Nodes[0].InstanceID))
	must(t, c.cloud.KillVM(st.Nodes[1].InstanceID))
	time.Sleep(8 * time.Second) // the report leaves out the last probe timeout (2 s)
	cancel()
	<-done
	r := m.Report()
	before, after := 0, 0
	for _, w := range r.Windows {
		switch {
		case w.Start.Add(r.Window).Before(killed) && w.Availability == 100:
			before++
		case w.Start.After(killed.Add(time.Second)) && w.Start.Add(r.Window).Before(r.End):
			after++
			if w.Availability != 0 || len(w.NodesDown) < 2 {
				t.Errorf("window at %s, after two VMs were killed: availability %.1f, nodes down %v", w.Start.Format("15:04:05"), w.Availability, w.NodesDown)
			}
		}
	}
	if before == 0 || after < 3 {
		t.Errorf("%d fully available windows before the kill, %d windows after: %+v", before, after, r.Windows)
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestMigrateNegativeControl is the same run with kube-controller-manager
// started before the kubelets heartbeat through the new endpoint: the
// node-lifecycle controller marks them NotReady. It proves the wait in 3.1
// is what keeps them Ready in TestMigrateHappyPath.
func TestMigrateNegativeControl(t *testing.T) {
	c := newCluster(t, 3)
	nodes := c.watchNodes(t)
	cmd, lines, _ := c.runMigrate(t, "run", "--unsafe-start-controllers-before-heartbeats")
	c.freezeKubelets(t, lines, 45*time.Second)
	drain(lines)
	err := cmd.Wait()
	t.Logf("migrate run (unsafe): %v", err)
	eventuallyE2E(t, time.Minute, "the node-lifecycle controller marking nodes NotReady", func() error {
		if seen := nodes.seen(); len(seen) == 0 {
			return fmt.Errorf("no node NotReady")
		}
		return nil
	})
	t.Logf("nodes marked NotReady: %v", nodes.seen())
}

// TestMigrateFaultRollsBack injects one failure in each step from 1.1 to
// 2.3: the migration rolls back on its own, the original node serves every
// write it acknowledged, and nothing the migration created is left.
func TestMigrateFaultRollsBack(t *testing.T) {
	needK8s(t)
	cases := []struct {
		step, until string
		fault       string
		inject      func(t *testing.T, c *cluster)
	}{
		{migrate.StepStopControlPlane, migrate.StepPreflight, "original VM killed (agent unreachable)", func(t *testing.T, c *cluster) { must(t, c.cloud.KillVM(c.instance)) }},
		{migrate.StepSnapshotEtcd, migrate.StepStopControlPlane, "original VM killed (agent unreachable)", func(t *testing.T, c *cluster) { must(t, c.cloud.KillVM(c.instance)) }},
		{migrate.StepStopVM, migrate.StepSnapshotEtcd, "cloud StopInstance fails", func(t *testing.T, c *cluster) { must(t, c.cloud.FailNext("StopInstance", 3)) }},
		{migrate.StepSnapshotDisk, migrate.StepStopVM, "cloud CreateDiskSnapshot fails", func(t *testing.T, c *cluster) { must(t, c.cloud.FailNext("CreateDiskSnapshot", 3)) }},
		{migrate.StepCreateHAVMs, migrate.StepSnapshotDisk, "cloud CreateInstance fails", func(t *testing.T, c *cluster) { must(t, c.cloud.FailNext("CreateInstance", 3)) }},
		{migrate.StepCreateLoadBalancers, migrate.StepCreateHAVMs, "cloud CreateLoadBalancer fails", func(t *testing.T, c *cluster) { must(t, c.cloud.FailNext("CreateLoadBalancer", 3)) }},
		{migrate.StepRestoreEtcd, migrate.StepCreateLoadBalancers, "a new VM killed", func(t *testing.T, c *cluster) {
			_, st := c.record(t)
			must(t, c.cloud.KillVM(st.Nodes[1].InstanceID))
		}},
		{migrate.StepRestoreEtcd, migrate.StepCreateLoadBalancers, "snapshot corrupted (hash mismatch)", func(t *testing.T, c *cluster) {
			_, st := c.record(t)
			f, err := os.OpenFile(st.Snapshot.Path, os.O_RDWR, 0)
			must(t, err)
			defer f.Close()
			b := make([]byte, 1)
			f.ReadAt(b, 4096)
			b[0] ^= 0xff
			_, err = f.WriteAt(b, 4096)
			must(t, err)
		}},
	}
	// One cluster for every case: after each rollback the original node
	// serves again, which is exactly what the next case starts from.
	// One load through every case: each write it had acknowledged must be
	// there after every rollback, checked at the end.
	c := newCluster(t, 1)
	l := c.startLoad(t)
	for _, tc := range cases {
		t.Run(tc.step+"/"+strings.ReplaceAll(tc.fault, " ", "-"), func(t *testing.T) {
			time.Sleep(5 * time.Second)
			if r := c.migrate(t, "run", "--until", tc.until, "--agent-timeout", "10s"); r.err != nil {
				t.Fatalf("run --until %s: %v\n%s", tc.until, r.err, r.stderr)
			}
			tc.inject(t, c)
			r := c.migrate(t, "resume", "--agent-timeout", "10s")
			t.Logf("resume:\n%s", r.stderr)
			if r.err == nil {
				t.Fatal("resume succeeded despite the fault")
			}
			rec, _ := c.record(t)
			if rec.Phase != engine.PhaseRolledBack {
				t.Fatalf("phase %s, want rolled-back: %s", rec.Phase, rec.Error)
			}
			if s := rec.Step(tc.step); s.State != engine.StepUndone || s.Error == "" {
				t.Errorf("step %s: %+v, want it failed then undone", tc.step, s)
			}
			c.assertRolledBack(t, rec.ID)
		})
	}
	c.checkWrites(t, l)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestMigrateCoordinatorKilled SIGKILLs the coordinator in 2.3-restore-etcd:
// early (as the restores begin) or late (etcd restored and the
// kube-apiservers up and writing behind closed gates, so the revision has
// moved past the snapshot's); a new coordinator resumes to completion from
// the journal, or in the other case rolls back to the original node.
func TestMigrateCoordinatorKilled(t *testing.T) {
	needK8s(t)
	for _, tc := range []struct{ name, then, failpoint string }{
		{"early-resume", "resume", ""},
		{"late-resume", "resume", "migrate/2.3-apiservers-ready"},
		{"early-rollback", "rollback", ""},
	} {
		then := tc.then
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, 1)
			l := c.startLoad(t)
			time.Sleep(2 * time.Second)
			if tc.failpoint == "" {
				cmd, lines, _ := c.runMigrate(t, "run")
				waitLine(t, lines, "restoring on 3 nodes", 5*time.Minute)
				cmd.Process.Signal(syscall.SIGKILL)
				cmd.Wait()
				drain(lines)
			} else {
				cmd, lines, _ := c.runMigrateEnv(t, []string{failpoint.EnvVar + "=" + tc.failpoint}, "run")
				waitLine(t, lines, "failpoint "+tc.failpoint, 10*time.Minute)
				drain(lines)
				err := cmd.Wait()
				if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
					t.Fatalf("coordinator at failpoint %s: %v, want killed by SIGKILL", tc.failpoint, err)
				}
			}
			// The killed coordinator's cloud plugin must not outlive it.
			eventuallyE2E(t, 15*time.Second, "the killed coordinator's plugin process exits", func() error {
				if n := pluginProcessesFor(c.stateDir); n != 0 {
					return fmt.Errorf("%d plugin processes for %s", n, c.stateDir)
				}
				return nil
			})
			rec, _ := c.record(t)
			if rec.Phase != engine.PhaseRunning || rec.Step(migrate.StepRestoreEtcd).State != engine.StepRunning {
				t.Fatalf("journal after SIGKILL: phase %s, 2.3 %+v", rec.Phase, rec.Step(migrate.StepRestoreEtcd))
			}
			r := c.migrate(t, then)
			t.Logf("%s:\n%s", then, r.stderr)
			if r.err != nil {
				t.Fatalf("%s: %v\n%s", then, r.err, r.stdout)
			}
			rec, _ = c.record(t)
			if then == "resume" {
				if rec.Phase != engine.PhaseSucceeded {
					t.Fatalf("phase %s", rec.Phase)
				}
			} else {
				if rec.Phase != engine.PhaseRolledBack {
					t.Fatalf("phase %s", rec.Phase)
				}
				c.assertRolledBack(t, rec.ID)
			}
			time.Sleep(2 * time.Second)
			c.checkWrites(t, l)
		})
	}
}

// TestMigrateBadInput gives triad bad input: each is refused with a clear
// error and nothing changes.
func TestMigrateBadInput(t *testing.T) {
	c := newCluster(t, 1)
	orig, err := os.ReadFile(c.cfgPath)
	must(t, err)
	// Another VM whose address is not the cluster's.
	other, err := c.cloud.CreateVM(context.Background(), local.VMRequest{Name: "other", Zone: "local-b", Image: local.NoneImage})
	must(t, err)
	cases := []struct {
		name, want string
		edit       func(cfg string) string
		before     func(t *testing.T)
	}{
		{"unknown instance", `instance "i-9999" not found`, func(s string) string { return strings.Replace(s, "instance: "+c.instance, "instance: i-9999", 1) }, nil},
		{"address not owned by the instance", "is not attached to instance " + c.instance, func(s string) string {
			return strings.Replace(s, "privateAddress: "+c.privateIP, "privateAddress: "+other.PrivateIP, 1)
		}, nil},
		{"fewer than 3 zones", "an HA control plane needs exactly 3 distinct zones", func(s string) string { return strings.Replace(s, "  - local-c\n", "", 1) }, nil},
		{"agent unreachable", "unreachable", func(s string) string {
			return strings.Replace(s, "agent:\n", "agent:\n  endpoint: "+c.privateIP+":1\n", 1)
		}, nil},
		{"another coordinator holds a newer epoch", "another coordinator is working on cluster", func(s string) string { return s }, func(t *testing.T) {
			// A coordinator started an hour from now, as far as epochs go.
			epoch := fmt.Sprint(time.Now().Add(time.Hour).UnixNano())
			mustTriad(t, "agent", "gate", "set", "closed", "--operation-id", "other-coordinator", "--epoch", epoch, "--pki-dir", c.pkiDir, "--endpoint", c.privateIP+":9443", "--cluster", c.name)
		}},
	}
	for _, tc := range cases {
		t.Run(strings.ReplaceAll(tc.name, " ", "-"), func(t *testing.T) {
			must(t, os.WriteFile(c.cfgPath, []byte(tc.edit(string(orig))), 0o600))
			defer os.WriteFile(c.cfgPath, orig, 0o600)
			if tc.before != nil {
				tc.before(t)
			}
			r := c.migrate(t, "run", "--agent-timeout", "3s")
			if r.err == nil || !strings.Contains(r.stderr+r.stdout, tc.want) {
				t.Fatalf("want an error with %q, got %v\nstdout: %s\nstderr: %s", tc.want, r.err, r.stdout, r.stderr)
			}
			must(t, os.WriteFile(c.cfgPath, orig, 0o600))
			c.assertUnchanged(t, other.ID)
		})
	}
}

// assertUnchanged: the original VM runs with both addresses and all four
// static pods, serves, and no other resource exists besides extra.
func (c *cluster) assertUnchanged(t *testing.T, extra string) {
	t.Helper()
	ctx := context.Background()
	p := c.plugin(t)
	vms, err := p.ListInstances(ctx, nil)
	must(t, err)
	var ids []string
	for _, v := range vms {
		ids = append(ids, v.ID)
		if v.ID == c.instance && v.State != sdk.InstanceRunning {
			t.Errorf("instance %s is %s", v.ID, v.State)
		}
	}
	slices.Sort(ids)
	want := []string{c.instance, extra}
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Errorf("instances %v, want %v", ids, want)
	}
	if lbs, _ := p.ListLoadBalancers(ctx, nil); len(lbs) != 0 {
		t.Errorf("load balancers: %v", lbs)
	}
	if snaps, _ := p.ListDiskSnapshots(ctx, nil); len(snaps) != 0 {
		t.Errorf("disk snapshots: %v", snaps)
	}
	out := mustTriad(t, "agent", "health", "-o", "json", "--pki-dir", c.pkiDir, "--endpoint", c.privateIP+":9443", "--cluster", c.name)
	if strings.Count(out, "STATIC_POD_STATE_RUNNING") != 4 || !strings.Contains(out, `"apiserverReady": true`) {
		t.Errorf("original node health: %s", out)
	}
	if _, err := c.client.CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("cluster does not serve: %v", err)
	}
}

// webDeployment is 3 replicas of a pod that only kwok nodes run.
func webDeployment() *appsv1.Deployment {
	replicas := int32(3)
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec:       corev1.PodSpec{NodeSelector: map[string]string{"type": "kwok"}, Containers: []corev1.Container{{Name: "web", Image: "example/web:1"}}},
			},
		},
	}
}
