package pgrepo_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/polystore/polystore/internal/servicetest"
	"github.com/polystore/polystore/pgrepo"
)

func countTeams(t *testing.T, f *fixture) int64 {
	t.Helper()
	n, err := f.teams.Count(context.Background(), f.pool, nil)
	require.NoError(t, err)
	return n
}

func TestInTx_CommitsWhenFnSucceeds(t *testing.T) {
	f := newFixture(t)
	err := pgrepo.InTx(context.Background(), f.pool, pgrepo.TxOptions{}, func(tx pgx.Tx) error {
		return f.teams.Insert(context.Background(), tx, &team{Name: "red"})
	})
	require.NoError(t, err)
	assert.Equal(t, int64(1), countTeams(t, f))
}

func TestInTx_RollsBackAndReturnsFnError(t *testing.T) {
	f := newFixture(t)
	errBoom := errors.New("boom")
	calls := 0
	err := pgrepo.InTx(context.Background(), f.pool, pgrepo.TxOptions{}, func(tx pgx.Tx) error {
		calls++
		if err := f.teams.Insert(context.Background(), tx, &team{Name: "red"}); err != nil {
			return err
		}
		return errBoom
	})
	assert.Same(t, errBoom, err, "fn's error comes back as it is")
	assert.Equal(t, 1, calls, "an ordinary error is not retried")
	assert.Zero(t, countTeams(t, f))
}

func TestInTx_RollsBackAndRepanicsWhenFnPanics(t *testing.T) {
	f := newFixture(t)
	assert.PanicsWithValue(t, "kaboom", func() {
		_ = pgrepo.InTx(context.Background(), f.pool, pgrepo.TxOptions{}, func(tx pgx.Tx) error {
			if err := f.teams.Insert(context.Background(), tx, &team{Name: "red"}); err != nil {
				return err
			}
			panic("kaboom")
		})
	})
	assert.Zero(t, countTeams(t, f))
	// The connection went back to the pool clean: a new transaction works.
	require.NoError(t, pgrepo.InTx(context.Background(), f.pool, pgrepo.TxOptions{}, func(tx pgx.Tx) error { return nil }))
}

// TestInTx_RetriesRealSerializationFailure makes two SERIALIZABLE
// transactions read what the other writes (write skew), ordered with
// channels so that the other one commits first: PostgreSQL aborts the
// InTx one with 40001, and InTx runs it again, to success.
func TestInTx_RetriesRealSerializationFailure(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	_, err := f.pool.Exec(ctx, `CREATE TABLE oncall (doctor text PRIMARY KEY, on_call bool NOT NULL);
		INSERT INTO oncall VALUES ('alice', true), ('bob', true)`)
	require.NoError(t, err)

	aRead := make(chan struct{})
	bDone := make(chan error, 1)
	go func() {
		<-aRead
		bDone <- pgrepo.InTx(ctx, f.pool, pgrepo.TxOptions{IsoLevel: pgx.Serializable, MaxAttempts: 1}, func(tx pgx.Tx) error {
			var n int
			if err := tx.QueryRow(ctx, "SELECT count(*) FROM oncall WHERE on_call").Scan(&n); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "UPDATE oncall SET on_call = false WHERE doctor = 'bob'")
			return err
		})
	}()

	var attempts atomic.Int32
	var onCall []int
	err = pgrepo.InTx(ctx, f.pool, pgrepo.TxOptions{IsoLevel: pgx.Serializable, BaseDelay: time.Millisecond}, func(tx pgx.Tx) error {
		n := attempts.Add(1)
		var count int
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM oncall WHERE on_call").Scan(&count); err != nil {
			return err
		}
		onCall = append(onCall, count)
		if n == 1 {
			close(aRead)
			// Bob goes off call and commits, after our read and before our write.
			if err := <-bDone; err != nil {
				return errors.Join(errors.New("the other transaction failed"), err)
			}
		}
		if count < 2 {
			return nil // the rule "someone stays on call" holds
		}
		_, err := tx.Exec(ctx, "UPDATE oncall SET on_call = false WHERE doctor = 'alice'")
		return err
	})
	require.NoError(t, err)

	assert.Equal(t, int32(2), attempts.Load(), "the first attempt failed with 40001 and was retried")
	assert.Equal(t, []int{2, 1}, onCall, "the retry saw the other transaction's commit")
	var stillOnCall int
	require.NoError(t, f.pool.QueryRow(ctx, "SELECT count(*) FROM oncall WHERE on_call").Scan(&stillOnCall))
	assert.Equal(t, 1, stillOnCall, "no write skew")
}

// TestInTx_RetriesDeadlock has two transactions lock two rows in opposite
// orders; PostgreSQL aborts one with 40P01 (after deadlock_timeout, 1s by
// default) and InTx runs it again: both end up committed.
func TestInTx_RetriesDeadlock(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	_, err := f.pool.Exec(ctx, `CREATE TABLE slots (id int PRIMARY KEY, n int NOT NULL); INSERT INTO slots VALUES (1, 0), (2, 0)`)
	require.NoError(t, err)

	var attempts atomic.Int32
	var bothLocked sync.WaitGroup
	bothLocked.Add(2)
	run := func(first, second int) error {
		return pgrepo.InTx(ctx, f.pool, pgrepo.TxOptions{}, func(tx pgx.Tx) error {
			n := attempts.Add(1)
			if _, err := tx.Exec(ctx, "UPDATE slots SET n = n + 1 WHERE id = $1", first); err != nil {
				return err
			}
			if n <= 2 {
				// Both first attempts hold their first lock before either asks
				// for its second: a deadlock for sure.
				bothLocked.Done()
				bothLocked.Wait()
			}
			_, err := tx.Exec(ctx, "UPDATE slots SET n = n + 1 WHERE id = $1", second)
			return err
		})
	}
	errs := make(chan error, 2)
	go func() { errs <- run(1, 2) }()
	go func() { errs <- run(2, 1) }()
	require.NoError(t, <-errs)
	require.NoError(t, <-errs)

	assert.Equal(t, int32(3), attempts.Load(), "exactly one attempt was aborted and retried")
	var total int
	require.NoError(t, f.pool.QueryRow(ctx, "SELECT sum(n) FROM slots").Scan(&total))
	assert.Equal(t, 4, total, "both transactions committed once")
}

func TestInTx_GivesUpAfterMaxAttempts(t *testing.T) {
	f := newFixture(t)
	calls := 0
	err := pgrepo.InTx(context.Background(), f.pool, pgrepo.TxOptions{MaxAttempts: 3, BaseDelay: time.Microsecond}, func(tx pgx.Tx) error {
		calls++
		// What pgx returns for a serialization failure.
		return &pgconn.PgError{Code: "40001", Message: "could not serialize access"}
	})
	assert.Equal(t, 3, calls)
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr)
	assert.Equal(t, "40001", pgErr.Code)
	assert.Contains(t, err.Error(), "3 times")
}

func TestInTx_StopsWaitingWhenContextEnds(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	err := pgrepo.InTx(ctx, f.pool, pgrepo.TxOptions{MaxAttempts: 1000, BaseDelay: time.Hour}, func(tx pgx.Tx) error {
		calls++
		cancel()
		return &pgconn.PgError{Code: "40P01"}
	})
	assert.ErrorIs(t, err, context.Canceled)
	var pgErr *pgconn.PgError
	assert.ErrorAs(t, err, &pgErr, "the failure that led to the wait is kept")
	assert.Equal(t, 1, calls)
}

func TestInTx_AppliesIsolationLevelAndReadOnly(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	var level, readOnly string
	err := pgrepo.InTx(ctx, f.pool, pgrepo.TxOptions{IsoLevel: pgx.RepeatableRead, ReadOnly: true}, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, "SHOW transaction_isolation").Scan(&level); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, "SHOW transaction_read_only").Scan(&readOnly); err != nil {
			return err
		}
		return f.teams.Insert(ctx, tx, &team{Name: "red"})
	})
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr)
	assert.Equal(t, "25006", pgErr.Code, "read-only transactions cannot write")
	assert.Equal(t, "repeatable read", level)
	assert.Equal(t, "on", readOnly)
}

func TestInTx_FailedRollbackIsJoinedToFnError(t *testing.T) {
	conn, err := pgx.Connect(context.Background(), servicetest.PostgresURL(t))
	require.NoError(t, err)
	errBoom := errors.New("boom")

	err = pgrepo.InTx(context.Background(), conn, pgrepo.TxOptions{}, func(tx pgx.Tx) error {
		// Losing the connection makes the rollback fail.
		require.NoError(t, tx.Conn().Close(context.Background()))
		return errBoom
	})

	assert.ErrorIs(t, err, errBoom, "the original error is kept")
	assert.Contains(t, err.Error(), "rollback")
}

func TestInTx_DeferredConstraintAtCommitIsTranslated(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	_, err := f.pool.Exec(ctx, `CREATE TABLE codes (code text CONSTRAINT codes_code_key UNIQUE DEFERRABLE INITIALLY DEFERRED)`)
	require.NoError(t, err)

	err = pgrepo.InTx(ctx, f.pool, pgrepo.TxOptions{}, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO codes VALUES ('a'), ('a')")
		return err
	})

	assert.ErrorIs(t, err, pgrepo.ErrDuplicate)
	assert.Contains(t, err.Error(), "codes_code_key")
}

func TestInTx_NilArgumentsReturnErrInvalid(t *testing.T) {
	f := newFixture(t)
	assert.ErrorIs(t, pgrepo.InTx(context.Background(), f.pool, pgrepo.TxOptions{}, nil), pgrepo.ErrInvalid)
	assert.ErrorIs(t, pgrepo.InTx(context.Background(), nil, pgrepo.TxOptions{}, func(pgx.Tx) error { return nil }), pgrepo.ErrInvalid)
}
