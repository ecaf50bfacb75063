package cacherepo_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/polystore/polystore/cacherepo"
	"github.com/polystore/polystore/internal/servicetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCache_GetOrLoad_MissLoadsCachesAndReturns(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, _, _ := newCache[user](t, cacherepo.Options{})
	l := &counter[user]{value: user{ID: 7, Name: "Grace"}}

	for range 3 {
		got, err := c.GetOrLoad(ctx, "7", l.load)
		require.NoError(t, err)
		assert.Equal(t, user{ID: 7, Name: "Grace"}, got)
	}
	assert.Equal(t, int64(1), l.calls.Load(), "loader calls")
	cached, err := c.Get(ctx, "7")
	require.NoError(t, err)
	assert.Equal(t, user{ID: 7, Name: "Grace"}, cached)
	st := c.Stats()
	assert.Equal(t, uint64(1), st.Misses)
	assert.Equal(t, uint64(2), st.Hits)
	assert.Equal(t, uint64(1), st.Loads)
}

func TestCache_GetOrLoad_LoadErrorIsReturnedAndNotCached(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, client, prefix := newCache[user](t, cacherepo.Options{})
	boom := errors.New("database down")
	l := &counter[user]{err: boom}

	_, err := c.GetOrLoad(ctx, "1", l.load)
	assert.ErrorIs(t, err, boom)
	assert.NotErrorIs(t, err, cacherepo.ErrNotFound)
	_, err = c.GetOrLoad(ctx, "1", l.load)
	assert.ErrorIs(t, err, boom)
	assert.Equal(t, int64(2), l.calls.Load(), "an error is not cached")
	n, err := client.Exists(ctx, prefix+"1").Result()
	require.NoError(t, err)
	assert.Zero(t, n, "the loader's lease was released")
	assert.Equal(t, uint64(2), c.Stats().LoadErrors)
}

func TestCache_GetOrLoad_ConcurrentMissesCallLoaderOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const goroutines = 200
	var misses atomic.Int64
	c, _, _ := newCache[user](t, cacherepo.Options{OnEvent: func(_ context.Context, e cacherepo.Event) {
		if e.Kind == cacherepo.EventMiss {
			misses.Add(1)
		}
	}})
	release := make(chan struct{})
	var calls atomic.Int64
	load := func(context.Context) (user, error) {
		calls.Add(1)
		<-release
		return user{ID: 1, Name: "Ada"}, nil
	}

	var wg sync.WaitGroup
	results := make([]user, goroutines)
	errs := make([]error, goroutines)
	for i := range goroutines {
		wg.Go(func() { results[i], errs[i] = c.GetOrLoad(ctx, "hot", load) })
	}
	// Hold the load until every goroutine has missed, so they all pile up.
	eventually(t, "200 misses", func() bool { return misses.Load() == goroutines })
	close(release)
	wg.Wait()

	assert.Equal(t, int64(1), calls.Load(), "loader calls")
	for i := range goroutines {
		require.NoError(t, errs[i])
		assert.Equal(t, user{ID: 1, Name: "Ada"}, results[i])
	}
}

// notFoundError is how pgrepo and docrepo mark a missing record, without
// cacherepo importing them.
type notFoundError struct{}

func (notFoundError) Error() string  { return "repo: not found" }
func (notFoundError) NotFound() bool { return true }

func TestCache_GetOrLoad_NotFoundIsCachedAsTombstone(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		opts    cacherepo.Options
		loadErr error
	}{
		{"cacherepo.ErrNotFound", cacherepo.Options{}, cacherepo.ErrNotFound},
		{"wrapped ErrNotFound", cacherepo.Options{}, fmt.Errorf("user 1: %w", cacherepo.ErrNotFound)},
		{"NotFound() bool behaviour", cacherepo.Options{}, fmt.Errorf("get: %w", notFoundError{})},
		{"custom predicate", cacherepo.Options{IsNotFound: func(err error) bool { return err.Error() == "gone" }}, errors.New("gone")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			c, _, _ := newCache[user](t, tt.opts)
			l := &counter[user]{err: tt.loadErr}

			_, err := c.GetOrLoad(ctx, "1", l.load)
			assert.ErrorIs(t, err, cacherepo.ErrNotFound)
			assert.ErrorIs(t, err, tt.loadErr, "the loader's error stays reachable")
			for range 5 {
				_, err = c.GetOrLoad(ctx, "1", l.load)
				assert.ErrorIs(t, err, cacherepo.ErrNotFound)
			}
			assert.Equal(t, int64(1), l.calls.Load(), "loader calls")
			assert.Equal(t, uint64(5), c.Stats().TombstoneHits)
			_, err = c.Get(ctx, "1")
			assert.ErrorIs(t, err, cacherepo.ErrNotFound)
		})
	}
}

func TestCache_GetOrLoad_NotFoundCallsLoaderOncePerTombstoneTTL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const tombTTL = 300 * time.Millisecond
	c, client, prefix := newCache[user](t, cacherepo.Options{NotFoundTTL: tombTTL, Jitter: -1})
	l := &counter[user]{err: cacherepo.ErrNotFound}

	_, err := c.GetOrLoad(ctx, "1", l.load)
	require.ErrorIs(t, err, cacherepo.ErrNotFound)
	pttl, err := client.PTTL(ctx, prefix+"1").Result()
	require.NoError(t, err)
	assert.Greater(t, pttl, time.Duration(0))
	assert.LessOrEqual(t, pttl, tombTTL, "the tombstone has its own, short TTL")

	// Ask continuously: the loader runs again only once the tombstone expired.
	eventually(t, "tombstone expiry", func() bool {
		_, err := c.GetOrLoad(ctx, "1", l.load)
		require.ErrorIs(t, err, cacherepo.ErrNotFound)
		return l.calls.Load() > 1
	})
	assert.Equal(t, int64(2), l.calls.Load(), "one more load per expiry")
	n, err := client.Exists(ctx, prefix+"1").Result()
	require.NoError(t, err)
	assert.Equal(t, int64(1), n, "a new tombstone is cached")
}

func TestCache_GetOrLoad_LeaderCancelledJoinersStillGetValue(t *testing.T) {
	t.Parallel()
	c, _, _ := newCache[string](t, cacherepo.Options{})
	leaderCtx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	var calls atomic.Int64
	load := func(ctx context.Context) (string, error) {
		if calls.Add(1) == 1 {
			close(started)
			<-ctx.Done() // the first caller gives up
			return "", ctx.Err()
		}
		return "v", nil
	}
	leaderErr := make(chan error)
	go func() {
		_, err := c.GetOrLoad(leaderCtx, "k", load)
		leaderErr <- err
	}()
	<-started
	joined := make(chan string)
	go func() {
		v, err := c.GetOrLoad(context.Background(), "k", load)
		assert.NoError(t, err)
		joined <- v
	}()
	// The joiner may join the leader's flight or start after it: either way
	// it must get the value, not the leader's cancellation.
	cancel()
	assert.ErrorIs(t, <-leaderErr, context.Canceled)
	assert.Equal(t, "v", <-joined)
}

func TestCache_GetManyOrLoad_LoadsOnlyMissesOnceAndTombstonesAbsentKeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, _, _ := newCache[user](t, cacherepo.Options{})
	require.NoError(t, c.Set(ctx, "1", user{1, "Ada"}, 0))
	db := map[string]user{"1": {1, "Ada"}, "2": {2, "Alan"}, "3": {3, "Grace"}}

	var batches [][]string
	load := func(_ context.Context, missing []string) (map[string]user, error) {
		batches = append(batches, missing)
		out := map[string]user{}
		for _, k := range missing {
			if u, ok := db[k]; ok {
				out[k] = u
			}
		}
		return out, nil
	}

	got, err := c.GetManyOrLoad(ctx, []string{"1", "2", "3", "4", "2"}, load)
	require.NoError(t, err)
	assert.Equal(t, map[string]user{"1": {1, "Ada"}, "2": {2, "Alan"}, "3": {3, "Grace"}}, got)
	require.Len(t, batches, 1, "one batch-loader call")
	assert.ElementsMatch(t, []string{"2", "3", "4"}, batches[0], "misses only, once each")

	got, err = c.GetManyOrLoad(ctx, []string{"1", "2", "3", "4"}, load)
	require.NoError(t, err)
	assert.Len(t, got, 3)
	assert.Len(t, batches, 1, "everything, including the tombstone of 4, came from the cache")
	_, err = c.Get(ctx, "4")
	assert.ErrorIs(t, err, cacherepo.ErrNotFound)
	assert.Equal(t, uint64(1), c.Stats().TombstoneHits)
}

func TestCache_GetManyOrLoad_LoadErrorIsReturnedAndNothingCached(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, client, prefix := newCache[user](t, cacherepo.Options{})
	boom := errors.New("database down")
	_, err := c.GetManyOrLoad(ctx, []string{"1", "2"}, func(context.Context, []string) (map[string]user, error) {
		return nil, boom
	})
	assert.ErrorIs(t, err, boom)
	n, err := client.Exists(ctx, prefix+"1", prefix+"2").Result()
	require.NoError(t, err)
	assert.Zero(t, n, "leases released, nothing cached")
}

func TestCache_GetManyOrLoad_OnRing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, prefix := servicetest.Redis(t)
	c, err := cacherepo.New[int](ringClient(t), cacherepo.Options{Namespace: prefix})
	require.NoError(t, err)
	load := func(_ context.Context, missing []string) (map[string]int, error) {
		out := map[string]int{}
		for _, k := range missing {
			out[k] = len(k)
		}
		return out, nil
	}
	got, err := c.GetManyOrLoad(ctx, []string{"a", "bb", "ccc"}, load)
	require.NoError(t, err)
	assert.Equal(t, map[string]int{"a": 1, "bb": 2, "ccc": 3}, got)
	cached, err := c.GetMany(ctx, []string{"a", "bb", "ccc"})
	require.NoError(t, err)
	assert.Equal(t, got, cached)
}

func TestCache_GetOrLoad_JoinerStopsWaitingWhenItsContextEnds(t *testing.T) {
	t.Parallel()
	var misses atomic.Int64
	c, _, _ := newCache[string](t, cacherepo.Options{OnEvent: func(_ context.Context, e cacherepo.Event) {
		if e.Kind == cacherepo.EventMiss {
			misses.Add(1)
		}
	}})
	started, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	go func() {
		_, _ = c.GetOrLoad(context.Background(), "k", func(context.Context) (string, error) {
			close(started)
			<-release // a slow load
			return "v", nil
		})
	}()
	<-started
	ctx, cancel := context.WithCancel(context.Background())
	joinerErr := make(chan error)
	go func() {
		_, err := c.GetOrLoad(ctx, "k", func(context.Context) (string, error) { return "joiner", nil })
		joinerErr <- err
	}()
	eventually(t, "the joiner to miss", func() bool { return misses.Load() == 2 })
	cancel()
	select {
	case err := <-joinerErr:
		assert.ErrorIs(t, err, context.Canceled)
	case <-time.After(30 * time.Second): // the load is held until the test ends
		t.Fatal("the joiner kept waiting for the slow load after its context ended")
	}
}

func TestCache_GetOrLoad_UnencodableValueReturnsErrCodecAndCachesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, client, prefix := newCache[func()](t, cacherepo.Options{})
	_, err := c.GetOrLoad(ctx, "k", func(context.Context) (func(), error) { return func() {}, nil })
	assert.ErrorIs(t, err, cacherepo.ErrCodec)
	n, err := client.Exists(ctx, prefix+"k").Result()
	require.NoError(t, err)
	assert.Zero(t, n, "no value and no lease left behind")
}

func TestCache_GetOrLoad_LoadedValueIsCachedEvenIfCallerLeft(t *testing.T) {
	t.Parallel()
	c, _, _ := newCache[string](t, cacherepo.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	_, _ = c.GetOrLoad(ctx, "k", func(context.Context) (string, error) {
		cancel() // the caller's deadline passes just as the load ends
		return "v", nil
	})
	eventually(t, "the loaded value to be cached", func() bool {
		v, err := c.Get(context.Background(), "k")
		return err == nil && v == "v"
	})
}

func TestCache_Timeout_HealthyRedisServesAsUsual(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, _, _ := newCache[string](t, cacherepo.Options{Timeout: 5 * time.Second})
	l := &counter[string]{value: "v"}
	for range 2 {
		v, err := c.GetOrLoad(ctx, "k", l.load)
		require.NoError(t, err)
		assert.Equal(t, "v", v)
	}
	got, err := c.GetManyOrLoad(ctx, []string{"k", "k2"}, func(context.Context, []string) (map[string]string, error) {
		return map[string]string{"k2": "v2"}, nil
	})
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"k": "v", "k2": "v2"}, got)
	assert.Equal(t, int64(1), l.calls.Load())
	assert.Zero(t, c.Stats().RedisErrors)
}

func TestCache_GetManyOrLoad_UnencodableValueReturnsErrCodecAndLeavesNoLease(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, client, prefix := newCache[any](t, cacherepo.Options{})
	_, err := c.GetManyOrLoad(ctx, []string{"ok", "bad"}, func(context.Context, []string) (map[string]any, error) {
		return map[string]any{"ok": 1, "bad": func() {}}, nil
	})
	assert.ErrorIs(t, err, cacherepo.ErrCodec)
	n, err := client.Exists(ctx, prefix+"bad").Result()
	require.NoError(t, err)
	assert.Zero(t, n, "no value and no lease left behind, as GetOrLoad leaves none")
	v, err := c.Get(ctx, "ok")
	require.NoError(t, err)
	assert.EqualValues(t, 1, v, "the encodable value is cached")
}
