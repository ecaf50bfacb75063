package coord

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// The tests of this file run the registration saga with two parallel
// groups: "notify" (compensatable, before the pivot: the welcome
// conversation in MongoDB and a draft in Redis) and "publish" (retriable,
// after it: the cached profile and a feed entry in Redis).

const (
	groupNotify  = "notify"
	groupPublish = "publish"
	memberDraft  = "draft"
	memberFeed   = "feed"
)

func (f *fixture) draftKey(userID string) string { return f.prefix + "draft:" + userID }
func (f *fixture) feedKey(userID string) string  { return f.prefix + "feed:" + userID }

// groupDefinition returns the registration saga with the groups; block, if
// not nil, is called by the draft member's action before its write (a test
// holds the member there).
func groupDefinition(f *fixture, block func(ctx context.Context, id string) error) *Definition[regState] {
	d := f.definition()
	create, welcome, activate, cache := d.steps[0], d.steps[1], d.steps[2], d.steps[3]
	draft := Step[regState]{
		Name: memberDraft,
		Action: func(ctx context.Context, s *regState) error {
			if err := f.enter(s.UserID, memberDraft, false); err != nil {
				return err
			}
			if block != nil {
				if err := block(ctx, s.UserID); err != nil {
					return err
				}
			}
			if _, err := RedisSet(ctx, f.rdb, f.draftKey(s.UserID), s.Email, 0); err != nil {
				return err
			}
			return f.leave(memberDraft)
		},
		Compensate: func(ctx context.Context, s *regState) error {
			if err := f.enter(s.UserID, memberDraft, true); err != nil {
				return err
			}
			_, err := RedisDel(ctx, f.rdb, f.draftKey(s.UserID))
			return err
		},
		Retry: fastRetry,
	}
	feed := Step[regState]{
		Name: memberFeed,
		Kind: Retriable,
		Action: func(ctx context.Context, s *regState) error {
			if err := f.enter(s.UserID, memberFeed, false); err != nil {
				return err
			}
			_, err := RedisSet(ctx, f.rdb, f.feedKey(s.UserID), "joined", 0)
			return err
		},
		Retry: fastRetry,
	}
	return Define("register-grouped", create, Parallel(groupNotify, welcome, draft), activate, Parallel(groupPublish, cache, feed))
}

// groupEffects reports what the grouped saga of user id left in the stores.
type groupEffects struct {
	effects
	Draft, Feed bool
}

func (f *fixture) groupEffects(t *testing.T, id string) groupEffects {
	t.Helper()
	g := groupEffects{effects: f.effects(t, id)}
	for key, set := range map[string]*bool{f.draftKey(id): &g.Draft, f.feedKey(id): &g.Feed} {
		n, err := f.rdb.Exists(context.Background(), key).Result()
		require.NoError(t, err)
		*set = n == 1
	}
	return g
}

var (
	groupAllApplied = groupEffects{effects: allApplied, Draft: true, Feed: true}
	groupNoneLeft   = groupEffects{}
)

// groupCoordinator returns a coordinator on the fixture's database with the
// grouped saga registered.
func groupCoordinator(t *testing.T, f *fixture, opts Options, block func(context.Context, string) error) (*Coordinator, *Handle[regState]) {
	t.Helper()
	c, err := New(context.Background(), f.pool, opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	h, err := Register(c, groupDefinition(f, block))
	require.NoError(t, err)
	return c, h
}

func TestRegister_ParallelGroupRules(t *testing.T) {
	type S struct{}
	act := func(context.Context, *S) error { return nil }
	txAct := func(context.Context, Tx, *S) error { return nil }
	m := func(name string, kind Kind) Step[S] { return Step[S]{Name: name, Kind: kind, Action: act} }
	pivot := Step[S]{Name: "pivot", Kind: Pivot, Action: act}
	tests := []struct {
		name  string
		steps []Step[S]
		ok    bool
	}{
		{"compensatable group before the pivot", []Step[S]{Parallel("g", m("a", Compensatable), m("b", Compensatable)), pivot}, true},
		{"retriable group after the pivot", []Step[S]{pivot, Parallel("g", m("a", Retriable), m("b", Retriable))}, true},
		{"a group alone", []Step[S]{Parallel("g", m("a", Compensatable), m("b", Compensatable), m("c", Compensatable))}, true},
		{"no member", []Step[S]{Parallel[S]("g")}, false},
		{"one member", []Step[S]{Parallel("g", m("a", Compensatable))}, false},
		{"a TxAction member", []Step[S]{Parallel("g", m("a", Compensatable), Step[S]{Name: "b", TxAction: txAct})}, false},
		{"a TxCompensate member", []Step[S]{Parallel("g", m("a", Compensatable), Step[S]{Name: "b", Action: act, TxCompensate: txAct})}, false},
		{"a member without action", []Step[S]{Parallel("g", m("a", Compensatable), Step[S]{Name: "b"})}, false},
		{"a nested group", []Step[S]{Parallel("g", m("a", Compensatable), Parallel("h", m("b", Compensatable), m("c", Compensatable)))}, false},
		{"the pivot in a group", []Step[S]{Parallel("g", pivot, m("a", Pivot))}, false},
		{"members of two kinds", []Step[S]{pivot, Parallel("g", m("a", Retriable), m("b", Compensatable))}, false},
		{"a compensatable group after the pivot", []Step[S]{pivot, Parallel("g", m("a", Compensatable), m("b", Compensatable))}, false},
		{"a retriable group before the pivot", []Step[S]{Parallel("g", m("a", Retriable), m("b", Retriable)), pivot}, false},
		{"a member named like a step", []Step[S]{m("a", Compensatable), Parallel("g", m("a", Compensatable), m("b", Compensatable))}, false},
		{"a step named like a member", []Step[S]{Parallel("g", m("a", Compensatable), m("b", Compensatable)), m("b", Compensatable)}, false},
		{"a member named like its group", []Step[S]{Parallel("g", m("g", Compensatable), m("b", Compensatable))}, false},
		{"two members of one name", []Step[S]{Parallel("g", m("a", Compensatable), m("a", Compensatable))}, false},
		{"a member name with a slash", []Step[S]{Parallel("g", m("a/b", Compensatable), m("b", Compensatable))}, false},
		{"a member without a name", []Step[S]{Parallel("g", m("", Compensatable), m("b", Compensatable))}, false},
		{"a member with a negative timeout", []Step[S]{Parallel("g", m("a", Compensatable), Step[S]{Name: "b", Action: act, Timeout: -1})}, false},
		{"a member with an invalid retry", []Step[S]{Parallel("g", m("a", Compensatable), Step[S]{Name: "b", Action: act, Retry: RetryPolicy{Attempts: -1}})}, false},
		{"a retriable member with a compensation", []Step[S]{pivot, Parallel("g", m("a", Retriable), Step[S]{Name: "b", Kind: Retriable, Action: act, Compensate: act})}, false},
		{"a group with an action", []Step[S]{func() Step[S] {
			g := Parallel("g", m("a", Compensatable), m("b", Compensatable))
			g.Action = act
			return g
		}()}, false},
		{"a group with a compensation", []Step[S]{func() Step[S] {
			g := Parallel("g", m("a", Compensatable), m("b", Compensatable))
			g.Compensate = act
			return g
		}()}, false},
		{"a group with a timeout", []Step[S]{func() Step[S] {
			g := Parallel("g", m("a", Compensatable), m("b", Compensatable))
			g.Timeout = time.Second
			return g
		}()}, false},
		{"a group with a retry policy", []Step[S]{func() Step[S] {
			g := Parallel("g", m("a", Compensatable), m("b", Compensatable))
			g.Retry = RetryPolicy{Attempts: 5}
			return g
		}()}, false},
		{"a group whose kind is not its members'", []Step[S]{pivot, func() Step[S] {
			g := Parallel("g", m("a", Compensatable), m("b", Compensatable))
			g.Kind = Retriable
			return g
		}()}, false},
	}
	f := newFixture(t)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(context.Background(), f.pool, Options{})
			require.NoError(t, err)
			_, err = Register(c, Define(fmt.Sprintf("rules-%d", i), tt.steps...))
			if tt.ok {
				assert.NoError(t, err)
			} else {
				assert.ErrorIs(t, err, ErrInvalid)
			}
		})
	}
}

// TestRun_GroupMembersRunConcurrently has each member wait for the other to
// have started: run one after the other, the first would wait for ever (its
// Timeout ends it and the saga is compensated).
func TestRun_GroupMembersRunConcurrently(t *testing.T) {
	f := newFixture(t)
	c, err := New(context.Background(), f.pool, Options{})
	require.NoError(t, err)
	type S struct {
		A string `json:"a"`
		B string `json:"b"`
	}
	started := map[string]chan struct{}{"a": make(chan struct{}), "b": make(chan struct{})}
	member := func(name, other string) Step[S] {
		return Step[S]{Name: name, Timeout: time.Minute, Action: func(ctx context.Context, s *S) error {
			close(started[name])
			select {
			case <-started[other]:
			case <-ctx.Done():
				return ctx.Err()
			}
			// Each member writes its own field of the shared state.
			if name == "a" {
				s.A = "done"
			} else {
				s.B = "done"
			}
			return nil
		}}
	}
	h, err := Register(c, Define("concurrent", Parallel("both", member("a", "b"), member("b", "a"))))
	require.NoError(t, err)

	state := &S{}
	info, err := h.Run(context.Background(), "s1", state)
	require.NoError(t, err)
	assert.Equal(t, StatusSucceeded, info.Status)
	assert.Equal(t, &S{A: "done", B: "done"}, state)

	// The state is logged once, after the group: both members' writes.
	var stored S
	var raw []byte
	require.NoError(t, f.pool.QueryRow(context.Background(), `select state from coord_saga where id = 's1'`).Scan(&raw))
	require.NoError(t, c.decodeState("s1", raw, &stored))
	assert.Equal(t, S{A: "done", B: "done"}, stored)
}

// TestRun_AGroupCostsOneLogRecord counts the PostgreSQL round trips of the
// three writes with the MongoDB insert and the Redis set as one group, and
// as two steps: a group costs the log write of one step.
func TestRun_AGroupCostsOneLogRecord(t *testing.T) {
	var rt roundTrips
	w, _ := newThreeWrites(t, &rt)
	ctx := context.Background()
	c, err := New(ctx, w.pool, Options{})
	require.NoError(t, err)
	three := w.saga().steps
	pg, mongoStep, redisStep := three[0], three[1], three[2]
	mongoStep.Kind, redisStep.Kind = Compensatable, Compensatable
	grouped, err := Register(c, Define("grouped", pg, Parallel("both", mongoStep, redisStep)))
	require.NoError(t, err)
	sequential, err := Register(c, Define("sequential", pg, mongoStep, redisStep))
	require.NoError(t, err)

	rt.n.Store(0)
	_, err = sequential.Run(ctx, "seq", &benchState{ID: "seq", Email: "seq@example.com"})
	require.NoError(t, err)
	seq := rt.n.Load()

	rt.n.Store(0)
	_, err = grouped.Run(ctx, "grp", &benchState{ID: "grp", Email: "grp@example.com"})
	require.NoError(t, err)
	grp := rt.n.Load()

	t.Logf("PostgreSQL round trips: sequential %d, grouped %d", seq, grp)
	assert.EqualValues(t, seq-1, grp, "the two steps' records become the group's one")
}

// TestRun_GroupHistoryHooksAndSpansNameTheMembers checks that a group's
// members are reported one by one: history events, hooks, step spans under
// the run's span.
func TestRun_GroupHistoryHooksAndSpansNameTheMembers(t *testing.T) {
	f := newFixture(t)
	rec := newTelemetryRecorder(t)
	var mu sync.Mutex
	hooks := map[string]int{}
	count := func(kind string) func(context.Context, StepEvent) {
		return func(_ context.Context, e StepEvent) {
			mu.Lock()
			defer mu.Unlock()
			hooks[fmt.Sprintf("%s %s compensation=%v", kind, e.Step, e.Compensation)]++
		}
	}
	c, h := groupCoordinator(t, f, rec.options(Options{Hooks: Hooks{
		StepStarted: count("started"), StepSucceeded: count("succeeded"),
		StepFailed: count("failed"), StepCompensated: count("compensated"),
	}}), nil)
	f.fail(stepWelcome, false, 1) // one failed try, then success

	info, err := h.Run(context.Background(), "u1", &regState{UserID: "u1", Email: "u1@example.com"})
	require.NoError(t, err)
	assert.Equal(t, StatusSucceeded, info.Status)
	assert.Equal(t, groupAllApplied, f.groupEffects(t, "u1"))

	assert.Equal(t, []step{
		{EventCreated, stepCreateUser, 0, false},
		{EventStarted, stepCreateUser, 0, false},
		{EventSucceeded, stepCreateUser, 1, false},
		{EventStarted, groupNotify, 0, false},
		{EventTryFailed, stepWelcome, 1, true},
		{EventSucceeded, stepWelcome, 2, false},
		{EventSucceeded, memberDraft, 1, false},
		{EventStarted, stepActivate, 0, false},
		{EventSucceeded, stepActivate, 1, false},
		{EventStarted, groupPublish, 0, false},
		{EventSucceeded, stepCache, 1, false},
		{EventSucceeded, memberFeed, 1, false},
	}, timeline(t, c, "u1"))

	mu.Lock()
	assert.Equal(t, map[string]int{
		"started create-user compensation=false": 1, "succeeded create-user compensation=false": 1,
		"started welcome-conversation compensation=false": 2, "failed welcome-conversation compensation=false": 1,
		"succeeded welcome-conversation compensation=false": 1,
		"started draft compensation=false":                  1, "succeeded draft compensation=false": 1,
		"started activate-user compensation=false": 1, "succeeded activate-user compensation=false": 1,
		"started cache-profile compensation=false": 1, "succeeded cache-profile compensation=false": 1,
		"started feed compensation=false": 1, "succeeded feed compensation=false": 1,
	}, hooks)
	mu.Unlock()

	run := rec.span(t, "coord.Run register-grouped")
	assert.ElementsMatch(t, []string{"coord.step create-user", "coord.step welcome-conversation", "coord.step draft",
		"coord.step activate-user", "coord.step cache-profile", "coord.step feed"}, rec.childrenOf(run),
		"a span per member, under the run's; none for the group itself")
	welcome := attrsOf(rec.span(t, "coord.step welcome-conversation").Attributes())
	assert.Equal(t, groupNotify, welcome[attrGroup].AsString())
	assert.EqualValues(t, 1, welcome[attrStepIndex].AsInt64(), "the group's position")
	assert.EqualValues(t, 2, welcome[attrAttempt].AsInt64())
	assert.Len(t, rec.span(t, "coord.step welcome-conversation").Events(), 1, "a retry event")
	assert.EqualValues(t, 2, rec.value(t, "coord.step.duration", attrStep.String(stepWelcome)), "two tries measured")
}

// TestRun_AFailedMemberCompensatesEveryMemberThenTheStepsBefore fails one
// member of the compensatable group for good.
func TestRun_AFailedMemberCompensatesEveryMemberThenTheStepsBefore(t *testing.T) {
	tests := []struct {
		name  string
		setup func(f *fixture)
		cause error
	}{
		{"an error on every try", func(f *fixture) { f.fail(stepWelcome, false, -1) }, errInjected},
		{"an error after its write", func(f *fixture) { f.failAfterWrite(memberDraft, -1) }, errInjected},
		{"a panic", nil, ErrStepPanic},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			var block func(context.Context, string) error
			if tt.setup != nil {
				tt.setup(f)
			} else {
				block = func(context.Context, string) error { panic("boom in draft") }
			}
			c, h := groupCoordinator(t, f, Options{}, block)

			info, err := h.Run(context.Background(), "u1", &regState{UserID: "u1", Email: "u1@example.com"})
			require.ErrorIs(t, err, ErrCompensated)
			assert.ErrorIs(t, err, tt.cause)
			assert.Equal(t, StatusCompensated, info.Status)
			assert.Equal(t, groupNoneLeft, f.groupEffects(t, "u1"))
			assert.Equal(t, 1, f.callCount("u1", stepWelcome, true), "every member is compensated")
			assert.Equal(t, 1, f.callCount("u1", memberDraft, true))
			assert.Equal(t, 1, f.callCount("u1", stepCreateUser, true))
			assert.Zero(t, f.callCount("u1", stepActivate, false))

			evs := timeline(t, c, "u1")
			var failed, compensated []string
			for _, ev := range evs {
				switch ev.Kind {
				case EventFailed:
					failed = append(failed, ev.Step)
				case EventCompensated:
					compensated = append(compensated, ev.Step)
				}
			}
			assert.Len(t, failed, 1, "the failed member, named")
			assert.Contains(t, []string{stepWelcome, memberDraft}, failed[0])
			assert.Equal(t, []string{stepWelcome, memberDraft, stepCreateUser}, compensated)
		})
	}
}

func TestRun_GroupMemberTimeoutFailsItsTry(t *testing.T) {
	f := newFixture(t)
	c, err := New(context.Background(), f.pool, Options{})
	require.NoError(t, err)
	type S struct{}
	var mu sync.Mutex
	compensated := map[string]int{}
	member := func(name string, timeout time.Duration) Step[S] {
		return Step[S]{
			Name: name, Timeout: timeout, Retry: RetryPolicy{Attempts: 2, Backoff: time.Millisecond},
			Action: func(ctx context.Context, _ *S) error {
				if timeout == 0 {
					return nil
				}
				<-ctx.Done() // only the member's timeout ends it
				return ctx.Err()
			},
			Compensate: func(context.Context, *S) error {
				mu.Lock()
				defer mu.Unlock()
				compensated[name]++
				return nil
			},
		}
	}
	h, err := Register(c, Define("timeouts", Parallel("g", member("slow", 20*time.Millisecond), member("fast", 0))))
	require.NoError(t, err)

	_, err = h.Run(context.Background(), "s1", &S{})
	require.ErrorIs(t, err, ErrCompensated)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Equal(t, map[string]int{"slow": 1, "fast": 1}, compensated)
}

// TestRun_ARetriableGroupIsLeftToRecoveryAndNeverCompensated fails a member
// of the group after the pivot on every try of the run: the run stops with
// ErrIncomplete, recovery runs the group again and it succeeds.
func TestRun_ARetriableGroupIsLeftToRecoveryAndNeverCompensated(t *testing.T) {
	f := newFixture(t)
	c, h := groupCoordinator(t, f, Options{LeaseDuration: testLease}, nil)
	f.fail(memberFeed, false, fastRetry.Attempts) // every try of the run

	info, err := h.Run(context.Background(), "u1", &regState{UserID: "u1", Email: "u1@example.com"})
	require.ErrorIs(t, err, ErrIncomplete)
	assert.Equal(t, StatusRunning, info.Status)
	assert.Equal(t, groupPublish, info.StepName)
	assert.Contains(t, info.Error, memberFeed)
	assert.Equal(t, fastRetry.Attempts, info.Attempts, "the failed member's tries")

	info = recoverUntilFinal(t, c, "u1")
	assert.Equal(t, StatusSucceeded, info.Status)
	assert.Equal(t, groupAllApplied, f.groupEffects(t, "u1"))
	assert.Equal(t, 2, f.callCount("u1", stepCache, false), "the whole group runs again")
	for _, step := range []string{stepCreateUser, stepWelcome, memberDraft} {
		assert.Zero(t, f.callCount("u1", step, true), step)
	}
}

// groupCrashPoint is a boundary identified independently of how the
// members' goroutines interleave: the n-th time (from 1) the run reaches it.
type groupCrashPoint struct {
	crashPoint
	n int
}

// groupBoundaries runs the grouped saga to the end and returns every
// boundary it crossed.
func groupBoundaries(t *testing.T, f *fixture, id string) []groupCrashPoint {
	t.Helper()
	var mu sync.Mutex
	seen := map[crashPoint]int{}
	var points []groupCrashPoint
	_, h := groupCoordinator(t, f, Options{crashAt: func(p crashPoint) bool {
		mu.Lock()
		defer mu.Unlock()
		seen[p]++
		points = append(points, groupCrashPoint{p, seen[p]})
		return false
	}}, nil)
	_, _ = h.Run(context.Background(), id, &regState{UserID: id, Email: id + "@example.com"})
	return points
}

// TestRecover_GroupCrashAtEveryBoundaryEndsConsistent cuts a run of the
// grouped saga at each boundary it crosses (inside a group, after a member
// and before the others finished, after the group before its record,
// during the group's compensation, and every boundary of the other steps),
// then lets a new coordinator recover it: the stores must end with every
// effect applied, or every applied one compensated.
func TestRecover_GroupCrashAtEveryBoundaryEndsConsistent(t *testing.T) {
	scenarios := []struct {
		name   string
		setup  func(f *fixture)
		status Status
		want   groupEffects
	}{
		{"success", func(*fixture) {}, StatusSucceeded, groupAllApplied},
		{"pivot fails", func(f *fixture) { f.fail(stepActivate, false, -1) }, StatusCompensated, groupNoneLeft},
		{"a member fails", func(f *fixture) { f.fail(stepWelcome, false, -1) }, StatusCompensated, groupNoneLeft},
		{"a member fails after its write", func(f *fixture) { f.failAfterWrite(memberDraft, -1) }, StatusCompensated, groupNoneLeft},
		{"a member's compensation fails once", func(f *fixture) {
			f.fail(stepActivate, false, -1)
			f.fail(memberDraft, true, 1)
		}, StatusCompensated, groupNoneLeft},
		{"a retriable member fails twice", func(f *fixture) { f.fail(memberFeed, false, 2) }, StatusSucceeded, groupAllApplied},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			sc.setup(f)
			points := groupBoundaries(t, f, "probe")
			require.NotEmpty(t, points)
			stages := map[string]bool{}
			for _, p := range points {
				stages[p.Stage] = true
			}
			assert.True(t, stages[stageMemberDone], "the probe crossed %v", points)
			recoverer, rh := groupCoordinator(t, f, Options{Owner: "recoverer", LeaseDuration: testLease}, nil)

			for i, target := range points {
				id := fmt.Sprintf("crash-%d", i)
				t.Run(fmt.Sprintf("%02d %s #%d", i, target.crashPoint, target.n), func(t *testing.T) {
					sc.setup(f) // the same failures as the probe met, so the same boundaries
					var mu sync.Mutex
					seen := map[crashPoint]int{}
					_, crashed := groupCoordinator(t, f, Options{Owner: "crashed", LeaseDuration: testLease, crashAt: func(p crashPoint) bool {
						mu.Lock()
						defer mu.Unlock()
						seen[p]++
						return p == target.crashPoint && seen[p] == target.n
					}}, nil)
					_, err := crashed.Run(context.Background(), id, &regState{UserID: id, Email: id + "@example.com"})
					require.ErrorIs(t, err, errCrashed)

					// Before the first commit (the record rides in the first
					// TxAction's transaction) nothing is logged, nothing done.
					if _, err := recoverer.Get(context.Background(), id); errors.Is(err, ErrNotFound) {
						assert.Equal(t, groupNoneLeft, f.groupEffects(t, id), "a saga not in the log took no effect")
					}
					info := finishCut(t, f, recoverer, rh, id)
					assert.Equal(t, sc.status, info.Status)
					assert.Equal(t, sc.want, f.groupEffects(t, id))
				})
			}
		})
	}
}

// TestRecover_GroupCutAfterOneMemberBeforeTheOtherRunsBothAgain cuts the run
// once the welcome member succeeded while the draft member has not written
// yet: recovery runs both again, and the welcome member's replay takes
// effect once (its barrier).
func TestRecover_GroupCutAfterOneMemberBeforeTheOtherRunsBothAgain(t *testing.T) {
	f := newFixture(t)
	cut := make(chan struct{})
	var once sync.Once
	_, crashed := groupCoordinator(t, f, Options{Owner: "crashed", LeaseDuration: testLease, crashAt: func(p crashPoint) bool {
		if p.Stage == stageMemberDone && p.Step == stepWelcome {
			once.Do(func() { close(cut) })
			return true
		}
		return false
	}}, func(ctx context.Context, _ string) error {
		// Held until the process "dies", which cancels the member.
		select {
		case <-cut:
		case <-ctx.Done():
		}
		<-ctx.Done()
		return ctx.Err()
	})
	_, err := crashed.Run(context.Background(), "u1", &regState{UserID: "u1", Email: "u1@example.com"})
	require.ErrorIs(t, err, errCrashed)
	got := f.groupEffects(t, "u1")
	require.True(t, got.Conversation, "the welcome member took effect")
	require.False(t, got.Draft, "the draft member did not")

	recoverer, _ := groupCoordinator(t, f, Options{Owner: "recoverer", LeaseDuration: testLease}, nil)
	info, err := recoverer.Get(context.Background(), "u1")
	require.NoError(t, err)
	assert.Equal(t, groupNotify, info.StepName, "the log is at the group")
	info = recoverUntilFinal(t, recoverer, "u1")
	assert.Equal(t, StatusSucceeded, info.Status)
	assert.Equal(t, groupAllApplied, f.groupEffects(t, "u1"))
	assert.Equal(t, 2, f.callCount("u1", stepWelcome, false), "run again by recovery")
	n, err := f.convs.CountDocuments(context.Background(), bson.D{{Key: "_id", Value: "u1"}})
	require.NoError(t, err)
	assert.EqualValues(t, 1, n, "its replay took effect once")
}

// TestCancel_GroupBeforeThePivot cancels the grouped saga while its group
// runs (the cancel takes effect at the next boundary, and the group's
// members are compensated), and a saga cut inside its group, whose members
// may have taken effect, before recovery takes it.
func TestCancel_GroupBeforeThePivot(t *testing.T) {
	t.Run("while the group runs", func(t *testing.T) {
		f := newFixture(t)
		var c *Coordinator
		c, h := groupCoordinator(t, f, Options{}, func(ctx context.Context, id string) error {
			return c.Cancel(ctx, id, "ops", "mistake")
		})
		_, err := h.Run(context.Background(), "u1", &regState{UserID: "u1", Email: "u1@example.com"})
		require.ErrorIs(t, err, ErrCompensated)
		assert.ErrorIs(t, err, ErrCancelled)
		assert.Equal(t, groupNoneLeft, f.groupEffects(t, "u1"))
		assert.Equal(t, 1, f.callCount("u1", stepWelcome, true))
		assert.Equal(t, 1, f.callCount("u1", memberDraft, true))
		assert.Zero(t, f.callCount("u1", stepActivate, false), "the pivot never ran")
	})
	t.Run("cut inside the group", func(t *testing.T) {
		f := newFixture(t)
		_, crashed := groupCoordinator(t, f, Options{Owner: "crashed", LeaseDuration: testLease, crashAt: func(p crashPoint) bool {
			return p.Stage == stageMemberDone && p.Step == memberDraft
		}}, nil)
		_, err := crashed.Run(context.Background(), "u1", &regState{UserID: "u1", Email: "u1@example.com"})
		require.ErrorIs(t, err, errCrashed)
		require.True(t, f.groupEffects(t, "u1").Draft)

		recoverer, _ := groupCoordinator(t, f, Options{Owner: "recoverer", LeaseDuration: testLease}, nil)
		require.NoError(t, recoverer.Cancel(context.Background(), "u1", "ops", "mistake"))
		info := recoverUntilFinal(t, recoverer, "u1")
		assert.Equal(t, StatusCompensated, info.Status)
		assert.Equal(t, groupNoneLeft, f.groupEffects(t, "u1"), "the members that may have run are compensated")
	})
}

// TestRetry_AGroupWhoseCompensationFailedCompensatesAgain leaves a saga
// failed on a member's compensation, then retries it.
func TestRetry_AGroupWhoseCompensationFailedCompensatesAgain(t *testing.T) {
	f := newFixture(t)
	c, h := groupCoordinator(t, f, Options{}, nil)
	f.fail(stepActivate, false, -1)
	f.fail(memberDraft, true, fastRetry.Attempts)

	info, err := h.Run(context.Background(), "u1", &regState{UserID: "u1", Email: "u1@example.com"})
	require.ErrorIs(t, err, ErrFailed)
	assert.Equal(t, StatusFailed, info.Status)
	assert.Equal(t, groupNotify, info.StepName)
	evs := timeline(t, c, "u1")
	assert.Equal(t, step{EventCompensationFailed, memberDraft, fastRetry.Attempts, true}, evs[len(evs)-1])
	assert.False(t, f.groupEffects(t, "u1").Conversation, "the other member's compensation went on")

	info, err = c.Retry(context.Background(), "u1", "ops", "redis is back")
	require.NoError(t, err)
	assert.Equal(t, StatusCompensated, info.Status)
	assert.Equal(t, groupNoneLeft, f.groupEffects(t, "u1"))
}

// TestRecover_ProcessKilledInsideAGroupEndsConsistent kills, with SIGKILL,
// a child process while the welcome member of the group hangs after its
// write, then recovers here.
func TestRecover_ProcessKilledInsideAGroupEndsConsistent(t *testing.T) {
	f := newFixture(t)
	id := "killed-in-group"
	killChildAtHang(t, f, id, stepWelcome, childGroup+"=1")

	recoverer, _ := groupCoordinator(t, f, Options{Owner: "recoverer", LeaseDuration: testLease}, nil)
	info := recoverUntilFinal(t, recoverer, id)
	assert.Equal(t, StatusSucceeded, info.Status)
	assert.Equal(t, groupAllApplied, f.groupEffects(t, id))
}

func TestGroupError_IsEachMembersError(t *testing.T) {
	errA, errB := errors.New("a failed"), errors.New("b failed")
	err := fmt.Errorf("step %q: %w", "g", &groupError{group: "g", members: []string{"a", "b"}, errs: []error{errA, errB}, tries: []int{1, 2}})
	assert.ErrorIs(t, err, errA)
	assert.ErrorIs(t, err, errB)
	assert.Equal(t, `step "g": member "a": a failed; member "b": b failed`, err.Error())
}

// TestRecover_GroupPostgresLosingTheNonDurableRecordsEndsConsistent is
// TestRecover_PostgresLosingTheNonDurableRecordsEndsConsistent for the
// grouped saga: a group's record follows the rules of an Action step's, so
// the records after "notify" (the next step is a TxAction) and after the
// retriable "publish" are not durable, and neither is the compensation of
// "notify" (the PostgreSQL step is left to compensate). A run cut at each
// boundary (or finished), then put back to its last durable record, ends
// consistent after recovery.
func TestRecover_GroupPostgresLosingTheNonDurableRecordsEndsConsistent(t *testing.T) {
	scenarios := []struct {
		name   string
		setup  func(f *fixture)
		status Status
		want   groupEffects
		lost   Status // what the finished run's last durable record says
	}{
		{"success", func(*fixture) {}, StatusSucceeded, groupAllApplied, StatusRunning},
		{"pivot fails", func(f *fixture) { f.fail(stepActivate, false, -1) }, StatusCompensated, groupNoneLeft, StatusCompensated},
		{"a member fails after its write", func(f *fixture) { f.failAfterWrite(memberDraft, -1) }, StatusCompensated, groupNoneLeft, StatusCompensated},
		{"a retriable member fails twice", func(f *fixture) { f.fail(memberFeed, false, 2) }, StatusSucceeded, groupAllApplied, StatusRunning},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			durableLog(t, f)
			sc.setup(f)
			points := groupBoundaries(t, f, "probe")
			require.NotEmpty(t, points)
			recoverer, rh := groupCoordinator(t, f, Options{Owner: "recoverer", LeaseDuration: testLease}, nil)

			// i == len(points): the run is not cut, it returns its outcome.
			for i := 0; i <= len(points); i++ {
				id := fmt.Sprintf("lost-%d", i)
				name := "finished"
				var target groupCrashPoint
				if i < len(points) {
					target = points[i]
					name = fmt.Sprintf("%02d %s #%d", i, target.crashPoint, target.n)
				}
				t.Run(name, func(t *testing.T) {
					sc.setup(f) // the same failures as the probe met, so the same boundaries
					var mu sync.Mutex
					seen := map[crashPoint]int{}
					cc, crashed := groupCoordinator(t, f, Options{Owner: "crashed", LeaseDuration: testLease, crashAt: func(p crashPoint) bool {
						mu.Lock()
						defer mu.Unlock()
						seen[p]++
						return p == target.crashPoint && seen[p] == target.n
					}}, nil)
					_, err := crashed.Run(context.Background(), id, &regState{UserID: id, Email: id + "@example.com"})
					if i < len(points) {
						require.ErrorIs(t, err, errCrashed)
					} else {
						require.True(t, err == nil || errors.Is(err, ErrCompensated), "Run: %v", err)
					}
					// The final record, which Run does not wait for, is
					// written before the crash (the one that loses it is
					// TestRun_FinalRecordLostAfterRunReturnedIsRecovered).
					cc.settleFinals(context.Background())

					if _, err := recoverer.Get(context.Background(), id); errors.Is(err, ErrNotFound) {
						// Cut before the first commit: nothing logged, nothing done.
						assert.Equal(t, groupNoneLeft, f.groupEffects(t, id), "a saga not in the log took no effect")
					} else {
						before, after := loseNonDurable(t, f, id)
						if i == len(points) {
							assert.Equal(t, sc.status, before, "the run finished")
							assert.Equal(t, sc.lost, after, "what the last durable write left")
						}
					}
					info := finishCut(t, f, recoverer, rh, id)
					assert.Equal(t, sc.status, info.Status)
					assert.Equal(t, sc.want, f.groupEffects(t, id))
				})
			}
		})
	}
}

// TestRun_GroupMemberMongoInsertSkipsTheTombstoneWithoutACompensation counts
// the MongoDB commands of a member's MongoInsert: a member without a
// compensation (a retriable one) sends the insert alone, since nothing is
// ever compensated under its key; a compensatable member's insert checks
// the tombstone first.
func TestRun_GroupMemberMongoInsertSkipsTheTombstoneWithoutACompensation(t *testing.T) {
	f := newFixture(t)
	db, cmds := countedMongo(t)
	coll := db.Collection("docs")
	c, err := New(context.Background(), f.pool, Options{})
	require.NoError(t, err)
	type S struct {
		ID string `json:"id"`
	}
	var mu sync.Mutex
	sent := map[string][]string{}
	insert := func(name string) func(context.Context, *S) error {
		return func(ctx context.Context, s *S) error {
			_, err := MongoInsert(ctx, coll, bson.D{{Key: "_id", Value: s.ID + "-" + name}})
			return err
		}
	}
	noop := func(context.Context, *S) error { return nil }
	// One MongoDB member per group: the pivot takes the first group's
	// commands, the end of the run the second's.
	h, err := Register(c, Define("mongo-members",
		Parallel("before",
			Step[S]{Name: "compensatable", Action: insert("compensatable"), Compensate: noop},
			Step[S]{Name: "other", Action: noop}),
		Step[S]{Name: "pivot", Kind: Pivot, Action: func(context.Context, *S) error {
			mu.Lock()
			defer mu.Unlock()
			sent["before"] = cmds.take()
			return nil
		}},
		Parallel("after",
			Step[S]{Name: "retriable", Kind: Retriable, Action: insert("retriable")},
			Step[S]{Name: "other-after", Kind: Retriable, Action: noop}),
	))
	require.NoError(t, err)
	cmds.take()
	_, err = h.Run(context.Background(), "m1", &S{ID: "m1"})
	require.NoError(t, err)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{"find coord_barrier", "insert docs"}, sent["before"], "a compensatable member checks the tombstone")
	assert.Equal(t, []string{"insert docs"}, cmds.take(), "a member without compensation inserts alone")
}

// TestCancel_ASagaCutInsideAnActionStepCompensatesIt cuts a run after the
// MongoDB step's action took effect and before its record, then cancels
// the saga before recovery takes it: the log cannot say whether the action
// ran, so the cancel compensates it (a compensation does nothing for an
// action that did not run), as it does a group's members.
func TestCancel_ASagaCutInsideAnActionStepCompensatesIt(t *testing.T) {
	f := newFixture(t)
	_, crashed := f.coordinator(t, Options{Owner: "crashed", LeaseDuration: testLease, crashAt: func(p crashPoint) bool {
		return p.Stage == stageAfterAction && p.Step == stepWelcome
	}})
	_, err := crashed.Run(context.Background(), "u1", &regState{UserID: "u1", Email: "u1@example.com"})
	require.ErrorIs(t, err, errCrashed)
	require.True(t, f.effects(t, "u1").Conversation)

	recoverer, _ := f.coordinator(t, Options{Owner: "recoverer", LeaseDuration: testLease})
	require.NoError(t, recoverer.Cancel(context.Background(), "u1", "ops", "mistake"))
	info := recoverUntilFinal(t, recoverer, "u1")
	assert.Equal(t, StatusCompensated, info.Status)
	assert.Equal(t, noneLeft, f.effects(t, "u1"))
}

// TestRun_ALongGroupRenewsItsLease holds a member while another
// coordinator keeps trying to recover the saga for two leases: the group
// renews the lease while its members run.
func TestRun_ALongGroupRenewsItsLease(t *testing.T) {
	f := newFixture(t)
	const lease = 2 * time.Second // renewed every third of it: generous for a loaded machine
	runner, err := New(context.Background(), f.pool, Options{Owner: "runner", LeaseDuration: lease})
	require.NoError(t, err)
	other, err := New(context.Background(), f.pool, Options{Owner: "other", LeaseDuration: lease})
	require.NoError(t, err)
	type S struct{}
	release := make(chan struct{})
	running := make(chan struct{})
	quick := Step[S]{Name: "quick", Action: func(context.Context, *S) error { return nil }}
	h, err := Register(runner, Define("long-group", Parallel("g", quick, Step[S]{Name: "long", Action: func(context.Context, *S) error {
		close(running)
		<-release
		return nil
	}})))
	require.NoError(t, err)
	_, err = Register(other, Define("long-group", Parallel("g", quick, Step[S]{Name: "long", Action: func(context.Context, *S) error {
		t.Error("the saga was taken over while its group was running")
		return nil
	}})))
	require.NoError(t, err)

	done := runAsync(h, "s1", &S{})
	<-running
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
