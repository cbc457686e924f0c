package controlplane

import (
	"fmt"
	"maps"
	"net"
	"net/url"
	"slices"
	"strings"

	"github.com/triad-k8s/triad/agent/manifests"
	agentv1 "github.com/triad-k8s/triad/proto/triad/agent/v1"
)

// Kubeconfigs: every kubeconfig kubeadm wrote on a control-plane node must
// name an API server that is still there once the operation is over.

// KubeconfigPolicy says which API servers the kubeconfigs kubeadm wrote on
// a control-plane node may name. Only hosts are compared: a port is kept
// as written (the load balancers listen on the port the original served).
type KubeconfigPolicy struct {
	// Own is the node's own address. The local kubeconfigs
	// (controller-manager.conf, scheduler.conf) must name it, as kubeadm
	// writes them on an HA node; the others may. Empty (the original
	// before the migration) holds the local kubeconfigs to Live like the
	// others.
	Own string
	// Live are the IP addresses that outlive the operation: the load
	// balancers' (the original's static addresses). Every kubeconfig may
	// name one of them, Own, ControlPlaneEndpoint's host or a loopback
	// address; a DNS name is accepted unchecked.
	Live []string
	// ControlPlaneEndpoint is kubeadm's controlPlaneEndpoint (host or
	// host:port, "" if none): the operator chose it, it stays.
	ControlPlaneEndpoint string
	// Gone are addresses known to go, each with whose it is, for the
	// error: they are never live, loopback or not.
	Gone map[string]string
	// Want are the files the node must report: the original's, which
	// every clone carries. One missing means the check saw less than it
	// should have.
	Want []string
}

// KubeconfigCheck is what CheckKubeconfigs found.
type KubeconfigCheck struct {
	// Servers maps each file reported to the server URLs it names.
	Servers map[string][]string
	// Unresolved are the DNS names accepted: triad cannot tell where they
	// resolve.
	Unresolved []string
	// Violations each name a file, its server and why it will not answer.
	Violations []string
}

// String summarises the check on one line: which files name which server.
func (c KubeconfigCheck) String() string {
	if len(c.Servers) == 0 {
		return "no kubeconfigs reported"
	}
	byServer := map[string][]string{}
	for _, file := range slices.Sorted(maps.Keys(c.Servers)) {
		for _, server := range c.Servers[file] {
			byServer[server] = append(byServer[server], file)
		}
	}
	var parts []string
	for _, server := range slices.Sorted(maps.Keys(byServer)) {
		parts = append(parts, strings.Join(byServer[server], ", ")+" → "+server)
	}
	out := strings.Join(parts, "; ")
	if len(c.Unresolved) > 0 {
		out += " (DNS names not checked: " + strings.Join(c.Unresolved, ", ") + ")"
	}
	return out
}

// CheckKubeconfigs checks that every server the kubeconfigs name is live
// under p. It returns every violation at once, in the check and as one
// error; a file the agent could not read is one.
func CheckKubeconfigs(kubeconfigs []*agentv1.Kubeconfig, p KubeconfigPolicy) (KubeconfigCheck, error) {
	c := KubeconfigCheck{Servers: map[string][]string{}}
	own := net.ParseIP(p.Own)
	var liveNames []string
	var live []net.IP
	for _, a := range append(slices.Clone(p.Live), endpointHost(p.ControlPlaneEndpoint), p.Own) {
		if ip := net.ParseIP(a); ip != nil && !slices.ContainsFunc(live, ip.Equal) {
			live, liveNames = append(live, ip), append(liveNames, a)
		}
	}
	isLive := func(ip net.IP) bool { return slices.ContainsFunc(live, ip.Equal) }
	gone := func(ip net.IP) (string, bool) {
		for a, whose := range p.Gone {
			if ip.Equal(net.ParseIP(a)) {
				return whose, true
			}
		}
		return "", false
	}
	liveList := strings.Join(append(liveNames, "loopback"), ", ")
	for _, k := range kubeconfigs {
		file := k.GetName()
		if k.GetError() != "" {
			c.Violations = append(c.Violations, fmt.Sprintf("%s: unreadable, so where it points is unknown: %s", file, k.GetError()))
			continue
		}
		c.Servers[file] = k.GetServers()
		if len(k.GetServers()) == 0 {
			c.Violations = append(c.Violations, fmt.Sprintf("%s names no API server", file))
		}
		local := own != nil && slices.Contains(manifests.LocalKubeconfigs, file)
		for _, server := range k.GetServers() {
			u, err := url.Parse(server)
			if err != nil || u.Hostname() == "" {
				c.Violations = append(c.Violations, fmt.Sprintf("%s: server %q is not a URL", file, server))
				continue
			}
			host := u.Hostname()
			ip := net.ParseIP(host)
			switch {
			case local && !own.Equal(ip):
				c.Violations = append(c.Violations, fmt.Sprintf("%s names %s, not the node's own kube-apiserver (%s), where kubeadm points it on an HA node", file, server, p.Own))
			case local:
			case ip == nil && strings.EqualFold(host, "localhost"):
			case ip == nil:
				if !slices.Contains(c.Unresolved, host) {
					c.Unresolved = append(c.Unresolved, host)
				}
			default:
				if whose, ok := gone(ip); ok {
					c.Violations = append(c.Violations, fmt.Sprintf("%s names %s: %s is %s", file, server, host, whose))
				} else if !isLive(ip) && !ip.IsLoopback() {
					c.Violations = append(c.Violations, fmt.Sprintf("%s names %s: %s is none of the addresses that outlive the operation (%s)", file, server, host, liveList))
				}
			}
		}
	}
	for _, file := range p.Want {
		if !slices.ContainsFunc(kubeconfigs, func(k *agentv1.Kubeconfig) bool { return k.GetName() == file }) {
			c.Violations = append(c.Violations, fmt.Sprintf("%s is missing: the original had it", file))
		}
	}
	slices.Sort(c.Unresolved)
	if len(c.Violations) > 0 {
		return c, fmt.Errorf("%d kubeconfig problem(s):\n  %s", len(c.Violations), strings.Join(c.Violations, "\n  "))
	}
	return c, nil
}

// endpointHost is the host of a controlPlaneEndpoint (host or host:port).
func endpointHost(endpoint string) string {
	if host, _, err := net.SplitHostPort(endpoint); err == nil {
		return host
	}
	return strings.TrimSuffix(strings.TrimPrefix(endpoint, "["), "]")
}
