package nodecerts

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/triad-k8s/triad/agent/atomicfile"
)

// KubeletIdentity names what gives a node's kubelet its identity, at
// kubeadm's paths.
type KubeletIdentity struct {
	// NodeName is the node this kubelet is (its Node object).
	NodeName string
	// PKIDir holds the cluster CA (ca.crt, ca.key) on control-plane nodes.
	PKIDir string
	// Kubeconfig is the kubelet's kubeconfig (/etc/kubernetes/kubelet.conf).
	Kubeconfig string
	// CertDir is the kubelet's certificate directory (/var/lib/kubelet/pki).
	CertDir string
	// Now, for tests; time.Now by default.
	Now func() time.Time
}

// EnsureKubeletIdentity makes sure the kubelet authenticates as its own
// node. A VM created from a clone of another control-plane node's disks
// carries that node's kubelet client certificate (system:node:<other>):
// under NodeRestriction such a kubelet can register no Node, create no
// mirror pod and, until its sources are ready, delete no static pod. As
// kubeadm join does, it issues a client certificate for
// system:node:<NodeName> from the cluster CA on the node, writes it where
// the kubelet rotates its own (kubelet-client-<time>.pem and the
// kubelet-client-current.pem link), points the kubeconfig at it and removes
// the other node's self-signed serving certificate, which the kubelet then
// makes again for its own name. It returns whether it changed anything; a
// node without a kubelet kubeconfig is left alone.
func EnsureKubeletIdentity(k KubeletIdentity) (bool, error) {
	if k.NodeName == "" {
		return false, errors.New("kubelet identity: no node name")
	}
	if k.Now == nil {
		k.Now = time.Now
	}
	raw, err := os.ReadFile(k.Kubeconfig)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading the kubelet's kubeconfig: %w", err)
	}
	cfg, err := clientcmd.Load(raw)
	if err != nil {
		return false, fmt.Errorf("kubelet kubeconfig %s: %w", k.Kubeconfig, err)
	}
	want := "system:node:" + k.NodeName
	for _, ai := range cfg.AuthInfos {
		certPEM := ai.ClientCertificateData
		if len(certPEM) == 0 && ai.ClientCertificate != "" {
			if certPEM, err = os.ReadFile(ai.ClientCertificate); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return false, fmt.Errorf("reading the kubelet's client certificate: %w", err)
			}
		}
		if len(certPEM) == 0 {
			continue
		}
		if cert, err := parseCert(certPEM); err == nil && cert.Subject.CommonName == want && k.Now().Before(cert.NotAfter) {
			return false, nil
		}
	}

	ca, caKey, err := loadCA(k.PKIDir, "ca")
	if err != nil {
		return false, fmt.Errorf("the kubelet is not %s and there is no CA to make it so: %w", want, err)
	}
	key, err := newKeyLike(ca.PublicKey)
	if err != nil {
		return false, err
	}
	now := k.Now()
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: want, Organization: []string{"system:nodes"}},
		NotBefore:    now.Add(-5 * time.Minute),
		NotAfter:     minTime(now.Add(365*24*time.Hour), ca.NotAfter),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return false, fmt.Errorf("issuing the kubelet's client certificate: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return false, err
	}
	pair := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM...)
	name := filepath.Join(k.CertDir, "kubelet-client-"+now.UTC().Format("2006-01-02-15-04-05")+".pem")
	if err := atomicfile.Write(name, pair, 0o600); err != nil {
		return false, err
	}
	current := filepath.Join(k.CertDir, "kubelet-client-current.pem")
	link := current + ".new"
	os.Remove(link)
	if err := os.Symlink(name, link); err != nil {
		return false, err
	}
	if err := os.Rename(link, current); err != nil {
		return false, err
	}
	for _, ai := range cfg.AuthInfos {
		ai.ClientCertificateData, ai.ClientKeyData = nil, nil
		ai.ClientCertificate, ai.ClientKey = current, current
	}
	out, err := clientcmd.Write(*cfg)
	if err != nil {
		return false, err
	}
	if err := atomicfile.Write(k.Kubeconfig, out, 0o600); err != nil {
		return false, err
	}
	for _, f := range []string{"kubelet.crt", "kubelet.key"} {
		if err := os.Remove(filepath.Join(k.CertDir, f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return true, err
		}
	}
	return true, nil
}
