// Package etcdsnaptest makes etcd snapshots that differ from a real one in
// a chosen way, for tests of what the agent accepts. It never changes the
// snapshot it is given.
package etcdsnaptest

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// WithStorageVersion returns a copy of snapshot whose recorded etcd storage
// version (bucket "meta", key "storageVersion") is v; "" deletes the key,
// as in a snapshot of etcd 3.5.
func WithStorageVersion(t testing.TB, snapshot []byte, v string) []byte {
	t.Helper()
	return RewriteMeta(t, snapshot, func(meta *bolt.Bucket) error {
		if v == "" {
			return meta.Delete([]byte("storageVersion"))
		}
		return meta.Put([]byte("storageVersion"), []byte(v))
	})
}

// RewriteMeta returns a copy of snapshot, as etcd streams it (the bbolt
// database followed by the sha256 of the database), with edit applied to
// the database's "meta" bucket and the appended sha256 recomputed: the copy
// passes every integrity check the original passes, so a test that sees it
// refused knows the edit is why.
func RewriteMeta(t testing.TB, snapshot []byte, edit func(meta *bolt.Bucket) error) []byte {
	t.Helper()
	if len(snapshot) < sha256.Size || len(snapshot)%512 != sha256.Size {
		t.Fatalf("a snapshot of %d bytes is not a database plus etcd's 32-byte sha256", len(snapshot))
	}
	db, trailer := snapshot[:len(snapshot)-sha256.Size], snapshot[len(snapshot)-sha256.Size:]
	if sum := sha256.Sum256(db); !bytes.Equal(sum[:], trailer) {
		t.Fatal("the snapshot's appended sha256 does not match its database")
	}
	path := filepath.Join(t.TempDir(), "rewrite.db")
	if err := os.WriteFile(path, db, 0o600); err != nil {
		t.Fatal(err)
	}
	bdb, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatalf("opening the snapshot's database: %v", err)
	}
	err = bdb.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket([]byte("meta"))
		if meta == nil {
			return errors.New(`no "meta" bucket`)
		}
		return edit(meta)
	})
	if cerr := bdb.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("rewriting the snapshot's meta bucket: %v", err)
	}
	out, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// bbolt grows a database in whole pages, so etcd's rule that a
	// database is a multiple of 512 bytes still holds.
	if len(out)%512 != 0 {
		t.Fatalf("the rewritten database is %d bytes, not a multiple of 512", len(out))
	}
	sum := sha256.Sum256(out)
	return append(out, sum[:]...)
}
