package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/triad-k8s/triad/coordinator/config"
)

func writeFiles(t *testing.T, dir string) {
	t.Helper()
	for _, f := range []string{"plugin", "c.crt", "c.key", "ca.crt", "admin.conf"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

const valid = `apiVersion: triad.dev/v1alpha1
kind: Cluster
name: prod-eu1
cloud:
  plugin: plugin
  config: {region: eu-west-1}
controlPlane:
  instance: i-0abc
  zones: [a, b, c]
  privateAddress: 10.0.0.10
  publicAddress: 52.1.2.3
agent:
  tls: {cert: c.crt, key: c.key, ca: ca.crt}
kubeconfig: admin.conf
`

func TestParseResolvesPathsAndDefaults(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir)
	c, err := config.Parse([]byte(valid), dir)
	if err != nil {
		t.Fatal(err)
	}
	if c.Cloud.Plugin != filepath.Join(dir, "plugin") || c.Kubeconfig != filepath.Join(dir, "admin.conf") {
		t.Errorf("paths not resolved against the file's directory: %+v", c)
	}
	if c.Agent.Port != 9443 || c.Agent.GatePort != 9444 || c.ControlPlane.APIServerPort != 6443 {
		t.Errorf("defaults: %+v", c)
	}
	if !strings.HasSuffix(c.StateDir, filepath.Join("triad", "clusters", "prod-eu1")) {
		t.Errorf("state dir %s", c.StateDir)
	}
	if string(c.Cloud.Config) != `{"region":"eu-west-1"}` {
		t.Errorf("plugin config %s", c.Cloud.Config)
	}
	// Written and read back, it is the same cluster.
	path := filepath.Join(dir, "out.yaml")
	if err := c.Write(path); err != nil {
		t.Fatal(err)
	}
	back, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if back.Name != c.Name || back.ControlPlane.Instance != c.ControlPlane.Instance || back.StateDir != c.StateDir {
		t.Errorf("round trip: %+v", back)
	}
}

func TestInvalidConfigsNameTheField(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir)
	cases := map[string]struct{ from, to, want string }{
		"two zones":        {"zones: [a, b, c]", "zones: [a, b]", "controlPlane.zones: 2 zones given; an HA control plane needs exactly 3 distinct zones"},
		"repeated zone":    {"zones: [a, b, c]", "zones: [a, b, b]", `controlPlane.zones[2]: "b" listed twice`},
		"unknown field":    {"kubeconfig:", "kubeconfg:", `unknown field "kubeconfg"`},
		"wrong version":    {"triad.dev/v1alpha1", "triad.dev/v9", `apiVersion: "triad.dev/v9" is not supported`},
		"no instance":      {"instance: i-0abc", "instance: ''", "controlPlane.instance: required"},
		"same addresses":   {"publicAddress: 52.1.2.3", "publicAddress: 10.0.0.10", "controlPlane.publicAddress: same as privateAddress"},
		"missing cert":     {"cert: c.crt", "cert: nope.crt", "agent.tls.cert: stat"},
		"bad cluster name": {"name: prod-eu1", "name: Prod_EU", "name:"},
		"bad endpoint":     {"agent:\n", "agent:\n  endpoint: nohost\n", "agent.endpoint:"},
		"env with a value": {"plugin: plugin\n", "plugin: plugin\n  env: [AWS_PROFILE=prod]\n", `cloud.env[0]: "AWS_PROFILE=prod" is not an environment variable name`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			doc := strings.Replace(valid, tc.from, tc.to, 1)
			if doc == valid {
				t.Fatalf("edit %q did not apply", tc.from)
			}
			_, err := config.Parse([]byte(doc), dir)
			if !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestPluginEnvPassesOnlyNamedVariablesThatAreSet(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir)
	doc := strings.Replace(valid, "plugin: plugin\n", "plugin: plugin\n  env: [TRIAD_TEST_PROFILE, TRIAD_TEST_UNSET]\n", 1)
	c, err := config.Parse([]byte(doc), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("TRIAD_TEST_PROFILE", "prod")
	t.Setenv("TRIAD_TEST_OTHER", "secret")
	os.Unsetenv("TRIAD_TEST_UNSET")
	if got := c.PluginEnv(); len(got) != 1 || got[0] != "TRIAD_TEST_PROFILE=prod" {
		t.Fatalf("PluginEnv = %q, want only TRIAD_TEST_PROFILE=prod", got)
	}
}
