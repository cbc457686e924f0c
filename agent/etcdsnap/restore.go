package etcdsnap

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"

	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"
)

// ErrInvalidArgument marks a request that is malformed; nothing was done.
var ErrInvalidArgument = errors.New("invalid argument")

// Membership is the membership a restored member starts with.
type Membership struct {
	// Name of the local member.
	Name string
	// PeerURLs the local member advertises.
	PeerURLs []string
	// InitialCluster lists every member as name=peerURL pairs.
	InitialCluster string
	// ClusterToken is the new initial cluster token.
	ClusterToken string
}

var memberNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// Validate checks that the membership is complete and names the local
// member consistently.
func (m Membership) Validate() error {
	if err := m.validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidArgument, err)
	}
	return nil
}

func (m Membership) validate() error {
	if !memberNamePattern.MatchString(m.Name) {
		return fmt.Errorf("member name %q must be 1 to 63 characters of [A-Za-z0-9._-]", m.Name)
	}
	if m.ClusterToken == "" {
		return fmt.Errorf("a new cluster token is required, so restored members never join the old cluster")
	}
	if len(m.PeerURLs) == 0 {
		return fmt.Errorf("member %q needs at least one peer URL", m.Name)
	}
	for _, u := range m.PeerURLs {
		if err := validateURL(u); err != nil {
			return fmt.Errorf("peer URL: %w", err)
		}
	}
	members, err := ParseInitialCluster(m.InitialCluster)
	if err != nil {
		return err
	}
	mine := members[m.Name]
	for _, u := range m.PeerURLs {
		found := false
		for _, have := range mine {
			found = found || have == u
		}
		if !found {
			return fmt.Errorf("initial cluster %q does not list %s=%s", m.InitialCluster, m.Name, u)
		}
	}
	return nil
}

// ParseInitialCluster parses "name=url,name=url" into the URLs per name.
func ParseInitialCluster(s string) (map[string][]string, error) {
	members := map[string][]string{}
	if s == "" {
		return nil, fmt.Errorf("initial cluster is empty")
	}
	for _, pair := range strings.Split(s, ",") {
		name, u, ok := strings.Cut(pair, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("initial cluster entry %q is not name=peerURL", pair)
		}
		if err := validateURL(u); err != nil {
			return nil, fmt.Errorf("initial cluster entry %q: %w", pair, err)
		}
		members[name] = append(members[name], u)
	}
	return members, nil
}

func validateURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Port() == "" || (u.Path != "" && u.Path != "/") {
		return fmt.Errorf("%q must be http(s)://host:port", s)
	}
	return nil
}

// RestoreRequest restores a snapshot into a node's etcd data directory.
type RestoreRequest struct {
	// SnapshotPath and SHA256 name the verified snapshot to restore.
	SnapshotPath string
	SHA256       string
	// DataDir is etcd's data directory, as named in its manifest. It is
	// never overwritten: the existing one is renamed aside.
	DataDir string
	// OperationID names the directories of this restore.
	OperationID string
	Membership  Membership
	// BumpRevision and MarkCompacted keep watchers from seeing the revision
	// go backwards; both or neither.
	BumpRevision  uint64
	MarkCompacted bool
}

// RestoreResult says where the data went.
type RestoreResult struct {
	// DataDir holds the restored data.
	DataDir string
	// PreviousDataDir holds the data directory that was there before;
	// empty if there was none. It is deleted by Commit.
	PreviousDataDir string
	// Revision of the restored store (before any bump).
	Revision int64
}

// Restore verifies the snapshot, restores it into a staging directory
// inside DataDir and then swaps etcd's member directory: the old one is
// moved aside (kept until Commit) and the restored one takes its place, so
// etcd's manifest keeps pointing at the same path. Everything happens
// inside DataDir because on a real node DataDir is often its own disk
// (kubeadm's /var/lib/etcd on a data volume): a rename out of it fails with
// EXDEV and renaming the mount point itself with EBUSY. It refuses while an
// etcd process holds DataDir, and refuses a snapshot of an etcd version the
// linked etcdutl does not restore (CheckRestorable), both before DataDir is
// touched.
func Restore(req RestoreRequest) (RestoreResult, error) {
	if !filepath.IsAbs(req.DataDir) {
		return RestoreResult{}, fmt.Errorf("%w: data directory %q must be absolute", ErrInvalidArgument, req.DataDir)
	}
	if err := ValidateID(req.OperationID); err != nil {
		return RestoreResult{}, fmt.Errorf("operation id: %w", err)
	}
	if err := req.Membership.Validate(); err != nil {
		return RestoreResult{}, err
	}
	if req.MarkCompacted != (req.BumpRevision > 0) {
		return RestoreResult{}, fmt.Errorf("%w: bump-revision and mark-compacted go together (got bump %d, mark-compacted %v)", ErrInvalidArgument, req.BumpRevision, req.MarkCompacted)
	}
	st, err := VerifyFile(req.SnapshotPath, req.SHA256)
	if err != nil {
		return RestoreResult{}, err
	}
	// Before the data directory is touched: etcdutl restores data of any
	// etcd version without looking, and etcd finds out only when it starts,
	// with the old data already moved aside: it refuses newer data then,
	// and starts on 3.4 data with no more than a warning.
	if err := CheckRestorable(req.SnapshotPath); err != nil {
		return RestoreResult{}, err
	}
	if err := ensureNotInUse(req.DataDir); err != nil {
		return RestoreResult{}, err
	}
	if err := os.MkdirAll(req.DataDir, 0o700); err != nil {
		return RestoreResult{}, fmt.Errorf("creating the data directory: %w", err)
	}

	staging := filepath.Join(req.DataDir, ".triad-restore-"+req.OperationID)
	// A staging directory can only be left over by an earlier attempt of
	// this same operation that died mid-restore; it never held live data.
	if err := os.RemoveAll(staging); err != nil {
		return RestoreResult{}, fmt.Errorf("removing leftover staging directory: %w", err)
	}
	err = snapshot.NewV3(zap.NewNop()).Restore(snapshot.RestoreConfig{
		SnapshotPath:        req.SnapshotPath,
		Name:                req.Membership.Name,
		OutputDataDir:       staging,
		PeerURLs:            req.Membership.PeerURLs,
		InitialCluster:      req.Membership.InitialCluster,
		InitialClusterToken: req.Membership.ClusterToken,
		RevisionBump:        req.BumpRevision,
		MarkCompacted:       req.MarkCompacted,
	})
	if err != nil {
		os.RemoveAll(staging)
		return RestoreResult{}, fmt.Errorf("restoring snapshot: %w", err)
	}

	res := RestoreResult{DataDir: req.DataDir, Revision: st.Revision}
	if res.PreviousDataDir, err = moveAside(req.DataDir, req.OperationID); err != nil {
		os.RemoveAll(staging)
		return RestoreResult{}, err
	}
	member := filepath.Join(req.DataDir, "member")
	if err := os.Rename(filepath.Join(staging, "member"), member); err != nil {
		if res.PreviousDataDir != "" {
			// Put the old data back: the node must stay as it was.
			if undo := os.Rename(filepath.Join(res.PreviousDataDir, "member"), member); undo != nil {
				return RestoreResult{}, errors.Join(fmt.Errorf("installing restored data: %w", err), fmt.Errorf("restoring old data directory from %s: %w", res.PreviousDataDir, undo))
			}
			os.Remove(res.PreviousDataDir)
			res.PreviousDataDir = ""
		}
		os.RemoveAll(staging)
		return RestoreResult{}, fmt.Errorf("installing restored data: %w", err)
	}
	if err := os.RemoveAll(staging); err != nil {
		return RestoreResult{}, fmt.Errorf("removing the staging directory: %w", err)
	}
	return res, nil
}

// Empty moves dataDir's member directory aside (kept until Commit, like a
// restore's previous data) so that etcd starts from nothing: how a member
// joins an existing cluster. It returns where the old data went ("" if
// there was none) and refuses while an etcd process holds dataDir.
func Empty(dataDir, operationID string) (previous string, err error) {
	if !filepath.IsAbs(dataDir) {
		return "", fmt.Errorf("%w: data directory %q must be absolute", ErrInvalidArgument, dataDir)
	}
	if err := ValidateID(operationID); err != nil {
		return "", fmt.Errorf("operation id: %w", err)
	}
	if err := ensureNotInUse(dataDir); err != nil {
		return "", err
	}
	return moveAside(dataDir, operationID)
}

// previousPrefix names the directories, inside a data directory, that hold
// member directories moved aside.
const previousPrefix = ".triad-previous-"

// moveAside moves dataDir/member into dataDir/.triad-previous-<operation>
// if it exists, staying on dataDir's filesystem. A retry of the same
// operation finds it already moved.
func moveAside(dataDir, operationID string) (string, error) {
	member := filepath.Join(dataDir, "member")
	previous := filepath.Join(dataDir, previousPrefix+operationID)
	had, err := exists(member)
	if err != nil || !had {
		if err == nil {
			if moved, _ := exists(filepath.Join(previous, "member")); moved {
				return previous, nil
			}
		}
		return "", err
	}
	if err := os.MkdirAll(previous, 0o700); err != nil {
		return "", fmt.Errorf("moving the old data aside: %w", err)
	}
	if err := os.Rename(member, filepath.Join(previous, "member")); err != nil {
		return "", fmt.Errorf("moving the old data aside: %w", err)
	}
	return previous, nil
}

// Commit deletes the data that restores into dataDir kept aside (and, from
// agents before the data lived inside dataDir, its .triad-previous-*
// siblings). Call it only once the coordinator has confirmed the new
// cluster.
func Commit(dataDir string) (removed []string, err error) {
	inside, err := filepath.Glob(filepath.Join(dataDir, previousPrefix+"*"))
	if err != nil {
		return nil, err
	}
	siblings, err := filepath.Glob(dataDir + previousPrefix + "*")
	if err != nil {
		return nil, err
	}
	for _, p := range append(inside, siblings...) {
		if err := os.RemoveAll(p); err != nil {
			return removed, fmt.Errorf("removing %s: %w", p, err)
		}
		removed = append(removed, p)
	}
	return removed, nil
}

// ensureNotInUse refuses when a process holds the bbolt lock of the data
// directory's database: etcd takes an exclusive flock on it while running.
func ensureNotInUse(dataDir string) error {
	db := filepath.Join(dataDir, "member", "snap", "db")
	f, err := os.Open(db)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("checking %s: %w", db, err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("%w: %s is locked by a running etcd; stop the etcd static pod first", ErrDataDirInUse, db)
		}
		return fmt.Errorf("checking %s: %w", db, err)
	}
	return syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}
