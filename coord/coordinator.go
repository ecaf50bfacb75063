package coord

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Status is where a saga is in its life:
//
//	running ──► succeeded
//	   │
//	   ▼
//	compensating ──► compensated
//	   │
//	   ▼
//	failed
type Status string

// The statuses of a saga. Succeeded, compensated and failed are final.
const (
	StatusRunning      Status = "running"
	StatusCompensating Status = "compensating"
	StatusSucceeded    Status = "succeeded"
	StatusCompensated  Status = "compensated"
	StatusFailed       Status = "failed"
)

func (s Status) final() bool {
	return s == StatusSucceeded || s == StatusCompensated || s == StatusFailed
}

// Info is a saga's record in the log.
type Info struct {
	ID     string
	Name   string // the definition's name
	Status Status
	// Step is the index of the next step to run (running), or of the next
	// step to compensate (compensating, failed); StepName is its name, ""
	// past the ends.
	Step      int
	StepName  string
	Attempts  int    // failed tries of that step so far
	Error     string // the error that made the saga compensate or fail, or the last failed try's
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Coordinator runs sagas and keeps their log in PostgreSQL. It is safe for
// concurrent use. Several coordinators, in one process or many, may share
// one database: each saga is run by one of them at a time.
type Coordinator struct {
	pool *pgxpool.Pool
	opts Options

	mu      sync.Mutex
	sagas   map[string]driver
	closed  bool
	started bool
	stop    context.CancelFunc
	done    chan struct{}
}

// driver runs a saga of one registered definition from its log record.
type driver interface {
	resume(ctx context.Context, rec record, token string) (Info, error)
	stepName(i int) string
}

// New returns a coordinator whose log lives in the database of pool, after
// creating or upgrading its tables there (see Migrate). It starts no
// goroutine: see Start. It returns an error wrapping ErrInvalid for a nil
// pool; its other errors wrap the driver's.
func New(ctx context.Context, pool *pgxpool.Pool, opts Options) (*Coordinator, error) {
	if pool == nil {
		return nil, fmt.Errorf("%w: nil pool", ErrInvalid)
	}
	if err := Migrate(ctx, pool); err != nil {
		return nil, err
	}
	return &Coordinator{pool: pool, opts: opts.withDefaults(), sagas: map[string]driver{}}, nil
}

// Handle runs sagas of one registered definition.
type Handle[S any] struct {
	c   *Coordinator
	def *Definition[S]
}

// Register checks d and registers it with c under its name, so that Run and
// recovery can find its code. It returns an error wrapping ErrInvalid when d
// breaks a rule (no name, no steps, a duplicate step name, a second pivot, a
// retriable step before the pivot, a compensation on a pivot or retriable
// step...) or when the name is already registered.
func Register[S any](c *Coordinator, d *Definition[S]) (*Handle[S], error) {
	if err := d.validate(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.sagas[d.name]; ok {
		return nil, fmt.Errorf("%w: saga %q is already registered", ErrInvalid, d.name)
	}
	h := &Handle[S]{c: c, def: d}
	c.sagas[d.name] = h
	return h, nil
}

// Run runs the saga with the given id from state, which the steps read and
// update, and returns its record once it has finished. The error is nil
// when the saga succeeded; it wraps ErrCompensated and the failed step's
// error when the saga was compensated; ErrFailed and the compensation's
// error when a compensation kept failing; ErrIncomplete when Run stopped
// before the end (ctx ended, a retriable step has not succeeded yet, or the
// lease was lost), in which case recovery finishes the saga.
//
// When a saga with this id already exists, Run runs nothing again: it waits
// for that saga to finish (taking it over if its coordinator died) and
// returns its outcome, with *state set to the state in the log.
//
// Run returns an error wrapping ErrInvalid for an empty id, a nil state or
// one that does not encode to JSON, and ErrClosed after Close.
func (h *Handle[S]) Run(ctx context.Context, id string, state *S) (Info, error) {
	c := h.c
	if id == "" {
		return Info{}, fmt.Errorf("%w: empty saga id", ErrInvalid)
	}
	if state == nil {
		return Info{}, fmt.Errorf("%w: nil state", ErrInvalid)
	}
	if c.isClosed() {
		return Info{}, ErrClosed
	}
	data, err := json.Marshal(state)
	if err != nil {
		return Info{}, fmt.Errorf("%w: encoding the state of saga %q: %w", ErrInvalid, id, err)
	}
	e := h.newExecution(id, c.newToken(), state, StatusRunning, 0)
	if h.def.steps[0].TxAction == nil {
		// The saga must be in the log before its first action can take effect.
		tag, err := c.pool.Exec(ctx, insertSQL, id, h.def.name, data, e.token, c.leaseMillis())
		if err != nil {
			return Info{}, interrupted(ctx, fmt.Errorf("coord: saga %q: writing the log: %w", id, err))
		}
		if tag.RowsAffected() == 0 {
			return h.await(ctx, id, state)
		}
		e.inserted = true
		if e.crash(stageAfterInsert, 0) {
			return e.info(), errCrashed
		}
	} else {
		// The first step's transaction inserts the record: see execution.
		e.initial = data
	}
	info, err := e.drive(ctx)
	if errors.Is(err, errExists) {
		return h.await(ctx, id, state)
	}
	return info, err
}

// await waits for the existing saga id to finish and returns its outcome. It
// takes the saga over when its lease expires.
func (h *Handle[S]) await(ctx context.Context, id string, state *S) (Info, error) {
	c := h.c
	wait := min(max(c.opts.LeaseDuration/10, 5*time.Millisecond), 100*time.Millisecond)
	for {
		rec, err := c.load(ctx, id)
		if err != nil {
			return Info{}, interrupted(ctx, err)
		}
		if rec.Name != h.def.name {
			return Info{}, fmt.Errorf("%w: saga %q exists as a %q saga, not %q", ErrInvalid, id, rec.Name, h.def.name)
		}
		if rec.Status.final() {
			if err := json.Unmarshal(rec.state, state); err != nil {
				return Info{}, fmt.Errorf("coord: saga %q: decoding its state: %w", id, err)
			}
			info := c.info(rec)
			return info, outcome(info, nil)
		}
		if rec.expired {
			token := c.newToken()
			claimed, ok, err := c.claimID(ctx, id, token)
			if err != nil {
				return Info{}, interrupted(ctx, err)
			}
			if ok {
				return h.resumeInto(ctx, claimed, token, state)
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return Info{}, fmt.Errorf("%w: waiting for saga %q: %w", ErrIncomplete, id, ctx.Err())
		case <-t.C:
		}
	}
}

// interrupted wraps err in ErrIncomplete when ctx ended: the saga may be
// in progress, and recovery finishes it.
func interrupted(ctx context.Context, err error) error {
	if ctx.Err() != nil && !errors.Is(err, ErrIncomplete) {
		return fmt.Errorf("%w: %w", ErrIncomplete, err)
	}
	return err
}

// resume implements driver.
func (h *Handle[S]) resume(ctx context.Context, rec record, token string) (Info, error) {
	return h.resumeInto(ctx, rec, token, new(S))
}

func (h *Handle[S]) resumeInto(ctx context.Context, rec record, token string, state *S) (Info, error) {
	if err := json.Unmarshal(rec.state, state); err != nil {
		return Info{}, fmt.Errorf("%w: saga %q: decoding its state: %w", ErrInvalid, rec.ID, err)
	}
	if rec.Step < 0 || rec.Step >= len(h.def.steps) || (rec.Status != StatusRunning && rec.Status != StatusCompensating) {
		// The definition changed under a saga in progress.
		return Info{}, fmt.Errorf("%w: saga %q is %s at step %d, which the %d steps of %q do not have",
			ErrInvalid, rec.ID, rec.Status, rec.Step, len(h.def.steps), h.def.name)
	}
	e := h.newExecution(rec.ID, token, state, rec.Status, rec.Step)
	e.inserted = true
	e.attempts, e.cause = rec.Attempts, rec.Error // the step's tries go on where the log left them
	return e.drive(ctx)
}

// stepName implements driver.
func (h *Handle[S]) stepName(i int) string { return h.def.stepName(i) }

// Get returns the record of the saga id, or an error wrapping ErrNotFound
// (other errors wrap the driver's).
func (c *Coordinator) Get(ctx context.Context, id string) (Info, error) {
	rec, err := c.load(ctx, id)
	if err != nil {
		return Info{}, err
	}
	return c.info(rec), nil
}

// Failed returns the sagas in the failed status, oldest first: their
// compensation kept failing and they wait for a person. Its errors wrap
// the driver's.
func (c *Coordinator) Failed(ctx context.Context) ([]Info, error) {
	rows, err := c.pool.Query(ctx, selectSQL+" where status = 'failed' order by updated_at, id")
	if err != nil {
		return nil, fmt.Errorf("coord: listing failed sagas: %w", err)
	}
	recs, err := pgx.CollectRows(rows, scanRecord)
	if err != nil {
		return nil, fmt.Errorf("coord: listing failed sagas: %w", err)
	}
	infos := make([]Info, len(recs))
	for i, r := range recs {
		infos[i] = c.info(r)
	}
	return infos, nil
}

func (c *Coordinator) load(ctx context.Context, id string) (record, error) {
	rows, err := c.pool.Query(ctx, selectSQL+" where id = $1", id)
	if err != nil {
		return record{}, fmt.Errorf("coord: reading saga %q: %w", id, err)
	}
	rec, err := pgx.CollectExactlyOneRow(rows, scanRecord)
	if errors.Is(err, pgx.ErrNoRows) {
		return record{}, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	if err != nil {
		return record{}, fmt.Errorf("coord: reading saga %q: %w", id, err)
	}
	return rec, nil
}

func (c *Coordinator) info(r record) Info {
	c.mu.Lock()
	d := c.sagas[r.Name]
	c.mu.Unlock()
	info := r.Info
	if d != nil {
		info.StepName = d.stepName(r.Step)
	}
	return info
}

// outcome is the error Run returns for a saga in info's status; cause is the
// original error when this process saw it.
func outcome(info Info, cause error) error {
	if cause == nil && info.Error != "" {
		cause = errors.New(info.Error)
	}
	switch info.Status {
	case StatusSucceeded:
		return nil
	case StatusCompensated:
		return fmt.Errorf("%w: saga %q: %w", ErrCompensated, info.ID, cause)
	case StatusFailed:
		return fmt.Errorf("%w: saga %q: %w", ErrFailed, info.ID, cause)
	}
	return fmt.Errorf("%w: saga %q is %s", ErrIncomplete, info.ID, info.Status)
}

func (c *Coordinator) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// newToken returns a lease owner unique to one run of one saga, so that two
// runs in the same process never both pass the lease check.
func (c *Coordinator) newToken() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return c.opts.Owner + "/" + hex.EncodeToString(b[:])
}

func (c *Coordinator) leaseMillis() int64 {
	return c.opts.LeaseDuration.Milliseconds()
}
