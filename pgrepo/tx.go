package pgrepo

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// TxOptions configures InTx. Its zero value runs the function at most 5
// times at the server's default isolation level, read-write. Zero fields
// take the default their comment names; a negative count or delay, an
// unknown IsoLevel or a BaseDelay above MaxDelay is an error (ErrInvalid).
type TxOptions struct {
	// IsoLevel is the isolation level: pgx.Serializable,
	// pgx.RepeatableRead, pgx.ReadCommitted or pgx.ReadUncommitted.
	// Default (""): the server's default, normally read committed.
	// Serialization failures, which InTx retries, happen at
	// pgx.RepeatableRead and pgx.Serializable.
	IsoLevel pgx.TxIsoLevel
	// ReadOnly starts the transaction READ ONLY. Default false.
	ReadOnly bool
	// MaxAttempts is how many times the function runs at most when the
	// transaction fails with a serialization failure (40001) or a deadlock
	// (40P01). Default (0): 5. 1 disables retries.
	MaxAttempts int
	// BaseDelay is the wait before the second attempt; it doubles for each
	// attempt after that, and each wait is drawn at random between zero and
	// that bound (full jitter), so that the retrying transactions spread
	// out. Default (0): 10ms.
	BaseDelay time.Duration
	// MaxDelay caps the wait bound; it must not be below BaseDelay.
	// Default (0): 1s, or BaseDelay when that is longer.
	MaxDelay time.Duration
	// TracerProvider starts InTx's span "pgrepo.InTx", with an event per
	// retry (see the package documentation, Observability). Default
	// (nil): the global provider, otel.GetTracerProvider(), which costs
	// nothing until the application installs one.
	TracerProvider trace.TracerProvider
	// MeterProvider records InTx's duration, all attempts and waits
	// included, in the db.client.operation.duration histogram
	// (db.operation.name InTx). Default (nil): the global provider,
	// otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
}

// InTx runs fn in a transaction begun on db and commits it when fn returns
// nil. It rolls back when fn returns an error (which InTx returns as it
// is) or panics (InTx re-panics after the rollback). When fn or the commit
// fails with a serialization failure or a deadlock, it rolls back, waits
// (exponential backoff with jitter) and runs fn again in a new transaction,
// up to opts.MaxAttempts times; fn must therefore have no effect outside
// the transaction that it cannot repeat. A failed rollback is joined to the
// original error, never hides it. Commit errors are translated like the
// repository's (ErrDuplicate, ErrForeignKey, ErrCheck for deferred
// constraints); the last *pgconn.PgError stays reachable with errors.As.
// InTx returns ctx's error when ctx ends while it waits, and ErrInvalid
// (before beginning anything) for a nil db or fn or invalid opts.
//
// While a span is recorded, the pgx.Tx that fn receives is a wrapper of
// pgx's: a repository call on it with the context InTx was called with
// goes under InTx's span.
func InTx(ctx context.Context, db TxBeginner, opts TxOptions, fn func(pgx.Tx) error) error {
	tel := txTelemetry()
	if opts.TracerProvider != nil || opts.MeterProvider != nil {
		tel = newTelemetry("", opts.TracerProvider, opts.MeterProvider)
	}
	parent := trace.SpanContextFromContext(ctx)
	ctx, c := tel.start(ctx, opInTx, nil)
	if c.span != nil && opts.IsoLevel != "" {
		c.span.SetAttributes(attrIsolation.String(string(opts.IsoLevel)))
	}
	if c.span != nil && fn != nil {
		inner := fn
		fn = func(tx pgx.Tx) error { return inner(&tracedTx{Tx: tx, span: c.span, parent: parent}) }
	}
	err := inTx(ctx, db, opts, fn, c)
	c.end(ctx, err)
	return err
}

// inTx is InTx once its span has started.
func inTx(ctx context.Context, db TxBeginner, opts TxOptions, fn func(pgx.Tx) error, c call) error {
	if db == nil || fn == nil {
		return fmt.Errorf("%w: pgrepo.InTx: nil db or fn", ErrInvalid)
	}
	if err := opts.validate(); err != nil {
		return err
	}
	attempts := opts.MaxAttempts
	if attempts == 0 {
		attempts = 5
	}
	base, maxDelay := opts.BaseDelay, opts.MaxDelay
	if base == 0 {
		base = 10 * time.Millisecond
	}
	if maxDelay == 0 {
		maxDelay = max(time.Second, base)
	}
	access := pgx.ReadWrite
	if opts.ReadOnly {
		access = pgx.ReadOnly
	}
	txOpts := pgx.TxOptions{IsoLevel: opts.IsoLevel, AccessMode: access}

	bound := base
	for attempt := 1; ; attempt++ {
		err := runTx(ctx, db, txOpts, fn)
		if err == nil || !retryable(err) || attempt >= attempts {
			if c.span != nil {
				c.span.SetAttributes(attrAttempt.Int(attempt))
			}
			if err != nil && retryable(err) && attempts > 1 {
				return fmt.Errorf("pgrepo: transaction failed %d times: %w", attempt, err)
			}
			return err
		}
		c.retry(attempt+1, err)
		wait := rand.N(bound + 1)
		bound = min(2*bound, maxDelay)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			if c.span != nil {
				c.span.SetAttributes(attrAttempt.Int(attempt))
			}
			return errors.Join(ctx.Err(), err)
		case <-t.C:
		}
	}
}

// runTx is one attempt of InTx.
func runTx(ctx context.Context, db TxBeginner, opts pgx.TxOptions, fn func(pgx.Tx) error) (err error) {
	tx, err := db.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("pgrepo: begin: %w", err)
	}
	committed := false
	defer func() {
		if committed {
			return
		}
		// A panic or an error: roll back with a context that is still alive,
		// so that a cancelled ctx does not leave the transaction open.
		p := recover()
		rbCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if rbErr := tx.Rollback(rbCtx); rbErr != nil && !errors.Is(rbErr, pgx.ErrTxClosed) {
			err = errors.Join(err, fmt.Errorf("pgrepo: rollback: %w", rbErr))
		}
		if p != nil {
			panic(p)
		}
	}()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return translate("pgrepo: commit", err)
	}
	committed = true
	return nil
}

// validate rejects options that have no meaning, which would otherwise
// pass for a default or fail at the server after a connection was taken.
func (o TxOptions) validate() error {
	switch o.IsoLevel {
	case "", pgx.Serializable, pgx.RepeatableRead, pgx.ReadCommitted, pgx.ReadUncommitted:
	default:
		return fmt.Errorf("%w: pgrepo.InTx: unknown IsoLevel %q: nothing ran", ErrInvalid, o.IsoLevel)
	}
	switch {
	case o.MaxAttempts < 0:
		return fmt.Errorf("%w: pgrepo.InTx: negative MaxAttempts %d (0 means 5, 1 no retries): nothing ran", ErrInvalid, o.MaxAttempts)
	case o.BaseDelay < 0 || o.MaxDelay < 0:
		return fmt.Errorf("%w: pgrepo.InTx: negative BaseDelay %s or MaxDelay %s (0 means the default): nothing ran", ErrInvalid, o.BaseDelay, o.MaxDelay)
	case o.MaxDelay > 0 && o.BaseDelay > o.MaxDelay:
		return fmt.Errorf("%w: pgrepo.InTx: BaseDelay %s above MaxDelay %s: nothing ran", ErrInvalid, o.BaseDelay, o.MaxDelay)
	}
	return nil
}
