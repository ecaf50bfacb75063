package coord

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Recover finishes the unfinished sagas whose lease expired, as left by a
// coordinator that died or gave up: Options.RecoveryWorkers goroutines
// drive them at once, each saga from its position in the log. It claims
// them in batches of at most the idle workers with
// SELECT ... FOR UPDATE SKIP LOCKED, so that coordinators recovering at the
// same time each take different sagas, oldest lease first. A running saga
// is resumed forward: its current step runs again (which is why actions
// must be idempotent, see Step), then the rest; a compensating saga goes on
// compensating. It takes only sagas whose definition is registered with c,
// and only those whose lease expired before the call began: the lease it
// sets ends after that, so it takes each saga at most once per call, and a
// claim costs the same however long the backlog (see README.md, Recovery
// at scale).
//
// A saga taken over more than Options.DeadLetterAfter times in a row without
// progress is turned dead instead of being driven again (it counts as taken
// over).
//
// It returns how many sagas it took over, once every saga it took has
// stopped. Their outcomes go to the hooks and the log (Get, Failed), not to
// its error, which reports a failure to read the log, ctx ending (the
// sagas taken are then given up as Run gives them up, and recovery takes
// them again later), or sagas it could not drive at all (a state that no
// longer decodes), joined.
func (c *Coordinator) Recover(ctx context.Context) (int, error) {
	c.mu.Lock()
	names := make([]string, 0, len(c.sagas))
	for name := range c.sagas {
		names = append(names, name)
	}
	c.mu.Unlock()

	// The database's clock, as the leases are: a saga whose lease expires
	// after it, including every one this call claims, waits for the next.
	var cutoff time.Time
	if err := c.pool.QueryRow(ctx, `select now()`).Scan(&cutoff); err != nil {
		return 0, fmt.Errorf("coord: recover: %w", err)
	}

	r := recovery{c: c, slots: make(chan struct{}, c.opts.RecoveryWorkers)}
	taken := 0
	for _, name := range names {
		for !r.stopped() {
			if err := ctx.Err(); err != nil {
				r.fail(err)
				break
			}
			n, done := r.claim(ctx, name, cutoff)
			taken += n
			if done {
				break
			}
		}
		if r.stopped() || ctx.Err() != nil {
			break
		}
	}
	r.wg.Wait()
	return taken, errors.Join(r.errs...)
}

// claim claims up to as many sagas of the definition name as there are
// idle workers (waiting for one) and starts driving them. done is true when
// it took none: the definition has no saga left to take in this call, or
// the claim failed (reported).
func (r *recovery) claim(ctx context.Context, name string, cutoff time.Time) (taken int, done bool) {
	c := r.c
	n := r.acquire(ctx)
	if n == 0 {
		return 0, false // ctx ended: the caller reports it
	}
	token := c.newToken() // one per claim: unique to each run of each saga it takes
	rows, err := c.pool.Query(ctx, claimSQL, token, c.leaseMillis(), name, cutoff, n, c.opts.DeadLetterAfter)
	var recs []record
	if err == nil {
		recs, err = pgx.CollectRows(rows, scanRecord)
	}
	r.release(n - len(recs))
	if err != nil {
		r.fail(fmt.Errorf("coord: recover: %w", err))
		return 0, true
	}
	for _, rec := range recs {
		r.wg.Add(1)
		go r.drive(ctx, rec, token)
	}
	return len(recs), len(recs) == 0
}

// recovery is one Recover call's workers: a slot of slots is held by each
// saga being driven.
type recovery struct {
	c     *Coordinator
	slots chan struct{}
	wg    sync.WaitGroup

	mu      sync.Mutex
	errs    []error
	crashed bool // a test's crash hook fired: stop as a dying process would
}

// acquire waits for one idle worker, then takes every other idle one
// without waiting, and returns how many it took (0 when ctx ended).
func (r *recovery) acquire(ctx context.Context) int {
	select {
	case r.slots <- struct{}{}:
	case <-ctx.Done():
		return 0
	}
	n := 1
	for n < cap(r.slots) {
		select {
		case r.slots <- struct{}{}:
			n++
		default:
			return n
		}
	}
	return n
}

func (r *recovery) release(n int) {
	for range n {
		<-r.slots
	}
}

func (r *recovery) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, err)
	if errors.Is(err, errCrashed) {
		r.crashed = true
	}
}

func (r *recovery) stopped() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.crashed
}

// drive drives one claimed saga, then frees its worker.
func (r *recovery) drive(ctx context.Context, rec record, token string) {
	defer r.wg.Done()
	defer r.release(1)
	c := r.c
	c.mu.Lock()
	d := c.sagas[rec.Name]
	c.mu.Unlock()
	dt := d.telemetry()
	if rec.Status == StatusDead {
		c.tel.finish(ctx, dt, StatusDead, 0) // the claim dead-lettered it
		return
	}
	if r.stopped() {
		return // as a dying process would: the claim stays until its lease expires
	}
	c.tel.recoveries.Add(ctx, 1, dt.nameOpts...)
	rctx, span := c.tel.startResume(ctx, dt, rec)
	info, err := d.resume(rctx, rec, token)
	endSpan(span, info, err)
	switch {
	case errors.Is(err, errCrashed):
		r.fail(err)
	case errors.Is(err, ErrInvalid), errors.Is(err, ErrUnsealable):
		r.fail(fmt.Errorf("coord: recover: %w", err))
	}
}

// Start starts a goroutine that calls Recover every Options.RecoverEvery
// until ctx ends or Close is called; its errors go to Hooks.RecoverFailed.
// With a positive Options.Retention.After, each round then calls Purge with
// it; its errors go to Hooks.PurgeFailed.
// Calling it again does nothing. It returns ErrClosed after Close.
func (c *Coordinator) Start(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	if c.started {
		return nil
	}
	c.started = true
	ctx, c.stop = context.WithCancel(ctx)
	c.done = make(chan struct{})
	go func() {
		defer close(c.done)
		t := time.NewTicker(c.opts.RecoverEvery)
		defer t.Stop()
		for {
			if _, err := c.Recover(ctx); err != nil && ctx.Err() == nil && c.opts.Hooks.RecoverFailed != nil {
				c.opts.Hooks.RecoverFailed(ctx, err)
			}
			if after := c.opts.Retention.After; after > 0 {
				if _, err := c.Purge(ctx, after); err != nil && ctx.Err() == nil && c.opts.Hooks.PurgeFailed != nil {
					c.opts.Hooks.PurgeFailed(ctx, err)
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return nil
}

// Close stops the loop started by Start and waits for it to return, then
// for the final records that returned Runs left to write (README.md, "Run
// does not wait for the final record"), at most Options.SettleTimeout.
// Runs in progress go on until their contexts end; after Close, Run and
// Start return ErrClosed. Close does not close the pool: close it after
// Close. It always returns nil.
func (c *Coordinator) Close() error {
	c.mu.Lock()
	c.closed = true
	stop, done := c.stop, c.done
	c.mu.Unlock()
	if c.tel.waiting != nil {
		_ = c.tel.waiting.Unregister() // idempotent: a second Close unregisters nothing
	}
	if stop != nil {
		stop()
		<-done
	}
	// The final records Runs handed over (see finisher), within the
	// settling budget: one not written leaves its saga to recovery. Runs
	// still in progress write their own from now on.
	c.finals.close()
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.SettleTimeout)
	c.settleFinals(ctx)
	cancel()
	return nil
}
