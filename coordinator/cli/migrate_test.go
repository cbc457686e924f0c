package cli

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/triad-k8s/triad/coordinator/engine"
	"github.com/triad-k8s/triad/coordinator/migrate"
	"github.com/triad-k8s/triad/coordinator/upgrade"
)

// triadError runs the command line with args and returns its error.
func triadError(ctx context.Context, args ...string) error {
	root := NewRootCommand()
	root.SetArgs(args)
	root.SetOut(io.Discard)
	root.SetErr(io.Discard)
	return root.ExecuteContext(ctx)
}

func TestMigrateRefusesABadHeartbeatThresholdBeforeActing(t *testing.T) {
	// The cluster file does not exist: a threshold that passes the flag
	// check fails on reading it, the first thing the command does, so a
	// refused one has touched nothing, journal included.
	missing := filepath.Join(t.TempDir(), "cluster.yaml")
	for _, verb := range []string{"run", "resume"} {
		for _, bad := range []string{"0", "-0.5", "1.01", "NaN", "Inf", "ninety"} {
			err := triadError(t.Context(), "migrate", verb, "-f", missing, "--heartbeat-threshold", bad)
			if err == nil || !strings.Contains(err.Error(), `"--heartbeat-threshold"`) || strings.Contains(err.Error(), "cluster config") {
				t.Errorf("%s --heartbeat-threshold %s: %v; want the flag refused before the config is read", verb, bad, err)
			}
		}
		for _, good := range []string{"1", "0.95", "0.5"} {
			err := triadError(t.Context(), "migrate", verb, "-f", missing, "--heartbeat-threshold", good)
			if err == nil || !strings.Contains(err.Error(), "reading cluster config") {
				t.Errorf("%s --heartbeat-threshold %s: %v; want it accepted (and the missing config to fail)", verb, good, err)
			}
		}
	}
}

// TestResumeRefusesAnUnknownUntilBeforeActing: 'resume --until <typo>'
// is refused naming the steps; nothing acts: no plugin started (the
// plugin here is not even a program), the record unchanged.
func TestResumeRefusesAnUnknownUntilBeforeActing(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"plugin", "c.crt", "c.key", "ca.crt", "admin.conf"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfgPath := filepath.Join(dir, "cluster.yaml")
	if err := os.WriteFile(cfgPath, []byte(`apiVersion: triad.dev/v1alpha1
kind: Cluster
name: c1
cloud: {plugin: plugin}
controlPlane:
  instance: i-0abc
  zones: [a, b, c]
  privateAddress: 10.0.0.10
  publicAddress: 52.1.2.3
agent:
  tls: {cert: c.crt, key: c.key, ca: ca.crt}
kubeconfig: admin.conf
stateDir: state
`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{migrate.Kind, upgrade.Kind} {
		j, err := engine.OpenJournal(filepath.Join(dir, "state"), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		rec := &engine.Record{ID: kind + "-1", Kind: kind, Cluster: "c1", Epoch: 7, Phase: engine.PhasePaused, CreatedAt: time.Now(),
			Steps: []engine.StepRecord{{Name: "preflight", State: engine.StepDone}, {Name: "open", State: engine.StepPending}}}
		if err := j.Save(rec); err != nil {
			t.Fatal(err)
		}
		j.Close()
		err = triadError(t.Context(), kind, "resume", "-f", cfgPath, "--until", "opne")
		if err == nil || !strings.Contains(err.Error(), `--until "opne": no such step (steps: [preflight open])`) || !strings.Contains(err.Error(), "nothing resumed") {
			t.Errorf("%s resume --until opne: %v", kind, err)
		}
		j, err = engine.OpenJournal(filepath.Join(dir, "state"), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		after, err := j.Get(rec.ID)
		j.Close()
		if err != nil || after.Phase != engine.PhasePaused || after.Epoch != 7 || after.Steps[1].State != engine.StepPending {
			t.Errorf("%s record after the refused resume: %+v %v", kind, after, err)
		}
		// A known step passes the check and fails later, on the plugin.
		err = triadError(t.Context(), kind, "resume", "-f", cfgPath, "--until", "open")
		if err == nil || strings.Contains(err.Error(), "no such step") {
			t.Errorf("%s resume --until open: %v; want it past the check", kind, err)
		}
		// The next kind starts from a finished record.
		j, _ = engine.OpenJournal(filepath.Join(dir, "state"), time.Second)
		after.Phase = engine.PhaseSucceeded
		j.Save(after)
		j.Close()
	}
}
