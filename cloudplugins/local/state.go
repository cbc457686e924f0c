package local

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/triad-k8s/triad/agent/atomicfile"
)

// state is everything the local cloud knows, in stateDir/state.json. Every
// change happens under an exclusive flock on stateDir/state.lock, so the
// plugin processes of concurrent triad invocations never lose each other's
// writes.
type state struct {
	NextID        int                      `json:"nextID"`
	Instances     map[string]*instance     `json:"instances"`
	Snapshots     map[string]*snapshot     `json:"snapshots"`
	Addresses     map[string]*address      `json:"addresses"`
	LoadBalancers map[string]*loadBalancer `json:"loadBalancers"`
	// Tokens maps "kind/idempotency token" to the id it created.
	Tokens map[string]string `json:"tokens"`
	// Faults are calls that fail once, set through the admin interface.
	Faults map[string]int `json:"faults"`
	// Aux are other long-lived processes of the local cloud (kwok), by
	// name, stopped by Down.
	Aux map[string]auxProcess `json:"aux"`

	// after holds actions that wait on processes; they run once the lock
	// is released, because the processes themselves read the state.
	after []func()
}

// later queues f to run after the state is saved and unlocked.
func (s *state) later(f func()) { s.after = append(s.after, f) }

// auxProcess is a long-lived process outside any VM; Binary tells it from
// another process that reuses its pid.
type auxProcess struct {
	PID    int
	Binary string
}

type instance struct {
	ID, Name, Zone, Image string
	// Running is the wanted state; the supervisor process makes it so.
	Running          bool
	PrivateAddressID string
	PublicAddressID  string
	Labels           map[string]string
	CreatedAt        time.Time
	// PID of the VM's supervisor while running.
	PID int
}

type snapshot struct {
	ID, SourceInstanceID, SourceImage string
	SizeBytes                         int64
	Labels                            map[string]string
	CreatedAt                         time.Time
}

type address struct {
	ID, IP string
	Public bool
	// Static addresses (made with CreateVM) outlive their instance; an
	// instance's own address from CreateInstance goes with it.
	Static         bool
	InstanceID     string
	LoadBalancerID string
	// ForwarderPID runs a public address's forwarder while attached.
	ForwarderPID int
}

type loadBalancer struct {
	ID, Name, AddressID string
	Public              bool
	ListenerPort        int
	BackendPort         int
	Backends            []string
	HealthCheck         healthCheck
	TrafficEnabled      bool
	Labels              map[string]string
	PID                 int
}

type healthCheck struct {
	Port               int
	Path               string
	Interval, Timeout  time.Duration
	Healthy, Unhealthy int
}

func (s *state) init() {
	if s.Instances == nil {
		s.Instances = map[string]*instance{}
	}
	if s.Snapshots == nil {
		s.Snapshots = map[string]*snapshot{}
	}
	if s.Addresses == nil {
		s.Addresses = map[string]*address{}
	}
	if s.LoadBalancers == nil {
		s.LoadBalancers = map[string]*loadBalancer{}
	}
	if s.Tokens == nil {
		s.Tokens = map[string]string{}
	}
	if s.Faults == nil {
		s.Faults = map[string]int{}
	}
	if s.Aux == nil {
		s.Aux = map[string]auxProcess{}
	}
}

func (s *state) newID(prefix string) string {
	s.NextID++
	return fmt.Sprintf("%s-%04d", prefix, s.NextID)
}

// store reads and writes the state file.
type store struct{ dir string }

func (st store) statePath() string { return filepath.Join(st.dir, "state.json") }

// update runs fn on the current state under the lock and saves the result
// if fn succeeds.
func (st store) update(fn func(*state) error) error {
	return st.locked(true, fn)
}

// view runs fn on the current state under the lock without saving.
func (st store) view(fn func(*state) error) error {
	return st.locked(false, fn)
}

func (st store) locked(write bool, fn func(*state) error) error {
	s := &state{}
	err := st.lockedState(s, write, fn)
	for _, f := range s.after {
		f()
	}
	return err
}

func (st store) lockedState(s *state, write bool, fn func(*state) error) error {
	if err := os.MkdirAll(st.dir, 0o700); err != nil {
		return fmt.Errorf("local cloud state: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(st.dir, "state.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("local cloud state: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("locking local cloud state: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	data, err := os.ReadFile(st.statePath())
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("reading local cloud state: %w", err)
	default:
		if err := json.Unmarshal(data, s); err != nil {
			return fmt.Errorf("local cloud state %s is corrupt: %w", st.statePath(), err)
		}
	}
	s.init()
	if err := fn(s); err != nil {
		return err
	}
	if !write {
		return nil
	}
	out, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(st.statePath(), out, 0o600)
}
