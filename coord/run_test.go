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

// A step's error may wrap the sentinels Run returns for a saga that is not
// in the log (a nested Run's ErrNotStarted, say): it is still the step's
// failure, compensated, not a run that logged nothing.
func TestRun_AStepErrorWrappingRunsOwnSentinelsIsTheStepsFailure(t *testing.T) {
	tests := []struct {
		failStep string
		wraps    error
	}{
		{stepCreateUser, ErrNotStarted}, // the first TxAction, which carries the record
		{stepCreateUser, ErrOutcomeUnknown},
		{stepWelcome, ErrNotStarted},
		{stepWelcome, ErrOutcomeUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.failStep+"/"+tt.wraps.Error(), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			c, h := f.coordinator(t, Options{})
			ctx := context.Background()
			f.wraps = tt.wraps
			f.fail(tt.failStep, false, -1)

			info, err := h.Run(ctx, "u1", &regState{UserID: "u1", Email: "u1@example.com"})
			require.ErrorIs(t, err, ErrCompensated)
			assert.ErrorIs(t, err, errInjected, "the step's error stays reachable")
			assert.Equal(t, StatusCompensated, info.Status)
			assert.Equal(t, noneLeft, f.effects(t, "u1"))

			got, err := c.Get(ctx, "u1")
			require.NoError(t, err, "the saga is in the log")
			assert.Equal(t, StatusCompensated, got.Status)
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

// allCalls returns the number of calls of every action and compensation of
// the saga id.
func (f *fixture) allCalls(id string) map[string]int {
	calls := map[string]int{}
	for _, step := range []string{stepCreateUser, stepWelcome, stepActivate, stepCache} {
		for _, comp := range []bool{false, true} {
			calls[opName(step, comp)] = f.callCount(id, step, comp)
		}
	}
	return calls
}

func TestRun_ExistingIDReturnsItsOutcomeAndCallsNoStep(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(f *fixture)
		status  Status
		wantErr error
		want    effects
	}{
		{"succeeded", func(*fixture) {}, StatusSucceeded, nil, allApplied},
		{"compensated", func(f *fixture) { f.fail(stepActivate, false, -1) }, StatusCompensated, ErrCompensated, noneLeft},
		{"compensated at its first step", func(f *fixture) { f.fail(stepCreateUser, false, -1) }, StatusCompensated, ErrCompensated, noneLeft},
		{"failed", func(f *fixture) {
			f.fail(stepActivate, false, -1)
			f.fail(stepWelcome, true, -1)
		}, StatusFailed, ErrFailed, effects{User: true, Conversation: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			_, h := f.coordinator(t, Options{})
			ctx := context.Background()
			tt.setup(f)

			first, err := h.Run(ctx, "u1", &regState{UserID: "u1", Email: "u1@example.com"})
			if tt.wantErr == nil {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, tt.wantErr)
			}
			calls := f.allCalls("u1")

			for range 2 {
				// The first step, a TxAction, carries the record's insert in
				// its transaction: its code is called, and the insert finding
				// the saga refuses the transaction before the step's
				// statement runs. No other step is called.
				calls[stepCreateUser]++
				again := regState{UserID: "u1", Email: "other@example.com"}
				info, err := h.Run(ctx, "u1", &again)
				if tt.wantErr == nil {
					require.NoError(t, err)
				} else {
					require.ErrorIs(t, err, tt.wantErr)
				}
				assert.Equal(t, tt.status, info.Status)
				assert.Equal(t, first.UpdatedAt, info.UpdatedAt)
				assert.Equal(t, "u1@example.com", again.Email, "state is the logged one")
				assert.Equal(t, calls, f.allCalls("u1"), "no other step's code was called again")
				assert.Equal(t, tt.want, f.effects(t, "u1"))
			}
		})
	}
}

func TestRun_SameIDConcurrentlyCallsEachStepOnce(t *testing.T) {
	for _, firstTx := range []bool{true, false} {
		t.Run(fmt.Sprintf("firstStepTx=%v", firstTx), func(t *testing.T) {
			f := newFixture(t)
			c, err := New(context.Background(), f.pool, Options{})
			require.NoError(t, err)
			d := f.definition()
			if !firstTx {
				// The saga then starts with the MongoDB step.
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
			want := map[string]int{}
			for _, st := range d.steps {
				want[st.Name] = 1
				want[opName(st.Name, true)] = 0
			}
			got := f.allCalls("u1")
			for op := range got {
				if _, ok := want[op]; !ok {
					delete(got, op)
				}
			}
			if firstTx {
				// Each Run's first try carries the record's insert; the
				// inserts that find the saga refuse their transaction before
				// the step's statement runs (the users row is inserted once,
				// checked below).
				assert.GreaterOrEqual(t, got[stepCreateUser], 1)
				assert.LessOrEqual(t, got[stepCreateUser], runners)
				delete(got, stepCreateUser)
				delete(want, stepCreateUser)
			}
			assert.Equal(t, want, got, "each other step's code called once in all")
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

func TestRun_InfoCarriesTheRecordsTimestamps(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(f *fixture)
		wantErr error
	}{
		{"succeeded", func(*fixture) {}, nil},
		{"compensated", func(f *fixture) { f.fail(stepActivate, false, -1) }, ErrCompensated},
		{"failed", func(f *fixture) {
			f.fail(stepActivate, false, -1)
			f.fail(stepWelcome, true, -1)
		}, ErrFailed},
		{"incomplete", func(f *fixture) { f.fail(stepCache, false, -1) }, ErrIncomplete},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			c, h := f.coordinator(t, Options{})
			tt.setup(f)

			info, err := h.Run(context.Background(), "u1", &regState{UserID: "u1", Email: "u1@example.com"})
			if tt.wantErr == nil {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, tt.wantErr)
			}
			got, err := c.Get(context.Background(), "u1")
			require.NoError(t, err)
			require.False(t, got.CreatedAt.IsZero())
			assert.True(t, info.CreatedAt.Equal(got.CreatedAt), "CreatedAt %v, in the log %v", info.CreatedAt, got.CreatedAt)
			assert.True(t, info.UpdatedAt.Equal(got.UpdatedAt), "UpdatedAt %v, in the log %v", info.UpdatedAt, got.UpdatedAt)
			assert.False(t, info.UpdatedAt.Before(info.CreatedAt))
			assert.Equal(t, got, info, "Run's Info is the record in the log")
		})
	}
}
