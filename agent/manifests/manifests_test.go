package manifests_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/triad-k8s/triad/agent/manifests"
)

// kubeadmDir holds manifests written by the real kubeadm; see COMMAND.txt.
const kubeadmDir = "testdata/kubeadm-v1.36.3"

func copyManifest(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(kubeadmDir, name))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// lineDiff returns the lines only in a and the lines only in b.
func lineDiff(a, b string) (removed, added []string) {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for _, l := range al {
		if !slices.Contains(bl, l) {
			removed = append(removed, strings.TrimSpace(l))
		}
	}
	for _, l := range bl {
		if !slices.Contains(al, l) {
			added = append(added, strings.TrimSpace(l))
		}
	}
	return removed, added
}

func TestKubeadmManifestsSurviveARoundTripByteForByte(t *testing.T) {
	for _, name := range []string{"etcd.yaml", "kube-apiserver.yaml", "kube-controller-manager.yaml", "kube-scheduler.yaml"} {
		t.Run(name, func(t *testing.T) {
			p, err := manifests.Read(filepath.Join(kubeadmDir, name))
			if err != nil {
				t.Fatal(err)
			}
			out, err := p.Render()
			if err != nil {
				t.Fatal(err)
			}
			if string(out) != string(p.Original) {
				removed, added := lineDiff(string(p.Original), string(out))
				t.Fatalf("round trip changed the manifest: removed %q, added %q", removed, added)
			}
		})
	}
}

func TestRewriteEtcdChangesOnlyTheMembership(t *testing.T) {
	path := copyManifest(t, "etcd.yaml")
	p, err := manifests.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	cluster := "cp-a=https://10.0.1.21:2380,cp-b=https://10.0.2.22:2380,cp-c=https://10.0.3.23:2380"
	if err := manifests.RewriteEtcd(p, manifests.Etcd{Name: "cp-a", AdvertiseAddress: "10.0.1.21", InitialCluster: cluster, InitialClusterState: "new", InitialClusterToken: "triad-op-1"}); err != nil {
		t.Fatal(err)
	}
	changed, err := p.Write()
	if err != nil || !changed {
		t.Fatalf("Write = %v, %v", changed, err)
	}
	after, _ := os.ReadFile(path)
	removed, added := lineDiff(string(p.Original), string(after))
	wantRemoved := []string{
		"kubeadm.kubernetes.io/etcd.advertise-client-urls: https://10.0.0.10:2379",
		"- --advertise-client-urls=https://10.0.0.10:2379",
		"- --initial-advertise-peer-urls=https://10.0.0.10:2380",
		"- --initial-cluster=cp-0=https://10.0.0.10:2380",
		"- --listen-client-urls=https://127.0.0.1:2379,https://10.0.0.10:2379",
		"- --listen-peer-urls=https://10.0.0.10:2380",
		"- --name=cp-0",
	}
	wantAdded := []string{
		"kubeadm.kubernetes.io/etcd.advertise-client-urls: https://10.0.1.21:2379",
		"- --advertise-client-urls=https://10.0.1.21:2379",
		"- --initial-advertise-peer-urls=https://10.0.1.21:2380",
		"- --initial-cluster=" + cluster,
		"- --initial-cluster-token=triad-op-1",
		"- --listen-client-urls=https://127.0.0.1:2379,https://10.0.1.21:2379",
		"- --listen-peer-urls=https://10.0.1.21:2380",
		"- --name=cp-a",
	}
	slices.Sort(removed)
	slices.Sort(added)
	slices.Sort(wantRemoved)
	slices.Sort(wantAdded)
	if !slices.Equal(removed, wantRemoved) || !slices.Equal(added, wantAdded) {
		t.Fatalf("diff:\nremoved %q\nwant    %q\nadded   %q\nwant    %q", removed, wantRemoved, added, wantAdded)
	}
	// The new flag sits where kubeadm would sort it.
	if i := strings.Index(string(after), "--initial-cluster-token"); i < strings.Index(string(after), "--initial-cluster=") || i > strings.Index(string(after), "--key-file") {
		t.Error("--initial-cluster-token is not in kubeadm's sorted position")
	}
}

func TestRewriteAPIServerMovesTheAdvertiseAddressAndProbes(t *testing.T) {
	path := copyManifest(t, "kube-apiserver.yaml")
	p, err := manifests.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := manifests.RewriteAPIServer(p, manifests.APIServer{AdvertiseAddress: "10.0.1.21", EtcdServers: []string{"https://127.0.0.1:2379"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Write(); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(path)
	removed, added := lineDiff(string(p.Original), string(after))
	if len(removed) != 5 || len(added) != 5 {
		// the annotation, the flag and the host of three probes
		t.Fatalf("removed %q added %q", removed, added)
	}
	if strings.Contains(string(after), "10.0.0.10") {
		t.Error("the old address is still in the manifest")
	}
	if got := strings.Count(string(after), "host: 10.0.1.21"); got != 3 {
		t.Errorf("%d probes point at the new address, want 3", got)
	}
}

func TestBadInputChangesNoManifest(t *testing.T) {
	etcdPath, apiPath := copyManifest(t, "etcd.yaml"), copyManifest(t, "kube-apiserver.yaml")
	cases := []struct {
		name string
		run  func() error
	}{
		{"an advertise address that is not an IP", func() error {
			p, _ := manifests.Read(etcdPath)
			return manifests.RewriteEtcd(p, manifests.Etcd{Name: "a", AdvertiseAddress: "cp-a.example", InitialCluster: "a=https://10.0.0.1:2380", InitialClusterState: "new"})
		}},
		{"an unknown cluster state", func() error {
			p, _ := manifests.Read(etcdPath)
			return manifests.RewriteEtcd(p, manifests.Etcd{Name: "a", AdvertiseAddress: "10.0.0.1", InitialCluster: "a=https://10.0.0.1:2380", InitialClusterState: "reuse"})
		}},
		{"no etcd servers", func() error {
			p, _ := manifests.Read(apiPath)
			return manifests.RewriteAPIServer(p, manifests.APIServer{AdvertiseAddress: "10.0.0.1"})
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.run(); !errors.Is(err, manifests.ErrInvalidArgument) {
				t.Fatalf("got %v, want ErrInvalidArgument", err)
			}
		})
	}
	for _, f := range []string{"etcd.yaml", "kube-apiserver.yaml"} {
		orig, _ := os.ReadFile(filepath.Join(kubeadmDir, f))
		now, _ := os.ReadFile(map[string]string{"etcd.yaml": etcdPath, "kube-apiserver.yaml": apiPath}[f])
		if string(orig) != string(now) {
			t.Errorf("%s changed", f)
		}
	}
}

func TestRewriteAPIServerMovesABindAddressPinnedToTheNode(t *testing.T) {
	for _, tc := range []struct{ bind, want string }{
		{"10.0.0.10", "10.0.1.21"}, // pinned to the node's address: follows it
		{"0.0.0.0", "0.0.0.0"},     // wildcard: left alone
	} {
		p, err := manifests.Read(copyManifest(t, "kube-apiserver.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		p.SetFlag("bind-address", tc.bind)
		if err := manifests.RewriteAPIServer(p, manifests.APIServer{AdvertiseAddress: "10.0.1.21", EtcdServers: []string{"https://127.0.0.1:2379"}}); err != nil {
			t.Fatal(err)
		}
		if got, _ := p.Flag("bind-address"); got != tc.want {
			t.Errorf("bind-address %s: got %s, want %s", tc.bind, got, tc.want)
		}
	}
}

func TestSetVersionRetagsOnlyTheImage(t *testing.T) {
	for _, name := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
		t.Run(name, func(t *testing.T) {
			p, err := manifests.Read(copyManifest(t, name+".yaml"))
			if err != nil {
				t.Fatal(err)
			}
			if err := manifests.SetVersion(p, "v1.36.3+triad.1"); err != nil {
				t.Fatal(err)
			}
			if _, err := p.Write(); err != nil {
				t.Fatal(err)
			}
			after, err := os.ReadFile(p.Path)
			if err != nil {
				t.Fatal(err)
			}
			removed, added := lineDiff(string(p.Original), string(after))
			want := "image: registry.k8s.io/" + name + ":v1.36.3_triad.1"
			if len(removed) != 1 || removed[0] != "image: registry.k8s.io/"+name+":v1.36.3" || len(added) != 1 || added[0] != want {
				t.Fatalf("removed %q, added %q; want only the image line retagged to %q", removed, added, want)
			}
		})
	}
}

func TestSetVersionRefusesWhatItCannotRetag(t *testing.T) {
	p, err := manifests.Read(copyManifest(t, "kube-apiserver.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"1.36.4", "v1.36.4/evil", "v1.36.4:x", ""} {
		if err := manifests.SetVersion(p, v); !errors.Is(err, manifests.ErrInvalidArgument) {
			t.Errorf("version %q: %v, want invalid argument", v, err)
		}
	}
	p.Pod.Spec.Containers[0].Image = "registry.k8s.io/kube-apiserver@sha256:" + strings.Repeat("a", 64)
	if err := manifests.SetVersion(p, "v1.36.4"); !errors.Is(err, manifests.ErrInvalidArgument) {
		t.Errorf("digest-pinned image: %v, want invalid argument", err)
	}
	p.Pod.Spec.Containers[0].Image = "localhost:5000/kube-apiserver"
	if err := manifests.SetVersion(p, "v1.36.4"); !errors.Is(err, manifests.ErrInvalidArgument) {
		t.Errorf("untagged image behind a registry port: %v, want invalid argument", err)
	}
}

func TestShutdownDelayMakesKubeAPIServerShutDownBehindALoadBalancer(t *testing.T) {
	p, err := manifests.Read(copyManifest(t, "kube-apiserver.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := manifests.RewriteAPIServer(p, manifests.APIServer{AdvertiseAddress: "10.0.0.11", EtcdServers: []string{"https://127.0.0.1:2379"}, ShutdownDelay: 3 * time.Second}); err != nil {
		t.Fatal(err)
	}
	for flag, want := range map[string]string{"shutdown-delay-duration": "3s", "shutdown-send-retry-after": "false", "shutdown-watch-termination-grace-period": "3s"} {
		if got, ok := p.Flag(flag); !ok || got != want {
			t.Errorf("--%s=%q (set %v), want %q", flag, got, ok, want)
		}
	}
	// Without a delay the operator's shutdown flags stay as they are.
	q, err := manifests.Read(copyManifest(t, "kube-apiserver.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := manifests.RewriteAPIServer(q, manifests.APIServer{AdvertiseAddress: "10.0.0.11", EtcdServers: []string{"https://127.0.0.1:2379"}}); err != nil {
		t.Fatal(err)
	}
	if _, ok := q.Flag("shutdown-delay-duration"); ok {
		t.Error("shutdown flags set without a delay")
	}
	if err := manifests.RewriteAPIServer(q, manifests.APIServer{AdvertiseAddress: "10.0.0.11", EtcdServers: []string{"x"}, ShutdownDelay: -time.Second}); !errors.Is(err, manifests.ErrInvalidArgument) {
		t.Errorf("negative delay: %v", err)
	}
}
