package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	bucketOps     = []byte("operations")
	bucketCurrent = []byte("current")
	bucketEpochs  = []byte("epochs")
)

// ErrNotFound: no such operation.
var ErrNotFound = errors.New("no such operation")

// Journal is the durable record of operations: a bbolt file that one
// coordinator process holds at a time.
type Journal struct {
	db   *bolt.DB
	path string
}

// OpenJournal opens (creating) dir/journal.db. A second coordinator on the
// same state directory waits up to timeout, then fails naming the file.
func OpenJournal(dir string, timeout time.Duration) (*Journal, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "journal.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("journal %s is held by another triad process (one coordinator per cluster state directory at a time)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("opening journal %s: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketOps, bucketCurrent, bucketEpochs} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		db.Close()
		return nil, err
	}
	return &Journal{db: db, path: path}, nil
}

// Close releases the journal.
func (j *Journal) Close() error { return j.db.Close() }

// Save writes rec (fsynced) and makes it its cluster's current operation.
func (j *Journal) Save(rec *Record) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return j.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketOps).Put([]byte(rec.ID), data); err != nil {
			return err
		}
		return tx.Bucket(bucketCurrent).Put([]byte(rec.Cluster), []byte(rec.ID))
	})
}

// Get returns operation id.
func (j *Journal) Get(id string) (*Record, error) {
	var rec *Record
	err := j.db.View(func(tx *bolt.Tx) error {
		data := tx.Bucket(bucketOps).Get([]byte(id))
		if data == nil {
			return fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		rec = &Record{}
		return json.Unmarshal(data, rec)
	})
	return rec, err
}

// Current returns the latest operation of cluster, ErrNotFound if none.
func (j *Journal) Current(cluster string) (*Record, error) {
	var id []byte
	j.db.View(func(tx *bolt.Tx) error {
		id = append(id, tx.Bucket(bucketCurrent).Get([]byte(cluster))...)
		return nil
	})
	if id == nil {
		return nil, fmt.Errorf("%w for cluster %s", ErrNotFound, cluster)
	}
	return j.Get(string(id))
}

// List returns every operation of cluster, oldest first.
func (j *Journal) List(cluster string) ([]*Record, error) {
	var out []*Record
	err := j.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOps).ForEach(func(_, v []byte) error {
			rec := &Record{}
			if err := json.Unmarshal(v, rec); err != nil {
				return err
			}
			if rec.Cluster == cluster {
				out = append(out, rec)
			}
			return nil
		})
	})
	sort.Slice(out, func(a, b int) bool { return out[a].CreatedAt.Before(out[b].CreatedAt) })
	return out, err
}

// NextEpoch returns a fencing epoch for cluster higher than any this
// journal handed out before, and records it. Wall-clock nanoseconds make
// epochs of coordinators on different machines increase too, so the later
// one wins and the earlier one is refused by every agent.
func (j *Journal) NextEpoch(cluster string) (uint64, error) {
	var epoch uint64
	err := j.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEpochs)
		var last uint64
		if v := b.Get([]byte(cluster)); len(v) > 0 {
			fmt.Sscan(string(v), &last)
		}
		epoch = uint64(time.Now().UnixNano())
		epoch = max(epoch, last+1)
		return b.Put([]byte(cluster), []byte(fmt.Sprint(epoch)))
	})
	return epoch, err
}
