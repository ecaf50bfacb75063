package coord

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRun_HappyPathAppliesEveryStep(t *testing.T) {
	f := newFixture(t)
	c, h := f.coordinator(t, Options{})
	ctx := context.Background()

	state := regState{UserID: "u1", Email: "u1@example.com"}
	info, err := h.Run(ctx, "u1", &state)
	require.NoError(t, err)
	assert.Equal(t, StatusSucceeded, info.Status)
	assert.Equal(t, allApplied, f.effects(t, "u1"))

	got, err := c.Get(ctx, "u1")
	require.NoError(t, err)
	assert.Equal(t, StatusSucceeded, got.Status)
	assert.Equal(t, 4, got.Step)
	assert.Empty(t, got.Error)
}

func TestRun_FailureAtEachStepCompensatesEveryEarlierEffect(t *testing.T) {
	tests := []struct {
		failStep   string
		wantStatus Status
		wantErr    error
		want       effects
	}{
		{stepCreateUser, StatusCompensated, ErrCompensated, noneLeft},
		{stepWelcome, StatusCompensated, ErrCompensated, noneLeft},
		{stepActivate, StatusCompensated, ErrCompensated, noneLeft},
		// After the pivot the saga only goes forward: Run gives up for now,
		// nothing is compensated, recovery retries the step.
		{stepCache, StatusRunning, ErrIncomplete, effects{User: true, Active: true, Conversation: true}},
	}
	for _, tt := range tests {
		t.Run(tt.failStep, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			c, h := f.coordinator(t, Options{})
			ctx := context.Background()
			f.fail(tt.failStep, false, -1)

			state := regState{UserID: "u1", Email: "u1@example.com"}
			info, err := h.Run(ctx, "u1", &state)
			require.ErrorIs(t, err, tt.wantErr)
			assert.ErrorIs(t, err, errInjected, "the step's error stays reachable")
			assert.Equal(t, tt.wantStatus, info.Status)
			assert.Equal(t, tt.want, f.effects(t, "u1"))
			assert.Equal(t, fastRetry.Attempts, f.callCount("u1", tt.failStep, false), "tried as the policy says")

			got, err := c.Get(ctx, "u1")
			require.NoError(t, err)
			assert.Equal(t, tt.wantStatus, got.Status)
			assert.Contains(t, got.Error, errInjected.Error())
		})
	}
}

func TestRun_RetriableStepFinishedByRecoveryOnceItSucceeds(t *testing.T) {
	f := newFixture(t)
	c, h := f.coordinator(t, Options{LeaseDuration: 200 * time.Millisecond})
	ctx := context.Background()
	f.fail(stepCache, false, fastRetry.Attempts)

	_, err := h.Run(ctx, "u1", &regState{UserID: "u1", Email: "u1@example.com"})
	require.ErrorIs(t, err, ErrIncomplete)

	require.Eventually(t, func() bool {
		_, err := c.Recover(ctx)
		require.NoError(t, err)
		info, err := c.Get(ctx, "u1")
		require.NoError(t, err)
		return info.Status == StatusSucceeded
	}, 10*time.Second, 20*time.Millisecond)
	assert.Equal(t, allApplied, f.effects(t, "u1"))
}

func TestRun_CompensationThatFailsTwiceThenSucceedsEndsCompensated(t *testing.T) {
	f := newFixture(t)
	_, h := f.coordinator(t, Options{})
	f.fail(stepActivate, false, -1)
	f.fail(stepWelcome, true, 2)

	info, err := h.Run(context.Background(), "u1", &regState{UserID: "u1", Email: "u1@example.com"})
	require.ErrorIs(t, err, ErrCompensated)
	assert.Equal(t, StatusCompensated, info.Status)
	assert.Equal(t, 3, f.callCount("u1", stepWelcome, true))
	assert.Equal(t, noneLeft, f.effects(t, "u1"))
}

func TestRun_CompensationThatAlwaysFailsEndsFailedAndListed(t *testing.T) {
	f := newFixture(t)
	c, h := f.coordinator(t, Options{})
	ctx := context.Background()
	f.fail(stepActivate, false, -1)
	f.fail(stepWelcome, true, -1)

	info, err := h.Run(ctx, "u1", &regState{UserID: "u1", Email: "u1@example.com"})
	require.ErrorIs(t, err, ErrFailed)
	assert.ErrorIs(t, err, errInjected)
	assert.NotErrorIs(t, err, ErrCompensated)
	assert.Equal(t, StatusFailed, info.Status)
	assert.Equal(t, stepWelcome, info.StepName)
	// The conversation stays, and the user row: the compensations below a
	// failed one do not run, so a person finds the saga where it stopped.
	assert.Equal(t, effects{User: true, Conversation: true}, f.effects(t, "u1"))

	failed, err := c.Failed(ctx)
	require.NoError(t, err)
	require.Len(t, failed, 1)
	assert.Equal(t, "u1", failed[0].ID)
	assert.Equal(t, StatusFailed, failed[0].Status)
	assert.Equal(t, stepWelcome, failed[0].StepName)
	assert.Contains(t, failed[0].Error, errInjected.Error())
	assert.Equal(t, fastRetry.Attempts, failed[0].Attempts)

	// Recovery leaves failed sagas alone.
	n, err := c.Recover(ctx)
	require.NoError(t, err)
	assert.Zero(t, n)
}

func TestRun_ExistingIDReturnsItsOutcomeAndRunsNothingAgain(t *testing.T) {
	f := newFixture(t)
	_, h := f.coordinator(t, Options{})
	ctx := context.Background()

	_, err := h.Run(ctx, "u1", &regState{UserID: "u1", Email: "u1@example.com"})
	require.NoError(t, err)

	again := regState{UserID: "u1", Email: "other@example.com"}
	info, err := h.Run(ctx, "u1", &again)
	require.NoError(t, err)
	assert.Equal(t, StatusSucceeded, info.Status)
	assert.Equal(t, "u1@example.com", again.Email, "state is the logged one")
	// The second Run's TxAction may start, but the insertion of the saga's
	// record, in its transaction, fails and rolls it back.
	assert.Equal(t, allApplied, f.effects(t, "u1"))
	for _, step := range []string{stepWelcome, stepActivate, stepCache} {
		assert.Equal(t, 1, f.callCount("u1", step, false), step)
	}

	f.fail(stepActivate, false, -1)
	_, err = h.Run(ctx, "u2", &regState{UserID: "u2", Email: "u2@example.com"})
	require.ErrorIs(t, err, ErrCompensated)
	_, err = h.Run(ctx, "u2", &regState{UserID: "u2", Email: "u2@example.com"})
	assert.ErrorIs(t, err, ErrCompensated, "a compensated saga stays compensated")
	assert.Equal(t, fastRetry.Attempts, f.callCount("u2", stepActivate, false))
}

func TestRun_SameIDConcurrentlyExecutesOnce(t *testing.T) {
	for _, firstTx := range []bool{true, false} {
		t.Run(fmt.Sprintf("firstStepTx=%v", firstTx), func(t *testing.T) {
			f := newFixture(t)
			c, err := New(context.Background(), f.pool, Options{})
			require.NoError(t, err)
			d := f.definition()
			if !firstTx {
				// The saga then starts with the MongoDB step, so Run writes
				// the record before any step.
				d = Define(d.name, d.steps[1:]...)
			}
			h, err := Register(c, d)
			require.NoError(t, err)

			const runners = 8
			start := make(chan struct{})
			var wg sync.WaitGroup
			infos := make([]Info, runners)
			errs := make([]error, runners)
			for i := range runners {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					infos[i], errs[i] = h.Run(context.Background(), "u1", &regState{UserID: "u1", Email: "u1@example.com"})
				}()
			}
			close(start)
			wg.Wait()
			for i := range runners {
				require.NoError(t, errs[i])
				assert.Equal(t, StatusSucceeded, infos[i].Status)
			}
			assert.Equal(t, 1, f.callCount("u1", stepWelcome, false), "the MongoDB action ran once")
			assert.Equal(t, 1, f.callCount("u1", stepCache, false), "the Redis action ran once")
			e := f.effects(t, "u1")
			assert.True(t, e.Conversation && e.Cached)
			assert.Equal(t, firstTx, e.User && e.Active)
		})
	}
}

func TestRun_BadInputReturnsErrInvalid(t *testing.T) {
	f := newFixture(t)
	c, h := f.coordinator(t, Options{})
	ctx := context.Background()

	_, err := h.Run(ctx, "", &regState{})
	assert.ErrorIs(t, err, ErrInvalid)
	_, err = h.Run(ctx, "u1", nil)
	assert.ErrorIs(t, err, ErrInvalid)

	type unencodable struct{ C chan int }
	hb, err := Register(c, Define("bad-state", Step[unencodable]{Name: "a", Action: func(context.Context, *unencodable) error { return nil }}))
	require.NoError(t, err)
	_, err = hb.Run(ctx, "x", &unencodable{})
	assert.ErrorIs(t, err, ErrInvalid)

	_, err = c.Get(ctx, "missing")
	assert.ErrorIs(t, err, ErrNotFound)

	require.NoError(t, c.Close())
	_, err = h.Run(ctx, "u9", &regState{UserID: "u9"})
	assert.ErrorIs(t, err, ErrClosed)
	assert.ErrorIs(t, c.Start(ctx), ErrClosed)
}
