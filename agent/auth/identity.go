// Package auth decides who may call the agent. Callers are identified only by
// the client certificate they presented in the mutual-TLS handshake; the role
// is carried in the certificate as a URI SAN (triad://role/<role>) issued by
// triad's own CA (see coordinator/pki). This package owns the role names, the
// per-RPC policy and the gRPC interceptors that enforce it; it must not touch
// the node.
package auth

import (
	"crypto/x509"
	"fmt"
	"net/url"
	"strings"
)

// Role is what a certificate holder is allowed to do.
type Role string

const (
	// RoleCoordinator may call every RPC, including those that change the node.
	RoleCoordinator Role = "coordinator"
	// RoleObserver may only read health and status.
	RoleObserver Role = "observer"
	// RoleAgent identifies an agent's serving certificate; it may call nothing.
	RoleAgent Role = "agent"
)

// Roles lists every known role.
var Roles = []Role{RoleCoordinator, RoleObserver, RoleAgent}

// Valid reports whether r is a known role.
func (r Role) Valid() bool {
	for _, known := range Roles {
		if r == known {
			return true
		}
	}
	return false
}

// roleURIScheme and roleURIHost form the role SAN: triad://role/<role>.
const (
	roleURIScheme = "triad"
	roleURIHost   = "role"
)

// RoleURI returns the URI SAN that carries role r.
func RoleURI(r Role) *url.URL {
	return &url.URL{Scheme: roleURIScheme, Host: roleURIHost, Path: "/" + string(r)}
}

// RoleFromCertificate returns the single role carried by cert. A certificate
// with no role, an unknown role or more than one role has none: a certificate
// must never be ambiguous about what it grants.
func RoleFromCertificate(cert *x509.Certificate) (Role, error) {
	var found []Role
	for _, u := range cert.URIs {
		if u.Scheme != roleURIScheme || u.Host != roleURIHost {
			continue
		}
		r := Role(strings.TrimPrefix(u.Path, "/"))
		if !r.Valid() {
			return "", fmt.Errorf("certificate %q carries unknown role %q", cert.Subject.CommonName, r)
		}
		found = append(found, r)
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("certificate %q carries no triad role", cert.Subject.CommonName)
	case 1:
		return found[0], nil
	default:
		return "", fmt.Errorf("certificate %q carries %d triad roles; exactly one is allowed", cert.Subject.CommonName, len(found))
	}
}

// AgentServerName is the DNS identity in the serving certificate of every
// agent of a cluster. All agents of a cluster share it, so a VM cloned from a
// snapshot keeps a valid identity; the coordinator verifies the agent against
// this name rather than against its IP, which changes during a migration.
func AgentServerName(cluster string) string {
	return "agent." + cluster + ".triad.internal"
}

// ValidateClusterName checks that name can be used as a DNS label inside the
// agent's server name: 1 to 63 characters of [a-z0-9-], starting and ending
// with a letter or digit.
func ValidateClusterName(name string) error {
	if len(name) == 0 || len(name) > 63 {
		return fmt.Errorf("cluster name %q must be 1 to 63 characters long", name)
	}
	for i, c := range name {
		alnum := (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
		if alnum || (c == '-' && i != 0 && i != len(name)-1) {
			continue
		}
		return fmt.Errorf("cluster name %q must consist of lower-case letters, digits and inner '-' (RFC 1123 label)", name)
	}
	return nil
}
