package staticpods

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// Manifest is a parsed static-pod manifest.
type Manifest struct {
	Path string
	Pod  corev1.Pod
}

// ReadManifest parses a static-pod manifest.
func ReadManifest(path string) (*Manifest, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m := &Manifest{Path: path}
	if err := yaml.UnmarshalStrict(data, &m.Pod); err != nil {
		return nil, fmt.Errorf("parsing manifest %s: %w", path, err)
	}
	return m, nil
}

// HealthURL derives the component's health endpoint from the first
// container's startup or liveness probe, as kubeadm writes them (an httpGet
// on the component's own port). ok is false when there is no HTTP probe.
func (m *Manifest) HealthURL() (string, bool) {
	if len(m.Pod.Spec.Containers) == 0 {
		return "", false
	}
	c := m.Pod.Spec.Containers[0]
	for _, p := range []*corev1.Probe{c.StartupProbe, c.LivenessProbe, c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil {
			continue
		}
		g := p.HTTPGet
		scheme := strings.ToLower(string(g.Scheme))
		if scheme == "" {
			scheme = "http"
		}
		host := g.Host
		if host == "" {
			host = "127.0.0.1"
		}
		port := g.Port.String()
		if g.Port.IntValue() == 0 {
			// A named port: look it up among the container's ports.
			for _, cp := range c.Ports {
				if cp.Name == g.Port.String() {
					port = strconv.Itoa(int(cp.ContainerPort))
				}
			}
		}
		path := g.Path
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		return scheme + "://" + net.JoinHostPort(host, port) + path, true
	}
	return "", false
}

// HTTPProber probes health URLs as the kubelet does: any 2xx or 3xx is
// healthy, and HTTPS certificates are not verified (the kubelet does not
// verify them either; the probe checks liveness, not identity).
type HTTPProber struct {
	// HostOverride replaces a loopback host in probe URLs; the local cloud
	// sets it to the VM's own address, which stands in for localhost.
	HostOverride string
	Client       *http.Client
}

// NewHTTPProber returns a prober with a 5s timeout.
func NewHTTPProber(hostOverride string) *HTTPProber {
	return &HTTPProber{HostOverride: hostOverride, Client: &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, //nolint:gosec // as the kubelet's probes
	}}
}

// Healthy implements Prober.
func (p *HTTPProber) Healthy(ctx context.Context, m *Manifest) error {
	raw, ok := m.HealthURL()
	if !ok {
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("health URL of %s: %w", m.Path, err)
	}
	if h := u.Hostname(); p.HostOverride != "" && (h == "localhost" || net.ParseIP(h).IsLoopback()) {
		u.Host = net.JoinHostPort(p.HostOverride, u.Port())
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	resp, err := p.Client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("%s answered %s", u, resp.Status)
	}
	return nil
}
