package cacherepo_test

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/polystore/polystore/cacherepo"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// recovered runs f and returns what it panicked with (nil if it did not).
func recovered(f func()) (p any) {
	defer func() { p = recover() }()
	f()
	return nil
}

func TestCache_GetOrLoad_LoaderPanicReachesTheCallerWithItsValueAndCachesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var evs events
	c, client, prefix := newCache[string](t, cacherepo.Options{OnEvent: evs.record})

	p := recovered(func() {
		_, _ = c.GetOrLoad(ctx, "k", func(context.Context) (string, error) { panic("boom") })
	})

	assert.Equal(t, "boom", p, "the caller's recover() gets the loader's own value")
	n, err := client.Exists(ctx, prefix+"k").Result()
	require.NoError(t, err)
	assert.Zero(t, n, "no value, no tombstone, no lease left in Redis")
	panics := evs.of(cacherepo.EventLoaderPanic)
	require.Len(t, panics, 1)
	assert.Equal(t, "k", panics[0].Key)
	var perr *cacherepo.PanicError
	require.ErrorAs(t, panics[0].Err, &perr)
	assert.ErrorIs(t, perr, cacherepo.ErrLoaderPanic)
	assert.Equal(t, "boom", perr.Value)
	assert.Contains(t, string(perr.Stack), "TestCache_GetOrLoad_LoaderPanicReachesTheCallerWithItsValueAndCachesNothing",
		"the stack shows the loader")
	assert.Equal(t, uint64(1), c.Stats().LoaderPanics)

	v, err := c.GetOrLoad(ctx, "k", func(context.Context) (string, error) { return "v", nil })
	require.NoError(t, err, "the next caller loads as usual")
	assert.Equal(t, "v", v)
}

// joinAnEndingLoad starts a load of a fresh key on c whose loader ends with
// end (a panic or runtime.Goexit) once a second caller has missed the same
// key, and returns the second caller's error. A second caller that arrives
// after the first load ended leads a load of its own (joined false); the
// test then tries again with another key.
func joinAnEndingLoad(t *testing.T, c *cacherepo.Cache[string], misses *atomic.Int64, key string, end func()) (err error, joined bool) {
	t.Helper()
	ctx := context.Background()
	misses.Store(0)
	release := make(chan struct{})
	leaderDone := make(chan struct{})
	go func() {
		defer close(leaderDone)
		_ = recovered(func() {
			_, _ = c.GetOrLoad(ctx, key, func(context.Context) (string, error) {
				<-release
				end()
				return "unreachable", nil
			})
		})
	}()
	eventually(t, "the first caller to miss", func() bool { return misses.Load() == 1 })
	var ownLoads atomic.Int64
	joinerErr := make(chan error, 1)
	go func() {
		_, err := c.GetOrLoad(ctx, key, func(context.Context) (string, error) {
			ownLoads.Add(1)
			return "own", nil
		})
		joinerErr <- err
	}()
	eventually(t, "the second caller to miss", func() bool { return misses.Load() == 2 })
	close(release)
	select {
	case err = <-joinerErr:
	case <-time.After(30 * time.Second):
		t.Fatal("the joined caller hangs after the loader ended abnormally")
	}
	<-leaderDone
	return err, ownLoads.Load() == 0
}

func TestCache_GetOrLoad_JoinedCallersGetErrLoaderPanic(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		end        func()
		wantGoexit bool
	}{
		{"panic", func() { panic("boom") }, false},
		{"runtime.Goexit, as t.FailNow does", runtime.Goexit, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var misses atomic.Int64
			c, client, prefix := newCache[string](t, cacherepo.Options{OnEvent: func(_ context.Context, e cacherepo.Event) {
				if e.Kind == cacherepo.EventMiss {
					misses.Add(1)
				}
			}})
			for attempt := 0; ; attempt++ {
				require.Less(t, attempt, 20, "the second caller never joined the first one's load")
				key := "k" + string(rune('a'+attempt))
				err, joined := joinAnEndingLoad(t, c, &misses, key, tt.end)
				if !joined {
					continue
				}
				require.ErrorIs(t, err, cacherepo.ErrLoaderPanic)
				var perr *cacherepo.PanicError
				require.ErrorAs(t, err, &perr)
				assert.Equal(t, tt.wantGoexit, perr.Goexit)
				if !tt.wantGoexit {
					assert.Equal(t, "boom", perr.Value)
				}
				n, err := client.Exists(context.Background(), prefix+key).Result()
				require.NoError(t, err)
				assert.Zero(t, n, "nothing cached, lease released")
				return
			}
		})
	}
}

func TestCache_GetOrLoad_LoaderPanicReleasesTheLeaseForOtherProcessesAtOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// A lease that would outlive the test, and a wait as long: only the
	// release after the panic lets the other process load.
	opts := cacherepo.Options{Lock: true, LockWait: time.Hour, LeaseTTL: time.Hour}
	c1, _, prefix := newCache[string](t, opts)
	var waits events
	opts.Namespace, opts.OnEvent = prefix, waits.record
	c2, err := cacherepo.New[string](secondClient(t), opts)
	require.NoError(t, err)

	started, release := make(chan struct{}), make(chan struct{})
	firstPanic := make(chan any, 1)
	go func() {
		firstPanic <- recovered(func() {
			_, _ = c1.GetOrLoad(ctx, "k", func(context.Context) (string, error) {
				close(started)
				<-release
				panic("boom")
			})
		})
	}()
	<-started
	second := make(chan string, 1)
	go func() {
		v, err := c2.GetOrLoad(ctx, "k", func(context.Context) (string, error) { return "second", nil })
		assert.NoError(t, err)
		second <- v
	}()
	eventually(t, "the other process to wait", func() bool { return len(waits.of(cacherepo.EventLockWait)) == 1 })
	close(release)
	assert.Equal(t, "boom", <-firstPanic)
	select {
	case v := <-second:
		assert.Equal(t, "second", v)
	case <-time.After(30 * time.Second): // LeaseTTL and LockWait are an hour
		t.Fatal("the other process waits out the lease of a load that panicked")
	}
}

func TestCache_GetManyOrLoad_LoaderPanicReachesTheCallerAndReleasesLeases(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		end  func()
	}{
		{"panic", func() { panic(errBatch) }},
		{"runtime.Goexit", runtime.Goexit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			var evs events
			c, client, prefix := newCache[int](t, cacherepo.Options{OnEvent: evs.record, LeaseTTL: time.Hour})
			require.NoError(t, c.Set(ctx, "cached", 1, 0))

			done := make(chan any, 1)
			go func() { // runtime.Goexit ends this goroutine, not the test's
				defer func() { done <- recover() }()
				_, _ = c.GetManyOrLoad(ctx, []string{"cached", "a", "b"}, func(context.Context, []string) (map[string]int, error) {
					tt.end()
					return nil, nil
				})
			}()
			p := <-done
			if tt.name == "panic" {
				assert.Equal(t, errBatch, p, "the caller's recover() gets the loader's own value")
			}
			n, err := client.Exists(ctx, prefix+"a", prefix+"b").Result()
			require.NoError(t, err)
			assert.Zero(t, n, "leases released, nothing cached")
			panics := evs.of(cacherepo.EventLoaderPanic)
			require.Len(t, panics, 1)
			assert.ErrorIs(t, panics[0].Err, cacherepo.ErrLoaderPanic)

			got, err := c.GetManyOrLoad(ctx, []string{"a"}, func(_ context.Context, missing []string) (map[string]int, error) {
				return map[string]int{"a": 2}, nil
			})
			require.NoError(t, err)
			assert.Equal(t, map[string]int{"a": 2}, got)
		})
	}
}

var errBatch = errors.New("batch loader bug")

func TestCache_EarlyRefresh_LoaderPanicIsReportedAndTheCachedValueServed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		end       func()
		wantValue any
	}{
		{"panic", func() { panic("refresh bug") }, "refresh bug"},
		{"runtime.Goexit", runtime.Goexit, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			var evs events
			// β so large that every hit is refreshed.
			c, _, _ := newCache[string](t, cacherepo.Options{EarlyRefresh: 1e12, OnEvent: evs.record})
			require.NoError(t, c.Set(ctx, "k", "cached", 0))

			var v string
			var err error
			p := recovered(func() {
				v, err = c.GetOrLoad(ctx, "k", func(context.Context) (string, error) {
					tt.end()
					return "unreachable", nil
				})
			})

			assert.Nil(t, p, "a refresh's panic never reaches the caller")
			require.NoError(t, err)
			assert.Equal(t, "cached", v)
			panics := evs.of(cacherepo.EventLoaderPanic)
			require.Len(t, panics, 1)
			var perr *cacherepo.PanicError
			require.ErrorAs(t, panics[0].Err, &perr)
			assert.Equal(t, tt.wantValue, perr.Value)
			got, err := c.Get(ctx, "k")
			require.NoError(t, err)
			assert.Equal(t, "cached", got, "the cached value stays")
			assert.Equal(t, uint64(1), c.Stats().LoaderPanics)
		})
	}
}
