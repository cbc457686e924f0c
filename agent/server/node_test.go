package server_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/triad-k8s/triad/agent/etcd/etcdtest"
	"github.com/triad-k8s/triad/agent/server"
	"github.com/triad-k8s/triad/agent/staticpods/critest"
	agentv1 "github.com/triad-k8s/triad/proto/triad/agent/v1"
)

// kubeadmNode lays out kubeadm's four control-plane manifests (as the real
// kubeadm wrote them) and an etcd data directory with a file in it.
func kubeadmNode(t *testing.T) (manifestDir, parkedDir, dataDir string) {
	t.Helper()
	root := t.TempDir()
	manifestDir, parkedDir, dataDir = filepath.Join(root, "manifests"), filepath.Join(root, "parked"), filepath.Join(root, "etcd")
	for _, d := range []string{manifestDir, filepath.Join(dataDir, "member")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
		data, err := os.ReadFile(filepath.Join("../manifests/testdata/kubeadm-v1.36.3", n+".yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(manifestDir, n+".yaml"), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dataDir, "member", "old"), []byte("cloned"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The kubeconfigs as kubeadm init wrote them on the original node
	// (127.0.0.40): a clone carries them.
	for _, n := range []string{"admin", "controller-manager", "scheduler"} {
		if err := os.WriteFile(filepath.Join(root, n+".conf"), []byte(fmt.Sprintf(kubeconfigOf, n)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return manifestDir, parkedDir, dataDir
}

const kubeconfigOf = `apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: ""
    server: https://127.0.0.40:6443
  name: kubernetes
contexts:
- context:
    cluster: kubernetes
    user: system:%[1]s
  name: system:%[1]s@kubernetes
current-context: system:%[1]s@kubernetes
users:
- name: system:%[1]s
  user:
    token: t
`

// A member joining an existing cluster from a cloned disk: the old etcd data
// goes aside, the manifests name the joining membership and the new
// Kubernetes version; etcd keeps its image.
func TestReconfigureManifestsForAJoiningMemberOfANewVersion(t *testing.T) {
	p := newTestPKI(t)
	manifestDir, parked, dataDir := kubeadmNode(t)
	cri := critest.Start(t)
	addr, _ := startAgentWith(t, server.Config{Cluster: cluster, NodeName: "cp-d", StateDir: t.TempDir(), TLS: p.agent,
		ManifestDir: manifestDir, ParkedDir: parked, CRIEndpoint: cri.Endpoint, EtcdDataDir: dataDir})
	c := dial(t, addr, p.coordinator)
	req := &agentv1.ReconfigureManifestsRequest{Header: header(1), AdvertiseAddress: "127.0.0.44",
		Membership: &agentv1.EtcdMembership{MemberName: "cp-d", PeerUrls: []string{"https://127.0.0.44:2380"},
			InitialCluster: "cp-a=https://127.0.0.41:2380,cp-b=https://127.0.0.42:2380,cp-d=https://127.0.0.44:2380"},
		InitialClusterState: "existing", EtcdServers: []string{"https://127.0.0.1:2379"},
		EmptyEtcdDataDir: true, KubernetesVersion: "v1.36.3+triad.1"}

	// Bad input first: nothing moves, nothing is rewritten.
	bad := proto.Clone(req).(*agentv1.ReconfigureManifestsRequest)
	bad.KubernetesVersion = "1.36"
	if _, err := c.ReconfigureManifests(ctx(t), bad); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("bad version: %v, want InvalidArgument", err)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "member", "old")); err != nil {
		t.Fatalf("a refused request moved the data directory: %v", err)
	}

	resp, err := c.ReconfigureManifests(ctx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetPreviousEtcdDataDir() == "" || len(resp.GetChangedFiles()) != 6 {
		t.Fatalf("response %v: want the data moved, 4 manifests and 2 kubeconfigs changed", resp)
	}
	// As kubeadm lays out an HA control-plane node: the controller-manager
	// and the scheduler talk to their own kube-apiserver; admin.conf keeps
	// the control-plane endpoint (the original's address, the LBs' now).
	root := filepath.Dir(manifestDir)
	for n, want := range map[string]string{"controller-manager": "https://127.0.0.44:6443", "scheduler": "https://127.0.0.44:6443", "admin": "https://127.0.0.40:6443"} {
		raw, err := os.ReadFile(filepath.Join(root, n+".conf"))
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := clientcmd.Load(raw)
		if err != nil {
			t.Fatalf("%s.conf after the rewrite: %v", n, err)
		}
		if got := cfg.Clusters["kubernetes"].Server; got != want {
			t.Errorf("%s.conf points at %s, want %s", n, got, want)
		}
	}
	// The data moves aside inside the data directory (it may be its own
	// disk): etcd starts with no member directory.
	if _, err := os.Stat(filepath.Join(dataDir, "member")); !os.IsNotExist(err) {
		t.Errorf("member directory still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(resp.GetPreviousEtcdDataDir(), "member", "old")); err != nil {
		t.Errorf("old data not kept aside: %v", err)
	}
	read := func(n string) string {
		b, err := os.ReadFile(filepath.Join(manifestDir, n+".yaml"))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	for _, n := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
		if !strings.Contains(read(n), "image: registry.k8s.io/"+n+":v1.36.3_triad.1") {
			t.Errorf("%s not retagged:\n%s", n, read(n))
		}
	}
	etcdYAML := read("etcd")
	if !strings.Contains(etcdYAML, "image: registry.k8s.io/etcd:") || strings.Contains(etcdYAML, "triad.1") ||
		!strings.Contains(etcdYAML, "--initial-cluster-state=existing") || !strings.Contains(etcdYAML, "cp-d=https://127.0.0.44:2380") {
		t.Errorf("etcd manifest:\n%s", etcdYAML)
	}
	// The same request again (a coordinator retry) answers the same.
	again, err := c.ReconfigureManifests(ctx(t), req)
	if err != nil || again.GetPreviousEtcdDataDir() != resp.GetPreviousEtcdDataDir() {
		t.Fatalf("retry: %v %v", again, err)
	}
}

func TestEmptyingARunningEtcdsDataDirIsRefused(t *testing.T) {
	p := newTestPKI(t)
	manifestDir, parked, _ := kubeadmNode(t)
	dataDir := filepath.Join(t.TempDir(), "etcd")
	etcdtest.StartSingle(t, etcdtest.Member{Name: "cp-0", IP: "127.0.0.45", DataDir: dataDir})
	cri := critest.Start(t)
	addr, _ := startAgentWith(t, server.Config{Cluster: cluster, NodeName: "cp-0", StateDir: t.TempDir(), TLS: p.agent,
		ManifestDir: manifestDir, ParkedDir: parked, CRIEndpoint: cri.Endpoint, EtcdDataDir: dataDir})
	c := dial(t, addr, p.coordinator)
	_, err := c.ReconfigureManifests(ctx(t), &agentv1.ReconfigureManifestsRequest{Header: header(1), AdvertiseAddress: "127.0.0.45",
		Membership:          &agentv1.EtcdMembership{MemberName: "cp-0", PeerUrls: []string{"https://127.0.0.45:2380"}, InitialCluster: "cp-0=https://127.0.0.45:2380"},
		InitialClusterState: "existing", EtcdServers: []string{"https://127.0.0.1:2379"}, EmptyEtcdDataDir: true})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "running etcd") {
		t.Fatalf("emptying a live member's data: %v, want FailedPrecondition naming the running etcd", err)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "member", "snap", "db")); err != nil {
		t.Fatalf("live data touched: %v", err)
	}
}
