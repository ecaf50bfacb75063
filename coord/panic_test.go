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

// panicker makes the operations of the saga "panics" panic, per saga id, a
// number of times (-1: on every try), and counts their tries.
type panicker struct {
	mu    sync.Mutex
	left  map[string]int // "id/op" → panics left
	tries map[string]int // "id/op" → tries
}

func newPanicker() *panicker {
	return &panicker{left: map[string]int{}, tries: map[string]int{}}
}

func (p *panicker) set(id, op string, n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.left[id+"/"+op] = n
}

func (p *panicker) enter(id, op string) {
	p.mu.Lock()
	key := id + "/" + op
	p.tries[key]++
	n := p.left[key]
	if n > 0 {
		p.left[key] = n - 1
	}
	p.mu.Unlock()
	if n != 0 {
		panic("boom in " + op)
	}
}

func (p *panicker) count(id, op string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.tries[id+"/"+op]
}

type panicState struct {
	ID      string `json:"id"`
	FailAct bool   `json:"fail_act"` // the action of "act" returns an error
}

// panicSaga writes a users row in a TxAction, runs an Action, then writes a
// second row in the pivot's TxAction before it may panic.
func panicSaga(f *fixture, p *panicker) *Definition[panicState] {
	retry := RetryPolicy{Attempts: 3, Backoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond}
	return Define("panics",
		Step[panicState]{
			Name: "write",
			TxAction: func(ctx context.Context, tx Tx, s *panicState) error {
				p.enter(s.ID, "write")
				_, err := tx.Exec(ctx, `insert into users (id, email) values ($1, 'x')`, s.ID)
				return err
			},
			TxCompensate: func(ctx context.Context, tx Tx, s *panicState) error {
				if _, err := tx.Exec(ctx, `delete from users where id = $1`, s.ID); err != nil {
					return err
				}
				p.enter(s.ID, "write/compensate") // after the delete: it must roll back
				return nil
			},
			Retry: retry,
		},
		Step[panicState]{
			Name: "act",
			Action: func(_ context.Context, s *panicState) error {
				p.enter(s.ID, "act")
				if s.FailAct {
					return errInjected
				}
				return nil
			},
			Compensate: func(_ context.Context, s *panicState) error {
				p.enter(s.ID, "act/compensate")
				return nil
			},
			Retry: retry,
		},
		Step[panicState]{
			Name: "pivot",
			Kind: Pivot,
			TxAction: func(ctx context.Context, tx Tx, s *panicState) error {
				if _, err := tx.Exec(ctx, `insert into users (id, email) values ($1, 'x')`, s.ID+"-pivot"); err != nil {
					return err
				}
				p.enter(s.ID, "pivot") // after the write: it must roll back
				return nil
			},
			Retry: retry,
		},
	)
}

func (f *fixture) userExists(t *testing.T, id string) bool {
	t.Helper()
	var n int
	require.NoError(t, f.pool.QueryRow(context.Background(), `select count(*) from users where id = $1`, id).Scan(&n))
	return n == 1
}

func TestRun_PanicInAStepIsAFailedTry(t *testing.T) {
	tests := []struct {
		name      string
		op        string // the operation that panics
		panics    int    // how often (-1: always)
		failAct   bool
		wantErr   error // nil: the saga succeeds
		status    Status
		tries     int
		user      bool // the first step's row is there at the end
		pivotUser bool // the pivot's row is there at the end
	}{
		{name: "action panics once then succeeds", op: "act", panics: 1, status: StatusSucceeded, tries: 2, user: true, pivotUser: true},
		{name: "action panics on every try", op: "act", panics: -1, wantErr: ErrCompensated, status: StatusCompensated, tries: 3},
		{name: "tx action panics after its write on every try", op: "pivot", panics: -1, wantErr: ErrCompensated, status: StatusCompensated, tries: 3},
		{name: "tx action panics before its write once", op: "write", panics: 1, status: StatusSucceeded, tries: 2, user: true, pivotUser: true},
		{name: "compensation panics on every try", op: "act/compensate", panics: -1, failAct: true, wantErr: ErrFailed, status: StatusFailed, tries: 3, user: true},
		{name: "tx compensation panics after its write on every try", op: "write/compensate", panics: -1, failAct: true, wantErr: ErrFailed, status: StatusFailed, tries: 3, user: true},
		{name: "tx compensation panics once", op: "write/compensate", panics: 1, failAct: true, wantErr: ErrCompensated, status: StatusCompensated, tries: 2},
	}
	f := newFixture(t)
	p := newPanicker()
	var mu sync.Mutex
	stacks := map[string][]byte{}
	c, err := New(context.Background(), f.pool, Options{Hooks: Hooks{StepFailed: func(_ context.Context, e StepEvent) {
		mu.Lock()
		defer mu.Unlock()
		if e.Stack != nil {
			stacks[e.SagaID] = e.Stack
		}
	}}})
	require.NoError(t, err)
	h, err := Register(c, panicSaga(f, p))
	require.NoError(t, err)

	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := fmt.Sprintf("p%d", i)
			p.set(id, tt.op, tt.panics)

			info, err := h.Run(context.Background(), id, &panicState{ID: id, FailAct: tt.failAct})
			if tt.wantErr == nil {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, tt.wantErr)
			}
			if tt.panics < 0 {
				assert.ErrorIs(t, err, ErrStepPanic)
				assert.Contains(t, err.Error(), "boom in "+tt.op)
			}
			assert.Equal(t, tt.status, info.Status)
			assert.Equal(t, tt.tries, p.count(id, tt.op), "the policy's tries")
			assert.Equal(t, tt.user, f.userExists(t, id))
			assert.Equal(t, tt.pivotUser, f.userExists(t, id+"-pivot"))

			got, err := c.Get(context.Background(), id)
			require.NoError(t, err)
			assert.Equal(t, tt.status, got.Status)
			if tt.panics < 0 {
				assert.Contains(t, got.Error, "coord: step panicked: boom in "+tt.op, "the log names the panic")
			}
			mu.Lock()
			assert.Contains(t, string(stacks[id]), "panicSaga", "StepFailed gets the panic's stack")
			mu.Unlock()
		})
	}
}

// TestStart_RecoveryLoopSurvivesAPanickingStep lets the loop of Start take
// over sagas whose next step panics: it compensates them as their policy
// says and goes on recovering the sagas after them.
func TestStart_RecoveryLoopSurvivesAPanickingStep(t *testing.T) {
	f := newFixture(t)
	p := newPanicker()
	crashed, err := New(context.Background(), f.pool, Options{Owner: "crashed", LeaseDuration: testLease, crashAt: func(pt crashPoint) bool {
		return pt.Stage == stageAfterLog && pt.Step == "write"
	}})
	require.NoError(t, err)
	hc, err := Register(crashed, panicSaga(f, p))
	require.NoError(t, err)
	ids := []string{"panics-always", "panics-once", "no-panic", "pivot-panics"}
	p.set("panics-always", "act", -1)
	p.set("panics-once", "act", 1)
	p.set("pivot-panics", "pivot", -1)
	for _, id := range ids {
		_, err := hc.Run(context.Background(), id, &panicState{ID: id})
		require.ErrorIs(t, err, errCrashed)
	}

	var mu sync.Mutex
	var recoverErrs []error
	c, err := New(context.Background(), f.pool, Options{Owner: "loop", LeaseDuration: testLease, RecoverEvery: 20 * time.Millisecond,
		Hooks: Hooks{RecoverFailed: func(_ context.Context, err error) {
			mu.Lock()
			defer mu.Unlock()
			recoverErrs = append(recoverErrs, err)
		}}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	_, err = Register(c, panicSaga(f, p))
	require.NoError(t, err)
	require.NoError(t, c.Start(context.Background()))

	want := map[string]Status{
		"panics-always": StatusCompensated,
		"panics-once":   StatusSucceeded,
		"no-panic":      StatusSucceeded,
		"pivot-panics":  StatusCompensated,
	}
	require.Eventually(t, func() bool {
		for _, id := range ids {
			info, err := c.Get(context.Background(), id)
			require.NoError(t, err)
			if !info.Status.final() {
				return false
			}
		}
		return true
	}, 15*time.Second, 10*time.Millisecond)
	require.NoError(t, c.Close())

	for _, id := range ids {
		info, err := c.Get(context.Background(), id)
		require.NoError(t, err)
		assert.Equal(t, want[id], info.Status, id)
		assert.Equal(t, want[id] == StatusSucceeded, f.userExists(t, id), id)
		assert.Equal(t, want[id] == StatusSucceeded, f.userExists(t, id+"-pivot"), id)
		if want[id] == StatusCompensated {
			assert.Contains(t, info.Error, "coord: step panicked: boom in ", id)
		}
	}
	assert.Equal(t, 3, p.count("panics-always", "act"))
	assert.Equal(t, 3, p.count("pivot-panics", "pivot"))
	mu.Lock()
	assert.Empty(t, recoverErrs)
	mu.Unlock()

	// Recover, called directly, survives a panic too.
	_, err = hc.Run(context.Background(), "direct", &panicState{ID: "direct"})
	require.ErrorIs(t, err, errCrashed)
	p.set("direct", "act", -1)
	info := recoverUntilFinal(t, c, "direct")
	assert.Equal(t, StatusCompensated, info.Status)
	assert.Contains(t, info.Error, "coord: step panicked: boom in act")
}
