//go:build e2e

package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/triad-k8s/triad/agent/manifests"
	"github.com/triad-k8s/triad/cloudplugins/local/localcluster"
	"github.com/triad-k8s/triad/coordinator/controlplane"
)

// checkKubeadm: kubeadm keeps working after triad changed the control
// plane. On every control-plane node 'kubeadm certs check-expiration' and
// 'kubeadm upgrade plan' run without error; kubeadm-config's
// controlPlaneEndpoint names the original address; and a new worker VM
// joins with 'kubeadm join' — a bootstrap token made on a control-plane
// node, discovery and TLS bootstrap through the original address, now the
// load balancers' — and its Node becomes Ready.
func (c *cluster) checkKubeadm(t *testing.T, nodes []controlplane.Node, worker string) {
	t.Helper()
	k8sBin := needK8s(t)
	kubeadm := filepath.Join(k8sBin, "kubeadm")
	for _, n := range nodes {
		for _, argv := range [][]string{
			{kubeadm, "certs", "check-expiration"},
			{kubeadm, "upgrade", "plan", oldVersion},
		} {
			out, err := c.inVMEnv(t, n.InstanceID, k8sBin, argv...)
			if err != nil {
				t.Errorf("%s: %s: %v\n%s", n.Name, strings.Join(argv[1:], " "), err, out)
				continue
			}
			t.Logf("%s: %s:\n%s", n.Name, strings.Join(argv[1:], " "), out)
		}
	}
	c.checkKubeconfigsLive(t, nodes)
	endpoint := c.privateIP + ":6443"
	cm, err := c.client.CoreV1().ConfigMaps("kube-system").Get(context.Background(), "kubeadm-config", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("kubeadm-config: %v", err)
	}
	var cc struct {
		ControlPlaneEndpoint string `json:"controlPlaneEndpoint"`
	}
	must(t, yaml.Unmarshal([]byte(cm.Data["ClusterConfiguration"]), &cc))
	if cc.ControlPlaneEndpoint != endpoint {
		t.Errorf("kubeadm-config's controlPlaneEndpoint %q, want the original address %s", cc.ControlPlaneEndpoint, endpoint)
	}

	start := time.Now()
	w, err := localcluster.JoinWorker(context.Background(), c.cloud, localcluster.WorkerOptions{
		Cluster: c.name, Name: worker, KubernetesVersion: oldVersion, BinDir: k8sBin, ControlPlane: nodes[0].InstanceID,
	})
	if err != nil {
		if logs, _ := filepath.Glob(filepath.Join(c.stateDir, "vms", "*", "kubeadm-join.log")); len(logs) > 0 {
			b, _ := os.ReadFile(logs[len(logs)-1])
			t.Logf("%s:\n%s", logs[len(logs)-1], tail(b, 4000))
		}
		t.Fatalf("kubeadm join: %v", err)
	}
	if w.APIServer != endpoint {
		t.Errorf("the join command names %s, want the original address %s", w.APIServer, endpoint)
	}
	eventuallyE2E(t, 2*time.Minute, "the joined worker's Node Ready", func() error {
		node, err := c.client.CoreV1().Nodes().Get(context.Background(), worker, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if !nodeIsReady(node) {
			return fmt.Errorf("%s not Ready", worker)
		}
		return nil
	})
	t.Logf("worker %s joined through %s and is Ready after %s", worker, w.APIServer, time.Since(start).Round(100*time.Millisecond))
}

// checkKubeconfigsLive: every kubeconfig kubeadm wrote on every node names
// a kube-apiserver that answers /readyz now (asked from the host, which
// reaches every address on the bridge); controller-manager.conf and
// scheduler.conf name the node's own.
func (c *cluster) checkKubeconfigsLive(t *testing.T, nodes []controlplane.Node) {
	t.Helper()
	for _, n := range nodes {
		for _, name := range manifests.KubeadmKubeconfigs {
			path, err := c.cloud.VMPath(n.InstanceID, "/etc/kubernetes/"+name)
			must(t, err)
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Errorf("%s: %v", n.Name, err)
				continue
			}
			cfg, err := clientcmd.Load(raw)
			if err != nil {
				t.Errorf("%s: %s: %v", n.Name, name, err)
				continue
			}
			for cname, cl := range cfg.Clusters {
				if slices.Contains(manifests.LocalKubeconfigs, name) && !strings.Contains(cl.Server, "//"+n.PrivateIP+":") {
					t.Errorf("%s: %s names %s, want the node's own kube-apiserver on %s", n.Name, name, cl.Server, n.PrivateIP)
				}
				pool := x509.NewCertPool()
				pool.AppendCertsFromPEM(cl.CertificateAuthorityData)
				hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
				resp, err := hc.Get(cl.Server + "/readyz")
				if err != nil {
					t.Errorf("%s: %s (cluster %s) names %s, which does not answer: %v", n.Name, name, cname, cl.Server, err)
					continue
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Errorf("%s: %s names %s: /readyz %s", n.Name, name, cl.Server, resp.Status)
				}
			}
		}
	}
}

// inVMEnv runs argv inside VM id with bin on PATH, and returns its
// combined output.
func (c *cluster) inVMEnv(t *testing.T, id, bin string, argv ...string) (string, error) {
	t.Helper()
	cmd, err := c.cloud.Command(id, argv...)
	if err != nil {
		return "", err
	}
	cmd.Env = []string{"PATH=" + bin + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return "", err
	}
	timer := time.AfterFunc(2*time.Minute, func() { cmd.Process.Kill() })
	err = cmd.Wait()
	timer.Stop()
	return out.String(), err
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
