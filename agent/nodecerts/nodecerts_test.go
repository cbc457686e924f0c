package nodecerts_test

import (
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/triad-k8s/triad/agent/nodecerts"
)

// kubeadmPKI is a PKI directory written by the real kubeadm (COMMAND.txt):
// node cp-0 advertising 10.0.0.10, with certSANs 203.0.113.10 and
// api.prod-eu1.example.com.
const kubeadmPKI = "testdata/kubeadm-v1.36.3/pki"

func copyPKI(t *testing.T) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "pki")
	err := filepath.WalkDir(kubeadmPKI, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(kubeadmPKI, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o700)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ipStrings(ips []net.IP) []string {
	var out []string
	for _, ip := range ips {
		out = append(out, ip.String())
	}
	slices.Sort(out)
	return out
}

func TestReissueMovesTheNodeToItsNewAddressKeepingKubeadmConventions(t *testing.T) {
	pki := copyPKI(t)
	before := map[string]*x509.Certificate{}
	for _, c := range nodecerts.KubeadmCerts {
		before[c.Name] = readCert(t, filepath.Join(pki, c.Name+".crt"))
	}
	// A migrated node: new private IP 10.0.1.21; the old IP 10.0.0.10 now
	// belongs to the internal load balancer, so it is requested again.
	issued, err := nodecerts.Reissue(nodecerts.Request{
		PKIDir: pki, OldAddress: "10.0.0.10", IPs: []string{"10.0.1.21", "10.0.0.10"},
		DNSNames: []string{"cp-a"}, BackupDir: filepath.Join(t.TempDir(), "backup"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(issued) != len(nodecerts.KubeadmCerts) {
		t.Fatalf("issued %d certificates", len(issued))
	}
	wantIPs := map[string][]string{
		"apiserver":               {"10.0.0.10", "10.0.1.21", "10.96.0.1", "203.0.113.10"},
		"etcd/server":             {"10.0.0.10", "10.0.1.21", "127.0.0.1", "::1"},
		"etcd/peer":               {"10.0.0.10", "10.0.1.21", "127.0.0.1", "::1"},
		"etcd/healthcheck-client": nil,
	}
	for _, c := range nodecerts.KubeadmCerts {
		t.Run(c.Name, func(t *testing.T) {
			got := readCert(t, filepath.Join(pki, c.Name+".crt"))
			old := before[c.Name]
			if got.Subject.String() != old.Subject.String() || got.KeyUsage != old.KeyUsage || !slices.Equal(got.ExtKeyUsage, old.ExtKeyUsage) {
				t.Errorf("subject/usages changed: %v %v %v, were %v %v %v", got.Subject, got.KeyUsage, got.ExtKeyUsage, old.Subject, old.KeyUsage, old.ExtKeyUsage)
			}
			if ips := ipStrings(got.IPAddresses); !slices.Equal(ips, wantIPs[c.Name]) {
				t.Errorf("IP SANs %v, want %v", ips, wantIPs[c.Name])
			}
			if c.NodeSANs && !slices.Contains(got.DNSNames, "cp-a") {
				t.Errorf("DNS SANs %v lack the requested cp-a", got.DNSNames)
			}
			for _, d := range old.DNSNames {
				if !slices.Contains(got.DNSNames, d) {
					t.Errorf("DNS SAN %q of kubeadm's certificate was lost", d)
				}
			}
			roots := x509.NewCertPool()
			roots.AddCert(readCert(t, filepath.Join(pki, c.CA+".crt")))
			if _, err := got.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
				t.Errorf("does not verify against %s: %v", c.CA, err)
			}
			pair, err := tls.LoadX509KeyPair(filepath.Join(pki, c.Name+".crt"), filepath.Join(pki, c.Name+".key"))
			if err != nil {
				t.Fatalf("new key does not match the new certificate: %v", err)
			}
			if k, ok := pair.PrivateKey.(*rsa.PrivateKey); !ok || k.N.BitLen() != 2048 {
				t.Errorf("key is %T, want kubeadm's RSA-2048", pair.PrivateKey)
			}
		})
	}
	// The kube-apiserver certificate still serves the in-cluster name.
	api := readCert(t, filepath.Join(pki, "apiserver.crt"))
	if err := api.VerifyHostname("kubernetes.default.svc"); err != nil {
		t.Error(err)
	}
	if err := api.VerifyHostname("10.0.1.21"); err != nil {
		t.Error(err)
	}
}

func TestReissueDropsTheOldAddressUnlessRequested(t *testing.T) {
	pki := copyPKI(t)
	if _, err := nodecerts.Reissue(nodecerts.Request{PKIDir: pki, OldAddress: "10.0.0.10", IPs: []string{"10.0.1.21"}, BackupDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	if err := readCert(t, filepath.Join(pki, "etcd/peer.crt")).VerifyHostname("10.0.0.10"); err == nil {
		t.Error("the peer certificate still names the old address")
	}
}

func TestPreviousFilesAreBackedUp(t *testing.T) {
	pki := copyPKI(t)
	backup := filepath.Join(t.TempDir(), "backup")
	orig, _ := os.ReadFile(filepath.Join(pki, "apiserver.crt"))
	origKey, _ := os.ReadFile(filepath.Join(pki, "apiserver.key"))
	issued, err := nodecerts.Reissue(nodecerts.Request{PKIDir: pki, IPs: []string{"10.0.1.21"}, BackupDir: backup})
	if err != nil {
		t.Fatal(err)
	}
	saved, _ := os.ReadFile(issued[0].BackupPath)
	savedKey, _ := os.ReadFile(filepath.Join(backup, "apiserver.key"))
	if string(saved) != string(orig) || string(savedKey) != string(origKey) {
		t.Fatal("backup does not hold the original certificate and key")
	}
	// A retry of the same operation keeps the original backup.
	if _, err := nodecerts.Reissue(nodecerts.Request{PKIDir: pki, IPs: []string{"10.0.1.21"}, BackupDir: backup}); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(issued[0].BackupPath); string(again) != string(orig) {
		t.Fatal("a retry overwrote the backup with re-issued files")
	}
}

func digestDir(t *testing.T, dir string) map[string][32]byte {
	t.Helper()
	out := map[string][32]byte{}
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			data, _ := os.ReadFile(path)
			out[path] = sha256.Sum256(data)
		}
		return nil
	})
	return out
}

func TestBadRequestsChangeNothing(t *testing.T) {
	cases := []struct {
		name   string
		req    func(pki string) nodecerts.Request
		prep   func(pki string)
		sentin error
	}{
		{"an IP that is not an IP", func(p string) nodecerts.Request {
			return nodecerts.Request{PKIDir: p, IPs: []string{"10.0.1.300"}, BackupDir: filepath.Join(p, "..", "b")}
		}, nil, nodecerts.ErrInvalidArgument},
		{"a DNS name with a path", func(p string) nodecerts.Request {
			return nodecerts.Request{PKIDir: p, IPs: []string{"10.0.1.2"}, DNSNames: []string{"a/b"}, BackupDir: filepath.Join(p, "..", "b")}
		}, nil, nodecerts.ErrInvalidArgument},
		{"a missing etcd CA key (external CA)", func(p string) nodecerts.Request {
			return nodecerts.Request{PKIDir: p, IPs: []string{"10.0.1.2"}, BackupDir: filepath.Join(p, "..", "b")}
		}, func(p string) { os.Remove(filepath.Join(p, "etcd", "ca.key")) }, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pki := copyPKI(t)
			if tc.prep != nil {
				tc.prep(pki)
			}
			before := digestDir(t, pki)
			_, err := nodecerts.Reissue(tc.req(pki))
			if err == nil || (tc.sentin != nil && !errors.Is(err, tc.sentin)) {
				t.Fatalf("got %v", err)
			}
			after := digestDir(t, pki)
			if len(before) != len(after) {
				t.Fatal("files added or removed")
			}
			for k, v := range before {
				if after[k] != v {
					t.Errorf("%s changed", k)
				}
			}
		})
	}
}
