// Package nodecerts re-issues a control-plane node's certificates for a new
// address from the CA keys on the node, with kubeadm's file names: the
// kube-apiserver serving certificate (signed by the cluster CA) and etcd's
// server, peer and healthcheck-client certificates (signed by the etcd CA).
//
// Each new certificate is cut from the one it replaces: same subject, key
// usages and extended key usages, same SANs except that the node's old
// advertise address is dropped and the requested addresses and names are
// added. That keeps whatever kubeadm (and the operator's certSANs) put there,
// without triad having to re-derive kubeadm's rules. The previous files are
// copied to a backup directory before anything is written. The package
// touches only the PKI directory.
package nodecerts

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/triad-k8s/triad/agent/atomicfile"
)

// ErrInvalidArgument marks a malformed request; nothing was written.
var ErrInvalidArgument = errors.New("invalid argument")

// Cert names one certificate of a kubeadm PKI directory.
type Cert struct {
	// Name is the file name without extension, relative to the PKI dir.
	Name string
	// CA is the signing CA, relative to the PKI dir, without extension.
	CA string
	// NodeSANs is true for certificates that carry the node's addresses.
	NodeSANs bool
}

// KubeadmCerts are the certificates that name the node, in kubeadm's layout.
var KubeadmCerts = []Cert{
	{Name: "apiserver", CA: "ca", NodeSANs: true},
	{Name: "etcd/server", CA: "etcd/ca", NodeSANs: true},
	{Name: "etcd/peer", CA: "etcd/ca", NodeSANs: true},
	{Name: "etcd/healthcheck-client", CA: "etcd/ca"},
}

// Request asks for the node's certificates to be re-issued.
type Request struct {
	// PKIDir is kubeadm's PKI directory, /etc/kubernetes/pki.
	PKIDir string
	// OldAddress is the node's previous advertise address, dropped from the
	// SANs; empty drops nothing.
	OldAddress string
	// IPs and DNSNames are added to the SANs of the node certificates.
	IPs      []string
	DNSNames []string
	// BackupDir receives copies of the previous files.
	BackupDir string
	// Validity of the new certificates; defaults to one year, capped at the
	// CA's expiry.
	Validity time.Duration
}

// Issued describes one written certificate.
type Issued struct {
	Path, BackupPath string
	NotAfter         time.Time
	IPs              []net.IP
	DNSNames         []string
}

// Reissue re-issues KubeadmCerts. It validates everything and signs every
// certificate in memory first, then backs up and writes, so bad input or a
// missing CA changes nothing.
func Reissue(req Request) ([]Issued, error) {
	ips, err := parseIPs(req.IPs)
	if err != nil {
		return nil, err
	}
	var oldIP net.IP
	if req.OldAddress != "" {
		if oldIP = net.ParseIP(req.OldAddress); oldIP == nil {
			return nil, fmt.Errorf("%w: old address %q is not an IP", ErrInvalidArgument, req.OldAddress)
		}
	}
	for _, d := range req.DNSNames {
		if d == "" || len(d) > 253 || slices.ContainsFunc([]byte(d), func(c byte) bool { return c == '/' || c == ' ' }) {
			return nil, fmt.Errorf("%w: DNS name %q", ErrInvalidArgument, d)
		}
	}
	now := time.Now
	validity := req.Validity
	if validity <= 0 {
		validity = 365 * 24 * time.Hour
	}

	type pending struct {
		cert          Cert
		certPEM, key  []byte
		issued        Issued
		oldCert, oldK []byte
	}
	var out []pending
	for _, c := range KubeadmCerts {
		certPath, keyPath := filepath.Join(req.PKIDir, c.Name+".crt"), filepath.Join(req.PKIDir, c.Name+".key")
		oldPEM, err := os.ReadFile(certPath)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", certPath, err)
		}
		oldKeyPEM, err := os.ReadFile(keyPath)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", keyPath, err)
		}
		old, err := parseCert(oldPEM)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", certPath, err)
		}
		caCert, caKey, err := loadCA(req.PKIDir, c.CA)
		if err != nil {
			return nil, err
		}
		tmpl := &x509.Certificate{
			SerialNumber:          randomSerial(),
			Subject:               old.Subject,
			NotBefore:             now().Add(-5 * time.Minute),
			NotAfter:              minTime(now().Add(validity), caCert.NotAfter),
			KeyUsage:              old.KeyUsage,
			ExtKeyUsage:           old.ExtKeyUsage,
			BasicConstraintsValid: true,
			DNSNames:              old.DNSNames,
			IPAddresses:           old.IPAddresses,
			URIs:                  old.URIs,
		}
		if c.NodeSANs {
			tmpl.IPAddresses = mergeIPs(old.IPAddresses, oldIP, ips)
			tmpl.DNSNames = mergeStrings(old.DNSNames, req.DNSNames)
		}
		key, err := newKeyLike(old.PublicKey)
		if err != nil {
			return nil, err
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, key.Public(), caKey)
		if err != nil {
			return nil, fmt.Errorf("signing %s: %w", c.Name, err)
		}
		keyPEM, err := encodeKey(key)
		if err != nil {
			return nil, err
		}
		out = append(out, pending{
			cert: c, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), key: keyPEM,
			oldCert: oldPEM, oldK: oldKeyPEM,
			issued: Issued{Path: certPath, NotAfter: tmpl.NotAfter, IPs: tmpl.IPAddresses, DNSNames: tmpl.DNSNames},
		})
	}

	var issued []Issued
	for _, p := range out {
		backup := filepath.Join(req.BackupDir, p.cert.Name+".crt")
		// A backup from an earlier attempt of the same operation holds the
		// original files: never overwrite it with already re-issued ones.
		if _, err := os.Stat(backup); errors.Is(err, os.ErrNotExist) {
			if err := atomicfile.Write(filepath.Join(req.BackupDir, p.cert.Name+".key"), p.oldK, 0o600); err != nil {
				return issued, fmt.Errorf("backing up: %w", err)
			}
			if err := atomicfile.Write(backup, p.oldCert, 0o644); err != nil {
				return issued, fmt.Errorf("backing up: %w", err)
			}
		}
		p.issued.BackupPath = backup
		if err := atomicfile.Write(filepath.Join(req.PKIDir, p.cert.Name+".key"), p.key, 0o600); err != nil {
			return issued, err
		}
		if err := atomicfile.Write(p.issued.Path, p.certPEM, 0o644); err != nil {
			return issued, err
		}
		issued = append(issued, p.issued)
	}
	return issued, nil
}

func parseIPs(in []string) ([]net.IP, error) {
	out := make([]net.IP, 0, len(in))
	for _, s := range in {
		ip := net.ParseIP(s)
		if ip == nil {
			return nil, fmt.Errorf("%w: %q is not an IP address", ErrInvalidArgument, s)
		}
		out = append(out, ip)
	}
	return out, nil
}

func mergeIPs(existing []net.IP, drop net.IP, add []net.IP) []net.IP {
	var out []net.IP
	has := func(ip net.IP) bool { return slices.ContainsFunc(out, ip.Equal) }
	for _, ip := range existing {
		if drop != nil && ip.Equal(drop) {
			continue
		}
		if !has(ip) {
			out = append(out, ip)
		}
	}
	for _, ip := range add {
		if !has(ip) {
			out = append(out, ip)
		}
	}
	return out
}

func mergeStrings(existing, add []string) []string {
	out := slices.Clone(existing)
	for _, s := range add {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

func parseCert(data []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(block.Bytes)
}

func loadCA(pkiDir, name string) (*x509.Certificate, crypto.Signer, error) {
	certPEM, err := os.ReadFile(filepath.Join(pkiDir, name+".crt"))
	if err != nil {
		return nil, nil, fmt.Errorf("reading CA %s: %w", name, err)
	}
	cert, err := parseCert(certPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("CA %s: %w", name, err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(pkiDir, name+".key"))
	if err != nil {
		return nil, nil, fmt.Errorf("reading CA key %s (an external CA cannot re-issue on the node): %w", name, err)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("CA key %s: %w", name, err)
	}
	return cert, key, nil
}

func parseKey(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM key")
	}
	switch block.Type {
	case "RSA PRIVATE KEY":
		return x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		return x509.ParseECPrivateKey(block.Bytes)
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, err
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("unsupported key %T", k)
		}
		return s, nil
	}
	return nil, fmt.Errorf("unsupported PEM block %q", block.Type)
}

// newKeyLike generates a key of the same algorithm and size as pub, as
// kubeadm configured it (RSA-2048 by default, ECDSA when asked).
func newKeyLike(pub any) (crypto.Signer, error) {
	switch p := pub.(type) {
	case *rsa.PublicKey:
		return rsa.GenerateKey(rand.Reader, p.N.BitLen())
	case *ecdsa.PublicKey:
		return ecdsa.GenerateKey(p.Curve, rand.Reader)
	}
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

// encodeKey writes keys as kubeadm does: PKCS#1 for RSA, SEC 1 for ECDSA.
func encodeKey(k crypto.Signer) ([]byte, error) {
	switch key := k.(type) {
	case *rsa.PrivateKey:
		return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), nil
	case *ecdsa.PrivateKey:
		der, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return nil, err
		}
		return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
	}
	return nil, fmt.Errorf("unsupported key %T", k)
}

func randomSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 63))
	if err != nil {
		panic(err)
	}
	return n
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
