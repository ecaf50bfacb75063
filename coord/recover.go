package coord

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Recover finishes the unfinished sagas whose lease expired, as left by a
// coordinator that died or gave up: it takes them one at a time with
// SELECT ... FOR UPDATE SKIP LOCKED, so that coordinators recovering at the
// same time each take different sagas, and drives each from its position in
// the log. A running saga is resumed forward: its current step runs again
// (which is why actions must be idempotent, see Step), then the rest; a
// compensating saga goes on compensating. It takes only sagas whose
// definition is registered with c, and each at most once per call.
//
// A saga taken over more than Options.DeadLetterAfter times in a row without
// progress is turned dead instead of being driven again (it counts as taken
// over).
//
// It returns how many sagas it took over. Their outcomes go to the hooks
// and the log (Get, Failed), not to its error, which reports a failure to
// read the log, ctx ending, or sagas it could not drive at all (a state
// that no longer decodes), joined.
func (c *Coordinator) Recover(ctx context.Context) (int, error) {
	c.mu.Lock()
	names := make([]string, 0, len(c.sagas))
	for name := range c.sagas {
		names = append(names, name)
	}
	c.mu.Unlock()

	seen := []string{}
	var errs []error
	for {
		if err := ctx.Err(); err != nil {
			return len(seen), errors.Join(append(errs, err)...)
		}
		token := c.newToken()
		rows, err := c.pool.Query(ctx, claimSQL, token, c.leaseMillis(), names, seen, c.opts.DeadLetterAfter)
		if err != nil {
			return len(seen), fmt.Errorf("coord: recover: %w", err)
		}
		rec, err := pgx.CollectExactlyOneRow(rows, scanRecord)
		if errors.Is(err, pgx.ErrNoRows) {
			return len(seen), errors.Join(errs...)
		}
		if err != nil {
			return len(seen), errors.Join(append(errs, fmt.Errorf("coord: recover: %w", err))...)
		}
		seen = append(seen, rec.ID)
		c.mu.Lock()
		d := c.sagas[rec.Name]
		c.mu.Unlock()
		dt := d.telemetry()
		if rec.Status == StatusDead {
			c.tel.finish(ctx, dt, StatusDead, 0)
			continue // the claim dead-lettered it
		}

		c.tel.recoveries.Add(ctx, 1, dt.nameOpts...)
		rctx, span := c.tel.startResume(ctx, dt, rec)
		var info Info
		info, err = d.resume(rctx, rec, token)
		endSpan(span, info, err)
		switch {
		case errors.Is(err, errCrashed):
			return len(seen), errors.Join(append(errs, err)...)
		case errors.Is(err, ErrInvalid), errors.Is(err, ErrUnsealable):
			errs = append(errs, fmt.Errorf("coord: recover: %w", err))
		}
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

// Close stops the loop started by Start and waits for it to return. Runs in
// progress go on until their contexts end; after Close, Run and Start return
// ErrClosed. Close does not close the pool. It always returns nil.
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
	return nil
}
