package etcdsnap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"regexp"
	"strconv"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/version"
)

// ErrUnsupportedVersion means the snapshot was written by an etcd whose data
// the etcd linked into this binary does not restore; nothing was changed.
var ErrUnsupportedVersion = errors.New("snapshot of an unsupported etcd version")

// CheckRestorable refuses, with ErrUnsupportedVersion, a snapshot file whose
// data the etcdutl linked into this binary does not restore (see
// CheckSnapshotVersion). It opens the file read-only and changes nothing.
//
// The version is the storage version etcd records in the database (bucket
// "meta", key "storageVersion") from 3.6 on. Without one, the data is read
// the way etcd itself reads it (schema.UnsafeDetectSchemaVersion): as 3.5
// if it carries the raft term that 3.5 added, else as 3.4 or older. etcd
// 3.6 also leaves the storage version empty for a moment after it upgraded
// 3.5 data, which is then 3.5 data still.
func CheckRestorable(path string) error {
	recorded, hasTerm, err := readStorageVersion(path)
	if err != nil {
		return err
	}
	if recorded == "" && !hasTerm {
		return checkMajorMinor(3, 4, "neither a storage version nor a raft term recorded: 3.4 or older", version.Version)
	}
	return CheckSnapshotVersion(recorded, version.Version)
}

// CheckSnapshotVersion says whether etcd linked (e.g. "3.6.16") restores a
// snapshot whose recorded storage version is snapshotVersion; "" means none
// was recorded and is read as 3.5, the last etcd that did not record one.
// etcd upgrades data one minor version at a time, so the same minor and the
// one before it are supported; a newer minor, an older one, another major
// or a version that does not parse is refused with ErrUnsupportedVersion.
// Only major and minor count: etcd records the storage version as
// major.minor.0.
func CheckSnapshotVersion(snapshotVersion, linked string) error {
	if snapshotVersion == "" {
		return checkMajorMinor(3, 5, "no storage version recorded", linked)
	}
	recorded := fmt.Sprintf("storage version %q", snapshotVersion)
	major, minor, ok := majorMinor(snapshotVersion)
	if !ok {
		lMajor, lMinor, ok := majorMinor(linked)
		if !ok {
			return unparsableLinked(recorded, linked)
		}
		return fmt.Errorf("%w: the snapshot records etcd %s, which is not a version; this agent restores with etcd %s, which restores snapshots of %s; take the snapshot again from an etcd of one of those versions",
			ErrUnsupportedVersion, recorded, linked, supported(lMajor, lMinor))
	}
	return checkMajorMinor(major, minor, recorded, linked)
}

// checkMajorMinor applies the rule to a snapshot of etcd major.minor;
// recorded says what the snapshot records, for the message.
func checkMajorMinor(major, minor int, recorded, linked string) error {
	lMajor, lMinor, ok := majorMinor(linked)
	if !ok {
		return unparsableLinked(recorded, linked)
	}
	if major == lMajor && (minor == lMinor || minor == lMinor-1) {
		return nil
	}
	if major > lMajor || (major == lMajor && minor > lMinor) {
		return fmt.Errorf("%w: the snapshot was written by etcd %d.%d (%s), newer than this agent's etcd %s, which restores snapshots of %s only; restore it with a triad-agent built with etcd %d.%d",
			ErrUnsupportedVersion, major, minor, recorded, linked, supported(lMajor, lMinor), major, minor)
	}
	return fmt.Errorf("%w: the snapshot was written by etcd %d.%d (%s), older than this agent's etcd %s supports: it restores snapshots of %s only, as etcd upgrades data one minor version at a time; restore it with a triad-agent built with etcd %d.%d or %d.%d, then upgrade etcd one minor version at a time",
		ErrUnsupportedVersion, major, minor, recorded, linked, supported(lMajor, lMinor), major, minor, major, minor+1)
}

// unparsableLinked cannot happen with a released etcd; it is refused
// rather than guessed at.
func unparsableLinked(recorded, linked string) error {
	return fmt.Errorf("%w: the etcd version linked into this agent, %q, does not parse, so whether it restores the snapshot (%s) is unknown; use a triad-agent built with a released etcd",
		ErrUnsupportedVersion, linked, recorded)
}

func supported(major, minor int) string {
	if minor == 0 {
		return fmt.Sprintf("etcd %d.0", major)
	}
	return fmt.Sprintf("etcd %d.%d and %d.%d", major, minor-1, major, minor)
}

// versionPattern accepts what etcd records (major.minor.patch, a release
// may carry a pre-release suffix) and a bare major.minor.
var versionPattern = regexp.MustCompile(`^(\d{1,4})\.(\d{1,4})(\.\d{1,4}(-[0-9A-Za-z.-]+)?)?$`)

func majorMinor(v string) (major, minor int, ok bool) {
	m := versionPattern.FindStringSubmatch(v)
	if m == nil {
		return 0, 0, false
	}
	major, _ = strconv.Atoi(m[1])
	minor, _ = strconv.Atoi(m[2])
	return major, minor, true
}

// readStorageVersion returns a snapshot's recorded storage version as it
// is, and whether it carries a raft term. Unlike etcdutl's snapshot status,
// which reports a storage version that does not parse as none, it keeps
// such bytes so that CheckSnapshotVersion refuses them.
func readStorageVersion(path string) (recorded string, hasTerm bool, err error) {
	db, err := bolt.Open(path, 0o400, &bolt.Options{ReadOnly: true})
	if err != nil {
		return "", false, fmt.Errorf("%w: reading the etcd version of %s: %v", ErrCorrupt, path, err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket([]byte("meta"))
		if meta == nil {
			return fmt.Errorf(`%w: %s has no "meta" bucket: not an etcd v3 database`, ErrCorrupt, path)
		}
		recorded = string(meta.Get([]byte("storageVersion")))
		// etcd reads a term of 0 as none (schema.UnsafeReadConsistentIndex).
		term := meta.Get([]byte("term"))
		hasTerm = len(term) == 8 && binary.BigEndian.Uint64(term) != 0
		return nil
	})
	return recorded, hasTerm, err
}
