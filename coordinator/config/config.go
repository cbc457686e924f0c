// Package config is triad's cluster configuration: one versioned YAML
// document per cluster that says which cloud plugin manages it, which
// instance and static addresses make up its single-node control plane,
// where the HA nodes go, how to reach its agents and how to check it
// through the Kubernetes API.
//
//	apiVersion: triad.dev/v1alpha1
//	kind: Cluster
//	name: prod-eu1
//	cloud:
//	  plugin: /usr/libexec/triad/triad-cloud-aws
//	  pluginSHA256: 3f1c…        # optional; refuses any other binary
//	  env: [AWS_PROFILE]          # passed through from triad's environment
//	  config: {region: eu-west-1} # handed to the plugin as JSON
//	controlPlane:
//	  instance: i-0abc
//	  zones: [eu-west-1a, eu-west-1b, eu-west-1c]
//	  privateAddress: 10.0.0.10   # id or IP, attached to the instance
//	  publicAddress: 52.1.2.3
//	agent:
//	  port: 9443
//	  gatePort: 9444
//	  tls: {cert: coordinator.crt, key: coordinator.key, ca: ca.crt}
//	kubeconfig: admin.conf
//	stateDir: /var/lib/triad/prod-eu1 # journal and etcd snapshots
//
// Relative paths are relative to the file's directory.
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"

	agentauth "github.com/triad-k8s/triad/agent/auth"
)

// APIVersion and Kind identify a cluster document.
const (
	APIVersion = "triad.dev/v1alpha1"
	Kind       = "Cluster"
)

// ErrInvalid wraps every validation error.
var ErrInvalid = errors.New("invalid cluster config")

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// PluginEnv returns NAME=value for each cloud.env variable set in
// triad's environment.
func (c *Cluster) PluginEnv() []string {
	var env []string
	for _, name := range c.Cloud.Env {
		if v, ok := os.LookupEnv(name); ok {
			env = append(env, name+"="+v)
		}
	}
	return env
}

// Cluster is one cluster's configuration.
type Cluster struct {
	APIVersion   string       `json:"apiVersion"`
	Kind         string       `json:"kind"`
	Name         string       `json:"name"`
	Cloud        Cloud        `json:"cloud"`
	ControlPlane ControlPlane `json:"controlPlane"`
	Agent        Agent        `json:"agent"`
	// Kubeconfig is an admin kubeconfig; triad reads nodes, leases and
	// object counts through it and writes one probe object.
	Kubeconfig string `json:"kubeconfig"`
	// StateDir holds the operation journal and etcd snapshots (0700; the
	// snapshots hold every Secret of the cluster). Default
	// $XDG_STATE_HOME/triad/clusters/<name>.
	StateDir string `json:"stateDir,omitempty"`
}

// Cloud names the plugin that manages the cluster's VMs.
type Cloud struct {
	Plugin       string `json:"plugin"`
	PluginSHA256 string `json:"pluginSHA256,omitempty"`
	// Env names environment variables passed from triad's environment to
	// the plugin's (credentials, profiles), which otherwise holds only
	// PATH, HOME, TMPDIR and XDG_*. Names only: values never go in the file.
	Env []string `json:"env,omitempty"`
	// Config is handed to the plugin, as JSON, in TRIAD_CLOUD_CONFIG.
	Config json.RawMessage `json:"config,omitempty"`
}

// ControlPlane is the single-node control plane and where its HA
// replacement goes.
type ControlPlane struct {
	// Instance is the cloud id of the control-plane VM.
	Instance string `json:"instance"`
	// Zones receive one HA node each; exactly three distinct zones.
	Zones []string `json:"zones"`
	// PrivateAddress and PublicAddress are the static addresses (id or IP)
	// clients use today; the load balancers take them over.
	PrivateAddress string `json:"privateAddress"`
	PublicAddress  string `json:"publicAddress"`
	// APIServerPort is kube-apiserver's port; default 6443.
	APIServerPort int `json:"apiServerPort,omitempty"`
	// Image boots the HA nodes; empty keeps the instance's image.
	Image string `json:"image,omitempty"`
}

// Agent says how to reach the triad-agents of the cluster.
type Agent struct {
	// Port of the agents' gRPC endpoint on each node's private IP; default 9443.
	Port int `json:"port,omitempty"`
	// GatePort is the agents' HTTPS gate, the load balancers' health
	// check; default 9444.
	GatePort int `json:"gatePort,omitempty"`
	// Endpoint overrides host:port of the single node's agent; default
	// its private address and Port.
	Endpoint string `json:"endpoint,omitempty"`
	TLS      TLS    `json:"tls"`
}

// TLS is the coordinator's certificate, key and triad's CA.
type TLS struct {
	Cert string `json:"cert"`
	Key  string `json:"key"`
	CA   string `json:"ca"`
}

// Load reads, defaults and validates a cluster config file.
func Load(path string) (*Cluster, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading cluster config: %w", err)
	}
	c, err := Parse(data, filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Parse decodes a cluster document strictly (unknown fields are errors),
// resolves relative paths against baseDir, fills defaults and validates.
func Parse(data []byte, baseDir string) (*Cluster, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	var c Cluster
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	for _, p := range []*string{&c.Cloud.Plugin, &c.Agent.TLS.Cert, &c.Agent.TLS.Key, &c.Agent.TLS.CA, &c.Kubeconfig, &c.StateDir} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(baseDir, *p)
		}
	}
	if c.ControlPlane.APIServerPort == 0 {
		c.ControlPlane.APIServerPort = 6443
	}
	if c.Agent.Port == 0 {
		c.Agent.Port = 9443
	}
	if c.Agent.GatePort == 0 {
		c.Agent.GatePort = 9444
	}
	if c.StateDir == "" && c.Name != "" {
		base := os.Getenv("XDG_STATE_HOME")
		if base == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return nil, fmt.Errorf("%w: no stateDir and no home directory", ErrInvalid)
			}
			base = filepath.Join(home, ".local", "state")
		}
		c.StateDir = filepath.Join(base, "triad", "clusters", c.Name)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Validate reports every problem of the document at once, each with the
// field it concerns.
func (c *Cluster) Validate() error {
	var problems []string
	bad := func(field, format string, args ...any) {
		problems = append(problems, field+": "+fmt.Sprintf(format, args...))
	}
	if c.APIVersion != APIVersion {
		bad("apiVersion", "%q is not supported (want %s)", c.APIVersion, APIVersion)
	}
	if c.Kind != Kind {
		bad("kind", "%q (want %s)", c.Kind, Kind)
	}
	if err := agentauth.ValidateClusterName(c.Name); err != nil {
		bad("name", "%v", err)
	}
	if c.Cloud.Plugin == "" {
		bad("cloud.plugin", "required (path of the cloud plugin binary)")
	}
	for i, name := range c.Cloud.Env {
		if !envName.MatchString(name) {
			bad(fmt.Sprintf("cloud.env[%d]", i), "%q is not an environment variable name (names only; values stay in the environment)", name)
		}
	}
	if len(c.Cloud.Config) > 0 && !json.Valid(c.Cloud.Config) {
		bad("cloud.config", "not valid JSON")
	}
	cp := c.ControlPlane
	if cp.Instance == "" {
		bad("controlPlane.instance", "required (cloud id of the single control-plane VM)")
	}
	seen := map[string]bool{}
	for i, z := range cp.Zones {
		if z == "" {
			bad(fmt.Sprintf("controlPlane.zones[%d]", i), "empty")
		}
		if seen[z] {
			bad(fmt.Sprintf("controlPlane.zones[%d]", i), "%q listed twice", z)
		}
		seen[z] = true
	}
	if len(cp.Zones) != 3 {
		bad("controlPlane.zones", "%d zones given; an HA control plane needs exactly 3 distinct zones, one per node", len(cp.Zones))
	}
	if cp.PrivateAddress == "" {
		bad("controlPlane.privateAddress", "required (the static private address clients and kubelets use)")
	}
	if cp.PublicAddress == "" {
		bad("controlPlane.publicAddress", "required (the static public address external clients use)")
	}
	if cp.PrivateAddress != "" && cp.PrivateAddress == cp.PublicAddress {
		bad("controlPlane.publicAddress", "same as privateAddress")
	}
	for field, port := range map[string]int{"controlPlane.apiServerPort": cp.APIServerPort, "agent.port": c.Agent.Port, "agent.gatePort": c.Agent.GatePort} {
		if port < 1 || port > 65535 {
			bad(field, "%d is not a TCP port", port)
		}
	}
	if c.Agent.Endpoint != "" {
		if _, _, err := net.SplitHostPort(c.Agent.Endpoint); err != nil {
			bad("agent.endpoint", "%v", err)
		}
	}
	for field, path := range map[string]string{"agent.tls.cert": c.Agent.TLS.Cert, "agent.tls.key": c.Agent.TLS.Key, "agent.tls.ca": c.Agent.TLS.CA, "kubeconfig": c.Kubeconfig, "cloud.plugin": c.Cloud.Plugin} {
		if path == "" {
			if field != "cloud.plugin" {
				bad(field, "required")
			}
			continue
		}
		if _, err := os.Stat(path); err != nil {
			bad(field, "%v", err)
		}
	}
	if len(problems) == 0 {
		return nil
	}
	slices.Sort(problems)
	return fmt.Errorf("%w:\n  %s", ErrInvalid, strings.Join(problems, "\n  "))
}

// TLSFiles is the agent TLS material as agentauth wants it.
func (c *Cluster) TLSFiles() agentauth.TLSFiles {
	return agentauth.TLSFiles{CertFile: c.Agent.TLS.Cert, KeyFile: c.Agent.TLS.Key, CAFile: c.Agent.TLS.CA}
}

// Write writes c as YAML (0600).
func (c *Cluster) Write(path string) error {
	js, err := json.Marshal(c)
	if err != nil {
		return err
	}
	y, err := yaml.JSONToYAML(js)
	if err != nil {
		return err
	}
	return os.WriteFile(path, y, 0o600)
}
