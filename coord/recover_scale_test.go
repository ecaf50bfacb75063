package coord

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/polystore/polystore/internal/servicetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// backlogSizes are the backlogs TestRecover_BacklogOfAbandonedSagas
// recovers: 300 by default, or the comma-separated sizes of
// COORD_RECOVERY_BACKLOG (see README.md, Recovery at scale). The recovering
// coordinator has COORD_RECOVERY_WORKERS workers (default: the default);
// the log holds COORD_RECOVERY_FINISHED finished and dead sagas besides
// (default none).
func backlogSizes(t *testing.T) []int {
	env := os.Getenv("COORD_RECOVERY_BACKLOG")
	if env == "" {
		return []int{300}
	}
	var sizes []int
	for _, s := range strings.Split(env, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		require.NoError(t, err, "COORD_RECOVERY_BACKLOG")
		sizes = append(sizes, n)
	}
	return sizes
}

type oneStep struct {
	ID string `json:"id"`
}

// abandonIn leaves n sagas of one Action step in the log of pool, as Runs
// cut before their step by a process dying there leave them: inserted,
// running, their lease expired. It returns the definition, whose action
// counts its calls per saga in calls.
func abandonIn(t *testing.T, ctx context.Context, pool *pgxpool.Pool, n int, calls *sync.Map) *Definition[oneStep] {
	t.Helper()
	def := Define("one-step", Step[oneStep]{
		Name: "act",
		Action: func(_ context.Context, s *oneStep) error {
			v, _ := calls.LoadOrStore(s.ID, new(int))
			callsMu.Lock()
			*v.(*int)++
			callsMu.Unlock()
			return nil
		},
	})
	crashed, err := New(ctx, pool, Options{Owner: "crashed", LeaseDuration: time.Millisecond, crashAt: func(p crashPoint) bool {
		return p.Stage == stageBeforeAction
	}})
	require.NoError(t, err)
	h, err := Register(crashed, def)
	require.NoError(t, err)
	var wg sync.WaitGroup
	const writers = 8
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += writers {
				id := fmt.Sprintf("s%06d", i)
				_, err := h.Run(ctx, id, &oneStep{ID: id})
				assert.ErrorIs(t, err, errCrashed)
			}
		}()
	}
	wg.Wait()
	require.NoError(t, crashed.Close())
	time.Sleep(5 * time.Millisecond) // the last lease expires
	return def
}

var callsMu sync.Mutex

// TestRecover_BacklogOfAbandonedSagas recovers a backlog of abandoned
// sagas with one coordinator's Recover: each is taken once and ends
// succeeded, its step run once. It logs the rate (the figures of README.md).
func TestRecover_BacklogOfAbandonedSagas(t *testing.T) {
	for _, n := range backlogSizes(t) {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			ctx := context.Background()
			pool := servicetest.Postgres(t)
			// Finished and dead sagas the log holds besides the backlog.
			if done, _ := strconv.Atoi(os.Getenv("COORD_RECOVERY_FINISHED")); done > 0 {
				require.NoError(t, Migrate(ctx, pool))
				_, err := pool.Exec(ctx, `insert into coord_saga (id, name, status, step, state, lease_expires)
					select 'f' || i, 'one-step', case when i % 10 = 0 then 'dead' else 'succeeded' end, 1, '{}', now() - interval '1 hour'
					from generate_series(1, $1) i`, done)
				require.NoError(t, err)
			}
			var calls sync.Map
			def := abandonIn(t, ctx, pool, n, &calls)

			workers, _ := strconv.Atoi(os.Getenv("COORD_RECOVERY_WORKERS"))
			c, err := New(ctx, pool, Options{Owner: "recoverer", RecoveryWorkers: workers})
			require.NoError(t, err)
			_, err = Register(c, def)
			require.NoError(t, err)
			start := time.Now()
			taken, err := c.Recover(ctx)
			elapsed := time.Since(start)
			require.NoError(t, err)
			load, _ := os.ReadFile("/proc/loadavg")
			t.Logf("recovered %d abandoned sagas with %d workers in %v: %.0f sagas/s (load average %s)",
				taken, c.opts.RecoveryWorkers, elapsed.Round(time.Millisecond), float64(taken)/elapsed.Seconds(), strings.TrimSpace(string(load)))

			assert.Equal(t, n, taken)
			var succeeded int
			require.NoError(t, pool.QueryRow(ctx, `select count(*) from coord_saga where status = 'succeeded' and id like 's%'`).Scan(&succeeded))
			assert.Equal(t, n, succeeded)
			once := 0
			calls.Range(func(_, v any) bool {
				if *v.(*int) == 1 {
					once++
				}
				return true
			})
			assert.Equal(t, n, once, "sagas whose step ran exactly once")
		})
	}
}

// TestRecover_ClaimIsAnOrderedIndexScanWhateverTheBacklog explains the claim
// against a log of thousands of claimable sagas of two definitions, with
// finished and dead ones among them, with statistics gathered when the log
// was empty (as after an outage that filled it faster than autovacuum
// analyses it: the case measured in issue 15) and with fresh ones. The plan
// reads a partial index of the claimable sagas (coord_saga_claim, or
// coord_saga_lease when the definition's share makes that as cheap) in
// lease order and stops at the limit, with no sort and no bitmap of the
// candidates; the update then finds the claimed rows by key. (The claim
// before it was planned, on stale statistics, as a bitmap of every
// candidate and a sort, for each saga claimed.)
func TestRecover_ClaimIsAnOrderedIndexScanWhateverTheBacklog(t *testing.T) {
	for _, stats := range []string{"of an empty log", "fresh"} {
		t.Run("statistics "+stats, func(t *testing.T) {
			ctx := context.Background()
			pool := servicetest.Postgres(t)
			_, err := New(ctx, pool, Options{})
			require.NoError(t, err)
			_, err = pool.Exec(ctx, `alter table coord_saga set (autovacuum_enabled = false)`)
			require.NoError(t, err)
			_, err = pool.Exec(ctx, `analyze coord_saga`)
			require.NoError(t, err)
			_, err = pool.Exec(ctx, `insert into coord_saga (id, name, status, step, state, lease_expires)
				select 's' || i, case when i % 2 = 0 then 'a' else 'b' end,
					case when i % 5 = 0 then 'succeeded' when i % 7 = 0 then 'dead' else 'running' end,
					0, '{}', now() - i * interval '1 millisecond'
				from generate_series(1, 20000) i`)
			require.NoError(t, err)
			if stats == "fresh" {
				_, err = pool.Exec(ctx, `analyze coord_saga`)
				require.NoError(t, err)
			}

			rows, err := pool.Query(ctx, "explain "+claimSQL, "token", int64(1000), "a", time.Now(), 4, 10)
			require.NoError(t, err)
			plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
			require.NoError(t, err)
			text := strings.Join(plan, "\n")
			t.Log("\n" + text)
			assert.Regexp(t, `Limit[^\n]*\n\s*->  LockRows[^\n]*\n\s*->  Index Scan using coord_saga_(claim|lease) on coord_saga `, text,
				"an ordered scan of a claimable-only index, stopped by the limit")
			assert.Regexp(t, `Index Scan on coord_saga_pkey|Index Scan using coord_saga_pkey`, text, "the update finds the claimed rows by key")
			assert.NotContains(t, text, "Sort")
			assert.NotContains(t, text, "BitmapAnd")
			assert.NotRegexp(t, `Bitmap Index Scan on coord_saga_(lease|claim|name_created|status_created)`, text)
			assert.NotContains(t, text, "Seq Scan")
		})
	}
}

// TestRecover_TakesEachSagaAtMostOncePerCall recovers a saga whose
// retriable step always fails, so that each run gives it back to recovery
// at once: one Recover call takes it once, not again and again, and the
// next call takes it again. (A call claims only sagas whose lease expired
// before it began, and every lease a claim or a release sets ends after.)
// With one worker, the call's next claim comes after the release.
func TestRecover_TakesEachSagaAtMostOncePerCall(t *testing.T) {
	for _, workers := range []int{1, 4} {
		t.Run(fmt.Sprintf("workers=%d", workers), func(t *testing.T) {
			ctx := context.Background()
			pool := servicetest.Postgres(t)
			var mu sync.Mutex
			tries := 0
			def := Define("always-retry", Step[oneStep]{
				Name:   "pivot",
				Kind:   Pivot,
				Action: func(context.Context, *oneStep) error { return nil },
			}, Step[oneStep]{
				Name: "flaky",
				Kind: Retriable,
				Action: func(context.Context, *oneStep) error {
					mu.Lock()
					defer mu.Unlock()
					tries++
					return errInjected
				},
				Retry: RetryPolicy{Attempts: 1, Backoff: time.Millisecond, MaxBackoff: time.Millisecond},
			})
			c, err := New(ctx, pool, Options{RecoveryWorkers: workers})
			require.NoError(t, err)
			h, err := Register(c, def)
			require.NoError(t, err)
			_, err = h.Run(ctx, "s1", &oneStep{ID: "s1"})
			require.ErrorIs(t, err, ErrIncomplete)
			time.Sleep(5 * time.Millisecond) // the release's lease of at most 1ms expires

			for call := 1; call <= 2; call++ {
				n, err := c.Recover(ctx)
				require.NoError(t, err)
				assert.Equal(t, 1, n, "call %d takes the saga once", call)
				mu.Lock()
				assert.Equal(t, 1+call, tries, "the Run's try and one per call")
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
			info, err := c.Get(ctx, "s1")
			require.NoError(t, err)
			assert.Equal(t, StatusRunning, info.Status)
		})
	}
}
