package coord

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// steal gives the lease of saga id to another owner, as a coordinator that
// recovered the saga after the lease expired would.
func steal(t *testing.T, f *fixture, id string) {
	t.Helper()
	tag, err := f.pool.Exec(context.Background(), `update coord_saga set lease_owner = 'thief' where id = $1`, id)
	require.NoError(t, err)
	require.EqualValues(t, 1, tag.RowsAffected())
}

func TestRun_LostLeaseStopsTheRunWithoutWriting(t *testing.T) {
	f := newFixture(t)
	c, err := New(context.Background(), f.pool, Options{LeaseDuration: 300 * time.Millisecond})
	require.NoError(t, err)
	type S struct{}
	entered := make(chan struct{})
	release := make(chan struct{})
	h, err := Register(c, Define("stolen-tx",
		Step[S]{Name: "a", Action: func(context.Context, *S) error { return nil }},
		Step[S]{Name: "b", TxAction: func(ctx context.Context, tx Tx, _ *S) error {
			close(entered)
			<-release
			_, err := tx.Exec(ctx, `insert into users (id, email) values ('stolen', 'x')`)
			return err
		}},
	))
	require.NoError(t, err)

	done := runAsync(h, "s1", &S{})
	<-entered
	steal(t, f, "s1")
	close(release)

	err = <-done
	require.ErrorIs(t, err, ErrIncomplete)
	assert.ErrorIs(t, err, ErrLeaseLost)
	var n int
	require.NoError(t, f.pool.QueryRow(context.Background(), `select count(*) from users where id = 'stolen'`).Scan(&n))
	assert.Zero(t, n, "the step's transaction rolled back")
	info, err := c.Get(context.Background(), "s1")
	require.NoError(t, err)
	assert.Equal(t, 1, info.Step, "the log is untouched by the stale run")
}

func TestRun_LostLeaseCancelsARunningAction(t *testing.T) {
	f := newFixture(t)
	c, err := New(context.Background(), f.pool, Options{LeaseDuration: 300 * time.Millisecond})
	require.NoError(t, err)
	type S struct{}
	entered := make(chan struct{})
	h, err := Register(c, Define("stolen-action",
		Step[S]{Name: "a", Action: func(ctx context.Context, _ *S) error {
			close(entered)
			<-ctx.Done() // the renewal finds the lease gone and cancels the step
			return ctx.Err()
		}},
	))
	require.NoError(t, err)

	done := runAsync(h, "s1", &S{})
	<-entered
	steal(t, f, "s1")

	err = <-done
	require.ErrorIs(t, err, ErrIncomplete)
	assert.ErrorIs(t, err, ErrLeaseLost)
	info, err := c.Get(context.Background(), "s1")
	require.NoError(t, err)
	assert.Equal(t, StatusRunning, info.Status, "left to the coordinator that holds the lease")
	assert.Equal(t, 0, info.Step)
}

func TestRecover_StateThatNoLongerDecodesIsReportedAndKept(t *testing.T) {
	f := newFixture(t)
	c, err := New(context.Background(), f.pool, Options{})
	require.NoError(t, err)
	type S struct{ N int }
	_, err = Register(c, Define("typed", Step[S]{Name: "a", Action: func(context.Context, *S) error { return nil }}))
	require.NoError(t, err)
	// As left by an older version of the code whose N was a string.
	_, err = f.pool.Exec(context.Background(), `insert into coord_saga (id, name, status, step, state, lease_expires)
		values ('old', 'typed', 'running', 0, '{"N": "seven"}', now() - interval '1 minute')`)
	require.NoError(t, err)

	n, err := c.Recover(context.Background())
	assert.Equal(t, 1, n)
	require.ErrorIs(t, err, ErrInvalid)
	info, err := c.Get(context.Background(), "old")
	require.NoError(t, err)
	assert.Equal(t, StatusRunning, info.Status, "kept for a person or a fixed version")

	// A step the definition no longer has.
	_, err = f.pool.Exec(context.Background(), `insert into coord_saga (id, name, status, step, state, lease_expires)
		values ('gone', 'typed', 'running', 3, '{"N": 7}', now() - interval '1 minute')`)
	require.NoError(t, err)
	_, err = f.pool.Exec(context.Background(), `update coord_saga set status = 'failed' where id = 'old'`)
	require.NoError(t, err)
	n, err = c.Recover(context.Background())
	assert.Equal(t, 1, n)
	require.ErrorIs(t, err, ErrInvalid)
}
