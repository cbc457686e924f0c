package fencing_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/triad-k8s/triad/agent/fencing"
)

func TestAdmit(t *testing.T) {
	dir := t.TempDir()
	s, err := fencing.Open(dir, "c1")
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name string
		h    fencing.Header
		want error
	}{
		{"a first epoch is accepted", fencing.Header{"op", 5, "c1"}, nil},
		{"the same epoch is accepted again", fencing.Header{"op", 5, "c1"}, nil},
		{"a lower epoch is refused", fencing.Header{"op", 4, "c1"}, fencing.ErrStaleEpoch},
		{"a higher epoch takes over", fencing.Header{"op2", 9, "c1"}, nil},
		{"the previous holder is now stale", fencing.Header{"op", 5, "c1"}, fencing.ErrStaleEpoch},
		{"another cluster is refused", fencing.Header{"op", 10, "c2"}, fencing.ErrWrongCluster},
		{"epoch zero is invalid", fencing.Header{"op", 0, "c1"}, fencing.ErrInvalidHeader},
		{"a bad operation id is invalid", fencing.Header{"a b", 10, "c1"}, fencing.ErrInvalidHeader},
	}
	for _, st := range steps {
		if err := s.Admit(st.h); !errors.Is(err, st.want) {
			t.Fatalf("%s: Admit(%+v) = %v, want %v", st.name, st.h, err, st.want)
		}
	}
	if s.Highest() != 9 {
		t.Errorf("Highest = %d, want 9", s.Highest())
	}
	reopened, err := fencing.Open(dir, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if err := reopened.Admit(fencing.Header{"op", 8, "c1"}); !errors.Is(err, fencing.ErrStaleEpoch) {
		t.Fatalf("after reopen, epoch 8: %v, want ErrStaleEpoch", err)
	}
}

func TestCorruptStateRefusesToOpen(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "fencing.json"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := fencing.Open(dir, "c1"); err == nil {
		t.Fatal("opened a corrupt fencing store; a forgotten epoch would let a stale coordinator act")
	}
}
