package coord

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// The log's statements. Every write of a running saga names the lease owner
// it expects, and divides by the number of rows it updated: a coordinator
// that lost the lease gets a division by zero (see logError) instead of a
// write, which also aborts the step's transaction with it. The writes
// append their history events in the same statement (historyFrom), so the
// history costs no round trip. (Variables, not constants, because
// historyFrom builds a part of them.)
var (
	// insertSQL writes a new saga's record, before any step runs; no row
	// comes back when the id exists (a concurrent insert of the same id waits
	// for the first to commit or roll back). $16 is the trace context of the
	// Run (encodeTraceContext), null when it had none.
	insertSQL = `with i as (
	insert into coord_saga (id, name, status, step, state, lease_owner, lease_expires, trace_context)
	values ($1, $2, 'running', 0, $3, $4, now() + $5 * interval '1 millisecond', $16)
	on conflict (id) do nothing
	returning created_at, updated_at
), h as (` + historyFrom("i", 4, 6) + `)
select created_at, updated_at from i`

	// insertDoneSQL writes the record of a saga whose first step is a
	// TxAction with that step's transaction, in the batch of its COMMIT
	// (see execution.pending): the record at the position after the step
	// ($3 status, $4 step, $5 state), its insert's history events and the
	// step's in one statement. It fails with a division by zero when the id
	// exists (a concurrent insert of the same id waits for the first to
	// commit or roll back), which aborts the step's transaction, and returns
	// the record's timestamps. $6 is the actor (the run's token), $7 the
	// lease in milliseconds, $8 the trace context, and the history's event
	// slots follow from $9 (insertDoneEvents of them).
	insertDoneSQL = `with i as (
	insert into coord_saga (id, name, status, step, state, lease_owner, lease_expires, trace_context)
	values ($1, $2, $3, $4, $5, $6, now() + $7 * interval '1 millisecond', $8)
	on conflict (id) do nothing
	returning created_at, updated_at
), h as (` + historySlots("i", 6, 9, insertDoneEvents) + `)
select 1 / count(*), ` + micros("max(created_at)") + `, ` + micros("max(updated_at)") + ` from i`

	// ownerSQL reads who holds the saga $1, when its insert's outcome was
	// unknown.
	ownerSQL = `select lease_owner, created_at, updated_at from coord_saga where id = $1`

	// writeSQL records progress: $3 status, $4 step, $5 state (null keeps
	// it), $6 attempts, $7 error, $8 lease in milliseconds. It returns
	// whether Cancel asked the saga to stop.
	writeSQL = `with u as (
	update coord_saga set status = $3, step = $4, state = coalesce($5, state), attempts = $6, last_error = $7,
		lease_expires = now() + $8 * interval '1 millisecond', updated_at = now(), recoveries = 0
	where id = $1 and lease_owner = $2
	returning updated_at, cancel_requested
), h as (` + historyFrom("u", 2, 9) + `)
` + writeReturning

	// writeReturning is writeSQL's last line: whether it updated the row,
	// the time it recorded and the cancel flag.
	writeReturning = "select 1 / count(*), " + micros("max(updated_at)") + ", coalesce(bool_or(cancel_requested), false) from u"

	// writeAsyncSQL is writeSQL committed without waiting for the WAL
	// flush (synchronous_commit off for its own transaction only), for the
	// records whose loss only makes recovery replay an idempotent step
	// (see Definition.recordDurable and README.md, Non-durable records).
	// The setting is a volatile CTE that the final select reads, so it is
	// evaluated in the statement's transaction: no round trip more.
	writeAsyncSQL = strings.Replace(writeSQL, writeReturning, `, async as (select set_config('synchronous_commit', 'off', true))
`+writeReturning+", async", 1)

	// leaseSQL renews the lease ($3 milliseconds from now).
	leaseSQL = `with u as (
	update coord_saga set lease_expires = now() + $3 * interval '1 millisecond'
	where id = $1 and lease_owner = $2
	returning 1
) select 1 / count(*) from u`

	// releaseSQL gives the saga up to recovery after $3 milliseconds,
	// recording the attempts ($4) and error ($5) of its current step.
	releaseSQL = `with u as (
	update coord_saga set lease_expires = now() + $3 * interval '1 millisecond', attempts = $4, last_error = $5, updated_at = now(), recoveries = 0
	where id = $1 and lease_owner = $2
	returning updated_at
), h as (` + historyFrom("u", 2, 6) + `)
select updated_at from u`

	// claimSQL takes up to $5 unfinished sagas of the definition $3 whose
	// lease expired before $4 (the start of the Recover call), for the new
	// owner $1; or dead-letters them (deadLetterSet). The lease it sets is
	// after $4, so a call never takes a saga twice without carrying the ids
	// it took. The inner select is an ordered scan of coord_saga_claim (a
	// partial index on the claimable statuses, by name and lease expiry)
	// bounded by $4 and stopped by the limit, so a claim reads the sagas it
	// takes, not the backlog (see README.md, Recovery at scale); the array
	// makes it an init plan, so the update finds its rows by primary key.
	claimSQL = `with s as (
	update coord_saga s set lease_owner = $1, lease_expires = now() + $2 * interval '1 millisecond', updated_at = now(),
		` + strings.ReplaceAll(deadLetterSet, "$DL", "$6") + `
	where s.id = any(array(
		select id from coord_saga
		where status in ('running', 'compensating') and name = $3 and lease_expires < $4
		order by lease_expires
		limit $5
		for update skip locked
	))
	returning s.*
), h as (` + recoveredInsert + `)
select ` + recordColumns + ` from s`

	// claimIDSQL takes the saga $3 if its lease expired (or dead-letters
	// it, see deadLetterSet).
	claimIDSQL = `with s as (
	update coord_saga s set lease_owner = $1, lease_expires = now() + $2 * interval '1 millisecond', updated_at = now(),
		` + strings.ReplaceAll(deadLetterSet, "$DL", "$4") + `
	from (
		select id from coord_saga
		where id = $3 and status in ('running', 'compensating') and lease_expires < now()
		for update skip locked
	) t
	where s.id = t.id
	returning s.*
), h as (` + recoveredInsert + `)
select ` + recordColumns + ` from s`

	// isRunning is the condition that a saga found by its id is running,
	// for the statements that also find it by id. Not status = 'running':
	// with that condition and no statistics (a new log's first minutes, or
	// a plan cached then), the planner may take (status, created_at, id),
	// or a partial index on the unfinished statuses, for as cheap as the
	// primary key, and that reads every running entry, dead versions
	// included, to find the id; measured, the final record's statement did
	// it for every saga, so its cost grew with the sagas written since the
	// last vacuum. No index can serve IS NOT DISTINCT FROM, and status is
	// never null. TestLog_StatementsOfOneSagaFindItByPrimaryKeyWithoutStatistics
	// checks the plans.
	isRunning = `status is not distinct from 'running'`

	recordColumns = `s.id, s.name, s.status, s.step, s.state, s.attempts, s.last_error, s.created_at, s.updated_at, s.lease_expires < now(), s.cancel_requested, s.trace_context`

	// deadLetterSet, in a claim's SET, counts the takeover and turns a saga
	// taken over more than $dl (named by the parameter placeholder "$DL")
	// times since its last log write into a dead one instead (never when
	// $dl is 0).
	deadLetterSet = `recoveries = s.recoveries + 1,
		status = case when $DL > 0 and s.recoveries >= $DL then 'dead' else s.status end,
		dead_status = case when $DL > 0 and s.recoveries >= $DL then s.status else s.dead_status end`

	selectSQL = `select ` + recordColumns + ` from coord_saga s`

	// recoveredInsert records, in a claim's statement, that the run $1 took
	// over the sagas of s.
	recoveredInsert = `insert into coord_history (saga_id, event, step, actor, reason)
	select id, case when status = 'dead' then '` + string(EventDeadLettered) + `' else '` + string(EventRecovered) + `' end, step, $1,
		case when status = 'dead' then (recoveries - 1) || ' takeovers without progress' else '' end
	from s`
)

// historyFrom is the part of a log write's statement that appends its events
// to coord_history: from the rows of the CTE from (one when the write took
// effect, none otherwise), for the saga $1 by the actor $actor (the run's
// lease token), the events in maxEvents slots of 5 scalar parameters from
// $first on (see appendEvents), in their order; a slot whose kind is NULL
// is empty. Scalars, not arrays: encoding five arrays cost a write about
// thirty allocations.
func historyFrom(from string, actor, first int) string {
	return historySlots(from, actor, first, maxEvents)
}

// historySlots is historyFrom with n event slots.
func historySlots(from string, actor, first, n int) string {
	var slots []string
	for i := range n {
		p := first + 5*i
		slots = append(slots, fmt.Sprintf("($%d::text, $%d::int, $%d::text, $%d::int, $%d::text, %d)", p, p+1, p+2, p+3, p+4, i))
	}
	return fmt.Sprintf(`insert into coord_history (saga_id, event, step, step_name, attempt, error, actor)
	select $1, e.event, e.step, e.step_name, e.attempt, e.error, $%d
	from %s, (values %s) as e(event, step, step_name, attempt, error, n)
	where e.event is not null
	order by e.n`, actor, from, strings.Join(slots, ", "))
}

// micros is the SQL of the timestamptz expression ts in microseconds
// since the Unix epoch, 0 for null. The log's writes return their times
// so because pgx scans an int8 into an int64 without allocating, where it
// makes a scan plan, an allocation, for each timestamptz of each
// statement. (extract returns a numeric, exact, since PostgreSQL 14.)
func micros(ts string) string {
	return "coalesce((extract(epoch from " + ts + ") * 1000000)::int8, 0)"
}

// record is a row of coord_saga.
type record struct {
	Info
	state   []byte
	expired bool
	cancel  bool // Cancel asked it to stop
	// traceContext is the trace context of the Run that started the saga
	// (encodeTraceContext), nil if it had none.
	traceContext []byte
}

func scanRecord(row pgx.CollectableRow) (record, error) {
	var r record
	err := row.Scan(&r.ID, &r.Name, &r.Status, &r.Step, &r.state, &r.Attempts, &r.Error, &r.CreatedAt, &r.UpdatedAt, &r.expired, &r.cancel, &r.traceContext)
	return r, err
}

// claimID takes the saga id for token if its lease expired; ok is false when
// it has not or another coordinator took it first.
func (c *Coordinator) claimID(ctx context.Context, id, token string) (record, bool, error) {
	rows, err := c.pool.Query(ctx, claimIDSQL, token, c.leaseMillis(), id, c.opts.DeadLetterAfter)
	if err != nil {
		return record{}, false, fmt.Errorf("coord: claiming saga %q: %w", id, err)
	}
	rec, err := pgx.CollectExactlyOneRow(rows, scanRecord)
	if errors.Is(err, pgx.ErrNoRows) {
		return record{}, false, nil
	}
	if err != nil {
		return record{}, false, fmt.Errorf("coord: claiming saga %q: %w", id, err)
	}
	return rec, true, nil
}
