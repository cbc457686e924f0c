package nodeidentity_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/triad-k8s/triad/agent/nodeidentity"
)

const flagsWithOverride = `KUBELET_KUBEADM_ARGS="--container-runtime-endpoint=unix:///run/triad/cri.sock --hostname-override=E2E-CP-0 --pod-infra-container-image=registry.k8s.io/pause:3.10"
`

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestNodeNameAsTheKubeletDerivesIt(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, flags, hostname, want, source string
	}{
		{"no flags file", "", "CP-A.example", "cp-a.example", "hostname"},
		{"flags without an override", `KUBELET_KUBEADM_ARGS="--node-ip=10.0.0.5"` + "\n", "cp-a", "cp-a", "hostname"},
		{"override with =", flagsWithOverride, "cp-a", "e2e-cp-0", "override"},
		{"override as two words", `KUBELET_KUBEADM_ARGS="--hostname-override ip-10-0-0-5.ec2.internal --v=2"` + "\n", "cp-a", "ip-10-0-0-5.ec2.internal", "override"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
			if tc.flags != "" {
				write(t, path, tc.flags)
			}
			got, source, err := nodeidentity.NodeName(path, tc.hostname)
			if err != nil || got != tc.want || !strings.Contains(source, map[string]string{"hostname": "hostname", "override": "--hostname-override"}[tc.source]) {
				t.Fatalf("NodeName = %q from %q (%v), want %q from %s", got, source, err, tc.want, tc.source)
			}
		})
	}
	if _, _, err := nodeidentity.NodeName(filepath.Join(dir, "none"), " "); err == nil {
		t.Error("no override and an empty hostname gave a node name")
	}
}

func TestRenewGivesACloneItsOwnMachineIDAndName(t *testing.T) {
	dir := t.TempDir()
	flags, machineID := filepath.Join(dir, "kubeadm-flags.env"), filepath.Join(dir, "machine-id")
	const cloned = "0123456789abcdef0123456789abcdef\n"
	write(t, machineID, cloned)
	write(t, flags, flagsWithOverride)

	changed, err := nodeidentity.Renew(nodeidentity.Renewal{Hostname: "e2e-cp-b", FlagsEnv: flags, MachineIDFile: machineID})
	if err != nil {
		t.Fatal(err)
	}
	id, _ := os.ReadFile(machineID)
	if string(id) == cloned || len(strings.TrimSpace(string(id))) != 32 {
		t.Errorf("machine id after renewal %q, want a new 32-hex id", id)
	}
	if name, _, _ := nodeidentity.NodeName(flags, "e2e-cp-b"); name != "e2e-cp-b" {
		t.Errorf("node name after renewal %q, want the VM's own e2e-cp-b (the clone named its source)", name)
	}
	raw, _ := os.ReadFile(flags)
	if !strings.Contains(string(raw), "--container-runtime-endpoint=unix:///run/triad/cri.sock") || !strings.Contains(string(raw), "--pod-infra-container-image=") {
		t.Errorf("renewal lost other flags: %s", raw)
	}
	if len(changed) != 2 {
		t.Errorf("changed %v, want the machine id and the flags", changed)
	}

	// A VM whose flags name it already, or none: only the machine id.
	again, err := nodeidentity.Renew(nodeidentity.Renewal{Hostname: "E2E-CP-B", FlagsEnv: flags, MachineIDFile: machineID})
	if err != nil || len(again) != 1 {
		t.Errorf("renewal of a node already named: %v %v, want only the machine id", again, err)
	}
}
