// Package staticpods stops, starts and parks the kubelet's static pods on a
// control-plane node. A pod is stopped by atomically renaming its manifest
// out of the kubelet's manifest directory into triad's parked directory and
// then waiting until the container runtime reports its containers gone; it
// is started by renaming the manifest back and waiting until its containers
// run and its own health endpoint answers. The package owns those two
// directories; it asks the container runtime (through Runtime) and the
// component's health endpoint (through Prober), and touches nothing else.
package staticpods

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/triad-k8s/triad/agent/atomicfile"
)

var (
	// ErrInvalidName means a pod name is not a plain manifest name.
	ErrInvalidName = errors.New("invalid static pod name")
	// ErrUnknownPod means no manifest of that name exists, running or parked.
	ErrUnknownPod = errors.New("unknown static pod")
	// ErrTimeout means containers did not reach the wanted state in time.
	ErrTimeout = errors.New("timed out")
)

// State of a managed static pod.
type State string

const (
	Running  State = "running"  // manifest in place, containers run
	Starting State = "starting" // manifest in place, containers not (yet) running
	Stopped  State = "stopped"  // manifest parked, no container runs
	Stopping State = "stopping" // manifest parked, containers still run
)

// Pod is one managed static pod.
type Pod struct {
	Name         string   `json:"name"`
	State        State    `json:"state"`
	ContainerIDs []string `json:"containerIDs,omitempty"`
	Image        string   `json:"image,omitempty"`
}

// Runtime is the container runtime as the kubelet's CRI exposes it.
type Runtime interface {
	// RunningContainers returns the ids of the running containers of the
	// static pod whose manifest is named name.
	RunningContainers(ctx context.Context, name string) ([]string, error)
}

// Prober checks a component's own health endpoint.
type Prober interface {
	// Healthy reports whether the component of manifest m answers its
	// health endpoint; components without one are healthy once running.
	Healthy(ctx context.Context, m *Manifest) error
}

// Manager manages the static pods of one node.
type Manager struct {
	ManifestDir string
	ParkedDir   string
	Runtime     Runtime
	Prober      Prober
	// PollInterval between runtime checks; defaults to 250ms.
	PollInterval time.Duration
}

var namePattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// ValidateName checks that name is a manifest name and not a path.
func ValidateName(name string) error {
	if !namePattern.MatchString(name) {
		return fmt.Errorf("%w: %q (want a manifest name such as kube-apiserver)", ErrInvalidName, name)
	}
	return nil
}

func (m *Manager) manifestPath(name string) string { return filepath.Join(m.ManifestDir, name+".yaml") }
func (m *Manager) parkedPath(name string) string   { return filepath.Join(m.ParkedDir, name+".yaml") }

func (m *Manager) poll() time.Duration {
	if m.PollInterval > 0 {
		return m.PollInterval
	}
	return 250 * time.Millisecond
}

// where says where a pod's manifest is: active, parked, or nowhere.
func (m *Manager) where(name string) (active, parked bool, err error) {
	active, err = fileExists(m.manifestPath(name))
	if err != nil {
		return false, false, err
	}
	parked, err = fileExists(m.parkedPath(name))
	return active, parked, err
}

// checkNames validates names and that each pod is known.
func (m *Manager) checkNames(names []string) error {
	if len(names) == 0 {
		return fmt.Errorf("%w: no pod named", ErrInvalidName)
	}
	for _, n := range names {
		if err := ValidateName(n); err != nil {
			return err
		}
		active, parked, err := m.where(n)
		if err != nil {
			return err
		}
		if !active && !parked {
			return fmt.Errorf("%w: %q has no manifest in %s or %s", ErrUnknownPod, n, m.ManifestDir, m.ParkedDir)
		}
	}
	return nil
}

// Park moves the manifests of names out of the manifest directory without
// waiting; the kubelet will stop their containers. Already parked pods are
// left as they are.
func (m *Manager) Park(names []string) error {
	if err := m.checkNames(names); err != nil {
		return err
	}
	if err := os.MkdirAll(m.ParkedDir, 0o700); err != nil {
		return fmt.Errorf("creating parked directory: %w", err)
	}
	for _, n := range names {
		active, parked, err := m.where(n)
		if err != nil {
			return err
		}
		switch {
		case active && parked:
			// Both exist only if someone put a manifest back by hand; the
			// active one is the newer truth, keep it as the parked copy.
			fallthrough
		case active:
			if err := move(m.manifestPath(n), m.parkedPath(n)); err != nil {
				return fmt.Errorf("parking %s: %w", n, err)
			}
		}
	}
	return nil
}

// Stop parks the manifests of names and waits until the runtime reports no
// running container for any of them.
func (m *Manager) Stop(ctx context.Context, names []string) ([]Pod, error) {
	if err := m.Park(names); err != nil {
		return nil, err
	}
	err := m.waitFor(ctx, names, func(p Pod) bool { return len(p.ContainerIDs) == 0 }, nil)
	pods, listErr := m.report(ctx, names)
	return pods, errors.Join(err, listErr)
}

// Start moves parked manifests back and waits until every named pod's
// containers run and its health endpoint answers.
func (m *Manager) Start(ctx context.Context, names []string) ([]Pod, error) {
	return m.start(ctx, names, m.healthy)
}

// StartRunning is Start without the health check: it returns once the
// containers run. An etcd learner needs it: etcd's /readyz refuses
// learners until they are promoted.
func (m *Manager) StartRunning(ctx context.Context, names []string) ([]Pod, error) {
	return m.start(ctx, names, nil)
}

func (m *Manager) start(ctx context.Context, names []string, check func(context.Context, string) error) ([]Pod, error) {
	if err := m.checkNames(names); err != nil {
		return nil, err
	}
	for _, n := range names {
		active, parked, err := m.where(n)
		if err != nil {
			return nil, err
		}
		if parked && !active {
			if err := move(m.parkedPath(n), m.manifestPath(n)); err != nil {
				return nil, fmt.Errorf("starting %s: %w", n, err)
			}
		}
	}
	err := m.waitFor(ctx, names, func(p Pod) bool { return len(p.ContainerIDs) > 0 }, check)
	pods, listErr := m.report(ctx, names)
	return pods, errors.Join(err, listErr)
}

func (m *Manager) healthy(ctx context.Context, name string) error {
	if m.Prober == nil {
		return nil
	}
	man, err := ReadManifest(m.manifestPath(name))
	if err != nil {
		return err
	}
	return m.Prober.Healthy(ctx, man)
}

// waitFor polls until every pod satisfies done (and check, if given, passes)
// or ctx ends; on timeout the error names the pods still not there.
func (m *Manager) waitFor(ctx context.Context, names []string, done func(Pod) bool, check func(context.Context, string) error) error {
	pending := map[string]string{}
	for {
		pods, err := m.get(ctx, names)
		if err != nil && ctx.Err() == nil {
			return err
		}
		if err == nil {
			pending = map[string]string{}
			for _, p := range pods {
				if !done(p) {
					pending[p.Name] = fmt.Sprintf("%s (%s, containers %v)", p.Name, p.State, p.ContainerIDs)
					continue
				}
				if check != nil {
					if err := check(ctx, p.Name); err != nil {
						pending[p.Name] = fmt.Sprintf("%s (running, not healthy: %v)", p.Name, err)
					}
				}
			}
			if len(pending) == 0 && ctx.Err() == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			var still []string
			for _, n := range names {
				if s, ok := pending[n]; ok {
					still = append(still, s)
				}
			}
			return fmt.Errorf("%w waiting for static pods: still %s: %w", ErrTimeout, strings.Join(still, "; "), ctx.Err())
		case <-time.After(m.poll()):
		}
	}
}

// report lists names for a response even when ctx has run out.
func (m *Manager) report(ctx context.Context, names []string) ([]Pod, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	return m.get(ctx, names)
}

// List returns every managed pod, active or parked, sorted by name.
func (m *Manager) List(ctx context.Context) ([]Pod, error) {
	names := map[string]bool{}
	for _, dir := range []string{m.ManifestDir, m.ParkedDir} {
		entries, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("listing %s: %w", dir, err)
		}
		for _, e := range entries {
			n, ok := strings.CutSuffix(e.Name(), ".yaml")
			if ok && !e.IsDir() && ValidateName(n) == nil {
				names[n] = true
			}
		}
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	return m.get(ctx, sorted)
}

func (m *Manager) get(ctx context.Context, names []string) ([]Pod, error) {
	pods := make([]Pod, 0, len(names))
	for _, n := range names {
		active, _, err := m.where(n)
		if err != nil {
			return nil, err
		}
		ids, err := m.Runtime.RunningContainers(ctx, n)
		if err != nil {
			return nil, fmt.Errorf("asking the container runtime about %s: %w", n, err)
		}
		slices.Sort(ids)
		p := Pod{Name: n, ContainerIDs: ids}
		switch {
		case active && len(ids) > 0:
			p.State = Running
		case active:
			p.State = Starting
		case len(ids) > 0:
			p.State = Stopping
		default:
			p.State = Stopped
		}
		path := m.parkedPath(n)
		if active {
			path = m.manifestPath(n)
		}
		if man, err := ReadManifest(path); err == nil && len(man.Pod.Spec.Containers) > 0 {
			p.Image = man.Pod.Spec.Containers[0].Image
		}
		pods = append(pods, p)
	}
	return pods, nil
}

func fileExists(path string) (bool, error) {
	_, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// CurrentPath returns the file that holds name's manifest now: in the
// manifest directory when active, in the parked directory when parked.
func (m *Manager) CurrentPath(name string) (string, error) {
	if err := m.checkNames([]string{name}); err != nil {
		return "", err
	}
	active, _, err := m.where(name)
	if err != nil {
		return "", err
	}
	if active {
		return m.manifestPath(name), nil
	}
	return m.parkedPath(name), nil
}

// move renames src to dst, or, when they are on different filesystems
// (/etc and /var are separate partitions on many hardened nodes), writes
// dst atomically and then removes src. A crash in between leaves both; the
// callers treat the manifest directory's copy as the truth.
func move(src, dst string) error {
	err := os.Rename(src, dst)
	if !errors.Is(err, syscall.EXDEV) {
		return err
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	info, err := os.Stat(src)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(dst, data, info.Mode().Perm()); err != nil {
		return err
	}
	return os.Remove(src)
}
