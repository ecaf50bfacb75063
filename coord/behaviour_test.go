package coord

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRun_ActionThatFailsAfterItsWriteIsCompensatedToo(t *testing.T) {
	f := newFixture(t)
	_, h := f.coordinator(t, Options{})
	f.failAfterWrite(stepWelcome, -1)

	_, err := h.Run(context.Background(), "u1", &regState{UserID: "u1", Email: "u1@example.com"})
	require.ErrorIs(t, err, ErrCompensated)
	assert.Equal(t, 1, f.callCount("u1", stepWelcome, true), "the failed step's own compensation ran")
	assert.Equal(t, noneLeft, f.effects(t, "u1"))
}

func TestRun_StepTimeoutFailsTheTry(t *testing.T) {
	f := newFixture(t)
	c, err := New(context.Background(), f.pool, Options{})
	require.NoError(t, err)
	type S struct{}
	tries := 0
	h, err := Register(c, Define("slow",
		Step[S]{
			Name:  "slow",
			Retry: RetryPolicy{Attempts: 2, Backoff: time.Millisecond},
			// Waits for its deadline: only the step's timeout ends it.
			Action: func(ctx context.Context, _ *S) error {
				tries++
				<-ctx.Done()
				return ctx.Err()
			},
			Timeout: 20 * time.Millisecond,
		},
	))
	require.NoError(t, err)

	_, err = h.Run(context.Background(), "s1", &S{})
	require.ErrorIs(t, err, ErrCompensated)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Equal(t, 2, tries)
}

func TestRun_NonRetryableErrorIsTriedOnce(t *testing.T) {
	f := newFixture(t)
	c, err := New(context.Background(), f.pool, Options{})
	require.NoError(t, err)
	type S struct{}
	errPermanent := errors.New("permanent")
	tries := 0
	h, err := Register(c, Define("permanent",
		Step[S]{
			Name:   "a",
			Retry:  RetryPolicy{Attempts: 5, Backoff: time.Millisecond, Retryable: func(err error) bool { return !errors.Is(err, errPermanent) }},
			Action: func(context.Context, *S) error { tries++; return errPermanent },
		},
	))
	require.NoError(t, err)

	_, err = h.Run(context.Background(), "s1", &S{})
	require.ErrorIs(t, err, ErrCompensated)
	assert.ErrorIs(t, err, errPermanent)
	assert.Equal(t, 1, tries)
}

func TestRun_CancelledContextLeavesTheSagaToRecovery(t *testing.T) {
	f := newFixture(t)
	c, err := New(context.Background(), f.pool, Options{})
	require.NoError(t, err)
	type S struct{}
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	calls := 0
	h, err := Register(c, Define("interrupted",
		Step[S]{Name: "a", Action: func(context.Context, *S) error { return nil }},
		Step[S]{Name: "b", Action: func(sctx context.Context, _ *S) error {
			mu.Lock()
			calls++
			first := calls == 1
			mu.Unlock()
			if first {
				cancel() // the caller gives up while the step runs
				<-sctx.Done()
				return sctx.Err()
			}
			return nil
		}},
	))
	require.NoError(t, err)

	info, err := h.Run(ctx, "s1", &S{})
	require.ErrorIs(t, err, ErrIncomplete)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, StatusRunning, info.Status)

	// Run released the lease: recovery takes the saga without waiting.
	n, err := c.Recover(context.Background())
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	got, err := c.Get(context.Background(), "s1")
	require.NoError(t, err)
	assert.Equal(t, StatusSucceeded, got.Status)
}

func TestRun_LongStepRenewsItsLease(t *testing.T) {
	f := newFixture(t)
	// Renewed every third of the lease: generous, so that a loaded machine
	// does not miss a renewal.
	const lease = 2 * time.Second
	runner, err := New(context.Background(), f.pool, Options{Owner: "runner", LeaseDuration: lease})
	require.NoError(t, err)
	other, err := New(context.Background(), f.pool, Options{Owner: "other", LeaseDuration: lease})
	require.NoError(t, err)

	type S struct{}
	release := make(chan struct{})
	running := make(chan struct{})
	def := func() *Definition[S] {
		return Define("long",
			Step[S]{Name: "long", Action: func(context.Context, *S) error {
				close(running)
				<-release
				return nil
			}},
		)
	}
	h, err := Register(runner, def())
	require.NoError(t, err)
	_, err = Register(other, Define("long", Step[S]{Name: "long", Action: func(context.Context, *S) error {
		t.Error("the saga was taken over while its step was running")
		return nil
	}}))
	require.NoError(t, err)

	done := runAsync(h, "s1", &S{})
	<-running
	// For two leases, another coordinator keeps trying to recover it.
	start := time.Now()
	for time.Since(start) < 2*lease {
		n, err := other.Recover(context.Background())
		require.NoError(t, err)
		require.Zero(t, n)
		time.Sleep(lease / 10) // pacing the attempts, not waiting for an event
	}
	close(release)
	require.NoError(t, <-done)
}

func TestHooks_ReportEveryStep(t *testing.T) {
	f := newFixture(t)
	var mu sync.Mutex
	var events []string
	record := func(kind string) func(context.Context, StepEvent) {
		return func(_ context.Context, e StepEvent) {
			mu.Lock()
			defer mu.Unlock()
			s := kind + " " + e.Step
			if e.Compensation {
				s += " (compensation)"
			}
			events = append(events, s)
		}
	}
	_, h := f.coordinator(t, Options{Hooks: Hooks{
		StepStarted:     record("started"),
		StepSucceeded:   record("succeeded"),
		StepFailed:      record("failed"),
		StepCompensated: record("compensated"),
	}})
	f.fail(stepActivate, false, -1)

	_, err := h.Run(context.Background(), "u1", &regState{UserID: "u1", Email: "u1@example.com"})
	require.ErrorIs(t, err, ErrCompensated)
	assert.Equal(t, []string{
		"started create-user", "succeeded create-user",
		"started welcome-conversation", "succeeded welcome-conversation",
		"started activate-user", "failed activate-user",
		"started activate-user", "failed activate-user",
		"started activate-user", "failed activate-user",
		"started welcome-conversation (compensation)", "compensated welcome-conversation (compensation)",
		"started create-user (compensation)", "compensated create-user (compensation)",
	}, events)
}

func TestSlogHooks_LogEachEventWithTheSaga(t *testing.T) {
	var buf bytes.Buffer
	hooks := SlogHooks(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	ev := StepEvent{SagaID: "s1", Saga: "register-user", Step: "create-user", Attempt: 2}
	ctx := context.Background()
	hooks.StepStarted(ctx, ev)
	hooks.StepSucceeded(ctx, ev)
	ev.Err = errInjected
	hooks.StepFailed(ctx, ev)
	ev.Compensation = true
	hooks.StepCompensated(ctx, ev)
	hooks.RecoverFailed(ctx, errInjected)

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 5)
	assert.Contains(t, lines[0], "level=DEBUG")
	assert.Contains(t, lines[0], "saga_id=s1")
	assert.Contains(t, lines[1], "level=INFO")
	assert.Contains(t, lines[1], "step=create-user")
	assert.Contains(t, lines[2], "level=WARN")
	assert.Contains(t, lines[2], `error="injected failure"`)
	assert.Contains(t, lines[3], "compensation=true")
	assert.Contains(t, lines[4], "level=ERROR")
}

func TestRun_SameIDWhileRunningWaitsForTheOutcome(t *testing.T) {
	f := newFixture(t)
	c, err := New(context.Background(), f.pool, Options{})
	require.NoError(t, err)
	type S struct{ N int }
	release := make(chan struct{})
	running := make(chan struct{})
	h, err := Register(c, Define("blocking",
		Step[S]{Name: "a", Action: func(_ context.Context, s *S) error {
			close(running) // a second call would panic: the step runs once
			<-release
			s.N = 42
			return nil
		}},
	))
	require.NoError(t, err)

	first := runAsync(h, "s1", &S{})
	<-running

	// A caller that stops waiting gets ErrIncomplete; the saga goes on.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	info, err := h.Run(ctx, "s1", &S{})
	require.ErrorIs(t, err, ErrIncomplete)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Equal(t, StatusRunning, info.Status, "the record as the waiting Run last read it")
	assert.False(t, info.CreatedAt.IsZero())
	assert.False(t, info.UpdatedAt.IsZero())

	var got S
	second := runAsync(h, "s1", &got)
	close(release)
	require.NoError(t, <-first)
	require.NoError(t, <-second)
	assert.Equal(t, 42, got.N, "the waiting Run gets the state in the log")
}

func TestRun_SameIDTakesOverASagaWhoseCoordinatorDied(t *testing.T) {
	f := newFixture(t)
	_, crashed := f.coordinator(t, Options{LeaseDuration: 200 * time.Millisecond, crashAt: func(p crashPoint) bool {
		return p.Stage == stageAfterLog && p.Step == stepWelcome
	}})
	_, err := crashed.Run(context.Background(), "u1", &regState{UserID: "u1", Email: "u1@example.com"})
	require.ErrorIs(t, err, errCrashed)

	_, h := f.coordinator(t, Options{})
	info, err := h.Run(context.Background(), "u1", &regState{UserID: "u1", Email: "u1@example.com"})
	require.NoError(t, err)
	assert.Equal(t, StatusSucceeded, info.Status)
	assert.Equal(t, allApplied, f.effects(t, "u1"))
	assert.Equal(t, 1, f.callCount("u1", stepWelcome, false))
}

func TestRun_IDOfAnotherDefinitionReturnsErrInvalid(t *testing.T) {
	f := newFixture(t)
	c, h := f.coordinator(t, Options{})
	_, err := h.Run(context.Background(), "u1", &regState{UserID: "u1", Email: "u1@example.com"})
	require.NoError(t, err)

	type S struct{}
	other, err := Register(c, Define("other", Step[S]{Name: "a", Action: func(context.Context, *S) error { return nil }}))
	require.NoError(t, err)
	_, err = other.Run(context.Background(), "u1", &S{})
	assert.ErrorIs(t, err, ErrInvalid)
}

func TestRun_StepThatBreaksTheStateIsCompensated(t *testing.T) {
	f := newFixture(t)
	c, err := New(context.Background(), f.pool, Options{})
	require.NoError(t, err)
	type S struct {
		Undone bool `json:"undone"`
		Bad    any  `json:"bad,omitempty"`
	}
	breakState := func(_ context.Context, s *S) error { s.Bad = make(chan int); return nil }
	tests := map[string]Step[S]{
		"action": {Name: "last", Action: breakState, Compensate: func(_ context.Context, s *S) error {
			s.Undone = true
			return nil
		}},
		"tx action": {Name: "last", TxAction: func(ctx context.Context, _ Tx, s *S) error { return breakState(ctx, s) }},
	}
	for name, last := range tests {
		t.Run(name, func(t *testing.T) {
			h, err := Register(c, Define("breaks-state-"+name,
				Step[S]{Name: "first", Action: func(context.Context, *S) error { return nil }},
				last,
			))
			require.NoError(t, err)
			var s S
			info, err := h.Run(context.Background(), name, &s)
			require.ErrorIs(t, err, ErrCompensated)
			assert.ErrorIs(t, err, ErrInvalid)
			assert.Equal(t, StatusCompensated, info.Status)
			assert.Equal(t, last.Action != nil, s.Undone, "an Action that ran is compensated")
		})
	}
}
