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
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/trace"
)

// Status is where a saga is in its life:
//
//	running ──► succeeded
//	   │
//	   ▼
//	compensating ──► compensated
//	   │
//	   ▼
//	failed ──(Resolve)──► resolved
//
// and running or compensating ──► dead after too many recoveries without
// progress (Options.DeadLetterAfter). Retry takes a failed saga back to
// compensating, a dead one back to where it was.
type Status string

// The statuses of a saga. Succeeded, compensated and resolved are finished
// for good; failed and dead wait for an operator (Retry, Resolve); running
// and compensating are driven by a run or by recovery.
const (
	StatusRunning      Status = "running"
	StatusCompensating Status = "compensating"
	StatusSucceeded    Status = "succeeded"
	StatusCompensated  Status = "compensated"
	StatusFailed       Status = "failed"
	// StatusResolved: an operator resolved a failed (or dead) saga by hand
	// (compensated outside the system): see Coordinator.Resolve.
	StatusResolved Status = "resolved"
	// StatusDead: recovery took the saga over more than
	// Options.DeadLetterAfter times without its log moving; it is left alone
	// until an operator retries or resolves it.
	StatusDead Status = "dead"
)

// final reports whether no run drives a saga in this status.
func (s Status) final() bool {
	return s == StatusSucceeded || s == StatusCompensated || s == StatusFailed || s == StatusResolved || s == StatusDead
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
	tel  *telemetry

	leaseArg any // leaseMillis, boxed once for the log's statements

	finals *finisher // writes the final records Run does not wait for

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
	cancelBefore() int
	telemetry() *defTelemetry
}

// New returns a coordinator whose log lives in the database of pool, after
// creating or upgrading its tables there (see Migrate). It starts no
// goroutine: see Start. It returns an error wrapping ErrInvalid for a nil
// pool or invalid options (see Options), before touching the database; its
// other errors wrap the driver's.
func New(ctx context.Context, pool *pgxpool.Pool, opts Options) (*Coordinator, error) {
	if pool == nil {
		return nil, fmt.Errorf("%w: nil pool", ErrInvalid)
	}
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if err := Migrate(ctx, pool); err != nil {
		return nil, err
	}
	c := &Coordinator{pool: pool, opts: opts.withDefaults(), sagas: map[string]driver{}, tel: newTelemetry(opts)}
	c.leaseArg = c.leaseMillis()
	c.finals = newFinisher(c)
	c.observeWaiting()
	return c, nil
}

// Handle runs sagas of one registered definition.
type Handle[S any] struct {
	c   *Coordinator
	def *Definition[S]
	tel *defTelemetry
	// stepArgs are the step names, boxed once for the log's statements;
	// memberArgs the names of the groups' members, nameArg the saga's.
	stepArgs   []any
	memberArgs map[string]any
	nameArg    any
}

// Register checks d and registers it with c under its name, so that Run and
// recovery can find its code. It returns an error wrapping ErrInvalid when d
// breaks a rule (no name, no steps, a duplicate step name, a second pivot, a
// retriable step before the pivot, a compensation on a pivot or retriable
// step, an invalid RetryPolicy or a negative Timeout, a parallel group
// breaking a rule of Parallel...), when the name is
// already registered, or for a nil c.
func Register[S any](c *Coordinator, d *Definition[S]) (*Handle[S], error) {
	if c == nil {
		return nil, fmt.Errorf("%w: nil Coordinator", ErrInvalid)
	}
	if err := d.validate(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.sagas[d.name]; ok {
		return nil, fmt.Errorf("%w: saga %q is already registered", ErrInvalid, d.name)
	}
	h := &Handle[S]{c: c, def: d, tel: newDefTelemetry(d), stepArgs: make([]any, len(d.steps)), memberArgs: map[string]any{}, nameArg: d.name}
	for i, st := range d.steps {
		h.stepArgs[i] = st.Name
		for _, m := range st.members {
			h.memberArgs[m.Name] = m.Name
		}
	}
	c.sagas[d.name] = h
	return h, nil
}

// Run runs the saga with the given id from state, which the steps read and
// update, and returns its record once it has finished. Its error tells the
// caller exactly where the saga stands:
//
//   - nil: the saga succeeded; every step took effect, and the log durably
//     holds a position from which it can only finish succeeded. When the
//     last step is a retriable Action (or a parallel group of retriable
//     members), Run returns without waiting for the final record: the
//     coordinator writes it right after, without waiting for the WAL
//     flush, and its own reads (Get, List, History...) and Close wait for
//     it, within Options.SettleTimeout; until then another coordinator
//     sees the saga running. Close the coordinator before its pool, and
//     before the process exits. If that record is lost (the process dies
//     first, the database is unreachable for longer, PostgreSQL crashes
//     before the flush), the saga stays running until recovery (Recover,
//     Start) replays that idempotent step once the lease ends and ends it
//     succeeded again (see README.md, "Run does not wait for the final
//     record").
//   - ErrNotStarted: nothing took effect and nothing is in the log (the
//     record's insert failed, or ctx had ended, before it could commit).
//     No step took effect: at most a first TxAction was called, in the
//     transaction that carried the record and did not commit. Running it
//     again with the same id is safe; so is reporting a failure.
//   - ErrIncomplete: the saga is durably in the log and not finished as far
//     as this call knows (ctx ended, a retriable step has not succeeded yet,
//     the log could not be written, the lease was lost, or another run
//     holds it): recovery (Recover, Start) drives it to its end, forward or
//     by compensation. Get, or Run with the same id, gives the outcome.
//   - ErrOutcomeUnknown: the record's insert failed in a way that leaves
//     its outcome unknown (the connection broke while it was in flight) and
//     the log could not be read to learn it within a few tries. The saga may
//     be in the log (then recovery drives it) or not (then nothing took
//     effect). Run again with the same id: it is idempotent and returns the
//     outcome, or runs the saga if it never started.
//   - ErrCompensated (wrapping the failed step's error): the saga did not
//     succeed, and every step that had taken effect was compensated.
//   - ErrFailed (wrapping the compensation's error): a compensation kept
//     failing; the saga is left in the failed status for a person
//     (Coordinator.Failed).
//
// The saga's record is in the log before any step takes effect. When the
// first step is a TxAction, the record's insert, at the position after
// that step, goes with that step's COMMIT and commits with it (no round
// trip of its own): the saga appears in the log with its first step done,
// or not at all (a try that fails rolls the record back with it; Run then
// inserts the record alone and goes on as for any failed try). Otherwise
// Run inserts the record on its own (one round trip) before calling any
// step. When a saga with this id already exists (the insert finds it), no
// step takes effect: a first TxAction's statements run, and its
// transaction rolls back when the record's insert finds the id (or the
// statements fail on the existing saga's writes; their error is
// ignored), and Run calls no other step. It waits for that saga to finish
// and returns its outcome, with *state set to the state in the log. The
// only exception is a saga whose lease expired (its coordinator died or
// gave up): Run then takes it over and drives it, as Recover would. So
// concurrent Runs of one id make each step take effect once between them,
// call each Action once (once per try), and a Run of a finished saga calls
// none but a first TxAction, rolled back.
//
// The Info returned is the record as the database has it, timestamps
// included, also with ErrIncomplete (then as last read: it is zero only if
// Run could not read the record at all); it is zero with ErrNotStarted and
// ErrOutcomeUnknown. A final record that Run does not wait for carries the
// time Run reports as UpdatedAt, read from the process's clock (never
// before the record's earlier timestamps).
//
// Run returns an error wrapping ErrInvalid for an invalid id (see
// ErrInvalid), a nil state or one that does not encode to JSON, an id that
// exists as a saga of another definition or whose logged state no longer
// decodes into S; and ErrClosed after Close. Nothing took effect then.
func (h *Handle[S]) Run(ctx context.Context, id string, state *S) (info Info, err error) {
	if h == nil || h.c == nil {
		return Info{}, fmt.Errorf("%w: nil Handle (use Register)", ErrInvalid)
	}
	ctx, span := h.c.tel.startSpan(ctx, h.tel.runSpan, id, h.tel.name)
	if span != nil {
		defer func() { endSpan(span, info, err) }()
	}
	return h.run(ctx, span, id, state)
}

// run is Run's work under span, nil when not traced.
func (h *Handle[S]) run(ctx context.Context, span trace.Span, id string, state *S) (Info, error) {
	c := h.c
	if err := checkText("saga id", id); err != nil {
		return Info{}, err
	}
	if state == nil {
		return Info{}, fmt.Errorf("%w: nil state", ErrInvalid)
	}
	if c.isClosed() {
		return Info{}, ErrClosed
	}
	data, err := c.encodeState(id, state)
	switch {
	case errors.Is(err, ErrInvalid):
		return Info{}, err
	case err != nil: // the codec failed: nothing logged
		return Info{}, fmt.Errorf("%w: %w", ErrNotStarted, err)
	}
	e := h.newExecution(id, c.newToken(), state, StatusRunning, 0)
	// Stored with the record, so that a recovery links to this trace.
	e.traceContext = encodeTraceContext(ctx)
	if h.def.steps[0].TxAction != nil {
		// The record's insert goes first in the step's transaction and
		// commits with it: no round trip and no commit of its own.
		e.pending = data
		info, err := e.drive(ctx)
		if uerr, ok := unlogged(err); ok {
			if errors.Is(uerr, errExists) {
				return h.await(ctx, span, id, state)
			}
			return Info{}, uerr
		}
		return info, err
	}
	// The saga must be in the log before any step's code is called.
	switch err := e.insert(ctx, data); {
	case errors.Is(err, errExists):
		return h.await(ctx, span, id, state)
	case err != nil:
		return Info{}, err
	}
	c.tel.started.Add(ctx, 1, h.tel.nameOpts...)
	if e.crash(stageAfterInsert, 0) {
		return e.info(), errCrashed
	}
	if err := ctx.Err(); err != nil {
		return e.abandon(ctx, err, 0)
	}
	return e.drive(ctx)
}

// insert writes the saga's record. It returns errExists when the id is in
// the log already, as another run's; an error wrapping ErrNotStarted when
// the insert surely did not take effect; and an error wrapping
// ErrOutcomeUnknown when it may have and the log could not tell.
func (e *execution[S]) insert(ctx context.Context, data []byte) error {
	conn, err := e.c.pool.Acquire(ctx)
	if err != nil {
		// No statement was sent.
		return fmt.Errorf("%w: saga %q: writing its record: %w", ErrNotStarted, e.id, err)
	}
	err = conn.QueryRow(ctx, insertSQL, e.insertArgs(data)...).Scan(&e.created, &e.updated)
	conn.Release()
	switch {
	case err == nil:
		return nil
	case errors.Is(err, pgx.ErrNoRows):
		return errExists
	case notApplied(err):
		return fmt.Errorf("%w: saga %q: writing its record: %w", ErrNotStarted, e.id, err)
	}
	// The connection broke with the insert in flight: it may have committed.
	ours, rerr := e.settleInsert(ctx, data)
	switch {
	case rerr != nil:
		return fmt.Errorf("%w: saga %q: its record's insert failed (%w) and the log could not be read (%w): run it again with the same id",
			ErrOutcomeUnknown, e.id, err, rerr)
	case !ours:
		return errExists
	}
	return nil
}

// insertArgs are the parameters of insertSQL for the state data.
func (e *execution[S]) insertArgs(data []byte) []any {
	var traceContext any // untyped nil when there is none: a NULL, no allocation
	if e.traceContext != nil {
		traceContext = e.traceContext
	}
	args := make([]any, 0, 16) // as many as insertSQL has
	args = append(args, e.idArg, e.nameArg, data, e.tokenArg, e.c.leaseArg)
	args = e.appendEvents(args, event{kind: EventCreated}, event{kind: EventStarted})
	return append(args, traceContext)
}

// The bounds of settleInsert within the run's settling budget (see
// execution.settleContext): tries, each with its own timeout, and the first
// wait between two (doubling).
const (
	settleTries   = 5
	settleTimeout = 2 * time.Second
	settleWait    = 20 * time.Millisecond
)

// settleInsert learns the outcome of an insert of the record that failed in
// flight, on fresh connections (the pool's may all be broken): it inserts
// the record again, which is harmless if the first insert committed, since
// the record names this run's token. It reports whether the saga is this
// run's (e.reinserted: because this insert took effect, so the first did
// not); its error means the log could not be reached in settleTries tries
// within the run's settling budget (Options.SettleTimeout).
func (e *execution[S]) settleInsert(ctx context.Context, data []byte) (bool, error) {
	sctx, cancel := e.settleContext(ctx) // the answer is owed even to a caller who gave up
	defer cancel()
	wait := settleWait
	var errs []error
	for try := 1; ; try++ {
		ours, err := e.settleOnce(sctx, data)
		if err == nil {
			if ctx.Err() == nil {
				// The run goes on for a caller still waiting: a later
				// failure has a budget of its own.
				e.settleBy = time.Time{}
			}
			return ours, nil
		}
		errs = append(errs, err)
		if try == settleTries {
			return false, errors.Join(errs...)
		}
		if !sleepCtx(sctx, wait) {
			errs = append(errs, fmt.Errorf("settling within Options.SettleTimeout %v: %w", e.c.opts.SettleTimeout, context.Cause(sctx)))
			return false, errors.Join(errs...)
		}
		wait *= 2
	}
}

// sleepCtx waits for d, or until ctx ends; it reports whether it waited all
// of d with ctx still live.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return ctx.Err() == nil
	case <-ctx.Done():
		return false
	}
}

func (e *execution[S]) settleOnce(ctx context.Context, data []byte) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, settleTimeout)
	defer cancel()
	conn, err := e.c.connect(ctx)
	if err != nil {
		return false, err
	}
	defer conn.Close(ctx)
	err = conn.QueryRow(ctx, insertSQL, e.insertArgs(data)...).Scan(&e.created, &e.updated)
	if err == nil {
		e.reinserted = true
		return true, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return false, err
	}
	var owner string
	var created, updated time.Time
	err = conn.QueryRow(ctx, ownerSQL, e.id).Scan(&owner, &created, &updated)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil // there a moment ago and deleted since: not this run's
	}
	if err != nil {
		return false, err
	}
	if owner != e.token {
		return false, nil
	}
	e.created, e.updated = created, updated
	return true, nil
}

// connect opens a connection of its own to the pool's database, as the pool
// would (BeforeConnect, AfterConnect), outside the pool.
func (c *Coordinator) connect(ctx context.Context) (*pgx.Conn, error) {
	cfg := c.pool.Config() // a copy
	if cfg.BeforeConnect != nil {
		if err := cfg.BeforeConnect(ctx, cfg.ConnConfig); err != nil {
			return nil, err
		}
	}
	conn, err := pgx.ConnectConfig(ctx, cfg.ConnConfig)
	if err != nil {
		return nil, err
	}
	if cfg.AfterConnect != nil {
		if err := cfg.AfterConnect(ctx, conn); err != nil {
			_ = conn.Close(ctx)
			return nil, err
		}
	}
	return conn, nil
}

// notApplied reports whether err, from an autocommitted statement or a
// batch, proves that it did not take effect: it was never sent; pgx could
// not prepare or build the batch (ErrPreprocessingBatch: nothing of it ran
// to a COMMIT or a Sync, and pgx closes the connection); or the server
// answered that it failed (an ERROR, which ends that statement only). A
// broken connection, a FATAL error or a timeout prove nothing: the
// statement may have committed before the answer was lost.
func notApplied(err error) bool {
	if pgconn.SafeToRetry(err) {
		return true
	}
	var pre pgx.ErrPreprocessingBatch
	if errors.As(err, &pre) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		sev := pgErr.SeverityUnlocalized
		if sev == "" {
			sev = pgErr.Severity
		}
		return sev == "ERROR"
	}
	return false
}

// await waits for the existing saga id to finish and returns its outcome. It
// takes the saga over when its lease expires.
func (h *Handle[S]) await(ctx context.Context, span trace.Span, id string, state *S) (Info, error) {
	c := h.c
	wait := min(max(c.opts.LeaseDuration/10, 5*time.Millisecond), 100*time.Millisecond)
	var last Info // the record as last read, for ErrIncomplete
	for {
		rec, err := c.load(ctx, id)
		if err != nil {
			return last, incomplete(id, err)
		}
		last = c.info(rec)
		if rec.Name != h.def.name {
			return Info{}, fmt.Errorf("%w: saga %q exists as a %q saga, not %q", ErrInvalid, id, rec.Name, h.def.name)
		}
		if rec.Status.final() {
			if err := c.decodeState(id, rec.state, state); err != nil {
				return Info{}, err
			}
			info := c.info(rec)
			return info, outcome(info, nil)
		}
		if rec.expired {
			token := c.newToken()
			claimed, ok, err := c.claimID(ctx, id, token)
			if err != nil {
				return last, incomplete(id, err)
			}
			if ok {
				linkOrigin(span, claimed, resumedByTakeover)
				if claimed.Status != StatusDead {
					c.tel.recoveries.Add(ctx, 1, h.tel.nameOpts...)
				}
				return h.resumeInto(ctx, claimed, token, state)
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return last, fmt.Errorf("%w: waiting for saga %q: %w", ErrIncomplete, id, ctx.Err())
		case <-t.C:
		}
	}
}

// incomplete wraps err, which kept Run from learning the outcome of the
// saga id that it knows is in the log, in ErrIncomplete.
func incomplete(id string, err error) error {
	if errors.Is(err, ErrIncomplete) {
		return err
	}
	return fmt.Errorf("%w: saga %q is in the log: %w", ErrIncomplete, id, err)
}

// resume implements driver.
func (h *Handle[S]) resume(ctx context.Context, rec record, token string) (Info, error) {
	return h.resumeInto(ctx, rec, token, new(S))
}

func (h *Handle[S]) resumeInto(ctx context.Context, rec record, token string, state *S) (Info, error) {
	if rec.Status.final() { // dead-lettered by the claim
		h.c.tel.finish(ctx, h.tel, rec.Status, 0)
		info := h.c.info(rec)
		return info, outcome(info, nil)
	}
	if err := h.c.decodeState(rec.ID, rec.state, state); err != nil {
		return Info{}, err
	}
	if rec.Step < 0 || rec.Step >= len(h.def.steps) || (rec.Status != StatusRunning && rec.Status != StatusCompensating) {
		// The definition changed under a saga in progress.
		return Info{}, fmt.Errorf("%w: saga %q is %s at step %d, which the %d steps of %q do not have",
			ErrInvalid, rec.ID, rec.Status, rec.Step, len(h.def.steps), h.def.name)
	}
	e := h.newExecution(rec.ID, token, state, rec.Status, rec.Step)
	e.resumedAt = rec.Step
	e.created, e.updated = rec.CreatedAt, rec.UpdatedAt
	e.attempts, e.cause = rec.Attempts, rec.Error // the step's tries go on where the log left them
	e.cancel = rec.cancel
	e.traceContext = rec.traceContext
	return e.drive(ctx)
}

// telemetry implements driver.
func (h *Handle[S]) telemetry() *defTelemetry { return h.tel }

// cancelBefore implements driver.
func (h *Handle[S]) cancelBefore() int { return h.def.cancelBefore() }

// encodeState returns what the log stores for the state v of the saga id:
// its JSON, through Options.Codec. Its error wraps ErrInvalid when v does
// not encode to JSON.
func (c *Coordinator) encodeState(id string, v any) ([]byte, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("%w: encoding the state of saga %q: %w", ErrInvalid, id, err)
	}
	if c.opts.Codec == nil {
		return data, nil
	}
	data, err = c.opts.Codec.Encode(id, data)
	if err != nil {
		return nil, fmt.Errorf("coord: encoding the state of saga %q with Options.Codec: %w", id, err)
	}
	return data, nil
}

// decodeState sets v from the stored state of the saga id. Its error wraps
// the codec's (ErrUnsealable for a Sealer), or ErrInvalid when the state
// does not decode into v.
func (c *Coordinator) decodeState(id string, stored []byte, v any) error {
	if c.opts.Codec != nil {
		var err error
		if stored, err = c.opts.Codec.Decode(id, stored); err != nil {
			return fmt.Errorf("coord: saga %q: decoding its state with Options.Codec (the saga is left as it is): %w", id, err)
		}
	}
	if err := json.Unmarshal(stored, v); err != nil {
		return fmt.Errorf("%w: saga %q: decoding its state: %w", ErrInvalid, id, err)
	}
	return nil
}

// stepName implements driver.
func (h *Handle[S]) stepName(i int) string { return h.def.stepName(i) }

// Get returns the record of the saga id, or an error wrapping ErrNotFound,
// or ErrInvalid for an id Run would refuse (other errors wrap the
// driver's).
func (c *Coordinator) Get(ctx context.Context, id string) (Info, error) {
	if err := checkText("saga id", id); err != nil {
		return Info{}, err
	}
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
	c.settleFinals(ctx)
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
	c.settleFinals(ctx)
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
	case StatusResolved:
		return fmt.Errorf("%w: saga %q", ErrResolved, info.ID)
	case StatusDead:
		return fmt.Errorf("%w: saga %q: %w", ErrDead, info.ID, cause)
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
