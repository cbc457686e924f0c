//go:build e2e

package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestOperatorSetsUpPKIAndTalksToAnAgent walks the first thing an operator
// does with triad: create the CA, issue certificates, start an agent with its
// cluster certificate and call it as a coordinator and as an observer.
func TestOperatorSetsUpPKIAndTalksToAnAgent(t *testing.T) {
	pkiDir := filepath.Join(t.TempDir(), "pki")
	stateDir := filepath.Join(t.TempDir(), "var", "lib", "triad-agent") // created by the agent
	mustTriad(t, "pki", "init", "--pki-dir", pkiDir)
	mustTriad(t, "pki", "issue", "agent", "--name", "prod-eu1", "--pki-dir", pkiDir)
	mustTriad(t, "pki", "issue", "coordinator", "--name", "default", "--pki-dir", pkiDir)
	mustTriad(t, "pki", "issue", "observer", "--name", "dashboards", "--pki-dir", pkiDir)

	for _, key := range []string{"ca.key", "agents/prod-eu1.key", "coordinators/default.key", "observers/dashboards.key"} {
		st, err := os.Stat(filepath.Join(pkiDir, key))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", key, st.Mode().Perm())
		}
	}
	if r := triad(t, "pki", "init", "--pki-dir", pkiDir); r.err == nil || !strings.Contains(r.stderr, "already exists") {
		t.Errorf("second pki init: err=%v stderr=%q, want a refusal", r.err, r.stderr)
	}

	agent := startAgent(t, "--cluster", "prod-eu1", "--node-name", "cp-0", "--state-dir", stateDir,
		"--tls-cert", filepath.Join(pkiDir, "agents/prod-eu1.crt"),
		"--tls-key", filepath.Join(pkiDir, "agents/prod-eu1.key"),
		"--tls-ca", filepath.Join(pkiDir, "ca.crt"))
	common := []string{"--pki-dir", pkiDir, "--endpoint", agent.addr, "--cluster", "prod-eu1"}

	var info struct {
		Cluster      string `json:"cluster"`
		NodeName     string `json:"nodeName"`
		HighestEpoch string `json:"highestEpoch"`
	}
	out := mustTriad(t, append([]string{"agent", "info", "-o", "json"}, common...)...)
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("agent info -o json is not JSON: %v\n%s", err, out)
	}
	if info.Cluster != "prod-eu1" || info.NodeName != "cp-0" {
		t.Errorf("agent info = %+v", info)
	}

	mustTriad(t, append([]string{"agent", "gate", "set", "open", "--operation-id", "op-1", "--epoch", "3"}, common...)...)

	r := triad(t, append([]string{"agent", "gate", "set", "closed", "--operation-id", "op-2", "--epoch", "3", "--as", "observer/dashboards"}, common...)...)
	if r.err == nil || !strings.Contains(r.stderr, "PermissionDenied") {
		t.Errorf("observer gate set: err=%v stderr=%q, want PermissionDenied", r.err, r.stderr)
	}
	r = triad(t, append([]string{"agent", "gate", "set", "closed", "--operation-id", "op-0", "--epoch", "2"}, common...)...)
	if r.err == nil || !strings.Contains(r.stderr, "FailedPrecondition") {
		t.Errorf("stale epoch gate set: err=%v stderr=%q, want FailedPrecondition", r.err, r.stderr)
	}

	var gate struct {
		Open bool `json:"open"`
	}
	out = mustTriad(t, append([]string{"agent", "gate", "get", "-o", "json", "--as", "observer/dashboards"}, common...)...)
	if err := json.Unmarshal([]byte(out), &gate); err != nil {
		t.Fatal(err)
	}
	if !gate.Open {
		t.Error("gate closed: a refused call changed it, or the coordinator's call did not open it")
	}
}

// TestAgentRefusesAnotherClustersCertificate checks the start-up guard: an
// agent started for one cluster with another cluster's certificate exits
// with an error instead of serving.
func TestAgentRefusesAnotherClustersCertificate(t *testing.T) {
	pkiDir := filepath.Join(t.TempDir(), "pki")
	mustTriad(t, "pki", "init", "--pki-dir", pkiDir)
	mustTriad(t, "pki", "issue", "agent", "--name", "staging", "--pki-dir", pkiDir)
	out, err := runAgentToExit(t, "--cluster", "prod-eu1", "--state-dir", t.TempDir(), "--listen", "127.0.0.1:0", "--gate-listen", "",
		"--tls-cert", filepath.Join(pkiDir, "agents/staging.crt"),
		"--tls-key", filepath.Join(pkiDir, "agents/staging.key"),
		"--tls-ca", filepath.Join(pkiDir, "ca.crt"))
	if err == nil || !strings.Contains(out, `not for cluster "prod-eu1"`) {
		t.Fatalf("agent: err=%v output=%q, want a refusal naming the cluster", err, out)
	}
}
