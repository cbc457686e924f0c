package etcdsnap_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"

	"github.com/triad-k8s/triad/agent/etcd/etcdtest"
	"github.com/triad-k8s/triad/agent/etcdsnap"
)

// sourceSnapshot starts a one-member cluster with some history, takes a
// snapshot through the streaming path and returns its bytes, trailer and
// the KV hash of the source at the snapshot revision.
func sourceSnapshot(t *testing.T) ([]byte, etcdsnap.Trailer, uint32) {
	t.Helper()
	_, m := etcdtest.StartSingle(t, etcdtest.Member{Name: "cp-0", IP: "127.0.0.10", DataDir: t.TempDir()})
	cli := etcdtest.Client(t, m.ClientURL())
	ctx := t.Context()
	waitStorageVersion(t, cli, m.ClientURL())
	for i := range 200 {
		if _, err := cli.Put(ctx, fmt.Sprintf("/registry/things/%03d", i), fmt.Sprintf("value-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cli.Delete(ctx, "/registry/things/01", clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	chunks := 0
	trailer, err := etcdsnap.Take(ctx, cli.Maintenance, t.TempDir(), 4096, func(p []byte) error {
		chunks++
		buf.Write(p)
		return nil
	})
	if err != nil {
		t.Fatalf("Take: %v", err)
	}
	if chunks < 2 {
		t.Fatalf("snapshot came in %d chunk(s); the test wants several", chunks)
	}
	if trailer.Size != int64(buf.Len()) || trailer.Revision == 0 {
		t.Fatalf("trailer %+v does not describe the %d bytes received", trailer, buf.Len())
	}
	hash, err := cli.HashKV(ctx, m.ClientURL(), trailer.Revision)
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), trailer, hash.Hash
}

// receive feeds data and trailer into a store in chunks of 1000 bytes.
func receive(store etcdsnap.Store, id string, data []byte, trailer etcdsnap.Trailer) (etcdsnap.Trailer, error) {
	rest := data
	return store.Receive(id, func() ([]byte, *etcdsnap.Trailer, error) {
		if len(rest) == 0 {
			return nil, &trailer, nil
		}
		n := min(1000, len(rest))
		chunk := rest[:n]
		rest = rest[n:]
		return chunk, nil, nil
	})
}

func TestSnapshotOfOneMemberRestoresIntoThreeWithTheSameData(t *testing.T) {
	data, trailer, sourceHash := sourceSnapshot(t)
	ctx := t.Context()

	members := []etcdtest.Member{
		{Name: "cp-a", IP: "127.0.0.11"}, {Name: "cp-b", IP: "127.0.0.12"}, {Name: "cp-c", IP: "127.0.0.13"},
	}
	for i := range members {
		members[i] = etcdtest.WithPorts(t, members[i])
		members[i].DataDir = filepath.Join(t.TempDir(), "etcd")
	}
	initial := etcdtest.InitialCluster(members...)
	for _, m := range members {
		// Each node receives the snapshot over the wire and restores it.
		store := etcdsnap.Store{Dir: t.TempDir()}
		got, err := receive(store, "snap-1", data, trailer)
		if err != nil {
			t.Fatalf("%s: Receive: %v", m.Name, err)
		}
		if got.Revision != trailer.Revision {
			t.Fatalf("%s: stored snapshot has revision %d, trailer says %d", m.Name, got.Revision, trailer.Revision)
		}
		st, err := os.Stat(store.Path("snap-1"))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("snapshot file mode %v, want 0600", st.Mode().Perm())
		}
		res, err := etcdsnap.Restore(etcdsnap.RestoreRequest{
			SnapshotPath: store.Path("snap-1"), SHA256: trailer.SHA256, DataDir: m.DataDir, OperationID: "op-1",
			Membership: etcdsnap.Membership{Name: m.Name, PeerURLs: []string{m.PeerURL()}, InitialCluster: initial, ClusterToken: "triad-op-1"},
		})
		if err != nil {
			t.Fatalf("%s: Restore: %v", m.Name, err)
		}
		if res.Revision != trailer.Revision {
			t.Errorf("%s: restored revision %d, want %d", m.Name, res.Revision, trailer.Revision)
		}
	}
	var servers []*embed.Etcd
	for _, m := range members {
		servers = append(servers, etcdtest.Start(t, m, initial, embed.ClusterStateFlagNew, "triad-op-1"))
	}
	for _, s := range servers {
		etcdtest.WaitReady(t, s)
	}

	var endpoints []string
	for _, m := range members {
		endpoints = append(endpoints, m.ClientURL())
	}
	cli := etcdtest.Client(t, endpoints...)
	list, err := cli.MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Members) != 3 {
		t.Fatalf("restored cluster has %d members, want 3", len(list.Members))
	}
	for _, m := range list.Members {
		if m.IsLearner {
			t.Errorf("member %s is a learner", m.Name)
		}
	}
	for _, ep := range endpoints {
		st, err := cli.Status(ctx, ep)
		if err != nil {
			t.Fatal(err)
		}
		if st.Header.Revision != trailer.Revision {
			t.Errorf("%s reports revision %d, want the snapshot's %d", ep, st.Header.Revision, trailer.Revision)
		}
		h, err := cli.HashKV(ctx, ep, trailer.Revision)
		if err != nil {
			t.Fatal(err)
		}
		if h.Hash != sourceHash {
			t.Errorf("%s KV hash %d, want the source's %d", ep, h.Hash, sourceHash)
		}
	}
	// A write reaches quorum.
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := cli.Put(wctx, "/after-restore", "x"); err != nil {
		t.Fatalf("write to the restored cluster: %v", err)
	}
}

func TestDamagedSnapshotsAreRefusedBeforeAnythingIsWritten(t *testing.T) {
	data, trailer, _ := sourceSnapshot(t)
	flipped := bytes.Clone(data)
	flipped[len(flipped)/2] ^= 0x01
	cases := []struct {
		name    string
		data    []byte
		trailer etcdsnap.Trailer
	}{
		// The sender's trailer matches what it sent, so only etcd's own
		// appended hash can catch these.
		{"a truncated snapshot", data[:len(data)-4096], trailerFor(data[:len(data)-4096])},
		{"a bit-flipped snapshot", flipped, trailerFor(flipped)},
		// Bytes lost or changed in transit: the trailer catches it.
		{"a snapshot that does not match its trailer", flipped, trailer},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			store := etcdsnap.Store{Dir: t.TempDir()}
			_, err := receive(store, "snap", tc.data, tc.trailer)
			if !errors.Is(err, etcdsnap.ErrCorrupt) {
				t.Fatalf("Receive: %v, want ErrCorrupt", err)
			}
			if entries, _ := os.ReadDir(store.Dir); len(entries) != 0 {
				t.Errorf("store holds %d file(s) after a refused snapshot", len(entries))
			}

			// Restore from a damaged file placed by other means is refused
			// too, and leaves the data directory alone.
			path := filepath.Join(t.TempDir(), "damaged.db")
			if err := os.WriteFile(path, tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			dataDir := filepath.Join(t.TempDir(), "etcd")
			_, err = etcdsnap.Restore(etcdsnap.RestoreRequest{
				SnapshotPath: path, DataDir: dataDir, OperationID: "op",
				Membership: etcdsnap.Membership{Name: "a", PeerURLs: []string{"http://127.0.0.11:2380"}, InitialCluster: "a=http://127.0.0.11:2380", ClusterToken: "t"},
			})
			if !errors.Is(err, etcdsnap.ErrCorrupt) {
				t.Fatalf("Restore: %v, want ErrCorrupt", err)
			}
			if entries, _ := os.ReadDir(filepath.Dir(dataDir)); len(entries) != 0 {
				t.Errorf("restore of a damaged snapshot wrote %d entries", len(entries))
			}
		})
	}
}

func trailerFor(data []byte) etcdsnap.Trailer {
	path := filepath.Join(os.TempDir(), fmt.Sprintf("triad-trailer-%d", time.Now().UnixNano()))
	defer os.Remove(path)
	os.WriteFile(path, data, 0o600)
	sum, _ := sha256File(path)
	return etcdsnap.Trailer{SHA256: sum, Size: int64(len(data))}
}

func TestRestoreKeepsTheOldDataDirectoryUntilCommit(t *testing.T) {
	data, trailer, _ := sourceSnapshot(t)
	store := etcdsnap.Store{Dir: t.TempDir()}
	if _, err := receive(store, "s", data, trailer); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(t.TempDir(), "etcd")
	if err := os.MkdirAll(filepath.Join(dataDir, "member"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dataDir, "member", "marker"), []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	res, err := etcdsnap.Restore(etcdsnap.RestoreRequest{
		SnapshotPath: store.Path("s"), SHA256: trailer.SHA256, DataDir: dataDir, OperationID: "op-9",
		Membership: etcdsnap.Membership{Name: "a", PeerURLs: []string{"http://127.0.0.11:2380"}, InitialCluster: "a=http://127.0.0.11:2380", ClusterToken: "t"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(res.PreviousDataDir, "member", "marker")); err != nil || string(b) != "old" {
		t.Fatalf("old data not kept aside at %q: %v", res.PreviousDataDir, err)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "member", "snap", "db")); err != nil {
		t.Fatalf("restored data not in place: %v", err)
	}
	removed, err := etcdsnap.Commit(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 1 || removed[0] != res.PreviousDataDir {
		t.Errorf("Commit removed %v, want [%s]", removed, res.PreviousDataDir)
	}
	if _, err := os.Stat(res.PreviousDataDir); !os.IsNotExist(err) {
		t.Errorf("old data still there after Commit: %v", err)
	}
}

func TestRestoreOntoALiveDataDirectoryIsRefused(t *testing.T) {
	data, trailer, _ := sourceSnapshot(t)
	store := etcdsnap.Store{Dir: t.TempDir()}
	if _, err := receive(store, "s", data, trailer); err != nil {
		t.Fatal(err)
	}
	liveDir := t.TempDir()
	_, m := etcdtest.StartSingle(t, etcdtest.Member{Name: "live", IP: "127.0.0.14", DataDir: liveDir})
	cli := etcdtest.Client(t, m.ClientURL())
	if _, err := cli.Put(t.Context(), "k", "v"); err != nil {
		t.Fatal(err)
	}
	_, err := etcdsnap.Restore(etcdsnap.RestoreRequest{
		SnapshotPath: store.Path("s"), SHA256: trailer.SHA256, DataDir: liveDir, OperationID: "op",
		Membership: etcdsnap.Membership{Name: "live", PeerURLs: []string{m.PeerURL()}, InitialCluster: "live=" + m.PeerURL(), ClusterToken: "t"},
	})
	if !errors.Is(err, etcdsnap.ErrDataDirInUse) {
		t.Fatalf("Restore onto a live data dir: %v, want ErrDataDirInUse", err)
	}
	if matches, _ := filepath.Glob(liveDir + ".triad-*"); len(matches) != 0 {
		t.Errorf("refused restore left %v", matches)
	}
	if _, err := cli.Get(t.Context(), "k"); err != nil {
		t.Errorf("live etcd disturbed: %v", err)
	}
}

func TestMembershipValidation(t *testing.T) {
	good := etcdsnap.Membership{Name: "a", PeerURLs: []string{"https://10.0.0.1:2380"}, InitialCluster: "a=https://10.0.0.1:2380,b=https://10.0.0.2:2380", ClusterToken: "t"}
	if err := good.Validate(); err != nil {
		t.Fatalf("valid membership refused: %v", err)
	}
	cases := map[string]func(*etcdsnap.Membership){
		"no token":                            func(m *etcdsnap.Membership) { m.ClusterToken = "" },
		"a name with a slash":                 func(m *etcdsnap.Membership) { m.Name = "a/b" },
		"a peer URL missing from the cluster": func(m *etcdsnap.Membership) { m.PeerURLs = []string{"https://10.0.0.9:2380"} },
		"a peer URL without a port":           func(m *etcdsnap.Membership) { m.PeerURLs = []string{"https://10.0.0.1"} },
		"a malformed initial cluster":         func(m *etcdsnap.Membership) { m.InitialCluster = "a" },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			m := good
			mutate(&m)
			if err := m.Validate(); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// On a real node /var/lib/etcd is often its own disk: a rename out of it
// fails with EXDEV and the mount point itself cannot be renamed (EBUSY).
// A tmpfs mounted at the data directory is such a disk.
func TestRestoreOntoADataDirectoryThatIsItsOwnDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a data disk needs root")
	}
	data, trailer, _ := sourceSnapshot(t)
	store := etcdsnap.Store{Dir: t.TempDir()}
	if _, err := receive(store, "s", data, trailer); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(t.TempDir(), "etcd")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	// etcd preallocates 64 MB WAL files.
	if err := syscall.Mount("tmpfs", dataDir, "tmpfs", 0, "size=512m"); err != nil {
		t.Skipf("mounting a tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dataDir, syscall.MNT_DETACH) })
	if err := os.MkdirAll(filepath.Join(dataDir, "member"), 0o700); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dataDir, "member", "marker"), []byte("old"), 0o600)
	// The test bed is what a node with a data disk is.
	if err := os.Rename(filepath.Join(dataDir, "member"), dataDir+".aside"); !errors.Is(err, syscall.EXDEV) {
		t.Fatalf("rename off the data disk: %v, want EXDEV", err)
	}

	res, err := etcdsnap.Restore(etcdsnap.RestoreRequest{
		SnapshotPath: store.Path("s"), SHA256: trailer.SHA256, DataDir: dataDir, OperationID: "op-1",
		Membership: etcdsnap.Membership{Name: "a", PeerURLs: []string{"http://127.0.0.11:2380"}, InitialCluster: "a=http://127.0.0.11:2380", ClusterToken: "t"},
	})
	if err != nil {
		t.Fatalf("Restore onto a data disk: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(res.PreviousDataDir, "member", "marker")); err != nil || string(b) != "old" {
		t.Fatalf("old data not kept aside at %q: %v", res.PreviousDataDir, err)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "member", "snap", "db")); err != nil {
		t.Fatalf("restored data not in place: %v", err)
	}
	entries, _ := os.ReadDir(dataDir)
	if len(entries) != 2 {
		t.Errorf("data disk holds %d entries after restore, want member and the previous data", len(entries))
	}
	prev, err := etcdsnap.Empty(dataDir, "op-2")
	if err != nil || prev == "" {
		t.Fatalf("Empty on a data disk: %q, %v", prev, err)
	}
	if _, err := etcdsnap.Commit(dataDir); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(dataDir); len(entries) != 0 {
		t.Errorf("data disk holds %v after Commit, want nothing", entries)
	}
}
