package coord

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// Parallel returns a step named name whose members run concurrently: a
// parallel group. It takes one position among the saga's steps (Info.Step
// is its index, Info.StepName its name) and costs the log what one Action
// step costs: the record that moved the saga to it before, one record once
// every member succeeded after (with the state, so members' writes to S are
// saved then). Use it inside Define like any other step:
//
//	coord.Define("register",
//		coord.Step[S]{Name: "user", Kind: coord.Pivot, TxAction: insertUser},
//		coord.Parallel("notify",
//			coord.Step[S]{Name: "conversation", Kind: coord.Retriable, Action: insertConversation},
//			coord.Step[S]{Name: "cache", Kind: coord.Retriable, Action: cacheProfile}))
//
// Register checks the rules, with errors wrapping ErrInvalid: at least two
// members; each member an Action step (with its own Compensate, Retry and
// Timeout), never a TxAction or TxCompensate, since a TxAction commits with
// its step's log record and a group's members share one record; no group
// inside a group; member names unique across the whole saga (they are step
// names: StepKey, hooks, history and spans use them); all members of the
// same kind, Compensatable (before the pivot) or Retriable (after it),
// which is the group's kind, so the pivot is never in a group; and the
// group itself sets nothing but its name (its Kind, if set, must be its
// members').
//
// Each member runs its own tries (its RetryPolicy and Timeout) on its own
// goroutine, all sharing the saga's *S: a member must not write a field of
// S that another member reads or writes. The group waits for every member.
// If one fails after its tries, the group fails: a compensatable group is
// then compensated, every member with a compensation concurrently (each
// had started, so each may have taken effect; a compensation must do
// nothing for an action that did not), then the steps before it in reverse
// order; a retriable group is left to recovery after the failed member's
// backoff and never compensated. A saga cut inside a group (a crash, a
// lost lease) is resumed by recovery with every member of the group run
// again (the log records no member's completion, see README.md, Parallel
// groups): members must be idempotent like any Action, which the barrier
// helpers make them.
//
// Hooks and history events, step spans and metrics are per member (named
// by the member), so hooks may be called concurrently for the members of
// one group.
func Parallel[S any](name string, members ...Step[S]) Step[S] {
	st := Step[S]{Name: name, members: make([]Step[S], len(members))}
	copy(st.members, members)
	if len(members) > 0 {
		st.Kind = members[0].Kind
	}
	return st
}

// checkGroup reports the first rule of Parallel that the group st, at where
// in its definition, breaks, wrapping ErrInvalid. It adds the names of the
// group and its members to seen.
func checkGroup[S any](where string, st Step[S], seen map[string]bool) error {
	switch {
	case len(st.members) < 2:
		return fmt.Errorf("%w: %s: a parallel group needs at least two members, it has %d", ErrInvalid, where, len(st.members))
	case st.Action != nil || st.TxAction != nil || st.Compensate != nil || st.TxCompensate != nil:
		return fmt.Errorf("%w: %s: a parallel group has no action or compensation of its own (its members have theirs)", ErrInvalid, where)
	case st.Timeout != 0 || st.Retry.Attempts != 0 || st.Retry.Backoff != 0 || st.Retry.MaxBackoff != 0 || st.Retry.Retryable != nil:
		return fmt.Errorf("%w: %s: a parallel group has no Timeout or Retry of its own (its members have theirs)", ErrInvalid, where)
	}
	seen[st.Name] = true
	for j, m := range st.members {
		at := fmt.Sprintf("%s member %d (%q)", where, j, m.Name)
		switch {
		case m.Name == "":
			return fmt.Errorf("%w: %s has no name", ErrInvalid, at)
		case checkText("step name", m.Name) != nil:
			return fmt.Errorf("%s: %w", at, checkText("step name", m.Name))
		case strings.Contains(m.Name, "/"):
			return fmt.Errorf("%w: %s: a step name must not contain \"/\"", ErrInvalid, at)
		case seen[m.Name]:
			return fmt.Errorf("%w: %s: duplicate step name (member names are unique across the saga)", ErrInvalid, at)
		case m.members != nil:
			return fmt.Errorf("%w: %s: a parallel group cannot contain another group", ErrInvalid, at)
		case m.TxAction != nil || m.TxCompensate != nil:
			return fmt.Errorf("%w: %s: a member of a parallel group cannot have a TxAction or TxCompensate "+
				"(a TxAction commits with its step's log record, and a group's members share one)", ErrInvalid, at)
		case m.Action == nil:
			return fmt.Errorf("%w: %s needs an Action", ErrInvalid, at)
		case m.Timeout < 0:
			return fmt.Errorf("%w: %s has a negative Timeout %v", ErrInvalid, at, m.Timeout)
		case m.Retry.validate() != nil:
			return fmt.Errorf("%s: %w", at, m.Retry.validate())
		case m.Kind == Pivot:
			return fmt.Errorf("%w: %s: the pivot cannot be inside a parallel group", ErrInvalid, at)
		case m.Kind != Compensatable && m.Kind != Retriable:
			return fmt.Errorf("%w: %s has unknown kind %d", ErrInvalid, at, int(m.Kind))
		case m.Kind != st.Kind:
			return fmt.Errorf("%w: %s is %s in a %s group: all members of a group share its kind", ErrInvalid, at, m.Kind, st.Kind)
		case m.Kind == Retriable && m.hasCompensation():
			return fmt.Errorf("%w: %s: a retriable step is never compensated and must have no compensation", ErrInvalid, at)
		}
		seen[m.Name] = true
	}
	return nil
}

// The boundaries inside a group at which Options.crashAt can cut a run, in
// addition to before-action and before-compensate (of each member's tries,
// named by the member) and after-action, after-log, after-compensate,
// after-compensate-log and after-fail-log (of the group, named by it).
const (
	stageMemberDone        = "member-done"        // a member's action succeeded; others may still run; nothing logged
	stageMemberCompensated = "member-compensated" // a member's compensation succeeded; nothing logged
)

// errMemberStopped is the cause with which a group cancels its members when
// the run stops (a crash).
var errMemberStopped = errors.New("coord: the group's run stopped")

// memberResult is how a member's tries ended.
type memberResult struct {
	ev     StepEvent // its last try's, for the hooks
	tries  int       // the tries it made
	err    error     // nil: the member succeeded
	failed bool      // err is its last try's, after which its policy allows no other
}

// groupError is the error of a group whose members failed for good.
type groupError struct {
	group   string
	members []string    // the failed members, in the group's order
	errs    []error     // their last tries' errors
	tries   []int       // their tries
	policy  RetryPolicy // of the member that made the most tries
	attempt int         // its tries
}

func (g *groupError) Error() string {
	var b strings.Builder
	for i, name := range g.members {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "member %q: %v", name, g.errs[i])
	}
	return b.String()
}

// Unwrap returns the members' errors, so that errors.Is finds any of them
// (ErrStepPanic, a store's error).
func (g *groupError) Unwrap() []error { return g.errs }

// groupRun is one run of a group's members (or of their compensations).
type groupRun[S any] struct {
	e    *execution[S]
	st   *Step[S]
	comp bool
	stop context.CancelCauseFunc // cancels the members' context

	mu      sync.Mutex // serialises the members' log writes and crash checks
	crashed bool       // a crash point fired: every later one fires too

	results [4]memberResult // backs the members' results in a small group
}

// crash calls Options.crashAt at a member's boundary, one call at a time;
// once a run is cut, every member is cut at its next boundary, as a
// process's death stops all its goroutines.
func (g *groupRun[S]) crash(stage, member string) bool {
	e := g.e
	if e.c.opts.crashAt == nil {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.crashed && e.c.opts.crashAt(crashPoint{Stage: stage, Step: member}) {
		g.crashed = true
		g.stop(errMemberStopped)
	}
	return g.crashed
}

// runGroup runs the current step, a group, by running its members'
// actions (or, when comp, their compensations) concurrently, and records
// the group's success in one log write. Its errors are runStep's: a
// *groupError when members failed for good, or one that stops the run.
func (e *execution[S]) runGroup(ctx context.Context, comp bool) error {
	st := &e.def.steps[e.step]
	gctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	g := &groupRun[S]{e: e, st: st, comp: comp, stop: cancel}
	// One lease renewal for the whole group, backoffs included.
	e.keepLease(ctx, cancel)
	var results []memberResult
	if len(st.members) <= len(g.results) {
		results = g.results[:len(st.members)]
	} else {
		results = make([]memberResult, len(st.members))
	}
	// The last member to run runs on this goroutine, which would only wait
	// otherwise: one goroutine fewer to start and switch to per group.
	last := -1
	var wg sync.WaitGroup
	for i := range st.members {
		if comp && !st.members[i].hasCompensation() {
			continue
		}
		if j := last; j >= 0 {
			wg.Go(func() { results[j] = g.runMember(gctx, j) })
		}
		last = i
	}
	if last >= 0 {
		results[last] = g.runMember(gctx, last)
	}
	wg.Wait()
	lost := e.stopLease()
	switch {
	case g.crashed:
		return errCrashed
	case lost != nil:
		return lost
	case ctx.Err() != nil:
		return fmt.Errorf("%w: saga %q: %w", ErrIncomplete, e.id, ctx.Err())
	}
	var ge *groupError
	for i, r := range results {
		switch {
		case r.err == nil:
		case !r.failed:
			return r.err // the log could not be written: the run stops
		default:
			if ge == nil {
				ge = &groupError{group: st.Name}
			}
			m := &st.members[i]
			ge.members, ge.errs, ge.tries = append(ge.members, m.Name), append(ge.errs, r.err), append(ge.tries, r.tries)
			if r.tries >= ge.attempt {
				ge.policy, ge.attempt = m.Retry.withDefaults(), r.tries
			}
		}
	}
	if ge != nil {
		// Counted across runs, as a step's tries are, so that a retriable
		// group's backoff grows from one recovery to the next.
		e.attempts += ge.attempt
		e.cause = ge.Error()
		return ge
	}

	op, afterLog, done := opAction, stageAfterLog, e.c.opts.Hooks.StepSucceeded
	kind := EventSucceeded
	if comp {
		op, afterLog, done = opCompensate, stageAfterCompensateLog, e.c.opts.Hooks.StepCompensated
		kind = EventCompensated
	}
	at := e.step
	if cap(e.groupEvents) < len(results) {
		if len(results) <= len(e.groupEventsBuf) {
			e.groupEvents = e.groupEventsBuf[:0]
		} else {
			e.groupEvents = make([]event, 0, len(results))
		}
	}
	e.groupEvents = e.groupEvents[:0]
	for i, r := range results {
		if r.tries > 0 {
			e.groupEvents = append(e.groupEvents, event{kind: kind, step: at, attempt: r.tries, name: st.members[i].Name})
		}
	}
	err := e.move(op, func(w stmt) error { return e.exec(ctx, w) })
	e.groupEvents = e.groupEvents[:0]
	if err != nil {
		if !stopped(ctx, err) {
			// The state did not encode: the group fails as a whole.
			e.cause = err.Error()
		}
		return err
	}
	if e.crash(afterLog, at) {
		return errCrashed
	}
	for _, r := range results {
		if r.tries > 0 {
			call(done, ctx, r.ev)
		}
	}
	return nil
}

// runMember runs member i's tries, under its own span.
func (g *groupRun[S]) runMember(ctx context.Context, i int) (res memberResult) {
	e := g.e
	if e.c.tel.tracing() {
		k := 0
		if g.comp {
			k = 1
		}
		mt := &e.tel.steps[e.step].members[i]
		var span trace.Span
		ctx, span = e.c.tel.tracer.Start(ctx, mt.spanName[k], trace.WithSpanKind(trace.SpanKindInternal),
			trace.WithAttributes(mt.attrs[k]...), trace.WithAttributes(attrSagaID.String(e.id)))
		defer func() {
			span.SetAttributes(attrAttempt.Int(res.tries))
			endWithError(span, res.err)
		}()
	}
	return g.tries(ctx, i)
}

// tries is runMember's work: the member's tries with its retry policy.
func (g *groupRun[S]) tries(ctx context.Context, i int) memberResult {
	e := g.e
	m := &g.st.members[i]
	pol := m.Retry.withDefaults()
	op, fn, before, after := opAction, m.Action, stageBeforeAction, stageMemberDone
	if g.comp {
		op, fn, before, after = opCompensate, m.Compensate, stageBeforeCompensate, stageMemberCompensated
	}
	for attempt := 1; ; attempt++ {
		if g.crash(before, m.Name) {
			return memberResult{tries: attempt - 1, err: errCrashed}
		}
		ev := StepEvent{SagaID: e.id, Saga: e.def.name, Step: m.Name, Attempt: attempt, Compensation: g.comp}
		call(e.c.opts.Hooks.StepStarted, ctx, ev)
		start := time.Now()
		err := e.callMember(ctx, m, op, fn)
		ev.Elapsed = time.Since(start)
		e.c.tel.stepDuration.Record(ctx, ev.Elapsed.Seconds(), e.tel.steps[e.step].members[i].durationOptions(g.comp, classify(err))...)
		if err == nil {
			if g.crash(after, m.Name) {
				return memberResult{tries: attempt, err: errCrashed}
			}
			return memberResult{ev: ev, tries: attempt}
		}
		if ctx.Err() != nil {
			// The run stops (crash, lost lease, its context): runGroup
			// returns why.
			return memberResult{tries: attempt, err: context.Cause(ctx)}
		}
		ev.Err = err
		var pe *panicError
		if errors.As(err, &pe) {
			ev.Stack = pe.stack
		}
		call(e.c.opts.Hooks.StepFailed, ctx, ev)
		if attempt >= pol.Attempts || !pol.retryable(err) {
			return memberResult{ev: ev, tries: attempt, err: err, failed: true}
		}
		if werr := g.logTry(ctx, m.Name, attempt, err); werr != nil {
			// The log is gone or the lease lost: stop the other members now,
			// not at the lease keeper's next renewal.
			g.stop(werr)
			return memberResult{tries: attempt, err: werr}
		}
		if span := trace.SpanFromContext(ctx); span.IsRecording() {
			span.AddEvent("retry", trace.WithAttributes(attrAttempt.Int(attempt+1),
				attrErrorType.String(classNames[classify(err)]), attrMessage.String(err.Error())))
		}
		t := time.NewTimer(pol.wait(attempt))
		select {
		case <-ctx.Done():
			t.Stop()
			return memberResult{tries: attempt, err: context.Cause(ctx)}
		case <-t.C:
		}
	}
}

// logTry records a member's failed try that another follows, in the
// saga's history and as its last error, as a step's failed try is
// (try-failed, compensation-try-failed); the position and its attempts do
// not move.
func (g *groupRun[S]) logTry(ctx context.Context, member string, attempt int, err error) error {
	kind := EventTryFailed
	if g.comp {
		kind = EventCompensationTryFailed
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	e := g.e
	e.cause = fmt.Sprintf("member %q: %v", member, err)
	return e.write(ctx, false, event{kind: kind, step: e.step, attempt: attempt, err: err.Error(), name: member})
}

// wideWrites caches writeSQL and writeAsyncSQL with more event slots than
// maxEvents, by their number, for the records of parallel groups: one
// event per member, and the next step's started.
var wideWrites sync.Map // int → *[2]string

// writeSQLFor returns writeSQL, or writeAsyncSQL when async, with room for
// n history events.
func writeSQLFor(n int, async bool) string {
	k := 0
	if async {
		k = 1
	}
	if n <= maxEvents {
		return [2]string{writeSQL, writeAsyncSQL}[k]
	}
	if v, ok := wideWrites.Load(n); ok {
		return v.(*[2]string)[k]
	}
	narrow, wide := historyFrom("u", 2, 9), historySlots("u", 2, 9, n)
	v := &[2]string{strings.Replace(writeSQL, narrow, wide, 1), strings.Replace(writeAsyncSQL, narrow, wide, 1)}
	wideWrites.Store(n, v)
	return v[k]
}

// callMember runs fn, a member's Action or Compensate, with the member's
// key and timeout. The group renews the lease. The barriers learn whether
// the member has a compensation (none: MongoInsert needs no tombstone
// check, since nothing is ever compensated under its key); the lease's
// bound is not passed (nil), so a compensatable member's MongoInsert keeps
// its check.
func (e *execution[S]) callMember(ctx context.Context, m *Step[S], op string, fn func(context.Context, *S) error) error {
	sctx := withRunStep(ctx, e.id, m.Name, op, m.hasCompensation())
	if m.Timeout > 0 {
		var cancel context.CancelFunc
		sctx, cancel = context.WithTimeout(sctx, m.Timeout)
		defer cancel()
	}
	return protect(func() error { return fn(sctx, e.state) })
}

// appendDone appends to evs the events of the log record that moves the
// saga past the step at, done by (attempts+1)-th try: the step's kind
// event, or for a group the one of each of its members (see runGroup).
func (e *execution[S]) appendDone(evs []event, kind EventKind, at, attempts int) []event {
	if e.def.steps[at].members != nil {
		return append(evs, e.groupEvents...)
	}
	return append(evs, event{kind: kind, step: at, attempt: attempts + 1})
}

// failureEvents returns the events of kind (failed, compensation-failed)
// that record err, the final error of the current step: one per failed
// member for a group, one for the step otherwise.
func (e *execution[S]) failureEvents(kind EventKind, err error) []event {
	var ge *groupError
	if !errors.As(err, &ge) {
		return []event{{kind: kind, step: e.step, attempt: e.attempts, err: err.Error()}}
	}
	evs := make([]event, len(ge.members))
	for i, name := range ge.members {
		evs[i] = event{kind: kind, step: e.step, attempt: ge.tries[i], err: ge.errs[i].Error(), name: name}
	}
	return evs
}

// retriableWait is how long a retriable step that failed with err waits
// before recovery tries it again: its policy's backoff after the step's
// tries so far, or for a group the policy's of the member that made the
// most tries in this run, after the group's tries so far (the most tries
// of a member in each run, added up).
func (e *execution[S]) retriableWait(st *Step[S], err error) time.Duration {
	var ge *groupError
	if errors.As(err, &ge) {
		return ge.policy.wait(e.attempts)
	}
	return st.Retry.withDefaults().wait(e.attempts)
}
