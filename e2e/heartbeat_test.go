//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/triad-k8s/triad/cloudplugins/local/localcluster"
	"github.com/triad-k8s/triad/coordinator/engine"
	"github.com/triad-k8s/triad/coordinator/migrate"
	"github.com/triad-k8s/triad/coordinator/status"
)

// TestMigrateHeartbeatStraggler: one worker, Ready at preflight, never
// heartbeats through the new endpoint (its kubelet frozen from 1.1 on).
// With the default threshold (every node) 3.1 stops at --heartbeat-timeout
// naming it, with no controller started and nothing rolled back; resumed
// with a threshold that tolerates one missing node of four, the
// controllers start, the node is named in the output and the journal, and
// the other nodes stay Ready.
func TestMigrateHeartbeatStraggler(t *testing.T) {
	k8sBin := needK8s(t)
	c := newCluster(t, 3)
	const straggler = "kwok-straggler-0"
	must(t, localcluster.StartKwokGroup(context.Background(), c.cloud, c.instance, k8sBin, "straggler", []string{straggler}))
	eventuallyE2E(t, 2*time.Minute, straggler+" Ready", func() error {
		n, err := c.client.CoreV1().Nodes().Get(context.Background(), straggler, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if !nodeIsReady(n) {
			return fmt.Errorf("%s not Ready", straggler)
		}
		return nil
	})
	nodes := c.watchNodes(t)

	cmd, lines, stdout := c.runMigrate(t, "run", "--heartbeat-timeout", "20s", "--agent-timeout", "30s")
	waitLine(t, lines, "==> "+migrate.StepStopControlPlane, 5*time.Minute)
	frozen := localcluster.KwokProcess(c.instance, "straggler")
	must(t, c.cloud.SignalAux(frozen, syscall.SIGSTOP))
	t.Cleanup(func() { c.cloud.SignalAux(frozen, syscall.SIGCONT) })
	drain(lines)
	if err := cmd.Wait(); err == nil {
		t.Fatalf("migrate run passed the heartbeat gate without %s's heartbeat:\n%s", straggler, stdout)
	}
	rec, st := c.record(t)
	step := rec.Step(migrate.StepOpenTraffic)
	t.Logf("run stopped: phase %s, 3.1 %s: %s", rec.Phase, step.State, step.Error)
	if rec.Phase != engine.PhaseFailed || step.State != engine.StepFailed {
		t.Fatalf("phase %s, 3.1 %s; want failed (past the point of no return, not rolled back)", rec.Phase, step.State)
	}
	if !strings.Contains(step.Error, straggler) || strings.Count(step.Error, "kwok-node-") != 0 {
		t.Errorf("3.1's error names %q, want %s and only it", step.Error, straggler)
	}
	if st.HeartbeatsPassedAt != nil {
		t.Errorf("the gate is journaled as passed at %s", st.HeartbeatsPassedAt)
	}
	// Held back: no kube-controller-manager runs on any new node.
	var s status.Cluster
	r := triad(t, "status", "-f", c.cfgPath, "-o", "json")
	must(t, json.Unmarshal([]byte(r.stdout), &s))
	if len(s.Nodes) != 3 {
		t.Fatalf("triad status after the stop: %d nodes: %s", len(s.Nodes), r.stdout)
	}
	for _, n := range s.Nodes {
		if n.Health == nil || n.Health.StaticPods["kube-controller-manager"] == "running" {
			t.Errorf("%s runs kube-controller-manager before the gate passed: %+v", n.Name, n.Health)
		}
	}

	// Three of four heartbeated: 0.75 tolerates the straggler.
	res := c.migrate(t, "resume", "--heartbeat-threshold", "0.75", "--heartbeat-timeout", "20s", "--agent-timeout", "30s")
	t.Logf("resume:\n%s", res.stderr)
	if res.err != nil {
		t.Fatalf("resume with --heartbeat-threshold 0.75: %v", res.err)
	}
	rec, st = c.record(t)
	if rec.Phase != engine.PhaseSucceeded {
		t.Fatalf("phase %s: %s", rec.Phase, rec.Error)
	}
	if len(st.HeartbeatStragglers) != 1 || st.HeartbeatStragglers[0] != straggler || st.HeartbeatsPassedAt == nil {
		t.Errorf("journal: stragglers %v, gate passed at %v; want [%s]", st.HeartbeatStragglers, st.HeartbeatsPassedAt, straggler)
	}
	if !strings.Contains(res.stderr, "starting the controllers without "+straggler) {
		t.Errorf("resume's output does not name the straggler")
	}
	// The controllers run now: they mark the straggler NotReady, and only it.
	eventuallyE2E(t, 2*time.Minute, "the node-lifecycle controller marking "+straggler+" NotReady", func() error {
		if _, ok := nodes.seen()[straggler]; !ok {
			return fmt.Errorf("%s still Ready", straggler)
		}
		return nil
	})
	for name := range nodes.seen() {
		if name != straggler {
			t.Errorf("%s went NotReady; only %s stopped heartbeating", name, straggler)
		}
	}
}
