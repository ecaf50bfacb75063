package coord

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The final record of a saga whose last step is retriable (a retriable
// Action, or a parallel group of retriable members) only lets recovery
// skip that step's replay, which is idempotent and never compensated
// (Definition.recordDurable): it is committed without waiting for the WAL
// flush, and Run does not wait for it either. Run hands it to the
// coordinator's finisher and returns; the finisher writes the records
// handed to it while it was busy in one round trip and one transaction
// (group commit). Until
// the record is written the log shows the saga running under this run's
// lease. The coordinator's reads and operator actions (Get, List, History,
// Counts, StoredState, Failed, Cancel, Retry, Resolve, Purge) and Close
// wait for the records handed over before them, so a caller sees its own
// Run's outcome; another coordinator may see the saga running for that
// long. A record that is never written (the process died, the database
// refused it) leaves the saga running: recovery takes it when the lease
// ends and replays its last step, as after a crash before that record
// (README.md, "Run does not wait for the final record").

// finalBatch bounds how many records one round trip of the finisher writes.
const finalBatch = 64

// finalSQLFor returns the statement of a final record with n history
// events: writeAsyncSQL (writeSQLFor) with the record's time as its last
// parameter (the one Run reported), that returns how many rows it
// updated instead of dividing by zero when the lease was taken over, since
// the records of a batch share one transaction, which an error would abort
// for all of them. A record whose saga another run took over is not
// written: that run writes its own.
func finalSQLFor(n int) string {
	if v, ok := finalWrites.Load(n); ok {
		return v.(string)
	}
	sql := strings.Replace(writeSQLFor(n, true), "select 1 / count(*),", "select count(*),", 1)
	// Written once: a retry after a commit that took effect writes nothing.
	// IS NOT DISTINCT FROM and not =, which would let the planner read
	// every running entry of (status, created_at, id) instead of the
	// primary key (see isRunning).
	sql = strings.Replace(sql, "where id = $1 and lease_owner = $2", "where id = $1 and lease_owner = $2 and "+isRunning, 1)
	// The time Run reported, the parameter after the event slots.
	sql = strings.Replace(sql, "updated_at = now()", fmt.Sprintf("updated_at = $%d::timestamptz", 9+5*max(n, maxEvents)), 1)
	finalWrites.Store(n, sql)
	return sql
}

// finalWrites caches finalSQLFor's statements by their number of events.
var finalWrites sync.Map // int → string

// finalRecord is a final record that Run handed to the finisher: its
// statement (finalSQLFor) and arguments.
type finalRecord struct {
	id   string
	sql  string
	args []any
}

// finisher writes the final records that Run does not wait for. Its
// goroutine is started by the first record and ends after finalIdle
// without one, so that a coordinator left without Close keeps none.
type finisher struct {
	c    *Coordinator
	wake chan struct{} // a record was added (buffered: one signal is enough)
	now  chan struct{} // a reader or Close waits: write without gathering

	mu       sync.Mutex
	queue    []finalRecord // to write
	running  bool          // the goroutine runs
	closed   bool          // Close was called: add refuses records
	handed   uint64        // records handed over so far
	done     uint64        // of them, written or given up
	progress chan struct{} // made by a waiter, closed when done moves

	// The goroutine's own: its writes' context and the watchdog that ends
	// it (see budget), and a batch's scan targets and queries, reused from
	// batch to batch.
	ctx        context.Context
	watch      *time.Timer
	n, written int64
	updated    int64
	cancelled  bool
	scan       []any
	batch      pgx.Batch
	queries    []pgx.QueuedQuery
}

// finalIdle is how long the finisher's goroutine waits for a record before
// it ends.
const finalIdle = time.Second

// finalGather is how long the finisher lets records gather before it
// writes them while runs end concurrently (a batch held more than one
// record), unless a reader or Close waits for them. No run waits for a
// record, and writing each as soon as it came made nearly every batch a
// single record (measured with 16 sagas in flight: 1.16 records per round
// trip; about 2 when gathering for 2 ms, 6 for 5 ms, 10 for 10 ms, where
// 5 and 10 ms gave the same throughput, 7% above 2 ms). Runs one after
// the other that each take less than finalGather keep it gathering too; a
// batch of one record ends the gathering.
const finalGather = 5 * time.Millisecond

func newFinisher(c *Coordinator) *finisher {
	f := &finisher{c: c, wake: make(chan struct{}, 1), now: make(chan struct{}, 1)}
	f.scan = []any{&f.n, &f.updated, &f.cancelled}
	return f
}

// add hands r over to be written, unless the coordinator is closed (then
// it returns false and the run writes its record itself).
func (f *finisher) add(r finalRecord) bool {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return false
	}
	f.queue = append(f.queue, r)
	f.handed++
	start := !f.running
	f.running = true
	f.mu.Unlock()
	if start {
		go f.run()
		return true
	}
	f.signal()
	return true
}

// signal wakes the goroutine.
func (f *finisher) signal() {
	select {
	case f.wake <- struct{}{}:
	default: // a signal is pending already
	}
}

// hurry makes the goroutine write what it gathered without waiting for
// more.
func (f *finisher) hurry() {
	select {
	case f.now <- struct{}{}:
	default:
	}
}

// close makes add refuse records from now on, and the goroutine end once
// it has written the queued ones.
func (f *finisher) close() {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	f.signal()
	f.hurry()
}

// run writes the queued records, a batch per round trip, each batch
// gathered for finalGather, and waits finalIdle for more before it ends.
func (f *finisher) run() {
	idle := time.NewTimer(finalIdle)
	defer idle.Stop()
	gather := time.NewTimer(finalGather)
	defer gather.Stop()
	gathering := false // the last batch held more than one record
	for {
		f.mu.Lock()
		if n := len(f.queue); gathering && n > 0 && n < finalBatch && !f.closed {
			f.mu.Unlock()
			gather.Reset(finalGather)
			select {
			case <-gather.C:
			case <-f.now:
			}
			f.mu.Lock()
		}
		batch := f.queue
		if len(batch) > finalBatch {
			batch = batch[:finalBatch:finalBatch]
			f.queue = f.queue[finalBatch:]
		} else {
			f.queue = nil
		}
		f.mu.Unlock()

		if len(batch) == 0 {
			f.mu.Lock()
			closed := f.closed
			f.mu.Unlock()
			if !closed {
				idle.Reset(finalIdle)
				select {
				case <-f.wake:
					continue
				case <-idle.C:
				}
			}
			f.mu.Lock()
			if len(f.queue) > 0 { // added as the timer fired
				f.mu.Unlock()
				continue
			}
			f.running = false
			f.mu.Unlock()
			return
		}

		gathering = len(batch) > 1
		f.write(batch)

		f.mu.Lock()
		f.done += uint64(len(batch))
		if len(f.queue) == 0 && cap(f.queue) < cap(batch) && len(batch) < finalBatch {
			// The batch was the whole queue: its array holds the next one.
			clear(batch) // the records' arguments, for the collector
			f.queue = batch[:0]
		}
		if f.progress != nil {
			close(f.progress)
			f.progress = nil
		}
		f.mu.Unlock()
	}
}

// write writes batch in one round trip and one transaction, committed
// without waiting for the WAL flush, all within the coordinator's settling
// budget. When the connection fails it tries again (with another of the
// pool's connections; a record written already is not written twice: its
// saga is no longer running); when the server refuses the batch (one
// record's error aborts the transaction of all), it writes each record
// alone, once. A record it cannot write leaves its saga running, for
// recovery.
func (f *finisher) write(batch []finalRecord) {
	c := f.c
	if c.opts.dropFinal != nil {
		kept := batch[:0]
		for _, r := range batch {
			if !c.opts.dropFinal(r.id) {
				kept = append(kept, r)
			}
		}
		batch = kept
	}
	if len(batch) == 0 {
		return
	}
	ctx := f.budget()
	defer func() {
		if !f.watch.Stop() {
			f.ctx = nil // the watchdog fired, or is firing: a new context next time
		}
	}()
	f.written = 0
	wait := settleWait
	for try := 1; ; try++ {
		err := f.send(ctx, batch)
		if err == nil {
			break
		}
		if refused(err) {
			if len(batch) > 1 {
				for i := range batch {
					_ = f.send(ctx, batch[i:i+1])
				}
			}
			break
		}
		if try == settleTries || ctx.Err() != nil {
			break
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
		}
		wait *= 2
	}
	if lost := int64(len(batch)) - f.written; lost > 0 {
		c.tel.finalsLost.Add(context.Background(), lost)
	}
}

// refused reports whether the server answered err to a statement (an
// ERROR), rather than the connection failing.
func refused(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr)
}

// send writes batch once, adding the records it wrote to f.written.
func (f *finisher) send(ctx context.Context, batch []finalRecord) error {
	pool := f.c.pool
	if len(batch) == 1 {
		if err := pool.QueryRow(ctx, batch[0].sql, batch[0].args...).Scan(f.scan...); err != nil {
			return err
		}
		f.written += f.n
		return nil
	}
	// The batch's queries are the finisher's, reused from batch to batch.
	if cap(f.queries) < len(batch) {
		f.queries = make([]pgx.QueuedQuery, len(batch))
		f.batch.QueuedQueries = make([]*pgx.QueuedQuery, 0, len(batch))
	}
	b := &f.batch
	b.QueuedQueries = b.QueuedQueries[:0]
	for i, r := range batch {
		q := &f.queries[i]
		q.SQL, q.Arguments = r.sql, r.args
		b.QueuedQueries = append(b.QueuedQueries, q)
	}
	defer func() {
		for i := range batch {
			f.queries[i] = pgx.QueuedQuery{} // the records' arguments, for the collector
		}
	}()
	br := pool.SendBatch(ctx, b)
	var n int64
	for range batch {
		if err := br.QueryRow().Scan(f.scan...); err != nil {
			_ = br.Close()
			return err // one transaction: none of them committed
		}
		n += f.n
	}
	if err := br.Close(); err != nil {
		return err
	}
	f.written += n
	return nil
}

// budget returns the context of a write, which the watchdog ends after
// Options.SettleTimeout: one context for the goroutine's writes, not one
// per write (a deadline each would cost a timer each).
func (f *finisher) budget() context.Context {
	if f.ctx == nil || f.ctx.Err() != nil {
		ctx, cancel := context.WithCancel(context.Background())
		f.ctx = ctx
		f.watch = time.AfterFunc(time.Hour, cancel)
	}
	f.watch.Reset(f.c.opts.SettleTimeout)
	return f.ctx
}

// wait returns when every record handed over before the call is written
// or given up, or when ctx ends.
func (f *finisher) wait(ctx context.Context) {
	f.mu.Lock()
	target := f.handed
	if f.done < target {
		f.hurry()
	}
	for f.done < target {
		if f.progress == nil {
			f.progress = make(chan struct{})
		}
		ch := f.progress
		f.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return
		}
		f.mu.Lock()
	}
	f.mu.Unlock()
}

// settleFinals waits for the final records that Runs of this coordinator
// handed over before the call (see finisher), so that what the caller reads
// or changes next includes them; at most Options.SettleTimeout.
func (c *Coordinator) settleFinals(ctx context.Context) {
	f := c.finals
	f.mu.Lock()
	settled := f.done == f.handed
	f.mu.Unlock()
	if settled {
		return
	}
	// Bounded: a write stuck on a dead connection must not hold up reads.
	ctx, cancel := context.WithTimeout(ctx, c.opts.SettleTimeout)
	defer cancel()
	f.wait(ctx)
}

// deferFinal hands the saga's final record, w, to the finisher instead
// of writing it (see finisher), and sets the time it will carry. It
// returns false, leaving w as it was, when the coordinator is closed: the
// run then writes the record itself.
func (e *execution[S]) deferFinal(w stmt, events int) bool {
	// The database's clock set every earlier timestamp; this one is the
	// process's, never before the last of those.
	at := time.Now().Round(0).Truncate(time.Microsecond)
	if !at.After(e.updated) {
		at = e.updated.Add(time.Microsecond)
	}
	// The run writes nothing after its final record, so the execution's
	// buffers are the record's now (writeStmt left room for the time).
	if !e.c.finals.add(finalRecord{id: e.id, sql: finalSQLFor(events), args: append(w.args, at)}) {
		return false
	}
	e.updated = at
	return true
}
