package coord

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/trace"
)

// The boundaries at which Options.crashAt can cut a run.
const (
	stageAfterInsert        = "after-insert"         // the record is written, no step ran
	stageBeforeAction       = "before-action"        // before a try of an action
	stageAfterAction        = "after-action"         // the action succeeded, its log record is not written (TxAction: not committed)
	stageAfterLog           = "after-log"            // the step's log record is written (a final record Run does not wait for: handed to the finisher)
	stageAfterFailLog       = "after-fail-log"       // the step failed and the saga is logged as compensating
	stageBeforeCompensate   = "before-compensate"    // before a try of a compensation
	stageAfterCompensate    = "after-compensate"     // the compensation succeeded, its log record is not written (TxCompensate: not committed)
	stageAfterCompensateLog = "after-compensate-log" // the compensation's log record is written
)

// crashPoint is a boundary of a run, for Options.crashAt.
type crashPoint struct {
	Stage string
	Step  string
}

func (p crashPoint) String() string { return p.Stage + " " + p.Step }

// execution is one coordinator's run of one saga, from the log's point of
// view: it holds the lease (token) and the saga's position.
type execution[S any] struct {
	c     *Coordinator
	def   *Definition[S]
	tel   *defTelemetry
	id    string
	token string
	state *S

	status   Status
	step     int
	attempts int
	cause    string // the error recorded in the log
	causeErr error  // the same error, when this run saw it

	created, updated time.Time // the record's timestamps, as the database set them
	cancel           bool      // Cancel asked the saga to stop, as the last log write read

	// pending is the record's state while its insert rides in the
	// transaction of the first try of a first step that is a TxAction
	// (Run), nil once the record is in the log: then the record commits
	// with the step, in one transaction, or not at all (see firstTryFailed).
	pending    []byte
	reinserted bool // settleInsert's insert took effect (so the one in flight did not)
	// settleBy ends the run's settling budget (see settleContext); zero
	// until the run first needs it.
	settleBy time.Time

	// Boxed once for the log's statements, and the buffers of its writes
	// (see writeStmt).
	idArg, tokenArg any
	stepArgs        []any
	memberArgs      map[string]any
	nameArg         any
	writeArgs       []any
	writeScan       [3]any
	insertScan      [3]any
	// The timestamps the log's writes return, in microseconds since the
	// Unix epoch (see micros), then copied to created and updated (see
	// scanned); 0 for none.
	createdUs, updatedUs int64
	one                  int64

	traceContext []byte     // of the Run that started the saga (see encodeTraceContext)
	stepSpan     trace.Span // the current step's span, nil when not traced
	try          int        // the current step's try, for its span

	lease leaseKeeper // see keepLease

	groupEventsBuf [4]event // backs groupEvents for a small group

	resumedAt   int     // the step this run resumed the saga at from the log; -1 for a new saga
	groupEvents []event // the members' events of a group's log record (see appendDone)
}

func (h *Handle[S]) newExecution(id, token string, state *S, status Status, step int) *execution[S] {
	return &execution[S]{c: h.c, def: h.def, tel: h.tel, stepArgs: h.stepArgs, memberArgs: h.memberArgs, nameArg: h.nameArg, id: id, idArg: id, token: token, tokenArg: token,
		state: state, status: status, step: step, resumedAt: -1}
}

// stepArg returns the name of step i boxed, "" past the ends.
func (e *execution[S]) stepArg(i int) any {
	if i < 0 || i >= len(e.stepArgs) {
		return ""
	}
	return e.stepArgs[i]
}

// statusArgs are the statuses a run writes, boxed once.
var statusArgs = map[Status]any{
	StatusRunning: string(StatusRunning), StatusCompensating: string(StatusCompensating), StatusSucceeded: string(StatusSucceeded),
	StatusCompensated: string(StatusCompensated), StatusFailed: string(StatusFailed),
}

func (e *execution[S]) crash(stage string, step int) bool {
	if e.c.opts.crashAt == nil {
		return false
	}
	return e.c.opts.crashAt(crashPoint{Stage: stage, Step: e.def.stepName(step)})
}

func (e *execution[S]) info() Info {
	return Info{ID: e.id, Name: e.def.name, Status: e.status, Step: e.step, StepName: e.def.stepName(e.step), Attempts: e.attempts, Error: e.cause,
		CreatedAt: e.created, UpdatedAt: e.updated}
}

// drive runs the saga from its position until it is final or the run stops.
func (e *execution[S]) drive(ctx context.Context) (Info, error) {
	e.c.tel.active.Add(ctx, 1, e.tel.nameOpts...)
	defer e.c.tel.active.Add(ctx, -1, e.tel.nameOpts...)
	for !e.status.final() {
		// Cancel is accepted only before the step ahead of the pivot is done,
		// so at this boundary the pivot has not started.
		if e.cancel && e.status == StatusRunning && e.step <= e.def.cancelBefore() {
			if err := e.cancelNow(ctx); err != nil {
				return e.abandon(ctx, err, 0)
			}
			continue
		}
		comp := e.status == StatusCompensating
		err := e.runStep(ctx, comp)
		if err == nil {
			continue
		}
		if _, ok := unlogged(err); ok {
			return e.info(), err
		}
		if stopped(ctx, err) {
			return e.abandon(ctx, err, 0)
		}
		st := &e.def.steps[e.step]
		switch {
		case comp:
			e.cause = fmt.Sprintf("compensating step %q: %v (after %s)", st.Name, err, e.cause)
			e.causeErr = fmt.Errorf("compensating step %q: %w", st.Name, err)
			e.status = StatusFailed
			err = e.write(ctx, false, e.failureEvents(EventCompensationFailed, err)...)
		case st.Kind == Retriable:
			// Never compensated: leave it to recovery, after a backoff.
			wait := e.retriableWait(st, err)
			return e.abandon(ctx, fmt.Errorf("%w: retriable step %q: %w", ErrIncomplete, st.Name, err), wait)
		default:
			err = e.startCompensation(ctx, err)
		}
		if err != nil {
			return e.abandon(ctx, err, 0)
		}
	}
	// Both timestamps are the database's, so the duration is not skewed by
	// clocks of the processes that ran the saga (but for a final record
	// Run does not wait for: see deferFinal).
	e.c.tel.finish(ctx, e.tel, e.status, e.updated.Sub(e.created))
	info := e.info()
	return info, outcome(info, e.causeErr)
}

// stopped reports whether err ends the run rather than the step: the run was
// cut, its context ended, the log could not be written or the lease is lost.
func stopped(ctx context.Context, err error) bool {
	return errors.Is(err, errCrashed) || errors.Is(err, ErrIncomplete) || ctx.Err() != nil
}

// unloggedError is how firstTryFailed ends a run whose record is not in the
// log (its first try carried it; see execution.pending), or not known to
// be: err is errExists, or wraps ErrNotStarted or ErrOutcomeUnknown. It is a
// type of its own, tested without unwrapping, so that a step's error that
// wraps those sentinels (a nested Run's, say) stays the step's failure.
type unloggedError struct{ err error }

func (u *unloggedError) Error() string { return u.err.Error() }
func (u *unloggedError) Unwrap() error { return u.err }

// unlogged reports whether err is an unloggedError, and the error it holds.
func unlogged(err error) (error, bool) {
	u, ok := err.(*unloggedError)
	if !ok {
		return nil, false
	}
	return u.err, true
}

// settleContext returns the context of the waits that follow a cut or a
// failure whose outcome the run must learn or report to the log (settling
// an insert, releasing the saga): free of the caller's ctx, whose end must
// not stop them, and bounded by one budget, Options.SettleTimeout, counted
// from the first of them (settleInsert starts it again when the run goes on
// for a caller still waiting), so that a caller can tell how long Run may
// take past its ctx.
func (e *execution[S]) settleContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if e.settleBy.IsZero() {
		e.settleBy = time.Now().Add(e.c.opts.SettleTimeout)
	}
	return context.WithDeadline(context.WithoutCancel(ctx), e.settleBy)
}

// abandon ends the run, leaving the saga in the log for recovery, which may
// take it over after the given delay (zero: at once).
func (e *execution[S]) abandon(ctx context.Context, err error, delay time.Duration) (Info, error) {
	if errors.Is(err, errCrashed) {
		return e.info(), err
	}
	if !errors.Is(err, ErrLeaseLost) {
		// Best effort, within the run's settling budget: recovery would
		// take the saga when the lease ends anyway.
		wctx, cancel := e.settleContext(ctx)
		var updated time.Time
		args := e.appendEvents([]any{e.idArg, e.tokenArg, delay.Milliseconds(), e.attempts, e.cause},
			event{EventReleased, e.step, e.attempts, err.Error(), ""})
		if e.c.pool.QueryRow(wctx, releaseSQL, args...).Scan(&updated) == nil {
			e.updated = updated
		}
		cancel()
	}
	if !errors.Is(err, ErrIncomplete) {
		err = fmt.Errorf("%w: saga %q: %w", ErrIncomplete, e.id, err)
	}
	return e.info(), err
}

// startCompensation turns a saga whose step failed with err to compensation.
func (e *execution[S]) startCompensation(ctx context.Context, err error) error {
	st := &e.def.steps[e.step]
	failed := e.failureEvents(EventFailed, err)
	e.causeErr = fmt.Errorf("step %q: %w", st.Name, err)
	e.cause = e.causeErr.Error()
	e.attempts = 0
	e.status = StatusCompensating
	// An Action (or a group's) may have taken effect before it failed, so it
	// is compensated too; a failed TxAction's transaction rolled back.
	if !st.undoneWhenItFails() {
		e.step--
	}
	e.skipUncompensated()
	if err := e.write(ctx, false, failed...); err != nil {
		return err
	}
	if e.crash(stageAfterFailLog, e.step) {
		return errCrashed
	}
	return nil
}

// cancelNow turns a running saga that Cancel asked to stop, at a step
// boundary before its pivot, to compensation of what it did. The current
// step's action is compensated only if a try of it ran (an Action may have
// taken effect before it failed), or if a previous run may have started it:
// this run resumed the saga there from the log, which records no try in
// progress (a compensation does nothing for an action that did not run).
func (e *execution[S]) cancelNow(ctx context.Context) error {
	st := &e.def.steps[e.step]
	ev := event{EventCancelled, e.step, e.attempts, "", ""}
	e.causeErr = ErrCancelled
	e.cause = ErrCancelled.Error()
	if !((e.attempts > 0 || e.resumedAt == e.step) && st.undoneWhenItFails()) {
		e.step--
	}
	e.attempts = 0
	e.status = StatusCompensating
	if e.step >= 0 {
		e.skipUncompensated()
	} else {
		e.step, e.status = -1, StatusCompensated
	}
	return e.write(ctx, false, ev)
}

// skipUncompensated moves a compensating saga down past the steps that have
// nothing to undo, to compensated when none is left.
func (e *execution[S]) skipUncompensated() {
	for e.step >= 0 && !e.def.steps[e.step].hasCompensation() {
		e.step--
	}
	if e.step < 0 {
		e.step = -1
		e.status = StatusCompensated
	}
}

// runStep runs the current step's action, or its compensation when comp,
// with the step's retry policy and records its success. It returns the last
// try's error, or an error that stops the run (see stopped).
func (e *execution[S]) runStep(ctx context.Context, comp bool) (err error) {
	if e.def.steps[e.step].members != nil {
		return e.runGroup(ctx, comp) // a span per member
	}
	if e.c.tel.tracing() {
		k := 0
		if comp {
			k = 1
		}
		st := &e.tel.steps[e.step]
		ctx, e.stepSpan = e.c.tel.tracer.Start(ctx, st.spanName[k], trace.WithSpanKind(trace.SpanKindInternal),
			trace.WithAttributes(st.attrs[k]...), trace.WithAttributes(attrSagaID.String(e.id)))
		span := e.stepSpan
		defer func() {
			e.stepSpan = nil
			span.SetAttributes(attrAttempt.Int(e.try))
			if errors.Is(err, errExists) {
				// Not a failure: the first step's transaction, which carried
				// the record, found the saga in the log and ran nothing.
				span.AddEvent("saga exists")
				span.End()
				return
			}
			endWithError(span, err)
		}()
	}
	return e.runTries(ctx, comp)
}

// runTries is runStep's work, under the step's span.
func (e *execution[S]) runTries(ctx context.Context, comp bool) error {
	st := &e.def.steps[e.step]
	at := e.step
	pol := st.Retry.withDefaults()
	op, fn, txFn := opAction, st.Action, st.TxAction
	before, afterLog, done := stageBeforeAction, stageAfterLog, e.c.opts.Hooks.StepSucceeded
	if comp {
		op, fn, txFn = opCompensate, st.Compensate, st.TxCompensate
		before, afterLog, done = stageBeforeCompensate, stageAfterCompensateLog, e.c.opts.Hooks.StepCompensated
	}
	for attempt := e.attempts + 1; ; attempt++ {
		if e.crash(before, at) {
			return errCrashed
		}
		e.try = attempt
		ev := StepEvent{SagaID: e.id, Saga: e.def.name, Step: st.Name, Attempt: attempt, Compensation: comp}
		call(e.c.opts.Hooks.StepStarted, ctx, ev)
		start := time.Now()
		var err error
		if txFn != nil {
			err = e.runTx(ctx, st, op, txFn)
		} else if err = e.call(ctx, st, op, fn); err == nil {
			err = e.move(op, func(w stmt) error { return e.exec(ctx, w) })
		}
		ev.Elapsed = time.Since(start)
		if err != nil && e.pending != nil {
			if err = e.firstTryFailed(ctx, err); errors.Is(err, errCrashed) {
				return err
			} else if _, ok := unlogged(err); ok {
				return err
			}
		}
		if !errors.Is(err, errCrashed) {
			e.c.tel.stepDuration.Record(ctx, ev.Elapsed.Seconds(), e.tel.durationOptions(at, comp, classify(err))...)
		}
		if err == nil {
			if e.crash(afterLog, at) {
				return errCrashed
			}
			call(done, ctx, ev)
			return nil
		}
		if stopped(ctx, err) {
			return err
		}
		ev.Err = err
		var pe *panicError
		if errors.As(err, &pe) {
			ev.Stack = pe.stack
		}
		call(e.c.opts.Hooks.StepFailed, ctx, ev)
		if err := e.retryOrGiveUp(ctx, pol, attempt, err); err != nil {
			return err
		}
	}
}

// retryOrGiveUp returns err when the policy allows no further try; otherwise
// it records the failed try and waits for the backoff.
func (e *execution[S]) retryOrGiveUp(ctx context.Context, pol RetryPolicy, attempt int, err error) error {
	e.attempts = attempt
	e.cause = err.Error()
	if attempt >= pol.Attempts || !pol.retryable(err) {
		return err
	}
	kind := EventTryFailed
	if e.status == StatusCompensating {
		kind = EventCompensationTryFailed
	}
	if err := e.write(ctx, false, event{kind, e.step, attempt, e.cause, ""}); err != nil {
		return err
	}
	if e.stepSpan != nil && e.stepSpan.IsRecording() {
		e.stepSpan.AddEvent("retry", trace.WithAttributes(attrAttempt.Int(attempt+1),
			attrErrorType.String(classNames[classify(err)]), attrMessage.String(e.cause)))
	}
	t := time.NewTimer(pol.wait(attempt))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return fmt.Errorf("%w: saga %q: %w", ErrIncomplete, e.id, ctx.Err())
	case <-t.C:
		return nil
	}
}

// advance moves the saga past the step that succeeded.
func (e *execution[S]) advance() {
	e.step++
	e.attempts = 0
	e.cause = ""
	if e.step == len(e.def.steps) {
		e.status = StatusSucceeded
	}
}

// retreat moves a compensating saga past the step it compensated.
func (e *execution[S]) retreat() {
	e.step--
	e.attempts = 0
	e.skipUncompensated()
}

// move moves the saga past the step whose action (op) or compensation
// succeeded, and has record write the new position to the log; if that
// fails, the saga stays where it was. It is where crashAt can cut a run
// between a step's success and its log record (after-action,
// after-compensate), for Action and TxAction steps alike.
func (e *execution[S]) move(op string, record func(stmt) error) error {
	after := stageAfterAction
	if op == opCompensate {
		after = stageAfterCompensate
	}
	if e.crash(after, e.step) {
		return errCrashed
	}
	status, at, attempts, cause, updated := e.status, e.step, e.attempts, e.cause, e.updated
	var buf [maxEvents]event
	evs := buf[:0]
	if op == opAction {
		e.advance()
		evs = e.appendDone(evs, EventSucceeded, at, attempts)
		if e.status == StatusRunning {
			evs = append(evs, event{EventStarted, e.step, 0, "", ""})
		}
	} else {
		e.retreat()
		evs = e.appendDone(evs, EventCompensated, at, attempts)
	}
	async := e.pending == nil && !e.c.opts.allDurable && !e.def.recordDurable(op == opAction, at)
	var w stmt
	var err error
	if e.pending != nil {
		w, err = e.insertDoneStmt(evs)
	} else {
		w, err = e.writeStmt(op == opAction, evs...)
	}
	switch {
	case err != nil:
	case async && e.status == StatusSucceeded && e.deferFinal(w, len(evs)):
		// The final record of a saga whose last step is retriable: Run does
		// not wait for it (see finisher).
	case async:
		w.sql = writeSQLFor(len(evs), true)
		err = record(w)
	default:
		err = record(w)
	}
	if err != nil {
		e.status, e.step, e.attempts, e.cause, e.updated = status, at, attempts, cause, updated
	}
	return err
}

// recordDurable reports whether the log record written after the action
// (forward) or the compensation of step at succeeded must be durable when
// its transaction commits, or may be committed without waiting for the
// WAL flush. A non-durable record may be lost by a PostgreSQL crash (with
// the later ones: the WAL is sequential, so a durable commit flushes every
// record before it); recovery then finds the saga where the record before
// it left it and replays the step, as after a coordinator crash just
// before the record. That is safe only where nothing that happens before
// the next durable commit depends on the record (README.md, Non-durable
// records, has the proof):
//
//   - a retriable step's: its replay is retried until it succeeds and never
//     compensated, and every later step is retriable too;
//   - a compensatable Action's when the next step is a TxAction: no effect
//     happens outside PostgreSQL before that step's durable commit;
//   - a compensation's that leaves the saga compensating: a compensation is
//     idempotent, replaying it never leads forward again.
//
// The other records stay durable: the record's insert, every transaction
// of a TxAction or TxCompensate (the step's own writes), the pivot's (Run
// then reports the saga past it), the switch to compensation, failed
// tries, the final compensated record, and operator actions.
func (d *Definition[S]) recordDurable(forward bool, at int) bool {
	st := &d.steps[at]
	if !forward {
		if st.TxCompensate != nil {
			return true
		}
		for i := at - 1; i >= 0; i-- { // a lower step left to compensate
			if d.steps[i].hasCompensation() {
				return false
			}
		}
		return true
	}
	switch {
	case st.TxAction != nil:
		return true
	case st.Kind == Retriable:
		return false
	case st.Kind == Compensatable && at+1 < len(d.steps) && d.steps[at+1].TxAction != nil:
		return false
	}
	return true
}

// writeStmt is the log write of the saga's current position, appending evs
// to its history.
func (e *execution[S]) writeStmt(withState bool, evs ...event) (stmt, error) {
	var state any
	if withState {
		data, err := e.c.encodeState(e.id, e.state)
		if err != nil {
			return stmt{}, err
		}
		state = data
	}
	// The buffers are the execution's own: a write is done with them (sent
	// on its own, or with its transaction's COMMIT) before the next one.
	// Room for the events' slots, and the time of a final record that
	// deferFinal appends.
	if n := 9 + 5*max(maxEvents, len(evs)); cap(e.writeArgs) < n {
		e.writeArgs = make([]any, 0, n)
	}
	e.writeArgs = e.appendEvents(append(e.writeArgs[:0], e.idArg, e.tokenArg, boxed(statusArgs, e.status), e.step, state, e.attempts, e.cause, e.c.leaseArg), evs...)
	e.createdUs, e.updatedUs = 0, 0 // none from an earlier statement that failed
	e.writeScan = [3]any{&e.one, &e.updatedUs, &e.cancel}
	return stmt{sql: writeSQLFor(len(evs), false), args: e.writeArgs, scan: e.writeScan[:]}, nil
}

// insertDoneStmt is the record's insert at the saga's current position,
// with its state, that the transaction of the first try of a first step
// that is a TxAction commits (see execution.pending): the insert's
// history events (created, the first step started) come before evs, the
// step's.
func (e *execution[S]) insertDoneStmt(evs []event) (stmt, error) {
	data, err := e.c.encodeState(e.id, e.state)
	if err != nil {
		return stmt{}, err
	}
	var traceContext any // untyped nil when there is none: a NULL, no allocation
	if e.traceContext != nil {
		traceContext = e.traceContext
	}
	var buf [insertDoneEvents]event
	all := append(append(buf[:0], event{kind: EventCreated}, event{kind: EventStarted}), evs...)
	if cap(e.writeArgs) < 8+5*insertDoneEvents {
		e.writeArgs = make([]any, 0, 8+5*insertDoneEvents)
	}
	args := append(e.writeArgs[:0], e.idArg, e.nameArg, boxed(statusArgs, e.status), e.step, data, e.tokenArg, e.c.leaseArg, traceContext)
	args = e.appendEvents(args, all...)
	for range insertDoneEvents - len(all) {
		args = append(args, nil, nil, nil, nil, nil)
	}
	e.writeArgs = args
	e.createdUs, e.updatedUs = 0, 0
	e.insertScan = [3]any{&e.one, &e.createdUs, &e.updatedUs}
	return stmt{sql: insertDoneSQL, args: args, scan: e.insertScan[:], zero: errExists}, nil
}

// insertDoneEvents is how many history events insertDoneStmt writes at
// most: created, started, the first step's succeeded and the next started.
const insertDoneEvents = 2 + maxEvents

// write records the saga's current position in the log, and evs in its
// history.
func (e *execution[S]) write(ctx context.Context, withState bool, evs ...event) error {
	s, err := e.writeStmt(withState, evs...)
	if err != nil {
		return err
	}
	return e.exec(ctx, s)
}

// exec runs the log write s on its own.
func (e *execution[S]) exec(ctx context.Context, s stmt) error {
	if err := e.c.pool.QueryRow(ctx, s.sql, s.args...).Scan(s.scan...); err != nil {
		return fmt.Errorf("%w: saga %q: writing the log: %w", ErrIncomplete, e.id, logError(err))
	}
	e.scanned()
	return nil
}

// scanned copies the timestamps a log write returned (writeStmt,
// insertDoneStmt) to the execution's.
func (e *execution[S]) scanned() {
	if e.createdUs != 0 {
		e.created, e.createdUs = time.UnixMicro(e.createdUs), 0
	}
	if e.updatedUs != 0 {
		e.updated, e.updatedUs = time.UnixMicro(e.updatedUs), 0
	}
}

// call runs fn, an Action or Compensate, with the step's key and timeout,
// renewing the lease while it runs.
func (e *execution[S]) call(ctx context.Context, st *Step[S], op string, fn func(context.Context, *S) error) error {
	// A step without a compensation tells the barriers so: MongoInsert then
	// needs no tombstone check (README.md, "The MongoDB barrier in one
	// round trip").
	sctx, cancel := context.WithCancelCause(withRunStep(ctx, e.id, st.Name, op, st.hasCompensation()))
	defer cancel(nil)
	if st.Timeout > 0 {
		var cancelT context.CancelFunc
		sctx, cancelT = context.WithTimeout(sctx, st.Timeout)
		defer cancelT()
	}
	e.keepLease(ctx, cancel)
	err := protect(func() error { return fn(sctx, e.state) })
	if lost := e.stopLease(); lost != nil {
		return lost
	}
	return err
}

// keepLease renews the lease every third of it until stopLease is called,
// which returns the error wrapping ErrLeaseLost when the lease was lost,
// after cancelling the step through cancel. A timer, not a goroutine with
// a ticker: most steps end before the first renewal, and a timer that
// never fires costs less to set up and stop. Its state is the execution's
// (a run renews for one step at a time), made once per run.
func (e *execution[S]) keepLease(ctx context.Context, cancel context.CancelCauseFunc) {
	k := &e.lease
	k.mu.Lock() // a renewal of an earlier step may still hold it
	k.ctx, k.cancel, k.stopped, k.lost = ctx, cancel, false, nil
	if k.t == nil {
		k.t = time.AfterFunc(e.c.opts.LeaseDuration/3, e.renewLease)
	} else {
		k.t.Reset(e.c.opts.LeaseDuration / 3)
	}
	k.mu.Unlock()
}

// renewLease is keepLease's timer function.
func (e *execution[S]) renewLease() {
	k := &e.lease
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.stopped {
		return
	}
	_, err := e.c.pool.Exec(k.ctx, leaseSQL, e.idArg, e.tokenArg, e.c.leaseArg)
	if err = logError(err); errors.Is(err, ErrLeaseLost) {
		k.lost = fmt.Errorf("%w: saga %q: %w", ErrIncomplete, e.id, err)
		k.cancel(k.lost)
		return
	}
	k.t.Reset(e.c.opts.LeaseDuration / 3)
}

// stopLease stops what keepLease started, waiting for a renewal in
// flight, and returns the error of a lost lease.
func (e *execution[S]) stopLease() error {
	k := &e.lease
	k.t.Stop()
	k.mu.Lock()
	defer k.mu.Unlock()
	k.stopped = true
	k.ctx, k.cancel = nil, nil
	return k.lost
}

// leaseKeeper is the state of keepLease.
type leaseKeeper struct {
	mu      sync.Mutex // held by a renewal, so that stopping waits for it
	stopped bool
	lost    error
	t       *time.Timer
	ctx     context.Context
	cancel  context.CancelCauseFunc
}

// runTx runs fn, a TxAction or TxCompensate, in a transaction that also
// writes the step's log record: the lease check goes with the step's first
// statement and the new position with COMMIT.
func (e *execution[S]) runTx(ctx context.Context, st *Step[S], op string, fn func(context.Context, Tx, *S) error) error {
	// No context of its own without a Timeout: a cancellable one costs
	// every statement of the step a watch by pgx.
	sctx := context.WithValue(ctx, stepCtxKey{}, &stepCtx{saga: e.id, name: st.Name, op: op})
	if st.Timeout > 0 {
		var cancel context.CancelFunc
		sctx, cancel = context.WithTimeout(sctx, st.Timeout)
		defer cancel()
	}
	var tx *stepTx
	var err error
	if e.pending != nil {
		// No lease to check: the record's insert goes with COMMIT (see
		// move), so the saga's row is this transaction's own.
		tx, err = beginStepTx(sctx, e.c.pool)
	} else {
		tx, err = beginStepTx(sctx, e.c.pool, stmt{sql: leaseSQL, args: []any{e.idArg, e.tokenArg, e.c.leaseArg}})
	}
	if err != nil {
		return err
	}
	defer tx.release(ctx)

	// A panic is the try's error; release then rolls the transaction back.
	if err := protect(func() error { return fn(sctx, tx, e.state) }); err != nil {
		if tx.err != nil {
			return e.txError(tx.err)
		}
		return err
	}
	if tx.err != nil {
		return e.txError(tx.err)
	}
	// A cut after the step (see move) returns before the commit: release
	// rolls back, as the server would for a dead client.
	err = e.move(op, func(w stmt) error {
		err := tx.commit(sctx, w)
		if err == nil {
			e.scanned()
			return nil
		}
		if err := e.txError(err); errors.Is(err, ErrIncomplete) || errors.Is(err, errCrashed) || errors.Is(err, errExists) {
			return err
		}
		// With the record in this transaction (pending), even a commit that
		// the caller's ctx cut must be settled: the saga may be in the log.
		if !notApplied(err) && !errors.Is(err, pgx.ErrTxCommitRollback) && (ctx.Err() == nil || e.pending != nil) {
			// The connection failed (or the server ended it: FATAL), perhaps
			// after COMMIT took effect: the log says whether it did, since it
			// commits with the step. Recording a failed try instead could
			// move the log back before a step that committed.
			return fmt.Errorf("%w: saga %q: step %q: %w: %w", ErrIncomplete, e.id, st.Name, errCommitUnknown, err)
		}
		return err
	})
	if err == nil && e.pending != nil {
		e.pending = nil
		e.c.tel.started.Add(ctx, 1, e.tel.nameOpts...)
	}
	return err
}

// errCommitUnknown marks a step's COMMIT whose outcome the run cannot know.
var errCommitUnknown = errors.New("coord: commit outcome unknown")

// firstTryFailed handles the failed first try of a first step that is a
// TxAction, whose transaction was to commit the saga's record with the
// step (see execution.pending), and returns the error the try ends with.
// When the transaction surely did not commit (the try failed, the step's
// statements or the COMMIT were refused, the connection broke before
// COMMIT), nothing is in the log: the record is inserted on its own, as
// for any other saga, and the failure is the step's try, which the retry
// policy handles. When the COMMIT's outcome is unknown, the record is
// inserted again on a fresh connection (settleInsert), which tells whether
// the saga is this run's: if the COMMIT took effect, the step is done (nil);
// if the insert did, the record is logged at the first step and the try
// failed (its error, for the retry policy). The results that leave the
// saga out of the log, or not known to be in it, are unloggedErrors:
// errExists (the id is another run's: Run awaits it), ErrNotStarted and
// ErrOutcomeUnknown (as for the insert). errCrashed is returned as is.
func (e *execution[S]) firstTryFailed(ctx context.Context, err error) error {
	data := e.pending
	switch {
	case errors.Is(err, errCrashed):
		return err
	case errors.Is(err, errExists):
		return &unloggedError{err}
	case errors.Is(err, errCommitUnknown):
		ours, rerr := e.settleInsert(ctx, data)
		switch {
		case rerr != nil:
			return &unloggedError{fmt.Errorf("%w: saga %q: the commit of its first step, which carried its record, failed (%v) and the log could not be read (%w): run it again with the same id",
				ErrOutcomeUnknown, e.id, err, rerr)}
		case !ours:
			return &unloggedError{errExists} // the COMMIT did not take effect: it would have inserted the record
		}
		e.pending = nil
		e.c.tel.started.Add(ctx, 1, e.tel.nameOpts...)
		if e.reinserted {
			// The COMMIT did not take effect (the record was not there): a
			// failed try, with the record now logged at the first step.
			return fmt.Errorf("saga %q: step %q: its transaction did not commit: %v", e.id, e.def.steps[0].Name, err)
		}
		// The COMMIT took effect: the step is done, as its record says.
		e.advance()
		return nil
	case ctx.Err() != nil:
		return &unloggedError{fmt.Errorf("%w: saga %q: %w", ErrNotStarted, e.id, err)}
	}
	if ierr := e.insert(ctx, data); ierr != nil {
		return &unloggedError{ierr}
	}
	e.pending = nil
	e.c.tel.started.Add(ctx, 1, e.tel.nameOpts...)
	if e.crash(stageAfterInsert, 0) {
		return errCrashed
	}
	return err
}

// txError turns an error of the coordinator's own statements in a step's
// transaction into one that stops the run.
func (e *execution[S]) txError(err error) error {
	if errors.Is(err, ErrLeaseLost) {
		return fmt.Errorf("%w: saga %q: %w", ErrIncomplete, e.id, err)
	}
	return err
}

// panicError is the error of a try whose step panicked: the panic value, and
// the stack of the step's goroutine at the panic for Hooks.StepFailed.
type panicError struct {
	value any
	stack []byte
}

func (p *panicError) Error() string { return fmt.Sprintf("%v: %v", ErrStepPanic, p.value) }

// Unwrap returns ErrStepPanic, and the panic value when it is an error.
func (p *panicError) Unwrap() []error {
	if err, ok := p.value.(error); ok {
		return []error{ErrStepPanic, err}
	}
	return []error{ErrStepPanic}
}

// protect calls fn, the code of a step, and turns a panic in it into the
// try's error, so that it fails the try instead of the process (and the
// recovery loop): the retry policy, compensation and the log then treat it
// like any other error.
func protect(fn func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &panicError{value: v, stack: debug.Stack()}
		}
	}()
	return fn()
}
