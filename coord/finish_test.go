package coord

import (
	"context"
	"fmt"
	"sync"
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

// TestRun_FinalRecordRefusedByTheServerLeavesTheOthersOfItsBatchWritten
// holds the finisher on its first record while eleven more sagas finish,
// so that they make one batch, one of whose final records PostgreSQL
// refuses (a state that jsonb rejects): the batch's transaction aborts,
// and the finisher writes each record alone, so that only the refused one
// is left running, for recovery.
func TestRun_FinalRecordRefusedByTheServerLeavesTheOthersOfItsBatchWritten(t *testing.T) {
	type S struct {
		Poison bool
		Note   string
	}
	f := newFixture(t)
	ctx := context.Background()
	release := make(chan struct{})
	var once sync.Once
	c, err := New(ctx, f.pool, Options{dropFinal: func(string) bool {
		once.Do(func() { <-release }) // the first record's batch waits
		return false
	}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	h, err := Register(c, Define("poisoned",
		Step[S]{Name: "pivot", Kind: Pivot, Action: func(context.Context, *S) error { return nil }},
		Step[S]{Name: "note", Kind: Retriable, Action: func(_ context.Context, s *S) error {
			if s.Poison {
				s.Note = "\x00" // JSON \u0000, which jsonb refuses
			}
			return nil
		}},
	))
	require.NoError(t, err)

	_, err = h.Run(ctx, "first", &S{})
	require.NoError(t, err)
	ids := []string{"first"}
	for i := range 10 {
		id := fmt.Sprintf("s%d", i)
		_, err := h.Run(ctx, id, &S{})
		require.NoError(t, err)
		ids = append(ids, id)
		if i == 4 {
			_, err := h.Run(ctx, "poisoned", &S{Poison: true})
			require.NoError(t, err, "Run does not wait for the final record")
		}
	}
	close(release)

	for _, id := range ids {
		info, err := c.Get(ctx, id)
		require.NoError(t, err)
		assert.Equal(t, StatusSucceeded, info.Status, id)
	}
	info, err := c.Get(ctx, "poisoned")
	require.NoError(t, err)
	assert.Equal(t, StatusRunning, info.Status, "its record was refused: recovery has it")
}

// TestClose_RunsStillInProgressWriteTheirOwnFinalRecord closes the
// coordinator while a Run is in its last step: that Run writes its final
// record itself before it returns (the finisher, which here would drop
// it, takes no record after Close), so another coordinator reads it.
func TestClose_RunsStillInProgressWriteTheirOwnFinalRecord(t *testing.T) {
	type S struct{}
	f := newFixture(t)
	ctx := context.Background()
	c, err := New(ctx, f.pool, Options{dropFinal: func(string) bool { return true }})
	require.NoError(t, err)
	inStep, release := make(chan struct{}), make(chan struct{})
	h, err := Register(c, Define("closing",
		Step[S]{Name: "pivot", Kind: Pivot, Action: func(context.Context, *S) error { return nil }},
		Step[S]{Name: "last", Kind: Retriable, Action: func(context.Context, *S) error {
			close(inStep)
			<-release
			return nil
		}},
	))
	require.NoError(t, err)
	other, err := New(ctx, f.pool, Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = other.Close() })

	done := make(chan error, 1)
	go func() {
		_, err := h.Run(ctx, "s1", &S{})
		done <- err
	}()
	<-inStep
	require.NoError(t, c.Close())
	close(release)
	require.NoError(t, <-done)

	info, err := other.Get(ctx, "s1")
	require.NoError(t, err)
	assert.Equal(t, StatusSucceeded, info.Status)
}
