package coord

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The final record of a saga whose last step is retriable (a step, or a
// parallel group) is written after Run returns (see finisher). These tests
// say what a caller and another coordinator see.

// TestRun_FinalRecordLostAfterRunReturnedIsRecovered drops the final record
// that Run handed over, as a process that died right after Run returned
// would: the log keeps the saga running under the run's lease, and once the
// lease ends recovery replays the last step, whose barriers make it take
// effect once, and the saga ends succeeded.
func TestRun_FinalRecordLostAfterRunReturnedIsRecovered(t *testing.T) {
	tests := []struct {
		name        string
		coordinator func(t *testing.T, f *fixture, opts Options) (*Coordinator, *Handle[regState])
		effects     func(t *testing.T, f *fixture, id string) any
		want        any
	}{
		{"a retriable last step", func(t *testing.T, f *fixture, opts Options) (*Coordinator, *Handle[regState]) {
			return f.coordinator(t, opts)
		},
			func(t *testing.T, f *fixture, id string) any { return f.effects(t, id) }, allApplied},
		{"a retriable last group", func(t *testing.T, f *fixture, opts Options) (*Coordinator, *Handle[regState]) {
			return groupCoordinator(t, f, opts, nil)
		}, func(t *testing.T, f *fixture, id string) any { return f.groupEffects(t, id) }, groupAllApplied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			ctx := context.Background()
			dying, h := tt.coordinator(t, f, Options{Owner: "dying", LeaseDuration: testLease, dropFinal: func(string) bool { return true }})
			recoverer, _ := tt.coordinator(t, f, Options{Owner: "recoverer", LeaseDuration: testLease})

			info, err := h.Run(ctx, "u1", &regState{UserID: "u1", Email: "u1@example.com"})
			require.NoError(t, err)
			assert.Equal(t, StatusSucceeded, info.Status, "Run reports the outcome")
			assert.Equal(t, tt.want, tt.effects(t, f, "u1"), "every step took effect before Run returned")

			got, err := dying.Get(ctx, "u1")
			require.NoError(t, err)
			assert.Equal(t, StatusRunning, got.Status, "the record was lost: the log has the saga before its last step")

			info = recoverUntilFinal(t, recoverer, "u1")
			assert.Equal(t, StatusSucceeded, info.Status)
			assert.Equal(t, tt.want, tt.effects(t, f, "u1"))
			events, err := recoverer.History(ctx, "u1")
			require.NoError(t, err)
			kinds := make([]EventKind, len(events))
			for i, ev := range events {
				kinds[i] = ev.Kind
			}
			assert.Contains(t, kinds, EventRecovered, "recovery took it over")
			assert.Equal(t, EventSucceeded, kinds[len(kinds)-1], "and replayed the last step")
		})
	}
}

// TestRun_FinalRecordIsInTheLogForTheCallerAndAfterClose checks that the
// coordinator that ran a saga reads its final record at once (Get, List,
// History and Counts wait for the records its Runs handed over), and that
// Close writes them, so that another coordinator reads them then.
func TestRun_FinalRecordIsInTheLogForTheCallerAndAfterClose(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c, h := groupCoordinator(t, f, Options{Owner: "runner"}, nil)
	other, _ := groupCoordinator(t, f, Options{Owner: "other"}, nil)

	const n = 20
	for i := range n {
		id := "u" + string(rune('a'+i))
		_, err := h.Run(ctx, id, &regState{UserID: id, Email: id + "@example.com"})
		require.NoError(t, err)
		info, err := c.Get(ctx, id)
		require.NoError(t, err)
		assert.Equal(t, StatusSucceeded, info.Status, id)
	}
	page, err := c.List(ctx, Filter{Statuses: []Status{StatusSucceeded}})
	require.NoError(t, err)
	assert.Len(t, page.Sagas, n)
	counts, err := c.Counts(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(n), counts[StatusSucceeded])

	_, err = h.Run(ctx, "last", &regState{UserID: "last", Email: "last@example.com"})
	require.NoError(t, err)
	require.NoError(t, c.Close())
	info, err := other.Get(ctx, "last")
	require.NoError(t, err)
	assert.Equal(t, StatusSucceeded, info.Status, "Close wrote the final record")
}

// TestRun_FinalRecordsOfConcurrentSagasAreEachWrittenOnce runs sagas
// concurrently, so that the finisher writes their final records several
// in one statement, and checks each saga's record and history as one
// written alone would leave them.
func TestRun_FinalRecordsOfConcurrentSagasAreEachWrittenOnce(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c, h := groupCoordinator(t, f, Options{Owner: "runner"}, nil)
	cOne, hOne := groupCoordinator(t, f, Options{Owner: "alone"}, nil)

	// The shape of a history written by a final record of its own.
	_, err := hOne.Run(ctx, "alone", &regState{UserID: "alone", Email: "alone@example.com"})
	require.NoError(t, err)
	want, err := cOne.History(ctx, "alone")
	require.NoError(t, err)

	const n = 48
	errs := make(chan error, n)
	for i := range n {
		id := fmt.Sprintf("c%02d", i)
		go func() {
			_, err := h.Run(ctx, id, &regState{UserID: id, Email: id + "@example.com"})
			errs <- err
		}()
	}
	for range n {
		require.NoError(t, <-errs)
	}
	for i := range n {
		id := fmt.Sprintf("c%02d", i)
		info, err := c.Get(ctx, id)
		require.NoError(t, err)
		assert.Equal(t, StatusSucceeded, info.Status, id)
		assert.Equal(t, groupAllApplied, f.groupEffects(t, id), id)
		got, err := c.History(ctx, id)
		require.NoError(t, err)
		require.Len(t, got, len(want), id)
		for j := range got {
			assert.Equal(t, []any{want[j].Kind, want[j].Step, want[j].StepName, want[j].Attempt},
				[]any{got[j].Kind, got[j].Step, got[j].StepName, got[j].Attempt}, "%s event %d", id, j)
		}
	}
}
