package coord

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/polystore/polystore/internal/servicetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type atCommitState struct {
	ID string `json:"id"`
}

// atCommitTable makes the table the tests write: its serial n gives the
// order the rows were inserted in.
func atCommitTable(t *testing.T) *Coordinator {
	t.Helper()
	pool := servicetest.Postgres(t)
	_, err := pool.Exec(context.Background(), `create table notes (n serial primary key, note text not null unique)`)
	require.NoError(t, err)
	c, err := New(context.Background(), pool, Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// notes returns the notes in the order they were inserted.
func notes(t *testing.T, c *Coordinator) []string {
	t.Helper()
	rows, err := c.pool.Query(context.Background(), `select note from notes order by n`)
	require.NoError(t, err)
	var out []string
	for rows.Next() {
		var s string
		require.NoError(t, rows.Scan(&s))
		out = append(out, s)
	}
	require.NoError(t, rows.Err())
	return out
}

func insertNote(ctx context.Context, tx Tx, note string) error {
	return ExecAtCommit(ctx, tx, `insert into notes (note) values ($1)`, note)
}

func TestExecAtCommit_StatementsRunWithTheStepsCommitAfterItsOwn(t *testing.T) {
	c := atCommitTable(t)
	ctx := context.Background()
	h, err := Register(c, Define("notes",
		Step[atCommitState]{Name: "first", TxAction: func(ctx context.Context, tx Tx, s *atCommitState) error {
			if err := insertNote(ctx, tx, s.ID+"-queued-1"); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `insert into notes (note) values ($1)`, s.ID+"-own"); err != nil {
				return err
			}
			return insertNote(ctx, tx, s.ID+"-queued-2")
		}, TxCompensate: func(context.Context, Tx, *atCommitState) error { return nil }},
		// A later step: its transaction begins with the lease check, which
		// travels with the queued statement, the record and COMMIT.
		Step[atCommitState]{Name: "second", Kind: Pivot, TxAction: func(ctx context.Context, tx Tx, s *atCommitState) error {
			return insertNote(ctx, tx, s.ID+"-second")
		}},
	))
	require.NoError(t, err)

	info, err := h.Run(ctx, "a", &atCommitState{ID: "a"})
	require.NoError(t, err)
	assert.Equal(t, StatusSucceeded, info.Status)
	assert.Equal(t, []string{"a-own", "a-queued-1", "a-queued-2", "a-second"}, notes(t, c))
}

func TestExecAtCommit_AFailingStatementFailsTheTryAndNothingOfItsTransactionTakesEffect(t *testing.T) {
	failures := []struct {
		name  string
		queue func(ctx context.Context, tx Tx) error
		check func(t *testing.T, err error)
	}{
		{"refused by the server", func(ctx context.Context, tx Tx) error {
			return insertNote(ctx, tx, "taken") // a unique violation
		}, func(t *testing.T, err error) {
			var pgErr *pgconn.PgError
			require.True(t, errors.As(err, &pgErr), "the driver's error is reachable: %v", err)
			assert.Equal(t, "23505", pgErr.Code)
		}},
		// pgx cannot build the batch: nothing of it is sent to COMMIT, so
		// the try failed (not a commit whose outcome is unknown).
		{"an argument missing", func(ctx context.Context, tx Tx) error {
			return ExecAtCommit(ctx, tx, `insert into notes (note) values ($1)`)
		}, func(t *testing.T, err error) {
			var pre pgx.ErrPreprocessingBatch
			require.True(t, errors.As(err, &pre), "the driver's error is reachable: %v", err)
			assert.NotErrorIs(t, err, ErrIncomplete)
		}},
	}
	for _, failure := range failures {
		for _, first := range []bool{true, false} { // the failing step is the saga's first, whose record rides in its transaction
			name := failure.name + ", later step"
			if first {
				name = failure.name + ", first step"
			}
			t.Run(name, func(t *testing.T) {
				c := atCommitTable(t)
				ctx := context.Background()
				_, err := c.pool.Exec(ctx, `insert into notes (note) values ('taken')`)
				require.NoError(t, err)
				var tries atomic.Int32
				failing := Step[atCommitState]{
					Name:  "failing",
					Retry: RetryPolicy{Attempts: 2, Backoff: time.Millisecond},
					TxAction: func(ctx context.Context, tx Tx, s *atCommitState) error {
						tries.Add(1)
						if _, err := tx.Exec(ctx, `insert into notes (note) values ($1)`, s.ID+"-own"); err != nil {
							return err
						}
						return failure.queue(ctx, tx)
					},
					TxCompensate: func(context.Context, Tx, *atCommitState) error { return nil },
				}
				steps := []Step[atCommitState]{failing}
				if !first {
					steps = []Step[atCommitState]{{
						Name: "before",
						TxAction: func(ctx context.Context, tx Tx, s *atCommitState) error {
							return insertNote(ctx, tx, s.ID+"-before")
						},
						TxCompensate: func(ctx context.Context, tx Tx, s *atCommitState) error {
							_, err := tx.Exec(ctx, `delete from notes where note = $1`, s.ID+"-before")
							return err
						},
					}, failing}
				}
				h, err := Register(c, Define("failing", steps...))
				require.NoError(t, err)

				info, err := h.Run(ctx, "b", &atCommitState{ID: "b"})
				require.Error(t, err)
				failure.check(t, err)
				assert.EqualValues(t, 2, tries.Load(), "the retry policy applies")
				assert.Equal(t, StatusCompensated, info.Status)
				assert.Equal(t, []string{"taken"}, notes(t, c), "the step's own insert rolled back with it; the earlier step compensated")
			})
		}
	}
}

func TestExecAtCommit_StatementsOfAStepThatFailsNeverRun(t *testing.T) {
	c := atCommitTable(t)
	ctx := context.Background()
	errStep := errors.New("the step fails after queuing")
	h, err := Register(c, Define("queued-then-failed",
		Step[atCommitState]{Name: "only", Kind: Pivot, Retry: RetryPolicy{Attempts: 1},
			TxAction: func(ctx context.Context, tx Tx, s *atCommitState) error {
				if err := insertNote(ctx, tx, s.ID); err != nil {
					return err
				}
				return errStep
			}},
	))
	require.NoError(t, err)

	_, err = h.Run(ctx, "c", &atCommitState{ID: "c"})
	require.ErrorIs(t, err, errStep)
	assert.Empty(t, notes(t, c))
}

func TestExecAtCommit_RunsAtOnceInATransactionNotAStepsAndRefusesBadArguments(t *testing.T) {
	c := atCommitTable(t)
	ctx := context.Background()
	tx, err := c.pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()

	require.NoError(t, ExecAtCommit(ctx, tx, `insert into notes (note) values ($1)`, "at once"))
	var n int
	require.NoError(t, tx.QueryRow(ctx, `select count(*) from notes where note = 'at once'`).Scan(&n))
	assert.Equal(t, 1, n, "run before the transaction commits")

	assert.ErrorIs(t, ExecAtCommit(ctx, nil, `select 1`), ErrInvalid)
	assert.ErrorIs(t, ExecAtCommit(ctx, tx, ""), ErrInvalid)
}
