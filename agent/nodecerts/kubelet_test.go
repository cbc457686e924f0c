package nodecerts_test

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/triad-k8s/triad/agent/nodecerts"
)

// kubeletConf is the shape of kubeadm's kubelet.conf after kubelet-finalize.
const kubeletConf = `apiVersion: v1
kind: Config
clusters:
- cluster:
    server: https://10.0.0.10:6443
  name: prod
contexts:
- context:
    cluster: prod
    user: system:node:cp-0
  name: system:node:cp-0@prod
current-context: system:node:cp-0@prod
users:
- name: system:node:cp-0
  user:
    client-certificate: %[1]s/kubelet-client-current.pem
    client-key: %[1]s/kubelet-client-current.pem
`

func kubeletCN(t *testing.T, kubeconfig string, ca *x509.Certificate) (string, []string) {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, ai := range cfg.AuthInfos {
		data, err := os.ReadFile(ai.ClientCertificate)
		if err != nil {
			t.Fatal(err)
		}
		block, _ := pem.Decode(data)
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AddCert(ca)
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("the kubelet's certificate does not verify against the cluster CA: %v", err)
		}
		return cert.Subject.CommonName, cert.Subject.Organization
	}
	t.Fatal("no user in the kubelet's kubeconfig")
	return "", nil
}

// A VM made from a clone of cp-0's disks boots as cp-a: its kubelet must
// be cp-a, not cp-0, before it starts (NodeRestriction).
func TestAClonedNodesKubeletGetsItsOwnIdentity(t *testing.T) {
	pki := copyPKI(t)
	certDir := filepath.Join(t.TempDir(), "pki")
	os.MkdirAll(certDir, 0o700)
	kubeconfig := filepath.Join(t.TempDir(), "kubelet.conf")
	os.WriteFile(kubeconfig, []byte(strings.ReplaceAll(kubeletConf, "%[1]s", certDir)), 0o600)
	caPEM, _ := os.ReadFile(filepath.Join(pki, "ca.crt"))
	block, _ := pem.Decode(caPEM)
	ca, _ := x509.ParseCertificate(block.Bytes)

	// cp-0 itself: its kubelet gets cp-0's certificate (none was there).
	if changed, err := nodecerts.EnsureKubeletIdentity(nodecerts.KubeletIdentity{NodeName: "cp-0", PKIDir: pki, Kubeconfig: kubeconfig, CertDir: certDir}); err != nil || !changed {
		t.Fatalf("first identity: %v %v", changed, err)
	}
	if cn, _ := kubeletCN(t, kubeconfig, ca); cn != "system:node:cp-0" {
		t.Fatalf("cp-0's kubelet is %q", cn)
	}
	again, err := nodecerts.EnsureKubeletIdentity(nodecerts.KubeletIdentity{NodeName: "cp-0", PKIDir: pki, Kubeconfig: kubeconfig, CertDir: certDir})
	if err != nil || again {
		t.Fatalf("a kubelet that is already its node was changed: %v %v", again, err)
	}

	// The clone, booted as cp-a, with cp-0's self-signed serving pair.
	os.WriteFile(filepath.Join(certDir, "kubelet.crt"), []byte("cp-0 serving"), 0o600)
	os.WriteFile(filepath.Join(certDir, "kubelet.key"), []byte("cp-0 serving key"), 0o600)
	changed, err := nodecerts.EnsureKubeletIdentity(nodecerts.KubeletIdentity{NodeName: "cp-a", PKIDir: pki, Kubeconfig: kubeconfig, CertDir: certDir})
	if err != nil || !changed {
		t.Fatalf("clone: %v %v", changed, err)
	}
	cn, orgs := kubeletCN(t, kubeconfig, ca)
	if cn != "system:node:cp-a" || !slices.Equal(orgs, []string{"system:nodes"}) {
		t.Errorf("the clone's kubelet is %q %v, want system:node:cp-a in system:nodes", cn, orgs)
	}
	for _, f := range []string{"kubelet.crt", "kubelet.key"} {
		if _, err := os.Stat(filepath.Join(certDir, f)); !os.IsNotExist(err) {
			t.Errorf("cp-0's serving %s kept: %v", f, err)
		}
	}
	if target, err := os.Readlink(filepath.Join(certDir, "kubelet-client-current.pem")); err != nil || !strings.HasPrefix(filepath.Base(target), "kubelet-client-") {
		t.Errorf("kubelet-client-current.pem is not a link to a rotated pair: %q %v", target, err)
	}
}

// Without the cluster CA's key (an external CA), nothing changes and the
// error says why.
func TestAKubeletIdentityWithoutTheCAKeyChangesNothing(t *testing.T) {
	pki := copyPKI(t)
	os.Remove(filepath.Join(pki, "ca.key"))
	certDir := t.TempDir()
	kubeconfig := filepath.Join(t.TempDir(), "kubelet.conf")
	before := strings.ReplaceAll(kubeletConf, "%[1]s", certDir)
	os.WriteFile(kubeconfig, []byte(before), 0o600)
	_, err := nodecerts.EnsureKubeletIdentity(nodecerts.KubeletIdentity{NodeName: "cp-a", PKIDir: pki, Kubeconfig: kubeconfig, CertDir: certDir})
	if err == nil || !strings.Contains(err.Error(), "system:node:cp-a") || !strings.Contains(err.Error(), "ca.key") && !strings.Contains(err.Error(), "CA key") {
		t.Fatalf("err = %v, want one naming the identity and the missing CA key", err)
	}
	if after, _ := os.ReadFile(kubeconfig); string(after) != before {
		t.Error("the kubeconfig changed")
	}
	if entries, _ := os.ReadDir(certDir); len(entries) != 0 {
		t.Errorf("files written: %v", entries)
	}
}
