package engine_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/triad-k8s/triad/coordinator/engine"
)

// world records what steps did, as a cloud would.
type world struct {
	mu      sync.Mutex
	created []string
	log     []string
}

func (w *world) do(s string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.log = append(w.log, s)
}

type state struct {
	Made []string `json:"made"`
}

// plan builds a 4-step plan whose step "fail" fails while failures > 0 and
// whose step named block blocks until ctx ends.
func plan(w *world, failAt string, failures *int, block string) engine.Plan[state] {
	mk := func(name string, noReturn bool) engine.Step[state] {
		return engine.Step[state]{
			Name: name, Summary: "does " + name, PointOfNoReturn: noReturn,
			Do: func(ctx context.Context, op *engine.Op[state]) error {
				w.do("do " + name)
				if !slices.Contains(op.State.Made, name) {
					op.State.Made = append(op.State.Made, name)
					if err := op.Save(); err != nil {
						return err
					}
				}
				if name == block {
					<-ctx.Done()
					return ctx.Err()
				}
				if name == failAt && *failures > 0 {
					*failures--
					return errors.New("injected")
				}
				return nil
			},
			Undo: func(ctx context.Context, op *engine.Op[state]) error {
				w.do("undo " + name)
				op.State.Made = slices.DeleteFunc(op.State.Made, func(s string) bool { return s == name })
				return nil
			},
		}
	}
	return engine.Plan[state]{Kind: "test", Steps: []engine.Step[state]{mk("a", false), mk("b", false), mk("c", false), mk("open", true)}}
}

func newRunner(t *testing.T, dir string, p engine.Plan[state]) (*engine.Runner[state], *engine.Journal) {
	t.Helper()
	j, err := engine.OpenJournal(dir, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return &engine.Runner[state]{Plan: p, Journal: j}, j
}

func TestFailureBeforeNoReturnRollsBackEveryStartedStepInReverse(t *testing.T) {
	w := &world{}
	failures := 1
	r, j := newRunner(t, t.TempDir(), plan(w, "c", &failures, ""))
	st := &state{}
	rec, err := r.NewRecord("op1", "x", 1, st)
	if err != nil {
		t.Fatal(err)
	}
	err = r.Forward(context.Background(), rec, st)
	if err == nil || !strings.Contains(err.Error(), "step c: injected (rolled back)") {
		t.Fatalf("err = %v", err)
	}
	want := []string{"do a", "do b", "do c", "undo c", "undo b", "undo a"}
	if !slices.Equal(w.log, want) {
		t.Fatalf("log %v, want %v", w.log, want)
	}
	got, err := j.Get("op1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Phase != engine.PhaseRolledBack || got.Step("open").State != engine.StepPending || got.Step("c").State != engine.StepUndone {
		t.Fatalf("journal: %+v", got)
	}
	if s, _ := engine.LoadState[state](got); len(s.Made) != 0 {
		t.Fatalf("state after rollback still holds %v", s.Made)
	}
}

func TestFailureAfterNoReturnStopsWithoutRollbackAndResumeFinishes(t *testing.T) {
	w := &world{}
	failures := 1
	r, j := newRunner(t, t.TempDir(), plan(w, "open", &failures, ""))
	st := &state{}
	rec, _ := r.NewRecord("op1", "x", 1, st)
	if err := r.Forward(context.Background(), rec, st); err == nil {
		t.Fatal("no error")
	}
	if rec.Phase != engine.PhaseFailed || slices.Contains(w.log, "undo a") {
		t.Fatalf("phase %s, log %v", rec.Phase, w.log)
	}
	if err := r.Rollback(context.Background(), rec, st); !errors.Is(err, engine.ErrPastNoReturn) {
		t.Fatalf("rollback after the point of no return: %v", err)
	}
	rec2, _ := j.Get("op1")
	st2, _ := engine.LoadState[state](rec2)
	if err := r.Resume(context.Background(), rec2, st2); err != nil {
		t.Fatal(err)
	}
	if rec2.Phase != engine.PhaseSucceeded || strings.Count(strings.Join(w.log, ","), "do a") != 1 {
		t.Fatalf("phase %s log %v (done steps must not run again)", rec2.Phase, w.log)
	}
}

// A coordinator that dies mid-step leaves the step "running" in the
// journal; a new process resumes from that step, or rolls it back.
func TestCrashMidStepResumesOrRollsBackFromTheJournal(t *testing.T) {
	for _, then := range []string{"resume", "rollback"} {
		t.Run(then, func(t *testing.T) {
			dir := t.TempDir()
			w := &world{}
			none := 0
			r, j := newRunner(t, dir, plan(w, "", &none, "b"))
			st := &state{}
			rec, _ := r.NewRecord("op1", "x", 1, st)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error)
			go func() { done <- r.Forward(ctx, rec, st) }()
			// The journal says b is running before b acts, and then holds
			// what b saved mid-step.
			for {
				got, err := j.Get("op1")
				if err == nil && got.Step("b").State == engine.StepRunning {
					if st, _ := engine.LoadState[state](got); slices.Contains(st.Made, "b") {
						break
					}
				}
				time.Sleep(5 * time.Millisecond)
			}
			// Simulate the crash: the process' view ends here; what the
			// journal holds is all a new process knows.
			crashed, _ := j.Get("op1")
			cancel()
			<-done
			j.Close()

			w2 := &world{}
			r2, _ := newRunner(t, dir, plan(w2, "", &none, ""))
			st2, err := engine.LoadState[state](crashed)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(st2.Made, []string{"a", "b"}) {
				t.Fatalf("state saved mid-step: %v", st2.Made)
			}
			if then == "resume" {
				err = r2.Resume(context.Background(), crashed, st2)
				want := []string{"do b", "do c", "do open"}
				if err != nil || !slices.Equal(w2.log, want) || crashed.Phase != engine.PhaseSucceeded {
					t.Fatalf("err %v log %v want %v phase %s", err, w2.log, want, crashed.Phase)
				}
			} else {
				err = r2.Rollback(context.Background(), crashed, st2)
				want := []string{"undo b", "undo a"}
				if err != nil || !slices.Equal(w2.log, want) || crashed.Phase != engine.PhaseRolledBack {
					t.Fatalf("err %v log %v want %v phase %s", err, w2.log, want, crashed.Phase)
				}
			}
		})
	}
}

func TestFencedStepStopsWithoutUndoing(t *testing.T) {
	w := &world{}
	p := plan(w, "", new(int), "")
	p.Steps[1].Do = func(context.Context, *engine.Op[state]) error {
		return fmt.Errorf("agent refused: %w", engine.ErrFenced)
	}
	r, _ := newRunner(t, t.TempDir(), p)
	st := &state{}
	rec, _ := r.NewRecord("op1", "x", 1, st)
	if err := r.Forward(context.Background(), rec, st); !errors.Is(err, engine.ErrFenced) {
		t.Fatalf("err %v", err)
	}
	if rec.Phase != engine.PhaseFenced || slices.Contains(w.log, "undo a") {
		t.Fatalf("phase %s log %v", rec.Phase, w.log)
	}
}

func TestUntilPausesAndASecondCoordinatorCannotOpenTheJournal(t *testing.T) {
	dir := t.TempDir()
	w := &world{}
	r, _ := newRunner(t, dir, plan(w, "", new(int), ""))
	r.Until = "b"
	st := &state{}
	rec, _ := r.NewRecord("op1", "x", 1, st)
	if err := r.Forward(context.Background(), rec, st); err != nil {
		t.Fatal(err)
	}
	if rec.Phase != engine.PhasePaused || !slices.Equal(w.log, []string{"do a", "do b"}) {
		t.Fatalf("phase %s log %v", rec.Phase, w.log)
	}
	if _, err := engine.OpenJournal(dir, 50*time.Millisecond); err == nil || !strings.Contains(err.Error(), "held by another triad process") {
		t.Fatalf("second journal open: %v", err)
	}
	r.Until = "nope"
	if _, err := r.NewRecord("op2", "x", 1, st); err == nil {
		t.Fatal("an unknown --until step was accepted")
	}
}

// TestResumeRefusesAnUnknownUntil: a typo in resume's --until must not
// run the rest of the operation (past its point of no return): refused,
// nothing runs, the record unchanged.
func TestResumeRefusesAnUnknownUntil(t *testing.T) {
	w := &world{}
	r, _ := newRunner(t, t.TempDir(), plan(w, "", new(int), ""))
	r.Until = "a"
	st := &state{}
	rec, err := r.NewRecord("op1", "x", 1, st)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Forward(context.Background(), rec, st); err != nil || rec.Phase != engine.PhasePaused {
		t.Fatalf("run --until a: %v, phase %s", err, rec.Phase)
	}
	r.Until = "opne"
	err = r.Resume(context.Background(), rec, st)
	if err == nil || !strings.Contains(err.Error(), `--until "opne": no such step`) {
		t.Fatalf("resume --until opne: %v", err)
	}
	if rec.Phase != engine.PhasePaused || !slices.Equal(w.log, []string{"do a"}) {
		t.Fatalf("after the refused resume: phase %s, log %v", rec.Phase, w.log)
	}
}

func TestEpochsOnlyGrow(t *testing.T) {
	_, j := newRunner(t, t.TempDir(), plan(&world{}, "", new(int), ""))
	var last uint64
	for range 100 {
		e, err := j.NextEpoch("x")
		if err != nil {
			t.Fatal(err)
		}
		if e <= last {
			t.Fatalf("epoch %d after %d", e, last)
		}
		last = e
	}
}
