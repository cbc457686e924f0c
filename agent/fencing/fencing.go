// Package fencing keeps the agent's fencing epochs. Every request that changes
// the node carries the coordinator's epoch; the agent remembers the highest
// epoch it has accepted per cluster, on disk, and refuses anything lower. A
// coordinator that takes over an operation bumps the epoch, so a stale
// coordinator that wakes up later can no longer act.
//
// The package owns one file in the agent's state directory and nothing else.
package fencing

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sync"

	"github.com/triad-k8s/triad/agent/atomicfile"
)

var (
	// ErrInvalidHeader means the request header is missing or malformed.
	ErrInvalidHeader = errors.New("invalid request header")
	// ErrWrongCluster means the request was meant for another cluster.
	ErrWrongCluster = errors.New("wrong cluster")
	// ErrStaleEpoch means a newer coordinator has already acted on this node.
	ErrStaleEpoch = errors.New("stale epoch")
)

// The agent refuses a fenced request with gRPC code FailedPrecondition and
// a google.rpc.ErrorInfo detail of ErrorDomain and one of these reasons;
// the coordinator decodes the detail (agentclient.Fenced), never the text.
const (
	ErrorDomain        = "triad.dev"
	ReasonStaleEpoch   = "STALE_EPOCH"
	ReasonWrongCluster = "WRONG_CLUSTER"
)

var operationIDPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,128}$`)

// ValidateOperationID checks the syntax of an operation id.
func ValidateOperationID(id string) error {
	if !operationIDPattern.MatchString(id) {
		return fmt.Errorf("%w: operation id %q must be 1 to 128 characters of [A-Za-z0-9._-]", ErrInvalidHeader, id)
	}
	return nil
}

// Header is the part of a request that fencing looks at.
type Header struct {
	OperationID string
	Epoch       uint64
	Cluster     string
}

// Store persists the highest accepted epoch per cluster.
type Store struct {
	cluster string
	path    string

	mu     sync.Mutex
	epochs map[string]uint64
}

type fileFormat struct {
	// Epochs maps a cluster name to the highest epoch accepted for it.
	Epochs map[string]uint64 `json:"epochs"`
}

// Open loads the store of an agent that belongs to cluster from
// stateDir/fencing.json; a missing file is an empty store.
func Open(stateDir, cluster string) (*Store, error) {
	s := &Store{cluster: cluster, path: filepath.Join(stateDir, "fencing.json"), epochs: map[string]uint64{}}
	data, err := os.ReadFile(s.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return s, nil
	case err != nil:
		return nil, fmt.Errorf("reading fencing state: %w", err)
	}
	var f fileFormat
	if err := json.Unmarshal(data, &f); err != nil {
		// Refusing to start is safer than forgetting epochs: a forgotten epoch
		// would let a stale coordinator act again.
		return nil, fmt.Errorf("fencing state %s is corrupt, refusing to start: %w", s.path, err)
	}
	for c, e := range f.Epochs {
		s.epochs[c] = e
	}
	return s, nil
}

// Highest returns the highest epoch accepted for the agent's cluster.
func (s *Store) Highest() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.epochs[s.cluster]
}

// Admit checks h and, when its epoch is newer than any seen, persists it
// before returning, so the epoch survives a crash right after the check.
func (s *Store) Admit(h Header) error {
	if err := ValidateOperationID(h.OperationID); err != nil {
		return err
	}
	if h.Epoch == 0 {
		return fmt.Errorf("%w: epoch must be greater than 0", ErrInvalidHeader)
	}
	if h.Cluster != s.cluster {
		return fmt.Errorf("%w: this agent belongs to cluster %q, the request is for %q", ErrWrongCluster, s.cluster, h.Cluster)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	highest := s.epochs[h.Cluster]
	switch {
	case h.Epoch < highest:
		return fmt.Errorf("%w: request epoch %d is lower than %d, already accepted from another coordinator for cluster %q", ErrStaleEpoch, h.Epoch, highest, h.Cluster)
	case h.Epoch == highest:
		return nil
	}
	next := make(map[string]uint64, len(s.epochs))
	for c, e := range s.epochs {
		next[c] = e
	}
	next[h.Cluster] = h.Epoch
	if err := s.persist(next); err != nil {
		return err
	}
	s.epochs = next
	return nil
}

func (s *Store) persist(epochs map[string]uint64) error {
	data, err := json.MarshalIndent(fileFormat{Epochs: epochs}, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(s.path, data, 0o600); err != nil {
		return fmt.Errorf("persisting epoch: %w", err)
	}
	return nil
}
