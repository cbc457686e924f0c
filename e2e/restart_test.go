//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/triad-k8s/triad/coordinator/availability"
	"github.com/triad-k8s/triad/coordinator/controlplane"
	"github.com/triad-k8s/triad/coordinator/status"
)

const controlPlaneRole = "node-role.kubernetes.io/control-plane"

// inVM runs argv inside VM id and returns its trimmed stdout.
func (c *cluster) inVM(t *testing.T, id string, argv ...string) (string, error) {
	t.Helper()
	cmd, err := c.cloud.Command(id, argv...)
	if err != nil {
		return "", err
	}
	out, err := cmd.Output()
	return strings.TrimSpace(string(out)), err
}

// checkOwnIdentities: every new control-plane VM is a host of its own —
// a machine id none of the others (or the original) has, a kubelet client
// certificate for system:node:<its name> with a serial of its own — and
// its Node is Ready with kubeadm's control-plane label and taint.
func (c *cluster) checkOwnIdentities(t *testing.T, original string, nodes []controlplane.Node) {
	t.Helper()
	machineIDs := map[string]string{c.cloud.MachineID(original): "the original"}
	serials := map[string]string{}
	for _, n := range nodes {
		id := c.cloud.MachineID(n.InstanceID)
		if other, dup := machineIDs[id]; dup || len(id) != 32 {
			t.Errorf("%s: machine id %q, also %s's", n.Name, id, other)
		}
		machineIDs[id] = n.Name
		pemData, err := c.inVM(t, n.InstanceID, "cat", "/var/lib/kubelet/pki/kubelet-client-current.pem")
		if err != nil {
			t.Errorf("%s: reading the kubelet's client certificate: %v", n.Name, err)
			continue
		}
		block, _ := pem.Decode([]byte(pemData))
		if block == nil {
			t.Errorf("%s: kubelet-client-current.pem holds no PEM", n.Name)
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		must(t, err)
		if cert.Subject.CommonName != "system:node:"+n.Name || len(cert.Subject.Organization) != 1 || cert.Subject.Organization[0] != "system:nodes" {
			t.Errorf("%s: kubelet client certificate %s / %v, want system:node:%s / system:nodes", n.Name, cert.Subject.CommonName, cert.Subject.Organization, n.Name)
		}
		serial := cert.SerialNumber.String()
		if other, dup := serials[serial]; dup {
			t.Errorf("%s: kubelet certificate serial %s is also %s's", n.Name, serial, other)
		}
		serials[serial] = n.Name
	}
	eventuallyE2E(t, 2*time.Minute, "every new Node Ready with kubeadm's control-plane label and taint", func() error {
		var problems []string
		for _, n := range nodes {
			node, err := c.client.CoreV1().Nodes().Get(context.Background(), n.Name, metav1.GetOptions{})
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s: %v", n.Name, err))
				continue
			}
			if !nodeIsReady(node) {
				problems = append(problems, n.Name+" not Ready")
			}
			if _, ok := node.Labels[controlPlaneRole]; !ok {
				problems = append(problems, n.Name+" has no control-plane label")
			}
			tainted := false
			for _, tn := range node.Spec.Taints {
				tainted = tainted || (tn.Key == controlPlaneRole && tn.Effect == corev1.TaintEffectNoSchedule)
			}
			if !tainted {
				problems = append(problems, n.Name+" has no control-plane taint")
			}
		}
		if len(problems) > 0 {
			return fmt.Errorf("%s", strings.Join(problems, "; "))
		}
		return nil
	})
}

// waitHealthy waits until triad status finds the cluster healthy by
// itself: three voters, every node's four static pods running.
func (c *cluster) waitHealthy(t *testing.T, what string, d time.Duration) {
	t.Helper()
	start := time.Now()
	eventuallyE2E(t, d, "healthy again after "+what, func() error {
		var s status.Cluster
		r := triad(t, "status", "-f", c.cfgPath, "-o", "json")
		if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
			return fmt.Errorf("%v: %s", err, r.stderr)
		}
		if r.err != nil || !s.Healthy || s.Voters != 3 || len(s.Nodes) != 3 {
			return fmt.Errorf("exit %v, healthy %v, %d voters, %d nodes, problems %v", r.err, s.Healthy, s.Voters, len(s.Nodes), s.Problems)
		}
		for _, n := range s.Nodes {
			if n.Health == nil || len(n.Health.StaticPods) != 4 {
				return fmt.Errorf("%s: static pods %v", n.Name, n.Health)
			}
		}
		return nil
	})
	t.Logf("healthy again %.1fs after %s", time.Since(start).Seconds(), what)
}

// waitServing waits until node n's kube-apiserver answers reads on its own
// address, as the availability monitor probes it (a fresh client, 2 s per
// read), five times in a row. triad status reports a rebooted node healthy
// from its agent's view (static pods running, /readyz) and was seen to do
// so a few seconds before the node answered the monitor: an operator who
// reboots the next node at once would take two down.
func (c *cluster) waitServing(t *testing.T, n controlplane.Node) {
	t.Helper()
	start := time.Now()
	cfg := rest.CopyConfig(c.public)
	cfg.Host = "https://" + n.PrivateIP + ":6443"
	cfg.Timeout = 2 * time.Second
	ok := 0
	eventuallyE2E(t, 2*time.Minute, n.Name+" answering reads on its own address", func() error {
		kube, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return err
		}
		if _, err := kube.CoreV1().Namespaces().Get(context.Background(), "default", metav1.GetOptions{}); err != nil {
			ok = 0
			return err
		}
		if ok++; ok < 5 {
			return fmt.Errorf("%d reads in a row", ok)
		}
		return nil
	})
	t.Logf("%s answered reads on its own address %.1fs after triad status found it healthy", n.Name, time.Since(start).Seconds())
}

// survivesRestarts restarts every agent, then reboots every control-plane
// VM one at a time under the availability monitor (run as an operator
// would: 'triad monitor'), then stops all three and starts them again. The
// cluster must come back by itself each time, with no availability window
// at 0 during the rolling reboot, and no acknowledged write lost.
func (c *cluster) survivesRestarts(t *testing.T, nodes []controlplane.Node) {
	t.Helper()
	l := c.startLoad(t)
	for _, n := range nodes {
		r := triad(t, "local", "vm", "restart", "--state-dir", c.stateDir, n.InstanceID, "triad-agent")
		if r.err != nil {
			t.Fatalf("restarting %s's agent: %v %s", n.Name, r.err, r.stderr)
		}
	}
	c.waitHealthy(t, "every agent restarted", 2*time.Minute)

	report := filepath.Join(c.work, "rolling-reboot.json")
	mon := c.startMonitor(t, report)
	for _, n := range nodes {
		for _, verb := range []string{"stop", "start"} {
			if r := triad(t, "local", "vm", verb, "--state-dir", c.stateDir, n.InstanceID); r.err != nil {
				t.Fatalf("vm %s %s: %v %s", verb, n.Name, r.err, r.stderr)
			}
		}
		c.waitHealthy(t, "rebooting "+n.Name, 3*time.Minute)
		c.waitServing(t, n)
	}
	mon.stop(t)
	var r availability.Report
	raw, err := os.ReadFile(report)
	must(t, err)
	must(t, json.Unmarshal(raw, &r))
	for _, w := range r.Windows {
		if w.Availability == 0 {
			t.Errorf("rolling reboot: window at %s fully unavailable: %+v", w.Start.Format("15:04:05"), w)
		}
	}
	t.Logf("rolling reboot: %d windows, lowest availability %.1f%%", len(r.Windows), r.MinAvailability)

	for _, n := range nodes {
		if r := triad(t, "local", "vm", "stop", "--state-dir", c.stateDir, n.InstanceID); r.err != nil {
			t.Fatalf("vm stop %s: %v %s", n.Name, r.err, r.stderr)
		}
	}
	for _, n := range nodes {
		if r := triad(t, "local", "vm", "start", "--state-dir", c.stateDir, n.InstanceID); r.err != nil {
			t.Fatalf("vm start %s: %v %s", n.Name, r.err, r.stderr)
		}
	}
	c.waitHealthy(t, "stopping all three and starting them again", 4*time.Minute)
	c.checkWrites(t, l)
}

// monitorProcess is 'triad monitor' running as an operator runs it.
type monitorProcess struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer
}

func (c *cluster) startMonitor(t *testing.T, report string) *monitorProcess {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "triad"), "monitor", "-f", c.cfgPath, "--report", report)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	m := &monitorProcess{cmd: cmd, stderr: &bytes.Buffer{}}
	cmd.Stderr = m.stderr
	must(t, cmd.Start())
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	time.Sleep(3 * time.Second) // some windows before the first reboot
	return m
}

// stop interrupts the monitor (Ctrl-C) and waits for its report.
func (m *monitorProcess) stop(t *testing.T) {
	t.Helper()
	must(t, m.cmd.Process.Signal(syscall.SIGINT))
	if err := m.cmd.Wait(); err != nil {
		t.Fatalf("triad monitor: %v\n%s", err, m.stderr)
	}
}
