package etcdsnap

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"

	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"
)

var snapshotIDPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,128}$`)

// ValidateID checks a snapshot id: it names a file, so it must not be a path.
func ValidateID(id string) error {
	if !snapshotIDPattern.MatchString(id) || id == "." || id == ".." {
		return fmt.Errorf("%w: snapshot id %q must be 1 to 128 characters of [A-Za-z0-9._-]", ErrInvalidArgument, id)
	}
	return nil
}

// ErrNotFound means the named snapshot is not on the node.
var ErrNotFound = errors.New("snapshot not found")

// Store is the directory where a node keeps the snapshots it received.
// Files are 0600: a snapshot holds every Secret of the cluster.
type Store struct {
	Dir string
}

// Path returns the file of snapshot id.
func (s Store) Path(id string) string { return filepath.Join(s.Dir, id+".db") }

// Receive writes a snapshot arriving in chunks from next into the store. next
// returns a chunk, or the trailer as the last value (with a nil chunk), or an
// error. The file appears under its final name only once every byte matched
// the trailer and the file verified; otherwise nothing is left behind.
func (s Store) Receive(id string, next func() ([]byte, *Trailer, error)) (Trailer, error) {
	if err := ValidateID(id); err != nil {
		return Trailer{}, err
	}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return Trailer{}, fmt.Errorf("creating snapshot store: %w", err)
	}
	part, err := os.CreateTemp(s.Dir, "."+id+".part*")
	if err != nil {
		return Trailer{}, fmt.Errorf("creating snapshot file: %w", err)
	}
	defer os.Remove(part.Name()) // no-op once renamed
	defer part.Close()
	if err := part.Chmod(0o600); err != nil {
		return Trailer{}, err
	}
	h := sha256.New()
	var size int64
	var want *Trailer
	for want == nil {
		chunk, trailer, err := next()
		if err != nil {
			return Trailer{}, fmt.Errorf("receiving snapshot: %w", err)
		}
		if trailer != nil {
			want = trailer
			break
		}
		if _, err := part.Write(chunk); err != nil {
			return Trailer{}, fmt.Errorf("writing snapshot: %w", err)
		}
		h.Write(chunk)
		size += int64(len(chunk))
	}
	got := hex.EncodeToString(h.Sum(nil))
	if size != want.Size || got != want.SHA256 {
		return Trailer{}, fmt.Errorf("%w: received %d bytes with sha256 %s, sender announced %d bytes with sha256 %s", ErrCorrupt, size, got, want.Size, want.SHA256)
	}
	if err := part.Sync(); err != nil {
		return Trailer{}, err
	}
	if err := part.Close(); err != nil {
		return Trailer{}, err
	}
	st, err := VerifyFile(part.Name(), want.SHA256)
	if err != nil {
		return Trailer{}, err
	}
	if err := os.Rename(part.Name(), s.Path(id)); err != nil {
		return Trailer{}, fmt.Errorf("storing snapshot: %w", err)
	}
	return Trailer{SHA256: got, Size: size, Revision: st.Revision, EtcdVersion: want.EtcdVersion}, nil
}

// VerifyFile checks a snapshot file before anything depends on it: its
// sha256 against the expected one (when given), etcd's appended database
// hash, and the bbolt structure. It returns the snapshot's status.
func VerifyFile(path, wantSHA256 string) (snapshot.Status, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return snapshot.Status{}, fmt.Errorf("%w: %s", ErrNotFound, path)
	}
	if err != nil {
		return snapshot.Status{}, fmt.Errorf("opening snapshot: %w", err)
	}
	defer f.Close()
	v := newVerifier()
	if _, err := io.Copy(writerFunc(func(p []byte) (int, error) { v.Write(p); return len(p), nil }), f); err != nil {
		return snapshot.Status{}, fmt.Errorf("reading snapshot: %w", err)
	}
	if wantSHA256 != "" && v.SHA256() != wantSHA256 {
		return snapshot.Status{}, fmt.Errorf("%w: sha256 is %s, want %s", ErrCorrupt, v.SHA256(), wantSHA256)
	}
	if err := v.Check(); err != nil {
		return snapshot.Status{}, err
	}
	st, err := snapshot.NewV3(zap.NewNop()).Status(path)
	if err != nil {
		return snapshot.Status{}, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return st, nil
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// exists reports whether path exists.
func exists(path string) (bool, error) {
	_, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}
