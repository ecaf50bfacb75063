package coord

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Kind is the role of a step in the saga model.
type Kind int

const (
	// Compensatable steps (the default) are undone by their compensation
	// when a later step, up to and including the pivot, fails.
	Compensatable Kind = iota

	// Pivot is the point of no return: once it has succeeded the saga only
	// goes forward. A saga has at most one; it has no compensation.
	Pivot

	// Retriable steps come after the pivot. They are retried until they
	// succeed, by Run and then by recovery, and are never compensated.
	Retriable
)

// String returns the kind's name.
func (k Kind) String() string {
	switch k {
	case Compensatable:
		return "compensatable"
	case Pivot:
		return "pivot"
	case Retriable:
		return "retriable"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Step is one step of a saga on the state S that the steps share.
//
// A step has exactly one of Action and TxAction. TxAction runs in the
// coordinator's own PostgreSQL transaction, which also writes the step's log
// record: its writes and "step done" commit together, so it takes effect
// exactly once and needs no barrier. Action runs against any store; it can
// run again after a crash (at least once), so its writes must be idempotent:
// the barrier helpers (PgBarrier, RedisSet, MongoInsert...) make them so.
//
// Compensation works the same way with Compensate or TxCompensate; a
// compensatable step with neither has nothing to undo. The compensation of
// an Action step runs also when that step itself failed, since its action
// may have taken effect before the error (a timeout after the write): it
// must do nothing for an action that never ran, as the barrier helpers do.
//
// A try that panics is a failed try like one that returns an error: the
// panic is recovered into an error wrapping ErrStepPanic, logged, and
// handled by Retry (a TxAction's or TxCompensate's transaction rolls back).
type Step[S any] struct {
	// Name identifies the step in the log and in StepKey. It must be unique
	// in the saga, valid UTF-8, and contain neither "/" nor NUL bytes.
	Name string

	// Kind is the step's role. Default: Compensatable.
	Kind Kind

	// Action does the step's work.
	Action func(ctx context.Context, s *S) error

	// TxAction does the step's work in the coordinator's transaction.
	// Its ctx ends with Run's (or the step's Timeout); it is not cancelled
	// when the step returns.
	TxAction func(ctx context.Context, tx Tx, s *S) error

	// Compensate undoes Action or TxAction.
	Compensate func(ctx context.Context, s *S) error

	// TxCompensate undoes Action or TxAction in the coordinator's
	// transaction.
	TxCompensate func(ctx context.Context, tx Tx, s *S) error

	// Retry applies to the action and to the compensation. Default: the
	// zero RetryPolicy (3 tries, see RetryPolicy); an invalid one makes
	// Register fail.
	Retry RetryPolicy

	// Timeout bounds each try of the action or compensation. Negative is
	// invalid. Default (0): none.
	Timeout time.Duration

	// members are the steps of a parallel group (see Parallel); nil for a
	// plain step.
	members []Step[S]
}

// hasCompensation reports whether the step has something to undo: a
// compensation, or for a group one of its members'.
func (st *Step[S]) hasCompensation() bool {
	for i := range st.members {
		if st.members[i].hasCompensation() {
			return true
		}
	}
	return st.Compensate != nil || st.TxCompensate != nil
}

// undoneWhenItFails reports whether the step is compensated when it fails:
// an Action (or a group of them) may have taken effect before its error,
// while a failed TxAction's transaction rolled back.
func (st *Step[S]) undoneWhenItFails() bool {
	return (st.Action != nil || st.members != nil) && st.hasCompensation()
}

// Definition is a saga definition: a name and ordered steps. Build it with
// Define and register it with Register.
type Definition[S any] struct {
	name  string
	steps []Step[S]
}

// Define returns the saga definition called name with the given steps, in
// order. It is checked by Register: the name must be non-empty valid UTF-8
// without NUL bytes.
func Define[S any](name string, steps ...Step[S]) *Definition[S] {
	return &Definition[S]{name: name, steps: append([]Step[S](nil), steps...)}
}

// Name returns the definition's name.
func (d *Definition[S]) Name() string { return d.name }

// cancelBefore is the first step a saga cannot be cancelled at: its pivot,
// or without one its last step (once that one runs, the saga may have
// succeeded).
func (d *Definition[S]) cancelBefore() int {
	for i, st := range d.steps {
		if st.Kind == Pivot {
			return i
		}
	}
	return len(d.steps) - 1
}

// stepName returns the name of step i, or "" past the ends.
func (d *Definition[S]) stepName(i int) string {
	if i < 0 || i >= len(d.steps) {
		return ""
	}
	return d.steps[i].Name
}

// validate reports the first rule the definition breaks, wrapping ErrInvalid.
func (d *Definition[S]) validate() error {
	if d == nil {
		return fmt.Errorf("%w: nil saga definition", ErrInvalid)
	}
	if err := checkText("saga definition name", d.name); err != nil {
		return err
	}
	if len(d.steps) == 0 {
		return fmt.Errorf("%w: saga %q has no steps", ErrInvalid, d.name)
	}
	seen := make(map[string]bool, len(d.steps))
	pivot := -1
	for i, st := range d.steps {
		where := fmt.Sprintf("saga %q step %d (%q)", d.name, i, st.Name)
		switch {
		case st.Name == "":
			return fmt.Errorf("%w: %s has no name", ErrInvalid, where)
		case checkText("step name", st.Name) != nil:
			return fmt.Errorf("%s: %w", where, checkText("step name", st.Name))
		case st.Timeout < 0:
			return fmt.Errorf("%w: %s has a negative Timeout %v", ErrInvalid, where, st.Timeout)
		case st.Retry.validate() != nil:
			return fmt.Errorf("%s: %w", where, st.Retry.validate())
		case strings.Contains(st.Name, "/"):
			return fmt.Errorf("%w: %s: a step name must not contain \"/\"", ErrInvalid, where)
		case seen[st.Name]:
			return fmt.Errorf("%w: %s: duplicate step name", ErrInvalid, where)
		case st.members != nil:
			if err := checkGroup(where, st, seen); err != nil {
				return err
			}
		case (st.Action == nil) == (st.TxAction == nil):
			return fmt.Errorf("%w: %s needs exactly one of Action and TxAction", ErrInvalid, where)
		case st.Compensate != nil && st.TxCompensate != nil:
			return fmt.Errorf("%w: %s has both Compensate and TxCompensate", ErrInvalid, where)
		case st.Kind < Compensatable || st.Kind > Retriable:
			return fmt.Errorf("%w: %s has unknown kind %d", ErrInvalid, where, int(st.Kind))
		}
		seen[st.Name] = true
		switch st.Kind {
		case Compensatable:
			if pivot >= 0 {
				return fmt.Errorf("%w: %s: a compensatable step after the pivot could never be compensated", ErrInvalid, where)
			}
		case Pivot:
			if pivot >= 0 {
				return fmt.Errorf("%w: %s: a saga has at most one pivot (step %q is one)", ErrInvalid, where, d.steps[pivot].Name)
			}
			pivot = i
		case Retriable:
			if pivot < 0 {
				return fmt.Errorf("%w: %s: a retriable step must come after the pivot", ErrInvalid, where)
			}
		}
		if st.Kind != Compensatable && st.hasCompensation() {
			return fmt.Errorf("%w: %s: a %s step is never compensated and must have no compensation", ErrInvalid, where, st.Kind)
		}
	}
	return nil
}
