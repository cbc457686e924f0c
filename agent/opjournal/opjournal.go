// Package opjournal remembers the results of the agent's act-once RPCs
// (restore a snapshot, add an etcd member, issue certificates, rewrite
// manifests), keyed by operation id, method and request, in a bbolt file in
// the agent's state directory. A coordinator that lost a reply retries with
// the same operation id and gets the first result instead of a second
// action. It stores responses only; it owns nothing else on the node.
package opjournal

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

var bucket = []byte("results")

// Journal is the on-disk record of act-once results.
type Journal struct {
	db *bolt.DB
}

// Open opens stateDir/operations.db.
func Open(stateDir string) (*Journal, error) {
	db, err := bolt.Open(filepath.Join(stateDir, "operations.db"), 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("opening operation journal: %w", err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucket)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("initializing operation journal: %w", err)
	}
	return &Journal{db: db}, nil
}

// Close closes the file.
func (j *Journal) Close() error { return j.db.Close() }

// Key identifies one request of one operation. The request's "header" field
// (which carries the epoch) is left out, so a coordinator that took over the
// operation with a higher epoch still finds the first result.
func Key(operationID, method string, req proto.Message) (string, error) {
	clone := proto.Clone(req)
	m := clone.ProtoReflect()
	if f := m.Descriptor().Fields().ByName("header"); f != nil {
		m.Clear(f)
	}
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(clone)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(data)
	return operationID + "\x00" + method + "\x00" + hex.EncodeToString(sum[:]), nil
}

// Lookup returns the recorded response for key, if any.
func (j *Journal) Lookup(key string) (proto.Message, bool, error) {
	var raw []byte
	if err := j.db.View(func(tx *bolt.Tx) error {
		raw = append(raw, tx.Bucket(bucket).Get([]byte(key))...)
		return nil
	}); err != nil {
		return nil, false, err
	}
	if raw == nil {
		return nil, false, nil
	}
	var a anypb.Any
	if err := proto.Unmarshal(raw, &a); err != nil {
		return nil, false, fmt.Errorf("decoding recorded result: %w", err)
	}
	msg, err := a.UnmarshalNew()
	if err != nil {
		return nil, false, fmt.Errorf("decoding recorded result: %w", err)
	}
	return msg, true, nil
}

// Record stores resp under key, synced to disk before it returns.
func (j *Journal) Record(key string, resp proto.Message) error {
	a, err := anypb.New(resp)
	if err != nil {
		return err
	}
	raw, err := proto.Marshal(a)
	if err != nil {
		return err
	}
	return j.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).Put([]byte(key), raw)
	})
}
