package coord

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// failedSaga runs the registration saga id into the failed status: the
// MongoDB step fails, and so does its compensation, until cleared.
func failedSaga(t *testing.T, f *fixture, h *Handle[regState], id string) {
	t.Helper()
	f.fail(stepWelcome, false, -1)
	f.fail(stepWelcome, true, -1)
	_, err := h.Run(context.Background(), id, &regState{UserID: id, Email: id + "@example.com"})
	require.ErrorIs(t, err, ErrFailed)
	f.fail(stepWelcome, false, 0)
	f.fail(stepWelcome, true, 0)
}

func eventsOf(t *testing.T, c *Coordinator, id string, kind EventKind) []Event {
	t.Helper()
	evs, err := c.History(context.Background(), id)
	require.NoError(t, err)
	var out []Event
	for _, ev := range evs {
		if ev.Kind == kind {
			out = append(out, ev)
		}
	}
	return out
}

func TestRetry_FailedSagaCompensatesFromWhereItStopped(t *testing.T) {
	f := newFixture(t)
	c, h := f.coordinator(t, Options{})
	failedSaga(t, f, h, "u1")
	require.Equal(t, 3, f.callCount("u1", stepWelcome, true))
	require.Equal(t, effects{User: true}, f.effects(t, "u1"), "the user's row is left for the operator")

	info, err := c.Retry(context.Background(), "u1", "alice", "mongo is back")
	require.NoError(t, err)
	assert.Equal(t, StatusCompensated, info.Status)
	assert.Equal(t, noneLeft, f.effects(t, "u1"))
	assert.Equal(t, 4, f.callCount("u1", stepWelcome, true), "one more try of the compensation that had failed")
	assert.Equal(t, 1, f.callCount("u1", stepCreateUser, true))

	retried := eventsOf(t, c, "u1", EventRetried)
	require.Len(t, retried, 1)
	assert.Equal(t, "alice", retried[0].Actor)
	assert.Equal(t, "mongo is back", retried[0].Reason)
	assert.Equal(t, stepWelcome, retried[0].StepName)
}

// TestRetry_RacingARecoveryAndASecondRetryRunsOnce starts two Retries of
// one failed saga while another coordinator keeps recovering: exactly one
// Retry runs it, and each compensation runs once.
func TestRetry_RacingARecoveryAndASecondRetryRunsOnce(t *testing.T) {
	f := newFixture(t)
	c1, h := f.coordinator(t, Options{Owner: "one"})
	failedSaga(t, f, h, "u1")
	c2, _ := f.coordinator(t, Options{Owner: "two"})

	start := make(chan struct{})
	errs := make(chan error, 2)
	var wg sync.WaitGroup
	for _, c := range []*Coordinator{c1, c2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, err := c.Retry(context.Background(), "u1", "alice", "race")
			errs <- err
		}()
	}
	stop := make(chan struct{})
	recovered := make(chan error, 1)
	go func() {
		<-start
		for {
			select {
			case <-stop:
				recovered <- nil
				return
			default:
			}
			if _, err := c2.Recover(context.Background()); err != nil {
				recovered <- err
				return
			}
		}
	}()
	close(start)
	wg.Wait()
	close(stop)
	require.NoError(t, <-recovered)
	close(errs)

	var ok, refused int
	for err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, ErrWrongStatus):
			refused++
		default:
			t.Errorf("unexpected error: %v", err)
		}
	}
	assert.Equal(t, 1, ok, "one Retry runs the saga")
	assert.Equal(t, 1, refused, "the other finds it compensating or compensated")
	info, err := c1.Get(context.Background(), "u1")
	require.NoError(t, err)
	assert.Equal(t, StatusCompensated, info.Status)
	assert.Equal(t, 4, f.callCount("u1", stepWelcome, true), "3 failed tries, then one")
	assert.Equal(t, 1, f.callCount("u1", stepCreateUser, true))
	assert.Equal(t, noneLeft, f.effects(t, "u1"))
	assert.Len(t, eventsOf(t, c1, "u1", EventRetried), 1)
	assert.Empty(t, eventsOf(t, c1, "u1", EventRecovered))
}

func TestResolve_EndsAFailedSagaInItsOwnStatus(t *testing.T) {
	f := newFixture(t)
	c, h := f.coordinator(t, Options{})
	failedSaga(t, f, h, "u1")

	info, err := c.Resolve(context.Background(), "u1", "bob", "deleted the conversation by hand")
	require.NoError(t, err)
	assert.Equal(t, StatusResolved, info.Status)
	resolved := eventsOf(t, c, "u1", EventResolved)
	require.Len(t, resolved, 1)
	assert.Equal(t, "bob", resolved[0].Actor)
	assert.Equal(t, "deleted the conversation by hand", resolved[0].Reason)

	_, err = h.Run(context.Background(), "u1", &regState{UserID: "u1"})
	assert.ErrorIs(t, err, ErrResolved, "Run reports the resolved saga and runs nothing")
	assert.Equal(t, 3, f.callCount("u1", stepWelcome, true))
	failed, err := c.Failed(context.Background())
	require.NoError(t, err)
	assert.Empty(t, failed)
}

func TestOperatorActions_RefuseOtherStatuses(t *testing.T) {
	f := newFixture(t)
	c, h := f.coordinator(t, Options{})
	ctx := context.Background()
	_, err := h.Run(ctx, "ok", &regState{UserID: "ok", Email: "ok@example.com"})
	require.NoError(t, err)
	f.fail(stepWelcome, false, -1)
	_, err = h.Run(ctx, "comp", &regState{UserID: "comp", Email: "comp@example.com"})
	require.ErrorIs(t, err, ErrCompensated)
	f.fail(stepWelcome, false, 0)
	failedSaga(t, f, h, "failed")
	_, err = c.Resolve(ctx, "failed", "bob", "")
	require.NoError(t, err)

	tests := []struct {
		name string
		do   func() error
		want []error
	}{
		{"retry succeeded", func() error { _, err := c.Retry(ctx, "ok", "a", ""); return err }, []error{ErrWrongStatus}},
		{"retry compensated", func() error { _, err := c.Retry(ctx, "comp", "a", ""); return err }, []error{ErrWrongStatus}},
		{"retry resolved", func() error { _, err := c.Retry(ctx, "failed", "a", ""); return err }, []error{ErrWrongStatus}},
		{"resolve succeeded", func() error { _, err := c.Resolve(ctx, "ok", "a", ""); return err }, []error{ErrWrongStatus}},
		{"resolve resolved", func() error { _, err := c.Resolve(ctx, "failed", "a", ""); return err }, []error{ErrWrongStatus}},
		{"cancel succeeded", func() error { return c.Cancel(ctx, "ok", "a", "") }, []error{ErrWrongStatus}},
		{"retry unknown", func() error { _, err := c.Retry(ctx, "nope", "a", ""); return err }, []error{ErrNotFound}},
		{"resolve unknown", func() error { _, err := c.Resolve(ctx, "nope", "a", ""); return err }, []error{ErrNotFound}},
		{"cancel unknown", func() error { return c.Cancel(ctx, "nope", "a", "") }, []error{ErrNotFound}},
		{"no who", func() error { _, err := c.Resolve(ctx, "failed", "", ""); return err }, []error{ErrInvalid}},
		{"who with NUL", func() error { return c.Cancel(ctx, "ok", "a\x00", "") }, []error{ErrInvalid}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.do()
			for _, want := range tt.want {
				assert.ErrorIs(t, err, want)
			}
		})
	}
	assert.Empty(t, eventsOf(t, c, "ok", EventRetried))
}

// cancelState is the state of the blocking saga of the Cancel tests.
type cancelState struct {
	ID string `json:"id"`
}

func TestCancel_BeforeThePivotStopsAtTheStepBoundaryAndCompensates(t *testing.T) {
	f := newFixture(t)
	c, err := New(context.Background(), f.pool, Options{})
	require.NoError(t, err)
	entered, release := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	calls := map[string]int{}
	count := func(name string) {
		mu.Lock()
		defer mu.Unlock()
		calls[name]++
	}
	h, err := Register(c, Define("blocking",
		Step[cancelState]{
			Name: "one",
			TxAction: func(ctx context.Context, tx Tx, s *cancelState) error {
				_, err := tx.Exec(ctx, `insert into users (id, email) values ($1, 'x')`, s.ID)
				return err
			},
			TxCompensate: func(ctx context.Context, tx Tx, s *cancelState) error {
				count("one/compensate")
				_, err := tx.Exec(ctx, `delete from users where id = $1`, s.ID)
				return err
			},
		},
		Step[cancelState]{
			Name: "two",
			Action: func(ctx context.Context, s *cancelState) error {
				close(entered)
				<-release
				return nil
			},
			Compensate: func(ctx context.Context, s *cancelState) error { count("two/compensate"); return nil },
		},
		Step[cancelState]{Name: "pivot", Kind: Pivot, Action: func(ctx context.Context, s *cancelState) error { count("pivot"); return nil }},
	))
	require.NoError(t, err)

	done := runAsync(h, "c1", &cancelState{ID: "c1"})
	<-entered
	require.NoError(t, c.Cancel(context.Background(), "c1", "carol", "wrong account"))
	require.NoError(t, c.Cancel(context.Background(), "c1", "carol", "again"), "a second Cancel does nothing")
	close(release)
	err = <-done
	require.ErrorIs(t, err, ErrCompensated)
	assert.ErrorIs(t, err, ErrCancelled)

	mu.Lock()
	assert.Equal(t, map[string]int{"one/compensate": 1, "two/compensate": 1}, calls, "the pivot never ran")
	mu.Unlock()
	var n int
	require.NoError(t, f.pool.QueryRow(context.Background(), `select count(*) from users`).Scan(&n))
	assert.Zero(t, n)
	assert.Equal(t, []step{
		{EventCreated, "one", 0, false},
		{EventStarted, "one", 0, false},
		{EventSucceeded, "one", 1, false},
		{EventStarted, "two", 0, false},
		{EventCancelRequested, "two", 0, false},
		{EventSucceeded, "two", 1, false},
		{EventStarted, "pivot", 0, false},
		{EventCancelled, "pivot", 0, false},
		{EventCompensated, "two", 1, false},
		{EventCompensated, "one", 1, false},
	}, timeline(t, c, "c1"))
	requested := eventsOf(t, c, "c1", EventCancelRequested)
	require.Len(t, requested, 1)
	assert.Equal(t, "carol", requested[0].Actor)
	assert.Equal(t, "wrong account", requested[0].Reason)
}

func TestCancel_PastThePivotIsRefused(t *testing.T) {
	f := newFixture(t)
	c, h := f.coordinator(t, Options{})
	f.fail(stepCache, false, -1) // the retriable step after the pivot keeps failing
	_, err := h.Run(context.Background(), "u1", &regState{UserID: "u1", Email: "u1@example.com"})
	require.ErrorIs(t, err, ErrIncomplete)

	err = c.Cancel(context.Background(), "u1", "carol", "too late")
	assert.ErrorIs(t, err, ErrPastPivot)
	assert.ErrorIs(t, err, ErrWrongStatus)
	assert.Empty(t, eventsOf(t, c, "u1", EventCancelRequested))
}

// TestDeadLetter_ASagaThatCrashesEveryRecoveryStopsBeingRecovered crashes
// the run of one step on every takeover: after DeadLetterAfter takeovers
// without progress, the next one turns the saga dead; recovery then leaves
// it alone, and Retry runs it once the cause is fixed.
func TestDeadLetter_ASagaThatCrashesEveryRecoveryStopsBeingRecovered(t *testing.T) {
	f := newFixture(t)
	crashing := Options{Owner: "crashing", LeaseDuration: testLease, DeadLetterAfter: 2, crashAt: func(p crashPoint) bool {
		return p == crashPoint{stageBeforeAction, stepWelcome}
	}}
	c, h := f.coordinator(t, crashing)
	_, err := h.Run(context.Background(), "u1", &regState{UserID: "u1", Email: "u1@example.com"})
	require.ErrorIs(t, err, errCrashed)

	crashes := 0
	require.Eventually(t, func() bool {
		n, err := c.Recover(context.Background())
		if errors.Is(err, errCrashed) {
			crashes++
		} else {
			require.NoError(t, err)
		}
		info, err := c.Get(context.Background(), "u1")
		require.NoError(t, err)
		return n == 1 && info.Status == StatusDead
	}, 15*time.Second, 10*time.Millisecond)
	assert.Equal(t, 2, crashes, "two takeovers without progress, then dead")
	dead := eventsOf(t, c, "u1", EventDeadLettered)
	require.Len(t, dead, 1)
	assert.Contains(t, dead[0].Reason, "2 takeovers")

	time.Sleep(2 * testLease)
	n, err := c.Recover(context.Background())
	require.NoError(t, err)
	assert.Zero(t, n, "recovery leaves a dead saga alone")
	list, err := c.List(context.Background(), Filter{Stuck: time.Minute})
	require.NoError(t, err)
	assert.Equal(t, []string{"u1"}, ids(list), "shown by the stuck view")
	_, err = h.Run(context.Background(), "u1", &regState{})
	assert.ErrorIs(t, err, ErrDead)

	fixed, _ := f.coordinator(t, Options{Owner: "fixed"})
	info, err := fixed.Retry(context.Background(), "u1", "dave", "deployed the fix")
	require.NoError(t, err)
	assert.Equal(t, StatusSucceeded, info.Status)
	assert.Equal(t, allApplied, f.effects(t, "u1"))
}
