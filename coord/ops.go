package coord

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/trace"
)

// The operator actions' statements: each changes the saga only in the
// statuses it applies to (checked by the update itself, so two actions, or
// an action and a recovery, cannot both take effect) and appends its event,
// with who and why, in the same statement.
var (
	// retrySQL takes the failed or dead saga $1 for the run $2 (lease $3
	// milliseconds), with a fresh retry budget; $4 who, $5 why.
	retrySQL = `with s as (
	update coord_saga s set status = case when s.status = 'failed' then 'compensating' else coalesce(nullif(s.dead_status, ''), 'running') end,
		attempts = 0, recoveries = 0, dead_status = '', lease_owner = $2,
		lease_expires = now() + $3 * interval '1 millisecond', updated_at = now()
	where s.id = $1 and s.status in ('failed', 'dead')
	returning s.*
), h as (` + operatorInsert(EventRetried, 4) + `)
select ` + recordColumns + ` from s`

	// resolveSQL resolves the failed or dead saga $1; $2 who, $3 why.
	resolveSQL = `with s as (
	update coord_saga s set status = 'resolved', updated_at = now()
	where s.id = $1 and s.status in ('failed', 'dead')
	returning s.*
), h as (` + operatorInsert(EventResolved, 2) + `)
select ` + recordColumns + ` from s`

	// cancelSQL asks the running saga $1 to stop, if its next step is
	// before $2; $3 who, $4 why.
	cancelSQL = `with s as (
	update coord_saga s set cancel_requested = true
	where s.id = $1 and s.` + isRunning + ` and s.step < $2 and not s.cancel_requested
	returning s.*
), h as (` + operatorInsert(EventCancelRequested, 3) + `)
select count(*) from s`
)

// operatorInsert appends the operator's event kind for the sagas of s, who
// and why in the parameters $who and $who+1.
func operatorInsert(kind EventKind, who int) string {
	return fmt.Sprintf(`insert into coord_history (saga_id, event, step, actor, reason) select id, '%s', step, $%d, $%d from s`, kind, who, who+1)
}

// checkOperator checks an operator action's arguments.
func checkOperator(id, who, why string) error {
	if err := checkText("saga id", id); err != nil {
		return err
	}
	if err := checkText("who", who); err != nil {
		return err
	}
	if why != "" {
		return checkText("why", why)
	}
	return nil
}

// Retry resumes a failed or dead saga, recording who asked and why in its
// history. A failed saga compensates again from the step whose compensation
// failed, with a fresh retry budget; a dead one resumes where it was
// (running forward, or compensating). Retry drives the saga itself, under
// a new lease, as Recover would: a second Retry, or a recovery, finds it in
// another status or leased and cannot run it too.
//
// It returns the saga's record and nil once it reached succeeded or
// compensated; otherwise Run's error for where it stands (ErrFailed if a
// compensation fails again, ErrIncomplete if the run stopped: recovery goes
// on). It refuses, with nothing done, a saga in any other status
// (ErrWrongStatus, naming the status), an unknown id (ErrNotFound), a saga
// whose definition is not registered with c, an empty who or an invalid
// id (ErrInvalid).
func (c *Coordinator) Retry(ctx context.Context, id, who, why string) (info Info, err error) {
	c.settleFinals(ctx)
	ctx, span := c.tel.startSpan(ctx, "coord.Retry", id, attrActor.String(who))
	if span != nil {
		defer func() { endSpan(span, info, err) }()
	}
	return c.retry(ctx, span, id, who, why)
}

// retry is Retry's work under span, nil when not traced.
func (c *Coordinator) retry(ctx context.Context, span trace.Span, id, who, why string) (Info, error) {
	if err := checkOperator(id, who, why); err != nil {
		return Info{}, err
	}
	rec, err := c.load(ctx, id)
	if err != nil {
		return Info{}, err
	}
	d, err := c.driver(rec.Name, id)
	if err != nil {
		return Info{}, err
	}
	token := c.newToken()
	rows, err := c.pool.Query(ctx, retrySQL, id, token, c.leaseMillis(), who, why)
	if err != nil {
		return Info{}, fmt.Errorf("coord: retrying saga %q (not retried): %w", id, err)
	}
	claimed, err := pgx.CollectExactlyOneRow(rows, scanRecord)
	if errors.Is(err, pgx.ErrNoRows) {
		return Info{}, c.refuse(ctx, id, "retry", "failed or dead")
	}
	if err != nil {
		return Info{}, fmt.Errorf("coord: retrying saga %q (outcome unknown: see Get): %w", id, err)
	}
	linkOrigin(span, claimed, resumedByRetry)
	info, err := d.resume(ctx, claimed, token)
	if err == nil || errors.Is(err, ErrCompensated) {
		return info, nil
	}
	return info, err
}

// Resolve ends a failed or dead saga by hand, in the resolved status: an
// operator compensated (or completed) it outside coord. who and why go to
// its history. It refuses, with nothing done, a saga in any other status
// (ErrWrongStatus), an unknown id (ErrNotFound), an empty who or an invalid
// id (ErrInvalid). The saga's definition need not be registered.
func (c *Coordinator) Resolve(ctx context.Context, id, who, why string) (info Info, err error) {
	c.settleFinals(ctx)
	ctx, span := c.tel.startSpan(ctx, "coord.Resolve", id, attrActor.String(who))
	if span != nil {
		defer func() { endSpan(span, info, err) }()
	}
	return c.resolve(ctx, id, who, why)
}

func (c *Coordinator) resolve(ctx context.Context, id, who, why string) (Info, error) {
	if err := checkOperator(id, who, why); err != nil {
		return Info{}, err
	}
	rows, err := c.pool.Query(ctx, resolveSQL, id, who, why)
	if err != nil {
		return Info{}, fmt.Errorf("coord: resolving saga %q (not resolved): %w", id, err)
	}
	rec, err := pgx.CollectExactlyOneRow(rows, scanRecord)
	if errors.Is(err, pgx.ErrNoRows) {
		return Info{}, c.refuse(ctx, id, "resolve", "failed or dead")
	}
	if err != nil {
		return Info{}, fmt.Errorf("coord: resolving saga %q (outcome unknown: see Get): %w", id, err)
	}
	c.tel.finish(ctx, c.definitionTelemetry(rec.Name), StatusResolved, rec.UpdatedAt.Sub(rec.CreatedAt))
	return c.info(rec), nil
}

// Cancel asks a running saga to stop: at its next step boundary (the end of
// the step that runs now, or at once when no run holds it and recovery
// takes it) it compensates every step it did, and ends compensated, with
// ErrCancelled as its cause. who and why go to its history.
//
// Only a saga whose pivot has not started can be cancelled (without a
// pivot: whose last step has not started): later, it can only go forward,
// and Cancel returns an error wrapping ErrPastPivot and ErrWrongStatus. A
// saga in any other status than running is refused with ErrWrongStatus; an
// unknown id with ErrNotFound; a saga whose definition is not registered
// with c, an empty who or an invalid id with ErrInvalid. Nothing takes
// effect then. Cancelling a saga already asked to stop does nothing and
// returns nil.
func (c *Coordinator) Cancel(ctx context.Context, id, who, why string) (err error) {
	c.settleFinals(ctx)
	ctx, span := c.tel.startSpan(ctx, "coord.Cancel", id, attrActor.String(who))
	if span != nil {
		defer func() { endWithError(span, err) }()
	}
	return c.cancel(ctx, span, id, who, why)
}

// cancel is Cancel's work under span, nil when not traced.
func (c *Coordinator) cancel(ctx context.Context, span trace.Span, id, who, why string) error {
	if err := checkOperator(id, who, why); err != nil {
		return err
	}
	rec, err := c.load(ctx, id)
	if err != nil {
		return err
	}
	if span != nil {
		span.SetAttributes(attrSagaName.String(rec.Name))
	}
	d, err := c.driver(rec.Name, id)
	if err != nil {
		return err
	}
	var n int64
	if err := c.pool.QueryRow(ctx, cancelSQL, id, d.cancelBefore(), who, why).Scan(&n); err != nil {
		return fmt.Errorf("coord: cancelling saga %q (outcome unknown: see History): %w", id, err)
	}
	if n == 1 {
		return nil
	}
	rec, err = c.load(ctx, id)
	switch {
	case err != nil:
		return err
	case rec.Status != StatusRunning:
		return fmt.Errorf("%w: cannot cancel saga %q: it is %s (only running sagas can be cancelled); nothing done", ErrWrongStatus, id, rec.Status)
	case rec.cancel:
		return nil
	}
	return fmt.Errorf("%w: %w: cannot cancel saga %q: its step %d (%q) is its pivot or comes after it; nothing done",
		ErrWrongStatus, ErrPastPivot, id, rec.Step, d.stepName(rec.Step))
}

// definitionTelemetry returns the telemetry of the definition name: the
// registered one's, or one made for the call when it is not registered.
func (c *Coordinator) definitionTelemetry(name string) *defTelemetry {
	c.mu.Lock()
	d := c.sagas[name]
	c.mu.Unlock()
	if d != nil {
		return d.telemetry()
	}
	n := attrSagaName.String(name)
	return &defTelemetry{name: n, finished: map[Status]finishedOpts{StatusResolved: newFinishedOpts(n, StatusResolved)}}
}

// driver returns the registered definition name of the saga id.
func (c *Coordinator) driver(name, id string) (driver, error) {
	c.mu.Lock()
	d := c.sagas[name]
	c.mu.Unlock()
	if d == nil {
		return nil, fmt.Errorf("%w: saga %q is a %q saga, which is not registered with this coordinator", ErrInvalid, id, name)
	}
	return d, nil
}

// refuse returns the error of an operator action that found the saga id in
// none of the statuses it applies to (allowed).
func (c *Coordinator) refuse(ctx context.Context, id, action, allowed string) error {
	rec, err := c.load(ctx, id)
	if err != nil {
		return err
	}
	return fmt.Errorf("%w: cannot %s saga %q: it is %s (only %s sagas can be); nothing done", ErrWrongStatus, action, id, rec.Status, allowed)
}
