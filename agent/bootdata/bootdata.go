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
)

// Data is the boot data of a VM.
type Data struct {
	// HoldStaticPods are parked at start so they do not run until the
	// coordinator starts them.
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
