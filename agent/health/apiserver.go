// Package health observes the node for the coordinator and the load
// balancers: the local kube-apiserver's /readyz and /livez, etcd health,
// static pods, the gate and free disk. It reads; it never changes the node.
package health

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// APIServer probes the local kube-apiserver over HTTPS, verifying its
// serving certificate against the cluster CA with the name "kubernetes",
// which kubeadm always puts in the certificate (unlike 127.0.0.1).
type APIServer struct {
	// URL is the apiserver's base URL, e.g. https://10.0.0.10:6443.
	URL    string
	client *http.Client
}

// NewAPIServer builds a probe. caFile is the cluster CA
// (/etc/kubernetes/pki/ca.crt); empty skips verification, for tests only.
func NewAPIServer(url, caFile string) (*APIServer, error) {
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: "kubernetes"}
	if caFile == "" {
		tlsCfg.InsecureSkipVerify = true //nolint:gosec // tests only, see doc
	} else {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("reading cluster CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("cluster CA %s holds no certificate", caFile)
		}
		tlsCfg.RootCAs = pool
	}
	return &APIServer{URL: url, client: &http.Client{
		Timeout:   3 * time.Second,
		Transport: &http.Transport{TLSClientConfig: tlsCfg, DisableKeepAlives: true},
	}}, nil
}

// Ready returns nil when /readyz answers 200.
func (a *APIServer) Ready(ctx context.Context) error { return a.check(ctx, "/readyz") }

// Live returns nil when /livez answers 200.
func (a *APIServer) Live(ctx context.Context) error { return a.check(ctx, "/livez") }

func (a *APIServer) check(ctx context.Context, path string) error {
	resp, err := a.get(ctx, path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("kube-apiserver %s: %s %s", path, resp.Status, body)
	}
	return nil
}

// Version returns the apiserver's gitVersion.
func (a *APIServer) Version(ctx context.Context) (string, error) {
	resp, err := a.get(ctx, "/version")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var v struct {
		GitVersion string `json:"gitVersion"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&v); err != nil {
		return "", fmt.Errorf("kube-apiserver /version: %w", err)
	}
	return v.GitVersion, nil
}

func (a *APIServer) get(ctx context.Context, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.URL+path, nil)
	if err != nil {
		return nil, err
	}
	return a.client.Do(req)
}
