// Package engine runs coordinator operations as ordered lists of named
// steps over a typed state, journaling every transition so that a
// coordinator killed at any point can resume or roll back.
//
// A step has Pre (its precondition, checked before acting), Do (the
// action; must be idempotent, since a step interrupted mid-way is run
// again on resume), Verify (its postcondition) and Undo (idempotent; also
// called for a step that failed or was interrupted half-way). The journal
// entry, including the whole state, is persisted before every Do, so
// everything a step acts on is known to a later resume or rollback.
// A step marked PointOfNoReturn ends automatic rollback: once it has
// started, failures stop the operation for an operator to resume.
//
// Migration strategies and upgrades are different step lists over
// different state types run by the same Runner.
package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Phase is where an operation is in its life.
type Phase string

const (
	// PhaseRunning: steps are being run (or the coordinator died while
	// running them; resume continues).
	PhaseRunning Phase = "running"
	// PhasePaused: stopped on request after a step (--until); resume
	// continues, rollback undoes.
	PhasePaused Phase = "paused"
	// PhaseInterrupted: the coordinator was told to stop mid-step; resume
	// or rollback.
	PhaseInterrupted Phase = "interrupted"
	PhaseSucceeded   Phase = "succeeded"
	// PhaseFailed: a step failed after the point of no return; fix the
	// cause and resume.
	PhaseFailed         Phase = "failed"
	PhaseRollingBack    Phase = "rolling-back"
	PhaseRolledBack     Phase = "rolled-back"
	PhaseRollbackFailed Phase = "rollback-failed"
	// PhaseFenced: another coordinator took over the cluster (higher
	// fencing epoch); this one stopped without touching anything more.
	PhaseFenced Phase = "fenced"
)

// Finished reports whether nothing more can be done to the operation.
func (p Phase) Finished() bool { return p == PhaseSucceeded || p == PhaseRolledBack }

// StepState is where one step is.
type StepState string

const (
	StepPending StepState = "pending"
	StepRunning StepState = "running"
	StepDone    StepState = "done"
	StepFailed  StepState = "failed"
	StepUndoing StepState = "undoing"
	StepUndone  StepState = "undone"
)

// Sentinel errors.
var (
	// ErrFenced wraps a step error caused by a higher fencing epoch.
	ErrFenced = errors.New("fenced by another coordinator")
	// ErrPastNoReturn: rollback refused after the point of no return.
	ErrPastNoReturn = errors.New("past the point of no return")
	// ErrFinished: the operation has already finished.
	ErrFinished = errors.New("operation already finished")
)

// StepRecord is the journaled state of one step.
type StepRecord struct {
	Name       string     `json:"name"`
	State      StepState  `json:"state"`
	Attempts   int        `json:"attempts"`
	StartedAt  *time.Time `json:"startedAt,omitempty"`
	FinishedAt *time.Time `json:"finishedAt,omitempty"`
	// Seconds the last attempt (or undo) took.
	Seconds   float64 `json:"seconds,omitempty"`
	Error     string  `json:"error,omitempty"`
	UndoError string  `json:"undoError,omitempty"`
}

// Record is one operation as the journal holds it.
type Record struct {
	ID      string `json:"id"`
	Kind    string `json:"kind"`
	Cluster string `json:"cluster"`
	// Epoch is the fencing epoch of the latest coordinator invocation.
	Epoch     uint64          `json:"epoch"`
	Phase     Phase           `json:"phase"`
	Steps     []StepRecord    `json:"steps"`
	State     json.RawMessage `json:"state"`
	Error     string          `json:"error,omitempty"`
	CreatedAt time.Time       `json:"createdAt"`
	UpdatedAt time.Time       `json:"updatedAt"`
}

// Step returns the record of step name.
func (r *Record) Step(name string) *StepRecord {
	for i := range r.Steps {
		if r.Steps[i].Name == name {
			return &r.Steps[i]
		}
	}
	return nil
}

// Func is one part of a step.
type Func[S any] func(ctx context.Context, op *Op[S]) error

// Step is one named step of a plan.
type Step[S any] struct {
	// Name is part of the UI: plans print it, the journal records it.
	Name string
	// Summary says what the step does, in one line.
	Summary string
	// Touches lists what the step will act on, for plans.
	Touches func(s *S) []string
	// UndoSummary says what rolling the step back does; empty if nothing.
	UndoSummary     string
	Pre, Do, Verify Func[S]
	Undo            Func[S]
	// PointOfNoReturn: once this step has started, the operation is never
	// rolled back automatically and rollback is refused.
	PointOfNoReturn bool
}

// Plan is an operation kind and its steps.
type Plan[S any] struct {
	Kind  string
	Steps []Step[S]
}

// Op is what a running step sees.
type Op[S any] struct {
	Record *Record
	State  *S
	// Step is the name of the running step.
	Step   string
	runner *Runner[S]
}

// Epoch is the fencing epoch of this invocation.
func (o *Op[S]) Epoch() uint64 { return o.Record.Epoch }

// Save persists the state now, mid-step: call it right after creating
// something so that a crash before the step ends still knows about it.
func (o *Op[S]) Save() error { return o.runner.save(o.Record, o.State) }

// Logf reports progress within the step.
func (o *Op[S]) Logf(format string, args ...any) {
	o.runner.emit(Event{Op: o.Record.ID, Step: o.Step, Kind: EventInfo, Message: fmt.Sprintf(format, args...)})
}

// EventKind classifies progress events.
type EventKind string

const (
	EventStepStart  EventKind = "step-start"
	EventStepDone   EventKind = "step-done"
	EventStepFailed EventKind = "step-failed"
	EventUndoStart  EventKind = "undo-start"
	EventUndoDone   EventKind = "undo-done"
	EventUndoFailed EventKind = "undo-failed"
	EventInfo       EventKind = "info"
)

// Event is one progress report.
type Event struct {
	Time    time.Time     `json:"time"`
	Op      string        `json:"op"`
	Step    string        `json:"step,omitempty"`
	Kind    EventKind     `json:"kind"`
	Elapsed time.Duration `json:"elapsedNs,omitempty"`
	Message string        `json:"message,omitempty"`
}

// Runner runs a plan against the journal.
type Runner[S any] struct {
	Plan    Plan[S]
	Journal *Journal
	// Progress receives events; nil discards them.
	Progress func(Event)
	// Until stops the operation (phase paused) after the named step.
	Until string
}

func (r *Runner[S]) emit(e Event) {
	if r.Progress == nil {
		return
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	r.Progress(e)
}

func (r *Runner[S]) save(rec *Record, state *S) error {
	raw, err := json.Marshal(state)
	if err != nil {
		return fmt.Errorf("encoding operation state: %w", err)
	}
	rec.State = raw
	rec.UpdatedAt = time.Now()
	return r.Journal.Save(rec)
}

// CheckUntil refuses an Until that names no step of the plan: run and
// resume alike, before anything runs (a typo must not run past the point
// of no return).
func (r *Runner[S]) CheckUntil() error {
	return CheckUntil(r.Until, r.names())
}

// CheckUntil refuses an until that is not one of steps (an empty one is
// no pause, and fine).
func CheckUntil(until string, steps []string) error {
	if until != "" && !slices.Contains(steps, until) {
		return fmt.Errorf("--until %q: no such step (steps: %v)", until, steps)
	}
	return nil
}

// NewRecord starts the journal record of a new operation of the plan.
func (r *Runner[S]) NewRecord(id, cluster string, epoch uint64, state *S) (*Record, error) {
	if err := r.CheckUntil(); err != nil {
		return nil, err
	}
	rec := &Record{ID: id, Kind: r.Plan.Kind, Cluster: cluster, Epoch: epoch, Phase: PhaseRunning, CreatedAt: time.Now()}
	for _, s := range r.Plan.Steps {
		rec.Steps = append(rec.Steps, StepRecord{Name: s.Name, State: StepPending})
	}
	return rec, r.save(rec, state)
}

func (r *Runner[S]) index(name string) int {
	for i, s := range r.Plan.Steps {
		if s.Name == name {
			return i
		}
	}
	return -1
}

func (r *Runner[S]) names() []string {
	var n []string
	for _, s := range r.Plan.Steps {
		n = append(n, s.Name)
	}
	return n
}

// LoadState decodes a record's state.
func LoadState[S any](rec *Record) (*S, error) {
	var s S
	if len(rec.State) > 0 {
		if err := json.Unmarshal(rec.State, &s); err != nil {
			return nil, fmt.Errorf("decoding the state of operation %s: %w", rec.ID, err)
		}
	}
	return &s, nil
}

// pastNoReturn reports whether a point-of-no-return step has started.
func (r *Runner[S]) pastNoReturn(rec *Record) (string, bool) {
	for i, s := range r.Plan.Steps {
		if s.PointOfNoReturn && rec.Steps[i].State != StepPending && rec.Steps[i].State != StepUndone {
			return s.Name, true
		}
	}
	return "", false
}

// Forward runs the steps that are not done yet, in order. On a failure
// before the point of no return it rolls back automatically and returns
// the step's error (the rollback's too, if that failed). Cancelling ctx
// stops after marking the running step interrupted.
func (r *Runner[S]) Forward(ctx context.Context, rec *Record, state *S) error {
	if rec.Phase.Finished() {
		return fmt.Errorf("%w: %s is %s", ErrFinished, rec.ID, rec.Phase)
	}
	if len(rec.Steps) != len(r.Plan.Steps) {
		return fmt.Errorf("operation %s has %d steps, this triad's %s plan %d: finish it with the triad version that started it", rec.ID, len(rec.Steps), r.Plan.Kind, len(r.Plan.Steps))
	}
	if err := r.CheckUntil(); err != nil {
		return err
	}
	rec.Phase, rec.Error = PhaseRunning, ""
	for i, step := range r.Plan.Steps {
		sr := &rec.Steps[i]
		if sr.State == StepDone {
			continue
		}
		if err := r.runStep(ctx, rec, state, step, sr); err != nil {
			return r.failed(ctx, rec, state, step, err)
		}
		if step.Name == r.Until && i < len(r.Plan.Steps)-1 {
			rec.Phase = PhasePaused
			r.emit(Event{Op: rec.ID, Kind: EventInfo, Message: fmt.Sprintf("paused after %s as asked (--until); continue with resume, or rollback", step.Name)})
			return r.save(rec, state)
		}
	}
	rec.Phase = PhaseSucceeded
	return r.save(rec, state)
}

func (r *Runner[S]) runStep(ctx context.Context, rec *Record, state *S, step Step[S], sr *StepRecord) error {
	start := time.Now()
	sr.State, sr.Attempts, sr.StartedAt, sr.FinishedAt, sr.Error = StepRunning, sr.Attempts+1, &start, nil, ""
	// Journal before acting: a crash from here on is resumed or rolled
	// back knowing this step may have acted.
	if err := r.save(rec, state); err != nil {
		return err
	}
	r.emit(Event{Op: rec.ID, Step: step.Name, Kind: EventStepStart, Message: step.Summary})
	op := &Op[S]{Record: rec, State: state, Step: step.Name, runner: r}
	err := ctx.Err()
	for _, part := range []struct {
		name string
		f    Func[S]
	}{{"precondition", step.Pre}, {"", step.Do}, {"postcondition", step.Verify}} {
		if err != nil || part.f == nil {
			continue
		}
		if err = part.f(ctx, op); err != nil && part.name != "" {
			err = fmt.Errorf("%s: %w", part.name, err)
		}
	}
	end := time.Now()
	sr.FinishedAt, sr.Seconds = &end, end.Sub(start).Seconds()
	if err != nil {
		sr.State, sr.Error = StepFailed, err.Error()
		r.emit(Event{Op: rec.ID, Step: step.Name, Kind: EventStepFailed, Elapsed: end.Sub(start), Message: err.Error()})
		return err
	}
	sr.State = StepDone
	r.emit(Event{Op: rec.ID, Step: step.Name, Kind: EventStepDone, Elapsed: end.Sub(start)})
	return r.save(rec, state)
}

// failed decides what a step failure means for the operation.
func (r *Runner[S]) failed(ctx context.Context, rec *Record, state *S, step Step[S], cause error) error {
	stepErr := fmt.Errorf("step %s: %w", step.Name, cause)
	rec.Error = stepErr.Error()
	switch {
	case errors.Is(cause, ErrFenced):
		// Another coordinator owns the cluster now: touching anything,
		// even to roll back, would interleave with it.
		rec.Phase = PhaseFenced
	case ctx.Err() != nil:
		rec.Phase = PhaseInterrupted
	default:
		if name, past := r.pastNoReturn(rec); past {
			rec.Phase = PhaseFailed
			r.emit(Event{Op: rec.ID, Step: step.Name, Kind: EventInfo, Message: fmt.Sprintf("not rolling back: %s has started (point of no return); fix the cause and resume", name)})
		} else {
			if err := r.save(rec, state); err != nil {
				return errors.Join(stepErr, err)
			}
			r.emit(Event{Op: rec.ID, Kind: EventInfo, Message: "rolling back automatically: " + stepErr.Error()})
			if err := r.Rollback(ctx, rec, state); err != nil {
				return errors.Join(stepErr, fmt.Errorf("automatic rollback: %w", err))
			}
			return fmt.Errorf("%w (rolled back)", stepErr)
		}
	}
	if err := r.save(rec, state); err != nil {
		return errors.Join(stepErr, err)
	}
	return stepErr
}

// Rollback undoes every step that has started, last first. Undo functions
// are idempotent, so an interrupted rollback is simply run again.
func (r *Runner[S]) Rollback(ctx context.Context, rec *Record, state *S) error {
	if rec.Phase.Finished() {
		return fmt.Errorf("%w: %s is %s", ErrFinished, rec.ID, rec.Phase)
	}
	if name, past := r.pastNoReturn(rec); past {
		return fmt.Errorf("%w: %s has started; the HA control plane may have accepted writes the old node does not have (resume instead)", ErrPastNoReturn, name)
	}
	rec.Phase = PhaseRollingBack
	if err := r.save(rec, state); err != nil {
		return err
	}
	for i := len(r.Plan.Steps) - 1; i >= 0; i-- {
		step, sr := r.Plan.Steps[i], &rec.Steps[i]
		if sr.State == StepPending || sr.State == StepUndone {
			continue
		}
		start := time.Now()
		sr.State, sr.UndoError = StepUndoing, ""
		if err := r.save(rec, state); err != nil {
			return err
		}
		r.emit(Event{Op: rec.ID, Step: step.Name, Kind: EventUndoStart, Message: step.UndoSummary})
		var err error
		if step.Undo != nil {
			err = step.Undo(ctx, &Op[S]{Record: rec, State: state, Step: step.Name, runner: r})
		}
		elapsed := time.Now().Sub(start)
		if err != nil {
			sr.UndoError = err.Error()
			rec.Phase = PhaseRollbackFailed
			rec.Error = fmt.Sprintf("undo of %s: %v", step.Name, err)
			r.emit(Event{Op: rec.ID, Step: step.Name, Kind: EventUndoFailed, Elapsed: elapsed, Message: err.Error()})
			return errors.Join(fmt.Errorf("undo of %s: %w (run rollback again once the cause is fixed)", step.Name, err), r.save(rec, state))
		}
		sr.State = StepUndone
		r.emit(Event{Op: rec.ID, Step: step.Name, Kind: EventUndoDone, Elapsed: elapsed})
		if err := r.save(rec, state); err != nil {
			return err
		}
	}
	rec.Phase = PhaseRolledBack
	return r.save(rec, state)
}

// Resume continues an operation where the journal left it: forward for a
// running, paused, interrupted or failed operation, the rollback for one
// that was rolling back.
func (r *Runner[S]) Resume(ctx context.Context, rec *Record, state *S) error {
	switch rec.Phase {
	case PhaseRollingBack, PhaseRollbackFailed:
		return r.Rollback(ctx, rec, state)
	default:
		return r.Forward(ctx, rec, state)
	}
}
