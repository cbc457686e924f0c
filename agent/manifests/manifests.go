// Package manifests rewrites kubeadm's etcd and kube-apiserver static-pod
// manifests for a node's new address and etcd membership, and retags the
// control-plane images for a Kubernetes version. Manifests are
// parsed into k8s.io/api types and written back with sigs.k8s.io/yaml, the
// same serialization kubeadm uses, so everything not rewritten stays
// byte-for-byte as kubeadm wrote it. The package owns the manifest files it
// is given and nothing else.
package manifests

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/triad-k8s/triad/agent/atomicfile"
)

// ErrInvalidArgument marks malformed input; nothing was written.
var ErrInvalidArgument = errors.New("invalid argument")

// kubeadm's annotations that carry the advertised endpoints.
const (
	annotationEtcdClientURLs  = "kubeadm.kubernetes.io/etcd.advertise-client-urls"
	annotationAPIServerAdvert = "kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint"
)

// Etcd is the new identity of a node's etcd member.
type Etcd struct {
	Name                 string
	AdvertiseAddress     string // the node's new IP
	PeerPort, ClientPort int    // 2380 and 2379 when zero
	InitialCluster       string
	InitialClusterState  string // "new" or "existing"
	InitialClusterToken  string // empty leaves the flag as it is
}

// APIServer is the new identity of a node's kube-apiserver.
type APIServer struct {
	AdvertiseAddress string
	EtcdServers      []string
	// ShutdownDelay, when positive, sets --shutdown-delay-duration and
	// --shutdown-send-retry-after=false: the graceful shutdown of a server
	// behind a load balancer (GOAWAY, not 429 Retry-After: 5).
	ShutdownDelay time.Duration
}

// Pod is a parsed manifest plus the bytes it came from.
type Pod struct {
	Path     string
	Original []byte
	Pod      corev1.Pod
}

// Read parses a manifest.
func Read(path string) (*Pod, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	p := &Pod{Path: path, Original: data}
	if err := yaml.UnmarshalStrict(data, &p.Pod); err != nil {
		return nil, fmt.Errorf("parsing %s: %w", path, err)
	}
	if len(p.Pod.Spec.Containers) == 0 {
		return nil, fmt.Errorf("%s has no container", path)
	}
	return p, nil
}

// Render serializes the pod as kubeadm does.
func (p *Pod) Render() ([]byte, error) { return yaml.Marshal(&p.Pod) }

// Write renders the pod and replaces the file atomically if it changed. It
// reports whether it wrote.
func (p *Pod) Write() (bool, error) {
	data, err := p.Render()
	if err != nil {
		return false, err
	}
	if bytes.Equal(data, p.Original) {
		return false, nil
	}
	return true, atomicfile.Write(p.Path, data, 0o600)
}

// Flag returns the value of --name=value in the first container's command.
func (p *Pod) Flag(name string) (string, bool) {
	for _, a := range p.Pod.Spec.Containers[0].Command {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// SetFlag sets --name=value. A new flag goes where kubeadm would have put
// it: kubeadm writes flags sorted by name.
func (p *Pod) SetFlag(name, value string) {
	c := &p.Pod.Spec.Containers[0]
	flag := "--" + name + "=" + value
	at := len(c.Command)
	for i, a := range c.Command {
		if strings.HasPrefix(a, "--"+name+"=") {
			c.Command[i] = flag
			return
		}
		if i > 0 && at == len(c.Command) && strings.HasPrefix(a, "--") && flagName(a) > name {
			at = i
		}
	}
	c.Command = slices.Insert(c.Command, at, flag)
}

func flagName(arg string) string {
	name, _, _ := strings.Cut(strings.TrimPrefix(arg, "--"), "=")
	return name
}

// rewriteProbeHosts moves every HTTP probe that pointed at from to to.
func (p *Pod) rewriteProbeHosts(from, to string) {
	c := &p.Pod.Spec.Containers[0]
	for _, probe := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
		if probe != nil && probe.HTTPGet != nil && probe.HTTPGet.Host == from {
			probe.HTTPGet.Host = to
		}
	}
}

func hostPort(ip string, port int) string { return net.JoinHostPort(ip, fmt.Sprint(port)) }

// RewriteEtcd points the etcd manifest at the member's new identity.
// Listen URLs keep loopback; advertised URLs carry only the new address.
func RewriteEtcd(p *Pod, e Etcd) error {
	if net.ParseIP(e.AdvertiseAddress) == nil {
		return fmt.Errorf("%w: advertise address %q is not an IP", ErrInvalidArgument, e.AdvertiseAddress)
	}
	if e.Name == "" || e.InitialCluster == "" {
		return fmt.Errorf("%w: member name and initial cluster are required", ErrInvalidArgument)
	}
	if e.InitialClusterState != "new" && e.InitialClusterState != "existing" {
		return fmt.Errorf("%w: initial cluster state %q (want new or existing)", ErrInvalidArgument, e.InitialClusterState)
	}
	if e.PeerPort == 0 {
		e.PeerPort = 2380
	}
	if e.ClientPort == 0 {
		e.ClientPort = 2379
	}
	old, _ := p.Flag("advertise-client-urls")
	client := "https://" + hostPort(e.AdvertiseAddress, e.ClientPort)
	peer := "https://" + hostPort(e.AdvertiseAddress, e.PeerPort)
	p.SetFlag("name", e.Name)
	p.SetFlag("advertise-client-urls", client)
	p.SetFlag("initial-advertise-peer-urls", peer)
	p.SetFlag("listen-client-urls", "https://"+hostPort("127.0.0.1", e.ClientPort)+","+client)
	p.SetFlag("listen-peer-urls", peer)
	p.SetFlag("initial-cluster", e.InitialCluster)
	if e.InitialClusterState == "existing" {
		p.SetFlag("initial-cluster-state", "existing")
	} else if _, ok := p.Flag("initial-cluster-state"); ok {
		p.SetFlag("initial-cluster-state", "new")
	}
	if e.InitialClusterToken != "" {
		p.SetFlag("initial-cluster-token", e.InitialClusterToken)
	}
	if p.Pod.Annotations != nil {
		if _, ok := p.Pod.Annotations[annotationEtcdClientURLs]; ok {
			p.Pod.Annotations[annotationEtcdClientURLs] = client
		}
	}
	if oldHost := urlHost(old); oldHost != "" {
		p.rewriteProbeHosts(oldHost, e.AdvertiseAddress)
	}
	return nil
}

// RewriteAPIServer points the kube-apiserver manifest at the node's new
// address and the new etcd members.
func RewriteAPIServer(p *Pod, a APIServer) error {
	if net.ParseIP(a.AdvertiseAddress) == nil {
		return fmt.Errorf("%w: advertise address %q is not an IP", ErrInvalidArgument, a.AdvertiseAddress)
	}
	if len(a.EtcdServers) == 0 {
		return fmt.Errorf("%w: etcd servers are required", ErrInvalidArgument)
	}
	if a.ShutdownDelay < 0 {
		return fmt.Errorf("%w: shutdown delay %s is negative", ErrInvalidArgument, a.ShutdownDelay)
	}
	if a.ShutdownDelay > 0 {
		p.SetFlag("shutdown-delay-duration", a.ShutdownDelay.String())
		p.SetFlag("shutdown-send-retry-after", "false")
		// Without it, open watches keep the stopping server from exiting
		// until its kubelet kills it 30 s later.
		p.SetFlag("shutdown-watch-termination-grace-period", a.ShutdownDelay.String())
	}
	old, _ := p.Flag("advertise-address")
	p.SetFlag("advertise-address", a.AdvertiseAddress)
	p.SetFlag("etcd-servers", strings.Join(a.EtcdServers, ","))
	if v, ok := p.Pod.Annotations[annotationAPIServerAdvert]; ok {
		port := "6443"
		if _, pt, err := net.SplitHostPort(v); err == nil {
			port = pt
		}
		p.Pod.Annotations[annotationAPIServerAdvert] = net.JoinHostPort(a.AdvertiseAddress, port)
	}
	if old != "" {
		p.rewriteProbeHosts(old, a.AdvertiseAddress)
		// A node that binds its own address (rather than 0.0.0.0) must bind
		// the new one.
		if bind, ok := p.Flag("bind-address"); ok && bind == old {
			p.SetFlag("bind-address", a.AdvertiseAddress)
		}
	}
	return nil
}

// AdvertiseAddress returns the kube-apiserver manifest's advertise address.
func AdvertiseAddress(path string) (string, error) {
	p, err := Read(path)
	if err != nil {
		return "", err
	}
	v, _ := p.Flag("advertise-address")
	return v, nil
}

func urlHost(u string) string {
	first, _, _ := strings.Cut(u, ",")
	rest, ok := strings.CutPrefix(first, "https://")
	if !ok {
		rest, _ = strings.CutPrefix(first, "http://")
	}
	host, _, err := net.SplitHostPort(rest)
	if err != nil {
		return ""
	}
	return host
}

// ImageTag is the tag Kubernetes release images carry for version: "+"
// (build metadata) is not allowed in an image tag and becomes "_".
func ImageTag(version string) string { return strings.ReplaceAll(version, "+", "_") }

// SetVersion retags the pod's first container image to the Kubernetes
// version (registry.k8s.io/kube-apiserver:v1.36.3 →
// registry.k8s.io/kube-apiserver:<ImageTag(version)>). A digest-pinned or
// untagged image is refused: there is no tag to change.
func SetVersion(p *Pod, version string) error {
	if !strings.HasPrefix(version, "v") || strings.ContainsAny(version, " /:@") {
		return fmt.Errorf("%w: Kubernetes version %q (want v<major>.<minor>.<patch>[+build])", ErrInvalidArgument, version)
	}
	c := &p.Pod.Spec.Containers[0]
	if strings.Contains(c.Image, "@") {
		return fmt.Errorf("%w: %s pins image %s by digest; retag it by hand", ErrInvalidArgument, p.Path, c.Image)
	}
	slash := strings.LastIndex(c.Image, "/")
	colon := strings.LastIndex(c.Image, ":")
	if colon <= slash {
		return fmt.Errorf("%w: %s image %q has no tag", ErrInvalidArgument, p.Path, c.Image)
	}
	c.Image = c.Image[:colon+1] + ImageTag(version)
	return nil
}
