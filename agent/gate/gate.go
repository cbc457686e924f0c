// Package gate owns the agent's load-balancer gate: a switch, persisted in
// the agent's state directory, that decides whether the node's health-check
// endpoint tells the load balancers to send it traffic. The gate starts
// closed on a new node, so a VM booted from a clone never takes traffic until
// the coordinator opens it.
package gate

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/triad-k8s/triad/agent/atomicfile"
)

// State is the persisted state of the gate.
type State struct {
	Open      bool      `json:"open"`
	ChangedAt time.Time `json:"changedAt"`
}

// Gate is the persisted switch.
type Gate struct {
	path string
	now  func() time.Time

	mu    sync.Mutex
	state State
}

// Open loads the gate from stateDir/gate.json; a missing file is a closed
// gate.
func Open(stateDir string) (*Gate, error) {
	g := &Gate{path: filepath.Join(stateDir, "gate.json"), now: time.Now}
	data, err := os.ReadFile(g.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return g, nil
	case err != nil:
		return nil, fmt.Errorf("reading gate state: %w", err)
	}
	if err := json.Unmarshal(data, &g.state); err != nil {
		return nil, fmt.Errorf("gate state %s is corrupt: %w", g.path, err)
	}
	return g, nil
}

// State returns the current state.
func (g *Gate) State() State {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.state
}

// Set opens or closes the gate, persisting the change before it takes
// effect. It reports whether the state changed.
func (g *Gate) Set(open bool) (changed bool, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.state.Open == open {
		return false, nil
	}
	next := State{Open: open, ChangedAt: g.now().UTC()}
	data, err := json.Marshal(next)
	if err != nil {
		return false, err
	}
	if err := atomicfile.Write(g.path, data, 0o600); err != nil {
		return false, fmt.Errorf("persisting gate state: %w", err)
	}
	g.state = next
	return true, nil
}
