package server_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/triad-k8s/triad/agent/server"
	agentv1 "github.com/triad-k8s/triad/proto/triad/agent/v1"
)

// kubeletConfOfTwoClusters is a kubelet.conf an operator extended with a
// second cluster: every cluster's server is reported, by cluster name.
const kubeletConfOfTwoClusters = `apiVersion: v1
kind: Config
clusters:
- cluster:
    server: https://10.0.0.9:6443
  name: z-extra
- cluster:
    server: https://127.0.0.40:6443
  name: kubernetes
contexts:
- context:
    cluster: kubernetes
    user: system:node:cp-0
  name: system:node:cp-0@kubernetes
current-context: system:node:cp-0@kubernetes
users:
- name: system:node:cp-0
  user:
    client-certificate: /var/lib/kubelet/pki/kubelet-client-current.pem
    client-key: /var/lib/kubelet/pki/kubelet-client-current.pem
`

func TestGetInfoReportsWhereEveryKubeadmKubeconfigPoints(t *testing.T) {
	p := newTestPKI(t)
	manifestDir, parked, dataDir := kubeadmNode(t) // admin, controller-manager, scheduler at 127.0.0.40
	root := filepath.Dir(manifestDir)
	for name, content := range map[string]string{
		"kubelet.conf":     kubeletConfOfTwoClusters,
		"super-admin.conf": "clusters: [not: a: kubeconfig",
		// Not one kubeadm writes: never reported.
		"bootstrap-kubelet.conf": fmt.Sprintf(kubeconfigOf, "bootstrap"),
	} {
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	addr, _ := startAgentWith(t, server.Config{Cluster: cluster, NodeName: "cp-0", StateDir: t.TempDir(), TLS: p.agent,
		ManifestDir: manifestDir, ParkedDir: parked, EtcdDataDir: dataDir})
	c := dial(t, addr, p.observer)

	info, err := c.GetInfo(ctx(t), &agentv1.GetInfoRequest{})
	if err != nil {
		t.Fatalf("GetInfo with a corrupt super-admin.conf: %v, want the corruption reported in its entry", err)
	}
	var got []string
	for _, k := range info.GetKubeconfigs() {
		got = append(got, fmt.Sprintf("%s %v %t", k.GetName(), k.GetServers(), k.GetError() != ""))
	}
	want := []string{
		"admin.conf [https://127.0.0.40:6443] false",
		"super-admin.conf [] true",
		"kubelet.conf [https://127.0.0.40:6443 https://10.0.0.9:6443] false",
		"controller-manager.conf [https://127.0.0.40:6443] false",
		"scheduler.conf [https://127.0.0.40:6443] false",
	}
	if !slices.Equal(got, want) {
		t.Errorf("kubeconfigs reported:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	for _, k := range info.GetKubeconfigs() {
		if k.GetName() == "super-admin.conf" && !strings.Contains(k.GetError(), "super-admin.conf") {
			t.Errorf("super-admin.conf's error %q does not name the file", k.GetError())
		}
	}
}

func TestGetInfoReportsNoKubeconfigsWithoutAManifestDirectory(t *testing.T) {
	// The agent's working directory is not its kubeconfig directory: an
	// agent without a manifest directory reports none, even with
	// kubeconfigs next to it.
	t.Chdir(filepath.Dir(first(kubeadmNode(t))))
	p := newTestPKI(t)
	c := dial(t, startAgent(t, p, t.TempDir()), p.observer)
	info, err := c.GetInfo(ctx(t), &agentv1.GetInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(info.GetKubeconfigs()); n != 0 {
		t.Errorf("GetInfo reported %d kubeconfigs without a manifest directory: %v", n, info.GetKubeconfigs())
	}
}

func first(manifestDir, _, _ string) string { return manifestDir }
