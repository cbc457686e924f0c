package pki_test

import (
	"crypto/x509"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/triad-k8s/triad/agent/auth"
	"github.com/triad-k8s/triad/coordinator/pki"
)

func newCA(t *testing.T) pki.Dir {
	t.Helper()
	d := pki.Dir{Path: t.TempDir()}
	if _, err := d.Init("", 0); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestIssuedCertificatesCarryTheirRoleAndVerifyAgainstTheCA(t *testing.T) {
	d := newCA(t)
	ca, err := pki.ReadCertificate(d.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	cases := []struct {
		role    auth.Role
		name    string
		usage   x509.ExtKeyUsage
		dnsName string
	}{
		{auth.RoleAgent, "prod-eu1", x509.ExtKeyUsageServerAuth, "agent.prod-eu1.triad.internal"},
		{auth.RoleCoordinator, "ci", x509.ExtKeyUsageClientAuth, ""},
		{auth.RoleObserver, "dash", x509.ExtKeyUsageClientAuth, ""},
	}
	for _, tc := range cases {
		t.Run(string(tc.role), func(t *testing.T) {
			iss, err := d.Issue(pki.IssueRequest{Role: tc.role, Name: tc.name})
			if err != nil {
				t.Fatal(err)
			}
			cert, err := pki.ReadCertificate(iss.CertFile)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: tc.dnsName, KeyUsages: []x509.ExtKeyUsage{tc.usage}}); err != nil {
				t.Fatalf("verify: %v", err)
			}
			role, err := auth.RoleFromCertificate(cert)
			if err != nil || role != tc.role {
				t.Fatalf("role = %q, %v; want %q", role, err, tc.role)
			}
			st, err := os.Stat(iss.KeyFile)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != 0o600 {
				t.Errorf("key mode %v, want 0600", st.Mode().Perm())
			}
		})
	}
}

func TestNothingIsOverwrittenUnlessAsked(t *testing.T) {
	d := newCA(t)
	caBefore, err := os.ReadFile(d.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Init("", 0); !errors.Is(err, pki.ErrExists) {
		t.Fatalf("second Init: %v, want ErrExists", err)
	}
	if caAfter, _ := os.ReadFile(d.CAFile()); string(caAfter) != string(caBefore) {
		t.Fatal("second Init changed the CA")
	}

	first, err := d.Issue(pki.IssueRequest{Role: auth.RoleCoordinator, Name: "ci"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Issue(pki.IssueRequest{Role: auth.RoleCoordinator, Name: "ci"}); !errors.Is(err, pki.ErrExists) {
		t.Fatalf("second Issue: %v, want ErrExists", err)
	}
	second, err := d.Issue(pki.IssueRequest{Role: auth.RoleCoordinator, Name: "ci", Replace: true})
	if err != nil {
		t.Fatal(err)
	}
	if first.SHA256 == second.SHA256 {
		t.Error("Replace did not issue a new certificate")
	}
}

func TestBadIssueRequestsAreRefused(t *testing.T) {
	d := newCA(t)
	cases := []struct {
		name string
		req  pki.IssueRequest
	}{
		{"an unknown role", pki.IssueRequest{Role: "admin", Name: "x"}},
		{"a name with a path", pki.IssueRequest{Role: auth.RoleAgent, Name: "../../etc"}},
		{"an empty name", pki.IssueRequest{Role: auth.RoleObserver}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := d.Issue(tc.req); err == nil {
				t.Fatal("issued")
			}
		})
	}
	if _, err := (pki.Dir{Path: t.TempDir()}).Issue(pki.IssueRequest{Role: auth.RoleAgent, Name: "x"}); err == nil {
		t.Fatal("issued without a CA")
	}
}

func TestLeafNeverOutlivesTheCA(t *testing.T) {
	d := pki.Dir{Path: t.TempDir()}
	if _, err := d.Init("", 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	iss, err := d.Issue(pki.IssueRequest{Role: auth.RoleCoordinator, Name: "ci", Validity: 48 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := pki.ReadCertificate(d.CAFile())
	if iss.NotAfter.After(ca.NotAfter) {
		t.Errorf("leaf expires %v after the CA %v", iss.NotAfter, ca.NotAfter)
	}
}
