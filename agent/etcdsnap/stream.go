// Package etcdsnap owns etcd snapshots on a node: taking one through the
// client v3 snapshot API and streaming it while hashing, receiving one from
// the coordinator, verifying a snapshot file (etcd's own appended sha256 and
// the bbolt structure), checking that the linked etcdutl restores the etcd
// version that wrote it, and restoring it into a fresh data directory with a
// new membership. It never touches a data directory that etcd has open, and
// never deletes the previous data directory before the coordinator commits.
package etcdsnap

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"

	bolt "go.etcd.io/bbolt"
	clientv3 "go.etcd.io/etcd/client/v3"
)

var (
	// ErrCorrupt means a snapshot failed verification.
	ErrCorrupt = errors.New("snapshot is corrupt")
	// ErrDataDirInUse means a running etcd holds the data directory.
	ErrDataDirInUse = errors.New("etcd data directory is in use")
)

// Trailer describes the bytes of a complete snapshot.
type Trailer struct {
	// SHA256 of every byte of the snapshot, including etcd's appended hash,
	// in hex.
	SHA256 string
	// Size in bytes.
	Size int64
	// Revision is the store revision in the snapshot.
	Revision int64
	// EtcdVersion of the server that produced it.
	EtcdVersion string
}

// DefaultChunkSize is the data size of one streamed message.
const DefaultChunkSize = 1 << 20

// Take takes a snapshot through m and hands it to send in chunks of at most
// chunkSize bytes. The trailer is returned only if etcd's own appended
// sha256 matches the database bytes and the database is a sound bbolt file,
// so a caller that sees an error must discard what it received.
//
// etcd's snapshot stream does not say which revision it holds, so the bytes
// are also spooled to a 0600 file in spoolDir, read for their revision once
// complete, and deleted.
func Take(ctx context.Context, m clientv3.Maintenance, spoolDir string, chunkSize int, send func([]byte) error) (Trailer, error) {
	if chunkSize <= 0 {
		chunkSize = DefaultChunkSize
	}
	if err := os.MkdirAll(spoolDir, 0o700); err != nil {
		return Trailer{}, fmt.Errorf("creating snapshot spool directory: %w", err)
	}
	spool, err := os.CreateTemp(spoolDir, ".snapshot-spool-*")
	if err != nil {
		return Trailer{}, fmt.Errorf("creating snapshot spool file: %w", err)
	}
	defer os.Remove(spool.Name())
	defer spool.Close()
	if err := spool.Chmod(0o600); err != nil {
		return Trailer{}, err
	}
	resp, err := m.SnapshotWithVersion(ctx)
	if err != nil {
		return Trailer{}, fmt.Errorf("opening etcd snapshot stream: %w", err)
	}
	defer resp.Snapshot.Close()
	v := newVerifier()
	buf := make([]byte, chunkSize)
	for {
		n, err := io.ReadFull(resp.Snapshot, buf)
		if n > 0 {
			v.Write(buf[:n])
			if _, werr := spool.Write(buf[:n]); werr != nil {
				return Trailer{}, fmt.Errorf("spooling snapshot: %w", werr)
			}
			if sendErr := send(buf[:n]); sendErr != nil {
				return Trailer{}, fmt.Errorf("sending snapshot chunk: %w", sendErr)
			}
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return Trailer{}, fmt.Errorf("reading etcd snapshot stream: %w", err)
		}
	}
	if err := v.Check(); err != nil {
		return Trailer{}, err
	}
	if err := spool.Close(); err != nil {
		return Trailer{}, err
	}
	rev, err := latestRevision(spool.Name())
	if err != nil {
		return Trailer{}, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return Trailer{SHA256: v.SHA256(), Size: v.size, Revision: rev, EtcdVersion: resp.Version}, nil
}

// latestRevision reads the store revision of a snapshot file: the main
// revision of the last key of etcd's "key" bucket, whose keys are 8-byte
// big-endian main revisions followed by a sub revision. Unlike a full
// status (VerifyFile), it reads one page: etcd's appended hash has already
// vouched for every byte.
func latestRevision(path string) (int64, error) {
	db, err := bolt.Open(path, 0o400, &bolt.Options{ReadOnly: true})
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var rev int64
	err = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("key"))
		if b == nil {
			return errors.New(`no "key" bucket: not an etcd v3 database`)
		}
		k, _ := b.Cursor().Last()
		if len(k) < 8 {
			return nil // an empty store is at revision 1 with no keys; report 0
		}
		rev = int64(binary.BigEndian.Uint64(k[:8]))
		return nil
	})
	return rev, err
}

// verifier hashes a snapshot as it streams by: the sha256 of all bytes (what
// the coordinator checks) and the sha256 of all bytes but the last 32, which
// etcd appends as the hash of the database. The last 32 bytes seen so far
// are held back in tail until more data pushes them into the database hash.
type verifier struct {
	all, db hash.Hash
	tail    []byte
	size    int64
}

func newVerifier() *verifier {
	return &verifier{all: sha256.New(), db: sha256.New(), tail: make([]byte, 0, 2*sha256.Size)}
}

func (v *verifier) Write(p []byte) {
	v.all.Write(p)
	v.size += int64(len(p))
	if len(p) >= sha256.Size {
		// Everything held back, and all of p but its last 32 bytes, is
		// database.
		v.db.Write(v.tail)
		v.db.Write(p[:len(p)-sha256.Size])
		v.tail = append(v.tail[:0], p[len(p)-sha256.Size:]...)
		return
	}
	combined := append(v.tail, p...)
	if over := len(combined) - sha256.Size; over > 0 {
		v.db.Write(combined[:over])
		combined = append(combined[:0], combined[over:]...)
	}
	v.tail = combined
}

// Check verifies etcd's appended hash. etcd appends it only to snapshots it
// streams, and pads the database to 512-byte pages, so a complete snapshot is
// 32 bytes longer than a multiple of 512.
func (v *verifier) Check() error {
	if v.size%512 != sha256.Size {
		return fmt.Errorf("%w: size %d bytes is not a database plus etcd's 32-byte hash (truncated?)", ErrCorrupt, v.size)
	}
	if !bytes.Equal(v.db.Sum(nil), v.tail) {
		return fmt.Errorf("%w: etcd's appended sha256 does not match the database bytes", ErrCorrupt)
	}
	return nil
}

func (v *verifier) SHA256() string { return hex.EncodeToString(v.all.Sum(nil)) }
