package coord

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// EventKind names an event of a saga's history.
type EventKind string

// The events of a saga's history (see Coordinator.History). Each is written
// by the same statement as the log write it belongs to, so the history says
// exactly what the log did.
const (
	// EventCreated: Run inserted the saga's record.
	EventCreated EventKind = "created"
	// EventStarted: the step is the next one to run; its code runs after
	// this event (first try; later tries follow EventTryFailed).
	EventStarted EventKind = "started"
	// EventSucceeded: the step's action took effect and the log moved past it.
	EventSucceeded EventKind = "succeeded"
	// EventTryFailed: a try of the step's action failed (Error); another
	// try follows.
	EventTryFailed EventKind = "try-failed"
	// EventFailed: the step's action failed for good (its last try's Error);
	// the saga compensates from here.
	EventFailed EventKind = "failed"
	// EventCompensationTryFailed: a try of the step's compensation failed;
	// another try follows.
	EventCompensationTryFailed EventKind = "compensation-try-failed"
	// EventCompensated: the step's compensation took effect.
	EventCompensated EventKind = "compensated"
	// EventCompensationFailed: the step's compensation failed for good; the
	// saga is failed and waits for a person.
	EventCompensationFailed EventKind = "compensation-failed"
	// EventReleased: the run stopped without finishing the saga (its
	// context ended, a retriable step waits for its backoff) and left it to
	// recovery; Error says why.
	EventReleased EventKind = "released"
	// EventRecovered: another run (Actor) took the saga over after its lease
	// expired (Recover, or a Run of the same id).
	EventRecovered EventKind = "recovered"
	// EventDeadLettered: recovery found the saga taken over too often
	// without progress and turned it dead (Reason says how often).
	EventDeadLettered EventKind = "dead-lettered"
	// EventRetried: an operator (Actor, Reason) retried a failed or dead
	// saga (Coordinator.Retry).
	EventRetried EventKind = "retried"
	// EventResolved: an operator (Actor, Reason) resolved a failed or dead
	// saga by hand (Coordinator.Resolve).
	EventResolved EventKind = "resolved"
	// EventCancelRequested: an operator (Actor, Reason) asked a running
	// saga to stop (Coordinator.Cancel).
	EventCancelRequested EventKind = "cancel-requested"
	// EventCancelled: the run saw the cancel request at a step boundary
	// and turned the saga to compensation.
	EventCancelled EventKind = "cancelled"
)

// Event is one entry of a saga's history.
type Event struct {
	Seq      int64 // orders the events (across sagas too)
	SagaID   string
	At       time.Time // when the statement wrote it (database clock)
	Kind     EventKind
	Step     int    // the step's index
	StepName string // the step's name ("" past the ends)
	Attempt  int    // the try, for step events (1 for the first)
	Error    string // the try's error, for failures
	// Actor is who wrote the event: the run's lease token (Options.Owner
	// followed by "/" and a random suffix) for the coordinator's events.
	Actor  string
	Reason string // why, for an operator's action
}

// event is an event a log write appends to the history.
type event struct {
	kind    EventKind
	step    int
	attempt int
	err     string
	name    string // the step's name when not the position's: a group's member
}

// maxEvents is how many events one log write appends at most (the insert:
// created and started; a step's record: succeeded and the next started).
const maxEvents = 2

// appendEvents appends to args the parameters of historyFrom for evs (at
// most maxEvents, except in the record of a parallel group: see
// writeSQLFor): five per event slot, NULL for an empty slot. The values
// are boxed once (kindArgs, the step names in stepArgs), so that a write's
// history allocates nothing but its error texts (and a group member's
// name).
func (e *execution[S]) appendEvents(args []any, evs ...event) []any {
	for i := range max(maxEvents, len(evs)) {
		if i >= len(evs) {
			args = append(args, nil, nil, nil, nil, nil)
			continue
		}
		ev := evs[i]
		name := e.stepArg(ev.step)
		if ev.name != "" {
			if a, ok := e.memberArgs[ev.name]; ok {
				name = a
			} else {
				name = ev.name
			}
		}
		args = append(args, boxed(kindArgs, ev.kind), ev.step, name, ev.attempt, ev.err)
	}
	return args
}

// boxed returns v's string boxed once in m, or boxed now for a value m
// lacks: a kind or status added later must not become a null that the
// history insert drops.
func boxed[K ~string](m map[K]any, v K) any {
	if a, ok := m[v]; ok {
		return a
	}
	return string(v)
}

// kindArgs are the event kinds a log write appends, boxed once.
var kindArgs = func() map[EventKind]any {
	m := map[EventKind]any{}
	for _, k := range []EventKind{EventCreated, EventStarted, EventSucceeded, EventTryFailed, EventFailed,
		EventCompensationTryFailed, EventCompensated, EventCompensationFailed, EventReleased, EventCancelled} {
		m[k] = string(k)
	}
	return m
}()

const historySQL = `select seq, saga_id, at, event, step, step_name, attempt, error, actor, reason
from coord_history where saga_id = $1 order by seq`

// History returns the timeline of the saga id: every event of its history,
// oldest first. It returns an error wrapping ErrNotFound when no saga has
// that id, ErrInvalid for an id Run would refuse; other errors wrap the
// driver's. A saga logged before coord had a history (migration 002) has
// only the events since.
func (c *Coordinator) History(ctx context.Context, id string) ([]Event, error) {
	if err := checkText("saga id", id); err != nil {
		return nil, err
	}
	rec, err := c.load(ctx, id)
	if err != nil {
		return nil, err
	}
	rows, err := c.pool.Query(ctx, historySQL, id)
	if err != nil {
		return nil, fmt.Errorf("coord: reading the history of saga %q: %w", id, err)
	}
	evs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Event, error) {
		var ev Event
		err := row.Scan(&ev.Seq, &ev.SagaID, &ev.At, &ev.Kind, &ev.Step, &ev.StepName, &ev.Attempt, &ev.Error, &ev.Actor, &ev.Reason)
		return ev, err
	})
	if err != nil {
		return nil, fmt.Errorf("coord: reading the history of saga %q: %w", id, err)
	}
	c.mu.Lock()
	d := c.sagas[rec.Name]
	c.mu.Unlock()
	for i := range evs {
		if evs[i].StepName == "" && d != nil {
			evs[i].StepName = d.stepName(evs[i].Step)
		}
	}
	return evs, nil
}
