package health

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/triad-k8s/triad/agent/etcd"
	"github.com/triad-k8s/triad/agent/staticpods"
)

// Sources are where a report's facts come from; any may be nil when the
// node does not have that part (yet).
type Sources struct {
	APIServer  *APIServer
	EtcdStatus func(context.Context) (etcd.Status, error)
	Pods       func(context.Context) ([]staticpods.Pod, error)
	GateOpen   func() bool
	// DataDir is etcd's data directory; free space is measured on its
	// filesystem.
	DataDir string
}

// Report is one observation of the node.
type Report struct {
	ObservedAt                    time.Time
	APIServerReady, APIServerLive bool
	EtcdHealthy                   bool
	Pods                          []staticpods.Pod
	GateOpen                      bool
	DiskFreeBytes                 uint64
	KubernetesVersion             string
	EtcdVersion                   string
	// Etcd is the local member's view of the cluster; zero when etcd did
	// not answer.
	Etcd     etcd.Status
	Problems []string
}

// Observe assembles a report; each failed source adds a problem instead of
// failing the whole report.
func (s Sources) Observe(ctx context.Context) Report {
	r := Report{ObservedAt: time.Now().UTC()}
	problem := func(err error) { r.Problems = append(r.Problems, err.Error()) }
	if s.APIServer != nil {
		if err := s.APIServer.Ready(ctx); err != nil {
			problem(err)
		} else {
			r.APIServerReady = true
		}
		if err := s.APIServer.Live(ctx); err != nil {
			problem(err)
		} else {
			r.APIServerLive = true
		}
		if v, err := s.APIServer.Version(ctx); err == nil {
			r.KubernetesVersion = v
		}
	}
	if s.EtcdStatus != nil {
		if st, err := s.EtcdStatus(ctx); err != nil {
			problem(err)
		} else {
			r.EtcdHealthy, r.EtcdVersion, r.Etcd = st.Healthy, st.Version, st
			if !st.Healthy {
				problem(errors.New("etcd: linearizable read failed (no leader or no quorum)"))
			}
			for _, a := range st.Alarms {
				problem(errors.New("etcd alarm: " + a))
			}
		}
	}
	if s.Pods != nil {
		if pods, err := s.Pods(ctx); err != nil {
			problem(err)
		} else {
			r.Pods = pods
		}
	}
	if s.GateOpen != nil {
		r.GateOpen = s.GateOpen()
	}
	if s.DataDir != "" {
		if free, err := freeBytes(s.DataDir); err != nil {
			problem(err)
		} else {
			r.DiskFreeBytes = free
		}
	}
	return r
}

// Same reports whether two reports differ only in their time.
func Same(a, b Report) bool {
	a.ObservedAt, b.ObservedAt = time.Time{}, time.Time{}
	return a.APIServerReady == b.APIServerReady && a.APIServerLive == b.APIServerLive &&
		a.EtcdHealthy == b.EtcdHealthy && a.GateOpen == b.GateOpen &&
		a.KubernetesVersion == b.KubernetesVersion && a.EtcdVersion == b.EtcdVersion &&
		a.Etcd.MemberID == b.Etcd.MemberID && a.Etcd.LeaderID == b.Etcd.LeaderID &&
		slices.EqualFunc(a.Etcd.Members, b.Etcd.Members, func(x, y etcd.Member) bool {
			return x.ID == y.ID && x.Name == y.Name && x.IsLearner == y.IsLearner
		}) &&
		slices.Equal(a.Etcd.Alarms, b.Etcd.Alarms) &&
		slices.Equal(a.Problems, b.Problems) &&
		slices.EqualFunc(a.Pods, b.Pods, func(x, y staticpods.Pod) bool {
			return x.Name == y.Name && x.State == y.State && x.Image == y.Image && slices.Equal(x.ContainerIDs, y.ContainerIDs)
		}) &&
		// Free space moves all the time; only a change of 1% or more counts.
		absDiff(a.DiskFreeBytes, b.DiskFreeBytes) <= max(a.DiskFreeBytes, b.DiskFreeBytes)/100
}

func absDiff(a, b uint64) uint64 {
	if a > b {
		return a - b
	}
	return b - a
}

// freeBytes measures the filesystem of path, or of its nearest existing
// parent (the data directory may not exist yet on a new node).
func freeBytes(path string) (uint64, error) {
	for {
		var st syscall.Statfs_t
		err := syscall.Statfs(path, &st)
		if err == nil {
			return st.Bavail * uint64(st.Bsize), nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return 0, &os.PathError{Op: "statfs", Path: path, Err: err}
		}
		parent := filepath.Dir(path)
		if parent == path {
			return 0, &os.PathError{Op: "statfs", Path: path, Err: err}
		}
		path = parent
	}
}
