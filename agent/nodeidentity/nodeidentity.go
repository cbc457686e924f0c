// Package nodeidentity derives a node's name the way the kubelet does and
// gives a VM created from another node's disks an identity of its own
// before its kubelet starts: a machine id, and a node name that is not the
// other node's.
package nodeidentity

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/triad-k8s/triad/agent/atomicfile"
)

// Kubeadm's paths.
const (
	// KubeadmFlagsEnv is where kubeadm's kubelet-start phase writes the
	// kubelet's flags (KUBELET_KUBEADM_ARGS), --hostname-override among
	// them when the node's name is not its hostname.
	KubeadmFlagsEnv = "/var/lib/kubelet/kubeadm-flags.env"
	// MachineIDFile is systemd's machine id.
	MachineIDFile = "/etc/machine-id"
)

const overrideFlag = "--hostname-override"

// NodeName is the node name the kubelet will register: the
// --hostname-override in kubeadm-flags.env if there is one, else the
// hostname, lower-cased and trimmed as the kubelet does. source says which.
func NodeName(flagsEnv, hostname string) (name, source string, err error) {
	override, err := hostnameOverride(flagsEnv)
	if err != nil {
		return "", "", err
	}
	if override != "" {
		return kubeletName(override), flagsEnv + " " + overrideFlag, nil
	}
	name = kubeletName(hostname)
	if name == "" {
		return "", "", errors.New("no --hostname-override and an empty hostname: no node name")
	}
	return name, "hostname", nil
}

func kubeletName(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// hostnameOverride returns the --hostname-override in the flags file, ""
// if the file or the flag is missing.
func hostnameOverride(flagsEnv string) (string, error) {
	raw, err := os.ReadFile(flagsEnv)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading the kubelet's flags: %w", err)
	}
	for line := range strings.Lines(string(raw)) {
		_, args, ok := strings.Cut(strings.TrimSpace(line), "KUBELET_KUBEADM_ARGS=")
		if !ok {
			continue
		}
		fields := strings.Fields(strings.Trim(args, `"'`))
		for i, f := range fields {
			if v, ok := strings.CutPrefix(f, overrideFlag+"="); ok {
				return v, nil
			}
			if f == overrideFlag && i+1 < len(fields) {
				return fields[i+1], nil
			}
		}
	}
	return "", nil
}

// Renewal is what a VM created from another node's disks renews.
type Renewal struct {
	// Hostname is the VM's hostname, as the cloud set it.
	Hostname string
	// FlagsEnv is kubeadm-flags.env; MachineIDFile is /etc/machine-id.
	FlagsEnv, MachineIDFile string
}

// Renew gives a new VM its own identity, before its kubelet first starts:
// a fresh machine id (a cloned disk carries its source's), and, when the
// cloned kubeadm-flags.env names a node other than this VM's hostname in
// --hostname-override, this VM's name in its place. It returns what it
// changed, for the log.
func Renew(r Renewal) ([]string, error) {
	var changed []string
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	if err := atomicfile.Write(r.MachineIDFile, []byte(hex.EncodeToString(b)+"\n"), 0o444); err != nil {
		return nil, fmt.Errorf("writing a machine id of its own: %w", err)
	}
	changed = append(changed, r.MachineIDFile)
	override, err := hostnameOverride(r.FlagsEnv)
	if err != nil {
		return changed, err
	}
	own := kubeletName(r.Hostname)
	if override == "" || kubeletName(override) == own {
		return changed, nil
	}
	if own == "" {
		return changed, fmt.Errorf("%s names node %q and this VM has no hostname to name itself", r.FlagsEnv, override)
	}
	raw, err := os.ReadFile(r.FlagsEnv)
	if err != nil {
		return changed, err
	}
	out := strings.NewReplacer(overrideFlag+"="+override, overrideFlag+"="+own, overrideFlag+" "+override, overrideFlag+" "+own).Replace(string(raw))
	if err := atomicfile.Write(r.FlagsEnv, []byte(out), 0o644); err != nil {
		return changed, fmt.Errorf("renaming the kubelet: %w", err)
	}
	return append(changed, fmt.Sprintf("%s: %s %s (was %s)", r.FlagsEnv, overrideFlag, own, override)), nil
}
