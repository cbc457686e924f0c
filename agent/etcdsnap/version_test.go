package etcdsnap_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/version"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"

	"github.com/triad-k8s/triad/agent/etcdsnap"
	"github.com/triad-k8s/triad/agent/etcdsnap/etcdsnaptest"
)

// linkedStorageVersion is the storage version the linked etcd records,
// e.g. "3.6.0".
var linkedStorageVersion = version.APIVersion + ".0"

// waitStorageVersion waits until the member has recorded the linked etcd's
// storage version: a new etcd 3.6 records none at first, then 3.5.0 for a
// moment before 3.6.0.
func waitStorageVersion(t *testing.T, cli *clientv3.Client, endpoint string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := cli.Status(t.Context(), endpoint)
		if err != nil {
			t.Fatal(err)
		}
		if st.StorageVersion == linkedStorageVersion {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd records storage version %q after 30s, want %q", st.StorageVersion, linkedStorageVersion)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The rule compares with the version of etcd's api module; the restore is
// done by the etcdutl module. They are released together, but go.mod could
// pull one forward alone. (A test binary carries no module versions in its
// build information, so this reads go.mod, which go mod tidy keeps at the
// selected versions.)
func TestTheLinkedEtcdVersionIsTheEtcdutlThatRestores(t *testing.T) {
	gomod := mustRead(t, filepath.Join("..", "..", "go.mod"))
	for _, line := range strings.Split(string(gomod), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "go.etcd.io/etcd/etcdutl/v3" {
			continue
		}
		if !strings.HasPrefix(f[1], "v"+version.APIVersion+".") {
			t.Fatalf("etcdutl %s restores, but the version check uses etcd %s from go.etcd.io/etcd/api/v3: keep both at one etcd minor", f[1], version.Version)
		}
		return
	}
	t.Fatal("go.mod does not require go.etcd.io/etcd/etcdutl/v3")
}

func TestSnapshotVersionRule(t *testing.T) {
	cases := []struct {
		name, snapshot, linked string
		ok                     bool
	}{
		{"the same minor, another patch", "3.6.0", "3.6.16", true},
		{"the same minor, a later patch than the agent's", "3.6.20", "3.6.16", true},
		{"the same minor without a patch", "3.6", "3.6.16", true},
		{"the same minor, a pre-release", "3.6.0-rc.1", "3.6.16", true},
		{"one minor older", "3.5.0", "3.6.16", true},
		{"no storage version, which is etcd 3.5", "", "3.6.16", true},
		{"two minors older", "3.4.0", "3.6.16", false},
		{"one minor newer", "3.7.0", "3.6.16", false},
		{"another major", "4.0.0", "3.6.16", false},
		{"an older major", "2.3.8", "3.6.16", false},
		{"no storage version for an etcd two minors past 3.5", "", "3.7.0", false},
		{"one minor older than a 3.7 agent", "3.6.0", "3.7.0", true},
		{"garbage", "not-a-version", "3.6.16", false},
		{"a v prefix", "v3.6.0", "3.6.16", false},
		{"trailing bytes", "3.6.0\x00", "3.6.16", false},
		{"a major only", "3", "3.6.16", false},
		{"a linked version that does not parse", "3.6.0", "garbage", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := etcdsnap.CheckSnapshotVersion(tc.snapshot, tc.linked)
			if tc.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, etcdsnap.ErrUnsupportedVersion) {
				t.Fatalf("got %v, want ErrUnsupportedVersion", err)
			}
			// Non-printing bytes show escaped.
			shown := strconv.Quote(tc.snapshot)
			if tc.snapshot == "" {
				shown = "etcd 3.5"
			}
			for _, want := range []string{shown, tc.linked} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not name %q", err, want)
				}
			}
		})
	}
}

func TestRestoreRefusesSnapshotsOfAnEtcdVersionItCannotRestoreBeforeTouchingTheDataDirectory(t *testing.T) {
	data, trailer, _ := sourceSnapshot(t)
	if trailer.EtcdVersion != linkedStorageVersion {
		t.Fatalf("source snapshot reports etcd %q, want %q", trailer.EtcdVersion, linkedStorageVersion)
	}
	deleteVersionAndTerm := func(meta *bolt.Bucket) error {
		if err := meta.Delete([]byte("storageVersion")); err != nil {
			return err
		}
		return meta.Delete([]byte("term"))
	}
	cases := []struct {
		name string
		data []byte
		// recorded is what etcdutl's status must report for the file, so
		// the rewrite is known to be where etcd reads it.
		recorded string
		// refusal names these; none means the restore succeeds.
		refusal []string
	}{
		{"the snapshot as the linked etcd wrote it", data, linkedStorageVersion, nil},
		// Rewritten to a version that is accepted: the rewrite alone does
		// not make a snapshot fail.
		{"a snapshot recording storage version 3.5.0", etcdsnaptest.WithStorageVersion(t, data, "3.5.0"), "3.5.0", nil},
		{"a snapshot recording no storage version, as etcd 3.5 writes", etcdsnaptest.WithStorageVersion(t, data, ""), "", nil},
		{"a snapshot recording storage version 3.7.0", etcdsnaptest.WithStorageVersion(t, data, "3.7.0"), "3.7.0", []string{`"3.7.0"`, version.Version, "etcd 3.7"}},
		{"a snapshot recording storage version 3.4.0", etcdsnaptest.WithStorageVersion(t, data, "3.4.0"), "3.4.0", []string{`"3.4.0"`, version.Version, "3.4 or 3.5"}},
		// etcdutl's status reports this as no version at all.
		{"a snapshot recording a storage version that is not one", etcdsnaptest.WithStorageVersion(t, data, "three-point-seven"), "", []string{`"three-point-seven"`, version.Version}},
		{"a snapshot recording neither a storage version nor a raft term, as etcd 3.4 writes", etcdsnaptest.RewriteMeta(t, data, deleteVersionAndTerm), "", []string{"3.4 or older", version.Version}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "snap.db")
			if err := os.WriteFile(path, tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			st, err := snapshot.NewV3(zap.NewNop()).Status(path)
			if err != nil {
				t.Fatalf("etcdutl status of the test snapshot: %v", err)
			}
			if st.Version != tc.recorded {
				t.Fatalf("etcdutl reads storage version %q, want %q", st.Version, tc.recorded)
			}
			sum := sha256.Sum256(tc.data)
			dataDir := filepath.Join(t.TempDir(), "etcd")
			if err := os.MkdirAll(filepath.Join(dataDir, "member", "snap"), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dataDir, "member", "marker"), []byte("old"), 0o600); err != nil {
				t.Fatal(err)
			}
			before := listTree(t, filepath.Dir(dataDir))

			res, err := etcdsnap.Restore(etcdsnap.RestoreRequest{
				SnapshotPath: path, SHA256: hex.EncodeToString(sum[:]), DataDir: dataDir, OperationID: "op-v",
				Membership: etcdsnap.Membership{Name: "a", PeerURLs: []string{"http://127.0.0.11:2380"}, InitialCluster: "a=http://127.0.0.11:2380", ClusterToken: "t"},
			})
			if tc.refusal == nil {
				if err != nil {
					t.Fatalf("Restore: %v", err)
				}
				if b, err := os.ReadFile(filepath.Join(res.PreviousDataDir, "member", "marker")); err != nil || string(b) != "old" {
					t.Fatalf("old data not kept aside at %q: %v", res.PreviousDataDir, err)
				}
				if _, err := os.Stat(filepath.Join(dataDir, "member", "snap", "db")); err != nil {
					t.Fatalf("restored data not in place: %v", err)
				}
				return
			}
			if !errors.Is(err, etcdsnap.ErrUnsupportedVersion) {
				t.Fatalf("Restore: %v, want ErrUnsupportedVersion", err)
			}
			for _, want := range tc.refusal {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not name %q", err, want)
				}
			}
			if after := listTree(t, filepath.Dir(dataDir)); after != before {
				t.Errorf("refused restore changed the data directory:\nbefore:\n%s\nafter:\n%s", before, after)
			}
			if got := sha256.Sum256(mustRead(t, path)); got != sum {
				t.Error("reading the snapshot's version changed the snapshot file")
			}
		})
	}
}

// listTree renders every entry under root with its mode, size and the
// sha256 of its content.
func listTree(t *testing.T, root string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		sum := ""
		if d.Type().IsRegular() {
			h := sha256.Sum256(mustRead(t, path))
			sum = hex.EncodeToString(h[:])
		}
		b.WriteString(rel + " " + info.Mode().String() + " " + sum + "\n")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
