package coord

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// step is an event's kind, step, attempt, and whether it has an error: what
// the timeline tests compare.
type step struct {
	Kind    EventKind
	Step    string
	Attempt int
	Err     bool
}

func timeline(t *testing.T, c *Coordinator, id string) []step {
	t.Helper()
	evs, err := c.History(context.Background(), id)
	require.NoError(t, err)
	out := make([]step, len(evs))
	for i, ev := range evs {
		assert.Equal(t, id, ev.SagaID)
		assert.NotEmpty(t, ev.Actor, "event %d", i)
		out[i] = step{ev.Kind, ev.StepName, ev.Attempt, ev.Error != ""}
		if i > 0 {
			assert.Greater(t, ev.Seq, evs[i-1].Seq)
			assert.False(t, ev.At.Before(evs[i-1].At), "event %d is older than the one before", i)
		}
	}
	return out
}

func TestHistory_RecordsEveryEventOfASagaThatCompensatesAfterAFailedTry(t *testing.T) {
	f := newFixture(t)
	c, h := f.coordinator(t, Options{})
	f.fail(stepWelcome, false, -1) // 3 tries (fastRetry), then compensation
	f.fail(stepWelcome, true, 1)   // whose first try fails

	_, err := h.Run(context.Background(), "u1", &regState{UserID: "u1", Email: "u1@example.com"})
	require.ErrorIs(t, err, ErrCompensated)

	assert.Equal(t, []step{
		{EventCreated, stepCreateUser, 0, false},
		{EventStarted, stepCreateUser, 0, false},
		{EventSucceeded, stepCreateUser, 1, false},
		{EventStarted, stepWelcome, 0, false},
		{EventTryFailed, stepWelcome, 1, true},
		{EventTryFailed, stepWelcome, 2, true},
		{EventFailed, stepWelcome, 3, true},
		{EventCompensationTryFailed, stepWelcome, 1, true},
		{EventCompensated, stepWelcome, 2, false},
		{EventCompensated, stepCreateUser, 1, false},
	}, timeline(t, c, "u1"))
}

func TestHistory_RecordsTheSuccessOfEveryStep(t *testing.T) {
	f := newFixture(t)
	c, h := f.coordinator(t, Options{})
	_, err := h.Run(context.Background(), "u1", &regState{UserID: "u1", Email: "u1@example.com"})
	require.NoError(t, err)

	want := []step{{EventCreated, stepCreateUser, 0, false}}
	for _, name := range []string{stepCreateUser, stepWelcome, stepActivate, stepCache} {
		want = append(want, step{EventStarted, name, 0, false}, step{EventSucceeded, name, 1, false})
	}
	assert.Equal(t, want, timeline(t, c, "u1"))
}

func TestHistory_RecordsARecoveryByAnotherOwner(t *testing.T) {
	f := newFixture(t)
	_, crashed := f.coordinator(t, Options{Owner: "crashed", LeaseDuration: testLease, crashAt: func(p crashPoint) bool {
		return p == crashPoint{stageAfterLog, stepWelcome}
	}})
	_, err := crashed.Run(context.Background(), "u1", &regState{UserID: "u1", Email: "u1@example.com"})
	require.ErrorIs(t, err, errCrashed)

	recoverer, _ := f.coordinator(t, Options{Owner: "recoverer", LeaseDuration: testLease})
	recoverUntilFinal(t, recoverer, "u1")

	evs, err := recoverer.History(context.Background(), "u1")
	require.NoError(t, err)
	var recovered []Event
	for _, ev := range evs {
		if ev.Kind == EventRecovered {
			recovered = append(recovered, ev)
		}
	}
	require.Len(t, recovered, 1)
	assert.Equal(t, stepActivate, recovered[0].StepName, "recovered at the step after the last logged one")
	assert.Contains(t, recovered[0].Actor, "recoverer/")
	assert.Equal(t, EventSucceeded, evs[len(evs)-1].Kind)
	assert.Equal(t, stepCache, evs[len(evs)-1].StepName)
}

func TestHistory_OfAnUnknownSagaIsErrNotFound(t *testing.T) {
	f := newFixture(t)
	c, _ := f.coordinator(t, Options{})
	_, err := c.History(context.Background(), "nope")
	assert.ErrorIs(t, err, ErrNotFound)
	_, err = c.History(context.Background(), "")
	assert.ErrorIs(t, err, ErrInvalid)
}
