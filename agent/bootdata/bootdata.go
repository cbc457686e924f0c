// Package bootdata is what the coordinator hands a new VM's triad-agent
// through the cloud's user data, and how the agent reads it. It is its own
// package so that the coordinator can write it without importing the agent.
package bootdata

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/triad-k8s/triad/agent/atomicfile"
)

// Data is the boot data of a VM.
type Data struct {
	// ID names this boot data among all a cloud ever hands a VM (the
	// operation and the node it creates): a cloud serves the same user data
	// on every boot, and the agent applies boot data with a given ID once.
	// Boot data without an ID applies at every start.
	ID string `json:"id,omitempty"`
	// HoldStaticPods are parked at the first start so they do not run
	// until the coordinator starts them. A reboot or an agent restart later
	// runs every static pod the kubelet has.
	HoldStaticPods []string `json:"holdStaticPods"`
}

// Marshal encodes d as the cloud's user data.
func (d Data) Marshal() ([]byte, error) { return json.Marshal(d) }

// Read reads the boot data at path; a VM booted without boot data (no
// file) has none, which is not an error. Unknown fields are.
func Read(path string) (Data, error) {
	var d Data
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return d, nil
	}
	if err != nil {
		return d, fmt.Errorf("reading boot data: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return d, fmt.Errorf("boot data %s: %w", path, err)
	}
	return d, nil
}

// Ledger records, in the agent's state directory on the root disk, which
// boot data the agent has applied.
type Ledger struct{ path string }

// LedgerEntry is one applied boot data.
type LedgerEntry struct {
	ID string    `json:"id"`
	At time.Time `json:"at"`
}

// OpenLedger returns the ledger in stateDir.
func OpenLedger(stateDir string) Ledger {
	return Ledger{path: filepath.Join(stateDir, "boot-data-applied.json")}
}

func (l Ledger) read() ([]LedgerEntry, error) {
	raw, err := os.ReadFile(l.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the boot-data ledger: %w", err)
	}
	var entries []LedgerEntry
	if err := json.Unmarshal(raw, &entries); err != nil {
		return nil, fmt.Errorf("boot-data ledger %s is corrupt: %w", l.path, err)
	}
	return entries, nil
}

// Applied reports whether boot data id was applied, and when. An empty id
// never was.
func (l Ledger) Applied(id string) (bool, time.Time, error) {
	if id == "" {
		return false, time.Time{}, nil
	}
	entries, err := l.read()
	if err != nil {
		return false, time.Time{}, err
	}
	i := slices.IndexFunc(entries, func(e LedgerEntry) bool { return e.ID == id })
	if i < 0 {
		return false, time.Time{}, nil
	}
	return true, entries[i].At, nil
}

// Record notes that boot data id has been applied; recording an id twice
// keeps the first time.
func (l Ledger) Record(id string, at time.Time) error {
	if id == "" {
		return nil
	}
	entries, err := l.read()
	if err != nil {
		return err
	}
	if slices.ContainsFunc(entries, func(e LedgerEntry) bool { return e.ID == id }) {
		return nil
	}
	raw, err := json.Marshal(append(entries, LedgerEntry{ID: id, At: at.UTC()}))
	if err != nil {
		return err
	}
	if err := atomicfile.Write(l.path, raw, 0o600); err != nil {
		return fmt.Errorf("recording boot data %s as applied: %w", id, err)
	}
	return nil
}
