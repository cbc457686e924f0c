// Package pki is triad's own certificate authority: it creates the CA that
// secures coordinator ↔ agent traffic and issues the certificates of agents
// (one per cluster, shared by all of its VMs), coordinators and read-only
// observers. It owns the on-disk layout of a PKI directory and never touches
// a Kubernetes node's PKI (that is the agent's job).
//
// Layout of a PKI directory:
//
//	ca.crt, ca.key                          the CA
//	agents/<cluster>.crt, .key              agent serving certificate
//	coordinators/<name>.crt, .key           coordinator client certificate
//	observers/<name>.crt, .key              observer client certificate
//
// Keys are ECDSA P-256, PKCS#8 PEM, mode 0600. Nothing is ever overwritten:
// issuing an existing name fails unless the caller asks to replace it.
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/triad-k8s/triad/agent/atomicfile"
	"github.com/triad-k8s/triad/agent/auth"
)

// Default validity periods.
const (
	DefaultCAValidity   = 10 * 365 * 24 * time.Hour
	DefaultLeafValidity = 365 * 24 * time.Hour
)

// ErrExists is returned when a file would be overwritten.
var ErrExists = atomicfile.ErrExists

// Dir is a PKI directory.
type Dir struct {
	Path string
}

// Issued describes a certificate written to disk.
type Issued struct {
	Role     auth.Role `json:"role"`
	Name     string    `json:"name"`
	CertFile string    `json:"certFile"`
	KeyFile  string    `json:"keyFile"`
	CAFile   string    `json:"caFile"`
	// DNSNames are the certificate's DNS SANs.
	DNSNames []string `json:"dnsNames,omitempty"`
	// NotAfter is the certificate's expiry.
	NotAfter time.Time `json:"notAfter"`
	// SHA256 is the fingerprint of the DER certificate, in hex.
	SHA256 string `json:"sha256"`
}

// CAFile is the path of the CA certificate.
func (d Dir) CAFile() string { return filepath.Join(d.Path, "ca.crt") }

// CAKeyFile is the path of the CA key.
func (d Dir) CAKeyFile() string { return filepath.Join(d.Path, "ca.key") }

// Init creates the CA. It refuses to replace an existing CA, because every
// certificate issued from it would stop working.
func (d Dir) Init(commonName string, validity time.Duration) (Issued, error) {
	if commonName == "" {
		commonName = "triad-ca"
	}
	if validity <= 0 {
		validity = DefaultCAValidity
	}
	for _, f := range []string{d.CAFile(), d.CAKeyFile()} {
		if _, err := os.Stat(f); err == nil {
			return Issued{}, fmt.Errorf("creating CA in %s: %s %w; remove it only if no cluster uses it", d.Path, f, ErrExists)
		}
	}
	if err := os.MkdirAll(d.Path, 0o700); err != nil {
		return Issued{}, fmt.Errorf("creating PKI directory: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Issued{}, fmt.Errorf("generating CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"triad"}},
		NotBefore:             now.Add(-5 * time.Minute),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return Issued{}, fmt.Errorf("signing CA certificate: %w", err)
	}
	if err := writeKeyPair(d.CAFile(), d.CAKeyFile(), der, key, false); err != nil {
		return Issued{}, err
	}
	return issuedFor("", commonName, d.CAFile(), d.CAKeyFile(), d.CAFile(), der)
}

// IssueRequest asks for one leaf certificate.
type IssueRequest struct {
	Role auth.Role
	// Name is the cluster for an agent, a free name for the other roles
	// (e.g. "ci" or a user name). Lower-case RFC 1123 label.
	Name string
	// Validity of the certificate; DefaultLeafValidity when zero.
	Validity time.Duration
	// Replace allows overwriting an existing certificate of the same name.
	Replace bool
}

// Issue issues and writes a leaf certificate signed by the CA.
func (d Dir) Issue(req IssueRequest) (Issued, error) {
	if !req.Role.Valid() {
		return Issued{}, fmt.Errorf("unknown role %q (want one of %v)", req.Role, auth.Roles)
	}
	if err := auth.ValidateClusterName(req.Name); err != nil {
		return Issued{}, fmt.Errorf("invalid %s name: %w", req.Role, err)
	}
	if req.Validity <= 0 {
		req.Validity = DefaultLeafValidity
	}
	caCert, caKey, err := d.LoadCA()
	if err != nil {
		return Issued{}, err
	}
	certFile, keyFile := d.LeafFiles(req.Role, req.Name)
	if !req.Replace {
		for _, f := range []string{certFile, keyFile} {
			if _, err := os.Stat(f); err == nil {
				return Issued{}, fmt.Errorf("issuing %s certificate %q: %s %w (use --replace to re-issue)", req.Role, req.Name, f, ErrExists)
			}
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Issued{}, fmt.Errorf("generating key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject: pkix.Name{
			CommonName:         fmt.Sprintf("triad-%s:%s", req.Role, req.Name),
			Organization:       []string{"triad"},
			OrganizationalUnit: []string{string(req.Role)},
		},
		NotBefore:             now.Add(-5 * time.Minute),
		NotAfter:              minTime(now.Add(req.Validity), caCert.NotAfter),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{auth.RoleURI(req.Role)},
	}
	if req.Role == auth.RoleAgent {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames = []string{auth.AgentServerName(req.Name)}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return Issued{}, fmt.Errorf("signing %s certificate: %w", req.Role, err)
	}
	if err := os.MkdirAll(filepath.Dir(certFile), 0o700); err != nil {
		return Issued{}, fmt.Errorf("creating directory for %s: %w", certFile, err)
	}
	if err := writeKeyPair(certFile, keyFile, der, key, req.Replace); err != nil {
		return Issued{}, err
	}
	return issuedFor(req.Role, req.Name, certFile, keyFile, d.CAFile(), der)
}

// LeafFiles returns where the certificate and key of a role and name live.
func (d Dir) LeafFiles(role auth.Role, name string) (certFile, keyFile string) {
	base := filepath.Join(d.Path, string(role)+"s", name)
	return base + ".crt", base + ".key"
}

// LoadCA reads the CA certificate and key.
func (d Dir) LoadCA() (*x509.Certificate, *ecdsa.PrivateKey, error) {
	cert, err := ReadCertificate(d.CAFile())
	if err != nil {
		return nil, nil, fmt.Errorf("loading CA (run 'triad pki init' first?): %w", err)
	}
	keyPEM, err := os.ReadFile(d.CAKeyFile())
	if err != nil {
		return nil, nil, fmt.Errorf("loading CA key: %w", err)
	}
	block, _ := pem.Decode(keyPEM)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, nil, fmt.Errorf("loading CA key %s: no PKCS#8 PEM block", d.CAKeyFile())
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing CA key %s: %w", d.CAKeyFile(), err)
	}
	key, ok := parsed.(*ecdsa.PrivateKey)
	if !ok {
		return nil, nil, fmt.Errorf("CA key %s is %T, want ECDSA", d.CAKeyFile(), parsed)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, nil, fmt.Errorf("CA key %s does not match certificate %s", d.CAKeyFile(), d.CAFile())
	}
	return cert, key, nil
}

// ReadCertificate reads the first certificate of a PEM file.
func ReadCertificate(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cert, nil
}

func issuedFor(role auth.Role, name, certFile, keyFile, caFile string, der []byte) (Issued, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return Issued{}, err
	}
	sum := sha256.Sum256(der)
	return Issued{
		Role: role, Name: name,
		CertFile: certFile, KeyFile: keyFile, CAFile: caFile,
		DNSNames: cert.DNSNames, NotAfter: cert.NotAfter,
		SHA256: hex.EncodeToString(sum[:]),
	}, nil
}

// writeKeyPair writes the key first (0600) and the certificate second, each
// through a temporary file and a rename, so a crash never leaves a
// certificate without its key.
func writeKeyPair(certFile, keyFile string, der []byte, key *ecdsa.PrivateKey, replace bool) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encoding key: %w", err)
	}
	write := atomicfile.WriteNew
	if replace {
		write = atomicfile.Write
	}
	if err := write(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return write(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func randomSerial() *big.Int {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err))
	}
	return serial
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
